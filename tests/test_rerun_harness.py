"""Reruns that cannot produce evidence say why (DYN900) instead of passing silently, and bad
input never raises."""

from __future__ import annotations

import pytest
from test_rerun_support import SUBJECTS, describe, fast_options, needs_torch

pytestmark = pytest.mark.slow


def test_script_that_fails_at_start_is_reported_with_its_error():
    from auditor.rerun.harness import rerun_record

    r = rerun_record(SUBJECTS / "crash_at_start", fast_options(probes=("trace", "gibbs")))
    assert r.status == "failed"
    f = next(f for f in r.findings if f.rule_id == "DYN900")
    assert "ValueError: missing hyperparameter MODEL_DEPTH" in f.message, describe(r)
    assert "Traceback" in f.data["stderr_tail"] or "ValueError" in f.data["stderr_tail"]
    assert r.summary["verdict_hint"] == "incomplete"
    assert [run["name"] for run in r.summary["runs"]] == ["trace"]  # nothing else is attempted


def test_bad_input_is_a_finding_not_an_exception(tmp_path):
    from auditor.rerun.harness import rerun_record

    missing = rerun_record(tmp_path / "nope", fast_options())
    assert missing.status == "failed" and "not a directory" in missing.findings[0].message
    (tmp_path / "train_gpt.py").write_text("def broken(:\n")
    bad = rerun_record(tmp_path, fast_options())
    assert bad.status == "failed" and "does not parse" in bad.findings[0].message


def test_script_without_a_metric_line_gets_no_verdict(tmp_path):
    needs_torch()
    from auditor.rerun.harness import rerun_record

    (tmp_path / "train_gpt.py").write_text('import os\nVOCAB = int(os.environ.get("VOCAB_SIZE", 256))\nprint("done")\n')
    r = rerun_record(tmp_path, fast_options(probes=("trace", "gibbs")))
    assert r.status == "failed"
    assert any("without printing a final metric line" in f.message for f in r.findings), describe(r)
