"""The job engine: local process pool for static audits, RQ (Redis) for reruns, the DB as the truth.

Life of a job: the API inserts a ``queued`` row and commits before answering 202. The dispatcher
thread claims queued rows with a conditional UPDATE (safe with several API nodes on one database),
runs them in a spawn-started process pool, and stores the verdict. A heartbeat thread stamps the
rows this node runs; a reaper re-queues rows whose node went silent. At startup, rows left
``running`` by a dead process on this host are recovered at once. Every interruption counts as an
attempt; after ``max_attempts`` the job is failed with the reason, never retried forever and never
silently dropped.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import multiprocessing
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from api import tasks
from api.db import DONE, FAILED, QUEUED, RERUNNING, RUNNING, Audit, Upload, utcnow
from api.metrics import Metrics
from api.settings import Settings

log = logging.getLogger("pgolf.jobs")

MAX_TIMEOUT_GRACE_S = 30  # past the in-worker alarm, the pool is killed: a C loop can ignore signals
RERUN_POLL_S = 2.0


def worker_identity() -> str:
    """host:pid:nonce. The nonce tells this process from an earlier one that had the same pid
    (a restarted container is pid 1 every time)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_workroot(base: Path) -> Path:
    """This process's own folder for job work under ``base``, held by an exclusive lock for the
    process's lifetime. Folders whose lock nobody holds belong to processes that died (a
    ``kill -9`` leaves its jobs' extractions and checkouts behind): they are removed here, and a
    folder still locked by a live server sharing the data dir is left alone."""
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in base.iterdir():
        if old.is_dir() and not old.is_symlink() and old.name.startswith("node-"):
            fd = os.open(old / ".lock", os.O_RDWR | os.O_CREAT, 0o600) if old.joinpath(".lock").exists() else None
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process holds it
            finally:
                if fd is not None:
                    os.close(fd)
            shutil.rmtree(old, ignore_errors=True)
        elif old.is_dir() and not old.is_symlink() and old.name.startswith("pgolf-audit-"):
            shutil.rmtree(old, ignore_errors=True)  # left by a version without per-process folders
    mine = base / f"node-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    mine.mkdir(mode=0o700)
    fd = os.open(mine / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when this process dies, however it dies
    _HELD_LOCKS.append(fd)
    return mine


_HELD_LOCKS: list[int] = []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunner:
    def __init__(self, settings: Settings, sessions: sessionmaker, metrics: Metrics):
        self.settings = settings
        self.sessions = sessions
        self.metrics = metrics
        self.node_id = worker_identity()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._completed: queue.SimpleQueue[tuple[str, Future]] = queue.SimpleQueue()
        # audit id -> (monotonic start, the pool it runs in)
        self._inflight: dict[str, tuple[float, ProcessPoolExecutor]] = {}
        self._timed_out: set[str] = set()
        self._pool: ProcessPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._rq = None
        self._last_rerun_poll = 0.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._workroot()  # claims this process's folder and removes those of dead processes
        self.recover()
        self._pool = self._new_pool()
        for _ in range(self.settings.workers):  # start the workers now, not on the first request
            self._pool.submit(tasks.warm)
        for target, name in ((self._dispatch_loop, "pgolf-dispatch"), (self._maintenance_loop, "pgolf-maint")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Graceful stop: jobs still running go back to the queue without using up an attempt."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        if self._pool is not None:
            self._kill_pool(self._pool)
        try:
            with self.sessions() as s:
                s.execute(
                    update(Audit)
                    .where(Audit.status == RUNNING, Audit.worker_id == self.node_id)
                    .values(status=QUEUED, worker_id=None, attempts=Audit.attempts - 1)
                )
                s.commit()
        except SQLAlchemyError:
            log.exception("could not hand running jobs back to the queue; the reaper will")

    def wake(self) -> None:
        self._wake.set()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a clean interpreter per worker, no inherited sockets, DB connections or threads.
        return ProcessPoolExecutor(
            max_workers=self.settings.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=tasks.init_worker,
            initargs=(self.settings.worker_memory_mb,),
        )

    @staticmethod
    def _kill_pool(pool: ProcessPoolExecutor) -> None:
        # Python 3.11 cannot cancel a running task; killing its processes is the only hard stop.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.kill()

    # ---- recovery ----------------------------------------------------------------------------

    def _is_dead(self, worker_id: str | None) -> bool:
        """Certainly dead: a process of this host that is gone (others are judged by heartbeat)."""
        if not worker_id:
            return True
        host, _, rest = worker_id.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit():
            return False
        if int(pid_text) == os.getpid():
            return worker_id != self.node_id
        return not _pid_alive(int(pid_text))

    def recover(self) -> None:
        """At startup: every job a dead process of this host left running is re-queued or failed."""
        with self.sessions() as s:
            rows = s.execute(select(Audit.id, Audit.worker_id).where(Audit.status == RUNNING)).all()
        for audit_id, worker_id in rows:
            if self._is_dead(worker_id):
                self._interrupted(audit_id, worker_id, "the server process running it stopped (crash or kill)")
        if not self.settings.redis_url:
            # Reruns waiting on a queue this server no longer has would wait forever: say so instead.
            with self.sessions() as s:
                s.execute(
                    update(Audit).where(Audit.status == RERUNNING).values(
                        status=FAILED, rerun_status=FAILED, finished_at=utcnow(),
                        rerun_error="the server was restarted without a rerun queue (--redis-url)",
                        error="rerun failed: the server was restarted without a rerun queue (--redis-url)")
                )
                s.commit()

    def _interrupted(self, audit_id: str, worker_id: str | None, reason: str) -> None:
        """Re-queue a job whose runner vanished, or fail it when it has used up its attempts."""
        with self.sessions() as s:
            job = s.get(Audit, audit_id)
            if job is None or job.status != RUNNING or job.worker_id != worker_id:
                return  # someone else already dealt with it
            if job.attempts >= self.settings.max_attempts:
                values = {"status": FAILED, "finished_at": utcnow(),
                          "error": f"interrupted {job.attempts} times, last because {reason}; giving up"}
                outcome = "failed"
            else:
                values = {"status": QUEUED, "worker_id": None, "started_at": None, "heartbeat_at": None}
                outcome = "requeued"
            res = s.execute(
                update(Audit)
                .where(Audit.id == audit_id, Audit.status == RUNNING, Audit.worker_id == worker_id)
                .values(**values)
            )
            s.commit()
        if res.rowcount:
            self.metrics.recovered.labels(outcome).inc()
            if outcome == "failed":
                self.metrics.finished.labels(FAILED, "none").inc()
            log.warning("job %s interrupted (%s): %s", audit_id, reason, outcome)
            self._wake.set()

    # ---- dispatch ------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._drain_completed()
                self._enforce_timeouts()
                self._claim_and_submit()
            except SQLAlchemyError:
                log.exception("database error in the dispatcher; retrying")
                time.sleep(1)
            except Exception:
                log.exception("dispatcher error; retrying")
                time.sleep(1)
            self._wake.wait(0.5)
            self._wake.clear()

    def _claim_and_submit(self) -> None:
        free = self.settings.workers - len(self._inflight)
        if free <= 0:
            return
        with self.sessions() as s:
            candidates = s.scalars(
                select(Audit.id).where(Audit.status == QUEUED).order_by(Audit.created_at).limit(free * 2)
            ).all()
            claimed: list[str] = []
            for audit_id in candidates:
                if len(claimed) >= free:
                    break
                now = utcnow()
                res = s.execute(
                    update(Audit)
                    .where(Audit.id == audit_id, Audit.status == QUEUED)
                    .values(status=RUNNING, worker_id=self.node_id, attempts=Audit.attempts + 1,
                            started_at=now, heartbeat_at=now, error=None)
                )
                s.commit()
                if res.rowcount == 1:
                    claimed.append(audit_id)
        for audit_id in claimed:
            try:
                self._submit(audit_id)
            except Exception as exc:
                log.exception("could not hand job %s to a worker", audit_id)
                self._interrupted(audit_id, self.node_id, f"it could not be handed to a worker ({exc})")

    def _spec(self, audit_id: str) -> dict[str, Any]:
        with self.sessions() as s:
            job = s.get(Audit, audit_id)
            spec: dict[str, Any] = {
                "kind": job.kind, "repo": job.repo, "ref": job.ref, "base": job.base,
                "commit": job.commit, "base_commit": job.base_commit, "options_json": job.options_json,
                "timeout_s": self.settings.audit_timeout_s,
                "limits": {"max_bytes": self.settings.max_extracted_bytes,
                           "max_members": self.settings.max_archive_members},
                "workroot": str(self._workroot()),
                "cache_dir": str(self.settings.effective_cache_dir) if self.settings.result_cache else None,
            }
            if job.kind == "upload":
                upload = s.get(Upload, audit_id)
                spec["upload"] = upload.data if upload else b""
        return spec

    def _workroot(self) -> Path:
        if getattr(self, "_claimed_workroot", None) is None:
            self._claimed_workroot = claim_workroot(self.settings.data_dir / "work")
        self._claimed_workroot.mkdir(parents=True, exist_ok=True)
        return self._claimed_workroot

    def _submit(self, audit_id: str) -> None:
        spec = self._spec(audit_id)
        try:
            fut = self._pool.submit(tasks.run_static, spec)
        except (BrokenProcessPool, RuntimeError):
            self._pool = self._new_pool()
            fut = self._pool.submit(tasks.run_static, spec)
        self._inflight[audit_id] = (time.monotonic(), self._pool)
        fut.add_done_callback(lambda f, a=audit_id: (self._completed.put((a, f)), self._wake.set()))

    def _enforce_timeouts(self) -> None:
        timeout = self.settings.audit_timeout_s
        limit = timeout + min(MAX_TIMEOUT_GRACE_S, max(3.0, timeout))
        now = time.monotonic()
        late = [a for a, (t0, _) in self._inflight.items() if now - t0 > limit and a not in self._timed_out]
        if late:
            log.error("audits %s ignored their time limit; restarting the worker pool", late)
            self._timed_out.update(late)
            self._kill_pool(self._pool)  # every in-flight future now fails with BrokenProcessPool

    def _drain_completed(self) -> None:
        while True:
            try:
                audit_id, fut = self._completed.get_nowait()
            except queue.Empty:
                break
            started, pool = self._inflight.pop(audit_id, (time.monotonic(), None))
            try:
                result = fut.result()
            except BrokenProcessPool:
                if pool is self._pool:  # the first report of a dead pool replaces it, once
                    self._kill_pool(pool)
                    self._pool = self._new_pool()
                if audit_id in self._timed_out:
                    self._timed_out.discard(audit_id)
                    self._store_failure(audit_id, f"the audit took longer than "
                                        f"{int(self.settings.audit_timeout_s)} s and was stopped")
                else:
                    self._interrupted(audit_id, self.node_id,
                                      "its worker process died (crash or out of memory)")
                continue
            except MemoryError:
                result = {"ok": False, "error": "the worker process ran out of memory "
                                                f"(limit {self.settings.worker_memory_mb} MB)"}
            except Exception as exc:  # noqa: BLE001 - e.g. the spec could not be pickled
                # Raised in the worker outside the audit (its initializer, its imports): under an
                # address-space cap that is most often the cap, so the message names it.
                cap = self.settings.worker_memory_mb
                hint = f" (the worker runs under a {cap} MB memory limit)" if cap and cap > 0 else ""
                result = {"ok": False, "error": f"the worker process failed{hint}: {type(exc).__name__}: {exc}"}
            self.metrics.audit_seconds.observe(time.monotonic() - started)
            if result.get("ok"):
                self._store_success(audit_id, result)
            else:
                self._store_failure(audit_id, result.get("error") or "the audit failed")

    def _store_success(self, audit_id: str, result: dict[str, Any]) -> None:
        with self.sessions() as s:
            job = s.get(Audit, audit_id)
            if job is None or job.status != RUNNING or job.worker_id != self.node_id:
                return  # the reaper gave it to someone else meanwhile; their result will count
            wants_rerun = job.rerun_status is not None
            job.verdict = result["verdict"]
            job.report_json = result["report_json"]
            job.error = None
            if wants_rerun:
                job.status = RERUNNING
                job.rerun_status = QUEUED
                job.rerun_json = None
                job.rerun_records = result.get("records", [])
            else:
                job.status = DONE
                job.finished_at = utcnow()
            s.commit()
        if wants_rerun:
            self._enqueue_rerun(audit_id)
        else:
            self.metrics.finished.labels(DONE, result["verdict"]).inc()

    def _store_failure(self, audit_id: str, error: str) -> None:
        with self.sessions() as s:
            res = s.execute(
                update(Audit)
                .where(Audit.id == audit_id, Audit.status == RUNNING, Audit.worker_id == self.node_id)
                .values(status=FAILED, error=error[:4000], finished_at=utcnow())
            )
            s.commit()
        if res.rowcount:
            self.metrics.finished.labels(FAILED, "none").inc()

    # ---- heartbeat, reaper, reruns -------------------------------------------------------

    def _maintenance_loop(self) -> None:
        while not self._stop.wait(min(self.settings.heartbeat_s, RERUN_POLL_S)):
            try:
                self._heartbeat()
                self._reap()
                if self.settings.redis_url:
                    self._poll_reruns()
            except SQLAlchemyError:
                log.exception("database error in the maintenance loop; retrying")
            except Exception:
                log.exception("maintenance loop error; retrying")

    def _heartbeat(self) -> None:
        # Only jobs a worker really has: a claimed job that got lost goes stale and is reaped.
        alive = list(self._inflight.copy())
        if not alive:
            return
        with self.sessions() as s:
            s.execute(
                update(Audit)
                .where(Audit.status == RUNNING, Audit.worker_id == self.node_id, Audit.id.in_(alive))
                .values(heartbeat_at=utcnow())
            )
            s.commit()

    def _reap(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.settings.stale_after_s)
        with self.sessions() as s:
            rows = s.execute(
                select(Audit.id, Audit.worker_id, Audit.heartbeat_at).where(Audit.status == RUNNING)
            ).all()
        for audit_id, worker_id, beat in rows:
            if beat is not None and beat.tzinfo is None:  # SQLite drops the zone; values are UTC
                beat = beat.replace(tzinfo=cutoff.tzinfo)
            if self._is_dead(worker_id):
                self._interrupted(audit_id, worker_id, "the server process running it stopped (crash or kill)")
            elif beat is None or beat < cutoff:
                self._interrupted(audit_id, worker_id, f"its node {worker_id} stopped sending heartbeats")

    def _queue(self):
        if self._rq is None:
            from redis import Redis
            from rq import Queue
            from rq.serializers import JSONSerializer

            # JSON, not pickle: a rerun host runs submission code, so what comes back from it is data
            # to parse, never an object to unpickle in the API process.
            self._rq = Queue(self.settings.rerun_queue, connection=Redis.from_url(self.settings.redis_url),
                             serializer=JSONSerializer)
        return self._rq

    def _enqueue_rerun(self, audit_id: str) -> None:
        from redis.exceptions import RedisError

        with self.sessions() as s:
            job = s.get(Audit, audit_id)
            if job is None or job.status != RERUNNING:
                return
            upload = s.get(Upload, audit_id) if job.kind == "upload" else None
            payload = {
                "kind": job.kind, "repo": job.repo, "ref": job.commit or job.ref, "commit": job.commit,
                "upload_b64": base64.b64encode(upload.data).decode() if upload else None,
                "options_json": job.options_json,
                "records": list(job.rerun_records or []),
                "limits": {"max_bytes": self.settings.max_extracted_bytes,
                           "max_members": self.settings.max_archive_members},
            }
            attempt = job.rerun_attempts + 1
            records = max(1, len(payload["records"]))
        timeout = int(_rerun_timeout(job.options_json)) * records + 600
        rq_id = f"pgolf-{audit_id}-r{attempt}"
        try:
            self._queue().enqueue_call(
                "api.tasks.run_rerun", args=(payload,), job_id=rq_id, timeout=timeout,
                result_ttl=7 * 86400, failure_ttl=7 * 86400,
            )
        except RedisError as exc:
            self._finish_rerun(audit_id, None, error=f"the rerun queue is unreachable: {exc}")
            return
        with self.sessions() as s:
            s.execute(
                update(Audit)
                .where(Audit.id == audit_id, Audit.status == RERUNNING)
                .values(rerun_job_id=rq_id, rerun_attempts=attempt, rerun_status=QUEUED)
            )
            s.commit()

    def _finish_rerun(self, audit_id: str, rq_id: str | None, *, results=None, error: str | None = None) -> None:
        import json

        status = FAILED if error else DONE
        cond = [Audit.id == audit_id, Audit.status == RERUNNING]
        if rq_id is not None:
            cond.append(Audit.rerun_job_id == rq_id)
        with self.sessions() as s:
            res = s.execute(
                update(Audit).where(*cond).values(
                    status=status, rerun_status=status, finished_at=utcnow(),
                    rerun_json=json.dumps(results) if results is not None else None,
                    rerun_error=error, error=f"rerun failed: {error}" if error else None,
                )
            )
            s.commit()
        if res.rowcount:
            self.metrics.finished.labels(status, "rerun").inc()

    def _poll_reruns(self) -> None:
        now = time.monotonic()
        if now - self._last_rerun_poll < RERUN_POLL_S:
            return
        self._last_rerun_poll = now
        from redis.exceptions import RedisError
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.serializers import JSONSerializer

        with self.sessions() as s:
            rows = s.execute(
                select(Audit.id, Audit.rerun_job_id, Audit.rerun_attempts, Audit.rerun_status)
                .where(Audit.status == RERUNNING)
            ).all()
        for audit_id, rq_id, attempts, rerun_status in rows:
            if rq_id is None:  # stored as rerunning but the enqueue never happened (crash in between)
                self._enqueue_rerun(audit_id)
                continue
            try:
                rq_job = Job.fetch(rq_id, connection=self._queue().connection, serializer=JSONSerializer)
                state = rq_job.get_status()
            except NoSuchJobError:
                if attempts >= self.settings.max_attempts:
                    self._finish_rerun(audit_id, rq_id, error=f"the rerun job vanished from the queue "
                                       f"{attempts} times")
                else:
                    self._enqueue_rerun(audit_id)
                continue
            except RedisError as exc:
                log.warning("rerun queue unreachable: %s", exc)
                return
            if state == JobStatus.FINISHED:
                self._finish_rerun(audit_id, rq_id, results=rq_job.return_value())
            elif state in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                result = rq_job.latest_result()
                detail = (result.exc_string or "").strip().splitlines()[-1:] if result else []
                self._finish_rerun(audit_id, rq_id, error=(detail[0] if detail else str(state))[:2000])
            elif state == JobStatus.STARTED and rerun_status != RUNNING:
                with self.sessions() as s:
                    s.execute(update(Audit).where(Audit.id == audit_id, Audit.rerun_job_id == rq_id)
                              .values(rerun_status=RUNNING))
                    s.commit()


def _rerun_timeout(options_json: str) -> float:
    import json

    try:
        return float(json.loads(options_json).get("rerun_timeout_s") or 900)
    except (ValueError, TypeError, AttributeError):
        return 900.0
