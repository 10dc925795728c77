"""Reading untrusted text files without trusting them.

Submission folders come from strangers: a "log" may be a 1 GB file, a binary blob, a symlink to
``/etc/passwd`` or not UTF-8 at all. Everything here reads a bounded number of bytes, never
follows a link out of the folder, and reports what was odd as a short ``problem`` string instead
of raising.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARY_SNIFF_BYTES = 8192  # a NUL byte in this head means "binary", like git and grep decide
CHUNK_BYTES = 1 << 20

PROBLEM_BINARY = "binary file"
PROBLEM_NOT_UTF8 = "not UTF-8 (decoded with replacement)"
PROBLEM_EMPTY = "empty"
PROBLEM_SYMLINK_ESCAPE = "symlink leaving the folder"
PROBLEM_NOT_FILE = "not a regular file"
PROBLEM_UTF16 = "not UTF-8: UTF-16 text (decoded)"


def problem_too_large(n_read: int) -> str:
    return f"larger than limit: read first {n_read} bytes"


@dataclass(frozen=True)
class TextRead:
    """The text of a file (``None`` when it could not or should not be read) and what was odd."""

    text: str | None
    problems: tuple[str, ...] = ()
    size: int | None = None  # bytes on disk (of the link target for an in-folder symlink)
    bytes_read: int = 0
    truncated: bool = False

    @property
    def problem(self) -> str | None:
        return "; ".join(self.problems) if self.problems else None

    @property
    def ok(self) -> bool:
        return self.text is not None and not self.problems


@dataclass
class ReadStats:
    """What ``iter_lines_bounded`` saw; filled in while the lines stream."""

    size: int | None = None
    bytes_read: int = 0
    lines: int = 0
    truncated: bool = False  # stopped at max_bytes
    long_lines: int = 0  # lines cut at max_line_len
    utf8_errors: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        return "; ".join(self.problems) if self.problems else None


def escapes_root(path: Path, root: Path | None) -> bool:
    """True when ``path`` (or a link on the way) resolves outside ``root``."""
    if root is None:
        return False
    try:
        resolved = path.resolve(strict=False)
        root_resolved = root.resolve(strict=False)
    except (OSError, RuntimeError):  # RuntimeError: symlink loop on older Pythons
        return True
    return resolved != root_resolved and root_resolved not in resolved.parents


def _precheck(path: Path, root: Path | None) -> tuple[str | None, int | None]:
    """A problem that forbids reading at all, and the size when known."""
    if escapes_root(path, root):
        return PROBLEM_SYMLINK_ESCAPE, None
    try:
        st = path.stat()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}", None
    if not stat.S_ISREG(st.st_mode):
        return PROBLEM_NOT_FILE, None
    return None, st.st_size


def looks_binary(head: bytes) -> bool:
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def decode_utf8(data: bytes, *, cut_tail: bool = False) -> tuple[str, bool]:
    """Decode as UTF-8; returns (text, clean). ``cut_tail`` drops a character split by truncation."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by our own byte limit is not the file's fault.
        if cut_tail and exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            try:
                return data[: exc.start].decode("utf-8"), True
            except UnicodeDecodeError:
                pass
        return data.decode("utf-8", errors="replace"), False


def read_text_bounded(path: Path, limit_bytes: int, *, root: Path | None = None) -> TextRead:
    """Read at most ``limit_bytes`` of ``path`` as text.

    ``root``: the folder the file must stay in (symlinks resolving outside are not followed).
    Never raises for I/O problems; see ``TextRead.problems``.
    """
    path = Path(path)
    problem, size = _precheck(path, root)
    if problem is not None:
        return TextRead(text=None, problems=(problem,), size=size)
    try:
        with path.open("rb") as fh:
            data = fh.read(limit_bytes + 1)
    except OSError as exc:
        return TextRead(text=None, problems=(f"unreadable: {exc.strerror or exc}",), size=size)
    truncated = len(data) > limit_bytes
    data = data[:limit_bytes]
    if not data:
        return TextRead(text="", problems=(PROBLEM_EMPTY,), size=size)
    problems = []
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, clean = data.decode("utf-16", errors="replace"), True
        problems.append(PROBLEM_UTF16)
    elif looks_binary(data):
        return TextRead(text=None, problems=(PROBLEM_BINARY,), size=size, bytes_read=len(data))
    else:
        text, clean = decode_utf8(data, cut_tail=truncated)
    if not clean:
        problems.append(PROBLEM_NOT_UTF8)
    if truncated:
        problems.append(problem_too_large(len(data)))
    return TextRead(text=text, problems=tuple(problems), size=size, bytes_read=len(data), truncated=truncated)


