"""Intake: find the record folders to audit, in a local tree or in a git ref, and check their shape.

Two entry points feed the pipeline:

* ``discover_records(path)`` walks a local tree (one record folder, a ``records/`` tree, a track
  folder or a whole repository) and lists every record folder with its files, without ever
  following a symlink or crashing on an unreadable directory.
* ``checkout_git(repo, ref, base, workdir)`` fetches just enough of a git repository to check out
  the tree at ``ref`` (shallow, hooks off, size-bounded, every call under a timeout) and, given a
  ``base``, works out what the pull request adds: the PR is supposed to add exactly one new folder
  under ``records/track_*/`` (HYG002).

``required_files_findings`` (HYG001) and ``unsafe_path_findings`` (HYG009) turn a folder's shape
into findings. Nothing here reads file contents beyond names, sizes and link targets.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Self

from auditor.errors import InputError
from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, PRScope, Severity

OFFICIAL_TRACKS = ("track_10min_16mb", "track_non_record_16mb")
NON_RECORD_TRACK = "track_non_record_16mb"


def is_non_record_track(track: str | None) -> bool:
    """The one test for "non-record track", for folder names (``track_non_record_16mb``) and
    submission.json values (``non-record``, ``non_record_16mb``) alike."""
    return bool(track) and "non" in track.lower() and "record" in track.lower()


def is_non_record(record: RecordFolder, submission=None) -> bool:
    """Is this record on the non-record track? The folder's track inside a records tree; outside
    one, what its submission.json says."""
    if record.track is not None:
        return is_non_record_track(record.track)
    return is_non_record_track(getattr(submission, "track", None))

# Walk limits: a record folder is a handful of files; these only stop pathological trees.
MAX_FILES_PER_RECORD = 20_000
MAX_DEPTH_IN_RECORD = 32
MAX_SEARCH_DEPTH = 8  # how deep the heuristic search looks for record folders outside records/track_*/
# Directories that never hold a record and are never descended while *searching* for records.
SEARCH_SKIP = {".git", "__pycache__", "node_modules", ".venv", "venv", ".tox", ".mypy_cache"}

FileKind = str  # "script" | "log" | "json" | "readme" | "tokenizer" | "other"


# ---------------------------------------------------------------------------------------------
# Records and their files


@dataclass(frozen=True)
class FileEntry:
    """One entry of a record folder (files, plus links, odd files and unreadable directories)."""

    rel: str  # path inside the record folder, forward slashes
    size: int  # bytes on disk (of the link itself for a symlink)
    kind: FileKind
    is_symlink: bool = False
    symlink_escapes: bool = False  # the link (or its resolution) points outside the record folder
    unreadable: str | None = None  # why the entry cannot be read, None when it can
    path: Path | None = None  # absolute path; set by the scanner

    @property
    def usable(self) -> bool:
        """Safe for later stages to read: not unreadable and not a link leaving the folder."""
        return self.unreadable is None and not self.symlink_escapes

    @property
    def top_level(self) -> bool:
        return "/" not in self.rel

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


@dataclass
class RecordFolder:
    root: Path  # absolute
    rel: str  # relative to the audited tree / repository root, forward slashes
    name: str
    track: str | None  # the parent folder's name when it is a track_* folder
    files: list[FileEntry] = field(default_factory=list)
    unreadable: str | None = None  # the folder itself could not be listed
    is_symlink: bool = False  # the folder itself is a symlink (never followed)
    symlink_escapes: bool = False
    opened: str | None = None  # ISO timestamp of the PR's first commit (git intake with a base)

    def _usable(self, kind: str, *, top_level_only: bool = False) -> list[FileEntry]:
        return [f for f in self.files if f.kind == kind and f.usable and (f.top_level or not top_level_only)]

    @property
    def scripts(self) -> list[FileEntry]:
        return self._usable("script")

    @property
    def logs(self) -> list[FileEntry]:
        return self._usable("log")

    @property
    def jsons(self) -> list[FileEntry]:
        return self._usable("json")

    @property
    def entry_script(self) -> FileEntry | None:
        """``train_gpt.py``, else the likeliest entry point (records-format.md §1.1).

        Observed alternatives are all top-level ``train*.py``: ``train_gpt_v5.py``,
        ``train_gpt_cuda_ternary.py``, ``train_jepa_ssm.py``, ``train_mdlm.py``... When a folder
        ships variants (``train_gpt_hnet.py`` + ``train_gpt_hnet_byte.py``, ``train_gpt_cuda_xnor.py``
        + 3 ``*_eggroll_*`` variants) the base name is the shortest one, so prefer
        ``train_gpt*`` over other ``train*``, then the shortest name, then alphabetical order.
        """
        top = {f.rel: f for f in self._usable("script", top_level_only=True)}
        if "train_gpt.py" in top:
            return top["train_gpt.py"]
        candidates = [f for name, f in top.items() if name.lower().startswith("train")]
        if not candidates:
            return None
        candidates.sort(key=lambda f: (not f.rel.lower().startswith("train_gpt"), len(f.rel), f.rel))
        return candidates[0]

    @property
    def submission_json(self) -> FileEntry | None:
        """``submission.json``, else ``submission_<x>.json`` (3 merged records use that form)."""
        top = sorted(self._usable("json", top_level_only=True), key=lambda f: f.rel)
        for f in top:
            if f.rel == "submission.json":
                return f
        for f in top:
            if f.rel.lower().startswith("submission") and f.rel.lower().endswith(".json"):
                return f
        return None

    @property
    def readme(self) -> FileEntry | None:
        top = self._usable("readme", top_level_only=True)
        exact = [f for f in top if f.rel == "README.md"]
        return (exact or sorted(top, key=lambda f: f.rel) or [None])[0]

    def entry(self, rel: str) -> FileEntry | None:
        for f in self.files:
            if f.rel == rel:
                return f
        return None

    def path_of(self, entry: FileEntry | str) -> Path:
        """Absolute path of a file of this folder; refuses links or paths that leave the folder."""
        rel = entry.rel if isinstance(entry, FileEntry) else entry
        return resolve_inside(self.root, rel)


def classify(rel: str) -> FileKind:
    """The kind of a file from its path inside the record folder (names only, never contents)."""
    name = rel.rsplit("/", 1)[-1].lower()
    top_level = "/" not in rel
    if name.endswith(".py"):
        return "script"
    if (
        top_level
        and name.split(".", 1)[0] == "readme"
        and name.endswith((".md", ".markdown", ".rst", ".txt"))
    ):
        return "readme"
    if name.endswith(".log"):
        return "log"
    if name.endswith(".txt"):
        return "other" if name.startswith("requirements") else "log"
    if name.endswith(".json"):
        return "json"
    if name.endswith((".model", ".vocab")):
        return "tokenizer"
    return "other"


# ---------------------------------------------------------------------------------------------
# Path safety


def safe_relpath(rel: str) -> str:
    """Normalize a relative path from untrusted input; raise InputError on anything that could
    leave its base folder (absolute paths, ``..``, drive letters, NUL, backslashes)."""
    if not isinstance(rel, str) or not rel.strip():
        raise InputError("empty path")
    if "\0" in rel or "\\" in rel:
        raise InputError(f"unsafe path {rel!r}: NUL or backslash")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        raise InputError(f"unsafe path {rel!r}: absolute")
    parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InputError(f"unsafe path {rel!r}: '..' traversal")
    if not parts:
        raise InputError(f"unsafe path {rel!r}: names no file")
    return "/".join(parts)


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` resolves (links followed) to ``root`` or somewhere below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def resolve_inside(root: Path, rel: str) -> Path:
    """``root / rel`` after checking that neither the path nor any link on it leaves ``root``."""
    clean = safe_relpath(rel)
    candidate = Path(root) / clean
    if not is_inside(candidate, root):
        raise InputError(f"path {rel!r} leaves the folder {root} (symlink)")
    return candidate


def _display(name: str) -> str:
    """A printable form of a file name that may hold undecodable bytes or control characters."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _name_problem(name: str) -> str | None:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return "file name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "file name contains control characters"
    if "\\" in name:
        return "file name contains a backslash"
    return None


