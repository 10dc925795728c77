"""HYG003/HYG004 fixtures through the parsers alone (tests/test_rule_catalog.py runs them through
the whole pipeline): each ``flag_*`` record folder raises its rule, each ``pass_*`` does not."""

from __future__ import annotations

from pathlib import Path

import pytest

import rules
from auditor.models import Finding, Severity
from auditor.parse.logs import parse_log, unreadable_log_findings
from auditor.parse.readme import parse_readme
from auditor.parse.submission import parse_submission


def _is_log(p: Path) -> bool:
    return p.is_file() and (
        p.suffix == ".log" or (p.suffix == ".txt" and not p.name.startswith("requirements"))
    )


def _findings(folder: Path) -> list[Finding]:
    out: list[Finding] = []
    meta = sorted(folder.glob("submission*.json"), key=lambda p: (p.name != "submission.json", p.name))
    if meta:
        out += parse_submission(meta[0], meta[0].name).findings
    logs = [parse_log(p, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*")) if _is_log(p)]
    out += unreadable_log_findings(logs)
    if (folder / "README.md").exists():
        out += parse_readme(folder / "README.md").findings
    return out


def _cases():
    for rule_id in ("HYG003", "HYG004"):
        for item in sorted(rules.get(rule_id).fixtures_dir.iterdir()):
            yield pytest.param(rule_id, item, id=f"{rule_id}/{item.name}")


@pytest.mark.parametrize("rule_id,folder", list(_cases()))
def test_fixture_folder(rule_id, folder):
    hits = [f for f in _findings(folder) if f.rule_id == rule_id]
    if folder.name.startswith("pass_"):
        assert hits == [], [f.message for f in hits]
        return
    assert hits, f"{folder.name} must raise {rule_id}"
    for f in hits:
        assert f.location is not None and f.location.file and f.message.startswith(f.location.file)


def test_fixture_severities():
    base = rules.get("HYG004").fixtures_dir
    assert [f.severity for f in _findings(base / "flag_binary_only_log")] == [Severity.ERROR]
    assert [f.severity for f in _findings(base / "flag_empty_second_log")] == [Severity.WARNING]
    nan = rules.get("HYG003").fixtures_dir / "flag_nan_constant"
    assert [f.severity for f in _findings(nan)] == [Severity.WARNING]
    broken = rules.get("HYG003").fixtures_dir / "flag_missing_comma"
    [f] = _findings(broken)
    assert f.severity == Severity.ERROR and (f.location.line, f.location.column) == (9, 3)


def test_fixture_record_folders_are_complete():
    for rule_id in ("HYG003", "HYG004"):
        for folder in rules.get(rule_id).fixtures_dir.iterdir():
            names = {p.name for p in folder.iterdir()}
            assert {"README.md", "train_gpt.py"} <= names, folder
            assert any(n.startswith("submission") and n.endswith(".json") for n in names), folder
            assert any(_is_log(p) for p in folder.rglob("*")), folder
