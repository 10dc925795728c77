"""Reruns go through the distributed queue (RQ on Redis) to a `pgolf worker` process, and their
outcome comes back into the audit. Skips when no Redis is reachable (PGOLF_TEST_REDIS_URL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from test_api_support import AUTH, REPO_ROOT, Server, make_remote

pytestmark = [pytest.mark.redis, pytest.mark.slow]
redis = pytest.importorskip("redis")
REDIS_URL = os.environ.get("PGOLF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


def test_rerun_is_dispatched_to_a_worker_and_reported(tmp_path, queue_name):
    from rq import Queue
    from rq.job import Job

    bare = make_remote(tmp_path, 1)
    env = {"PGOLF_RERUN_QUEUE": queue_name}
    with Server(tmp_path / "data", redis_url=REDIS_URL, env=env) as srv, \
         httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        assert c.get("/healthz").json()["rerun_queue"] == "ok"
        r = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0",
                                        "options": {"rerun": True, "rerun_timeout_s": 120}})
        assert r.status_code == 202, r.text
        audit_id = r.json()["id"]
        # The static verdict lands first; the audit then waits on the queue (no worker runs yet).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = c.get(f"/v1/audits/{audit_id}").json()
            if body["status"] == "rerunning" and body["rerun"]["job_id"]:
                break
            time.sleep(0.1)
        assert body["status"] == "rerunning" and body["verdict"], body
        conn = redis.Redis.from_url(REDIS_URL)
        assert body["rerun"]["job_id"] in Queue(queue_name, connection=conn).job_ids

        # A burst worker (what `pgolf worker` runs on a GPU host) drains the queue and exits.
        worker = subprocess.run([sys.executable, "-m", "api.cli", "worker", "--burst", "--redis-url", REDIS_URL,
                                 "--queue", queue_name], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=300, env={**os.environ, **env}, check=False)
        assert worker.returncode == 0, worker.stderr[-2000:]
        rq_job = Job.fetch(body["rerun"]["job_id"], connection=conn)
        assert rq_job.get_status() in ("finished", "failed")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = c.get(f"/v1/audits/{audit_id}").json()
            if body["status"] in ("done", "failed"):
                break
            time.sleep(0.2)
    assert body["verdict"] and body["report"]  # the static verdict survives whatever the rerun did
    finished = rq_job.get_status() == "finished"
    for key in (f"rq:job:{rq_job.id}", f"rq:results:{rq_job.id}"):
        conn.delete(key)
    if finished:
        assert body["status"] == "done" and body["rerun"]["status"] == "done"
        assert [r["record"] for r in body["rerun"]["results"]] == [body["report"]["records"][0]["path"]]
    else:  # the rerun itself failed: the audit says so, with the worker's reason
        assert body["status"] == "failed" and body["rerun"]["status"] == "failed"
        assert body["rerun"]["error"] and body["error"].startswith("rerun failed:")
