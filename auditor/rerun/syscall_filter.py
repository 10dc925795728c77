"""A seccomp filter on the sandboxed program and the supervisor that answers it.

The program's process installs the filter (``install``) just before it execs the submission; the
launcher, outside the filter and still root, is the supervisor (``Supervisor``): the kernel stops
each filtered syscall and hands it to the supervisor through a user-notification descriptor, and
the supervisor decides and writes what was tried to the run's event file. Nothing here trusts the
program's own Python layer: ctypes, a C extension or a subprocess go through the same filter.

Filtered (all other syscalls run untouched):

* ``connect``: a Unix socket path outside the workspace and the private tmp dirs is refused
  (EACCES), and a connect to a non-loopback IP address too (ENETUNREACH; the network namespace has
  no route anyway); abstract Unix sockets belong to the sandbox's own network namespace and pass;
* ``socket``: families other than Unix, IPv4, IPv6 and netlink (what torch and glibc use) are
  refused (EAFNOSUPPORT);
* ``open``/``openat``/``openat2``/``creat`` with a write flag: a path outside the workspace, the
  private tmp dirs, the usual ``/dev`` nodes and ``/proc`` is refused (EACCES);
* syscalls no training script needs and an escape would: mount, namespaces, pivot_root, chroot,
  ptrace, process_vm_writev, bpf, kernel keyrings and modules, kexec, file handles, userfaultfd,
  io_uring (whose operations would bypass this filter), ``clone`` with namespace flags (EPERM);
  ``clone3`` returns ENOSYS, so that libc falls back to the inspectable ``clone``.

The supervisor's reading of a pointer argument races with the program's other threads (the
kernel's documented caveat for user notification), so the decision is evidence and a second
line; the mount view (``mount_view.py``) is what makes the paths unreachable.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import socket
import struct

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
PR_SET_NO_NEW_PRIVS = 38
RET_ALLOW, RET_NOTIFY = 0x7FFF0000, 0x7FC00000
RET_ERRNO = 0x00050000
NOTIF_RECV, NOTIF_SEND, NOTIF_ID_VALID = 0xC0502100, 0xC0182101, 0x40082102
FLAG_CONTINUE = 1
AT_FDCWD = -100
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
NS_CLONE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, 16)  # 16: AF_NETLINK
MAX_EVENTS = 2000

# (audit arch, syscall numbers) per machine; a machine not listed runs without the filter
ARCHES = {
    "x86_64": (0xC000003E, {
        "socket": 41, "connect": 42, "open": 2, "creat": 85, "openat": 257, "openat2": 437, "clone": 56,
        "clone3": 435, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
        "setns": 308, "ptrace": 101, "process_vm_writev": 311, "bpf": 321, "keyctl": 250, "add_key": 248,
        "request_key": 249, "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
        "open_by_handle_at": 304, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442}),
    "aarch64": (0xC00000B7, {
        "socket": 198, "connect": 203, "openat": 56, "openat2": 437, "clone": 220, "clone3": 435,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
        "ptrace": 117, "process_vm_writev": 271, "bpf": 280, "keyctl": 219, "add_key": 217,
        "request_key": 218, "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
        "open_by_handle_at": 265, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "fsopen": 430, "fsmount": 432, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442}),
}
FORBIDDEN = ("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "process_vm_writev", "bpf",
             "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
             "open_by_handle_at", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
             "fsopen", "fsmount", "move_mount", "open_tree", "mount_setattr")
# index of the flags argument of each open call (creat always writes; openat2 keeps them in a struct)
OPEN_FLAGS_ARG = {"open": 1, "openat": 2}
# sockets libc itself tries (name-service cache, syslog): refused, as absent, without an event, so
# that a plain getpwuid() or syslog() is not reported as an escape attempt
LIBC_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket", "/dev/log")
WRITABLE_DEV = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


def supported() -> tuple[bool, str]:
    machine = os.uname().machine
    if machine not in ARCHES:
        return False, f"no syscall table for {machine}"
    return True, machine


# -- the BPF program --------------------------------------------------------------------------------

LD_ABS, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits on little-endian machines


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. Labels are resolved here so that the
    structure reads as: arch check, then one test per filtered syscall, then the blocks."""
    arch, nr = ARCHES[machine]
    code: list[list] = []  # [op, k, true_label, false_label] or ["label", name]

    def op(o, k, jt=None, jf=None):
        code.append([o, k, jt, jf])

    def label(name):
        code.append(["label", name])

    op(LD_ABS, 4)
    op(JEQ, arch, None, "enosys")  # a foreign ABI (int 0x80 on x86_64) gets nothing
    op(LD_ABS, 0)
    if machine == "x86_64":
        op(JGE, 0x40000000, "enosys", None)  # the x32 ABI's numbers alias the real ones
    for name in FORBIDDEN:
        if name in nr:
            op(JEQ, nr[name], "notify", None)
    op(JEQ, nr["connect"], "notify", None)
    op(JEQ, nr["clone3"], "enosys", None)
    op(JEQ, nr["openat2"], "notify", None)
    if "creat" in nr:
        op(JEQ, nr["creat"], "notify", None)
    for name in OPEN_FLAGS_ARG:
        if name in nr:
            op(JEQ, nr[name], f"open_{name}", None)
    op(JEQ, nr["socket"], "socket", None)
    op(JEQ, nr["clone"], "clone", None)
    op(RET, RET_ALLOW)
    for name, arg in OPEN_FLAGS_ARG.items():
        if name in nr:
            label(f"open_{name}")
            op(LD_ABS, _arg_lo(arg))
            op(JSET, WRITE_FLAGS, "notify", "allow")
    label("socket")
    op(LD_ABS, _arg_lo(0))
    for fam in ALLOWED_FAMILIES:
        op(JEQ, fam, "allow", None)
    op(RET, RET_NOTIFY)
    label("clone")
    op(LD_ABS, _arg_lo(0))
    op(JSET, NS_CLONE_FLAGS, "notify", "allow")
    label("allow")
    op(RET, RET_ALLOW)
    label("notify")
    op(RET, RET_NOTIFY)
    label("enosys")
    op(RET, RET_ERRNO | errno.ENOSYS)

    where: dict[str, int] = {}
    out: list[list] = []
    for item in code:
        if item[0] == "label":
            where[item[1]] = len(out)
        else:
            out.append(item)
    resolved = []
    for i, (o, k, jt, jf) in enumerate(out):
        offsets = [0 if lbl is None else where[lbl] - (i + 1) for lbl in (jt, jf)]
        if not all(0 <= off < 256 for off in offsets):
            raise ValueError(f"seccomp program: jump out of range at {i}")
        resolved.append((o, offsets[0], offsets[1], k))
    return resolved


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def install() -> int:
    """Install the filter on the calling process (inherited by everything it starts) and return
    the listener descriptor for the supervisor."""
    machine = os.uname().machine
    insns = program(machine)
    arr = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    prog = _SockFprog(len(insns), arr)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS)")
    nr_seccomp = {"x86_64": 317, "aarch64": 277}[machine]
    fd = libc.syscall(nr_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, ctypes.byref(prog))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
    return fd


