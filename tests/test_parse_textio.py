"""Bounded, link-safe reading of untrusted text files (auditor.parse.textio)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from auditor.parse.textio import (
    PROBLEM_BINARY,
    PROBLEM_EMPTY,
    PROBLEM_NOT_FILE,
    PROBLEM_NOT_UTF8,
    PROBLEM_SYMLINK_ESCAPE,
    PROBLEM_UTF16,
    ReadStats,
    folder_root_of,
    iter_lines_bounded,
    read_text_bounded,
)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- read_text_bounded -------------------------------------------------------------------------


def test_read_plain_utf8(tmp_path):
    p = _write(tmp_path / "a.md", "héllo\nwörld\n".encode())
    r = read_text_bounded(p, 1000)
    assert r.text == "héllo\nwörld\n" and r.ok and r.problem is None and r.size == p.stat().st_size


def test_read_empty(tmp_path):
    r = read_text_bounded(_write(tmp_path / "e.md", b""), 1000)
    assert r.text == "" and r.problems == (PROBLEM_EMPTY,)


def test_read_binary_is_not_decoded(tmp_path):
    r = read_text_bounded(_write(tmp_path / "b.md", b"PK\x03\x04\x00\x00abc"), 1000)
    assert r.text is None and r.problems == (PROBLEM_BINARY,)


def test_read_non_utf8_is_replaced_and_reported(tmp_path):
    r = read_text_bounded(_write(tmp_path / "l.md", "caf\u00e9 ok".encode("latin-1")), 1000)
    assert r.text == "caf\ufffd ok" and r.problems == (PROBLEM_NOT_UTF8,)


def test_read_utf16_with_bom_is_decoded_and_reported(tmp_path):
    r = read_text_bounded(_write(tmp_path / "w.md", "seed:42\nok\n".encode("utf-16")), 1000)
    assert r.text == "seed:42\nok\n" and r.problems == (PROBLEM_UTF16,)


def test_read_over_limit_keeps_head(tmp_path):
    r = read_text_bounded(_write(tmp_path / "big.md", b"x" * 5000), 1000)
    assert r.truncated and len(r.text) == 1000
    assert r.problems == ("larger than limit: read first 1000 bytes",)


def test_read_limit_cutting_a_multibyte_char_is_not_a_utf8_error(tmp_path):
    p = _write(tmp_path / "m.md", ("a" * 999 + "é" + "b").encode())  # é = 2 bytes straddling 1000
    r = read_text_bounded(p, 1000)
    assert r.text == "a" * 999
    assert r.problems == ("larger than limit: read first 1000 bytes",)


def test_read_missing_file_and_directory(tmp_path):
    r = read_text_bounded(tmp_path / "nope.md", 1000)
    assert r.text is None and r.problem.startswith("unreadable: ")
    (tmp_path / "dir.md").mkdir()
    assert read_text_bounded(tmp_path / "dir.md", 1000).problems == (PROBLEM_NOT_FILE,)


def test_read_symlink_leaving_the_folder_is_not_followed(tmp_path):
    secret = _write(tmp_path / "outside" / "secret.txt", b"do not read me")
    folder = tmp_path / "record"
    folder.mkdir()
    link = folder / "README.md"
    os.symlink(secret, link)
    r = read_text_bounded(link, 1000, root=folder)
    assert r.text is None and r.problems == (PROBLEM_SYMLINK_ESCAPE,)
    # A link that stays inside the folder is fine.
    inner = _write(folder / "real.md", b"inside")
    os.symlink(inner, folder / "alias.md")
    assert read_text_bounded(folder / "alias.md", 1000, root=folder).text == "inside"


def test_folder_root_of():
    assert folder_root_of(Path("/r/rec/logs/a.txt"), "logs/a.txt") == Path("/r/rec")
    assert folder_root_of(Path("/r/rec/a.log"), "a.log") == Path("/r/rec")
    assert folder_root_of(Path("/r/rec/a.log"), "b.log") is None
    assert folder_root_of(Path("/r/rec/a.log"), "../a.log") is None


# -- iter_lines_bounded ------------------------------------------------------------------------


def test_lines_crlf_and_final_line_without_newline(tmp_path):
    p = _write(tmp_path / "a.log", b"one\r\ntwo\n\nthree")
    stats = ReadStats()
    assert list(iter_lines_bounded(p, 10_000, 100, stats=stats)) == ["one", "two", "", "three"]
    assert stats.lines == 4 and stats.problems == [] and not stats.truncated


def test_lines_digest_sees_every_byte(tmp_path):
    data = b"".join(b"line %d\n" % i for i in range(100_000))  # spans several read chunks
    p = _write(tmp_path / "a.log", data)
    digest = hashlib.sha256()
    lines = list(iter_lines_bounded(p, 1 << 30, 100, digest=digest))
    assert len(lines) == 100_000 and lines[-1] == "line 99999"
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_lines_huge_line_is_cut_and_skipped(tmp_path):
    data = b"head\n" + b"z" * (3 << 20) + b"\ntail\n"  # a 3 MB line across read chunks
    stats = ReadStats()
    lines = list(iter_lines_bounded(_write(tmp_path / "a.log", data), 1 << 30, 1000, stats=stats))
    assert lines == ["head", "z" * 1000, "tail"]
    assert stats.long_lines == 1


def test_lines_stop_at_byte_budget(tmp_path):
    p = _write(tmp_path / "a.log", b"".join(b"row %06d\n" % i for i in range(10_000)))
    stats = ReadStats()
    lines = list(iter_lines_bounded(p, 1000, 100, stats=stats))
    assert stats.truncated and stats.bytes_read == 1000
    assert stats.problems == ["larger than limit: read first 1000 bytes"]
    assert lines[0] == "row 000000" and all(len(x) <= 10 for x in lines)


def test_lines_binary_yields_nothing(tmp_path):
    stats = ReadStats()
    p = _write(tmp_path / "a.log", b"\x1f\x8b\x08\x00" + bytes(100))
    assert list(iter_lines_bounded(p, 1000, 100, stats=stats)) == []
    assert stats.problems == [PROBLEM_BINARY]


def test_lines_non_utf8_replaced(tmp_path):
    stats = ReadStats()
    p = _write(tmp_path / "a.log", "seed:1 caf\u00e9\nok\n".encode("latin-1"))
    assert list(iter_lines_bounded(p, 1000, 100, stats=stats)) == ["seed:1 caf\ufffd", "ok"]
    assert stats.problems == [PROBLEM_NOT_UTF8]


def test_lines_utf16_and_utf8_bom(tmp_path):
    stats = ReadStats()
    p = _write(tmp_path / "w.log", "seed:42\r\nfinal\r\n".encode("utf-16"))
    assert list(iter_lines_bounded(p, 10_000, 100, stats=stats)) == ["seed:42", "final"]
    assert stats.problems == [PROBLEM_UTF16]
    p = _write(tmp_path / "b.log", b"\xef\xbb\xbfseed:42\n")
    assert list(iter_lines_bounded(p, 10_000, 100)) == ["seed:42"]


def test_lines_empty_and_escaping_link(tmp_path):
    stats = ReadStats()
    assert list(iter_lines_bounded(_write(tmp_path / "e.log", b""), 100, 100, stats=stats)) == []
    assert stats.problems == [PROBLEM_EMPTY]
    folder = tmp_path / "rec"
    folder.mkdir()
    os.symlink(tmp_path / "e.log", folder / "train.log")
    stats = ReadStats()
    assert list(iter_lines_bounded(folder / "train.log", 100, 100, stats=stats, root=folder)) == []
    assert stats.problems == [PROBLEM_SYMLINK_ESCAPE]


def test_one_gigabyte_sparse_file_is_read_in_bounded_memory(tmp_path):
    """A 1 GiB file (text head, then a hole of NUL bytes without newline) is neither loaded
    whole nor buffered line-wise: the reader stops at its byte budget and says so."""
    p = tmp_path / "huge.log"
    with p.open("wb") as fh:
        fh.write(b"".join(b"step:%d/20000 train_loss:2.5 train_time:%dms\n" % (i, i) for i in range(2000)))
        fh.truncate(1 << 30)  # sparse: costs no disk
    budget = 48 << 20
    stats = ReadStats()
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_lines_bounded(p, budget, 4096, stats=stats))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.size == 1 << 30
    assert stats.truncated and stats.bytes_read == budget
    assert f"larger than limit: read first {budget} bytes" in stats.problems
    assert count == 2001 and stats.long_lines == 1  # the NUL run is one cut line
    assert peak < 16 << 20, f"peak Python allocation {peak} bytes"


@pytest.mark.parametrize("limit", [1, 7, 64])
def test_read_tiny_limits_never_raise(tmp_path, limit):
    p = _write(tmp_path / "x.md", ("ä" * 50 + "\n" + "b" * 50).encode())
    assert read_text_bounded(p, limit).truncated
