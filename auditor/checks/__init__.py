"""The checks of one record folder, in the order they run. Each takes the RecordContext and returns
findings; none of them executes submission code (the dynamic rerun runs it in a sandbox)."""

from __future__ import annotations

from auditor.budget import check as check_budget
from auditor.checks import claims, declared, limits, rerun_check, significance_check, static_check
from auditor.context import RecordContext
from auditor.models import Finding

CHECKS = (
    claims.check,  # CLM*: submission.json and README against the logs and shipped code
    limits.check,  # LIM*: bytes per seed, train and eval time (knows which logs back the claim)
    significance_check.check,  # SIG*: against the previous record
    static_check.check,  # C1-C4 dataflow detectors, network, val data on the training path
)


def run_all(ctx: RecordContext) -> list[Finding]:
    findings = list(ctx.intake_findings)
    for check in CHECKS:
        check_budget()  # the record's wall-clock budget, between checks
        findings.extend(check(ctx))
    findings.extend(rerun_check.check(ctx, findings))  # only with --rerun: runs the script, sandboxed
    findings.extend(declared.check(ctx, findings))  # self-declared flags against all of the above
    return findings
