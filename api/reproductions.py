"""Reproductions as a service: the job state machine behind ``/v1/reproductions``.

A reproduction runs a submission at full scale for many minutes on GPUs, so it never shares the
static audits' pool. With a Redis URL each one goes to the ``reproduce_queue`` (RQ, JSON only) for
``pgolf worker --queue pgolf-reproduce`` on a GPU host; without one, this server runs them itself,
one at a time, in a dedicated child process on its own devices (`pgolf reproduce` as the CLI runs
it: same options model, same code, same JSON report). The database row is the truth:

    queued --(claimed here | enqueued, rq:<id>)--> running --> done | failed

A server restart hands a local job that was running back to the queue (or fails it after
``max_attempts``) and releases what it had claimed but not started; queue jobs are followed by
their RQ id (``worker_id = rq:<id>``, set once the job is on the queue).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from api import tasks
from api.db import DONE, FAILED, QUEUED, RUNNING, Reproduction, utcnow
from api.settings import Settings

log = logging.getLogger("pgolf.api.reproductions")
POLL_S = 1.0


class ReproductionRunner:
    def __init__(self, settings: Settings, sessions: sessionmaker, node_id: str):
        self.settings = settings
        self.sessions = sessions
        self.node_id = node_id
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._local: tuple[str, Future, float] | None = None  # (id, future, monotonic start)
        self._rq = None
        self._enqueuing = f"enqueuing:{node_id}"  # claimed for the queue, not yet on it

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="pgolf-reproduce", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._kill_pool()
        if self._local is not None:  # handed back: a restart runs it again
            self._set(self._local[0], status=QUEUED, worker_id=None, attempts=Reproduction.attempts - 1)

    def wake(self) -> None:
        self._wake.set()

    def _recover(self) -> None:
        """Local jobs left running by a stopped server go back to the queue (queue jobs keep their RQ
        id); a job this node had claimed but not yet started or enqueued is released."""
        with self.sessions() as s:
            rows = s.execute(select(Reproduction.id, Reproduction.worker_id, Reproduction.attempts, Reproduction.status)
                             .where(Reproduction.status.in_((QUEUED, RUNNING)),
                                    Reproduction.worker_id.is_not(None))).all()
        for rid, worker, attempts, status in rows:
            if worker.startswith("rq:"):
                continue
            if status == QUEUED:
                if worker in (self.node_id, self._enqueuing):
                    self._set(rid, worker_id=None)
            elif attempts >= self.settings.max_attempts:
                self._finish(rid, error=f"interrupted {attempts} times (server restarts)")
            else:
                self._set(rid, status=QUEUED, worker_id=None)

    # ---- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.settings.redis_url:
                    self._enqueue_queued()
                    self._poll_queue()
                else:
                    self._drive_local()
            except Exception:  # the loop must survive a database or queue hiccup
                log.exception("reproduction loop error; retrying")
                time.sleep(1)
            self._wake.wait(POLL_S)
            self._wake.clear()

    def _payload(self, row: Reproduction) -> dict[str, Any]:
        return {"repo": row.repo, "commit": row.commit, "record": row.record, "data": row.data,
                "options_json": row.options_json,
                "data_root": str(self.settings.repro_data_root) if self.settings.repro_data_root else None}

    def _claim(self, worker_id: str) -> Reproduction | None:
        with self.sessions() as s:
            for rid in s.scalars(select(Reproduction.id).where(Reproduction.status == QUEUED,
                                                               Reproduction.worker_id.is_(None))
                                 .order_by(Reproduction.created_at).limit(5)).all():
                res = s.execute(update(Reproduction)
                                .where(Reproduction.id == rid, Reproduction.status == QUEUED,
                                       Reproduction.worker_id.is_(None))
                                .values(worker_id=worker_id, attempts=Reproduction.attempts + 1, error=None))
                s.commit()
                if res.rowcount == 1:
                    return s.get(Reproduction, rid)
        return None

    # local: one at a time, in a child process of its own
    def _drive_local(self) -> None:
        if self._local is not None:
            rid, fut, t0 = self._local
            if fut.done():
                self._local = None
                try:
                    self._store(rid, fut.result())
                except Exception as exc:  # noqa: BLE001 - the job's own failure, stored for the caller
                    self._finish(rid, error=_message(exc))
            elif time.monotonic() - t0 > self.settings.repro_timeout_s:
                self._local = None
                self._kill_pool()
                self._finish(rid, error=f"stopped after {self.settings.repro_timeout_s:.0f} s (repro_timeout_s)")
            return
        row = self._claim(self.node_id)
        if row is None:
            return
        self._set(row.id, status=RUNNING, started_at=utcnow())
        if self._pool is None:
            # spawn, as the static pool: a clean interpreter, no inherited sockets, DB connections or threads
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        fut = self._pool.submit(tasks.run_reproduction, self._payload(row))
        fut.add_done_callback(lambda _f: self._wake.set())
        self._local = (row.id, fut, time.monotonic())

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    # queue: RQ on Redis, JSON only (what comes back from a GPU host is data, never an object)
    def _queue(self):
        if self._rq is None:
            from redis import Redis
            from rq import Queue
            from rq.serializers import JSONSerializer

            self._rq = Queue(self.settings.reproduce_queue, connection=Redis.from_url(self.settings.redis_url),
                             serializer=JSONSerializer)
        return self._rq

    def _enqueue_queued(self) -> None:
        from redis.exceptions import RedisError

        while True:
            with self.sessions() as s:
                rid = s.scalar(select(Reproduction.id).where(Reproduction.status == QUEUED,
                                                            Reproduction.worker_id.is_(None))
                               .order_by(Reproduction.created_at).limit(1))
            if rid is None:
                return
            row = self._claim(self._enqueuing)
            if row is None:
                continue
            rq_id = f"pgolf-{row.id}-{row.attempts}"
            try:
                self._queue().enqueue_call("api.tasks.run_reproduction", args=(self._payload(row),), job_id=rq_id,
                                           timeout=int(self.settings.repro_timeout_s), result_ttl=30 * 86400,
                                           failure_ttl=30 * 86400)
            except RedisError as exc:
                self._set(row.id, worker_id=None, attempts=Reproduction.attempts - 1)
                log.warning("reproduction queue unreachable: %s", exc)
                return
            self._set(row.id, worker_id=f"rq:{rq_id}")

    def _poll_queue(self) -> None:
        from redis.exceptions import RedisError
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.serializers import JSONSerializer

        with self.sessions() as s:
            rows = s.execute(select(Reproduction.id, Reproduction.worker_id, Reproduction.status)
                             .where(Reproduction.status.in_((QUEUED, RUNNING)),
                                    Reproduction.worker_id.like("rq:%"))).all()
        for rid, worker, status in rows:
            rq_id = worker[3:]
            try:
                job = Job.fetch(rq_id, connection=self._queue().connection, serializer=JSONSerializer)
                state = job.get_status()
            except NoSuchJobError:
                self._finish(rid, error="the reproduction job vanished from the queue")
                continue
            except RedisError as exc:
                log.warning("reproduction queue unreachable: %s", exc)
                return
            if state == JobStatus.FINISHED:
                self._store(rid, job.return_value())
            elif state in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                result = job.latest_result()
                detail = (result.exc_string or "").strip().splitlines()[-1:] if result else []
                self._finish(rid, error=(detail[0] if detail else str(state))[:2000])
            elif state == JobStatus.STARTED and status != RUNNING:
                self._set(rid, status=RUNNING, started_at=utcnow())

    # ---- storing -------------------------------------------------------------------------------
    def _store(self, rid: str, report: dict[str, Any]) -> None:
        records = report.get("records") or [{}]
        verdict = (records[0].get("reproduction") or {}).get("verdict")
        self._set(rid, status=DONE, finished_at=utcnow(), verdict=verdict, report_json=json.dumps(report))

    def _finish(self, rid: str, *, error: str) -> None:
        self._set(rid, status=FAILED, finished_at=utcnow(), error=error)

    def _set(self, rid: str, **values) -> None:
        with self.sessions() as s:
            s.execute(update(Reproduction).where(Reproduction.id == rid).values(**values))
            s.commit()


def _message(exc: BaseException) -> str:
    """What the caller reads: pgolf's own errors as they are (a refusal, bad data), others named."""
    from auditor.errors import PgolfError

    if isinstance(exc, PgolfError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:2000]
