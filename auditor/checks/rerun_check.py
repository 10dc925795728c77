"""`pgolf audit --rerun`: the dynamic evidence (trace, Gibbs floor, causality, normalization) next
to the static findings, with their disagreements shown (DYN902) rather than hidden."""

from __future__ import annotations

from auditor.context import RecordContext
from auditor.models import Finding


def check(ctx: RecordContext, findings: list[Finding]) -> list[Finding]:
    if not ctx.options.rerun:
        return []
    from auditor.rerun import compare_with_static, rerun_record

    result = rerun_record(ctx.record.root, ctx.options)
    ctx.rerun_summary = result.summary
    return list(result.findings) + compare_with_static(findings, result)
