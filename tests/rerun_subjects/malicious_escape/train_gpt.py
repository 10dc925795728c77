"""MALICIOUS rerun subject (our own code, for tests/test_rerun_sandbox.py): everything a training
script must not do, each attempt reported on stdout so the test can see what the sandbox allowed.
Order matters: the fork bomb leaves children behind, and the script ends by sleeping forever."""

import os
import socket
import sys
import time

ESCAPE_TARGETS = os.environ.get("ESCAPE_TARGETS", "/tmp/pgolf_escape_probe").split(":")


def attempt(name, fn):
    try:
        fn()
        print(f"ALLOWED {name}", flush=True)
    except Exception as exc:  # noqa: BLE001
        print(f"BLOCKED {name}: {type(exc).__name__}", flush=True)


def connect():
    socket.create_connection(("198.51.100.7", 80), timeout=3).close()


def raw_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(("127.0.0.1", 22))


for target in ESCAPE_TARGETS:
    attempt(f"write {target}", lambda t=target: open(t, "w").write("escaped"))  # noqa: SIM115
def raw_write(target):
    """Below the audit hook: libc open(2) through ctypes. Only the kernel-side layers stop this."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(target.encode(), os.O_WRONLY | os.O_CREAT, 0o644)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "open failed")
    libc.write(fd, b"escaped", 7)
    libc.close(fd)


for target in ESCAPE_TARGETS:
    attempt(f"raw write {target}.raw", lambda t=target: raw_write(t + ".raw"))


def raw_unix_connect(path):
    """A filesystem Unix socket through libc: the network namespace does not cover these."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    addr = ctypes.create_string_buffer(110)
    ctypes.memmove(addr, (socket.AF_UNIX).to_bytes(2, "little") + path.encode(), 2 + len(path))
    if libc.connect(fd, addr, 110) != 0:
        err = ctypes.get_errno()
        libc.close(fd)
        raise OSError(err, "connect failed")
    libc.send(fd, b"escaped", 7, 0)
    libc.close(fd)


for path in filter(None, os.environ.get("HOST_SOCKETS", "").split(":")):
    attempt(f"raw unix connect {path}", lambda p=path: raw_unix_connect(p))
attempt("connect 198.51.100.7:80", connect)
attempt("connect 127.0.0.1:22", raw_socket)

children = 0
while True:  # fork bomb: every child sleeps, so they pile up until the limit says no
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"BLOCKED fork after {children} children: {exc.strerror}", flush=True)
        break
    if pid == 0:
        time.sleep(3600)
        os._exit(0)
    children += 1
    if children >= 100_000:
        print("ALLOWED fork bomb", flush=True)
        break

print("sleeping forever", flush=True)
sys.stdout.flush()
while True:
    time.sleep(60)