# ---------------------------------------------------------------------------------------------
# Scanning one record folder


def _posix(rel_parts: list[str]) -> str:
    return "/".join(rel_parts)


# Looked up first, so that a folder flooded with entries can never push them out of the listing.
REQUIRED_NAMES = ("submission.json", "readme.md", "train_gpt.py")


def _listing_order(e: os.DirEntry[str], *, top_level: bool) -> tuple:
    """Required files, then code, logs and JSON, then other known kinds, other files, directories;
    by name within each."""
    try:
        is_dir = e.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False
    name = e.name.lower()
    if is_dir:
        rank = 4
    elif top_level and name in REQUIRED_NAMES:
        rank = 0
    elif name.endswith((".py", ".log", ".json")):
        rank = 1
    else:
        rank = 2 if classify(e.name) != "other" else 3
    return (rank, e.name)


def scan_record(
    root: Path, rel: str | None = None, track: str | None = None, *, tree_root: Path | None = None
) -> RecordFolder:
    """List every entry of a record folder. Links are recorded, never followed; errors are kept
    on the entry that caused them. ``tree_root`` bounds where a symlinked folder may point."""
    root = Path(os.path.abspath(root))
    rec = RecordFolder(root=root, rel=rel or root.name, name=root.name, track=track)
    if root.is_symlink():
        rec.is_symlink = True
        rec.symlink_escapes = not is_inside(root, tree_root or root.parent)
        rec.unreadable = "the record folder is a symlink (not followed)"
        return rec
    real_root = os.path.realpath(root)
    files: list[FileEntry] = []

    def add(**kw) -> bool:
        if len(files) >= MAX_FILES_PER_RECORD:
            return False
        files.append(FileEntry(**kw))
        return True

    def walk(directory: Path, parts: list[str]) -> bool:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: _listing_order(e, top_level=not parts))
        except OSError as exc:
            reason = f"cannot list directory: {exc.strerror or exc.__class__.__name__}"
            if not parts:
                rec.unreadable = reason
                return True
            return add(rel=_posix(parts), size=0, kind="other", unreadable=reason, path=directory)
        for e in entries:
            if not parts and e.name == ".git":
                continue  # a local clone's metadata, not part of the submission
            rel_parts = parts + [e.name]
            rel_e = _posix(rel_parts)
            path = Path(e.path)
            name_problem = _name_problem(e.name)
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                if not add(
                    rel=rel_e,
                    size=0,
                    kind=classify(rel_e),
                    unreadable=f"cannot stat: {exc.strerror}",
                    path=path,
                ):
                    return False
                continue
            if stat.S_ISLNK(st.st_mode):
                escapes = not is_inside(path, real_root)
                size, problem = st.st_size, name_problem
                try:
                    target = os.stat(path)  # metadata only; escaping targets are never opened
                except OSError as exc:
                    problem = problem or {errno.ENOENT: "dangling symlink", errno.ELOOP: "symlink loop"}.get(
                        exc.errno, f"symlink that cannot be resolved ({exc.strerror})")
                else:
                    if stat.S_ISDIR(target.st_mode):
                        problem = problem or "symlink to a directory (not followed)"
                    elif not stat.S_ISREG(target.st_mode):
                        problem = problem or "symlink to a non-regular file"
                    elif not escapes:
                        size = target.st_size  # an in-folder link reads as its target
                        if not os.access(path, os.R_OK):
                            problem = problem or "permission denied"
                ok = add(
                    rel=rel_e,
                    size=size,
                    kind=classify(rel_e),
                    is_symlink=True,
                    symlink_escapes=escapes,
                    unreadable=problem,
                    path=path,
                )
            elif stat.S_ISDIR(st.st_mode):
                if len(rel_parts) >= MAX_DEPTH_IN_RECORD:
                    ok = add(
                        rel=rel_e, size=0, kind="other", unreadable="directory nested too deep", path=path
                    )
                elif name_problem:
                    ok = add(rel=rel_e, size=0, kind="other", unreadable=name_problem, path=path)
                else:
                    ok = walk(path, rel_parts)
            elif stat.S_ISREG(st.st_mode):
                problem = name_problem or (None if os.access(path, os.R_OK) else "permission denied")
                ok = add(rel=rel_e, size=st.st_size, kind=classify(rel_e), unreadable=problem, path=path)
            else:
                # FIFOs, sockets and devices: opening a FIFO would block the auditor forever.
                ok = add(rel=rel_e, size=0, kind="other", unreadable="not a regular file", path=path)
            if not ok:
                return False
        return True

    complete = walk(root, [])
    files.sort(key=lambda f: f.rel.split("/"))  # the priority above decides what is kept, not the order
    if not complete:
        files.append(
            FileEntry(
                rel=".",
                size=0,
                kind="other",
                unreadable=f"the folder has more than {MAX_FILES_PER_RECORD} entries: only the first "
                f"{MAX_FILES_PER_RECORD} were considered (the submission's own files first, by name)",
                path=root,
            )
        )
    rec.files = files
    return rec


