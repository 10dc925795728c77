"""Two verdict axes (compliance vs eligibility) and fail-closed verdicts.

A wrong FAIL accuses a person in public, and a PASS without evidence vouches for code nobody read:
these tests pin both directions, through the pipeline, the CLI and the service's job function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditor import verdict
from auditor.findings import finding
from auditor.models import Confidence, EligibilityStatus, Severity, Significance, SignificanceRow, Verdict
from auditor.options import AuditOptions
from auditor.pipeline import audit_git, audit_paths

sys.path.insert(0, str(Path(__file__).parent))
from test_api_support import REPO_ROOT, _git, write_record


def _row(significant: bool) -> SignificanceRow:
    return SignificanceRow(policy="frontier", baseline="prev", unit="nats/token", n_candidate=3, n_baseline=3,
                           mean_candidate=2.0, mean_baseline=2.0, delta=0.0, margin=0.0, p_value=0.6,
                           alpha=0.25, significant=significant)


# --- the verdict function ------------------------------------------------------------------------

def test_significance_never_fails_a_record():
    findings = [finding("SIG002", "not better than the frontier"), finding("SIG001", "README rule not met")]
    assert verdict.decide(findings) is Verdict.PASS
    assert verdict.compliance(findings) is Verdict.PASS
    elig = verdict.eligibility(findings, Significance(rows=[_row(False)]), non_record_track=False)
    assert elig.status is EligibilityStatus.NOT_A_NEW_RECORD
    assert any("frontier" in r for r in elig.reasons)


def test_compliance_error_fails_and_heuristic_asks_for_review():
    assert verdict.decide([finding("C101", "target-keyed lookup")]) is Verdict.FAIL
    soft = finding("C101", "target-keyed lookup", confidence=Confidence.HEURISTIC)
    assert verdict.decide([soft]) is Verdict.NEEDS_REVIEW


def test_hard_limit_with_proof_fails_but_claims_ask_for_review():
    over = finding("LIM001", "artifact 16,000,001 bytes")
    assert verdict.decide([over]) is Verdict.FAIL
    assert verdict.compliance([over]) is Verdict.PASS  # a limit is eligibility, not compliance
    assert verdict.eligibility([over], None, non_record_track=False).status is EligibilityStatus.NOT_ELIGIBLE
    claim = finding("CLM001", "claimed mean differs from the logs", severity=Severity.ERROR)
    assert verdict.decide([claim]) is Verdict.NEEDS_REVIEW
    assert verdict.eligibility([claim], None, non_record_track=False).status is EligibilityStatus.NOT_ELIGIBLE


def test_eligibility_without_significance_is_undetermined_and_non_record_is_named():
    assert verdict.eligibility([], None, non_record_track=False).status is EligibilityStatus.UNDETERMINED
    assert verdict.eligibility([], None, non_record_track=True).status is EligibilityStatus.NON_RECORD_TRACK
    ok = verdict.eligibility([], Significance(rows=[_row(True)]), non_record_track=False)
    assert ok.status is EligibilityStatus.RECORD_ELIGIBLE


# --- through the pipeline ------------------------------------------------------------------------

def test_a_record_that_only_misses_significance_passes_with_its_eligibility(tmp_path):
    rec = write_record(tmp_path / "records" / "track_10min_16mb" / "2026-05-01_Plain", 1)
    report = audit_paths([rec])
    audit = report.records[0]
    assert {f.rule_id for f in audit.findings} & {"SIG001", "SIG002"}, "the fixture must miss the record bar"
    assert audit.verdict is Verdict.PASS and audit.compliance is Verdict.PASS
    assert audit.eligibility.status is EligibilityStatus.NOT_A_NEW_RECORD


def test_no_static_is_never_pass(tmp_path):
    rec = write_record(tmp_path / "records" / "track_10min_16mb" / "2026-05-01_Plain", 1)
    audit = audit_paths([rec], AuditOptions(static=False)).records[0]
    assert audit.verdict is Verdict.NEEDS_REVIEW
    assert any(f.rule_id == "HYG010" and f.data.get("skipped") == "static" for f in audit.findings)


def test_unparseable_code_is_never_pass(tmp_path):
    rec = write_record(tmp_path / "records" / "track_10min_16mb" / "2026-05-01_Broken", 1)
    (rec / "train_gpt.py").write_text("def f(:\n    pass\n")
    audit = audit_paths([rec]).records[0]
    assert audit.verdict is not Verdict.PASS
    assert any(f.rule_id == "HYG010" and f.location and f.location.file == "train_gpt.py" for f in audit.findings)


def _repo_without_record(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("upstream\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "base")
    _git(work, "checkout", "-q", "-b", "pr")
    (work / "notes.txt").write_text("no record here\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "pr")
    return work


def test_pr_without_a_record_is_error_not_pass(tmp_path):
    repo = _repo_without_record(tmp_path)
    report = audit_git(str(repo), "pr", "main", AuditOptions(), tmp_path / "work")
    assert report.records == []
    assert report.verdict is Verdict.ERROR
    assert "no record folder" in report.error


def test_cli_and_service_job_agree_on_a_pr_without_a_record(tmp_path):
    from api.tasks import run_static

    repo = _repo_without_record(tmp_path)
    code = "import sys; from auditor.cli import main; sys.argv = ['pgolf'] + sys.argv[1:]; main()"
    proc = subprocess.run([sys.executable, "-c", code, "audit", "--git", str(repo), "--ref", "pr", "--base", "main",
                           "-f", "json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 4, proc.stderr
    cli = json.loads(proc.stdout)
    job = run_static({"kind": "git", "repo": str(repo), "ref": "pr", "base": "main", "commit": None,
                      "options_json": AuditOptions().model_dump_json(), "timeout_s": 120, "limits": {},
                      "workroot": str(tmp_path)})
    assert job["ok"] and job["verdict"] == "ERROR"
    svc = json.loads(job["report_json"])
    for report in (cli, svc):
        report.pop("generated_at")
    assert cli == svc
    assert cli["verdict"] == "ERROR" and cli["error"]


@pytest.mark.parametrize("fmt", ["text", "markdown", "sarif"])
def test_every_format_says_why_the_audit_is_error(tmp_path, fmt):
    from auditor.report import render

    repo = _repo_without_record(tmp_path)
    report = audit_git(str(repo), "pr", "main", AuditOptions(), tmp_path / "work")
    assert "no record folder" in render(report, fmt)


def test_paperwork_is_eligibility_not_a_compliance_fail(tmp_path):
    rec = write_record(tmp_path / "records" / "track_10min_16mb" / "2026-05-01_NoReadme", 1)
    (rec / "README.md").unlink()
    audit = audit_paths([rec]).records[0]
    assert any(f.rule_id == "HYG001" and f.severity is Severity.ERROR for f in audit.findings)
    assert audit.compliance is Verdict.PASS
    assert audit.verdict is Verdict.NEEDS_REVIEW  # incomplete: a human looks, nobody is accused
    assert audit.eligibility.status is EligibilityStatus.NOT_ELIGIBLE
    assert any(r.startswith("HYG001") for r in audit.eligibility.reasons)


def test_network_stays_a_compliance_fail():
    net = finding("HYG008", "urllib.request.urlopen reachable from the eval")
    assert verdict.axis(net) == "compliance"
    assert verdict.decide([net]) is Verdict.FAIL


def test_rerun_merge_rule_proof_overrides_and_a_clean_rerun_never_clears():
    """README "Dynamic reruns": a DYN error (proof) turns a static PASS or NEEDS_REVIEW into FAIL; a
    clean rerun shown beside a static FAIL (DYN902) leaves it a FAIL; a weakened probe (DYN900 info)
    changes nothing, and a rerun that could not run asks for review."""
    gibbs = finding("DYN001", "Gibbs probe: 0.41 nats below the floor", origin="dynamic")
    heuristic = finding("C102", "target-keyed lookup", confidence=Confidence.HEURISTIC, severity=Severity.WARNING)
    assert verdict.decide([]) is Verdict.PASS
    assert verdict.decide([gibbs]) is Verdict.FAIL
    assert verdict.decide([heuristic]) is Verdict.NEEDS_REVIEW
    assert verdict.decide([heuristic, gibbs]) is Verdict.FAIL
    static_fail = finding("C102", "target-keyed lookup", confidence=Confidence.STRONG)
    disagree = finding("DYN902", "C1: static flags C102 but the rerun observed no C1 violation", origin="dynamic")
    assert verdict.decide([static_fail, disagree]) is Verdict.FAIL
    weak = finding("DYN900", "Gibbs probe weakened: 0.3 nats above the floor", severity=Severity.INFO, origin="dynamic")
    assert verdict.decide([weak]) is Verdict.PASS
    not_run = finding("DYN900", "rerun 'trace' did not complete: Triton kernel 'k' launched", origin="dynamic")
    assert verdict.decide([not_run]) is Verdict.NEEDS_REVIEW
