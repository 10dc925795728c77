"""The rule catalog: every rule is documented, and its fixtures are flagged / passed as annotated.

Fixtures (Semgrep style) live in rules/fixtures/<ID>/: `flag_*` must raise the rule, `pass_*` must
not; a `.py` fixture is audited as the `train_gpt.py` of an otherwise empty record folder, and each
line marked `# ruleid: <ID>` must be pointed at by a finding (its location or a step of its path).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import rules
from auditor import intake
from auditor.pipeline import AuditOptions, audit_record

# Rules whose evidence needs something a fixture folder cannot hold; the named tests cover them.
COVERED_ELSEWHERE = {
    "HYG002": "a pull request's diff: tests/test_intake_git.py builds real git repositories",
    "HYG009": "symlinks leaving the folder: tests/test_intake_discovery.py creates them at run time",
}
DYNAMIC_PREFIX = "DYN"  # dynamic-rerun rules: their subjects are run by tests/test_rerun_*.py


def _fixtures():
    for rule_id, rule in sorted(rules.catalog().items()):
        if not rule.fixtures_dir.is_dir():
            continue
        for item in sorted(rule.fixtures_dir.iterdir()):
            if item.name.startswith(("flag_", "pass_")):
                yield pytest.param(rule_id, item, id=f"{rule_id}/{item.name}")


def test_catalog_is_not_empty_and_ids_are_stable_shape():
    catalog = rules.catalog()
    assert len(catalog) >= 30
    for rule_id in catalog:
        assert re.fullmatch(r"[A-Z]{1,3}\d{3}", rule_id), rule_id


@pytest.mark.parametrize("rule_id", sorted(rules.catalog()))
def test_rule_doc_has_fixed_sections(rule_id):
    rule = rules.get(rule_id)
    for heading in rules.DOC_SECTIONS:
        assert heading in rule.doc, f"{rule_id}: missing section {heading!r}"
        assert rule.section(heading), f"{rule_id}: empty section {heading!r}"
    assert rule.summary and len(rule.summary) < 200


@pytest.mark.parametrize("rule_id", sorted(rules.catalog()))
def test_rule_has_flag_fixture_or_named_coverage(rule_id):
    if rule_id in COVERED_ELSEWHERE or rule_id.startswith(DYNAMIC_PREFIX):
        return
    fixtures = rules.get(rule_id).fixtures_dir
    flags = list(fixtures.glob("flag_*")) if fixtures.is_dir() else []
    assert flags, f"{rule_id} has no must-flag fixture in {fixtures}"


# The SIG fixtures are written against PR #1514's seeds (the default baseline is chosen by merge
# dates, which the fixtures' own dates do not pin down): they are audited as `--baseline 1514`.
FIXTURE_OPTIONS = {rule: {"baseline": "1514"} for rule in ("SIG001", "SIG002", "SIG003", "SIG004")}


def _audit_fixture(item: Path, tmp_path: Path):
    rule_id = item.parent.name
    if item.is_dir():
        folder = item
    else:
        folder = tmp_path / "record"
        folder.mkdir()
        shutil.copy(item, folder / "train_gpt.py")
    records = intake.discover_records(folder)
    assert len(records) == 1
    return audit_record(records[0], AuditOptions(**FIXTURE_OPTIONS.get(rule_id, {})))


def _marked_lines(item: Path, rule_id: str) -> list[tuple[str, int]]:
    files = [item] if item.is_file() else sorted(p for p in item.rglob("*.py"))
    marks = []
    for path in files:
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if re.search(rf"#\s*ruleid:\s*{re.escape(rule_id)}\b", line):
                name = "train_gpt.py" if item.is_file() else path.relative_to(item).as_posix()
                marks.append((name, no))
    return marks


@pytest.mark.parametrize("rule_id,item", list(_fixtures()))
def test_fixture(rule_id, item, tmp_path):
    audit = _audit_fixture(item, tmp_path)
    assert audit.error is None, audit.error
    hits = [f for f in audit.findings if f.rule_id == rule_id]
    if item.name.startswith("pass_"):
        assert not hits, f"{item} must pass {rule_id}: " + "; ".join(f.message for f in hits)
        return
    assert hits, f"{item} must raise {rule_id}; got {[f.rule_id for f in audit.findings]}"
    for f in hits:  # evidence: every finding says where and why
        assert f.message and f.location is not None and f.location.file
    pointed = {(loc.file, loc.line) for f in hits for loc in [f.location, *f.path] if loc is not None}
    for mark in _marked_lines(item, rule_id):
        assert mark in pointed, f"{item}: no {rule_id} finding points at {mark}; got {sorted(pointed, key=str)}"
