"""Building findings from catalog rules, so severity/condition/confidence defaults live in one place."""

from __future__ import annotations

from typing import Any

import rules
from auditor.models import Confidence, Finding, Location, Severity

DOCS_BASE_URL = "https://github.com/pgolf-dev/pgolf/blob/main/rules/docs/"


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
        reference=DOCS_BASE_URL + f"{rule.id}.md",
        origin=origin,
    )
