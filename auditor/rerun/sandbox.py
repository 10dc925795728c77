"""Run an untrusted program in a child process that cannot reach the network or the host.

Layers, each reported in ``SandboxResult.mechanisms`` as "active" or why it is not:

* network: a fresh network namespace (``unshare --net``): no interfaces but a down loopback;
* processes: a fresh PID namespace with ``--kill-child`` (when the sandbox's PID 1 dies, the kernel
  kills everything in it), a new session killed as a process group on timeout, a pids cgroup and
  ``RLIMIT_NPROC`` under a dedicated uid;
* memory / CPU / files: a memory cgroup, ``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``,
  ``RLIMIT_NOFILE``, no core dumps;
* filesystem: the program runs as an unprivileged uid that owns only the workspace; /tmp, /var/tmp
  and /dev/shm are private tmpfs mounts (the workspace is re-bound inside when it lives there);
* wall clock: killed (SIGKILL to the group, the namespace and the cgroup) after ``wall_seconds``.

The guard in ``bootstrap/sitecustomize.py`` adds an audit hook inside the program that denies and
records writes outside the workspace, sockets and process spawns (defence in depth: it runs inside
the untrusted process, so the kernel-side layers above are what actually contain it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launcher.py")
DEFAULT_UID = int(os.environ.get("PGOLF_SANDBOX_UID", "64123"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
OUTPUT_TAIL_BYTES = 200_000


@dataclass
class SandboxLimits:
    wall_seconds: float = 300.0
    cpu_seconds: int | None = None  # default: wall_seconds x cores + 30
    memory_bytes: int = 6 << 30
    file_size_bytes: int = 1 << 30
    max_processes: int = 256  # threads count too (pids cgroup and RLIMIT_NPROC)
    max_open_files: int = 1024
    tmpfs_bytes: int = 256 << 20
    workspace_bytes: int = 2 << 30  # checked after the run


@dataclass
class SandboxResult:
    returncode: int | None
    signal: int | None
    timed_out: bool
    wall_seconds: float
    stdout: str
    stderr: str
    mechanisms: dict[str, str] = field(default_factory=dict)
    cgroup: dict[str, int] = field(default_factory=dict)  # pids_max_hits, oom_kills, memory_peak, ...
    guard_events: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workspace_bytes: int = 0
    out_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("stdout"), d.pop("stderr")
        d["guard_events"] = len(self.guard_events)
        return d


@lru_cache(maxsize=1)
def namespaces_available() -> tuple[bool, str]:
    """Whether ``unshare --net --pid --mount-proc`` works here (root, or CAP_SYS_ADMIN)."""
    exe = shutil.which("unshare")
    if exe is None:
        return False, "the unshare command (util-linux) is not installed"
    try:
        proc = subprocess.run(
            [exe, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "true"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed: {exc}"
    if proc.returncode != 0:
        return False, "unshare failed: " + proc.stderr.decode(errors="replace").strip()[:200]
    return True, exe


class _Cgroups:
    """A pids + memory cgroup for one run (v1 split hierarchies or the v2 unified one)."""

    def __init__(self, name: str, limits: SandboxLimits):
        self.dirs: dict[str, Path] = {}
        self.version = 0
        self.error = ""
        if os.geteuid() != 0:
            self.error = "not root"
            return
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():
                self._setup_v2(name, limits)
            elif (CGROUP_ROOT / "pids").is_dir() and (CGROUP_ROOT / "memory").is_dir():
                self._setup_v1(name, limits)
            else:
                self.error = "no pids/memory cgroup controllers mounted"
        except OSError as exc:
            self.error = f"{exc.strerror or exc}"
            self.remove()
            self.dirs = {}

    def _setup_v1(self, name: str, limits: SandboxLimits) -> None:
        self.version = 1
        pids = CGROUP_ROOT / "pids" / name
        mem = CGROUP_ROOT / "memory" / name
        pids.mkdir()
        self.dirs["pids"] = pids
        mem.mkdir()
        self.dirs["memory"] = mem
        (pids / "pids.max").write_text(str(limits.max_processes))
        (mem / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        swap = mem / "memory.memsw.limit_in_bytes"
        if swap.exists():
            try:
                swap.write_text(str(limits.memory_bytes))
            except OSError:
                pass

    def _setup_v2(self, name: str, limits: SandboxLimits) -> None:
        self.version = 2
        try:
            (CGROUP_ROOT / "cgroup.subtree_control").write_text("+pids +memory")
        except OSError:
            pass  # maybe already enabled; mkdir below tells
        d = CGROUP_ROOT / name
        d.mkdir()
        self.dirs["unified"] = d
        (d / "pids.max").write_text(str(limits.max_processes))
        (d / "memory.max").write_text(str(limits.memory_bytes))
        if (d / "memory.swap.max").exists():
            (d / "memory.swap.max").write_text("0")

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}

        def read_kv(path: Path) -> dict[str, int]:
            try:
                return {
                    k: int(v) for k, v in (ln.split() for ln in path.read_text().splitlines() if ln.strip())
                }
            except (OSError, ValueError):
                return {}

        def read_int(path: Path) -> int | None:
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                return None

        if self.version == 1:
            out["pids_max_hits"] = read_kv(self.dirs["pids"] / "pids.events").get("max", 0)
            peak = read_int(self.dirs["pids"] / "pids.peak")
            if peak is not None:
                out["pids_peak"] = peak
            mem = self.dirs["memory"]
            out["memory_peak"] = read_int(mem / "memory.max_usage_in_bytes") or 0
            out["memory_failcnt"] = read_int(mem / "memory.failcnt") or 0
            out["oom_kills"] = read_kv(mem / "memory.oom_control").get("oom_kill", 0)
        elif self.version == 2:
            d = self.dirs["unified"]
            out["pids_max_hits"] = read_kv(d / "pids.events").get("max", 0)
            out["oom_kills"] = read_kv(d / "memory.events").get("oom_kill", 0)
            out["memory_failcnt"] = read_kv(d / "memory.events").get("max", 0)
            out["memory_peak"] = read_int(d / "memory.peak") or 0
        return out

    def kill_all(self) -> None:
        for d in self.dirs.values():
            if self.version == 2 and (d / "cgroup.kill").exists():
                try:
                    (d / "cgroup.kill").write_text("1")
                    continue
                except OSError:
                    pass
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)

    def remove(self) -> None:
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - OUTPUT_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= OUTPUT_TAIL_BYTES else "[... output truncated ...]\n" + text


def _read_jsonl(path: Path, limit: int = 5000) -> list[dict]:
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if len(events) >= limit:
                    break
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn line from a killed writer
    except OSError:
        pass
    return events


def interpreter_paths(python: str) -> list[str]:
    """Directories the sandboxed interpreter must be able to read: its real binary's prefix and
    every import root of this (the harness's) environment, which the child shares."""
    paths = {os.path.dirname(os.path.realpath(python)), sys.prefix, sys.base_prefix, sys.exec_prefix}
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            paths.add(os.path.realpath(entry))
    return sorted(paths)


def keep_paths(paths: list[str]) -> list[str]:
    """Existing directories, outermost first, without those already inside another kept one."""
    out: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in out):
            out.append(path)
    return out


