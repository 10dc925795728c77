"""Errors that end an audit early, each with the exit code the CLI documents."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    PASS = 0
    FAIL = 1
    USAGE = 2  # bad command line (click's own code for usage errors)
    NEEDS_REVIEW = 3
    INPUT_ERROR = 4  # the input could not be audited: missing path, bad git ref, unreadable tree
    INTERNAL_ERROR = 5  # a bug in pgolf; the message asks for a report


class PgolfError(Exception):
    """An expected failure with a clear message for the user (no traceback)."""

    exit_code = ExitCode.INPUT_ERROR

    def __init__(self, message: str, *, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(PgolfError):
    exit_code = ExitCode.INPUT_ERROR
