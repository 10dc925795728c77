"""POST an audit (git ref, PR number, or an uploaded record folder); read its state and reports."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api import html
from api.archive import ArchiveError, sniff_format
from api.db import DONE, FAILED, QUEUED, RUNNING, Audit, Upload
from api.routers import load_or_404
from api.schemas import AuditList, AuditOut, AuditRequest, AuditSummary, ErrorOut, Links, RerunState, Source
from api.security import caller_for_post
from api.sources import SourceError, check_ref, check_repo, resolve_commit
from auditor import __version__
from auditor.options import AuditOptions

router = APIRouter(tags=["audits"])

ERRORS = {
    401: {"model": ErrorOut, "description": "missing or unknown API token"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "invalid request, repository, ref or archive"},
    429: {"model": ErrorOut, "description": "rate limit reached (see Retry-After)"},
    503: {"model": ErrorOut, "description": "submissions disabled (no tokens configured)"},
}
NOT_FOUND = {404: {"model": ErrorOut, "description": "no such audit"}}


def idempotency_key(*parts: str | None) -> str:
    """Same input, same options, same pgolf version -> same audit (a new version re-audits)."""
    return hashlib.sha256("\x1f".join([__version__, *(p or "" for p in parts)]).encode()).hexdigest()


def _links(audit_id: str) -> Links:
    base = f"/v1/audits/{audit_id}"
    return Links(self=base, html=f"/audits/{audit_id}", json=f"{base}/report.json",
                 markdown=f"{base}/report.md", sarif=f"{base}/report.sarif")


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def audit_out(job: Audit) -> AuditOut:
    rerun = None
    if job.rerun_status is not None:
        rerun = RerunState(status=job.rerun_status, attempts=job.rerun_attempts, job_id=job.rerun_job_id,
                           error=job.rerun_error,
                           results=json.loads(job.rerun_json) if job.rerun_json else None)
    return AuditOut(
        id=job.id, status=job.status,
        source=Source(kind=job.kind, repo=job.repo, ref=job.ref, base=job.base, pr=job.pr_number,
                      commit=job.commit, base_commit=job.base_commit, upload_name=job.upload_name,
                      upload_sha256=job.upload_sha256),
        options=json.loads(job.options_json), submitted_by=job.submitted_by, attempts=job.attempts,
        error=job.error, created_at=_utc(job.created_at), started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at),
        verdict=job.verdict, report=json.loads(job.report_json) if job.report_json else None,
        rerun=rerun, links=_links(job.id),
    )


def _check_inflight(s, caller: str | None, limit: int) -> None:
    """One caller's queued and running audits are bounded, so that a flood from one token (each
    request within the rate limit) cannot hold every worker while other callers wait."""
    inflight = s.scalar(select(func.count()).select_from(Audit).where(
        Audit.submitted_by == caller, Audit.status.in_((QUEUED, RUNNING))))
    if inflight >= limit:
        raise HTTPException(429, detail=f"{inflight} audits submitted by {caller!r} are queued or running, the "
                                        f"limit per caller; submit more when they finish",
                            headers={"Retry-After": "30"})


def _create_or_get(request: Request, response: Response, job: Audit, upload: bytes | None) -> AuditOut:
    """Insert the job (committed before we answer) or return the one with the same key."""
    state = request.app.state
    outcome = "created"
    with state.sessions() as s:
        existing = s.scalar(select(Audit).where(Audit.idem_key == job.idem_key))
        if existing is None:
            _check_inflight(s, job.submitted_by, state.settings.max_inflight_per_caller)
            try:
                s.add(job)
                s.flush()  # the audit row must exist before the upload row that refers to it
                if upload is not None:
                    s.add(Upload(audit_id=job.id, data=upload))
                s.commit()
            except IntegrityError:  # a concurrent identical submission won the race (at flush or commit)
                s.rollback()
                existing = s.scalar(select(Audit).where(Audit.idem_key == job.idem_key))
                if existing is None:
                    raise
        if existing is not None:
            job, outcome = existing, "existing"
            if job.status == FAILED:  # asking again for a failed audit retries it
                job.status, job.attempts, job.error, job.finished_at = QUEUED, 0, None, None
                job.verdict = job.report_json = job.worker_id = job.started_at = None
                if job.rerun_status is not None:
                    job.rerun_status, job.rerun_attempts, job.rerun_job_id = QUEUED, 0, None
                    job.rerun_json = job.rerun_error = None
                s.commit()
                outcome = "retried"
        out = audit_out(job)
    state.metrics.submitted.labels(out.source.kind, outcome).inc()
    if out.status != DONE:
        state.runner.wake()
    response.status_code = 200 if out.status == DONE else 202
    response.headers["Location"] = out.links.self
    return out


def _rerun_allowed(request: Request, options: AuditOptions) -> None:
    if options.rerun and not request.app.state.settings.redis_url:
        raise HTTPException(422, detail="reruns need a GPU worker queue; this server has none "
                                        "(start it with --redis-url and run `pgolf worker` on a GPU host)")


@router.post("/v1/audits", response_model=AuditOut, status_code=202,
             responses={200: {"model": AuditOut, "description": "this exact audit already exists and is done"},
                        **ERRORS})
def submit_git(body: AuditRequest, request: Request, response: Response,
               caller: Annotated[str, Depends(caller_for_post)]) -> AuditOut:
    """Audit a git ref, or PR ``pr`` of the configured upstream. Same commit + options = same audit."""
    settings = request.app.state.settings
    _rerun_allowed(request, body.options)
    try:
        if body.pr is not None:
            kind, ref = "pr", f"refs/pull/{body.pr}/head"
            repo = check_repo(body.repo, settings) if body.repo else settings.upstream
        else:
            kind, ref = "git", check_ref(body.ref)
            repo = check_repo(body.repo, settings)
        base = check_ref(body.base) if body.base else None
        commit = resolve_commit(repo, ref, settings)
        base_commit = resolve_commit(repo, base, settings) if base else None
    except SourceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    options_json = body.options.model_dump_json()
    job = Audit(
        idem_key=idempotency_key("git", commit, base_commit, options_json),
        kind=kind, repo=repo, ref=ref, base=base, pr_number=body.pr, commit=commit, base_commit=base_commit,
        options_json=options_json, submitted_by=caller, status=QUEUED, attempts=0,
        rerun_status=QUEUED if body.options.rerun else None, rerun_attempts=0,
    )
    return _create_or_get(request, response, job, None)


@router.post("/v1/audits/upload", response_model=AuditOut, status_code=202,
             responses={200: {"model": AuditOut, "description": "this exact audit already exists and is done"},
                        **ERRORS})
def submit_upload(request: Request, response: Response,
                  file: Annotated[UploadFile, File(description="a record folder as .zip, .tar or .tar.gz")],
                  caller: Annotated[str, Depends(caller_for_post)],
                  options: Annotated[str | None, Form(description="AuditOptions as JSON")] = None) -> AuditOut:
    """Audit an uploaded record folder. The archive is extracted (with safety checks) in a worker."""
    settings = request.app.state.settings
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, detail=f"archive over {settings.max_upload_bytes:,} bytes")
    try:
        sniff_format(data)
    except ArchiveError as exc:
        raise HTTPException(422, detail=f"archive rejected: {exc}") from None
    try:
        opts = AuditOptions.model_validate_json(options) if options else AuditOptions()
        from api.schemas import check_options

        check_options(opts)
    except (ValidationError, ValueError) as exc:
        raise HTTPException(422, detail=f"invalid options: {exc}") from None
    _rerun_allowed(request, opts)
    digest = hashlib.sha256(data).hexdigest()
    options_json = opts.model_dump_json()
    name = (file.filename or "upload")[:200]
    job = Audit(
        idem_key=idempotency_key("upload", digest, None, options_json),
        kind="upload", upload_name=name, upload_sha256=digest, options_json=options_json,
        submitted_by=caller, status=QUEUED, attempts=0,
        rerun_status=QUEUED if opts.rerun else None, rerun_attempts=0,
    )
    return _create_or_get(request, response, job, data)


@router.get("/v1/audits", response_model=AuditList)
def list_audits(request: Request, limit: int = Query(50, ge=1, le=500),
                status: Literal["queued", "running", "rerunning", "done", "failed"] | None = None) -> AuditList:
    """The most recent audits, newest first."""
    with request.app.state.sessions() as s:
        q = select(Audit).order_by(Audit.created_at.desc()).limit(limit)
        if status:
            q = q.where(Audit.status == status)
        rows = s.scalars(q).all()
        return AuditList(audits=[AuditSummary(id=r.id, status=r.status, kind=r.kind, verdict=r.verdict,
                                              created_at=_utc(r.created_at), finished_at=_utc(r.finished_at),
                                              label=html.source_label(r)) for r in rows])


def load(request: Request, audit_id: str) -> Audit:
    return load_or_404(request, Audit, audit_id, "audit")


@router.get("/v1/audits/{audit_id}", response_model=AuditOut, responses=NOT_FOUND)
def get_audit(audit_id: str, request: Request) -> AuditOut:
    """Status, and once done the versioned verdict JSON (same as `pgolf audit -f json`)."""
    return audit_out(load(request, audit_id))


REPORT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8",
                "sarif": "application/sarif+json", "html": "text/html; charset=utf-8"}


@router.get("/v1/audits/{audit_id}/report.{fmt}", responses={
    **NOT_FOUND, 409: {"model": ErrorOut, "description": "the audit has no verdict yet (or failed)"},
    200: {"content": {t: {} for t in REPORT_TYPES.values()}, "description": "the report"}})
def get_report(audit_id: str, fmt: Literal["json", "md", "sarif", "html"], request: Request) -> Response:
    """The report as the CLI writes it: ``-f json``, ``-f markdown`` (a PR comment), ``-f sarif``;
    ``html`` is the page a person reads."""
    job = load(request, audit_id)
    if fmt == "html":
        return HTMLResponse(html.audit_page(request, job))
    if job.report_json is None:
        detail = f"audit failed: {job.error}" if job.status == FAILED else f"the audit is {job.status}"
        raise HTTPException(409, detail=detail)
    if fmt == "json":
        return Response(job.report_json, media_type=REPORT_TYPES["json"])
    try:
        text = html.render_report(job.report_json, "markdown" if fmt == "md" else "sarif")
    except ValidationError:
        raise HTTPException(409, detail="the stored report does not match this pgolf version's schema; "
                                        "the JSON report is still available") from None
    return PlainTextResponse(text, media_type=REPORT_TYPES[fmt])


@router.get("/audits/{audit_id}", response_class=HTMLResponse, include_in_schema=False)
def audit_page(audit_id: str, request: Request) -> HTMLResponse:
    return HTMLResponse(html.audit_page(request, load(request, audit_id)))