# ---------------------------------------------------------------------------------------------
# Discovering record folders


def _list_dir(path: Path) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return None


def _is_dir_entry(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _looks_like_record(entries: list[os.DirEntry[str]]) -> bool:
    """A folder that directly holds submission*.json, train*.py, *.log, or a README plus a .txt log."""
    names = []
    for e in entries:
        try:
            if e.is_file(follow_symlinks=False):
                names.append(e.name.lower())
        except OSError:
            continue
    has_readme = any(n == "readme.md" for n in names)
    for n in names:
        if n.startswith("submission") and n.endswith(".json"):
            return True
        if n.startswith("train") and n.endswith(".py"):
            return True
        if n.endswith(".log"):
            return True
        if has_readme and n.endswith(".txt") and not n.startswith("requirements"):
            return True
    return False


class _Discovery:
    def __init__(self, base: Path):
        self.base = base  # rel paths are relative to this folder
        self.found: dict[str, RecordFolder] = {}

    def rel(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path, self.base)).as_posix()
        except ValueError:
            return path.name

    @staticmethod
    def track_of(path: Path) -> str | None:
        parent = path.parent.name
        return parent if parent.startswith("track_") else None

    def add(self, path: Path) -> None:
        rel = self.rel(path)
        if rel not in self.found:
            self.found[rel] = scan_record(path, rel, self.track_of(path), tree_root=self.base)

    def add_unreadable(self, path: Path, reason: str) -> None:
        """An unreadable folder where records may be: reported as a record so that it is not
        silently skipped (HYG009 explains)."""
        rel = self.rel(path)
        rec = self.found.setdefault(
            rel, RecordFolder(root=path, rel=rel, name=path.name, track=self.track_of(path))
        )
        rec.unreadable = reason

    def track(self, path: Path) -> None:
        """Every immediate sub-folder of a track folder is a record, whatever it holds."""
        entries = _list_dir(path)
        if entries is None:
            self.add_unreadable(path, "cannot list the track folder")
            return
        for e in entries:
            if e.name in (".git", "__pycache__"):
                continue
            # A link to a folder is a record that HYG009 rejects; links to files are not records.
            if _is_dir_entry(e) or (e.is_symlink() and os.path.isdir(e.path)):
                self.add(Path(e.path))

    def records_tree(self, path: Path) -> None:
        entries = _list_dir(path)
        if entries is None:
            self.add_unreadable(path, "cannot list the records folder")
            return
        for e in entries:
            if not _is_dir_entry(e) or e.name in SEARCH_SKIP or e.name.startswith("."):
                continue
            child = Path(e.path)
            if e.name.startswith("track_"):
                self.track(child)
            elif e.name == "records":
                self.records_tree(child)  # seen in PRs: records/records/track_*/...
            else:
                self.search(child, 1)

    def search(self, path: Path, depth: int) -> None:
        """Heuristic search outside records/track_*/: stop at the first folder that looks like a
        record (its sub-folders belong to it)."""
        entries = _list_dir(path)
        if entries is None:
            self.add_unreadable(path, "cannot list directory")
            return
        if path.name.startswith("track_"):
            self.track(path)
            return
        if _looks_like_record(entries):
            self.add(path)
            return
        if depth >= MAX_SEARCH_DEPTH:
            return
        for e in entries:
            if _is_dir_entry(e) and e.name not in SEARCH_SKIP and not e.name.startswith("."):
                self.search(Path(e.path), depth + 1)


