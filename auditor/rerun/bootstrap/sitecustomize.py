"""Loaded by every Python process started inside a pgolf rerun sandbox (the bootstrap directory is
first on PYTHONPATH). Installs the guard's audit hook; the tracer is armed by pgolf_boot.py."""

import os

if os.environ.get("PGOLF_GUARD_FD"):
    import pgolf_guard

    pgolf_guard.install()
