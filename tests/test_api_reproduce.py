"""`POST /v1/reproductions` end to end: a real uvicorn, a real SQLite file, a local bare git repo
holding the bundled tiny-cpu record, and the server's own reproduction process (no queue).

The run is stopped by a 2 s training cap (INCOMPLETE, named) so that the whole path (git intake,
job, sandboxed run, report) costs seconds; the full REPRODUCED / NOT_REPRODUCED runs are in
tests/test_reproduce.py. The service's report is the CLI's for the same options (one path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from test_api_support import AUTH, REPO_ROOT, Server, _git, wait_done

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

EXAMPLE = REPO_ROOT / "examples/records/track_non_record_16mb/2026-11-01_Reference_TinyCPU_ScoreFirstTTT"
RECORD = "records/track_non_record_16mb/" + EXAMPLE.name
CAPPED = {"train_cap_s": 2, "setup_allowance_s": 1}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from reference_impl.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("repro-server")
    data_root = root / "data-root"
    write_synthetic_dataset(data_root / "synth", vocab_size=512, train_tokens=400_000, val_tokens=32_768, seed=0)
    for p in [data_root, *data_root.rglob("*")]:  # read by the sandbox's unprivileged uid
        p.chmod(0o755 if p.is_dir() else 0o644)
    work, bare = root / "work", root / "remote.git"
    (work / RECORD).parent.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLE, work / RECORD)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "tiny record")
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    srv = Server(root / "data", upstream=bare, env={"PGOLF_REPRO_DATA_ROOT": str(data_root)}).start()
    client = httpx.Client(base_url=srv.url, headers=AUTH, timeout=60)
    yield {"srv": srv, "bare": bare, "client": client, "data_root": data_root, "root": root}
    client.close()
    srv.stop()


def wait_reproduction(client, rid: str, timeout: float = 180) -> dict:
    return wait_done(client, rid, timeout, kind="reproductions")


def test_reproduction_runs_and_matches_the_cli(env, tmp_path):
    client = env["client"]
    body = {"repo": str(env["bare"]), "ref": "main", "record": RECORD, "data": "synth", "options": CAPPED}
    res = client.post("/v1/reproductions", json=body)
    assert res.status_code == 202, res.text
    rid = res.json()["id"]
    assert res.headers["Location"] == f"/v1/reproductions/{rid}"
    done = wait_reproduction(client, rid)
    assert done["status"] == "done", done["error"]
    assert done["verdict"] == "INCOMPLETE"
    repro = done["report"]["records"][0]["reproduction"]
    (row,) = repro["seeds"]
    assert row["status"] == "train_cap" and "over the training cap" in row["reason"]
    assert done["report"]["records"][0]["path"] == RECORD

    # the same commit, record, data and options is the same reproduction
    again = client.post("/v1/reproductions", json=body)
    assert again.status_code == 200 and again.json()["id"] == rid
    md = client.get(f"/v1/reproductions/{rid}/report.md")
    assert md.status_code == 200 and "**Reproduction:** `INCOMPLETE`" in md.text

    # one path: the CLI on the same folder with the same options gives the same reproduction
    checkout = tmp_path / "checkout"
    _git(tmp_path, "clone", "-q", str(env["bare"]), str(checkout))
    out = tmp_path / "cli.json"
    proc = subprocess.run([sys.executable, "-m", "auditor", "reproduce", str(checkout / RECORD), "--data",
                           str(env["data_root"] / "synth"), "--train-cap", "2", "--setup-allowance", "1",
                           "-f", "json", "-o", str(out)], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    cli = json.loads(out.read_text())
    assert cli["options"] == done["report"]["options"]
    cli_repro = cli["records"][0]["reproduction"]
    for key in ("verdict", "tolerance_bpb", "tolerance_source", "nproc", "caps_s"):
        assert cli_repro[key] == repro[key], key
    assert [s["status"] for s in cli_repro["seeds"]] == [s["status"] for s in repro["seeds"]]
    assert cli["records"][0]["verdict"] == done["report"]["records"][0]["verdict"]


def test_bad_requests_are_clear_422s(env):
    client = env["client"]
    base = {"repo": str(env["bare"]), "ref": "main", "record": RECORD, "data": "synth"}
    cases = [
        ({**base, "data": "nope"}, "no data folder"),
        ({**base, "data": "../etc"}, "not a path"),
        ({**base, "record": "records/x/../../etc"}, "records/<track>/<folder>"),
        ({**base, "pr": 3}, "either"),
        ({**base, "options": {"scale_steps": 2}}, "scale_steps"),
        ({**base, "options": {"extra": 1}}, "extra"),
        ({**base, "ref": "no-such-branch"}, ""),
    ]
    for body, text in cases:
        res = client.post("/v1/reproductions", json=body)
        assert res.status_code == 422, (body, res.text)
        assert text in res.text, (body, res.text)
    assert client.get("/v1/reproductions/rnope").status_code == 404


def test_a_record_missing_from_the_commit_fails_with_the_reason(env):
    client = env["client"]
    body = {"repo": str(env["bare"]), "ref": "main", "record": "records/track_non_record_16mb/2026-01-01_Nothing",
            "data": "synth", "options": CAPPED}
    res = client.post("/v1/reproductions", json=body)
    assert res.status_code == 202, res.text
    done = wait_reproduction(client, res.json()["id"])
    assert done["status"] == "failed" and "not found" in done["error"]
    assert client.get(f"/v1/reproductions/{done['id']}/report.json").status_code == 409


def test_posts_need_a_token(env):
    res = httpx.post(env["srv"].url + "/v1/reproductions", json={"pr": 1, "record": RECORD, "data": "synth"})
    assert res.status_code == 401


def test_reproductions_go_to_gpu_workers_through_the_queue(env, tmp_path):
    """With a Redis URL the server only enqueues; a `pgolf worker --queue pgolf-reproduce` (a GPU
    host, here a burst worker with its own data root) runs it and the report comes back."""
    import os
    import uuid

    redis = pytest.importorskip("redis")
    url = os.environ.get("PGOLF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    queue = f"pgolf-test-repro-{uuid.uuid4().hex[:8]}"
    try:
        with Server(tmp_path / "data", redis_url=url, env={"PGOLF_REPRODUCE_QUEUE": queue}) as srv, \
             httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
            # no data root on the API host: the worker's own decides
            body = {"repo": str(env["bare"]), "ref": "main", "record": RECORD, "data": "synth", "options": CAPPED}
            res = client.post("/v1/reproductions", json=body)
            assert res.status_code == 202, res.text
            rid = res.json()["id"]
            deadline = time.monotonic() + 30
            while client.get(f"/v1/reproductions/{rid}").json()["status"] == "queued" and time.monotonic() < deadline:
                from rq import Queue
                from rq.serializers import JSONSerializer

                if Queue(queue, connection=redis.Redis.from_url(url), serializer=JSONSerializer).job_ids:
                    break
                time.sleep(0.2)
            worker = subprocess.run([sys.executable, "-m", "api.cli", "worker", "--burst", "--redis-url", url,
                                     "--queue", f"pgolf-rerun-unused,{queue}"], cwd=REPO_ROOT, check=False,
                                    capture_output=True, text=True, timeout=300,
                                    env={**os.environ, "PGOLF_REPRO_DATA_ROOT": str(env["data_root"])})
            assert worker.returncode == 0, worker.stderr[-3000:]
            done = wait_reproduction(client, rid, timeout=60)
            assert done["status"] == "done", done["error"]
            assert done["verdict"] == "INCOMPLETE"
            assert done["report"]["records"][0]["reproduction"]["seeds"][0]["status"] == "train_cap"
    finally:
        conn = redis.Redis.from_url(url)
        for key in conn.scan_iter(f"rq:*{queue}*"):
            conn.delete(key)
