"""CLM008: self-declared compliance flags in submission.json that the evidence contradicts.

Runs last, over the other checks' findings: a `"no_slot": true` next to a SLOT finding is worth
saying out loud, because reviewers tend to read the flags first."""

from __future__ import annotations

from auditor.checks.claims import claim_location
from auditor.context import RecordContext
from auditor.findings import finding
from auditor.models import Finding, Severity

# submission.json compliance flag (normalized by the parser) -> rules whose errors contradict it
FLAG_RULES = {
    "no_slot": ("C302",),
    "no_pre_quant_ttt": ("C301",),
    "score_first_ttt": ("C301",),
    "no_ngram_cache": ("C101", "C201"),
    "no_hashed_ngram_cache": ("C101", "C201"),
    "no_etlb": ("C302",),
    "smeargate_bos_fix": ("C103",),
    "artifact_under_16mb": ("LIM001",),
    "train_under_600s": ("LIM003",),
    "eval_under_600s": ("LIM004",),
    "three_seeds": ("SIG003",),
}


def check(ctx: RecordContext, findings: list[Finding]) -> list[Finding]:
    sub = ctx.submission
    if sub is None or not sub.compliance_flags:
        return []
    out = []
    for flag, declared in sorted(sub.compliance_flags.items()):
        if declared is not True or flag not in FLAG_RULES:
            continue
        against = [f for f in findings if f.rule_id in FLAG_RULES[flag]
                   and (f.severity is Severity.ERROR or f.rule_id == "SIG003")]
        if not against:
            continue
        first = against[0]
        out.append(finding(
            "CLM008",
            f"submission.json declares {flag}=true, but pgolf found {first.rule_id}: {first.message}",
            location=claim_location(ctx, f"compliance.{flag}", key_path=f"compliance.{flag}"),
            path=[loc for f in against[:3] if (loc := f.location) is not None],
            confidence=first.confidence,
            data={"flag": flag, "contradicted_by": sorted({f.rule_id for f in against})},
            origin="metadata",
        ))
    return out
