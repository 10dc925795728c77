"""Safe extraction of uploaded record folders: every hostile archive shape is refused with a reason."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from api.archive import ArchiveError, Limits, extract, safe_member_path, sniff_format


def make_zip(entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_zip_record_folder_is_extracted_and_unwrapped(tmp_path: Path):
    data = make_zip({"my_record/README.md": b"# hi\n", "my_record/logs/train_seed1.log": b"seed:1\n"})
    root = extract(data, tmp_path / "x")
    assert root.name == "my_record"
    assert (root / "README.md").read_bytes() == b"# hi\n"
    assert (root / "logs" / "train_seed1.log").read_bytes() == b"seed:1\n"


def test_tar_gz_and_plain_tar(tmp_path: Path):
    for gz, sub in ((True, "a"), (False, "b")):
        data = make_tar([("README.md", b"r"), ("submission.json", b"{}")], gz=gz)
        assert sniff_format(data) == ("tar.gz" if gz else "tar")
        root = extract(data, tmp_path / sub)
        assert sorted(p.name for p in root.iterdir()) == ["README.md", "submission.json"]


def test_records_tree_is_not_descended_past_records(tmp_path: Path):
    data = make_zip({"records/track_10min_16mb/x/README.md": b"r"})
    root = extract(data, tmp_path / "x")
    assert root == (tmp_path / "x").resolve() or root.name == "x"
    assert (root / "records" / "track_10min_16mb" / "x" / "README.md").exists()


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "/etc/evil", "C:/evil", "a\\..\\evil"])
def test_traversal_names_are_refused(tmp_path: Path, name: str):
    with pytest.raises(ArchiveError):
        extract(make_zip({name: b"x"}), tmp_path / "x")
    with pytest.raises(ArchiveError):
        extract(make_tar([(name, b"x")]), tmp_path / "y")
    assert not (tmp_path / "evil.py").exists()


def test_symlinks_and_hardlinks_are_refused(tmp_path: Path):
    with pytest.raises(ArchiveError, match="symlink"):
        extract(make_zip({"README.md": b"r"}, symlinks={"link": "/etc/passwd"}), tmp_path / "z")
    sym = tarfile.TarInfo("link")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ArchiveError, match="link"):
        extract(make_tar([("README.md", b"r"), sym]), tmp_path / "t1")
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "README.md"
    with pytest.raises(ArchiveError, match="link"):
        extract(make_tar([("README.md", b"r"), hard]), tmp_path / "t2")


def test_devices_and_fifos_are_refused(tmp_path: Path):
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(ArchiveError, match="regular"):
        extract(make_tar([fifo]), tmp_path / "x")


def test_zip_bomb_stops_at_the_byte_limit(tmp_path: Path):
    # Two-bit-entropy bytes compress ~4x: an ordinary ratio, so the streaming byte budget must stop it.
    raw = bytes(b & 0x03 for b in os.urandom(12 * 1024 * 1024))
    data = make_zip({"a.bin": raw[: 6 << 20], "b.bin": raw[6 << 20 :]})
    with pytest.raises(ArchiveError, match="more than"):
        extract(data, tmp_path / "x", Limits(max_bytes=5 * 1024 * 1024))
    written = sum(p.stat().st_size for p in (tmp_path / "x").rglob("*") if p.is_file())
    assert written <= 5 * 1024 * 1024


def test_high_ratio_member_is_refused_before_inflating(tmp_path: Path):
    data = make_zip({"bomb.bin": b"\0" * (200 * 1024 * 1024)})
    with pytest.raises(ArchiveError, match="ratio"):
        extract(data, tmp_path / "x")
    assert not (tmp_path / "x" / "bomb.bin").exists()


def test_gzip_bomb_in_tar_stops_at_the_limit(tmp_path: Path):
    data = make_tar([("zeros.bin", b"\0" * (30 * 1024 * 1024))])
    assert len(data) < 100 * 1024
    with pytest.raises(ArchiveError, match="more than"):
        extract(data, tmp_path / "x", Limits(max_bytes=5 * 1024 * 1024))


def test_lying_tar_header_cannot_write_more_than_the_limit(tmp_path: Path):
    # The header claims 1 KB but the budget is what is checked before and while writing.
    data = make_tar([("a.bin", b"x" * 4096), ("b.bin", b"y" * 4096)])
    with pytest.raises(ArchiveError):
        extract(data, tmp_path / "x", Limits(max_bytes=6000))


def test_member_count_limit(tmp_path: Path):
    data = make_zip({f"f{i}.txt": b"x" for i in range(30)})
    with pytest.raises(ArchiveError, match="more than 10 members"):
        extract(data, tmp_path / "x", Limits(max_members=10))


def test_duplicate_names_are_refused(tmp_path: Path):
    data = make_tar([("a.txt", b"1"), ("./a.txt", b"2")])
    with pytest.raises(ArchiveError, match="twice"):
        extract(data, tmp_path / "x")


def test_garbage_and_truncated_archives_are_clear_errors(tmp_path: Path):
    with pytest.raises(ArchiveError, match="not a zip"):
        extract(b"hello world", tmp_path / "a")
    good = make_tar([("a.txt", b"x" * 100_000)])
    with pytest.raises(ArchiveError):
        extract(good[: len(good) // 2], tmp_path / "b")
    with pytest.raises(ArchiveError):
        extract(b"PK\x03\x04" + os.urandom(200), tmp_path / "c")
    with pytest.raises(ArchiveError):
        extract(gzip.compress(b"not a tar at all" * 100), tmp_path / "d")


def test_encrypted_zip_member_is_refused(tmp_path: Path):
    data = bytearray(make_zip({"a.txt": b"secret"}))
    # Set the "encrypted" general-purpose flag in both the local header and the central directory.
    data[6] |= 0x1
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 0x1
    with pytest.raises(ArchiveError, match="encrypted"):
        extract(bytes(data), tmp_path / "x")


def test_safe_member_path_normalizes():
    assert str(safe_member_path("./a//b/./c.txt")) == "a/b/c.txt"
    assert safe_member_path("./") is None


def test_a_member_the_disk_refuses_is_named_without_errno_or_server_paths(tmp_path: Path):
    name = "rec/" + "n" * 300 + ".log"  # one path component over the file system's 255 bytes
    with pytest.raises(ArchiveError) as err:
        extract(make_zip({"rec/train_gpt.py": b"x = 1\n", name: b"data"}), tmp_path / "x")
    text = str(err.value)
    assert "its name is too long" in text and "Errno" not in text and str(tmp_path) not in text
