"""Locations with snippets, so every finding shows the line it talks about."""

from __future__ import annotations

from itertools import islice

from auditor.models import Location

SNIPPET_MAX = 240


def log_location(log, line: int | None) -> Location:
    """A line of a parsed log, with its text read back from the file (logs are not kept in memory)."""
    return Location(file=log.rel, line=line, snippet=_read_line(log.path, line) if line else None)


def source_location(src, lineno: int | None, role: str | None = None) -> Location:
    """A line of a (possibly unwrapped) Python source."""
    return Location(
        file=src.path, line=lineno, snippet=text_line(src.text, lineno), wrapper=src.wrapper, role=role
    )


def text_line(text: str, lineno: int | None) -> str | None:
    if not lineno or lineno < 1:
        return None
    lines = text.splitlines()
    return lines[lineno - 1].strip()[:SNIPPET_MAX] if lineno <= len(lines) else None


def _read_line(path: str, line: int) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            got = next(islice(fh, line - 1, line), None)
    except OSError:
        return None
    return got.strip()[:SNIPPET_MAX] if got is not None else None
