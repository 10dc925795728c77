"""A wall-clock deadline for one record's audit, checked at safe points.

The slow stages call ``check()`` as they go (the dataflow interpreter per block of statements,
the unwrapper per evaluation step, the pipeline between stages and logs). Past the deadline it
raises ``BudgetExceeded`` from that ordinary frame, so the exception always reaches the caller
that set the deadline: an exception injected by a signal can land in a garbage-collector callback,
where Python swallows it. One C call (a parse) is not interrupted; the parse budget bounds it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

_local = threading.local()


class BudgetExceeded(BaseException):  # not an Exception: no handler inside the audit swallows it
    pass


@contextmanager
def deadline(seconds: float):
    """Within the block, ``check()`` raises once ``seconds`` have passed (0 or less: no deadline)."""
    previous = getattr(_local, "at", None)
    _local.at = time.monotonic() + seconds if seconds > 0 else None
    try:
        yield
    finally:
        _local.at = previous


def check() -> None:
    at = getattr(_local, "at", None)
    if at is not None and time.monotonic() > at:
        _local.at = None  # raised once; the caller reports it
        raise BudgetExceeded()
