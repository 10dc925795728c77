"""The `pgolf` command as a user runs it: real subprocesses, exit codes, formats, bad input."""

from __future__ import annotations

import base64
import json
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "rules" / "fixtures"
PGOLF = [sys.executable, "-m", "auditor"]


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*PGOLF, *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=300,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


def make_record(tmp_path: Path, source: Path, track: str = "track_non_record_16mb", name: str | None = None) -> Path:
    """Copy a fixture record into a records tree (non-record track: no significance baseline)."""
    dest = tmp_path / "records" / track / (name or source.name)
    shutil.copytree(source, dest)
    return dest


@pytest.fixture
def clean_record(tmp_path):
    return make_record(tmp_path, FIXTURES / "CLM001" / "pass_mean")


def test_clean_record_passes_with_exit_0(clean_record):
    proc = run("audit", str(clean_record))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout


def test_violation_fails_with_exit_1(tmp_path):
    rec = make_record(tmp_path, FIXTURES / "LIM001" / "flag_total_over_cap")
    proc = run("audit", str(rec), "--format", "json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["verdict"] == "FAIL"
    rules = {f["rule_id"] for r in report["records"] for f in r["findings"]}
    assert "LIM001" in rules


@pytest.mark.parametrize("tail", [
    "\ntype _Alias = int\n",  # Python 3.12 syntax: the auditor's own 3.11 parser rejects it
    "\n\ndef _identity[T](x: T) -> T:\n    return x\n",
    "\n\nclass _Box[T = int]:\n    pass\n",  # 3.13 (PEP 696)
    "\n\ndef _broken(:\n    pass\n",  # no interpreter parses this: the rest must still be read
])
def test_newer_or_broken_syntax_appended_does_not_hide_a_violation(tmp_path, tail):
    src = ROOT / "examples" / "records" / "track_non_record_16mb" / "2026-11-02_Broken_SLOT"
    rec = make_record(tmp_path, src)
    script = rec / "train_gpt.py"
    script.write_text(script.read_text(encoding="utf-8") + tail, encoding="utf-8")
    report = json.loads(run("audit", str(rec), "--format", "json").stdout)
    findings = [f for r in report["records"] for f in r["findings"]]
    assert report["verdict"] == "FAIL" and "C302" in {f["rule_id"] for f in findings}
    partial = [f for f in findings if f["rule_id"] == "HYG010"]
    if "_broken" in tail:  # what could not be read is named, never silently skipped
        assert partial and "could not be parsed" in partial[0]["message"], partial
    else:
        assert not partial, partial


def test_json_report_has_schema_version_and_evidence(tmp_path):
    rec = make_record(tmp_path, FIXTURES / "CLM001" / "flag_wrong_mean")
    proc = run("audit", str(rec), "-f", "json")
    report = json.loads(proc.stdout)
    assert report["schema_version"] == "2.1"
    (finding,) = [f for r in report["records"] for f in r["findings"] if f["rule_id"] == "CLM001"]
    assert finding["location"]["file"] == "submission.json"
    assert finding["location"]["line"] >= 1 and '"val_bpb"' in finding["location"]["snippet"]
    assert finding["path"] and all(p["file"].endswith(".log") for p in finding["path"])


def test_sarif_and_markdown_outputs(tmp_path):
    rec = make_record(tmp_path, FIXTURES / "LIM001" / "flag_total_over_cap")
    sarif = json.loads(run("audit", str(rec), "-f", "sarif").stdout)
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["results"]
    used = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]} == used
    md = run("audit", str(rec), "-f", "markdown").stdout
    assert "FAIL" in md and "16,002,101" in md and "LIM001" in md


def test_output_file(tmp_path, clean_record):
    out = tmp_path / "report.md"
    proc = run("audit", str(clean_record), "-f", "markdown", "-o", str(out))
    assert proc.returncode == 0
    assert "PASS" in out.read_text()
    assert proc.stdout == ""


def test_tree_with_many_records_and_spaces(tmp_path):
    make_record(tmp_path, FIXTURES / "CLM001" / "pass_mean", name="2026-11-01_a record with spaces")
    make_record(tmp_path, FIXTURES / "LIM003" / "flag_train_over_600s", track="track_10min_16mb")
    make_record(tmp_path, FIXTURES / "CLM006" / "flag_prequant_claim")
    make_record(tmp_path, FIXTURES / "LIM004" / "pass_eval_under_600s", name="x4")
    proc = run("audit", str(tmp_path / "records"), "-f", "json", "--jobs", "2")
    report = json.loads(proc.stdout)
    assert len(report["records"]) == 4
    assert proc.returncode == 1
    names = {r["name"] for r in report["records"]}
    assert "2026-11-01_a record with spaces" in names


