"""The pgolf service: ``create_app(settings)`` builds the FastAPI app (``pgolf serve`` runs it).

The API process only validates, stores and serves; audits run in a process pool (static) or on
``pgolf worker`` hosts (reruns). Submission code is never imported or run here.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db import init_db, make_engine
from api.jobs import JobRunner
from api.metrics import Metrics
from api.reproductions import ReproductionRunner
from api.routers import audits, ops, reproductions, rules
from api.security import BodyLimitMiddleware, TokenBucket
from api.settings import Settings
from auditor import __version__

log = logging.getLogger("pgolf.api")
STATIC = Path(__file__).parent / "static"


class HttpMetricsMiddleware:
    """Counts requests and latency by route template (never by raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.http_seconds.labels(route).observe(time.perf_counter() - t0)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    sessions = init_db(engine)
    metrics = Metrics(sessions)
    runner = JobRunner(settings, sessions, metrics)
    repro_runner = ReproductionRunner(settings, sessions, runner.node_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runner.start()
        repro_runner.start()
        log.info("pgolf service up: %s, %d static workers, reruns %s", _safe_url(settings.db_url),
                 settings.workers, "via RQ" if settings.redis_url else "disabled")
        try:
            yield
        finally:
            repro_runner.stop()
            runner.stop()
            engine.dispose()

    app = FastAPI(
        title="pgolf",
        version=__version__,
        summary="Parameter Golf compliance audits as a service: POST a PR, get the verdict the CLI gives.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.metrics = metrics
    app.state.runner = runner
    app.state.reproductions = repro_runner
    app.state.rate_limiter = TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst)

    app.include_router(audits.router)
    app.include_router(reproductions.router)
    app.include_router(rules.router)
    app.include_router(ops.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # Keep the error list but drop the echoed input: it may be large or hold a token-like string.
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        log.error("database unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, default_limit=settings.max_json_body_bytes,
                       upload_limit=settings.max_upload_bytes, upload_path="/v1/audits/upload")
    return app


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<database>"
