"""The trusted first stage inside the sandbox: runs as root in fresh namespaces, then becomes the
untrusted program.

``sandbox.run_sandboxed`` starts ``unshare --net --pid --fork --kill-child --mount-proc python
launcher.py SPEC`` (falling back to plain ``python launcher.py SPEC`` where namespaces are not
available). This file then, in order: joins the run's cgroups, hides the host's world-writable
directories behind private tmpfs mounts (re-binding the workspace when it lives under one of
them), opens the output files for the trace and guard as inherited descriptors, sets the rlimits,
drops to the sandbox uid, re-arms the parent-death signal (a uid change clears it) and execs the
program. It only uses the standard library and never imports the submission.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 0x2, 0x4, 0x1000, 0x4000
PR_SET_PDEATHSIG = 1
FAIL_EXIT = 97  # the sandbox could not be set up; the message on stderr says why

_RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}


def _die(msg: str) -> None:
    sys.stderr.write(f"pgolf-launcher: {msg}\n")
    sys.stderr.flush()
    os._exit(FAIL_EXIT)


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _mount(libc, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target}: {os.strerror(err)}")


def _private_tmp(spec: dict, notes: list[str]) -> None:
    """Replace world-writable directories with private, size-limited tmpfs mounts, so that writes
    outside the workspace cannot reach the host. Only done when we are in our own mount namespace."""
    if not spec.get("private_tmp"):
        return
    libc = _libc()
    keep = [os.path.realpath(p) for p in spec.get("keep_paths", [])]
    keep_fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in keep}
    size = int(spec.get("tmpfs_bytes", 256 << 20))
    for d in spec["private_tmp"]:
        if not os.path.isdir(d):
            continue
        try:
            _mount(libc, "tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={size}")
        except OSError as exc:
            notes.append(f"private tmpfs on {d} unavailable ({exc.strerror})")
            continue
        for path, fd in keep_fds.items():
            if path == d or path.startswith(d.rstrip("/") + "/"):
                os.makedirs(path, exist_ok=True)
                _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
    for fd in keep_fds.values():
        os.close(fd)


def _expose(spec: dict) -> None:
    """Make read-only interpreter paths reachable for the sandbox uid when an ancestor is not
    traversable (a pyenv under /root): hide the ancestor behind a tmpfs and bind back only the
    needed children. Everything else in that ancestor stays invisible to the program."""
    libc = _libc()
    for blocked, children in spec.get("expose", {}).items():
        fds = {c: os.open(c, os.O_RDONLY | os.O_DIRECTORY) for c in children if os.path.isdir(c)}
        _mount(libc, "tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for child, fd in fds.items():
            os.makedirs(child, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", child, None, MS_BIND | MS_REC, None)
            os.close(fd)


def main() -> None:
    if len(sys.argv) != 2:
        _die("usage: launcher.py SPEC.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    notes: list[str] = []

    # 1. cgroups first, so that every descendant is counted from the start.
    for procs in spec.get("cgroup_procs", []):
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            notes.append(f"could not join cgroup {procs}: {exc.strerror}")

    # 2. output channels, opened before privileges are dropped and before /tmp is hidden; the child
    # only gets descriptors.
    env = dict(spec["env"])
    for var, path in spec.get("out_fds", {}).items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.set_inheritable(fd, True)
        env[var] = str(fd)
    # 3. filesystem view (only inside our own mount namespace).
    if spec.get("in_mount_ns"):
        try:
            _expose(spec)
            _private_tmp(spec, notes)
        except OSError as exc:
            _die(f"could not set up the sandbox's filesystem view: {exc}")

    if notes:
        env["PGOLF_SANDBOX_NOTES"] = json.dumps(notes)

    # 4. limits, then identity.
    for name, value in spec.get("rlimits", {}).items():
        try:
            resource.setrlimit(_RLIMITS[name], (int(value), int(value)))
        except (ValueError, OSError) as exc:
            _die(f"setrlimit {name}={value}: {exc}")
    os.chdir(spec["workdir"])
    uid, gid = spec.get("uid"), spec.get("gid")
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(int(gid))
        os.setuid(int(uid))
    if spec.get("pdeathsig", True):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.umask(0o022)
    argv = spec["argv"]
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        _die(f"exec {argv[0]}: {exc}")


if __name__ == "__main__":
    main()
