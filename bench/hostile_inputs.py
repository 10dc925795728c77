"""Benchmark: what hostile inputs cost pgolf, each generated here and audited by the real CLI.

    .venv/bin/python bench/hostile_inputs.py    # writes bench/results/hostile_inputs.json

Each case runs ``pgolf audit --no-cache`` in a subprocess and records its wall time, its peak
resident memory (``wait4``), its exit code and the findings that say what was not checked:

* a 50 MB ``train_gpt.py`` (the static analysis budget);
* a record folder with 20,000 small files, and one with 20,000 logs (the listing and log budgets);
* a git branch whose tree has 1,000,000 entries (refused from the streamed listing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOT = ROOT / "examples" / "records" / "track_non_record_16mb" / "2026-11-02_Broken_SLOT"


def run_cli(args: list[str]) -> dict:
    """Wall time, peak RSS (wait4: the process and the pool workers it reaped), exit code, and
    the findings that say what was not checked."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "auditor", "audit", "--no-cache", *args, "-f", "json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks, err_chunks = [], []
    import threading

    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read())) for s, b in
               ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    out, err = b"".join(out_chunks), b"".join(err_chunks)
    said = []
    try:
        report = json.loads(out)
        for rec in report.get("records", []):
            said += [f"{f['rule_id']}: {f['message'][:140]}" for f in rec["findings"]
                     if f["rule_id"] in ("HYG009", "HYG010")]
        verdict = report.get("verdict")
    except ValueError:
        verdict = None
        said.append(err.decode(errors="replace").strip()[-200:])
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024), "exit": proc.returncode,
            "verdict": verdict, "findings": said[:4]}


def make_inputs(tmp: Path) -> None:
    """The hostile inputs (run in a child process, so that this one stays small: a child's peak
    RSS starts from its parent's)."""
    huge = tmp / "huge" / "rec"
    shutil.copytree(SLOT, huge)
    with open(huge / "train_gpt.py", "a", encoding="utf-8") as f:
        f.writelines(f"def helper_{i}(x):\n    return x * {i} + 1\n\n" for i in range(1_400_000))
    with open(huge / "train_gpt.py", "r+b") as f:
        f.truncate(50_000_000 + (SLOT / "train_gpt.py").stat().st_size)
    files = tmp / "files" / "rec"
    shutil.copytree(SLOT, files)
    for i in range(20_000):
        (files / f"a{i:05d}.bin").write_bytes(b"x")
    logs = tmp / "logs" / "rec"
    shutil.copytree(SLOT, logs)
    for i in range(20_000):
        (logs / f"a{i:05d}.txt").write_text("step:1/1 train_loss:1.0\n")
    repo = tmp / "flood.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    git = ["git", "--git-dir", str(repo)]
    blob = subprocess.run([*git, "hash-object", "-w", "--stdin"], input=b"", capture_output=True,
                          check=True).stdout.decode().strip()
    listing = "".join(f"100644 blob {blob}\tf{i:07d}\n" for i in range(1_000_000)).encode()
    tree = subprocess.run([*git, "mktree"], input=listing, capture_output=True, check=True).stdout.decode().strip()
    commit = subprocess.run([*git, "-c", "user.name=b", "-c", "user.email=b@b", "commit-tree", tree, "-m", "x"],
                            capture_output=True, check=True).stdout.decode().strip()
    subprocess.run([*git, "update-ref", "refs/heads/flood", commit], check=True)


def main() -> None:
    import multiprocessing

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        maker = multiprocessing.get_context("spawn").Process(target=make_inputs, args=(tmp,))
        maker.start()
        maker.join()
        results["script_50_mb"] = run_cli([str(tmp / "huge" / "rec")])
        results["folder_20000_files"] = run_cli([str(tmp / "files" / "rec")])
        results["folder_20000_logs"] = run_cli([str(tmp / "logs" / "rec")])
        results["git_tree_1e6_entries"] = run_cli(["--git", f"file://{tmp / 'flood.git'}", "--ref", "flood"])

    out = {"cases": results, "cpus": os.cpu_count(),
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           }
    path = ROOT / "bench" / "results" / "hostile_inputs.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