def _records_ancestor(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.name == "records":
            return p
    return None


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def discover_records(path: Path) -> list[RecordFolder]:
    """Every record folder in ``path`` (a record folder, a track folder, a ``records/`` tree or a
    repository root), sorted by ``rel``. Raises InputError when there is nothing to audit.

    ``rel`` is relative to the repository root when ``path`` lies in or holds a ``records/``
    folder (so it reads ``records/track_x/<folder>``), else to ``path`` (or, for a single record
    folder, to its parent)."""
    path = Path(os.path.abspath(os.path.expanduser(str(path))))
    if not os.path.lexists(path):
        raise InputError(f"path not found: {path}")
    if not path.is_dir():
        raise InputError(f"not a folder: {path} (give a record folder, a records/ tree or a repository)")
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # the user chose this link; links *inside* are never followed
    entries = _list_dir(path)
    if entries is None:
        raise InputError(f"cannot read folder: {path}")

    if path.name.startswith("track_"):
        mode = "track"
    elif path.parent.name.startswith("track_"):
        mode = "single"
    elif path.name == "records":
        mode = "records"
    elif _is_real_dir(path / "records"):
        mode = "repo"
    elif _looks_like_record(entries):
        mode = "single"
    else:
        mode = "search"
    records_dir = _records_ancestor(path)
    if records_dir is not None:
        base = records_dir.parent
    else:
        base = path.parent if mode == "single" else path

    found = _Discovery(base)
    if mode == "track":
        found.track(path)
    elif mode == "single":
        found.add(path)
    elif mode == "records":
        found.records_tree(path)
    elif mode == "repo":
        found.records_tree(path / "records")
    else:
        found.search(path, 0)

    if not found.found:
        raise InputError(
            f"no record folders found in {path}: expected records/track_*/<folder>/ or a folder with "
            "submission.json, train*.py or a train log"
        )
    return [found.found[k] for k in sorted(found.found)]


# ---------------------------------------------------------------------------------------------
# HYG001: required files


def _folder_location(rec: RecordFolder) -> Location:
    names = ", ".join(sorted(_display(f.rel) for f in rec.files if f.top_level)) or "(empty)"
    if len(names) > 300:
        names = names[:297] + "..."
    return Location(file=".", snippet=f"folder holds: {names}", role="folder")


def required_files_findings(rec: RecordFolder) -> list[Finding]:
    """HYG001: README.md, submission.json, a train log and train_gpt.py must be in the folder.

    Record track (and unknown tracks): missing items are errors. Non-record track: missing
    README/JSON/log are warnings, because merged non-record folders lack them (3 have no log, one
    has no JSON) — the README asks for the same files but the organizers did not enforce it.
    """
    out: list[Finding] = []
    if rec.unreadable:
        return out  # HYG009 reports why the folder could not be listed; nothing more to say here
    soft = rec.track == NON_RECORD_TRACK
    missing_sev = Severity.WARNING if soft else Severity.ERROR
    track_note = " (non-record track: merged precedents lack it, so a warning)" if soft else ""
    where = _folder_location(rec)

    readme = rec.readme
    if readme is None:
        out.append(
            finding(
                "HYG001",
                f"README.md is missing{track_note}",
                location=where,
                severity=missing_sev,
                data={"missing": "README.md"},
                origin="metadata",
            )
        )
    elif readme.rel != "README.md":
        out.append(
            finding(
                "HYG001",
                f"README found as {readme.rel!r}; expected exactly 'README.md'",
                location=Location(file=readme.rel),
                severity=Severity.INFO,
                data={"found": readme.rel},
                origin="metadata",
            )
        )

    sub = rec.submission_json
    if sub is None:
        out.append(
            finding(
                "HYG001",
                f"submission.json is missing{track_note}",
                location=where,
                severity=missing_sev,
                data={"missing": "submission.json"},
                origin="metadata",
            )
        )
    elif sub.rel != "submission.json":
        out.append(
            finding(
                "HYG001",
                f"metadata is in {sub.rel!r} instead of submission.json (accepted: "
                "merged records use this form)",
                location=Location(file=sub.rel),
                severity=Severity.INFO,
                data={"found": sub.rel},
                origin="metadata",
            )
        )

    if not rec.logs:
        out.append(
            finding(
                "HYG001",
                f"no train log (*.log or *.txt) in the folder{track_note}",
                location=where,
                severity=missing_sev,
                data={"missing": "train log"},
                origin="metadata",
            )
        )

    train_gpt = rec.entry("train_gpt.py")
    entry = rec.entry_script
    if train_gpt is not None and train_gpt.usable and train_gpt.size == 0:
        out.append(
            finding(
                "HYG001",
                "train_gpt.py is empty (0 bytes): nothing can be run or audited",
                location=Location(file="train_gpt.py"),
                severity=Severity.ERROR,
                data={"size": 0},
                origin="metadata",
            )
        )
    elif train_gpt is None or not train_gpt.usable:
        if entry is not None:
            out.append(
                finding(
                    "HYG001",
                    f"no train_gpt.py; the entry point appears to be {entry.rel!r}",
                    location=Location(file=entry.rel),
                    severity=Severity.WARNING,
                    confidence=Confidence.HEURISTIC,
                    data={"missing": "train_gpt.py", "entry_script": entry.rel},
                    origin="metadata",
                )
            )
        else:
            why = " (train_gpt.py is present but unsafe or unreadable, see HYG009)" if train_gpt else ""
            out.append(
                finding(
                    "HYG001",
                    f"no train_gpt.py and no other train*.py script{why}",
                    location=where,
                    severity=Severity.ERROR,
                    data={"missing": "train_gpt.py"},
                    origin="metadata",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# HYG009: symlinks, special files, unreadable entries, unsafe names


def unsafe_path_findings(rec: RecordFolder) -> list[Finding]:
    """HYG009: anything in the folder that the audit must not or could not read."""
    out: list[Finding] = []
    if rec.is_symlink:
        where = "outside the tree" if rec.symlink_escapes else "elsewhere in the tree"
        out.append(
            finding(
                "HYG009",
                f"the record folder itself is a symlink pointing {where}; not followed",
                location=Location(file="."),
                severity=Severity.ERROR,
                data={"symlink": True, "escapes": rec.symlink_escapes},
                origin="metadata",
            )
        )
        return out
    if rec.unreadable:
        out.append(
            finding(
                "HYG009",
                f"the record folder could not be read: {rec.unreadable}",
                location=Location(file="."),
                severity=Severity.ERROR,
                data={"unreadable": rec.unreadable},
                origin="metadata",
            )
        )
    for f in rec.files:
        shown = _display(f.rel)
        loc = Location(file=shown)
        if f.is_symlink and f.symlink_escapes:
            target = _link_target(f)
            out.append(
                finding(
                    "HYG009",
                    f"{shown} is a symlink leaving the record folder (-> {target}); not read",
                    location=loc,
                    severity=Severity.ERROR,
                    data={"target": target},
                    origin="metadata",
                )
            )
        elif f.is_symlink:
            target = _link_target(f)
            extra = f" ({f.unreadable})" if f.unreadable else ""
            out.append(
                finding(
                    "HYG009",
                    f"{shown} is a symlink inside the folder (-> {target}){extra}; "
                    "a PR diff shows only the link text",
                    location=loc,
                    severity=Severity.WARNING,
                    data={"target": target},
                    origin="metadata",
                )
            )
        elif f.unreadable:
            sev = Severity.ERROR if f.unreadable == "not a regular file" else Severity.WARNING
            out.append(
                finding(
                    "HYG009",
                    f"{shown}: {f.unreadable}; not audited",
                    location=loc,
                    severity=sev,
                    data={"problem": f.unreadable},
                    origin="metadata",
                )
            )
    return out


def _link_target(f: FileEntry) -> str:
    try:
        return _display(os.readlink(f.path)) if f.path else "?"
    except OSError:
        return "?"


def intake_findings(rec: RecordFolder) -> list[Finding]:
    """HYG001 + HYG009 for one folder."""
    return unsafe_path_findings(rec) + required_files_findings(rec)


# ---------------------------------------------------------------------------------------------
# Git intake

# Uncompressed bytes of the tree at ref (the public repo's HEAD tree is 18 MB, PR trees 2-9 MB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_FILES = 50_000
INITIAL_DEPTH = 50  # commits fetched of ref and base before looking for their merge base
MAX_HISTORY = 5_000  # stop deepening after this many commits and compare the trees directly

_GIT_CONFIG = (
    "core.hooksPath=/dev/null",
    "advice.detachedHead=false",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "core.fsmonitor=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.symlinks=true",  # links are checked out as links so HYG009 can see them
)
_URL_SCHEMES = {"file", "https", "http", "ssh", "git"}


def pr_ref(number: int) -> str:
    """The ref GitHub publishes for a pull request's head commit."""
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise InputError(f"bad pull request number {number!r}")
    return f"refs/pull/{number}/head"


def _check_ref(ref: str) -> str:
    """Reject what git itself forbids in ref names, plus a leading '-' (option injection)."""
    bad = (
        not ref
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
        or "@{" in ref
        or any(c in ref for c in " ~^:?*[\\")
        or any(ord(c) < 33 or ord(c) == 127 for c in ref)
    )
    if bad:
        raise InputError(f"bad git ref {ref!r}")
    return ref


def _remote_url(repo: str) -> str:
    if not repo or repo.startswith("-") or any(c in repo for c in "\0\r\n"):
        raise InputError(f"bad git repository {repo!r}")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", repo)
    if m:
        if m.group(1).lower() not in _URL_SCHEMES:
            raise InputError(
                f"unsupported git URL scheme {m.group(1)!r} (use a path, file://, https:// or ssh://)"
            )
        return repo
    if re.match(r"^[\w.-]+@[\w.-]+:[^:]", repo):  # scp-like ssh: git@github.com:owner/repo.git
        return repo
    local = Path(repo).expanduser()
    if not local.exists():
        raise InputError(f"git repository not found: {repo}")
    return local.resolve().as_uri()


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1", LC_ALL="C", LANG="C", GIT_ASKPASS="true")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_NAMESPACE"):
        env.pop(var, None)  # a caller's git environment must not redirect our commands
    return env


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class _Git:
    """Runs git on one private repository: a timeout on every call, and an optional bound on the
    bytes that a fetch may write."""

    def __init__(self, git_dir: Path, timeout_s: float, repo_label: str):
        exe = shutil.which("git")
        if exe is None:
            raise InputError("git is not installed (needed for --repo/--pr audits)")
        self.exe = exe
        self.git_dir = git_dir
        self.timeout_s = timeout_s
        self.repo_label = repo_label
        self.env = _git_env()

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        work_tree: Path | None = None,
        max_fetch_bytes: int | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [self.exe]
        for item in _GIT_CONFIG:
            cmd += ["-c", item]
        cmd += ["--git-dir", str(self.git_dir)]
        if work_tree is not None:
            cmd += ["--work-tree", str(work_tree)]
        cmd += list(args)
        try:
            # A session of its own, so that a timeout kills git's children (upload-pack, index-pack) too.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            raise InputError(f"cannot run git: {exc}") from None
        deadline = time.monotonic() + self.timeout_s
        objects = self.git_dir / "objects"
        while True:
            try:
                out, err = proc.communicate(timeout=0.25 if max_fetch_bytes else self.timeout_s)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self._kill(proc)
                    raise InputError(
                        f"git {args[0]} timed out after {self.timeout_s:g} s ({self.repo_label})"
                    ) from None
                if max_fetch_bytes and _dir_bytes(objects) > max_fetch_bytes:
                    self._kill(proc)
                    raise InputError(self._too_big(max_fetch_bytes)) from None
        if max_fetch_bytes and _dir_bytes(objects) > max_fetch_bytes:
            raise InputError(self._too_big(max_fetch_bytes))
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def _too_big(self, limit: int) -> str:
        return (
            f"git download from {self.repo_label} exceeds {limit:,} bytes; refusing "
            "(raise the size limit if this repository is expected to be that large)"
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()

    def tree_size(self, commit: str, ref: str, max_files: int, max_bytes: int) -> int:
        """Total blob bytes of the tree at ``commit``, streamed from ``git ls-tree``; InputError as
        soon as the entry count or the bytes pass their limits (git is killed there)."""
        cmd = [self.exe, *(a for item in _GIT_CONFIG for a in ("-c", item)), "--git-dir", str(self.git_dir),
               "ls-tree", "-r", "-l", "-z", "--full-tree", commit]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, env=self.env, start_new_session=True)
        except OSError as exc:
            raise InputError(f"cannot run git: {exc}") from None
        count = total = 0
        rest = b""
        deadline = time.monotonic() + self.timeout_s
        try:
            while chunk := proc.stdout.read(1 << 16):
                entries = (rest + chunk).split(b"\0")
                rest = entries.pop()
                for e in entries:
                    count += 1
                    size = e.split(b"\t", 1)[0].split()[-1]
                    total += int(size) if size.isdigit() else 0
                if count > max_files:
                    raise InputError(f"the tree at {ref!r} has more than {max_files:,} files (the limit); "
                                     "refusing to check it out")
                if total > max_bytes:
                    raise InputError(f"the tree at {ref!r} holds more than {max_bytes:,} bytes (the limit); "
                                     "refusing to check it out (raise the size limit if expected)")
                if time.monotonic() > deadline:
                    raise InputError(f"git ls-tree timed out after {self.timeout_s:g} s ({self.repo_label})")
        finally:
            if proc.poll() is None:
                self._kill(proc)
            else:
                proc.wait()
        if proc.returncode != 0:
            raise InputError(f"git ls-tree failed on {ref!r}")
        return total

    def ok(self, *args: str, **kw) -> str:
        res = self.run(*args, **kw)
        if res.returncode != 0:
            raise InputError(f"git {args[0]} failed: {_last_line(res.stderr)}")
        return os.fsdecode(res.stdout)


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in os.fsdecode(stderr).splitlines() if ln.strip()]
    # git's final "Please make sure you have the correct access rights" is less useful than the fatal line
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["(no message)"])[0]


