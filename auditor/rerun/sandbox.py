"""Run an untrusted program in a child process that cannot reach the network or the host.

Layers, each reported in ``SandboxResult.mechanisms`` as "active" or why it is not:

* network: a fresh network namespace (``unshare --net``): no interfaces but a down loopback;
* processes: a fresh PID namespace with ``--kill-child`` (when the sandbox's PID 1 dies, the kernel
  kills everything in it), a new session killed as a process group on timeout, a pids cgroup and
  ``RLIMIT_NPROC`` under a dedicated uid;
* memory / CPU / files: a memory cgroup, ``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``,
  ``RLIMIT_NOFILE``, no core dumps;
* filesystem (``mount_view``): a fresh root holding only read-only system code and import roots,
  the workspace (writable; the only thing the uid owns) and private tmpfs on /tmp, /var/tmp and
  /dev/shm: deny-by-default, so no host path outside it exists for the program at all;
* syscalls (``seccomp``): a filter answered by a supervisor outside the program, which refuses and
  records Unix-socket connects and writes outside the workspace, unused socket families and
  mount/namespace/ptrace/bpf/io_uring syscalls (``SandboxResult.sandbox_events``);
* after the run: the host's world-writable directories are compared with their state before it,
  for anything the sandbox uid owns (a ``host_write`` event: a write the layers above missed);
* wall clock: killed (SIGKILL to the group, the namespace and the cgroup) after ``wall_seconds``.

The guard in ``bootstrap/sitecustomize.py`` adds an audit hook inside the program that denies and
records Python-level writes outside the workspace, sockets and process spawns with the
submission's file:line (it runs inside the untrusted process, so the layers above are what
actually contain it and what report attempts made below Python).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from auditor.rerun import syscall_filter

LAUNCHER = Path(__file__).with_name("launcher.py")
DEFAULT_UID = int(os.environ.get("PGOLF_SANDBOX_UID", "64123"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
OUTPUT_TAIL_BYTES = 200_000
SANDBOX_EVENTS = "sandbox_events.jsonl"  # written by the supervisor, outside the program
WATCH_INTERVAL_S = 0.5  # how often the wall clock and the workspace size are checked


@dataclass
class SandboxLimits:
    wall_seconds: float = 300.0
    cpu_seconds: int | None = None  # default: wall_seconds x cores + 30
    memory_bytes: int = 6 << 30
    file_size_bytes: int = 1 << 30
    max_processes: int = 256  # threads count too (pids cgroup and RLIMIT_NPROC)
    max_open_files: int = 1024
    tmpfs_bytes: int = 256 << 20
    workspace_bytes: int = 2 << 30  # watched while it runs: over it, the run is stopped


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
    guard_events: list[dict] = field(default_factory=list)  # from the program's own audit hook
    sandbox_events: list[dict] = field(default_factory=list)  # from the supervisor and the host check
    notes: list[str] = field(default_factory=list)
    workspace_bytes: int = 0
    out_dir: str = ""
    stopped: str | None = None  # why ``watch`` stopped the program

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.stopped

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("stdout"), d.pop("stderr")
        d["guard_events"] = len(self.guard_events)
        d["sandbox_events"] = len(self.sandbox_events)
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


@lru_cache(maxsize=1)
def isolation_available() -> dict[str, str]:
    """Which of the kernel-side layers this host can build, found by launching ``/bin/true``
    through the real launcher once per process: ``mount_view`` and ``seccomp``, each "active" or
    the reason it is not."""
    ns_ok, ns_info = namespaces_available()
    if not ns_ok:
        return {"mount_view": f"unavailable: {ns_info}", "seccomp": f"unavailable: {ns_info}"}
    out: dict[str, str] = {}
    ok, why = syscall_filter.supported()
    with tempfile.TemporaryDirectory(prefix="pgolf-sbx-probe-") as tmp:
        for layer, spec in (("mount_view", {"in_mount_ns": True, "seccomp": False}),
                            ("seccomp", {"in_mount_ns": False, "seccomp": ok})):
            if layer == "seccomp" and not ok:
                out[layer] = f"unavailable: {why}"
                continue
            path = Path(tmp) / f"{layer}.json"
            path.write_text(json.dumps({**spec, "argv": ["/bin/true"], "workdir": "/", "env": {},
                                        "ro_paths": interpreter_paths(sys.executable)}))
            try:
                proc = subprocess.run([ns_info, "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                                       sys.executable, "-S", str(LAUNCHER), str(path)],
                                      capture_output=True, timeout=30, check=False)
                err = proc.stderr.decode(errors="replace").strip().replace("pgolf-launcher: ", "")
                out[layer] = "active" if proc.returncode == 0 else f"unavailable: {err[:200] or proc.returncode}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                out[layer] = f"unavailable: {exc}"
    return out


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


# Host directories that are shared with other users and services: an import root may live below
# one (a venv under /tmp or /home/user), never be one or hold one.
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var", "/home", "/root", "/etc", "/proc", "/sys", "/dev")


@lru_cache(maxsize=8)
def interpreter_paths(python: str) -> list[str]:
    """Directories the sandboxed interpreter must be able to read: its real binary's directory and
    the import roots it has on its own (prefixes, stdlib, site-packages), asked of the interpreter
    itself with an empty environment, so that the harness's cwd or script directory never joins
    the view. A root that is ``/`` or holds a shared directory is left out."""
    paths = {os.path.dirname(os.path.realpath(python))}
    probe = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, timeout=60, check=False, cwd="/",
                              env={"PATH": "/usr/bin:/bin"})
        entries = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        entries = []
    if not entries:  # the interpreter would not say: fall back to this one's layout
        entries = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    for entry in entries:
        if isinstance(entry, str) and entry and os.path.isdir(entry):
            paths.add(os.path.realpath(entry))
    return sorted(p for p in paths if _safe_import_root(p))


def _safe_import_root(path: str) -> bool:
    """Not ``/``, not a shared directory or an ancestor of one, not inside /proc, /sys or /dev."""
    if path == "/":
        return False
    for shared in SHARED_DIRS:
        if shared == path or shared.startswith(path.rstrip("/") + "/"):
            return False
        if shared in ("/proc", "/sys", "/dev") and path.startswith(shared + "/"):
            return False
    return True


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


HOST_SCAN_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue", "/run", "/var", "/home", "/srv", "/opt", "/mnt",
                   "/media")
HOST_SCAN_DEPTH, HOST_SCAN_DIRS = 4, 20_000


@lru_cache(maxsize=1)
def host_writable_dirs() -> tuple[str, ...]:
    """The host directories any uid may create entries in (world-writable), where an escaped
    write from the sandbox uid would land. Searched once per process, bounded."""
    found: list[str] = []
    seen = 0
    stack = [(r, 0) for r in HOST_SCAN_ROOTS]
    while stack and seen < HOST_SCAN_DIRS:
        path, depth = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        seen += 1
        if st.st_mode & stat.S_IWOTH:
            found.append(path)
        if depth >= HOST_SCAN_DEPTH:
            continue
        try:
            with os.scandir(path) as it:
                stack.extend((e.path, depth + 1) for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return tuple(sorted(found))


def host_entries_of(uid: int, exclude: list[Path]) -> dict[str, tuple[int, int]]:
    """Entries owned by ``uid`` directly in the host's world-writable directories (anything the
    uid wrote deeper starts with such an entry): path -> (inode, mtime)."""
    skip = [str(p) for p in exclude]
    out: dict[str, tuple[int, int]] = {}
    for d in host_writable_dirs():
        try:
            with os.scandir(d) as it:
                for e in it:
                    if any(e.path == x or e.path.startswith(x + "/") or x.startswith(e.path + "/") for x in skip):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_uid == uid:
                        out[e.path] = (st.st_ino, st.st_mtime_ns)
        except OSError:
            continue
    return out


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
    ro_paths: list[str] | None = None,
    watch: Callable[[Path], str | None] | None = None,
) -> SandboxResult:
    """Run ``argv`` with cwd ``workdir`` inside the sandbox and wait for it (or kill it).

    ``out_fds`` maps an env var to a file name under ``out_dir``: the launcher opens the file as
    root and hands the program only the descriptor number (e.g. for the trace). ``out_dir``
    (default: a fresh temp dir) also gets stdout.txt, stderr.txt and the launcher spec.
    With ``require_isolation`` a missing namespace/uid layer raises instead of degrading.
    ``ro_paths`` are host paths the program may read (a data folder); ``watch`` is called with the
    stdout file while the program runs and stops it when it returns a reason (a phase over its cap).
    """
    limits = limits or SandboxLimits()
    workdir = Path(workdir).resolve()
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pgolf-sbx-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    mechanisms: dict[str, str] = {}
    is_root = os.geteuid() == 0

    ns_ok, ns_info = namespaces_available()
    layers = isolation_available() if ns_ok else {}
    view_ok = layers.get("mount_view") == "active"
    if ns_ok:
        mechanisms["network_namespace"] = "active"
        mechanisms["pid_namespace"] = "active"
        prefix = [ns_info, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    else:
        reason = f"unavailable: {ns_info}"
        mechanisms["network_namespace"] = reason + " (the guard's audit hook still denies sockets)"
        mechanisms["pid_namespace"] = reason
        prefix = []
    mechanisms["mount_view"] = (
        "active (a fresh read-only root: system code, import roots, workspace; nothing of /run, /var, home)"
        if view_ok else layers.get("mount_view", f"unavailable: {ns_info}"))
    mechanisms["private_tmp"] = "active" if view_ok else mechanisms["mount_view"]
    seccomp_ok = layers.get("seccomp") == "active"
    mechanisms["seccomp"] = ("active (supervised: connect, socket families, opens for writing, mount/namespace/"
                             "ptrace/bpf/io_uring syscalls)" if seccomp_ok else layers.get("seccomp", f"unavailable: {ns_info}"))
    run_uid = uid if (is_root and uid is not None) else None
    uid_note = "unavailable: not running as root" if not is_root else "disabled"
    if run_uid is not None and not view_ok and exposure_map(interpreter_paths(argv[0])):
        # without our own root we cannot re-expose an interpreter under a private directory
        run_uid = None
        uid_note = "unavailable: the interpreter is not reachable by an unprivileged uid without a mount view"
    if run_uid is not None:
        _chown_tree(workdir, run_uid, run_uid)
        # the uid must be able to reach the workspace through its parents (we never chmod them);
        # in the mount view its parents are the view's own directories
        blocked = [str(p) for p in workdir.parents if not p.stat().st_mode & 0o001]
        if blocked and not view_ok:
            raise RuntimeError(f"sandbox uid cannot traverse {blocked[0]} to reach {workdir}")
        mechanisms["unprivileged_uid"] = f"active (uid {run_uid})"
    else:
        mechanisms["unprivileged_uid"] = uid_note
    if require_isolation and (not ns_ok or not view_ok or run_uid is None):
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
        # with the mount view, /tmp, /var/tmp and /dev/shm are the sandbox's own tmpfs: the guard
        # lets the script write there (scripts keep counters and caches in /tmp)
        "env": dict(env, PGOLF_PRIVATE_TMP="1") if view_ok else env,
        "uid": run_uid,
        "gid": run_uid,
        "rlimits": rlimits,
        "cgroup_procs": cg.procs_files,
        "in_mount_ns": view_ok,
        "seccomp": seccomp_ok,
        # the whole view: these read-only, the workspace writable (mount_view.py adds the system)
        "ro_paths": keep_paths(interpreter_paths(argv[0])) + [str(Path(p).resolve()) for p in ro_paths or []],
        "rw_paths": [str(workdir)],
        "tmpfs_bytes": limits.tmpfs_bytes,
        "events_path": str(out_dir / SANDBOX_EVENTS),
        "out_fds": {var: str(out_dir / name) for var, name in (out_fds or {}).items()},
    }
    spec_path = out_dir / "launcher_spec.json"
    spec_path.write_text(json.dumps(spec))
    stdout_path, stderr_path = out_dir / "stdout.txt", out_dir / "stderr.txt"
    cmd = prefix + [sys.executable, "-S", str(LAUNCHER), str(spec_path)]

    host_before = host_entries_of(run_uid, [workdir, out_dir]) if run_uid is not None else {}
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
        disk_full = False
        stopped: str | None = None
        try:
            # the clock, and the workspace (a directory on the host's disk) watched while it runs
            deadline = t0 + limits.wall_seconds
            while True:
                try:
                    proc.wait(timeout=min(WATCH_INTERVAL_S, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        timed_out = True
                        break
                    if _tree_bytes(workdir) > limits.workspace_bytes:
                        disk_full = True
                        break
                    if watch is not None:
                        stopped = watch(stdout_path)
                        if stopped:
                            break
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
    events = _read_jsonl(out_dir / SANDBOX_EVENTS)
    if disk_full:
        events.append({"event": "disk_limit", "target": f"{limits.workspace_bytes >> 20} MiB", "denied": True})
        notes.append(f"stopped: the workspace grew over {limits.workspace_bytes >> 20} MiB")
    if stopped:
        notes.append(f"stopped: {stopped}")
    if run_uid is not None:
        # the check that trusts neither the program nor the filter: what its uid owns on the host now
        after = host_entries_of(run_uid, [workdir, out_dir])
        for path in sorted(p for p, v in after.items() if host_before.get(p) != v):
            events.append({"event": "host_write", "target": path, "denied": False})
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
        sandbox_events=events,
        notes=notes,
        workspace_bytes=_tree_bytes(workdir),
        out_dir=str(out_dir),
        stopped=stopped,
    )
