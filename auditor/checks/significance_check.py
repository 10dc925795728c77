"""SIG: the record's seeds against its baseline (`--baseline`, else the shipped leaderboard)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from auditor import intake, significance
from auditor.context import RecordContext
from auditor.errors import InputError
from auditor.models import Finding


def check(ctx: RecordContext) -> list[Finding]:
    runs = [log.to_seed_run() for log in ctx.unique_logs if log.reported is not None]
    if not runs:
        return []
    if intake.is_non_record(ctx.record, ctx.submission):
        return []  # no record bar (outside a records tree, the JSON's own track says so)
    baseline = resolve_baseline(ctx.options.baseline) if ctx.options.baseline else None
    result = significance.significance_for_record(
        ctx.record.root,
        runs,
        track=ctx.record.track,
        claimed=ctx.submission.summary() if ctx.submission is not None else None,
        baseline=baseline,
        opened=ctx.record.opened,
        policy=ctx.options.policy,
    )
    if result is None:
        return []
    ctx.significance = result.significance
    return result.findings


@lru_cache(maxsize=8)
def resolve_baseline(spec: str) -> significance.Baseline:
    """A baseline record folder on disk, or a leaderboard row named by folder, name or PR number."""
    path = Path(spec)
    if path.is_dir():
        from auditor import intake
        from auditor.parse.logs import parse_log

        records = intake.discover_records(path)
        if len(records) != 1:
            raise InputError(f"--baseline {spec}: expected one record folder, found {len(records)}")
        rec = records[0]
        logs = [parse_log(rec.root / f.rel, f.rel) for f in rec.logs]
        runs = [log.to_seed_run() for log in logs if log.reported is not None]
        if not runs:
            raise InputError(f"--baseline {spec}: no final metric line in its logs")
        return significance.baseline_from_record(rec.name, runs)
    key = spec.lstrip("#")
    for row in significance.load_leaderboard():
        if spec in (row.folder, row.name) or (key.isdigit() and row.pr == int(key)):
            return row.to_baseline()
    raise InputError(
        f"--baseline {spec}: not a record folder nor a leaderboard row (see rules/leaderboard.json)"
    )
