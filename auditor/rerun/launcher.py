"""The trusted first stage inside the sandbox: runs as root in fresh namespaces, then becomes the
untrusted program.

``sandbox.run_sandboxed`` starts ``unshare --net --pid --fork --kill-child --mount-proc python
launcher.py SPEC`` (falling back to plain ``python launcher.py SPEC`` where namespaces are not
available). This file then, in order: joins the run's cgroups, opens the output files for the
trace and guard as inherited descriptors (and the supervisor's event file for itself), builds the
run's filesystem view and pivots into it (``mount_view.py``), and then either execs the program
or, with the syscall filter, forks it: the child sets the rlimits, drops to the sandbox uid,
re-arms the parent-death signal (a uid change clears it), installs the filter, hands its listener
descriptor to this process and execs the program; this process stays outside the filter as the
supervisor and PID 1 of the namespace (``syscall_filter.py``), reaps orphans, and exits as the
program did. It only uses the standard library and never imports the submission.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import sys

import mount_view  # beside this file (sys.path[0]); both are standard-library only
import syscall_filter

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

    # 2. output channels, opened before privileges are dropped and before the host's filesystem
    # goes out of view; the program only gets descriptors.
    env = dict(spec["env"])
    for var, path in spec.get("out_fds", {}).items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.set_inheritable(fd, True)
        env[var] = str(fd)
    events_fd = None
    if spec.get("events_path"):
        events_fd = os.open(spec["events_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    # 3. filesystem view (only inside our own mount namespace).
    if spec.get("in_mount_ns"):
        try:
            mount_view.build(spec)
        except OSError as exc:
            _die(f"could not set up the sandbox's filesystem view: {exc}")
    if notes:
        env["PGOLF_SANDBOX_NOTES"] = json.dumps(notes)

    if not spec.get("seccomp"):
        _become_program(spec, env, None)
    # 4. the program runs in a child under the syscall filter; this process stays outside it, as
    # root, and answers the filter until the program exits.
    _set_oom_score(-1000)  # under memory pressure the kernel kills the program, not its supervisor
    parent_end, child_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        _become_program(spec, env, child_end)
    child_end.close()
    try:
        _, fds, _, _ = socket.recv_fds(parent_end, 1, 1)
    except OSError:
        fds = []
    parent_end.close()
    if not fds:
        _exit_like(_wait_for(pid))
    writable = [*spec.get("rw_paths", []), *mount_view.PRIVATE_TMP]
    supervisor = syscall_filter.Supervisor(fds[0], events_fd, writable, os.uname().machine,
                                           workspace=spec.get("rw_paths", []), readonly=spec.get("ro_paths", []))
    status = None
    while status is None:
        supervisor.serve_once(200)
        status = _reap(pid)
    supervisor.close()
    _exit_like(status)


def _become_program(spec: dict, env: dict, listener_sock) -> None:
    """Limits, identity, then (with a listener socket) the syscall filter, then exec."""
    if listener_sock is not None:
        _set_oom_score(0)
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
    if listener_sock is not None:
        try:
            fd = syscall_filter.install()
        except OSError as exc:
            _die(f"could not install the syscall filter: {exc}")
        socket.send_fds(listener_sock, [b"L"], [fd])
        os.close(fd)  # the program must never hold the descriptor that answers its own filter
        listener_sock.close()
    argv = spec["argv"]
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        _die(f"exec {argv[0]}: {exc}")


def _set_oom_score(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def _reap(pid: int) -> int | None:
    """Reap every exited process (this is PID 1 of the namespace); the program's status once it
    has exited, else None."""
    status = None
    while True:
        try:
            done, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status if status is not None else 0
        if done == 0:
            return status
        if done == pid:
            status = st


def _wait_for(pid: int) -> int:
    while True:
        done, st = os.waitpid(pid, 0)
        if done == pid:
            return st


def _exit_like(status: int) -> None:
    """Exit the way the program did: its code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
