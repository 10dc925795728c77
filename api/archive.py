"""Safe extraction of an uploaded record folder (zip, tar, tar.gz).

The archive is untrusted: every member is checked before a byte is written. Rejected outright:
absolute paths, ``..``, symlinks, hard links, devices, encrypted zip members, duplicate names, more
than ``max_members`` entries, and more than ``max_bytes`` of decompressed data (counted while
streaming, so a lying header or a compression bomb stops at the limit, not after it). Files are
written fresh with ordinary permissions; nothing from the archive's metadata is trusted.
"""

from __future__ import annotations

import errno
import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1 << 16
MAX_DEPTH = 32
# A zip member over 1 MB that inflates more than 500x is a bomb (deflate tops out near 1030x;
# logs and code compress 3-10x). Smaller members are left to the byte budget.
MAX_RATIO = 500
RATIO_MIN_BYTES = 1 << 20
IGNORED_TOP = {"__MACOSX", ".DS_Store"}


class ArchiveError(ValueError):
    """The archive is unreadable or breaks a safety rule; the message says which and where."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 256 * 1024 * 1024
    max_members: int = 5000


def sniff_format(data: bytes) -> str:
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if data.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    raise ArchiveError("not a zip, tar or tar.gz archive")


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path a member may be written to; None for the archive root itself."""
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"member {name!r}: backslashes and NUL bytes are not allowed in names")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"member {name!r}: absolute paths are not allowed")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r}: '..' would escape the extraction folder")
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(f"member {name!r}: nested deeper than {MAX_DEPTH} folders")
    return PurePosixPath(*parts) if parts else None


class _Writer:
    """Writes members under ``root``, enforcing the byte budget and unique names."""

    def __init__(self, root: Path, limits: Limits):
        self.root = root.resolve()
        self.limits = limits
        self.total = 0
        self.count = 0
        self.seen: set[PurePosixPath] = set()

    def member(self, name: str) -> PurePosixPath | None:
        self.count += 1
        if self.count > self.limits.max_members:
            raise ArchiveError(f"more than {self.limits.max_members} members")
        rel = safe_member_path(name)
        if rel is not None and rel in self.seen:
            raise ArchiveError(f"member {name!r} appears twice")
        if rel is not None:
            self.seen.add(rel)
        return rel

    def _target(self, rel: PurePosixPath) -> Path:
        target = self.root.joinpath(*rel.parts)
        # A directory created earlier cannot be a symlink (we never create links), but check anyway.
        if not target.resolve().is_relative_to(self.root):
            raise ArchiveError(f"member {str(rel)!r} resolves outside the extraction folder")
        return target

    def mkdir(self, rel: PurePosixPath) -> None:
        try:
            self._target(rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(rel, exc) from None

    def write(self, rel: PurePosixPath, stream) -> None:
        target = self._target(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise ArchiveError(f"member {str(rel)!r} is both a file and a folder")
            with open(target, "xb") as out:
                while chunk := stream.read(CHUNK):
                    self.total += len(chunk)
                    if self.total > self.limits.max_bytes:
                        raise ArchiveError(f"decompresses to more than {self.limits.max_bytes:,} bytes")
                    out.write(chunk)
        except ArchiveError:
            raise
        except OSError as exc:
            raise self._unwritable(rel, exc) from None

    @staticmethod
    def _unwritable(rel: PurePosixPath, exc: OSError) -> ArchiveError:
        """The member and the reason in words: never the errno or where the server unpacks it."""
        why = {errno.ENAMETOOLONG: "its name is too long", errno.ENOSPC: "the server has no room for it",
               errno.EDQUOT: "the server has no room for it", errno.EEXIST: "it appears twice",
               errno.EISDIR: "it is both a file and a folder", errno.ENOTDIR: "a file is in the way of its folder",
               errno.EILSEQ: "its name is not valid on this server"}.get(exc.errno)
        return ArchiveError(f"member {str(rel)!r} could not be unpacked: {why or (exc.strerror or 'error').lower()}")


def _extract_zip(data: bytes, writer: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArchiveError(f"unreadable zip: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > writer.limits.max_members:
            raise ArchiveError(f"more than {writer.limits.max_members} members")
        for info in infos:
            rel = writer.member(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"member {info.filename!r} is a symlink; links are not accepted")
            # Many zip writers leave the type bits empty: only a type that is there can be refused.
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ArchiveError(f"member {info.filename!r} is not a regular file or folder")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"member {info.filename!r} is encrypted")
            if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
                raise ArchiveError(f"member {info.filename!r} has a compression ratio over {MAX_RATIO}")
            if rel is None:
                continue
            if info.is_dir():
                writer.mkdir(rel)
                continue
            try:
                with zf.open(info) as src:
                    writer.write(rel, src)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, OSError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ArchiveError(f"member {info.filename!r}: {why}") from None


def _extract_tar(data: bytes, writer: _Writer, mode: str) -> None:
    try:
        # Stream mode: members are read in order, nothing is seeked or pre-scanned.
        with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tf:
            for info in tf:
                rel = writer.member(info.name)
                if info.issym() or info.islnk():
                    raise ArchiveError(f"member {info.name!r} is a link; links are not accepted")
                if not (info.isfile() or info.isdir()):
                    raise ArchiveError(f"member {info.name!r} is not a regular file or folder")
                if rel is None:
                    continue
                if info.isdir():
                    writer.mkdir(rel)
                    continue
                if writer.total + info.size > writer.limits.max_bytes:
                    raise ArchiveError(f"decompresses to more than {writer.limits.max_bytes:,} bytes")
                src = tf.extractfile(info)
                if src is not None:
                    writer.write(rel, src)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"unreadable tar archive: {exc}") from None


def extract(data: bytes, dest: Path, limits: Limits = Limits()) -> Path:
    """Extract ``data`` into the empty folder ``dest``; return the folder to audit (see record_root)."""
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest, limits)
    kind = sniff_format(data)
    if kind == "zip":
        _extract_zip(data, writer)
    else:
        _extract_tar(data, writer, "r|gz" if kind == "tar.gz" else "r|")
    if writer.total == 0 and not any(dest.iterdir()):
        raise ArchiveError("the archive is empty")
    return record_root(dest)


def record_root(root: Path) -> Path:
    """Descend through single wrapping folders (``my-record/…`` zipped as a folder)."""
    current = root
    for _ in range(MAX_DEPTH):
        entries = [p for p in current.iterdir() if p.name not in IGNORED_TOP]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in ("records",):
            current = entries[0]
            continue
        break
    return current