_NOT_FOUND = (
    "couldn't find remote ref",
    "no such remote ref",
    "not our ref",
    "unadvertised object",
    "invalid refspec",
    "is not a valid ref",
)


@dataclass
class GitCheckout:
    repo: str
    ref: str
    base: str | None
    path: Path  # the tree at ref, checked out (no .git inside)
    commit: str
    base_commit: str | None = None  # the commit the PR is compared with (the merge base when found)
    base_tip: str | None = None
    merge_base_found: bool = False
    added_records: list[str] = field(default_factory=list)
    touched_records: list[str] = field(default_factory=list)  # existing record folders the PR changes
    changed_files: list[str] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)  # (git status letter, path)
    outside_changes: list[str] = field(default_factory=list)
    records: list[RecordFolder] = field(default_factory=list)  # the folders to audit
    tree_bytes: int = 0
    depth_fetched: int | None = None  # commits of history fetched per ref (None: full depth not tracked)
    notes: list[str] = field(default_factory=list)
    tmpdir: Path | None = None

    def cleanup(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def pr_scope(self) -> PRScope:
        return PRScope(
            repo=self.repo,
            ref=self.ref,
            base=self.base,
            commit=self.commit,
            added_records=[_display(p) for p in self.added_records],
            outside_changes=[_display(p) for p in self.outside_changes],
        )

    def scope_findings(self) -> list[Finding]:
        """HYG002: a submission PR adds exactly one new folder under records/track_*/ and nothing else.

        Without a base there is no diff, so nothing is said about scope."""
        if self.base is None:
            return []
        out: list[Finding] = []
        # Without a merge base the comparison includes whatever the base gained since the fork.
        sev = Severity.ERROR if self.merge_base_found else Severity.WARNING
        conf = Confidence.PROOF if self.merge_base_found else Confidence.HEURISTIC
        caveat = "" if self.merge_base_found else " (compared with the base tip: no merge base found)"
        if not self.merge_base_found:
            out.append(
                finding(
                    "HYG002",
                    f"no merge base of {self.ref!r} and {self.base!r} within the fetched "
                    "history; compared the trees directly, so changes made on the base since "
                    "the fork may show up as PR changes",
                    severity=Severity.INFO,
                    data={"base_tip": self.base_tip},
                    origin="metadata",
                )
            )
        new_track_folders = [r for r in self.added_records if _is_track_record(r)]
        if not new_track_folders:
            out.append(
                finding(
                    "HYG002",
                    "the PR adds no new record folder under records/track_*/"
                    + ("" if self.changed_files else " (it changes nothing relative to the base)")
                    + caveat,
                    severity=sev,
                    confidence=conf,
                    data={"changed_files": len(self.changed_files)},
                    origin="metadata",
                )
            )
        elif len(new_track_folders) > 1:
            out.append(
                finding(
                    "HYG002",
                    f"the PR adds {len(new_track_folders)} record folders; a submission "
                    "PR adds exactly one" + caveat,
                    location=Location(file=_display(new_track_folders[1]) + "/"),
                    severity=sev,
                    confidence=conf,
                    data={"folders": [_display(p) for p in new_track_folders]},
                    origin="metadata",
                )
            )
        for folder in new_track_folders:
            track = folder.split("/")[1]
            if track not in OFFICIAL_TRACKS:
                out.append(
                    finding(
                        "HYG002",
                        f"{_display(folder)}/ is under {track!r}, not one of the official tracks "
                        f"{', '.join(OFFICIAL_TRACKS)}",
                        location=Location(file=_display(folder) + "/"),
                        severity=Severity.WARNING,
                        data={"track": track},
                        origin="metadata",
                    )
                )
        status = {p: s for s, p in self.changes}
        for folder in self.touched_records:
            files = [p for p in self.changed_files if p == folder or p.startswith(folder + "/")]
            out.append(
                finding(
                    "HYG002",
                    f"the PR changes the existing record {_display(folder)}/ ({_summarize(files, status, folder)})"
                    + caveat,
                    location=Location(file=_display(files[0] if files else folder)),
                    severity=sev,
                    confidence=conf,
                    data={"folder": _display(folder), "files": [_display(p) for p in files]},
                    origin="metadata",
                )
            )
        in_touched = {
            p for p in self.changed_files for t in self.touched_records if p == t or p.startswith(t + "/")
        }
        other = [p for p in self.outside_changes if not p.endswith("/") and p not in in_touched]
        if other:
            out.append(
                finding(
                    "HYG002",
                    f"the PR changes files outside its record folder: {_summarize(other, status)}" + caveat,
                    location=Location(file=_display(other[0])),
                    severity=sev,
                    confidence=conf,
                    data={"files": [_display(p) for p in other]},
                    origin="metadata",
                )
            )
        return out


def _summarize(paths: list[str], status: dict[str, str], folder: str = "", limit: int = 5) -> str:
    """``a.py (modified), b.log (added) and 3 more``; paths shown relative to ``folder``."""
    verbs = {"A": "added", "M": "modified", "D": "deleted", "T": "type changed"}
    cut = len(folder) + 1 if folder else 0
    shown = [f"{_display(p[cut:])} ({verbs.get(status.get(p, ''), 'changed')})" for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(shown) + more


def _is_track_record(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) == 3 and parts[0] == "records" and parts[1].startswith("track_")


def _track_folder(path: str) -> str | None:
    """``records/track_x/<folder>`` for a file inside a track's record folder, else None."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[0] == "records" and parts[1].startswith("track_"):
        return "/".join(parts[:3])
    return None


def _fetch(git: _Git, url: str, ref: str, local: str, depth: int, max_fetch_bytes: int) -> str:
    """Fetch one ref shallowly into ``local``; returns the commit SHA."""
    res = git.run(
        "fetch",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        "--quiet",
        f"--depth={depth}",
        url,
        f"+{ref}:{local}",
        max_fetch_bytes=max_fetch_bytes,
    )
    if res.returncode != 0:
        msg = _last_line(res.stderr)
        if any(s in msg.lower() for s in _NOT_FOUND):
            raise InputError(f"git ref {ref!r} not found in {git.repo_label}")
        raise InputError(f"cannot fetch from git repository {git.repo_label}: {msg}")
    sha = git.run("rev-parse", "--verify", "--quiet", f"{local}^{{commit}}")
    if sha.returncode != 0:
        raise InputError(f"git ref {ref!r} in {git.repo_label} does not name a commit")
    return os.fsdecode(sha.stdout).strip()


def _local_git(repo: str, args: list[str], timeout_s: float) -> str | None:
    """The output of a read-only git command run in a local source repository (its .git, or the
    bare repository itself); None when ``repo`` is not local or the command fails."""
    local = Path(repo).expanduser()
    if not local.exists():
        return None
    git_dir = local / ".git" if (local / ".git").exists() else local
    try:
        res = subprocess.run(
            [shutil.which("git") or "git", "--git-dir", str(git_dir), *args],
            capture_output=True,
            check=False,
            timeout=timeout_s,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = os.fsdecode(res.stdout).strip()
    return out if res.returncode == 0 and out else None


def _local_merge_base(repo: str, commit: str, base: str, timeout_s: float) -> tuple[str, str] | None:
    """(base tip, merge base of ``commit`` and ``base``) computed in a local source repository."""
    tip = _local_git(repo, ["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"], timeout_s)
    merge_base = _local_git(repo, ["merge-base", commit, base], timeout_s)
    if not all(sha and re.fullmatch(r"[0-9a-f]{40}", sha) for sha in (tip, merge_base)):
        return None
    return tip, merge_base


def _expand_short_sha(repo: str, ref: str, timeout_s: float) -> str | None:
    """A short SHA cannot be fetched by name; in a local repository it can be resolved first."""
    if not re.fullmatch(r"[0-9a-fA-F]{7,39}", ref):
        return None
    return _local_git(repo, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], timeout_s)


def checkout_git(
    repo: str,
    ref: str,
    base: str | None,
    workdir: Path,
    *,
    timeout_s: float = 120,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    initial_depth: int = INITIAL_DEPTH,
    max_history: int = MAX_HISTORY,
) -> GitCheckout:
    """Check out ``ref`` of ``repo`` into a temp folder under ``workdir`` and, with ``base``, find
    what the PR changes relative to the merge base of ``base`` and ``ref``.

    Only the needed history is fetched (depth 1 without base; with base, ``initial_depth`` commits,
    then deepened by doubling up to ``max_history`` until a merge base appears). The tree at ref
    is refused when its blobs exceed ``max_bytes`` (or ``max_files`` entries); the download is
    refused when it exceeds twice that. The caller owns the result: call ``cleanup()``.
    """
    url = _remote_url(repo)
    _check_ref(ref)
    if base is not None:
        _check_ref(base)
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="pgolf-git-", dir=workdir))
    except OSError as exc:
        raise InputError(f"cannot create a work folder in {workdir}: {exc.strerror}") from None
    try:
        return _checkout(
            repo,
            url,
            ref,
            base,
            tmp,
            timeout_s=timeout_s,
            max_bytes=max_bytes,
            max_files=max_files,
            initial_depth=max(1, initial_depth),
            max_history=max(1, max_history),
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _checkout(
    repo: str,
    url: str,
    ref: str,
    base: str | None,
    tmp: Path,
    *,
    timeout_s: float,
    max_bytes: int,
    max_files: int,
    initial_depth: int,
    max_history: int,
) -> GitCheckout:
    git_dir, tree = tmp / "git", tmp / "tree"
    git = _Git(git_dir, timeout_s, repo)
    git.ok("init", "--bare", "--quiet", str(git_dir))
    fetch_limit = 2 * max_bytes
    depth = 1 if base is None else initial_depth

    def fetch(name: str, local: str) -> str:
        try:
            return _fetch(git, url, name, local, depth, fetch_limit)
        except InputError as exc:
            full = _expand_short_sha(repo, name, timeout_s) if "not found" in str(exc) else None
            if full is None:
                raise
            return _fetch(git, url, full, local, depth, fetch_limit)

    commit = fetch(ref, "refs/pgolf/head")
    co = GitCheckout(repo=repo, ref=ref, base=base, path=tree, commit=commit, tmpdir=tmp, depth_fetched=depth)

    if base is not None:
        try:
            co.base_tip = fetch(base, "refs/pgolf/base")
            co.base_commit, co.merge_base_found = _merge_base(git, url, co, depth, max_history, fetch_limit)
        except InputError as exc:
            # A server can fail to pack a shallow history it cannot serve (missing objects in a
            # partial mirror, "git-pack-objects died"). In a local repository the merge base is
            # computed where the history is, and only that one commit is fetched.
            local = _local_merge_base(repo, commit, base, timeout_s)
            if local is None or "not found" in str(exc):
                raise
            co.base_tip, co.base_commit = local
            _fetch(git, url, co.base_commit, "refs/pgolf/base", 1, fetch_limit)
            co.merge_base_found = True
            co.notes.append(f"the history of {base!r} could not be fetched ({exc}); its merge base "
                            f"{co.base_commit[:12]} was computed in the source repository")

    # Size bound before anything is written to disk: the tree at ref, counted as git lists it (a
    # tree of 10^8 entries is refused at the first entry over the limit, never held in memory).
    co.tree_bytes = git.tree_size(commit, ref, max_files, max_bytes)

    tree.mkdir()
    index_env = {"GIT_INDEX_FILE": str(tmp / "index")}
    git.ok("read-tree", commit, env=index_env, work_tree=tree)
    git.ok("checkout-index", "--all", "--force", env=index_env, work_tree=tree)

    if base is None:
        co.records = discover_records(tree)  # raises InputError when the ref holds no record folder
        co.added_records = [r.rel for r in co.records]
        return co

    at_base = _paths_at(git, co.base_commit)
    _classify_changes(git, co, at_base)
    try:
        found = discover_records(tree)
    except InputError:
        found = []
    # Also audit new folders found outside records/track_*/ (e.g. records/phase3/x): HYG002 flags
    # their location, but their content still deserves the audit.
    # The repository root is never the folder a PR adds (it exists at the base by definition).
    co.records = [r for r in found if r.rel not in at_base and r.root.resolve() != tree.resolve()]
    co.added_records = sorted(set(co.added_records) | {r.rel for r in co.records})
    if co.merge_base_found:
        # The PR's first commit dates the submission: the frontier it had to beat is the one merged
        # before it (author dates survive rebases, so this is never later than the PR's opening).
        res = git.run("log", "--format=%aI", f"{co.base_commit}..{co.commit}")
        stamps = os.fsdecode(res.stdout).split() if res.returncode == 0 else []
        first = min(stamps, key=lambda t: datetime.fromisoformat(t).astimezone(UTC), default=None)
        for rec in co.records:
            rec.opened = first
    return co


def _merge_base(
    git: _Git, url: str, co: GitCheckout, depth: int, max_history: int, fetch_limit: int
) -> tuple[str, bool]:
    """Deepen both shallow histories until they meet; fall back to the base tip."""
    step = depth
    while True:
        res = git.run("merge-base", co.commit, co.base_tip)
        if res.returncode == 0:
            return os.fsdecode(res.stdout).split()[0], True
        shallow = git.ok("rev-parse", "--is-shallow-repository").strip() == "true"
        if not shallow or co.depth_fetched >= max_history:
            break
        step = min(step * 2, max_history - co.depth_fetched)
        res = git.run(
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--quiet",
            f"--deepen={step}",
            url,
            f"+{co.commit}:refs/pgolf/head",
            f"+{co.base_tip}:refs/pgolf/base",
            max_fetch_bytes=fetch_limit,
        )
        if res.returncode != 0:
            co.notes.append(f"deepening the history failed: {_last_line(res.stderr)}")
            break
        co.depth_fetched += step
    shallow = git.ok("rev-parse", "--is-shallow-repository").strip() == "true"
    reason = f"none within {co.depth_fetched} commits" if shallow else "unrelated histories"
    co.notes.append(f"no merge base of {co.ref} and {co.base} ({reason}); compared with the base tip")
    return co.base_tip, False


def _paths_at(git: _Git, commit: str) -> set[str]:
    """Every file and folder path in the tree of ``commit``."""
    listing = git.ok("ls-tree", "-r", "-t", "-z", "--name-only", "--full-tree", commit)
    return {p for p in listing.split("\0") if p}


def _classify_changes(git: _Git, co: GitCheckout, at_base: set[str]) -> None:
    raw = git.run("diff-tree", "-r", "-z", "--no-renames", "--name-status", co.base_commit, co.commit)
    if raw.returncode != 0:
        raise InputError(f"git diff-tree failed: {_last_line(raw.stderr)}")
    fields = os.fsdecode(raw.stdout).split("\0")
    changes = [(fields[i][:1], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]
    co.changes = sorted(changes, key=lambda c: c[1])
    co.changed_files = [p for _s, p in co.changes]

    new_folders: dict[str, list[str]] = {}
    touched: set[str] = set()
    outside: list[str] = []
    for _status, p in co.changes:
        folder = _track_folder(p)
        if folder is None:
            outside.append(p)
        elif folder not in at_base:
            new_folders.setdefault(folder, []).append(p)
        else:
            touched.add(folder)
            outside.append(p)
    co.added_records = sorted(new_folders)
    co.touched_records = sorted(touched)
    if len(new_folders) > 1:
        # No single folder is "the" submission: every new folder is reported, as "<folder>/".
        outside += [f + "/" for f in sorted(new_folders)]
    co.outside_changes = sorted(outside)
