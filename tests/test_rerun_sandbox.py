"""The sandbox contains a malicious subject and reports each attempt (DYN501), and the host is
untouched afterwards. Where a kernel mechanism is missing (no root, no unshare) the tests check
the degraded behaviour that is still promised (the in-process guard) and that the result says so."""

from __future__ import annotations

import ast
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


class _HostListener:
    """A Unix-socket server on the host that records every connection it accepts."""

    def __init__(self, path: str):
        import socket
        import threading

        self.path = path
        self.received: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)  # as the host's database sockets are
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def stop(self) -> list[bytes]:
        self.running = False
        self.thread.join(5)
        self.sock.close()
        os.unlink(self.path)
        return self.received


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
    if os.path.isdir("/run/lock") and os.access("/run/lock", os.W_OK):
        targets.append(f"/run/lock/pgolf-escape-{tag}")  # world-writable on the host
    listener = _HostListener(f"/run/lock/pgolf-sock-{tag}" if os.path.isdir("/run/lock") else
                             f"/tmp/pgolf-sock-{tag}")
    opts = fast_options(probes=("gibbs",), run_timeout_s=15, timeout_s=60, max_processes=48,
                        env={"ESCAPE_TARGETS": ":".join(targets), "HOST_SOCKETS": listener.path}, keep_workdir=True)
    try:
        result = rerun_record(SUBJECTS / "malicious_escape", opts)
    finally:
        received = listener.stop()
    try:
        assert received == [], f"the host's Unix socket listener got {received}"
        events = {f.data.get("event") for f in result.findings if f.rule_id == "DYN501"}
        assert {"write_outside", "network", "timeout"} <= events, describe(result)
        assert "spawn" in events or "process_limit" in events, describe(result)
        writes = next(f for f in result.findings if f.data.get("event") == "write_outside")
        private_tmp = result.summary["sandbox"].get("private_tmp") == "active"
        # with a private tmpfs on /tmp a write there is harmless (it vanishes with the sandbox) and is
        # not reported; without one, /tmp is the host's and the guard denies it like any other
        outside = [t for t in targets if not (private_tmp and t.startswith("/tmp/"))]
        assert set(writes.data["targets"]) == set(outside), describe(result)
        assert writes.location.file == "train_gpt.py" and writes.location.line and writes.location.snippet
        assert writes.severity.value == "error" and writes.confidence.value == "proof" and writes.origin == "dynamic"
        net = [f for f in result.findings if f.data.get("event") == "network"]
        assert any("198.51.100.7" in t for f in net for t in f.data["targets"]), describe(result)
        assert any(f.rule_id == "DYN900" for f in result.findings)  # no metric line: no verdict from it
        assert result.status == "failed"

        stdout = (Path(result.summary["workdir"]) / "gibbs_small" / "out" / "stdout.txt").read_text()
        # the plain /tmp target lands in the private tmpfs; every other one is refused, by the guard
        # or (a checkout under /tmp, shown read-only in the view) by the kernel
        allowed = [targets[0]] if private_tmp else []
        for t in targets:
            assert (f"ALLOWED write {t}" if t in allowed else f"BLOCKED write {t}") in stdout, stdout
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
        if ns_ok and os.geteuid() == 0 and mech.get("seccomp", "").startswith("active"):
            # the kernel side names what the libc calls tried, below the program's Python layer
            kernel = {f.data["event"]: f for f in result.findings if f.data.get("source") == "kernel"}
            assert {t + ".raw" for t in targets[1:]} <= set(kernel["write_outside"].data["targets"]), describe(result)
            assert listener.path in kernel["unix_connect"].data["targets"], describe(result)
            assert f"BLOCKED raw unix connect {listener.path}" in stdout
            assert all(f.severity.value == "error" for f in kernel.values())
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
        "print('view', sorted(os.listdir('/')), sorted(os.listdir('/var')), sorted(os.listdir('/dev')))\n"
        "print('shadow', os.path.exists('/etc/shadow'), 'run', os.path.exists('/run'))\n"
        "open('inside.txt', 'w').write('ok')\n")
    env = {"PATH": "/usr/bin:/bin", "PGOLF_WORKSPACE": str(ws)}
    res = run_sandboxed([sys.executable, "probe.py"], ws, env, SandboxLimits(wall_seconds=60), out_dir=tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert (ws / "inside.txt").read_text() == "ok"  # the workspace itself is writable
    ns_ok, _ = namespaces_available()
    if ns_ok and os.geteuid() == 0:
        assert f"uid {DEFAULT_UID}" in res.stdout
        assert "ifaces ['lo']" in res.stdout  # a fresh network namespace: loopback only (and down)
        # its own PID namespace: PID 1, or 2 under the syscall filter's supervisor
        assert ("pid 2\n" if res.mechanisms["seccomp"].startswith("active") else "pid 1\n") in res.stdout
        if res.mechanisms["mount_view"].startswith("active"):
            # deny-by-default: the view holds system code, import roots, the workspace, private tmp
            view = ast.literal_eval(res.stdout.split("view ", 1)[1].split("\n", 1)[0].replace("] [", "], ["))
            assert not {"run", "home", "mnt", "srv", "opt", "media", "boot"} & set(view[0]), view
            assert view[1] == ["tmp"] and set(view[2]) <= {"null", "zero", "full", "random", "urandom", "shm",
                                                         "fd", "stdin", "stdout", "stderr"}, view
            assert "shadow False run False" in res.stdout
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


_LIBC_ATTACKS = '''
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def report(name, rc):
    print(name, "ALLOWED" if rc >= 0 else "BLOCKED " + os.strerror(ctypes.get_errno()), flush=True)
for target in sys.argv[1].split(":"):
    fd = libc.open(target.encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    report("write " + target, fd)
    if fd >= 0:
        libc.write(fd, b"escaped", 7)
        libc.close(fd)
report("unshare", libc.unshare(0x10000000))  # CLONE_NEWUSER: a way to mount things
report("io_uring", libc.syscall(425, 8, ctypes.create_string_buffer(120)))  # would bypass seccomp
report("packet", libc.socket(17, socket.SOCK_RAW, 0))  # AF_PACKET
'''


def _workspace(**scripts: str) -> tuple[Path, Path]:
    """A sandbox root with its workspace ``ws`` holding ``scripts`` (name without .py -> source)."""
    root = _sandbox_root()
    ws = root / "ws"
    ws.mkdir()
    for name, text in scripts.items():
        (ws / f"{name}.py").write_text(text)
    return root, ws


@pytest.mark.skipif(os.geteuid() != 0 or not namespaces_available()[0], reason="needs root and namespaces")
def test_libc_level_attacks_are_refused_and_named_by_the_sandbox_not_the_program():
    from auditor.rerun.sandbox import isolation_available

    if isolation_available().get("seccomp") != "active":
        pytest.skip(f"seccomp: {isolation_available().get('seccomp')}")
    root, ws = _workspace(attack=_LIBC_ATTACKS)
    tag = uuid.uuid4().hex[:10]
    host_target = f"/run/lock/pgolf-escape-{tag}" if os.path.isdir("/run/lock") else f"/var/tmp/pgolf-escape-{tag}"
    try:
        res = run_sandboxed([sys.executable, "attack.py", f"{host_target}:{ws}/fine.txt"], ws, {"PATH": "/usr/bin:/bin"},
                            SandboxLimits(wall_seconds=60), out_dir=root / "out")
        assert res.returncode == 0, res.stderr
        assert not Path(host_target).exists(), "a libc write reached the host"
        assert f"write {host_target} BLOCKED" in res.stdout and f"write {ws}/fine.txt ALLOWED" in res.stdout
        for name in ("unshare", "io_uring", "packet"):
            assert f"{name} BLOCKED" in res.stdout, res.stdout
        seen = {(e["event"], e.get("syscall")) for e in res.sandbox_events}
        assert ("write_outside", "openat") in seen and ("forbidden_syscall", "unshare") in seen
        assert ("forbidden_syscall", "io_uring_setup") in seen and ("socket_family", "socket") in seen
        assert [e["target"] for e in res.sandbox_events if e["event"] == "write_outside"] == [host_target]
        assert not any(e["event"] == "host_write" for e in res.sandbox_events)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        Path(host_target).unlink(missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0 or not namespaces_available()[0], reason="needs root and namespaces")
def test_a_write_that_reaches_the_host_is_found_by_the_host_check(monkeypatch):
    """With the mount view and the filter switched off (as on a host that lacks them), a libc
    write to a world-writable host directory lands; the check after the run, which trusts neither
    the program nor the filter, must name it."""
    from auditor.rerun import sandbox

    if not (os.path.isdir("/run/lock") and os.stat("/run/lock").st_mode & 0o002):
        pytest.skip("no world-writable /run/lock on this host")
    monkeypatch.setattr(sandbox, "isolation_available",
                        lambda: {"mount_view": "unavailable: simulated", "seccomp": "unavailable: simulated"})
    root, ws = _workspace(attack=_LIBC_ATTACKS)
    host_target = f"/run/lock/pgolf-escape-{uuid.uuid4().hex[:10]}"
    try:
        # a system interpreter the sandbox uid can reach without a mount view
        python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)
        if python is None:
            pytest.skip("no system python3")
        res = sandbox.run_sandboxed([python, "attack.py", host_target], ws, {"PATH": "/usr/bin:/bin"},
                                    SandboxLimits(wall_seconds=60), out_dir=root / "out")
        if "unprivileged_uid" in res.mechanisms and not res.mechanisms["unprivileged_uid"].startswith("active"):
            pytest.skip(res.mechanisms["unprivileged_uid"])
        assert res.mechanisms["mount_view"].startswith("unavailable") and Path(host_target).exists()
        assert {"event": "host_write", "target": host_target, "denied": False} in res.sandbox_events
    finally:
        shutil.rmtree(root, ignore_errors=True)
        Path(host_target).unlink(missing_ok=True)