def iter_lines_bounded(
    path: Path,
    max_bytes: int,
    max_line_len: int,
    *,
    stats: ReadStats | None = None,
    root: Path | None = None,
    digest: Any = None,
) -> Iterator[str]:
    """Stream the lines of ``path`` (without line terminators) in bounded memory.

    At most ``max_bytes`` are read; a line longer than ``max_line_len`` characters is cut there
    (the rest of it is skipped without being buffered). Bytes that are not UTF-8 are replaced.
    A binary file (NUL in the first 8 KB), a link leaving ``root`` or an unreadable file yields
    nothing; ``stats.problems`` says why. ``digest`` (a hashlib object) sees every byte read.
    """
    stats = stats if stats is not None else ReadStats()
    path = Path(path)
    problem, stats.size = _precheck(path, root)
    if problem is not None:
        stats.problems.append(problem)
        return
    try:
        fh = path.open("rb")
    except OSError as exc:
        stats.problems.append(f"unreadable: {exc.strerror or exc}")
        return
    with fh:
        yield from _stream(fh, max_bytes, max_line_len, stats, digest)
    if stats.utf8_errors:
        stats.problems.insert(0, PROBLEM_NOT_UTF8)


def _stream(fh: Any, max_bytes: int, max_line_len: int, stats: ReadStats, digest: Any) -> Iterator[str]:
    carry = b""
    skipping = False  # inside the unread rest of an over-long line
    first = True
    utf16: Any = None  # an incremental decoder once a UTF-16 byte-order mark was seen
    text_carry = ""
    while stats.bytes_read < max_bytes:
        try:
            chunk = fh.read(min(CHUNK_BYTES, max_bytes - stats.bytes_read))
        except OSError as exc:
            stats.problems.append(f"unreadable: {exc.strerror or exc}")
            return
        if not chunk:
            break
        stats.bytes_read += len(chunk)
        if digest is not None:
            digest.update(chunk)
        if first:
            first = False
            if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                # PowerShell's Tee-Object writes UTF-16: readable, but not what was asked for.
                utf16 = codecs.getincrementaldecoder("utf-16")(errors="replace")
                stats.problems.append(PROBLEM_UTF16)
            elif looks_binary(chunk):
                stats.problems.append(PROBLEM_BINARY)
                return
            elif chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
        if utf16 is not None:
            text = text_carry + utf16.decode(chunk)
            end = text.rfind("\n")
            text_carry = text[end + 1 :] if end >= 0 else text
            if end >= 0:
                yield from _split_text(text[:end], max_line_len, stats)
            if len(text_carry) > max_line_len:
                yield from _split_text(text_carry[:max_line_len], max_line_len, stats)
                stats.long_lines += 1
                text_carry = ""
            continue
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            chunk = chunk[nl + 1 :]
            skipping = False
        buf = carry + chunk if carry else chunk
        end = buf.rfind(b"\n")
        if end < 0:
            carry = buf
        else:
            carry = buf[end + 1 :]
            yield from _split_lines(buf[:end], max_line_len, stats)
        if len(carry) > max_line_len:
            # Keep the head of the monster line; drop the rest up to its newline.
            yield from _split_lines(carry[:max_line_len], max_line_len, stats, cut_tail=True)
            stats.long_lines += 1
            carry = b""
            skipping = True
    else:
        # The loop ended on the byte budget: is there more file?
        if fh.read(1):
            stats.truncated = True
            stats.problems.append(problem_too_large(stats.bytes_read))
    if stats.bytes_read == 0:
        stats.problems.append(PROBLEM_EMPTY)
    if utf16 is not None:
        text_carry += utf16.decode(b"", final=True)
        if text_carry:
            yield from _split_text(text_carry, max_line_len, stats)
    elif carry and not skipping:
        yield from _split_lines(carry, max_line_len, stats, cut_tail=stats.truncated)


def _split_lines(
    block: bytes, max_line_len: int, stats: ReadStats, *, cut_tail: bool = False
) -> Iterator[str]:
    text, clean = decode_utf8(block, cut_tail=cut_tail)
    if not clean:
        stats.utf8_errors = True
    yield from _split_text(text, max_line_len, stats)


def _split_text(text: str, max_line_len: int, stats: ReadStats) -> Iterator[str]:
    check_long = len(text) > max_line_len
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if check_long and len(line) > max_line_len:
            line = line[:max_line_len]
            stats.long_lines += 1
        stats.lines += 1
        yield line


def folder_root_of(path: Path, rel: str) -> Path | None:
    """The record folder that ``path`` lies in, given its folder-relative name ``rel``."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return None
    root = Path(path)
    for _ in parts:
        root = root.parent
    if os.path.normpath(root / rel) != os.path.normpath(path):
        return None
    return root
