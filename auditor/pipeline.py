"""The audit, as one straight line: intake -> unwrap -> parse -> checks -> verdict -> report.

`audit_paths` and `audit_git` are the two entry points (CLI and service use the same ones).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditor import __version__, checks, intake, verdict
from auditor.budget import BudgetExceeded, check, deadline
from auditor.cache import ResultCache, record_key
from auditor.context import RecordContext
from auditor.models import AuditReport, Finding, PRScope, RecordAudit, Verdict
from auditor.options import AuditOptions, Policy

__all__ = ["AuditOptions", "Policy", "RecordBudget", "audit_git", "audit_paths", "audit_record"]
from auditor.parse.logs import parse_log, unreadable_log_findings
from auditor.parse.readme import parse_readme
from auditor.parse.submission import parse_submission
from auditor.unwrap import unwrap_folder

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RecordBudget:
    """What one record's audit may cost in a worker process: wall seconds (checked at safe points,
    ``auditor/budget.py``) and address space (RLIMIT_AS, pool workers only). Over either, the record gets HYG010 and NEEDS_REVIEW and
    the rest of the tree goes on; 0 switches a limit off."""

    wall_s: float = 300.0
    memory_mb: int = 4096


def _with_rerun(budget: RecordBudget, options: AuditOptions) -> RecordBudget:
    """With --rerun a record's audit also waits for its sandboxed runs: the wall budget grows by the
    rerun's own, and the worker's address-space limit is dropped (the sandbox limits each run's
    memory itself; an inherited RLIMIT_AS would cap what the sandbox may grant)."""
    if not options.rerun:
        return budget
    wall = budget.wall_s + options.rerun_timeout_s if budget.wall_s > 0 else 0
    return RecordBudget(wall_s=wall, memory_mb=0)


def _worker_init(memory_mb: int) -> None:
    if memory_mb > 0:
        import resource

        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _budget_audit(record: intake.RecordFolder, options: AuditOptions, budget: RecordBudget) -> RecordAudit:
    """``audit_record`` under the budget; a record over it is reported, never lost."""
    try:
        with deadline(budget.wall_s):
            return audit_record(record, options)
    except BudgetExceeded:
        return over_budget(record, f"the audit of this folder took longer than its budget of {budget.wall_s:g} s "
                                   "and was stopped")
    except MemoryError:
        return over_budget(record, f"the audit of this folder ran out of its memory budget "
                                   f"({budget.memory_mb} MB per worker process) and was stopped")


def over_budget(record: intake.RecordFolder, why: str) -> RecordAudit:
    """A record whose audit was stopped: what is known (nothing was checked) as HYG010."""
    from auditor.findings import finding

    findings = [finding("HYG010", f"{why}: nothing of it was checked", data={"budget": True})]
    return RecordAudit(path=record.rel, name=record.name, track=record.track, verdict=verdict.decide(findings),
                       compliance=verdict.compliance(findings), findings=findings)


def audit_record(record: intake.RecordFolder, options: AuditOptions) -> RecordAudit:
    """Audit one record folder. Never raises for bad input: problems become findings or ERROR."""
    try:
        ctx = _gather(record, options)
        findings = checks.run_all(ctx)
        return _record_audit(ctx, findings)
    except MemoryError:
        raise  # the record's memory budget: its caller reports that (HYG010), not an internal error
    except Exception as exc:  # noqa: BLE001 - a bug in pgolf must not hide the other records' verdicts
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return RecordAudit(
            path=record.rel,
            name=record.name,
            track=record.track,
            verdict=Verdict.ERROR,
            error=f"internal error while auditing this folder: {detail}",
        )


# A record folder's logs that are read (real records ship 1-10 of a few MB); the rest is named.
MAX_LOGS_PER_RECORD = 200
MAX_LOG_BYTES_PER_RECORD = 512 * 1024 * 1024


def _logs_over_budget(rest: list[intake.FileEntry], read: int, read_bytes: int) -> Finding:
    from auditor.findings import finding
    from auditor.models import Location

    shown = ", ".join(f.rel for f in rest[:5]) + (", ..." if len(rest) > 5 else "")
    return finding(
        "HYG010",
        f"{len(rest)} logs were not read ({shown}): over the budget of {MAX_LOGS_PER_RECORD} logs or "
        f"{MAX_LOG_BYTES_PER_RECORD >> 20} MiB of logs per record ({read} logs, {read_bytes:,} bytes read)",
        location=Location(file=rest[0].rel),
        data={"not_read": len(rest), "files": [f.rel for f in rest[:50]], "budget_logs": MAX_LOGS_PER_RECORD},
    )


def _gather(record: intake.RecordFolder, options: AuditOptions) -> RecordContext:
    ctx = RecordContext(record=record, options=options)
    ctx.intake_findings = intake.required_files_findings(record) + intake.unsafe_path_findings(record)

    entry = record.entry_script
    unwrapped = unwrap_folder(
        record.root,
        [record.root / f.rel for f in record.scripts],
        entry=entry.rel if entry is not None else None,
    )
    ctx.sources = unwrapped.sources
    ctx.intake_findings += unwrapped.findings

    # within the budget, the likeliest run logs first (*.log, train*), then in the folder's order
    ranked = sorted(record.logs, key=lambda f: (not f.rel.endswith(".log"), "train" not in f.rel.lower(), f.rel))
    chosen, read_bytes = [], 0
    for n, entry in enumerate(ranked):
        if n >= MAX_LOGS_PER_RECORD or read_bytes + entry.size > MAX_LOG_BYTES_PER_RECORD:
            ctx.intake_findings.append(_logs_over_budget(ranked[n:], n, read_bytes))
            break
        chosen.append(entry)
        read_bytes += entry.size
    for entry in sorted(chosen, key=lambda f: f.rel):
        check()
        ctx.logs.append(parse_log(record.root / entry.rel, entry.rel))
    ctx.intake_findings += unreadable_log_findings(ctx.logs)

    if record.submission_json is not None:
        parsed = parse_submission(record.root / record.submission_json.rel, record.submission_json.rel)
        ctx.submission = parsed.submission
        ctx.submission_file = record.submission_json.rel
        ctx.intake_findings += parsed.findings

    if record.readme is not None:
        ctx.readme = parse_readme(record.root / record.readme.rel, record.readme.rel)
        ctx.intake_findings += ctx.readme.findings
    return ctx


MAX_LISTED_FILES = 200  # RecordAudit.files: enough to anchor findings, bounded for hostile folders


def _with_wrapper_lines(findings: list[Finding], ctx: RecordContext) -> list[Finding]:
    """Locations in a decoded payload also name the shipped file's line that holds the payload,
    so a viewer of the shipped file (code scanning) lands on the wrapper line, not on line 1."""
    lines = {s.wrapper: s.shipped_line for s in ctx.sources if s.wrapper and s.shipped_line}
    if not lines:
        return findings

    def fill(loc):
        if loc is None or not loc.wrapper or loc.wrapper_line is not None or loc.wrapper not in lines:
            return loc
        return loc.model_copy(update={"wrapper_line": lines[loc.wrapper]})

    return [f.model_copy(update={"location": fill(f.location), "path": [fill(p) for p in f.path]}) for f in findings]


def _record_audit(ctx: RecordContext, findings: list[Finding]) -> RecordAudit:
    runs = [log.to_seed_run() for log in ctx.logs]
    seen: dict[str, str] = {}
    for log, run in zip(ctx.logs, runs):
        if not log.sha256:  # unreadable: never a duplicate of anything
            continue
        if log.sha256 in seen:
            run.duplicate_of = seen[log.sha256]
        else:
            seen[log.sha256] = log.rel
    findings = verdict.sort_findings(_with_wrapper_lines(findings, ctx))
    return RecordAudit(
        path=ctx.record.rel,
        name=ctx.record.name,
        track=ctx.record.track,
        verdict=verdict.decide(findings),
        compliance=verdict.compliance(findings),
        eligibility=verdict.eligibility(
            findings, ctx.significance, non_record_track=intake.is_non_record(ctx.record, ctx.submission)
        ),
        findings=findings,
        runs=runs,
        claimed=ctx.submission.summary() if ctx.submission is not None else {},
        significance=ctx.significance,
        rerun=ctx.rerun_summary,
        files=sorted(f.rel for f in ctx.record.files if f.top_level and f.usable)[:MAX_LISTED_FILES],
        sources=[
            {
                "file": s.path,
                "wrapper": s.wrapper,
                "chain": list(s.chain),
                "shipped_bytes": s.shipped_bytes,
                "decoded_bytes": s.decoded_bytes,
                "parse_error": s.parse_error,
                "entry": s.is_entry,
            }
            for s in ctx.sources
        ],
    )


def audit_paths(
    paths: list[Path],
    options: AuditOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    jobs: int | None = None,
    cache: ResultCache | None = None,
    budget: RecordBudget | None = None,
) -> AuditReport:
    """Audit record folders or records trees. Raises InputError for a path that cannot be read.
    With ``cache``, unchanged records come from it (and fresh results go into it); ``budget``
    bounds what each record's audit may cost."""
    options = options or AuditOptions()
    records: list[intake.RecordFolder] = []
    for path in paths:
        records.extend(intake.discover_records(Path(path)))
    audits = _audit_all(records, options, progress=progress, jobs=jobs, cache=cache, budget=budget)
    root = Path(paths[0]).resolve() if len(paths) == 1 else None
    return _report(audits, options, findings=[], root=root)


