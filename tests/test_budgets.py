"""Bounded cost on hostile input: a huge script, a record that takes too long, a worker that dies.
Every case finishes within its budget with a finding that says what was not checked; the rest of
the tree goes on; nothing over a budget is ever PASS or cached."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from auditor.cache import ResultCache
from auditor.pipeline import AuditOptions, RecordBudget, audit_paths

ROOT = Path(__file__).resolve().parents[1]
SLOT = ROOT / "examples" / "records" / "track_non_record_16mb" / "2026-11-02_Broken_SLOT"
LIGHT = ROOT / "rules" / "fixtures" / "CLM001" / "pass_mean"


def test_a_50_mb_script_is_not_analysed_and_says_so_within_10_s_and_1_gb(tmp_path):
    rec = tmp_path / "records" / "track_non_record_16mb" / "huge"
    shutil.copytree(SLOT, rec)
    body = "".join(f"def helper_{i}(x):\n    return x * {i} + 1\n\n" for i in range(1_400_000))
    with open(rec / "train_gpt.py", "a", encoding="utf-8") as f:
        f.write(body[:50_000_000])
    assert (rec / "train_gpt.py").stat().st_size > 50_000_000
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "auditor", "audit", "--no-cache", str(rec), "-f", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    wall = time.monotonic() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(proc.stdout)
    skipped = [f for r in report["records"] for f in r["findings"] if f["rule_id"] == "HYG010"]
    assert skipped and "over the analysis budget" in skipped[0]["message"], skipped
    assert report["verdict"] != "PASS"
    assert wall < 10, wall
    assert max(peak_kb, before) < 1_000_000 or peak_kb < 1_000_000, peak_kb  # KB: under 1 GB


def test_a_record_over_its_time_budget_is_reported_and_the_rest_go_on(tmp_path):
    tree = tmp_path / "records" / "track_non_record_16mb"
    shutil.copytree(SLOT, tree / "slow")
    with open(tree / "slow" / "train_gpt.py", "a", encoding="utf-8") as f:  # 3 MB: seconds to analyse
        f.write("".join(f"def helper_{i}(x):\n    return x * {i} + 1\n\n" for i in range(80_000)))
    shutil.copytree(LIGHT, tree / "light")
    store = ResultCache(tmp_path / "cache")
    result = audit_paths([tmp_path / "records"], AuditOptions(), jobs=1, cache=store,
                         budget=RecordBudget(wall_s=0.5, memory_mb=0))
    by = {r.name: r for r in result.records}
    slow = [f for f in by["slow"].findings if f.rule_id == "HYG010"]
    assert slow and "longer than its budget of 0.5 s" in slow[0].message and by["slow"].verdict.value != "PASS"
    assert not any(f.rule_id == "HYG010" for f in by["light"].findings) and by["light"].verdict.value == "PASS"
    assert len(list(store.dir.glob("*/*.json"))) == 1  # the stopped audit is not a result to keep


def test_workers_that_die_at_their_memory_budget_leave_every_record_reported(tmp_path):
    tree = tmp_path / "records" / "track_non_record_16mb"
    for i in range(4):
        shutil.copytree(SLOT, tree / f"rec{i}")
    # 64 MB of address space: far below what a worker needs for this script (it dies or runs out of
    # memory, as a real bomb would make it); the audit still ends, naming each record
    result = audit_paths([tmp_path / "records"], AuditOptions(), jobs=2, budget=RecordBudget(memory_mb=64))
    assert len(result.records) == 4
    for rec in result.records:  # however the shortage surfaced (died, MemoryError, a failed stage)
        assert any(f.rule_id == "HYG010" for f in rec.findings), rec
        assert rec.verdict.value == "NEEDS_REVIEW", rec


def test_a_flood_of_logs_is_read_up_to_its_budget_run_logs_first(tmp_path, monkeypatch):
    from auditor import pipeline

    monkeypatch.setattr(pipeline, "MAX_LOGS_PER_RECORD", 5)
    rec = tmp_path / "records" / "track_non_record_16mb" / "flood"
    shutil.copytree(LIGHT, rec)
    for i in range(30):  # sort before the real train_seed*.log files
        (rec / f"a{i:03d}.txt").write_text("noise\n")
    result = audit_paths([rec], AuditOptions(), jobs=1)
    (audit,) = result.records
    assert {r.log_file for r in audit.runs} >= {"train_seed314.log", "train_seed42.log", "train_seed999.log"}
    over = [f for f in audit.findings if f.rule_id == "HYG010"]
    assert len(over) == 1 and over[0].data["not_read"] == 28 and "over the budget of 5 logs" in over[0].message
    assert audit.verdict.value != "PASS"