_CONTAINED_PROBES = '''
import os, signal, socket, sys
def attempt(name, fn):
    try:
        out = fn()
        print(name, "ALLOWED", out, flush=True)
    except Exception as exc:
        print(name, "BLOCKED", type(exc).__name__, flush=True)
def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect("\\0" + sys.argv[1])
    s.sendall(b"escaped")
attempt("abstract", abstract)
attempt("tcp_loopback", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2))
attempt("shadow", lambda: open("/etc/shadow").read(10))
attempt("signal_parent", lambda: os.kill(os.getppid(), signal.SIGTERM))
attempt("signal_init", lambda: os.kill(1, signal.SIGKILL))
attempt("harness_env", lambda: open("/proc/%d/environ" % os.getppid(), "rb").read(100))
print("env_keys", sorted(os.environ), flush=True)
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), flush=True)
'''


@pytest.mark.skipif(os.geteuid() != 0 or not namespaces_available()[0], reason="needs root and namespaces")
def test_what_was_contained_stays_contained(monkeypatch):
    """Loopback TCP and abstract Unix sockets of the host, /etc/shadow, the harness's environment
    and processes, signals to the sandbox's parent: none reachable, and the host listeners get nothing."""
    import socket
    import threading

    monkeypatch.setenv("PGOLF_HARNESS_SECRET", "do-not-leak")
    name = f"pgolf-abstract-{uuid.uuid4().hex[:10]}"
    listeners = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), socket.socket(socket.AF_INET, socket.SOCK_STREAM)]
    listeners[0].bind("\0" + name)
    listeners[1].bind(("127.0.0.1", 0))
    got: list = []
    for lst in listeners:
        lst.listen(4)
        lst.settimeout(0.2)

    def serve():
        while not done.is_set():
            for lst in listeners:
                try:
                    conn, _ = lst.accept()
                    got.append(conn.recv(100))
                    conn.close()
                except OSError:
                    pass

    done = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    root, ws = _workspace(probe=_CONTAINED_PROBES)
    try:
        res = run_sandboxed([sys.executable, "probe.py", name, str(listeners[1].getsockname()[1])], ws,
                            {"PATH": "/usr/bin:/bin"}, SandboxLimits(wall_seconds=60), out_dir=root / "out")
    finally:
        done.set()
        thread.join(5)
        for lst in listeners:
            lst.close()
        shutil.rmtree(root, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    assert got == [], got
    for probe in ("abstract", "tcp_loopback", "shadow", "signal_parent", "signal_init", "harness_env"):
        assert f"{probe} BLOCKED" in res.stdout, res.stdout
    assert "PGOLF_HARNESS_SECRET" not in res.stdout
    procs = ast.literal_eval(res.stdout.split("procs ", 1)[1].splitlines()[0])
    assert max(procs) < 10, procs  # its own PID namespace: the supervisor and itself, nothing of the host


def test_a_program_filling_the_disk_is_stopped_at_the_workspace_budget():
    root, ws = _workspace(fill=(
        "import os\n"
        "chunk = os.urandom(1 << 20) * 8\n"
        "i = 0\n"
        "while True:\n"
        "    with open(f'junk{i}.bin', 'wb') as f:\n"
        "        f.write(chunk)\n"
        "    i += 1\n"))
    try:
        t0 = time.monotonic()
        res = run_sandboxed([sys.executable, "fill.py"], ws, {"PATH": "/usr/bin:/bin"},
                            SandboxLimits(wall_seconds=120, workspace_bytes=64 << 20), out_dir=root / "out")
        assert time.monotonic() - t0 < 30 and not res.timed_out
        assert {"event": "disk_limit", "target": "64 MiB", "denied": True} in res.sandbox_events
        assert res.workspace_bytes < (64 << 20) + (200 << 20)  # stopped within a watch interval of writes
        assert any("workspace grew over 64 MiB" in n for n in res.notes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