def audit_git(
    repo: str,
    ref: str,
    base: str | None,
    options: AuditOptions | None,
    workdir: Path,
    *,
    progress: ProgressFn | None = None,
    cache: ResultCache | None = None,
    budget: RecordBudget | None = None,
    **git_limits,
) -> AuditReport:
    """Audit what a git ref (a PR head) adds. With ``base``, only the record folders it adds.
    ``git_limits`` go to `intake.checkout_git` (``timeout_s``, ``max_bytes``, ...)."""
    options = options or AuditOptions()
    with intake.checkout_git(repo, ref, base, workdir, **git_limits) as checkout:
        audits = _audit_all(checkout.records, options, progress=progress, jobs=None, cache=cache, budget=budget)
        return _report(audits, options, findings=checkout.scope_findings(), pr=checkout.pr_scope())


def _audit_all(
    records: list[intake.RecordFolder],
    options: AuditOptions,
    *,
    progress: ProgressFn | None,
    jobs: int | None,
    cache: ResultCache | None = None,
    budget: RecordBudget | None = None,
) -> list[RecordAudit]:
    budget = _with_rerun(budget or RecordBudget(), options)
    keys = [record_key(rec, options) for rec in records] if cache is not None else [None] * len(records)
    audits: list[RecordAudit | None] = [cache.get(k) if cache is not None else None for k in keys]
    todo = [i for i, a in enumerate(audits) if a is None]
    for i, a in enumerate(audits):
        if a is not None and progress:
            progress(records[i].rel)

    def done(i: int, audit: RecordAudit) -> None:
        audits[i] = audit
        if cache is not None:
            cache.put(keys[i], audit)
        if progress:
            progress(records[i].rel)

    # Process-level parallelism only pays for itself on trees; one folder stays in-process.
    workers = jobs if jobs is not None else min(len(todo), os.cpu_count() or 1, 8)
    if workers <= 1 or len(todo) < 4:
        for i in todo:
            done(i, _budget_audit(records[i], options, budget))
        return [a for a in audits if a is not None]
    lost: list[int] = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(budget.memory_mb,)) as pool:
        futures = [(i, pool.submit(_budget_audit, records[i], options, budget)) for i in todo]
        for i, fut in futures:
            try:
                done(i, fut.result())
            except BrokenProcessPool:
                lost.append(i)  # a worker died (killed at its memory limit, say): which one is unknown
    for i in lost:  # one at a time in a fresh worker, so that the folder that kills it is the one named
        with ProcessPoolExecutor(max_workers=1, initializer=_worker_init, initargs=(budget.memory_mb,)) as pool:
            try:
                done(i, pool.submit(_budget_audit, records[i], options, budget).result())
            except BrokenProcessPool:
                done(i, over_budget(records[i], f"the worker process auditing this folder died (memory budget "
                                                f"{budget.memory_mb} MB per worker process)"))
    return [a for a in audits if a is not None]


def _report(
    audits: list[RecordAudit],
    options: AuditOptions,
    *,
    findings: list[Finding],
    pr: PRScope | None = None,
    root: Path | None = None,
) -> AuditReport:
    # Fail closed: an audit that found no record folder checked nothing, so it cannot PASS.
    error = None if audits else "no record folder was found to audit, so nothing was checked"
    overall = verdict.combine([a.verdict for a in audits] + [verdict.decide(findings, error=error)])
    return AuditReport(
        tool_version=__version__,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        verdict=overall,
        error=error,
        records=audits,
        pr=pr,
        findings=verdict.sort_findings(findings),
        # `root` lets SARIF resolve the record paths (they are relative to the audited tree).
        options={**options.model_dump(mode="json"), **({"root": str(root)} if root else {})},
    )
