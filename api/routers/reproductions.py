"""POST a reproduction (a record folder of a git ref or PR, on a named data folder); read it back.

Validation and mapping only: the job lives in ``api.reproductions`` (the state machine) and the
work in ``api.tasks.run_reproduction`` (`pgolf reproduce`, as the CLI runs it)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api import html
from api.db import DONE, FAILED, QUEUED, Reproduction
from api.routers import load_or_404
from api.routers.audits import ERRORS, _utc, idempotency_key
from api.schemas import ErrorOut, ReproductionLinks, ReproductionOut, ReproductionRequest, Source
from api.security import caller_for_post
from api.sources import SourceError, check_ref, check_repo, resolve_commit

router = APIRouter(tags=["reproductions"])
NOT_FOUND = {404: {"model": ErrorOut, "description": "no such reproduction"}}


def reproduction_out(job: Reproduction) -> ReproductionOut:
    base = f"/v1/reproductions/{job.id}"
    return ReproductionOut(
        id=job.id, status=job.status,
        source=Source(kind="pr" if job.pr_number else "git", repo=job.repo, ref=job.ref, pr=job.pr_number,
                      commit=job.commit),
        record=job.record, data=job.data, options=json.loads(job.options_json), submitted_by=job.submitted_by,
        attempts=job.attempts, error=job.error, created_at=_utc(job.created_at), started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at), verdict=job.verdict,
        report=json.loads(job.report_json) if job.report_json else None,
        links=ReproductionLinks(self=base, json=f"{base}/report.json", markdown=f"{base}/report.md"),
    )


@router.post("/v1/reproductions", response_model=ReproductionOut, status_code=202,
             responses={200: {"model": ReproductionOut, "description": "this exact reproduction exists and is done"},
                        **ERRORS})
def submit(body: ReproductionRequest, request: Request, response: Response,
           caller: Annotated[str, Depends(caller_for_post)]) -> ReproductionOut:
    """Reproduce a record at its own configuration (`pgolf reproduce`), queued for a GPU worker
    (or run by this server on its own devices when it has no queue)."""
    settings = request.app.state.settings
    if not settings.redis_url:
        root = settings.repro_data_root
        if root is None:
            raise HTTPException(422, detail="this server runs no reproductions: it has no data root "
                                            "(--repro-data-root / PGOLF_REPRO_DATA_ROOT) and no GPU worker queue")
        if not (root / body.data).is_dir():
            raise HTTPException(422, detail=f"no data folder {body.data!r} under this server's data root")
    try:
        if body.pr is not None:
            ref = f"refs/pull/{body.pr}/head"
            repo = check_repo(body.repo, settings) if body.repo else settings.upstream
        else:
            ref = check_ref(body.ref)
            repo = check_repo(body.repo, settings)
        commit = resolve_commit(repo, ref, settings)
    except SourceError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    options_json = body.options.model_dump_json()
    key = idempotency_key("reproduce", commit, body.record, body.data, options_json)
    outcome = "created"
    with request.app.state.sessions() as s:
        job = s.scalar(select(Reproduction).where(Reproduction.idem_key == key))
        if job is None:
            job = Reproduction(idem_key=key, repo=repo, ref=ref, pr_number=body.pr, commit=commit,
                               record=body.record, data=body.data, options_json=options_json,
                               submitted_by=caller, status=QUEUED, attempts=0)
            try:
                s.add(job)
                s.commit()
            except IntegrityError:  # a concurrent identical request won
                s.rollback()
                job = s.scalar(select(Reproduction).where(Reproduction.idem_key == key))
                outcome = "existing"
        else:
            outcome = "existing"
            if job.status == FAILED:  # asking again retries a failed reproduction
                job.status, job.attempts, job.error, job.worker_id = QUEUED, 0, None, None
                job.started_at = job.finished_at = job.verdict = job.report_json = None
                s.commit()
                outcome = "retried"
        out = reproduction_out(job)
    request.app.state.metrics.submitted.labels("reproduction", outcome).inc()
    request.app.state.reproductions.wake()
    response.status_code = 200 if out.status == DONE else 202
    response.headers["Location"] = out.links.self
    return out


def load(request: Request, rid: str) -> Reproduction:
    return load_or_404(request, Reproduction, rid, "reproduction")


@router.get("/v1/reproductions/{rid}", response_model=ReproductionOut, responses=NOT_FOUND)
def get_reproduction(rid: str, request: Request) -> ReproductionOut:
    """Status, and once done the report (the audit with its reproduction section)."""
    return reproduction_out(load(request, rid))


@router.get("/v1/reproductions/{rid}/report.{fmt}", responses={
    **NOT_FOUND, 409: {"model": ErrorOut, "description": "no report yet (or the reproduction failed)"}})
def get_report(rid: str, fmt: Literal["json", "md"], request: Request) -> Response:
    """The report as `pgolf reproduce -f json` / `-f markdown` writes it."""
    job = load(request, rid)
    if job.report_json is None:
        detail = f"reproduction failed: {job.error}" if job.status == FAILED else f"the reproduction is {job.status}"
        raise HTTPException(409, detail=detail)
    if fmt == "json":
        return Response(job.report_json, media_type="application/json")
    try:
        text = html.render_report(job.report_json, "markdown")
    except ValidationError:
        raise HTTPException(409, detail="the stored report does not match this pgolf version's schema") from None
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
