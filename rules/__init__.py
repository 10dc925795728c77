"""The rule catalog.

One Markdown file per rule in ``rules/docs/<ID>.md``. Each starts with a TOML front matter block
between ``+++`` lines (id, name, condition, severity, confidence, summary) followed by the fixed
sections of the doc (see ``DOC_SECTIONS``). Fixtures live in ``rules/fixtures/<ID>/``: files or
folders whose names start with ``flag_`` must raise the rule, ``pass_`` must not. In ``.py``
fixtures a ``# ruleid: <ID>`` comment marks a line the finding must point at (Semgrep style).

The catalog is read from the docs so a rule cannot exist without its documentation.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from auditor.models import Condition, Confidence, Severity

DOCS_DIR = Path(__file__).parent / "docs"
FIXTURES_DIR = Path(__file__).parent / "fixtures"
LEADERBOARD_FILE = Path(__file__).parent / "leaderboard.json"

DOC_SECTIONS = (
    "## What it detects",
    "## Why it matters",
    "## Example",
    "## Legal alternative",
)


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    condition: Condition
    severity: Severity
    confidence: Confidence
    summary: str
    doc: str = field(repr=False)
    doc_path: Path = field(repr=False)
    references: tuple[str, ...] = ()

    @property
    def fixtures_dir(self) -> Path:
        return FIXTURES_DIR / self.id

    def section(self, heading: str) -> str:
        """Text of one doc section (without its heading)."""
        lines = self.doc.splitlines()
        out: list[str] = []
        inside = False
        for line in lines:
            if line.startswith("## "):
                inside = line.strip() == heading
                continue
            if inside:
                out.append(line)
        return "\n".join(out).strip()


class RuleDocError(ValueError):
    pass


def _parse_doc(path: Path) -> Rule:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("+++\n"):
        raise RuleDocError(f"{path}: missing +++ front matter")
    end = text.find("\n+++\n", 4)
    if end < 0:
        raise RuleDocError(f"{path}: unterminated front matter")
    meta = tomllib.loads(text[4:end])
    body = text[end + 5 :].strip() + "\n"
    try:
        rule = Rule(
            id=meta["id"],
            name=meta["name"],
            condition=Condition(meta["condition"]),
            severity=Severity(meta["severity"]),
            confidence=Confidence(meta["confidence"]),
            summary=meta["summary"],
            references=tuple(meta.get("references", ())),
            doc=body,
            doc_path=path,
        )
    except (KeyError, ValueError) as exc:
        raise RuleDocError(f"{path}: bad front matter: {exc}") from exc
    if rule.id != path.stem:
        raise RuleDocError(f"{path}: id {rule.id!r} does not match the file name")
    return rule


@lru_cache(maxsize=1)
def catalog() -> dict[str, Rule]:
    rules = {}
    for path in sorted(DOCS_DIR.glob("*.md")):
        rule = _parse_doc(path)
        rules[rule.id] = rule
    return rules


def get(rule_id: str) -> Rule:
    try:
        return catalog()[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule {rule_id!r}") from None
