"""The sandbox contains a malicious subject and reports each attempt (DYN501), and the host is
untouched afterwards. Where a kernel mechanism is missing (no root, no unshare) the tests check
the degraded behaviour that is still promised (the in-process guard) and that the result says so."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from test_rerun_support import SUBJECTS, describe, fast_options

from auditor.rerun.sandbox import DEFAULT_UID, SandboxLimits, namespaces_available, run_sandboxed

pytestmark = pytest.mark.slow


def _uid_processes(uid: int, settle_s: float = 10.0) -> list[int]:
    """Processes still owned by the sandbox uid once the kernel has had time to reap them
    (PID-namespace teardown and zombie reaping are asynchronous)."""
    deadline = time.monotonic() + settle_s
    while True:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def _sandbox_root() -> Path:
    """A private directory the sandbox uid can traverse (pytest's tmp_path parents cannot be)."""
    root = Path(tempfile.mkdtemp(prefix="pgolf-sbx-test-"))
    root.chmod(0o711)
    return root


def test_malicious_subject_is_contained_and_reported(tmp_path):
    from auditor.rerun.harness import rerun_record

    tag = uuid.uuid4().hex[:10]
    targets = [f"/tmp/pgolf-escape-{tag}", str(Path(__file__).resolve().parents[1] / f"pgolf-escape-{tag}"),
               f"/etc/pgolf-escape-{tag}"]
    opts = fast_options(probes=("gibbs",), run_timeout_s=15, timeout_s=60, max_processes=48,
                        env={"ESCAPE_TARGETS": ":".join(targets)}, keep_workdir=True)
    result = rerun_record(SUBJECTS / "malicious_escape", opts)
    try:
        events = {f.data.get("event") for f in result.findings if f.rule_id == "DYN501"}
        assert {"write_outside", "network", "timeout"} <= events, describe(result)
        assert "spawn" in events or "process_limit" in events, describe(result)
        writes = next(f for f in result.findings if f.data.get("event") == "write_outside")
        assert set(writes.data["targets"]) == set(targets), describe(result)
        assert writes.location.file == "train_gpt.py" and writes.location.line and writes.location.snippet
        assert writes.severity.value == "error" and writes.confidence.value == "proof" and writes.origin == "dynamic"
        net = [f for f in result.findings if f.data.get("event") == "network"]
        assert any("198.51.100.7" in t for f in net for t in f.data["targets"]), describe(result)
        assert any(f.rule_id == "DYN900" for f in result.findings)  # no metric line: no verdict from it
        assert result.status == "failed"

        stdout = (Path(result.summary["workdir"]) / "gibbs_small" / "out" / "stdout.txt").read_text()
        for t in targets:  # the guard denied every Python-level write
            assert f"BLOCKED write {t}" in stdout, stdout
            assert not Path(t).exists() and not Path(t + ".raw").exists(), f"{t} leaked to the host"
        assert "BLOCKED connect 198.51.100.7:80" in stdout and "BLOCKED connect 127.0.0.1:22" in stdout
        assert "BLOCKED fork after" in stdout and "sleeping forever" in stdout
        ns_ok, _ = namespaces_available()
        if ns_ok and os.geteuid() == 0:
            mech = result.summary["sandbox"]
            assert mech["network_namespace"] == "active" and mech["private_tmp"] == "active"
            assert mech["unprivileged_uid"].startswith("active")
            # the raw libc write below the guard: the kernel refuses the repo and /etc ...
            assert f"BLOCKED raw write {targets[1]}.raw" in stdout and f"BLOCKED raw write {targets[2]}.raw" in stdout
            # ... and the /tmp it can write to is a private tmpfs that vanished with the sandbox
            assert f"ALLOWED raw write {targets[0]}.raw" in stdout
            assert not _uid_processes(DEFAULT_UID), "sandbox processes survived the kill"
    finally:
        shutil.rmtree(result.summary.get("workdir", "/nonexistent"), ignore_errors=True)
        for t in targets:
            for p in (Path(t), Path(t + ".raw")):
                if p.exists():
                    p.unlink()


def test_unbounded_allocation_is_stopped_by_the_memory_limit():
    from auditor.rerun.harness import rerun_record

    opts = fast_options(probes=("gibbs",), run_timeout_s=60, timeout_s=90, memory_bytes=512 << 20)
    result = rerun_record(SUBJECTS / "malicious_memory", opts)
    mem = [f for f in result.findings if f.data.get("event") == "memory_limit"]
    assert mem, describe(result)
    assert result.summary["runs"][0]["timed_out"] is False  # stopped for memory, not by the clock
    assert any(f.rule_id == "DYN900" for f in result.findings)


def test_sandboxed_program_sees_no_network_and_no_root():
    tmp_path = _sandbox_root()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "probe.py").write_text(
        "import os, socket\n"
        "print('uid', os.getuid())\n"
        "print('ifaces', sorted(n for _, n in socket.if_nameindex()))\n"
        "print('pid', os.getpid())\n"
        "open('inside.txt', 'w').write('ok')\n")
    env = {"PATH": "/usr/bin:/bin", "PGOLF_WORKSPACE": str(ws)}
    res = run_sandboxed([sys.executable, "probe.py"], ws, env, SandboxLimits(wall_seconds=60), out_dir=tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert (ws / "inside.txt").read_text() == "ok"  # the workspace itself is writable
    ns_ok, _ = namespaces_available()
    if ns_ok and os.geteuid() == 0:
        assert f"uid {DEFAULT_UID}" in res.stdout
        assert "ifaces ['lo']" in res.stdout  # a fresh network namespace: loopback only (and down)
        assert "pid 1\n" in res.stdout  # PID 1 of its own PID namespace
        assert res.mechanisms["cgroups"].startswith("active") or "unavailable" in res.mechanisms["cgroups"]
    else:
        assert any("unavailable" in v for v in res.mechanisms.values())  # degradation is reported
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_wall_clock_limit_kills_the_process_tree():
    tmp_path = _sandbox_root()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sleeper.py").write_text(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"  # tries to leave the process group
        "    time.sleep(3600)\n"
        "time.sleep(3600)\n")
    res = run_sandboxed([sys.executable, "sleeper.py"], ws, {"PATH": "/usr/bin:/bin"},
                        SandboxLimits(wall_seconds=3), out_dir=tmp_path / "out")
    assert res.timed_out and res.wall_seconds < 30
    ns_ok, _ = namespaces_available()
    if ns_ok and os.geteuid() == 0:
        assert not _uid_processes(DEFAULT_UID)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_without_namespaces_the_guard_still_denies_and_the_result_says_so(monkeypatch):
    from auditor.rerun import sandbox
    from auditor.rerun.workspace import BOOTSTRAP_DIR

    monkeypatch.setattr(sandbox, "namespaces_available", lambda: (False, "simulated: unshare missing"))
    root = _sandbox_root()
    ws = root / "ws"
    ws.mkdir()
    target = f"/tmp/pgolf-degraded-{uuid.uuid4().hex[:10]}"
    (ws / "probe.py").write_text(
        "import socket\n"
        f"try:\n    open({target!r}, 'w').write('x')\nexcept PermissionError:\n    print('write denied')\n"
        "try:\n    socket.create_connection(('198.51.100.7', 80), timeout=2)\nexcept PermissionError:\n"
        "    print('network denied')\n")
    env = {"PATH": "/usr/bin:/bin", "PGOLF_WORKSPACE": str(ws), "PYTHONPATH": str(BOOTSTRAP_DIR)}
    res = sandbox.run_sandboxed([sys.executable, "probe.py"], ws, env, SandboxLimits(wall_seconds=60),
                                out_dir=root / "out", out_fds={"PGOLF_GUARD_FD": "guard.jsonl"})
    try:
        assert res.returncode == 0, res.stderr
        assert "write denied" in res.stdout and "network denied" in res.stdout
        assert not Path(target).exists()
        assert res.mechanisms["network_namespace"].startswith("unavailable: simulated")
        assert {e["event"] for e in res.guard_events} >= {"write_outside", "network"}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if Path(target).exists():
            Path(target).unlink()
