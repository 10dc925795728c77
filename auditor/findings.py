"""Building findings from catalog rules, so severity/condition/confidence defaults live in one place."""

from __future__ import annotations

import os
from typing import Any

import rules
from auditor.models import Confidence, Finding, Location, Severity

# Where rule docs are published (the service also serves them at /v1/rules/<ID>); override with
# PGOLF_DOCS_URL, e.g. your fork's blob URL or the service's /v1/rules/ base.
DOCS_BASE_URL = os.environ.get("PGOLF_DOCS_URL", "https://github.com/pgolf-dev/pgolf/blob/main/rules/docs/")


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
        reference=DOCS_BASE_URL + (f"{rule.id}.md" if DOCS_BASE_URL.endswith("/docs/") else rule.id),
        origin=origin,
    )