def exposure_map(paths: list[str]) -> dict[str, list[str]]:
    """For each path whose ancestors block an unprivileged uid: blocked ancestor -> its child on
    the way to the path (``/root`` -> ``/root/.pyenv``)."""
    expose: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(path).resolve().parts
        for i in range(1, len(parts) - 1):
            ancestor = Path(*parts[: i + 1])
            try:
                mode = ancestor.stat().st_mode
            except OSError:
                break
            if not mode & 0o001:
                expose.setdefault(str(ancestor), set()).add(str(Path(*parts[: i + 2])))
                break
    return {k: sorted(v) for k, v in expose.items()}


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
            except OSError:
                pass


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def run_sandboxed(
    argv: list[str],
    workdir: Path,
    env: dict[str, str],
    limits: SandboxLimits | None = None,
    *,
    out_dir: Path | None = None,
    out_fds: dict[str, str] | None = None,
    uid: int | None = DEFAULT_UID,
    require_isolation: bool = False,
) -> SandboxResult:
    """Run ``argv`` with cwd ``workdir`` inside the sandbox and wait for it (or kill it).

    ``out_fds`` maps an env var to a file name under ``out_dir``: the launcher opens the file as
    root and hands the program only the descriptor number (e.g. for the trace). ``out_dir``
    (default: a fresh temp dir) also gets stdout.txt, stderr.txt and the launcher spec.
    With ``require_isolation`` a missing namespace/uid layer raises instead of degrading.
    """
    limits = limits or SandboxLimits()
    workdir = Path(workdir).resolve()
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pgolf-sbx-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    mechanisms: dict[str, str] = {}
    is_root = os.geteuid() == 0

    ns_ok, ns_info = namespaces_available()
    if ns_ok:
        mechanisms["network_namespace"] = "active"
        mechanisms["pid_namespace"] = "active"
        mechanisms["private_tmp"] = "active"
        prefix = [ns_info, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    else:
        reason = f"unavailable: {ns_info}"
        mechanisms["network_namespace"] = reason + " (the guard's audit hook still denies sockets)"
        mechanisms["pid_namespace"] = reason
        mechanisms["private_tmp"] = reason
        prefix = []
    run_uid = uid if (is_root and uid is not None) else None
    uid_note = "unavailable: not running as root" if not is_root else "disabled"
    if run_uid is not None and not ns_ok and exposure_map(interpreter_paths(argv[0])):
        # without a mount namespace we cannot re-expose an interpreter under a private directory
        run_uid = None
        uid_note = "unavailable: the interpreter is not reachable by an unprivileged uid without a mount namespace"
    if run_uid is not None:
        _chown_tree(workdir, run_uid, run_uid)
        # the uid must be able to reach the workspace through its parents (we never chmod them)
        blocked = [str(p) for p in workdir.parents if not p.stat().st_mode & 0o001]
        if blocked:
            raise RuntimeError(f"sandbox uid cannot traverse {blocked[0]} to reach {workdir}")
        mechanisms["unprivileged_uid"] = f"active (uid {run_uid})"
    else:
        mechanisms["unprivileged_uid"] = uid_note
    if require_isolation and (not ns_ok or run_uid is None):
        raise RuntimeError("sandbox isolation unavailable: " + json.dumps(mechanisms))

    cg = _Cgroups(f"pgolf-{uuid.uuid4().hex[:12]}", limits)
    mechanisms["cgroups"] = f"active (v{cg.version})" if cg.dirs else f"unavailable: {cg.error}"
    cpu = limits.cpu_seconds or int(limits.wall_seconds * max(1, os.cpu_count() or 1) + 30)
    rlimits = {
        "cpu": cpu,
        "fsize": limits.file_size_bytes,
        "nofile": limits.max_open_files,
        "core": 0,
        # RLIMIT_AS is virtual memory: leave room for thread stacks and allocator arenas when the
        # memory cgroup does the real accounting; without it, it is the only memory limit.
        "as": limits.memory_bytes + (4 << 30) if cg.dirs else limits.memory_bytes + (1 << 30),
    }
    if run_uid is not None:
        rlimits["nproc"] = limits.max_processes
    mechanisms["rlimits"] = "active (" + ", ".join(sorted(rlimits)) + ")"

    spec = {
        "argv": argv,
        "workdir": str(workdir),
        "env": env,
        "uid": run_uid,
        "gid": run_uid,
        "rlimits": rlimits,
        "cgroup_procs": cg.procs_files,
        "in_mount_ns": ns_ok,
        "private_tmp": ["/tmp", "/var/tmp", "/dev/shm"] if ns_ok else [],
        # The workspace and the interpreter's import roots stay visible when they live under a
        # directory that becomes a private tmpfs (a checkout or venv under /tmp, as in CI clones).
        "keep_paths": keep_paths([str(workdir), *interpreter_paths(argv[0])]),
        "expose": exposure_map(interpreter_paths(argv[0])) if (ns_ok and run_uid is not None) else {},
        "tmpfs_bytes": limits.tmpfs_bytes,
        "out_fds": {var: str(out_dir / name) for var, name in (out_fds or {}).items()},
    }
    spec_path = out_dir / "launcher_spec.json"
    spec_path.write_text(json.dumps(spec))
    stdout_path, stderr_path = out_dir / "stdout.txt", out_dir / "stderr.txt"
    cmd = prefix + [sys.executable, "-S", str(LAUNCHER), str(spec_path)]

    t0 = time.monotonic()
    timed_out = False
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            cg.remove()
            return SandboxResult(
                None,
                None,
                False,
                0.0,
                "",
                f"could not start sandbox: {exc}",
                mechanisms=mechanisms,
                out_dir=str(out_dir),
            )
        try:
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # The group, then whatever escaped it (setsid) through the cgroup; PID-namespace
            # teardown catches the rest once its PID 1 is gone.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            cg.kill_all()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    wall = time.monotonic() - t0
    stats = cg.stats() if cg.dirs else {}
    cg.remove()

    rc = proc.returncode
    sig = -rc if rc is not None and rc < 0 else None
    # unshare reports a killed child as 128+signal
    if prefix and rc is not None and rc > 128 and rc - 128 < 65:
        sig = rc - 128
    stderr_text = _tail(stderr_path)
    notes: list[str] = []
    for line in stderr_text.splitlines():
        if line.startswith("pgolf-launcher:"):
            notes.append(line)
    guard = []
    for name in (out_fds or {}).values():
        if "guard" in name:
            guard.extend(_read_jsonl(out_dir / name))
    for ev in guard:
        if ev.get("event") == "sandbox_notes":
            notes.extend(ev.get("notes", []))
    return SandboxResult(
        returncode=rc,
        signal=sig,
        timed_out=timed_out,
        wall_seconds=round(wall, 3),
        stdout=_tail(stdout_path),
        stderr=stderr_text,
        mechanisms=mechanisms,
        cgroup=stats,
        guard_events=guard,
        notes=notes,
        workspace_bytes=_tree_bytes(workdir),
        out_dir=str(out_dir),
    )
