"""From findings to verdicts, on two axes.

*Compliance* (C1-C4 and HYGIENE: is the evaluation valid?) and *eligibility* (LIMIT, CLAIM, SIG:
is it a new record?) are decided apart, so "not significant" never reads as a violation.

The overall verdict FAILs only on what we can stand behind: a compliance error with `proof` or
`strong` confidence, or a hard limit broken with `proof` (a log-reported artifact over the cap). Paperwork (a missing
file, a PR that changes more than its folder) makes a record not eligible and asks for review.
Any other error, or a warning that asks for a human, gives NEEDS_REVIEW. SIG findings never move
the overall verdict (they decide eligibility), and info findings never change anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from auditor.models import (
    Condition,
    Confidence,
    Eligibility,
    EligibilityStatus,
    Finding,
    Severity,
    Significance,
    Verdict,
)

COMPLIANCE_CONDITIONS = frozenset({Condition.C1, Condition.C2, Condition.C3, Condition.C4, Condition.HYGIENE})
# HYGIENE rules about the submission's paperwork, not its evaluation (required files, PR scope, a
# readable submission.json and logs): they decide eligibility. Eval hygiene (network, undecodable
# or self-modifying wrappers, unsafe paths, code the audit could not read) stays on compliance.
SUBMISSION_FORMAT_RULES = frozenset({"HYG001", "HYG002", "HYG003", "HYG004"})


def axis(f: Finding) -> str:
    """``compliance`` or ``eligibility``: which verdict axis a finding belongs to."""
    if f.condition in COMPLIANCE_CONDITIONS and f.rule_id not in SUBMISSION_FORMAT_RULES:
        return "compliance"
    return "eligibility"

# Warnings that do not need a reviewer's eyes (they are reported, but the submission can pass).
_SOFT_WARNING_RULES = frozenset({"HYG004"})
_FIRM = (Confidence.PROOF, Confidence.STRONG)


def decide(findings: Iterable[Finding], *, error: str | None = None) -> Verdict:
    """The overall verdict of one record (or of findings not tied to a record)."""
    if error is not None:
        return Verdict.ERROR
    verdict = Verdict.PASS
    for f in findings:
        if f.condition is Condition.SIG:
            continue  # eligibility only: see `eligibility`
        if _fails(f):
            return Verdict.FAIL
        if _asks_for_review(f):
            verdict = Verdict.NEEDS_REVIEW
    return verdict


def compliance(findings: Iterable[Finding], *, error: str | None = None) -> Verdict:
    """The compliance axis alone: C1-C4 and eval hygiene."""
    return decide([f for f in findings if axis(f) == "compliance"], error=error)


_POLICY_NAMES = {"readme": "README rule", "frontier": "maintainers' frontier policy"}


def eligibility(
    findings: Iterable[Finding], significance: Significance | None, *, non_record_track: bool
) -> Eligibility:
    """The eligibility axis: limits, claims and significance against the previous record."""
    findings = list(findings)
    broken = [
        f
        for f in findings
        if axis(f) == "eligibility" and f.condition is not Condition.SIG and f.severity is Severity.ERROR
    ]
    if broken:
        return Eligibility(status=EligibilityStatus.NOT_ELIGIBLE, reasons=[_reason(f) for f in broken])
    if non_record_track:
        return Eligibility(
            status=EligibilityStatus.NON_RECORD_TRACK,
            reasons=["the non-record track has no significance bar"],
        )
    unchecked = [f for f in findings if f.condition is Condition.LIMIT and f.severity is Severity.WARNING]
    rows = significance.rows if significance is not None else []
    if not rows:
        sig_notes = [_reason(f) for f in findings if f.condition is Condition.SIG]
        return Eligibility(
            status=EligibilityStatus.UNDETERMINED,
            reasons=["no significance test could be computed (no baseline or no seed scores)"]
            + sig_notes
            + [_reason(f) for f in unchecked],
        )
    # Each policy is decided on one row (its unit); the other unit is shown, never decisive.
    decisive = [r for r in rows if r.decisive] or rows
    failing = [r for r in decisive if not r.significant]
    if failing:
        reasons = [
            f"not a new record under the {_POLICY_NAMES.get(r.policy, r.policy + ' policy')} against "
            f"{r.baseline} ({r.unit}: improvement {r.delta:.5f}, margin {r.margin:.5f}, "
            f"p={_p(r.p_value)}, alpha {r.alpha})"
            for r in failing
        ]
        reasons += significance.notes
        return Eligibility(status=EligibilityStatus.NOT_A_NEW_RECORD, reasons=reasons)
    if unchecked:
        return Eligibility(status=EligibilityStatus.UNDETERMINED, reasons=[_reason(f) for f in unchecked])
    return Eligibility(
        status=EligibilityStatus.RECORD_ELIGIBLE,
        reasons=[
            f"significant under every policy in effect ({', '.join(significance.policies) or 'none'}) against "
            + rows[0].baseline,
            *significance.notes,
        ],
    )


def _fails(f: Finding) -> bool:
    if f.severity is not Severity.ERROR or f.data.get("reach") == "unreachable":
        return False
    if axis(f) == "compliance":
        return f.confidence in _FIRM
    return f.condition is Condition.LIMIT and f.confidence is Confidence.PROOF


def _asks_for_review(f: Finding) -> bool:
    if f.severity is Severity.ERROR:
        return True
    return f.severity is Severity.WARNING and not _soft(f)


def _soft(f: Finding) -> bool:
    """A warning reported for the record but not worth a reviewer's time on its own: a soft rule,
    or code that the effective configuration (README command, logged hyperparameters) never runs."""
    return f.rule_id in _SOFT_WARNING_RULES or f.data.get("reach") == "unreachable"


def _reason(f: Finding) -> str:
    return f"{f.rule_id}: {f.message}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.4g}"


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
