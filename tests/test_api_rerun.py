"""Reruns go through the distributed queue (RQ on Redis, JSON-serialized) to a `pgolf worker`
process, and their outcome comes back into the audit. Skips when no Redis is reachable
(PGOLF_TEST_REDIS_URL)."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import time
import uuid
import zipfile

import httpx
import pytest
from test_api_support import AUTH, REPO_ROOT, Server, make_remote, record_files, record_name

pytestmark = [pytest.mark.redis, pytest.mark.slow]
redis = pytest.importorskip("redis")
REDIS_URL = os.environ.get("PGOLF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HARNESS = importlib.util.find_spec("auditor.rerun.harness") is not None


@pytest.fixture(scope="module")
def queue_name():
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    name = f"pgolf-test-{uuid.uuid4().hex[:8]}"
    yield name
    conn = redis.Redis.from_url(REDIS_URL)
    for key in conn.scan_iter(f"rq:*{name}*"):
        conn.delete(key)


def _zip_record(index: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in record_files(index).items():
            zf.writestr(f"{record_name(index)}/{name}", text)
    return buf.getvalue()


def _wait(c: httpx.Client, audit_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/audits/{audit_id}").json()
        if body["status"] in states and (body["status"] != "rerunning" or body["rerun"]["job_id"]):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{audit_id} never reached {states}: {body}")


def test_reruns_are_dispatched_to_a_worker_and_reported(tmp_path, queue_name):
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer

    bare = make_remote(tmp_path, 1)
    env = {"PGOLF_RERUN_QUEUE": queue_name}
    options = {"rerun": True, "rerun_timeout_s": 120}
    with Server(tmp_path / "data", redis_url=REDIS_URL, env=env) as srv, \
         httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        assert c.get("/healthz").json()["rerun_queue"] == "ok"
        git = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0", "options": options})
        upload = c.post("/v1/audits/upload", files={"file": ("r.zip", _zip_record(5))},
                        data={"options": '{"rerun": true, "rerun_timeout_s": 120}'})
        assert git.status_code == 202 and upload.status_code == 202, (git.text, upload.text)
        ids = [git.json()["id"], upload.json()["id"]]
        # The static verdicts land first; the audits then wait on the queue (no worker runs yet).
        waiting = [_wait(c, audit_id, ("rerunning",)) for audit_id in ids]
        conn = redis.Redis.from_url(REDIS_URL)
        queued = Queue(queue_name, connection=conn, serializer=JSONSerializer).job_ids
        assert all(body["verdict"] and body["rerun"]["job_id"] in queued for body in waiting)

        # A burst worker (what `pgolf worker` runs on a GPU host) drains the queue and exits.
        worker = subprocess.run([sys.executable, "-m", "api.cli", "worker", "--burst", "--redis-url", REDIS_URL,
                                 "--queue", queue_name], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=300, env={**os.environ, **env}, check=False)
        assert worker.returncode == 0, worker.stderr[-2000:]
        bodies = [_wait(c, audit_id, ("done", "failed"), timeout=30) for audit_id in ids]

    for before, body in zip(waiting, bodies):
        rq_job = Job.fetch(before["rerun"]["job_id"], connection=conn, serializer=JSONSerializer)
        finished = rq_job.get_status() == "finished"
        for key in (f"rq:job:{rq_job.id}", f"rq:results:{rq_job.id}"):
            conn.delete(key)
        assert body["verdict"] and body["report"]  # the static verdict survives whatever the rerun did
        if finished:
            assert body["status"] == "done" and body["rerun"]["status"] == "done"
            assert [r["record"] for r in body["rerun"]["results"]] == [r["path"] for r in body["report"]["records"]]
        else:  # the rerun itself failed: the audit says so, with the worker's reason
            assert body["status"] == "failed" and body["rerun"]["status"] == "failed"
            assert body["rerun"]["error"] and body["error"].startswith("rerun failed:")
            if not HARNESS:  # the source was fetched and the record found; only the harness was missing
                assert "auditor.rerun.harness" in body["rerun"]["error"], body["rerun"]["error"]
