"""From findings to a verdict.

FAIL needs an error we can stand behind (confidence proof or strong). A heuristic error, or a
warning that asks for a human, gives NEEDS_REVIEW. Info findings never change the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable

from auditor.models import Confidence, Finding, Severity, Verdict

# Warnings that do not need a reviewer's eyes (they are reported, but the submission can pass).
_SOFT_WARNING_RULES = frozenset({"SIG001", "SIG004", "HYG004"})


def decide(findings: Iterable[Finding], *, error: str | None = None) -> Verdict:
    if error is not None:
        return Verdict.ERROR
    verdict = Verdict.PASS
    for f in findings:
        if f.severity is Severity.ERROR and f.confidence in (Confidence.PROOF, Confidence.STRONG):
            return Verdict.FAIL
        if f.severity is Severity.ERROR or (f.severity is Severity.WARNING and not _soft(f)):
            verdict = Verdict.NEEDS_REVIEW
    return verdict


def _soft(f: Finding) -> bool:
    """A warning reported for the record but not worth a reviewer's time on its own: a soft rule,
    or code that the effective configuration (README command, logged hyperparameters) never runs."""
    return f.rule_id in _SOFT_WARNING_RULES or f.data.get("reach") == "unreachable"


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The overall verdict of several records: the worst one wins."""
    order = [Verdict.PASS, Verdict.NEEDS_REVIEW, Verdict.FAIL, Verdict.ERROR]
    worst = Verdict.PASS
    for v in verdicts:
        if order.index(v) > order.index(worst):
            worst = v
    return worst


SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
CONFIDENCE_ORDER = {Confidence.PROOF: 0, Confidence.STRONG: 1, Confidence.HEURISTIC: 2}


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (
            SEVERITY_ORDER[f.severity],
            CONFIDENCE_ORDER[f.confidence],
            f.rule_id,
            f.location.file if f.location else "",
            (f.location.line or 0) if f.location else 0,
        ),
    )
