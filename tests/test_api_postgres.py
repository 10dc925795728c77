"""The service on a real PostgreSQL server, with two API nodes sharing one queue (multi-node).
Skips cleanly when no PostgreSQL is reachable (PGOLF_TEST_POSTGRES_URL, default 127.0.0.1:5432/test)."""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_api_support import AUTH, Server, make_remote, record_files, wait_done

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
psycopg = pytest.importorskip("psycopg")
BASE_URL = os.environ.get("PGOLF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def pg_url():
    try:
        admin = psycopg.connect(BASE_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL unreachable at {BASE_URL}: {exc}")
    name = f"pgolf_api_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = BASE_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(BASE_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(pg_url: str):
    with psycopg.connect(pg_url.replace("+psycopg", "")) as con:
        return con.execute("SELECT id, status, attempts, worker_id, error FROM audits").fetchall()


def test_two_nodes_share_one_postgres_queue(pg_url, tmp_path):
    bare = make_remote(tmp_path, 8)
    env = {"PGOLF_STALE_AFTER_S": "5", "PGOLF_HEARTBEAT_S": "1"}
    with Server(tmp_path / "a", database_url=pg_url, workers=1, env=env) as a, \
         Server(tmp_path / "b", database_url=pg_url, workers=1, env=env) as b:
        def submit(i: int) -> str:
            node = (a, b)[i % 2]
            with httpx.Client(base_url=node.url, headers=AUTH, timeout=60) as c:
                r = c.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{i % 8}"})
                assert r.status_code in (200, 202), r.text
                return r.json()["id"]

        # 8 branches, each submitted once to each node: the key makes them one audit per branch.
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(submit, range(16)))
        assert len(set(ids)) == 8
        assert ids[:8] == ids[8:]

        # An upload stored in PostgreSQL (bytea) and read back by whichever node claims it.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in record_files(99).items():
                zf.writestr(name, text)
        with httpx.Client(base_url=b.url, headers=AUTH, timeout=60) as c:
            up = c.post("/v1/audits/upload", files={"file": ("r.zip", buf.getvalue())})
            assert up.status_code == 202, up.text
        with httpx.Client(base_url=a.url, timeout=60) as c:
            bodies = [wait_done(c, audit_id, timeout=180) for audit_id in set(ids) | {up.json()["id"]}]
    assert all(body["status"] == "done" and body["verdict"] for body in bodies), bodies
    rows = _rows(pg_url)
    assert len(rows) == 9 and all(r[1] == "done" and r[2] == 1 for r in rows)


def test_a_dead_node_s_jobs_are_taken_over_by_the_live_one(pg_url, tmp_path):
    bare = make_remote(tmp_path, 6)
    env = {"PGOLF_STALE_AFTER_S": "3", "PGOLF_HEARTBEAT_S": "1"}
    with Server(tmp_path / "b", database_url=pg_url, workers=1, env=env) as survivor:
        a = Server(tmp_path / "a", database_url=pg_url, workers=1, env=env).start()
        with httpx.Client(base_url=a.url, headers=AUTH, timeout=60) as c:
            ids = [c.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{i}",
                                               "options": {"policy": "readme"}}).json()["id"] for i in range(6)]
        # Kill node A while it holds a job (its worker id names its pid).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                r[1] == "running" and f":{a.proc.pid}:" in (r[3] or "") for r in _rows(pg_url) if r[0] in ids):
            time.sleep(0.02)
        held = [r[0] for r in _rows(pg_url) if r[0] in ids and r[1] == "running" and f":{a.proc.pid}:" in (r[3] or "")]
        a.kill9()
        # The live node notices (dead pid on this host, or a stale heartbeat elsewhere) and finishes everything.
        with httpx.Client(base_url=survivor.url, timeout=60) as c:
            bodies = [wait_done(c, audit_id, timeout=180) for audit_id in ids]
    assert all(body["status"] == "done" for body in bodies), [(b["id"], b["error"]) for b in bodies]
    by_id = {b["id"]: b for b in bodies}
    for audit_id in held:  # the job A was running when it died ran again, on the survivor
        assert by_id[audit_id]["attempts"] == 2
