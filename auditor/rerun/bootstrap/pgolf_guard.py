"""In-process guard for sandboxed reruns: an audit hook that denies and records what a training
script has no business doing (writing outside its workspace, opening network connections) and
records process spawns and native-library loads, each with the submission's file:line.

Defence in depth only: the hook runs inside the untrusted process and ctypes can bypass it. The
kernel-side layers (namespaces, uid, rlimits, cgroups) in auditor/rerun/sandbox.py contain it.
Records are JSON lines written with one os.write each to the inherited descriptor PGOLF_GUARD_FD.
"""

import json
import linecache
import os
import sys
import threading

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALWAYS_WRITABLE = (
    "/dev/null",
    "/dev/zero",
    "/dev/stdout",
    "/dev/stderr",
    "/dev/tty",
    "/dev/full",
    "/dev/urandom",
    "/dev/random",
    "/proc/self/fd/1",
    "/proc/self/fd/2",
    "/dev/fd/1",
    "/dev/fd/2",
)
_PATH_EVENTS = {  # event -> indexes of path arguments that get written/changed
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.symlink": (1,),
    "os.link": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.chflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
}
_NET_EVENTS = (
    "socket.connect",
    "socket.sendto",
    "socket.sendmsg",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "urllib.Request",
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
    "telnetlib.Telnet.open",
)
_SPAWN_EVENTS = (
    "os.fork",
    "os.forkpty",
    "os.system",
    "subprocess.Popen",
    "os.posix_spawn",
    "os.exec",
    "os.spawn",
    "pty.spawn",
    "os.startfile",
)
_MAX_EVENTS = 300

_state = threading.local()
_fd = None
_roots: tuple[str, ...] = ()
_boot_dir = ""
_count = {"n": 0, "dropped": 0}


def _emit(record: dict) -> None:
    if _fd is None:
        return
    if _count["n"] >= _MAX_EVENTS:
        _count["dropped"] += 1
        if _count["dropped"] in (1, 100, 10_000):
            record = {"event": "event_cap", "dropped": _count["dropped"], "pid": os.getpid()}
        else:
            return
    _count["n"] += 1
    try:
        os.write(_fd, (json.dumps(record, default=str)[:4000] + "\n").encode())
    except OSError:
        pass


def _origin() -> dict:
    """The innermost frame that belongs to the submission (a file in the workspace)."""
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        fn = frame.f_code.co_filename
        if fn.startswith(_roots[0] if _roots else "\0") and not fn.startswith(_boot_dir):
            line = frame.f_lineno
            return {
                "file": os.path.relpath(fn, _roots[0]),
                "line": line,
                "snippet": linecache.getline(fn, line).strip()[:200],
            }
        if fallback is None and not fn.startswith(_boot_dir) and not fn.startswith("<frozen"):
            fallback = {"file": fn, "line": frame.f_lineno}
        frame = frame.f_back
    return {"library": fallback}


def _resolve(path) -> str | None:
    if isinstance(path, int):
        return None  # an already-open descriptor
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    return os.path.realpath(path)


def _outside(path: str | None) -> bool:
    if (
        path is None
        or path in _ALWAYS_WRITABLE
        or path.startswith(("/proc/self/fd/", "/dev/pts/"))
    ):
        return False
    return not any(path == r or path.startswith(r + os.sep) for r in _roots)


def _hook(event: str, args: tuple) -> None:
    if getattr(_state, "busy", False):
        return
    _state.busy = True
    try:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags != -1 and flags & _WRITE_FLAGS
            )
            if writing:
                real = _resolve(path)
                if _outside(real):
                    _emit(
                        {
                            "event": "write_outside",
                            "op": "open",
                            "path": real,
                            "denied": True,
                            "pid": os.getpid(),
                            **_origin(),
                        }
                    )
                    raise PermissionError(
                        f"pgolf sandbox: writing outside the workspace is not allowed: {real}"
                    )
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args):
                    real = _resolve(args[i])
                    if _outside(real):
                        _emit(
                            {
                                "event": "write_outside",
                                "op": event,
                                "path": real,
                                "denied": True,
                                "pid": os.getpid(),
                                **_origin(),
                            }
                        )
                        raise PermissionError(
                            f"pgolf sandbox: {event} outside the workspace is not allowed: {real}"
                        )
        elif event in _NET_EVENTS:
            target = (
                args[1]
                if event in ("socket.connect", "socket.sendto", "socket.bind") and len(args) > 1
                else args[:2]
            )
            if event == "socket.bind" and _is_local_unix(args):
                return
            _emit(
                {
                    "event": "network",
                    "op": event,
                    "target": repr(target)[:200],
                    "denied": True,
                    "pid": os.getpid(),
                    **_origin(),
                }
            )
            raise PermissionError(f"pgolf sandbox: network access is not allowed ({event})")
        elif event in _SPAWN_EVENTS:
            detail = args[0] if args else None
            if event == "subprocess.Popen" and len(args) > 1:
                detail = args[1]
            _emit(
                {"event": "spawn", "op": event, "detail": repr(detail)[:300], "pid": os.getpid(), **_origin()}
            )
        elif event in ("os.kill", "os.killpg") and args and args[0] not in (0, os.getpid()):
            _emit({"event": "signal", "op": event, "target": repr(args[:2]), "pid": os.getpid(), **_origin()})
        elif event == "ctypes.dlopen":
            origin = _origin()
            if "file" in origin:  # libraries load native code all the time; only the submission's own is news
                _emit(
                    {
                        "event": "native",
                        "op": event,
                        "detail": repr(args[0])[:200],
                        "pid": os.getpid(),
                        **origin,
                    }
                )
    finally:
        _state.busy = False


def _is_local_unix(args) -> bool:
    sock = args[0] if args else None
    return getattr(sock, "family", None) == getattr(__import__("socket"), "AF_UNIX", 1)


def install() -> None:
    global _fd, _roots, _boot_dir
    if _fd is not None:
        return
    try:
        _fd = int(os.environ["PGOLF_GUARD_FD"])
        os.fstat(_fd)
    except (KeyError, ValueError, OSError):
        _fd = None
        return
    ws = os.path.realpath(os.environ.get("PGOLF_WORKSPACE", os.getcwd()))
    _roots = (ws,)
    if os.environ.get("PGOLF_PRIVATE_TMP") == "1":  # set by the sandbox only when /tmp is a private tmpfs
        _roots += tuple(os.path.realpath(d) for d in ("/tmp", "/var/tmp", "/dev/shm"))
    _boot_dir = os.path.dirname(os.path.realpath(__file__))
    notes = os.environ.get("PGOLF_SANDBOX_NOTES")
    if notes:
        _emit({"event": "sandbox_notes", "notes": json.loads(notes)})
        os.environ.pop("PGOLF_SANDBOX_NOTES", None)
    sys.addaudithook(_hook)
