"""rules/fixtures/SIG00x: flag_* folders raise their rule, pass_* folders do not.

The fixture logs are Family B logs written for these tests, so a two-regex reader is enough here;
the generic fixture test runs them through the full pipeline as well.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import rules
from auditor.models import SeedRun
from auditor.significance import load_leaderboard, significance_for_record

# The fixtures are written against PR #1514's seeds, given as the baseline (the default baseline
# is chosen by merge dates: see tests/test_significance.py).
BASELINE = next(r for r in load_leaderboard() if r.pr == 1514).to_baseline("fixture baseline")

SEED_RE = re.compile(r"^  seed: (\d+)$", re.MULTILINE)
FINAL_RE = re.compile(
    r"^(?P<label>[a-z_]+) val_loss:(?P<loss>[\d.]+) val_bpb:(?P<bpb>[\d.]+) eval_time:\d+ms$", re.MULTILINE
)
TOTAL_RE = re.compile(r"^Total submission size \S+: (\d+) bytes$", re.MULTILINE)


def read_runs(folder: Path) -> list[SeedRun]:
    runs = []
    for log in sorted(folder.glob("train_seed*.log")):
        text = log.read_text()
        final = [
            m for m in FINAL_RE.finditer(text) if not m.group("label").startswith(("pre", "diagnostic"))
        ][-1]
        runs.append(
            SeedRun(
                log_file=log.name,
                seed=int(SEED_RE.search(text).group(1)),
                seed_source="log",
                label=final.group("label"),
                val_loss=float(final.group("loss")),
                val_bpb=float(final.group("bpb")),
                line=text[: final.start()].count("\n") + 1,
                artifact_bytes=int(TOTAL_RE.search(text).group(1)),
            )
        )
    return runs


CASES = sorted(
    (rule_id, folder)
    for rule_id in ("SIG001", "SIG002", "SIG003", "SIG004")
    for folder in (rules.FIXTURES_DIR / rule_id).iterdir()
    if folder.is_dir()
)


def test_every_rule_has_both_kinds_of_fixture():
    for rule_id in ("SIG001", "SIG002", "SIG003", "SIG004"):
        names = [folder.name for rid, folder in CASES if rid == rule_id]
        assert any(n.startswith("flag_") for n in names) and any(n.startswith("pass_") for n in names), (
            rule_id
        )


@pytest.mark.parametrize(("rule_id", "folder"), CASES, ids=[f"{r}/{f.name}" for r, f in CASES])
def test_fixture(rule_id, folder):
    for name in ("README.md", "submission.json", "train_gpt.py"):
        assert (folder / name).is_file(), name
    claimed = json.loads((folder / "submission.json").read_text())
    runs = read_runs(folder)
    assert len(runs) == len(claimed["seeds"])
    # the fixture is self-consistent: its claim is the mean of its logs
    assert claimed["val_bpb"] == pytest.approx(sum(r.val_bpb for r in runs) / len(runs), abs=1e-8)
    assert all(r.artifact_bytes < 16_000_000 for r in runs)
    result = significance_for_record(folder, runs, track="track_10min_16mb", claimed=claimed, baseline=BASELINE)
    assert result is not None
    assert result.significance.baseline.startswith("PR #1514")
    raised = {f.rule_id for f in result.findings}
    if folder.name.startswith("flag_"):
        assert rule_id in raised
        finding = next(f for f in result.findings if f.rule_id == rule_id)
        assert finding.location is not None and finding.location.line >= 1
        assert finding.location.file in ("submission.json", "README.md")
    else:
        assert rule_id not in raised