# -- the supervisor ---------------------------------------------------------------------------------

NOTIF = struct.Struct("<QII" + "iIQ" + "6Q")  # seccomp_notif: id, pid, flags, data{nr, arch, ip, args}
RESP = struct.Struct("<QqiI")  # seccomp_notif_resp: id, val, error, flags


class Supervisor:
    """Answers the filter's notifications for one run and records every refusal."""

    def __init__(self, listener: int, events_fd: int | None, writable: list[str], machine: str,
                 workspace: list[str] | None = None, readonly: list[str] | None = None):
        self.listener = listener
        self.events_fd = events_fd
        self.writable = [os.path.realpath(p).rstrip("/") for p in writable]
        self.workspace = [os.path.realpath(p).rstrip("/") for p in workspace or []]
        # read-only binds, and the directories the view made to hold them (a checkout under /tmp
        # sits in a root-owned skeleton inside the private /tmp): never writable
        self.readonly = [os.path.realpath(p).rstrip("/") for p in readonly or []]
        self.skeleton = {a for p in self.readonly + self.workspace for a in _ancestors(p)
                         if any(a.startswith(w + "/") for w in self.writable)}
        self.names = {v: k for k, v in ARCHES[machine][1].items()}
        self.events = 0
        self.dropped = 0

    # the loop: called by the launcher until the program's process exits
    def serve_once(self, timeout_ms: int) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        if not poller.poll(timeout_ms):
            return
        buf = bytearray(NOTIF.size)
        try:
            fcntl.ioctl(self.listener, NOTIF_RECV, buf, True)
        except OSError:
            return  # the target died between the wake-up and the read
        nid, pid, _, nr, _, _, *args = NOTIF.unpack(buf)
        try:
            error, event = self.decide(pid, self.names.get(nr, str(nr)), args)
        except OSError:
            error, event = errno.EACCES, None  # the process vanished mid-read; refuse
        if event is not None and self._valid(nid):
            self._record(event | {"pid": pid})
        resp = RESP.pack(nid, 0, -error if error else 0, 0 if error else FLAG_CONTINUE)
        try:
            fcntl.ioctl(self.listener, NOTIF_SEND, bytearray(resp), True)
        except OSError:
            pass  # the target died while we decided

    def _valid(self, nid: int) -> bool:
        try:
            fcntl.ioctl(self.listener, NOTIF_ID_VALID, bytearray(struct.pack("<Q", nid)), True)
            return True
        except OSError:
            return False

    def decide(self, pid: int, name: str, args: list[int]) -> tuple[int, dict | None]:
        """(errno to fail with or 0 to let it run, the event to record or None)."""
        if name in FORBIDDEN or name == "clone":
            return errno.EPERM, {"event": "forbidden_syscall", "syscall": name, "denied": True}
        if name == "socket":
            return errno.EAFNOSUPPORT, {"event": "socket_family", "syscall": name, "family": _s32(args[0]),
                                        "denied": True}
        if name == "connect":
            return self._connect(pid, args)
        if name in ("open", "creat", "openat", "openat2"):
            return self._open(pid, name, args)
        return 0, None

    def _connect(self, pid: int, args: list[int]) -> tuple[int, dict | None]:
        raw = _read_mem(pid, args[1], min(int(args[2]), 112))
        if len(raw) < 2:
            return 0, None
        family = struct.unpack_from("<H", raw)[0]
        if family == socket.AF_UNIX:
            path = raw[2:]
            if not path or path[0] == 0:
                return 0, None  # abstract: scoped to the sandbox's own network namespace
            text = path.split(b"\0", 1)[0].decode("utf-8", "replace")
            if text in LIBC_SOCKETS:
                return errno.ENOENT, None
            resolved = self._resolve(pid, AT_FDCWD, text)
            if self._is_writable(resolved):
                return 0, None
            return errno.EACCES, {"event": "unix_connect", "syscall": "connect", "target": text,
                                  "resolved": resolved, "denied": True}
        if family in (socket.AF_INET, socket.AF_INET6):
            host, port = _ip(family, raw)
            if host in ("127.0.0.1", "::1") or host.startswith("127."):
                return 0, None  # the sandbox's own (down) loopback
            return errno.ENETUNREACH, {"event": "network", "syscall": "connect", "target": f"{host}:{port}",
                                       "denied": True}
        return 0, None

    def _open(self, pid: int, name: str, args: list[int]) -> tuple[int, dict | None]:
        if name == "openat2":
            how = _read_mem(pid, args[2], 8)
            if len(how) == 8 and not struct.unpack("<Q", how)[0] & WRITE_FLAGS:
                return 0, None
        dirfd, ptr = (AT_FDCWD, args[0]) if name in ("open", "creat") else (_s32(args[0]), args[1])
        text = _read_cstr(pid, ptr)
        resolved = self._resolve(pid, dirfd, text)
        if self._is_writable(resolved):
            return 0, None
        return errno.EACCES, {"event": "write_outside", "syscall": name, "target": text, "resolved": resolved,
                              "denied": True}

    def _resolve(self, pid: int, dirfd: int, text: str) -> str:
        """The path the kernel would open, in the sandbox's view (which the supervisor shares):
        relative to the caller's cwd or dirfd, with the caller's /proc/self, symlinks resolved."""
        if not text.startswith("/"):
            base = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
            try:
                text = os.path.join(os.readlink(base), text)
            except OSError:
                return text
        for alias in ("/proc/self/", "/proc/thread-self/", "/dev/fd/"):
            if text.startswith(alias):
                text = f"/proc/{pid}/" + ("fd/" if alias == "/dev/fd/" else "") + text[len(alias):]
        return os.path.realpath(text)

    def _is_writable(self, path: str) -> bool:
        if path in WRITABLE_DEV or path.startswith("/proc/"):
            return True
        if any(_under(path, w) for w in self.workspace):
            return True
        if any(_under(path, r) for r in self.readonly) or os.path.dirname(path) in self.skeleton:
            return False
        return any(_under(path, w) for w in self.writable)

    def _record(self, event: dict) -> None:
        if self.events >= MAX_EVENTS:
            self.dropped += 1
            return
        self.events += 1
        self._write(event)

    def close(self) -> None:
        if self.dropped:
            self._write({"event": "events_dropped", "count": self.dropped})

    def _write(self, event: dict) -> None:
        if self.events_fd is not None:
            os.write(self.events_fd, (json.dumps(event) + "\n").encode())


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _ancestors(path: str) -> list[str]:
    out = []
    while True:
        parent = os.path.dirname(path)
        if parent == path or parent in ("", "/"):
            return out
        out.append(parent)
        path = parent


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _read_mem(pid: int, addr: int, n: int) -> bytes:
    if n <= 0 or addr == 0:
        return b""
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(addr)
        try:
            return f.read(n) or b""
        except OSError:
            return b""


def _read_cstr(pid: int, addr: int, limit: int = 4096) -> str:
    out = b""
    while len(out) < limit:
        chunk = _read_mem(pid, addr + len(out), 256)
        if not chunk:
            break
        if b"\0" in chunk:
            out += chunk.split(b"\0", 1)[0]
            break
        out += chunk
    return out.decode("utf-8", "replace")


def _ip(family: int, raw: bytes) -> tuple[str, int]:
    port = struct.unpack_from(">H", raw, 2)[0] if len(raw) >= 4 else 0
    try:
        if family == socket.AF_INET and len(raw) >= 8:
            return socket.inet_ntop(family, raw[4:8]), port
        if family == socket.AF_INET6 and len(raw) >= 24:
            return socket.inet_ntop(family, raw[8:24]), port
    except (OSError, ValueError):
        pass
    return "?", port
