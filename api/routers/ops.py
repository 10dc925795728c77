"""Operations: /healthz for load balancers, /metrics for Prometheus, / as a small index page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from api import html
from api.db import Audit
from api.schemas import Health

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(request: Request):
    state = request.app.state
    database = "ok"
    try:
        with state.sessions() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        database = f"error: {type(exc).__name__}"
    queue = "none"
    if state.settings.redis_url:
        try:
            from redis import Redis

            Redis.from_url(state.settings.redis_url, socket_timeout=2).ping()
            queue = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", which is the answer
            queue = f"error: {type(exc).__name__}"
    ok = database == "ok"
    body = Health(status="ok" if ok else "degraded", database=database,
                  workers=state.settings.workers, rerun_queue=queue)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows = s.scalars(select(Audit).order_by(Audit.created_at.desc()).limit(50)).all()
    return HTMLResponse(html.index_page(request, rows))
