"""Building findings from catalog rules, so severity/condition/confidence defaults live in one place."""

from __future__ import annotations

import os
from typing import Any

import rules
from auditor.models import Confidence, Finding, Location, Severity

# Where rule docs are published, when somebody publishes them: PGOLF_DOCS_URL (e.g. your fork's
# ``.../blob/main/rules/docs/`` or a pgolf service's ``/rules/`` base). Default: none, so findings
# point at the repository-relative doc (``rules/docs/<ID>.md``, also `pgolf rules <ID>`), never
# at a URL nobody owns.
DOCS_BASE_URL: str | None = os.environ.get("PGOLF_DOCS_URL") or None


def rule_reference(rule_id: str) -> str:
    """The link of a rule's doc: under PGOLF_DOCS_URL when set, else repository-relative."""
    if DOCS_BASE_URL is None:
        return f"rules/docs/{rule_id}.md"
    base = DOCS_BASE_URL if DOCS_BASE_URL.endswith("/") else DOCS_BASE_URL + "/"
    return base + (f"{rule_id}.md" if base.endswith("/docs/") else rule_id)


def finding(
    rule_id: str,
    message: str,
    *,
    location: Location | None = None,
    path: list[Location] | None = None,
    severity: Severity | None = None,
    confidence: Confidence | None = None,
    data: dict[str, Any] | None = None,
    reachability: str | None = None,
    origin: str = "static",
) -> Finding:
    """A finding for ``rule_id``; severity and confidence default to the rule's own."""
    rule = rules.get(rule_id)
    return Finding(
        rule_id=rule.id,
        condition=rule.condition,
        severity=severity or rule.severity,
        confidence=confidence or rule.confidence,
        message=message,
        location=location,
        path=path or [],
        data=data or {},
        reachability=reachability,
        reference=rule_reference(rule.id),
        origin=origin,
    )
