"""Catalog fixtures of the static C1-C4 detectors (rules/fixtures/<ID>/flag_*.py, pass_*.py).

``flag_*`` must raise the rule as an error, at every line marked ``# ruleid: <ID>`` (in the decoded
payload for wrapped fixtures); ``pass_*`` must not raise it at all (neither error nor warning).
Fixtures are our own small scripts; nothing is executed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auditor.models import Severity
from auditor.static import StaticConfig, run_static
from auditor.unwrap import unwrap_file

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "fixtures"
STATIC_RULES = ("C101", "C102", "C103", "C201", "C301", "C302", "C303", "C401", "C402", "HYG008")
# The BOS-smear ruling applies from 2026-04-24; the other rules do not depend on the date.
DATES = {"C103": "2026-04-28"}
MARK = re.compile(r"#\s*ruleid:\s*([A-Z]+[0-9]+)")


def _cases(prefix: str) -> list:
    out = []
    for rule in STATIC_RULES:
        for path in sorted((FIXTURES / rule).glob(f"{prefix}*.py")):
            out.append(pytest.param(rule, path, id=f"{rule}/{path.name}"))
    return out


def _audit(rule: str, path: Path):
    result = unwrap_file(path, path.parent, is_entry=True)
    sources = [s for s in result.sources if s.tree is not None]
    assert sources, f"{path.name} does not parse"
    config = StaticConfig(submission_date=DATES.get(rule, "2026-03-25"))
    return sources, run_static(sources, config)


def _marked_lines(sources, rule: str) -> set[int]:
    lines = set()
    for src in sources:
        for i, line in enumerate(src.text.splitlines(), start=1):
            m = MARK.search(line)
            if m and m.group(1) == rule:
                lines.add(i)
    return lines


@pytest.mark.parametrize("rule,path", _cases("flag_"))
def test_flag_fixture_raises_rule(rule, path):
    sources, findings = _audit(rule, path)
    hits = [f for f in findings if f.rule_id == rule and f.severity == Severity.ERROR]
    assert hits, (
        f"{path.name}: no {rule} error; got {[(f.rule_id, f.severity.value, f.location.line) for f in findings]}"
    )
    for f in hits:
        assert f.location is not None and f.location.line, "a finding must point at a line"
        assert f.path, "a finding must carry its evidence path"
    marked = _marked_lines(sources, rule)
    assert marked, f"{path.name} marks no line with '# ruleid: {rule}'"
    found = {f.location.line for f in hits}
    assert marked <= found, (
        f"{path.name}: marked lines {sorted(marked)} not all reported (reported {sorted(found)})"
    )


@pytest.mark.parametrize("rule,path", _cases("pass_"))
def test_pass_fixture_is_clean(rule, path):
    _sources, findings = _audit(rule, path)
    hits = [f for f in findings if f.rule_id == rule and f.severity in (Severity.ERROR, Severity.WARNING)]
    assert not hits, f"{path.name}: unexpected {[(f.rule_id, f.location.line, f.message) for f in hits]}"
    # legal counterparts must not fail any other C1-C4 rule either
    errors = [f for f in findings if f.rule_id in STATIC_RULES and f.severity == Severity.ERROR]
    assert not errors, f"{path.name}: {[(f.rule_id, f.location.line, f.message) for f in errors]}"


def test_every_static_rule_has_fixtures():
    for rule in STATIC_RULES:
        folder = FIXTURES / rule
        assert len(list(folder.glob("flag_*.py"))) >= 3, f"{rule}: fewer than 3 flag fixtures"
        assert list(folder.glob("pass_*.py")), f"{rule}: no pass fixture"
