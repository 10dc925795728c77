"""kill -9 the server with jobs queued and running, start it again: every job finishes, or is failed
with the reason. Nothing acknowledged with a 202 is ever lost."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from test_api_support import AUTH, Server, make_remote, wait_done

pytestmark = pytest.mark.slow
N = 16


def _states(db) -> dict[str, tuple[str, int, str | None, str | None]]:
    with sqlite3.connect(db) as con:
        return {r[0]: r[1:] for r in con.execute("SELECT id, status, attempts, error, worker_id FROM audits")}


def test_kill_9_then_restart_recovers_every_job(tmp_path):
    bare = make_remote(tmp_path, N)
    data = tmp_path / "data"
    db = data / "pgolf.db"
    srv = Server(data, workers=1).start()
    accepted: list[str] = []
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        for i in range(N):
            r = c.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{i}"})
            assert r.status_code == 202, r.text
            accepted.append(r.json()["id"])
            if i >= 3 and any(s[0] == "running" for s in _states(db).values()):
                break  # one job is in a worker right now and the rest wait: kill here
    dead_pid = srv.proc.pid
    srv.kill9()

    before = _states(db)
    assert set(accepted) <= set(before)  # every 202 was committed before it was sent
    pending = [a for a in accepted if before[a][0] in ("queued", "running")]
    assert pending, "nothing was left to recover; the audits finished before the kill"
    # One interrupted job has already used up its attempts: it must be failed, not retried.
    exhausted = pending[-1]
    with sqlite3.connect(db) as con:
        con.execute("UPDATE audits SET status='running', attempts=3, worker_id=? WHERE id=?",
                    (f"{socket.gethostname()}:{dead_pid}:deadbeef", exhausted))
    was_running = [a for a in accepted if before[a][0] == "running" and a != exhausted]
    # what crashed servers leave: a dead process's work folder (unlocked) and an old-style one
    for junk in (data / "work" / "node-999999-deadbeef", data / "work" / "pgolf-audit-stale"):
        (junk / "upload").mkdir(parents=True, exist_ok=True)
        (junk / "upload" / "big.bin").write_bytes(b"x" * (1 << 20))

    with Server(data, workers=2) as srv2, httpx.Client(base_url=srv2.url, timeout=60) as c:
        left = sorted(p.name for p in (data / "work").iterdir())
        assert len(left) == 1 and left[0].startswith("node-"), left  # only the live server's own
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            after = _states(db)
            if all(after[a][0] in ("done", "failed") for a in accepted):
                break
            time.sleep(0.2)
        metrics = c.get("/metrics").text
    for audit_id in accepted:
        status, _, error, _ = after[audit_id]
        if audit_id == exhausted:
            assert status == "failed" and "interrupted 3 times" in error and "crash or kill" in error
        else:
            assert status == "done", (audit_id, after[audit_id])
    for audit_id in was_running:
        assert after[audit_id][1] == 2  # the interrupted attempt counts
    assert 'pgolf_jobs_recovered_total{outcome="failed"} 1.0' in metrics
    assert len(after) == len(accepted)  # and nothing was duplicated
    assert db.stat().st_mode & 0o777 == 0o600  # it holds uploaded submissions


def test_a_live_servers_work_folder_is_never_removed(tmp_path):
    """Two servers sharing a data dir: the second one's start-up cleanup leaves the first's
    folder alone (its lock is held), and removes it once that process is gone."""
    import subprocess
    import sys

    from api.jobs import claim_workroot

    base = tmp_path / "work"
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; from pathlib import Path; from api.jobs import claim_workroot; "
                                f"print(claim_workroot(Path({str(base)!r})), flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        theirs = Path(holder.stdout.readline().strip())
        (theirs / "job").mkdir()
        mine = claim_workroot(base)
        assert theirs.is_dir() and (theirs / "job").is_dir() and mine != theirs
    finally:
        holder.kill()
        holder.wait()
    again = claim_workroot(base)
    assert not theirs.exists() and mine.exists()  # ours is still locked by this process
    assert {p.name for p in base.iterdir()} == {mine.name, again.name}


def test_sigterm_hands_running_jobs_back_without_using_an_attempt(tmp_path):
    bare = make_remote(tmp_path, 4)
    data = tmp_path / "data"
    srv = Server(data, workers=1).start()
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        ids = [c.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{i}"}).json()["id"] for i in range(4)]
    srv.stop()  # graceful
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15.
    assert srv.proc.returncode in (0, -15) and "Application shutdown complete" in srv.logs()
    states = _states(data / "pgolf.db")
    assert all(states[a][0] in ("queued", "done") for a in ids), states
    assert all(states[a][1] <= 1 for a in ids)
    with Server(data, workers=2), httpx.Client(timeout=60) as c:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                s[0] == "done" for s in _states(data / "pgolf.db").values()):
            time.sleep(0.2)
    assert all(s[0] == "done" and s[1] == 1 for s in _states(data / "pgolf.db").values())


def test_reruns_left_waiting_without_a_queue_are_failed_with_the_reason(tmp_path):
    from api.db import Audit, init_db, make_engine

    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'pgolf.db'}")  # the database as a stopped server left it
    with init_db(engine)() as s:
        job = Audit(idem_key="k" * 64, kind="git", repo="/nowhere", ref="main", options_json="{}",
                    status="rerunning", attempts=1, verdict="PASS", report_json="{}", rerun_status="queued")
        s.add(job)
        s.commit()
        audit_id = job.id
    engine.dispose()
    with Server(data, workers=1) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        body = c.get(f"/v1/audits/{audit_id}").json()
    assert body["status"] == "failed" and "without a rerun queue" in body["error"]
    assert body["verdict"] == "PASS"  # the static verdict is kept


def test_a_worker_that_runs_out_of_memory_fails_the_job_not_the_server(tmp_path):
    bare = make_remote(tmp_path, 1)
    # 120 MB of address space cannot even hold the audit's imports: the worker fails or dies.
    env = {"PGOLF_WORKER_MEMORY_MB": "120", "PGOLF_AUDIT_TIMEOUT_S": "5"}
    with Server(tmp_path / "data", workers=1, env=env) as srv, \
         httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        r = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0"})
        body = wait_done(c, r.json()["id"], timeout=90)
        assert body["status"] == "failed" and body["error"]
        # Whichever way it went (MemoryError, a killed worker retried to the limit, or a hang
        # stopped by the time limit), the reason is recorded and the server keeps serving.
        assert any(s in body["error"].lower() for s in ("memory", "took longer")), body["error"]
        assert c.get("/healthz").json()["status"] == "ok"


def test_a_failure_at_the_memory_limit_is_reported_as_memory_whatever_exception_surfaced():
    # Under RLIMIT_AS a failed allocation can surface as any exception (CI once saw a TypeError):
    # the process's peak virtual size is what tells the limit apart from a bug in pgolf.
    import subprocess
    import sys

    probe = (
        "import resource\n"
        "from api.tasks import _memory_limit_reached\n"
        "assert _memory_limit_reached() is None\n"
        "vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize:')][0].split()[1])*1024\n"
        "lim = vm + 64 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (lim, lim))\n"
        "assert _memory_limit_reached() is None\n"
        "try:\n"
        "    blocks = [bytearray(2**20) for _ in range(1000)]\n"
        "except MemoryError:\n"
        "    pass\n"
        "print(_memory_limit_reached())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 0