def test_missing_path_is_an_input_error():
    proc = run("audit", "/nonexistent/records/x")
    assert proc.returncode == 4
    assert "error" in proc.stderr.lower() and "/nonexistent/records/x" in proc.stderr


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "train_gpt.py"
    f.write_text("print(1)\n")
    proc = run("audit", str(f))
    assert proc.returncode == 4


def test_usage_errors_exit_2():
    assert run("audit").returncode == 2
    assert run("audit", "--format", "yaml", ".").returncode == 2
    assert run("no-such-command").returncode == 2


def test_bad_input_in_a_record_is_reported_not_crashed(tmp_path):
    rec = tmp_path / "records" / "track_10min_16mb" / "2026-11-01_Broken"
    rec.mkdir(parents=True)
    (rec / "README.md").write_bytes(b"# broken\n\xff\xfe not utf-8\n")
    (rec / "submission.json").write_text('{"val_bpb": 1.1, "seeds": [1, 2,}')
    (rec / "train_seed1.log").write_bytes(os.urandom(4096) + b"\x00" * 100)
    (rec / "train_seed2.log").write_bytes(b"step:1/2 train_loss:9 \xff\xfe\n" * 10)
    (rec / "train_gpt.py").write_text("import lzma,base64\nexec(lzma.decompress(base64.b85decode('not base85 at all!!'*20)))\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the record")
    (rec / "train_seed3.log").symlink_to(outside)
    proc = run("audit", str(rec), "-f", "json")
    assert proc.returncode in (1, 3), proc.stderr
    report = json.loads(proc.stdout)
    rules = {f["rule_id"] for r in report["records"] for f in r["findings"]}
    assert "HYG003" in rules  # malformed JSON, with its position
    assert "HYG009" in rules  # the symlink leaving the folder
    assert "HYG005" in rules  # a wrapper that does not decode
    assert "outside the record" not in proc.stdout


def test_booby_trapped_wrapper_is_never_executed(tmp_path):
    sentinel = tmp_path / "PWNED"
    payload = f"open({str(sentinel)!r}, 'w').write('executed')\nimport os\nos.system('touch {sentinel}')\n"
    blob = base64.b85encode(lzma.compress(payload.encode())).decode()
    rec = make_record(tmp_path, FIXTURES / "CLM001" / "pass_mean")
    (rec / "train_gpt.py").write_text(f"import lzma as L,base64 as B\nexec(L.decompress(B.b85decode({blob!r})))\n")
    for fmt in ("text", "json", "sarif", "markdown"):
        run("audit", str(rec), "-f", fmt)
    assert not sentinel.exists()


def test_rules_listing_and_doc():
    proc = run("rules", "--format", "json")
    assert proc.returncode == 0
    listed = {r["id"] for r in json.loads(proc.stdout)}
    assert {"LIM001", "CLM001", "HYG001"} <= listed
    doc = run("rules", "LIM001")
    assert doc.returncode == 0 and "What it detects" in doc.stdout
    assert run("rules", "NOPE999").returncode == 4


def test_schema_command():
    schema = json.loads(run("schema").stdout)
    assert "properties" in schema and "verdict" in schema["properties"]


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def test_git_pr_mode(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    (repo / "README.md").write_text("# upstream\n")
    make_record(repo, FIXTURES / "CLM001" / "pass_mean", name="2026-10-01_Old")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "base", cwd=repo)
    _git("checkout", "-qb", "pr", cwd=repo)
    make_record(repo, FIXTURES / "LIM001" / "flag_total_over_cap", name="2026-11-01_New")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "pr", cwd=repo)
    _git("update-ref", "refs/pull/7/head", "pr", cwd=repo)

    proc = run("audit", "--git", str(repo), "--pr", "7", "--base", "main", "-f", "json")
    report = json.loads(proc.stdout)
    assert [r["name"] for r in report["records"]] == ["2026-11-01_New"]
    assert report["pr"]["added_records"] and not report["pr"]["outside_changes"]
    assert proc.returncode == 1  # LIM001 in the new record

    missing = run("audit", "--git", str(repo), "--ref", "no-such-branch")
    assert missing.returncode == 4 and "no-such-branch" in missing.stderr
