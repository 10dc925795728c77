"""50 concurrent submissions against a real server and SQLite file: 50 verdicts, none lost, none
duplicated — including identical submissions racing each other."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_api_support import AUTH, Server, commit_of, make_remote

pytestmark = pytest.mark.slow
N = 50


def test_fifty_concurrent_submissions(tmp_path):
    bare = make_remote(tmp_path, N)
    # One client token sends all 75: lift its rate and in-flight limits so only the engine is under test.
    limits = {"PGOLF_RATE_LIMIT_PER_MINUTE": "100000", "PGOLF_RATE_LIMIT_BURST": "1000", "PGOLF_MAX_INFLIGHT": "1000"}
    with Server(tmp_path / "data", workers=2, env=limits) as srv:
        def submit(i: int) -> tuple[int, int, str]:
            with httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
                r = c.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{i % N}"})
                return i % N, r.status_code, r.json().get("id", r.text)

        # 50 distinct branches plus 25 exact duplicates, all in flight at once.
        with ThreadPoolExecutor(max_workers=25) as pool:
            results = list(pool.map(submit, list(range(N)) + list(range(0, N, 2))))
        assert all(code in (200, 202) for _, code, _ in results), [r for r in results if r[1] not in (200, 202)]
        ids_by_branch: dict[int, set[str]] = {}
        for branch, _, audit_id in results:
            ids_by_branch.setdefault(branch, set()).add(audit_id)
        assert len(ids_by_branch) == N and all(len(ids) == 1 for ids in ids_by_branch.values())

        deadline = time.monotonic() + 240
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while time.monotonic() < deadline:
                listing = c.get("/v1/audits", params={"limit": 500}).json()["audits"]
                if len(listing) == N and all(a["status"] in ("done", "failed") for a in listing):
                    break
                time.sleep(0.5)
            bodies = {b: c.get(f"/v1/audits/{next(iter(ids))}").json() for b, ids in ids_by_branch.items()}
    assert all(b["status"] == "done" and b["verdict"] for b in bodies.values()), [
        (k, b["status"], b["error"]) for k, b in bodies.items() if b["status"] != "done"]
    for branch, body in bodies.items():
        assert body["source"]["commit"] == commit_of(bare, f"rec-{branch}")
        assert body["report"]["records"][0]["name"].endswith(f"{branch:03d}")
    with sqlite3.connect(srv.data_dir / "pgolf.db") as con:
        rows = con.execute("SELECT status, attempts, count(*) FROM audits GROUP BY status, attempts").fetchall()
    assert rows == [("done", 1, N)]  # each job ran exactly once
