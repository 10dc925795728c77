"""Service latency: POST a local git branch -> verdict, with 8 concurrent clients; then GET throughput.

Starts a real `pgolf serve` (uvicorn, SQLite file, local process pool) on 127.0.0.1, builds a local
bare repo with one branch per submission (so every POST is a new audit, none served from the
idempotency cache), and measures, per submission, the wall time from sending the POST until a
poll sees the verdict. Target: p95 < 2 s. Writes bench/results/api_latency.json.

    python bench/api_latency.py [--submissions 48] [--clients 8] [--workers 2] [--get-seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_api_support import AUTH, Server, make_remote

POLL_S = 0.05


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def submit_and_wait(client: httpx.Client, bare: Path, branch: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = client.post("/v1/audits", json={"repo": str(bare), "ref": f"rec-{branch}"})
    r.raise_for_status()
    audit_id = r.json()["id"]
    while True:
        body = client.get(f"/v1/audits/{audit_id}").json()
        if body["status"] in ("done", "failed"):
            return time.perf_counter() - t0, body
        time.sleep(POLL_S)


def latency_phase(srv: Server, bare: Path, branches: range, clients: int) -> dict:
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for b in branches:
        work.put(b)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop():
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
            while True:
                try:
                    branch = work.get_nowait()
                except queue.Empty:
                    return
                seconds, body = submit_and_wait(c, bare, branch)
                with lock:
                    latencies.append(seconds)
                    if body["status"] != "done":
                        failures.append(f"rec-{branch}: {body['error']}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "submissions": len(latencies), "clients": clients, "failed": len(failures), "failures": failures[:5],
        "p50_s": round(percentile(latencies, 0.50), 3), "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3), "mean_s": round(statistics.fmean(latencies), 3),
        "wall_s": round(wall, 2), "audits_per_s": round(len(latencies) / wall, 2),
    }


def get_phase(srv: Server, path: str, clients: int, seconds: float) -> dict:
    counts = [0] * clients
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(i: int):
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while time.perf_counter() < stop:
                if c.get(path).status_code == 200:
                    counts[i] += 1
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"path": path, "clients": clients, "requests": sum(counts), "errors": sum(errors),
            "requests_per_s": round(sum(counts) / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--submissions", type=int, default=48)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--get-seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api_latency.json")
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-") as tmp:
        root = Path(tmp)
        bare = make_remote(root, args.submissions + 1)
        limits = {"PGOLF_RATE_LIMIT_PER_MINUTE": "1000000", "PGOLF_RATE_LIMIT_BURST": "100000",
                  "PGOLF_MAX_INFLIGHT": "100000"}
        with Server(root / "data", workers=args.workers, env=limits) as srv:
            with httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
                warm_s, warm = submit_and_wait(c, bare, args.submissions)  # first audit: cold caches
            latency = latency_phase(srv, bare, range(args.submissions), args.clients)
            audit_id = warm["id"]
            gets = [get_phase(srv, f"/v1/audits/{audit_id}", args.clients, args.get_seconds),
                    get_phase(srv, f"/v1/audits/{audit_id}/report.json", args.clients, args.get_seconds),
                    get_phase(srv, "/healthz", args.clients, args.get_seconds)]
            metrics = httpx.get(srv.url + "/metrics").text
    audit_sum = next((float(x.split()[-1]) for x in metrics.splitlines()
                      if x.startswith("pgolf_audit_duration_seconds_sum")), None)
    audit_count = next((float(x.split()[-1]) for x in metrics.splitlines()
                        if x.startswith("pgolf_audit_duration_seconds_count")), None)
    result = {
        "benchmark": "api_latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    # Other work on the machine skews every figure: the 1-minute load, before and after.
                    "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "setup": {"database": "sqlite (WAL)", "static_workers": args.workers, "poll_interval_s": POLL_S,
                  "source": "local bare git repo, one branch per submission (no idempotency hits)",
                  "pgolf_version": warm["report"]["tool_version"] if warm.get("report") else None},
        "cold_first_audit_s": round(warm_s, 3),
        "post_to_verdict": latency,
        "mean_audit_in_worker_s": round(audit_sum / audit_count, 3) if audit_count else None,
        "target": {"p95_s": 2.0, "met": latency["p95_s"] < 2.0},
        "get_throughput": gets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
