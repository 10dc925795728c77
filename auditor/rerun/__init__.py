"""Dynamic reruns: a submission's own script, run at tiny scale in a sandbox under the tracer and
the probes (Gibbs floor, causality, normalization). Entry point: ``rerun_record``."""

from auditor.rerun.harness import RerunOptions, RerunResult, compare_with_static, rerun_record

__all__ = ["RerunOptions", "RerunResult", "compare_with_static", "rerun_record"]
