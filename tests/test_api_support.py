"""Shared helpers for the service tests (no tests here): synthetic records, local git remotes that
play the part of PR forks, and a real `pgolf serve` process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"  # what clients send
TOKEN_NAME = "tester"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRACK = "records/track_10min_16mb"

TRAIN_SCRIPT = '''"""A tiny stand-in training script for service tests (never run by the static audit)."""
import math
import os

import torch

SEED = int(os.environ.get("SEED", 1337))
VOCAB = 1024


def load_tokens(split):
    return torch.load(f"data/fineweb_{split}.pt")


def train(model, opt, train_tokens, steps):
    for step in range(steps):
        x = train_tokens[step : step + 1024]
        loss = model(x[:-1], x[1:])
        loss.backward()
        opt.step()
        opt.zero_grad()


def eval_val(model, val_tokens, bytes_per_token):
    with torch.no_grad():
        loss = model(val_tokens[:-1], val_tokens[1:]).item()
    return loss, loss / math.log(2) / bytes_per_token
'''

# A variant that adapts on the validation tokens before scoring them (what reviewers must catch).
FLAGGED_EXTRA = '''

def adapt_then_score(model, opt, val_tokens, bytes_per_token):
    train(model, opt, val_tokens, steps=10)  # trains on val_tokens before eval
    return eval_val(model, val_tokens, bytes_per_token)
'''


def record_files(index: int, *, flagged: bool = False, seeds=(1, 2, 3)) -> dict[str, str]:
    """A plausible record folder: README, submission.json, one Family-A style log per seed, script."""
    script = TRAIN_SCRIPT + (FLAGGED_EXTRA if flagged else "") + f"\n# variant {index}\n"
    code_bytes = len(script.encode())
    files = {"train_gpt.py": script}
    seed_results = {}
    for k, seed in enumerate(seeds):
        bpb = 1.2200 + 0.0004 * k + 0.00001 * index
        loss = bpb * 0.6931 * 2.436
        model_bytes = 15_700_000 + 35_000 * k + index
        total = model_bytes + code_bytes
        seed_results[str(seed)] = {"val_bpb": round(bpb, 8), "val_loss": round(loss, 8), "artifact_bytes": total}
        files[f"train_seed{seed}.log"] = "\n".join([
            f"seed:{seed}",
            "world_size:8 grad_accum_steps:1",
            "val_loader:shards pattern=./data/fineweb_val_*.bin tokens:62021632",
            "model_params:17059912",
            "step:0/20000 val_loss:6.9357 val_bpb:4.1077 train_time:0ms step_avg:0.01ms",
            "step:1000/20000 train_loss:2.4012 train_time:60000ms step_avg:60.00ms",
            "stopping_early: wallclock_cap train_time:599800ms step:9900/20000",
            f"step:9900/20000 val_loss:{loss + 0.01:.4f} val_bpb:{bpb + 0.006:.4f} train_time:599800ms step_avg:60.59ms",
            "Serialized model: 67224983 bytes",
            f"Code size: {code_bytes} bytes",
            f"Total submission size: {67224983 + code_bytes} bytes",
            f"Serialized model int8+zlib: {model_bytes} bytes",
            f"Total submission size int8+zlib: {total} bytes",
            f"final_int8_zlib_roundtrip val_loss:{loss:.4f} val_bpb:{bpb:.4f} eval_time:1398ms",
            f"final_int8_zlib_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}",
            "",
        ])
    mean = sum(r["val_bpb"] for r in seed_results.values()) / len(seed_results)
    files["submission.json"] = json.dumps({
        "author": "Test Author", "github_id": "test-author", "name": f"Service test record {index}",
        "blurb": "A synthetic record for the pgolf service tests.", "date": "2026-05-01T00:00:00Z",
        "track": "10min_16mb", "val_bpb": round(mean, 8), "seeds": list(seeds), "seed_results": seed_results,
        "bytes_code": code_bytes,
    }, indent=2)
    files["README.md"] = (f"# Service test record {index}\n\nMean val_bpb {mean:.5f} over seeds "
                          f"{', '.join(map(str, seeds))}.\n\n```\ntorchrun --nproc_per_node=8 train_gpt.py\n```\n")
    return files


def record_name(index: int) -> str:
    return f"2026-05-01_ServiceTest{index:03d}"


def write_record(folder: Path, index: int, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in record_files(index, **kw).items():
        (folder / name).write_text(text)
    return folder


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_remote(root: Path, branches: int, *, flagged: frozenset[int] | set[int] = frozenset(),
                pulls: dict[int, int] | None = None) -> Path:
    """A bare repo: ``main`` with a README, branch ``rec-<i>`` adding record i, and
    ``refs/pull/<n>/head`` for each {n: i} in ``pulls`` (as GitHub publishes PR heads)."""
    work, bare = root / "work", root / "remote.git"
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("# parameter-golf (test upstream)\n")
    (work / "records" / "track_10min_16mb").mkdir(parents=True)
    (work / "records" / "track_10min_16mb" / ".keep").write_text("")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "upstream")
    for i in range(branches):
        _git(work, "checkout", "-q", "-b", f"rec-{i}", "main")
        write_record(work / TRACK / record_name(i), i, flagged=i in flagged)
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", f"record {i}")
    _git(work, "checkout", "-q", "main")
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    for number, i in (pulls or {}).items():
        _git(bare, "update-ref", f"refs/pull/{number}/head", f"refs/heads/rec-{i}")
    return bare


def commit_of(bare: Path, ref: str) -> str:
    return _git(bare, "rev-parse", ref).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m api.cli serve` in a subprocess on 127.0.0.1 (a real uvicorn, a real database)."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None, workers: int = 2,
                 upstream: Path | None = None, redis_url: str | None = None, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.database_url = database_url
        self.workers = workers
        self.upstream = upstream
        self.redis_url = redis_url
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 60) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tokens = self.data_dir / "tokens.txt"
        tokens.write_text(f"# test tokens\n{TOKEN_NAME}:{TOKEN}\n")
        cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--workers", str(self.workers), "--token-file", str(tokens), "--allow-local-repos",
               "--log-level", "info"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        if self.upstream:
            cmd += ["--upstream", str(self.upstream)]
        if self.redis_url:
            cmd += ["--redis-url", self.redis_url]
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up:\n{self.log_path.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_done(client: httpx.Client, job_id: str, timeout: float = 120, kind: str = "audits") -> dict:
    """Poll ``/v1/<kind>/<id>`` (audits or reproductions) until the job is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/{kind}/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{kind} {job_id} did not finish in {timeout} s: {body}")


def cli_json(args: list[str]) -> dict:
    """What `pgolf audit ... -f json` prints, for comparing with the service's verdict."""
    code = "import sys; from auditor.cli import main; sys.argv = ['pgolf'] + sys.argv[1:]; main()"
    proc = subprocess.run([sys.executable, "-c", code, "audit", *args, "-f", "json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)
