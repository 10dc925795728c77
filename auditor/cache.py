"""Content-addressed caches on disk: a record's audit, and the code-size re-minification.

A record's result is a pure function of what pgolf is (its version and the bytes of its own code
and rule catalog), of everything the audit reads (the record folder's listing and the bytes of its
files) and of the options. The key hashes exactly that, so an unchanged record re-audits from the
cache and any change to any of it misses. Entries are written to a temporary file and renamed into
place (safe when the service's worker pool and two CLIs share the directory), read back with a
schema check (a damaged entry is a miss), and the directory is kept under a size bound by evicting
the least recently used entries.

Where: ``$PGOLF_CACHE_DIR``, else the user's cache directory (``platformdirs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditor.intake import RecordFolder
    from auditor.models import RecordAudit
    from auditor.options import AuditOptions

PACKAGE_DIRS = ("auditor", "rules")  # pgolf's own code and catalog: a change to either misses
RESULTS_SCHEMA = 1
DEFAULT_MAX_BYTES = 512 << 20
HASH_CHUNK = 1 << 20


def cache_root() -> Path:
    env = os.environ.get("PGOLF_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("pgolf", appauthor=False))


def disabled_by_env() -> bool:
    """``PGOLF_NO_CACHE=1`` (or true/yes) switches the result cache off, for the CLI and the service alike."""
    return os.environ.get("PGOLF_NO_CACHE", "").strip().lower() in ("1", "true", "yes")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file, the new one, or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """pgolf's version and a hash of its own sources and rule catalog (an edited checkout of pgolf
    must not reuse results computed by other code)."""
    from auditor import __version__

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    for top in PACKAGE_DIRS:
        base = root / top
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                h.update(str(path.relative_to(root)).encode() + b"\0")
                h.update(path.read_bytes())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def record_key(record: RecordFolder, options: AuditOptions) -> str | None:
    """The key of one record's audit, or None when it cannot be content-addressed: a rerun (it
    executes code, its result is not a function of the bytes alone), a baseline given as another
    folder (the audit reads that folder too), a file that cannot be read to hash it."""
    if options.rerun or (options.baseline and os.path.isdir(options.baseline)):
        return None
    items: list = []
    for f in record.files:
        entry = [f.rel, f.size, f.kind, f.is_symlink, f.symlink_escapes, f.unreadable]
        if f.usable and f.path is not None and not f.is_symlink:
            try:
                entry.append(_file_digest(f.path))
            except OSError:
                return None
        elif f.is_symlink and f.path is not None:
            try:
                entry.append(os.readlink(f.path))
            except OSError:
                return None
        items.append(entry)
    material = {
        "schema": RESULTS_SCHEMA,
        "pgolf": code_fingerprint(),
        "options": options.model_dump(mode="json"),
        "record": [record.rel, record.name, record.track, record.unreadable, record.is_symlink,
                   record.symlink_escapes, record.opened],
        "files": items,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


class ResultCache:
    """Record audits by content key, under ``root / "results"``."""

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = (root or cache_root()) / "results" / f"v{RESULTS_SCHEMA}"
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._writes_since_trim = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str | None) -> RecordAudit | None:
        if key is None:
            return None
        from pydantic import ValidationError

        from auditor.models import RecordAudit

        path = self._path(key)
        try:
            data = path.read_bytes()
            audit = RecordAudit.model_validate_json(data)
        except (OSError, ValueError, ValidationError):
            self.misses += 1
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        self.hits += 1
        return audit

    def put(self, key: str | None, audit: RecordAudit) -> None:
        if key is None or audit.error or any(f.data.get("budget") for f in audit.findings):
            return  # an internal error, or an audit stopped at its budget, is not a result to keep
        try:
            atomic_write(self._path(key), audit.model_dump_json().encode())
        except OSError:
            return  # a read-only or full cache only costs time
        self._writes_since_trim += 1
        if self._writes_since_trim == 1 or self._writes_since_trim >= 64:
            self._writes_since_trim = 1
            self.trim()

    def trim(self) -> None:
        """Evict least recently used entries until the directory is under ``max_bytes``."""
        entries = []
        total = 0
        for path in self.dir.glob("*/*.json"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
            total += st.st_size
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(entries):
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            if total <= self.max_bytes * 0.8:  # some headroom, so that trims are rare
                break


