"""The sandbox's whole filesystem view, built deny-by-default inside its own mount namespace.

Run by ``launcher.py`` as root, before it drops to the sandbox uid. The program gets a fresh root
(a tmpfs, read-only once built) that holds only:

* read-only binds of the system's code (``/usr``, ``/bin``, ``/lib*``, ``/sbin``), the loader's
  files under ``/etc`` and the interpreter's import roots (``spec["ro_paths"]``);
* the workspace, read-write (``spec["rw_paths"]``);
* private tmpfs mounts on ``/tmp``, ``/var/tmp`` and ``/dev/shm``;
* a fresh ``/dev`` (null, zero, full, random, urandom, and GPU device nodes only when the host has
  them), a fresh ``/proc`` of the sandbox's PID namespace, and ``/sys`` only where GPUs need it;
* generated ``/etc/passwd``, ``/etc/group`` and ``/etc/hosts`` that name the sandbox user.

Nothing else of the host exists in it: no ``/run`` (its sockets and world-writable lock dir), no
``/var``, no home directories, no host ``/tmp``. The kernel then refuses every path outside the
view whatever way the program reaches it (Python, ctypes, a subprocess), which is why this, not
the in-process guard, is what contains writes and filesystem Unix sockets.
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x2000, 0x4000, 1 << 18
MNT_DETACH = 0x2
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# what the dynamic loader, libc and CUDA read under /etc; nothing else of /etc is visible
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "nsswitch.conf")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
GPU_DEV_PREFIXES = ("nvidia", "dri")
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class MountView:
    def __init__(self, spec: dict):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                    ctypes.c_char_p]
        self.libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.machine = os.uname().machine
        self.spec = spec
        self.root = ""

    # -- primitives ------------------------------------------------------------------------------

    def _mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
        rc = self.libc.mount(source.encode() if source else None, target.encode(),
                             fstype.encode() if fstype else None, flags, data.encode() if data else None)
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")

    def _read_only(self, target: str) -> None:
        """Read-only, nosuid, nodev on the bind and every mount below it (mount_setattr); kernels
        without it get a remount of the top mount only."""
        nr = SYS_MOUNT_SETATTR.get(self.machine)
        if nr is not None:
            attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
            AT_FDCWD = -100
            rc = self.libc.syscall(nr, AT_FDCWD, target.encode(), AT_RECURSIVE, ctypes.byref(attr),
                                   ctypes.sizeof(attr))
            if rc == 0:
                return
        self._mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)

    def _inside(self, path: str) -> str:
        return self.root + path

    def _skeleton(self, path: str, is_dir: bool) -> str:
        """Create ``path`` (and its parents) inside the new root, as root-owned 0755 directories."""
        target = self._inside(path)
        os.makedirs(target if is_dir else os.path.dirname(target), mode=0o755, exist_ok=True)
        if not is_dir and not os.path.lexists(target):
            open(target, "w").close()
        return target

    def _bind(self, source_fd: int, path: str, *, is_dir: bool, writable: bool) -> None:
        target = self._skeleton(path, is_dir)
        self._mount(f"/proc/self/fd/{source_fd}", target, None, MS_BIND | MS_REC)
        if not writable:
            self._read_only(target)

    def _tmpfs(self, path: str, size: int, mode: str = "1777") -> None:
        target = self._skeleton(path, True)
        self._mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={size}")

    # -- the view --------------------------------------------------------------------------------

    def build(self) -> None:
        spec = self.spec
        # Open every source before anything is covered: a workspace under /tmp stays reachable
        # through its descriptor once the new root's private /tmp hides the host's.
        binds: list[tuple[str, int, bool, bool]] = []  # (path, fd, is_dir, writable)
        symlinks: dict[str, str] = {}

        def add(path: str, writable: bool) -> None:
            if os.path.islink(path) and os.path.dirname(path) in ("/", "/etc"):
                symlinks[path] = os.readlink(path)  # merged-usr /lib -> usr/lib, /etc/localtime
                return
            if not os.path.exists(path):
                return
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            binds.append((path, fd, os.path.isdir(path), writable))

        for d in SYSTEM_DIRS:
            add(d, False)
        for name in ETC_FILES:
            add("/etc/" + name, False)
        for p in spec.get("ro_paths", []):
            add(os.path.realpath(p), False)
        for p in spec.get("rw_paths", []):
            add(os.path.realpath(p), True)
        gpu_nodes = [n for n in _listdir("/dev") if n.startswith(GPU_DEV_PREFIXES)]

        # the new root: a tmpfs over the host /tmp of this (private) mount namespace
        self._mount(None, "/", None, MS_REC | MS_PRIVATE)
        self.root = "/tmp"
        self._mount("tmpfs", self.root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
        size = int(spec.get("tmpfs_bytes", 256 << 20))
        for d in PRIVATE_TMP:
            self._tmpfs(d, size)
        # outermost first, so that a workspace nested in a read-only import root is mounted over it
        for path, fd, is_dir, writable in sorted(binds, key=lambda b: (len(b[0]), b[3])):
            self._bind(fd, path, is_dir=is_dir, writable=writable)
            os.close(fd)
        for link, target in symlinks.items():
            if not os.path.lexists(self._inside(link)):
                os.makedirs(os.path.dirname(self._inside(link)), exist_ok=True)
                os.symlink(target, self._inside(link))
        self._dev(gpu_nodes)
        self._etc()
        self._skeleton("/proc", True)  # a mount point: the PID namespace's proc is mounted after pivot
        self._sys(full=bool(gpu_nodes))
        self._pivot()

    def _dev(self, gpu_nodes: list[str]) -> None:
        dev = self._inside("/dev")
        # /dev/shm was made above as its own tmpfs; /dev itself is a small tmpfs with binds
        shm_fd = os.open(self._inside("/dev/shm"), os.O_PATH | os.O_CLOEXEC)
        node_fds = {n: os.open("/dev/" + n, os.O_PATH | os.O_CLOEXEC) for n in (*DEV_NODES, *gpu_nodes)
                    if os.path.exists("/dev/" + n)}
        self._mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=1m")
        os.makedirs(dev + "/shm")
        self._mount(f"/proc/self/fd/{shm_fd}", dev + "/shm", None, MS_BIND)
        os.close(shm_fd)
        for name, fd in node_fds.items():
            is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
            self._bind(fd, "/dev/" + name, is_dir=is_dir, writable=True)
            os.close(fd)
        for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"{dev}/{link}")

    def _etc(self) -> None:
        uid = self.spec.get("uid")
        etc = self._skeleton("/etc", True)
        users = "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        groups = "root:x:0:\n"
        if uid is not None:
            users += f"pgolf:x:{uid}:{uid}:pgolf sandbox:/tmp:/usr/sbin/nologin\n"
            groups += f"pgolf:x:{uid}:\n"
        for name, text in (("passwd", users), ("group", groups), ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
                           ("hostname", "pgolf-sandbox\n")):
            with open(f"{etc}/{name}", "w") as f:
                f.write(text)

    def _sys(self, full: bool) -> None:
        """CPU topology for thread-count queries; all of /sys (read-only) only for GPU drivers."""
        paths = ["/sys"] if full else ["/sys/devices/system/cpu"]
        for p in paths:
            if os.path.isdir(p):
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
                self._bind(fd, p, is_dir=True, writable=False)
                os.close(fd)

    def _pivot(self) -> None:
        old = self._inside("/.old-root")
        os.mkdir(old, 0o700)
        nr = SYS_PIVOT_ROOT.get(self.machine)
        if nr is None or self.libc.syscall(nr, self.root.encode(), old.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pivot_root {self.root}: {os.strerror(err)}")
        os.chdir("/")
        if self.libc.umount2(b"/.old-root", MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"detach the host root: {os.strerror(err)}")
        os.rmdir("/.old-root")
        self._mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        self._mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def build(spec: dict) -> None:
    """Build the view and pivot into it."""
    MountView(spec).build()
