"""Static, exec-free unwrapping of self-extracting submission scripts.

Many record folders ship a `train_gpt.py` that is only a few lines long:

    import lzma as L,base64 as B
    exec(L.decompress(B.b85decode("..."),format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))

The code that really runs is inside the literal. This module recovers it **without running
anything** from the submission, so the rest of the audit can read it like any other source.

How, top to bottom:

1. bounded decoders (``_decompress``): every decompressor is incremental with an output cap, so a
   decompression bomb is detected after at most ``max_layer_bytes`` of output, never allocated;
2. a tiny abstract interpreter (``_Interpreter``) that finds every ``exec``/``eval``/
   ``runpy.run_path`` call and evaluates its argument using only literals, names bound to
   literals, and a whitelist of pure functions (base85/64/a85/hex, lzma/zlib/gzip/bz2/brotli,
   ``.decode()``, ``"".join``, ``compile``, ``json.loads``, path arithmetic on ``__file__``,
   reading a file *inside* the submission folder, or one the wrapper itself writes);
3. when that fails, the literal scan of records-format.md §4.3 (every long literal: base85 then
   base64, then xz, raw LZMA2, zlib, gzip, bz2, brotli);
4. each decoded payload is parsed (``parse_python``) and unwrapped again, up to ``max_depth``.

Routes reported on each decoded ``SourceFile``: ``exec-arg`` (2.), ``indirection``
(``exec(open(<sibling>).read())``), ``bundle`` (a file the wrapper writes, then runs),
``literal-scan`` (3.).

Findings: HYG005 (a wrapper that cannot be decoded without running it, or a payload that is not
Python), HYG006 (decompression bomb / over a size bound), HYG007 (environment overrides or files
written by a wrapper before it runs its payload).
"""

from __future__ import annotations

import ast
import base64
import binascii
import bz2
import hashlib
import io
import json
import lzma
import operator
import posixpath
import re
import tokenize
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from auditor.budget import check as check_budget
from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, Severity
from auditor.pysource import ParsedSource, parse_python

try:  # brotli is a declared dependency; without it brotli payloads are reported, not decoded
    import brotli
except ImportError:  # pragma: no cover - exercised only in a broken install
    brotli = None

MiB = 1 << 20


@dataclass(frozen=True)
class UnwrapLimits:
    max_depth: int = 4  # wrapper layers followed below the shipped file
    max_layer_bytes: int = 16 * MiB  # decoded size of one payload
    max_total_bytes: int = 16 * MiB  # decoded size of all payloads of one unwrap call
    max_file_bytes: int = 64 * MiB  # a shipped file (or a sibling it reads) larger than this is not read
    # A Python text larger than this is not parsed: the parse and the dataflow analysis cost minutes
    # and gigabytes on tens of MB (real decoded scripts are under 500 KB). HYG010 says so.
    max_parse_bytes: int = 4 * MiB
    min_literal_chars: int = 200  # the literal scan only tries literals at least this long
    lzma_memlimit: int = 256 * MiB  # decoder memory for one xz/lzma stream
    max_eval_steps: int = 200_000  # abstract-interpreter steps per layer


@dataclass
class SourceFile:
    """One Python text of the submission: a shipped file or a payload decoded from one."""

    path: str  # shipped file, relative to the folder (a payload keeps its wrapper's path)
    text: str
    chain: list[str] = field(default_factory=list)  # decode steps, e.g. ["b85", "lzma-raw"]
    wrapper: str | None = None  # "train_gpt.py: b85 → lzma(raw LZMA2)"; None for a plain file
    shipped_bytes: int = 0  # size of the shipped file this text came from
    decoded_bytes: int = 0
    tree: ast.Module | None = None
    parse_error: str | None = None
    is_entry: bool = False  # the entry script, or code it resolves to
    origin_line: int | None = None  # line of the payload literal (or exec) in the parent text
    depth: int = 0  # 0 for a shipped file
    route: str | None = None  # None | exec-arg | indirection | bundle | literal-scan
    label: str | None = None  # compile() file name or bundle member name of a payload
    via: str | None = None  # "train_gpt.py:1" — the exec that reached this text
    used_fallback: bool = False  # needed the 3.12-syntax parser fallback
    shipped_line: int | None = None  # for a payload: the line of the shipped file that holds it

    def location(self, line: int | None, *, snippet: str | None = None) -> Location:
        if snippet is None and line:
            snippet = _snippet(self.text, line)
        return Location(file=self.path, line=line, snippet=snippet, wrapper=self.wrapper,
                        wrapper_line=self.shipped_line if self.wrapper else None)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts for ``RecordAudit.sources``."""
        return {
            "file": self.path,
            "chain": self.chain,
            "wrapper": self.wrapper,
            "route": self.route,
            "label": self.label,
            "via": self.via,
            "depth": self.depth,
            "is_entry": self.is_entry,
            "shipped_bytes": self.shipped_bytes,
            "decoded_bytes": self.decoded_bytes,
            "parse_error": self.parse_error,
        }


@dataclass
class UnwrapResult:
    sources: list[SourceFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def unwrap_file(
    path: Path, folder: Path, limits: UnwrapLimits = UnwrapLimits(), *, is_entry: bool = True
) -> UnwrapResult:
    """The file itself plus every Python layer decoded from it (never executes anything)."""
    unwrapper = _Unwrapper(Path(folder), limits)
    unwrapper.add_shipped(Path(path), is_entry=is_entry)
    return unwrapper.result


def unwrap_folder(
    folder: Path,
    scripts: list[Path],
    limits: UnwrapLimits = UnwrapLimits(),
    *,
    entry: Path | str | None = None,
) -> UnwrapResult:
    """All ``scripts`` of a record folder. ``entry`` defaults to ``train_gpt.py`` when present.
    A sibling that the entry reaches by indirection is reported once, as part of the entry."""
    folder = Path(folder)
    unwrapper = _Unwrapper(folder, limits)
    rels = [unwrapper.relative(Path(s)) for s in scripts]
    entry_rel = unwrapper.relative(Path(entry)) if entry is not None else _default_entry(rels)
    ordered = sorted(rels, key=lambda rel: rel != entry_rel)  # entry first: it claims its targets
    for rel in ordered:
        if rel is None or rel in unwrapper.reached:
            continue
        unwrapper.add_shipped(folder / rel, is_entry=rel == entry_rel)
    return unwrapper.result


def _default_entry(rels: list[str | None]) -> str | None:
    if "train_gpt.py" in rels:
        return "train_gpt.py"
    trains = [r for r in rels if r and "/" not in r and r.startswith("train")]
    return trains[0] if len(trains) == 1 else None


# ================================================================================================
# 1. Bounded decoders. Each returns bytes or raises _OverBound / _DecodeFailed.


class _OverBound(Exception):
    """Output would exceed the size bound (decompression bomb or oversized payload)."""


class _DecodeFailed(Exception):
    """Bad data for this decoder."""


XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

STEP_NAMES = {  # chain step -> human text in SourceFile.wrapper
    "b85": "b85",
    "b64": "b64",
    "a85": "a85",
    "b32": "b32",
    "hex": "hex",
    "xz": "lzma(xz)",
    "lzma-alone": "lzma(alone)",
    "lzma-raw": "lzma(raw LZMA2)",
    "lzma1-raw": "lzma(raw LZMA1)",
    "zlib": "zlib",
    "deflate-raw": "zlib(raw deflate)",
    "gzip": "gzip",
    "bz2": "bz2",
    "brotli": "brotli",
    "json": "json",
    "exec": "exec",
}


def _decompress(method: str, data: bytes, limit: int, *, lzma_memlimit: int = 256 * MiB, **opts) -> bytes:
    """Decompress at most ``limit`` bytes; raise _OverBound beyond it."""
    if method == "lzma":
        return _lzma(data, limit, lzma_memlimit, opts.get("format", lzma.FORMAT_AUTO), opts.get("filters"))
    if method == "zlib":
        return _zlib(data, limit, opts.get("wbits", zlib.MAX_WBITS))
    if method == "gzip":
        return _zlib(data, limit, 31, members=True)
    if method == "bz2":
        return _bz2(data, limit)
    if method == "brotli":
        return _brotli(data, limit)
    raise _DecodeFailed(f"unknown method {method}")


def _lzma(data: bytes, limit: int, memlimit: int, fmt: int, filters) -> bytes:
    out = bytearray()
    while True:
        try:
            if fmt == lzma.FORMAT_RAW:
                for f in filters or ():
                    if int(f.get("dict_size", 0)) > memlimit:
                        raise _OverBound(f"LZMA dictionary of {f['dict_size']} bytes")
                dec = lzma.LZMADecompressor(format=fmt, filters=filters)
            else:
                dec = lzma.LZMADecompressor(format=fmt, memlimit=memlimit)
            out += dec.decompress(data, max_length=limit - len(out) + 1)
        except lzma.LZMAError as err:
            if "memory" in str(err).lower():
                raise _OverBound(f"LZMA stream needs more than {memlimit} bytes of memory") from None
            raise _DecodeFailed(f"lzma: {err}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as err:  # bad format/filters
            raise _DecodeFailed(f"lzma: {err}") from None
        if len(out) > limit:
            raise _OverBound(f"more than {limit} bytes")
        if not dec.eof:
            raise _DecodeFailed("lzma: truncated stream")
        data = dec.unused_data
        # lzma.decompress reads concatenated xz/alone streams; trailing garbage is an error there
        if fmt == lzma.FORMAT_RAW or not data.strip(b"\0"):
            return bytes(out)


def _zlib(data: bytes, limit: int, wbits: int, *, members: bool = False) -> bytes:
    out = bytearray()
    while True:
        try:
            dec = zlib.decompressobj(wbits)
            out += dec.decompress(data, limit - len(out) + 1)
        except (zlib.error, ValueError) as err:
            raise _DecodeFailed(f"zlib: {err}") from None
        if len(out) > limit:
            raise _OverBound(f"more than {limit} bytes")
        if not dec.eof:
            raise _DecodeFailed("zlib: truncated stream")
        data = dec.unused_data
        if not members or not data.strip(b"\0"):
            return bytes(out)


def _bz2(data: bytes, limit: int) -> bytes:
    out = bytearray()
    while True:
        try:
            dec = bz2.BZ2Decompressor()
            out += dec.decompress(data, max_length=limit - len(out) + 1)
        except (OSError, ValueError) as err:
            raise _DecodeFailed(f"bz2: {err}") from None
        if len(out) > limit:
            raise _OverBound(f"more than {limit} bytes")
        if not dec.eof:
            raise _DecodeFailed("bz2: truncated stream")
        data = dec.unused_data
        if not data:
            return bytes(out)


def _brotli(data: bytes, limit: int) -> bytes:
    if brotli is None:
        raise _DecodeFailed("brotli is not installed")
    dec = brotli.Decompressor()
    try:
        out = bytearray(dec.process(data, output_buffer_limit=limit + 1))
        while len(out) <= limit and not dec.is_finished() and not dec.can_accept_more_data():
            more = dec.process(b"", output_buffer_limit=limit + 1 - len(out))
            if not more:
                break
            out += more
    except TypeError:  # brotli < 1.2 has no output limit: refuse rather than risk a bomb
        raise _DecodeFailed("brotli >= 1.2 is needed to decode with a size bound") from None
    except brotli.error as err:
        raise _DecodeFailed(f"brotli: {err}") from None
    if len(out) > limit:
        raise _OverBound(f"more than {limit} bytes")
    if not dec.is_finished():
        raise _DecodeFailed("brotli: truncated stream")
    return bytes(out)


def _lzma_step_name(data: bytes, fmt: int, filters) -> str:
    if fmt == lzma.FORMAT_RAW:
        ids = [f.get("id") for f in filters or () if isinstance(f, dict)]
        return "lzma1-raw" if lzma.FILTER_LZMA1 in ids else "lzma-raw"
    if fmt == lzma.FORMAT_XZ or (fmt == lzma.FORMAT_AUTO and data.startswith(XZ_MAGIC)):
        return "xz"
    return "lzma-alone"


# Text-to-bytes codecs: output is never larger than the input, so the stdlib functions are safe.
def _b64(data, altchars=None, validate=False):
    return base64.b64decode(data, altchars, validate)


def _hex(data):
    if isinstance(data, bytes):
        data = data.decode("ascii")
    return bytes.fromhex(data)


# ================================================================================================
# 2. Values of the abstract interpreter.

# __file__, the current directory and temp dirs are symbolic paths under these roots; reading a
# path maps it back into the submission folder (or onto a file the wrapper itself wrote).
SUBMISSION_ROOT = "/__pgolf_submission__"
TEMP_ROOT = "/__pgolf_tmp__"


@dataclass(frozen=True)
class _Data:
    """A str/bytes value with its provenance."""

    value: str | bytes
    steps: tuple[str, ...] = ()  # decode steps applied so far
    line: int | None = None  # line of the first literal it came from
    file: str | None = None  # folder-relative file it was read from
    member: str | None = None  # name of the wrapper-written file it was read back from

    def derive(self, value: str | bytes, step: str | None = None) -> _Data:
        steps = self.steps + (step,) if step else self.steps
        return _Data(value, steps, self.line, self.file, self.member)


@dataclass(frozen=True)
class _Qualified:
    """A module, or a function/constant inside one: "lzma", "lzma.decompress", "builtins.open"."""

    name: str


@dataclass(frozen=True)
class _Handle:
    path: str
    mode: str


@dataclass(frozen=True)
class _Code:
    """What compile() returns: the source and the file name it was given."""

    source: _Data
    filename: str | None


@dataclass(frozen=True)
class _BoundMethod:
    """`value.name`, waiting for its call: "".join, data.decode, path.read_text, ..."""

    value: Any
    name: str


@dataclass(frozen=True)
class _Decompressor:
    """lzma.LZMADecompressor(...) / zlib.decompressobj(...): .decompress(data) is `function`."""

    function: str
    options: dict


@dataclass
class _Thunk:
    """A not-yet-evaluated expression (a call-site argument bound to a parameter)."""

    node: ast.expr
    scope: _Scope
    pos: tuple[int, int]
    env: dict[str, Any]


class _Unresolved(Exception):
    """The value depends on something we do not evaluate (env, network, unknown function...)."""


class _NeedsParam(Exception):
    def __init__(self, name: str, scope: _Scope):
        super().__init__(name)
        self.name, self.scope = name, scope


BUILTIN_NAMES = {
    "open",
    "bytes",
    "str",
    "compile",
    "exec",
    "eval",
    "len",
    "getattr",
    "__import__",
    "list",
    "tuple",
    "zip",
}

ENV_WRITE_METHODS = {"update", "setdefault", "__setitem__", "putenv"}


# ================================================================================================
# 3. Scopes: where each name is bound, in source order.


@dataclass
class _Binding:
    pos: tuple[int, int]
    kind: str  # value | import | loop | def | unknown
    value: Any = None  # ast.expr for "value", qualified name for "import"


@dataclass
class _Scope:
    node: ast.AST
    parent: _Scope | None
    params: list[str] = field(default_factory=list)
    bindings: dict[str, list[_Binding]] = field(default_factory=dict)
    star_imports: list[str] = field(default_factory=list)

    def bind(self, name: str, binding: _Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)


@dataclass
class _Site:
    call: ast.Call
    scope: _Scope
    module_level: bool


@dataclass
class _Write:
    call: ast.Call  # X.write(V) / Path(P).write_text(V)
    scope: _Scope
    loops: list[ast.For]
    module_level: bool


def _pos(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


# Text hints that a layer may contain an exec-like call (building scopes costs a full tree walk).
OTHER_SINK_WORDS = ("run_path", "builtins", "__import__")
CALL_CAN_FOLLOW = (
    "return",
    "not",
    "and",
    "or",
    "in",
    "else",
    "if",
    "await",
    "yield",
    "assert",
    "lambda",
    "is",
)


def _may_have_sink(text: str) -> bool:
    """exec(/eval( where a call can start (so prose like "window eval (" does not count)."""
    if any(word in text for word in OTHER_SINK_WORDS):
        return True
    for word in ("exec", "eval"):
        start = text.find(word)
        while start >= 0:
            after = text[start + 4 : start + 12].lstrip(" \t")
            before = text[max(0, start - 16) : start].rsplit("\n", 1)[-1].rstrip()
            if after.startswith("(") and (
                not before
                or not (before[-1].isalnum() or before[-1] in "_.")
                or before.endswith(CALL_CAN_FOLLOW)
            ):
                return True
            start = text.find(word, start + 4)
    return False


class _Collector:
    """One pass over a layer: scopes and bindings, exec sites, file writes, env writes, calls."""

    def __init__(self, tree: ast.Module):
        self.module = _Scope(tree, None)
        self.sites: list[_Site] = []
        self.writes: list[_Write] = []
        self.env_writes: list[tuple[ast.AST, _Scope, bool]] = []  # (node, scope, module_level)
        self.calls: dict[str, list[tuple[ast.Call, _Scope]]] = {}  # function name -> call sites
        self._body(tree.body, self.module, [], True)

    def _body(self, stmts: list[ast.stmt], scope: _Scope, loops: list[ast.For], top: bool) -> None:
        for stmt in stmts:
            self._stmt(stmt, scope, loops, top)

    def _stmt(self, stmt: ast.stmt, scope: _Scope, loops: list[ast.For], top: bool) -> None:
        pos = _pos(stmt)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope.bind(stmt.name, _Binding(pos, "def"))
            inner = _Scope(stmt, scope, params=_param_names(stmt.args))
            for expr in [*stmt.decorator_list, *stmt.args.defaults, *stmt.args.kw_defaults]:
                if expr is not None:
                    self._expr(expr, scope, loops, top)
            self._body(stmt.body, inner, [], False)
            return
        if isinstance(stmt, ast.ClassDef):
            scope.bind(stmt.name, _Binding(pos, "def"))
            self._body(stmt.body, scope, loops, False)  # class bodies run at definition time
            return
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                self._bind_target(target, stmt.value, pos, scope)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._bind_target(stmt.target, stmt.value, pos, scope)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            # s += x  ==  s = s + x, evaluated with the bindings before this line
            left = ast.Name(id=stmt.target.id, ctx=ast.Load(), lineno=pos[0], col_offset=pos[1])
            value = ast.BinOp(left=left, op=stmt.op, right=stmt.value, lineno=pos[0], col_offset=pos[1])
            scope.bind(stmt.target.id, _Binding(pos, "value", value))
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            for name in _target_names(stmt.target):
                scope.bind(name, _Binding(pos, "loop", stmt))
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    self._bind_target(item.optional_vars, item.context_expr, pos, scope)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self._bind_import(stmt, pos, scope)
        if isinstance(stmt, (ast.Assign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Subscript) for t in targets):
                self.env_writes.append((stmt, scope, top))  # maybe os.environ[k] = v; checked later
        # Expressions of this statement, then nested statement bodies.
        inner_loops = [*loops, stmt] if isinstance(stmt, ast.For) else loops
        for name, value in ast.iter_fields(stmt):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self._body(value, scope, inner_loops if name == "body" else loops, top)
            elif isinstance(value, list) and value and isinstance(value[0], ast.excepthandler):
                for handler in value:
                    if handler.name:
                        scope.bind(handler.name, _Binding(_pos(handler), "unknown"))
                    self._body(handler.body, scope, loops, top)
            elif isinstance(value, list) and value and isinstance(value[0], ast.match_case):
                for case in value:
                    self._body(case.body, scope, loops, top)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self._expr(item, scope, loops, top)
            elif isinstance(value, ast.AST):
                self._expr(value, scope, loops, top)

    def _expr(self, node: ast.AST, scope: _Scope, loops: list[ast.For], top: bool) -> None:
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, ast.Lambda):
                continue  # a lambda body runs later, if at all; its calls are not module-level
            if isinstance(current, ast.NamedExpr) and isinstance(current.target, ast.Name):
                scope.bind(current.target.id, _Binding(_pos(current), "value", current.value))
            if isinstance(current, ast.Call):
                self._call(current, scope, loops, top)
            stack.extend(ast.iter_child_nodes(current))

    def _call(self, call: ast.Call, scope: _Scope, loops: list[ast.For], top: bool) -> None:
        func = call.func
        if isinstance(func, ast.Name):
            self.calls.setdefault(func.id, []).append((call, scope))
            if func.id in ("exec", "eval"):
                self.sites.append(_Site(call, scope, top))
        elif isinstance(func, ast.Attribute):
            if func.attr in ("exec", "eval", "run_path"):
                self.sites.append(_Site(call, scope, top))
            elif func.attr in ("write", "write_text", "write_bytes"):
                self.writes.append(_Write(call, scope, list(loops), top))
            elif func.attr in ENV_WRITE_METHODS:
                self.env_writes.append((call, scope, top))
        elif isinstance(func, ast.Call):  # getattr(builtins, "exec")(...), __import__("x").f(...)
            self.sites.append(_Site(call, scope, top))

    def _bind_target(self, target: ast.expr, value: ast.expr, pos, scope: _Scope) -> None:
        if isinstance(target, ast.Name):
            scope.bind(target.id, _Binding(pos, "value", value))
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                for t, v in zip(target.elts, value.elts):
                    self._bind_target(t, v, pos, scope)
            else:
                for name in _target_names(target):
                    scope.bind(name, _Binding(pos, "unknown"))

    def _bind_import(self, stmt: ast.Import | ast.ImportFrom, pos, scope: _Scope) -> None:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    scope.bind(alias.asname, _Binding(pos, "import", alias.name))
                else:  # "import os.path" binds "os"
                    top = alias.name.split(".")[0]
                    scope.bind(top, _Binding(pos, "import", top))
            return
        if stmt.level or not stmt.module:
            for alias in stmt.names:  # relative import: a sibling module we do not evaluate
                scope.bind(alias.asname or alias.name, _Binding(pos, "unknown"))
            return
        for alias in stmt.names:
            if alias.name == "*":
                scope.star_imports.append(stmt.module)
            else:
                qualified = f"{stmt.module}.{alias.name}"
                scope.bind(alias.asname or alias.name, _Binding(pos, "import", qualified))


def _param_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names


def _target_names(target: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


# ================================================================================================
# 4. The abstract interpreter: literals + whitelisted pure functions, nothing else.


@dataclass
class _Payload:
    data: _Data
    site_line: int
    route: str
    label: str | None = None
    runpy_path: str | None = None  # runpy.run_path gives the target its own __file__
    parsed: ParsedSource | None = None  # already parsed (the literal scan checks it is Python)


class _Interpreter:
    def __init__(self, source: SourceFile, tree: ast.Module, dunder_file: str, unwrapper: _Unwrapper):
        self.source = source
        self.dunder_file = dunder_file
        self.unwrapper = unwrapper
        self.limits = unwrapper.limits
        # Building scopes walks the whole tree: only worth it when an exec-like call may exist.
        self.facts = _Collector(tree) if _may_have_sink(source.text) else None
        self.steps = 0
        self._memo: dict[int, Any] = {}
        self._virtual: dict[str, _Data] | None = None
        self._computing_virtual = False

    # -- sites -----------------------------------------------------------------------------------

    def sinks(self) -> list[_Site]:
        """exec/eval/run_path calls (confirmed by evaluating the called function)."""
        if self.facts is None:
            return []
        out = []
        for site in self.facts.sites:
            func = site.call.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr != "run_path"
                and not self._may_be_module(func.value)
            ):
                continue  # model.eval(): not worth evaluating `model`
            try:
                func = self.eval(site.call.func, site.scope, _pos(site.call), {})
            except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
                continue
            if isinstance(func, _Qualified) and func.name in (
                "builtins.exec",
                "builtins.eval",
                "runpy.run_path",
            ):
                out.append(site)
        return out

    def _may_be_module(self, node: ast.AST) -> bool:
        """`builtins.exec`, `__builtins__.exec`, `b.exec` after `import builtins as b`, `f(...).exec`."""
        while isinstance(node, ast.Attribute):
            node = node.value
        if isinstance(node, ast.Call):
            return True
        if not isinstance(node, ast.Name):
            return False
        if node.id in ("builtins", "__builtins__"):
            return True
        return any(b.kind == "import" for b in self.facts.module.bindings.get(node.id, []))

    def resolve_site(self, site: _Site) -> list[_Payload]:
        """The code an exec site runs: one payload, or one per call site of its function.
        Raises _Unresolved / _OverBound / _DecodeFailed."""
        call = site.call
        if not call.args:
            raise _Unresolved("exec without arguments")
        func = self.eval(call.func, site.scope, _pos(call), {})
        is_runpy = isinstance(func, _Qualified) and func.name == "runpy.run_path"
        try:
            values = [self._site_value(call, site.scope, {}, is_runpy)]
        except _NeedsParam as need:
            values = self._through_call_sites(call, need, is_runpy)
        return [self._payload(value, call.lineno, is_runpy) for value in values]

    def _site_value(self, call: ast.Call, scope: _Scope, env: dict, is_runpy: bool) -> Any:
        value = self.eval(call.args[0], scope, _pos(call), env)
        if is_runpy:  # run_path(<path>) runs the file at that path
            return (self._read(_as_path(value), "r"), _as_path(value))
        return value

    def _through_call_sites(self, call: ast.Call, need: _NeedsParam, is_runpy: bool) -> list[Any]:
        function = need.scope.node
        sites = self.facts.calls.get(getattr(function, "name", ""), [])
        if not sites:
            raise _Unresolved(f"the code comes from parameter {need.name!r} of a function never called here")
        values = []
        for caller, caller_scope in sites:
            env = _bind_arguments(function, caller, caller_scope)
            if env is None:
                raise _Unresolved(f"cannot match the arguments of the call at line {caller.lineno}")
            try:
                values.append(self._site_value(call, need.scope, env, is_runpy))
            except _NeedsParam as deeper:
                raise _Unresolved(f"the code comes from parameter {deeper.name!r} of a caller") from None
        return values

    def _payload(self, value: Any, line: int, is_runpy: bool) -> _Payload:
        runpy_path = None
        if is_runpy:
            value, runpy_path = value
        label = None
        if isinstance(value, _Code):
            label, value = value.filename, value.source
        if not isinstance(value, _Data):
            raise _Unresolved(f"exec of a {type(value).__name__} value")
        if value.member is not None:
            route = "bundle"
        elif value.file is not None and not value.steps:
            route = "indirection"
        else:
            route = "exec-arg"
        return _Payload(value, line, route, label, runpy_path)

    # -- evaluation ------------------------------------------------------------------------------

    def eval(self, node: ast.AST, scope: _Scope, pos: tuple[int, int], env: dict) -> Any:
        self.steps += 1
        if self.steps % 1024 == 0:
            check_budget()
        if self.steps > self.limits.max_eval_steps:
            raise _Unresolved("too many evaluation steps")
        try:
            return self._eval(node, scope, pos, env)
        except RecursionError:
            raise _Unresolved("expression nested too deeply") from None

    def _eval(self, node: ast.AST, scope: _Scope, pos, env: dict) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes)):
                return _Data(node.value, line=node.lineno)
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id, scope, pos, env)
        if isinstance(node, ast.Attribute):
            return self._attribute(self.eval(node.value, scope, pos, env), node.attr)
        if isinstance(node, ast.Call):
            return self._call(node, scope, pos, env)
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.eval(e, scope, pos, env) for e in node.elts if not isinstance(e, ast.Starred)]
            if any(isinstance(e, ast.Starred) for e in node.elts):
                raise _Unresolved("starred element")
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _Unresolved("dict unpacking")
            return {
                _plain(self.eval(k, scope, pos, env)): self.eval(v, scope, pos, env)
                for k, v in zip(node.keys, node.values)
            }
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope, pos, env)
        if isinstance(node, ast.Subscript):
            return self._subscript(node, scope, pos, env)
        if isinstance(node, ast.JoinedStr):
            return self._fstring(node, scope, pos, env)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.eval(node.operand, scope, pos, env)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        if isinstance(node, ast.NamedExpr):
            return self.eval(node.value, scope, pos, env)
        raise _Unresolved(f"{_short(node)} is not a literal or a known decode step")

    def _name(self, name: str, scope: _Scope, pos, env: dict) -> Any:
        if name in env:
            value = env[name]
            if isinstance(value, _Thunk):
                value = self.eval(value.node, value.scope, value.pos, value.env)
            return value
        current: _Scope | None = scope
        while current is not None:
            candidates = current.bindings.get(name, [])
            if current is scope:  # same scope: the latest binding before this point
                candidates = [b for b in candidates if b.pos < pos]
            if candidates:
                binding = max(candidates, key=lambda b: b.pos)
                # call-site arguments (env) belong to this function's scope only
                return self._binding(name, binding, current, env if current is scope else {})
            if current is scope and name in current.params:
                raise _NeedsParam(name, current)
            current = current.parent
        for module in self.facts.module.star_imports if self.facts else ():
            if _is_known_function(f"{module}.{name}"):
                return _Qualified(f"{module}.{name}")
        if name == "__file__":
            return self.dunder_file
        if name == "__name__":
            return "__main__"
        if name in BUILTIN_NAMES or name == "__builtins__":
            return _Qualified("builtins" if name == "__builtins__" else f"builtins.{name}")
        raise _Unresolved(f"name {name!r} is not bound to a literal")

    def _binding(self, name: str, binding: _Binding, scope: _Scope, env: dict) -> Any:
        if binding.kind == "import":
            return _Qualified(binding.value)
        if binding.kind != "value":
            raise _Unresolved(f"{name!r} is a {binding.kind} binding")
        if env:  # depends on this call site's arguments: not cacheable
            return self.eval(binding.value, scope, binding.pos, env)
        key = id(binding)
        if key not in self._memo:
            self._memo[key] = _Unresolved(f"{name!r} refers to itself")  # cycle guard
            try:
                self._memo[key] = self.eval(binding.value, scope, binding.pos, {})
            except (_Unresolved, _OverBound, _DecodeFailed) as err:
                self._memo[key] = err
            except _NeedsParam:
                del self._memo[key]  # depends on call-site arguments: not cacheable
                raise
        value = self._memo[key]
        if isinstance(value, Exception):
            raise value
        return value

    def _attribute(self, base: Any, attr: str) -> Any:
        if isinstance(base, _Qualified):
            qualified = f"{base.name}.{attr}"
            constant = _module_constant(qualified)
            return constant if constant is not None else _Qualified(qualified)
        if isinstance(base, PurePosixPath) and attr in ("parent", "parents", "name", "stem", "suffix"):
            value = getattr(base, attr)
            return tuple(value) if attr == "parents" else value
        return _BoundMethod(base, attr)

    def _binop(self, node: ast.BinOp, scope: _Scope, pos, env: dict) -> Any:
        left = self.eval(node.left, scope, pos, env)
        right = self.eval(node.right, scope, pos, env)
        if isinstance(node.op, ast.Add):
            if isinstance(left, _Data) and isinstance(right, _Data) and type(left.value) is type(right.value):
                self._check_size(len(left.value) + len(right.value))
                steps = left.steps + tuple(s for s in right.steps if s not in left.steps)
                return _Data(left.value + right.value, steps, left.line or right.line, left.file, left.member)
            if isinstance(left, str) or isinstance(right, str):  # __file__ + "x": a symbolic path
                return _as_path(left) + _as_path(right)
            if isinstance(left, list) and isinstance(right, list):
                return left + right
        if isinstance(node.op, ast.Div) and isinstance(left, PurePosixPath):
            return left / _text(right)
        if _small_int(left) and _small_int(right) and type(node.op) in INT_OPERATORS:
            return INT_OPERATORS[type(node.op)](left, right)
        raise _Unresolved(f"operator {type(node.op).__name__} on these values")

    def _subscript(self, node: ast.Subscript, scope: _Scope, pos, env: dict) -> Any:
        base = self.eval(node.value, scope, pos, env)
        if isinstance(node.slice, ast.Slice):
            parts = [
                None if p is None else self.eval(p, scope, pos, env)
                for p in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            index: Any = slice(*parts)
        else:
            index = _plain(self.eval(node.slice, scope, pos, env))
        try:
            if isinstance(base, _Data):
                item = base.value[index]
                return base.derive(item) if isinstance(item, (str, bytes)) else item
            if isinstance(base, (list, tuple, dict)):
                return base[index]
        except (IndexError, KeyError, TypeError, ValueError) as err:
            raise _Unresolved(f"subscript fails: {err}") from None
        if isinstance(base, _Qualified):  # os.environ["X"], sys.argv[1]
            raise _Unresolved(_describe_unknown(base.name))
        raise _Unresolved(f"subscript of {_short(node.value)}")

    def _fstring(self, node: ast.JoinedStr, scope: _Scope, pos, env: dict) -> Any:
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            elif isinstance(part, ast.FormattedValue) and part.conversion == -1 and part.format_spec is None:
                value = self.eval(part.value, scope, pos, env)
                if isinstance(value, _Data) and isinstance(value.value, str):
                    out.append(value.value)
                elif isinstance(value, (str, int, PurePosixPath)):
                    out.append(str(value))
                else:
                    raise _Unresolved("f-string with a non-text value")
            else:
                raise _Unresolved("f-string with conversions or format specs")
        return "".join(out)

    def _call(self, node: ast.Call, scope: _Scope, pos, env: dict) -> Any:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise _Unresolved("call with *args/**kwargs")
        func = self.eval(node.func, scope, pos, env)
        if func == _Qualified("builtins.compile") and node.args:
            # only the source matters; the file name (often module.__file__) is a label
            source = self.eval(node.args[0], scope, pos, env)
            return self._function(
                "builtins.compile", [source, self._lenient(node.args[1:2], scope, pos, env)], {}
            )
        args = [self.eval(a, scope, pos, env) for a in node.args]
        kwargs = {k.arg: self.eval(k.value, scope, pos, env) for k in node.keywords}
        if isinstance(func, _BoundMethod):
            return self._method(func.value, func.name, args, kwargs)
        if isinstance(func, _Qualified):
            return self._function(func.name, args, kwargs, where=f"{node.lineno}_{node.col_offset}")
        raise _Unresolved(f"call of {_short(node.func)}")

    def _lenient(self, nodes: list[ast.expr], scope: _Scope, pos, env: dict) -> Any:
        try:
            return self.eval(nodes[0], scope, pos, env) if nodes else None
        except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
            return None

    # -- the whitelist ---------------------------------------------------------------------------

    def _function(self, name: str, args: list, kwargs: dict, where: str = "") -> Any:
        name = FUNCTION_ALIASES.get(name, name)
        if name in DECOMPRESSORS:
            return self._decompress_call(name, args, kwargs)
        if name in CODEC_FUNCTIONS:
            step, decoder = CODEC_FUNCTIONS[name]
            data = _arg(args, kwargs, 0, "s", "b")
            extra = [_plain(a) for a in args[1:]]
            kw = {k: _plain(v) for k, v in kwargs.items() if k not in ("s", "b")}
            return _codec(data, step, lambda raw: decoder(raw, *extra, **kw))
        if name == "codecs.decode":
            return self._codecs_decode(args, kwargs)
        if name == "builtins.compile":
            source = _arg(args, kwargs, 0, "source")
            filename = _arg(args, kwargs, 1, "filename", default=None)
            if isinstance(source, _Code):
                return source
            if not isinstance(source, _Data):
                raise _Unresolved("compile() of a non-text value")
            filename = _plain(filename) if isinstance(filename, (_Data, str)) else None
            return _Code(source, filename if isinstance(filename, str) else None)
        if name in ("builtins.open", "io.open"):
            path = _as_path(_arg(args, kwargs, 0, "file"))
            mode = _text(_arg(args, kwargs, 1, "mode", default="r"))
            return _Handle(path, mode)
        if name in ("builtins.str", "builtins.bytes"):
            return self._str_bytes(name, args, kwargs)
        if name in ("builtins.__import__", "importlib.import_module"):
            return _Qualified(_text(_arg(args, kwargs, 0, "name")))
        if name == "builtins.getattr" and len(args) >= 2 and isinstance(args[0], _Qualified):
            return self._attribute(args[0], _text(args[1]))
        if name == "builtins.len" and args and isinstance(args[0], _Data):
            return len(args[0].value)
        if (
            name in ("builtins.list", "builtins.tuple")
            and len(args) == 1
            and isinstance(args[0], (list, tuple))
        ):
            return list(args[0]) if name.endswith("list") else tuple(args[0])
        if name == "builtins.zip" and all(isinstance(a, (list, tuple)) for a in args):
            return list(zip(*args))
        if name == "json.loads":
            data = _arg(args, kwargs, 0, "s")
            if not isinstance(data, _Data):
                raise _Unresolved("json.loads() of a non-literal value")
            try:
                return _wrap_json(json.loads(data.value), data)
            except (ValueError, RecursionError) as err:
                raise _DecodeFailed(f"json: {err}") from None
        if name in PATH_FUNCTIONS:
            return self._path_function(name, args)
        if name in ("pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "pathlib.PurePosixPath"):
            return PurePosixPath(*[_as_path(a) for a in args]) if args else PurePosixPath(SUBMISSION_ROOT)
        if name in ("tempfile.mkdtemp", "tempfile.TemporaryDirectory"):
            return f"{TEMP_ROOT}/{where}"  # the same call always gives the same directory
        if name == "tempfile.gettempdir":
            return TEMP_ROOT
        if name == "os.getcwd":
            return SUBMISSION_ROOT
        if name == "lzma.LZMADecompressor":  # lzma.LZMADecompressor(format, memlimit, filters)
            fmt = _arg(args, kwargs, 0, "format", default=lzma.FORMAT_AUTO)
            return _Decompressor(
                "lzma.decompress", {"format": fmt, "filters": _arg(args, kwargs, 2, "filters", default=None)}
            )
        if name == "zlib.decompressobj":
            return _Decompressor(
                "zlib.decompress", {"wbits": _arg(args, kwargs, 0, "wbits", default=zlib.MAX_WBITS)}
            )
        if name in ("bz2.BZ2Decompressor", "brotli.Decompressor"):
            return _Decompressor(name.split(".")[0] + ".decompress", {})
        raise _Unresolved(_describe_unknown(name))

    def _method(self, base: Any, method: str, args: list, kwargs: dict) -> Any:
        if isinstance(base, _Data):
            return self._data_method(base, method, args, kwargs)
        if isinstance(base, str):  # a symbolic path such as __file__
            if method == "replace" and len(args) >= 2:
                return base.replace(_text(args[0]), _text(args[1]))
            if method in ("endswith", "startswith") and args:
                return getattr(base, method)(_text(args[0]))
            raise _Unresolved(f"str.{method} on a path")
        if isinstance(base, _Handle):
            if method == "read":
                return self._read(base.path, base.mode)
            raise _Unresolved(f"file.{method}")
        if isinstance(base, PurePosixPath):
            return self._path_method(base, method, args)
        if isinstance(base, dict) and method in ("get", "items", "keys", "values"):
            if method == "get":
                return base.get(_plain(args[0]), args[1] if len(args) > 1 else None)
            return list(getattr(base, method)())
        if isinstance(base, _Decompressor) and method in ("decompress", "process") and args:
            return self._decompress_call(base.function, args[:1], base.options)
        raise _Unresolved(f"method .{method}() on a {type(base).__name__}")

    def _data_method(self, data: _Data, method: str, args: list, kwargs: dict) -> Any:
        value = data.value
        try:
            if method == "decode" and isinstance(value, bytes):
                encoding = _text(_arg(args, kwargs, 0, "encoding", default="utf-8"))
                errors = _text(_arg(args, kwargs, 1, "errors", default="strict"))
                return data.derive(value.decode(encoding, errors))
            if method == "encode" and isinstance(value, str):
                encoding = _text(_arg(args, kwargs, 0, "encoding", default="utf-8"))
                return data.derive(value.encode(encoding))
            if method in ("strip", "lstrip", "rstrip"):
                return data.derive(getattr(value, method)(*[_plain(a) for a in args]))
            if method == "replace" and len(args) >= 2:
                result = value.replace(_plain(args[0]), _plain(args[1]), *[_plain(a) for a in args[2:]])
                self._check_size(len(result))
                return data.derive(result)
            if method in ("split", "rsplit", "splitlines"):
                parts = getattr(value, method)(
                    *[_plain(a) for a in args], **{k: _plain(v) for k, v in kwargs.items()}
                )
                return [data.derive(p) for p in parts]
            if method == "join" and len(args) == 1 and isinstance(args[0], _Data):
                # "".join(s) iterates the characters of s (a parenthesized literal, not a tuple)
                items = args[0]
                self._check_size(len(items.value) * (len(value) + 1))
                return items.derive(value.join(items.value[i : i + 1] for i in range(len(items.value))))
            if method == "join" and len(args) == 1 and isinstance(args[0], (list, tuple)):
                items = args[0]
                if not all(isinstance(i, _Data) for i in items):
                    raise _Unresolved("join of non-literal items")
                self._check_size(sum(len(i.value) for i in items))
                joined = value.join(i.value for i in items)
                steps = tuple(dict.fromkeys(s for i in items for s in i.steps))
                first = items[0] if items else data
                return _Data(joined, steps, first.line, first.file, first.member)
            if method in ("startswith", "endswith", "find", "rfind", "index", "rindex", "count") and args:
                return getattr(value, method)(*[_plain(a) for a in args])  # code[: code.index("def main")]
        except (TypeError, ValueError, LookupError) as err:  # wrong types, unknown codec, bad bytes
            raise _DecodeFailed(f".{method}(): {err}") from None
        raise _Unresolved(f".{method}() on {type(value).__name__}")

    def _decompress_call(self, name: str, args: list, kwargs: dict) -> _Data:
        data = _arg(args, kwargs, 0, "data", "string")
        if isinstance(data, _Data) and isinstance(data.value, str):
            raise _DecodeFailed(f"{name}() needs bytes, got str")
        if not isinstance(data, _Data):
            raise _Unresolved(f"{name}() of a non-literal value")
        method = name.split(".")[0]
        opts: dict[str, Any] = {}
        if method == "lzma":
            opts["format"] = _plain(_arg(args, kwargs, 1, "format", default=lzma.FORMAT_AUTO))
            opts["filters"] = _plain(_arg(args, kwargs, 3, "filters", default=None))
            if opts["format"] == lzma.FORMAT_RAW and not opts["filters"]:
                raise _DecodeFailed("lzma FORMAT_RAW without filters")
            step = _lzma_step_name(data.value, opts["format"], opts["filters"])
        elif method == "zlib":
            opts["wbits"] = _plain(_arg(args, kwargs, 1, "wbits", default=zlib.MAX_WBITS))
            step = "deflate-raw" if opts["wbits"] < 0 else "gzip" if opts["wbits"] > 25 else "zlib"
        else:
            step = method
        limit = self.unwrapper.layer_limit()
        out = _decompress(method, data.value, limit, lzma_memlimit=self.limits.lzma_memlimit, **opts)
        return data.derive(out, step)

    def _codecs_decode(self, args: list, kwargs: dict) -> _Data:
        data = _arg(args, kwargs, 0, "obj")
        encoding = _text(_arg(args, kwargs, 1, "encoding", default="utf-8")).lower().replace("-", "_")
        if encoding in ("hex", "hex_codec"):
            return _codec(data, "hex", _hex)
        if encoding in ("base64", "base64_codec", "base_64"):
            return _codec(data, "b64", _b64)
        if encoding in ("zlib", "zlib_codec", "zip"):
            return self._decompress_call("zlib.decompress", [data], {})
        if encoding in ("bz2", "bz2_codec"):
            return self._decompress_call("bz2.decompress", [data], {})
        if isinstance(data, _Data) and isinstance(data.value, bytes):
            try:
                return data.derive(data.value.decode(encoding))
            except (LookupError, ValueError) as err:
                raise _DecodeFailed(f"codecs.decode: {err}") from None
        raise _Unresolved(f"codecs.decode(..., {encoding!r})")

    def _str_bytes(self, name: str, args: list, kwargs: dict) -> Any:
        if not args:
            return _Data("" if name.endswith("str") else b"")
        value = args[0]
        if (
            name.endswith("str")
            and isinstance(value, _Data)
            and isinstance(value.value, bytes)
            and len(args) > 1
        ):
            return value.derive(value.value.decode(_text(args[1])))
        if (
            name.endswith("bytes")
            and isinstance(value, _Data)
            and isinstance(value.value, str)
            and len(args) > 1
        ):
            return value.derive(value.value.encode(_text(args[1])))
        if isinstance(value, _Data) and isinstance(value.value, str if name.endswith("str") else bytes):
            return value
        if name.endswith("str") and isinstance(value, (str, PurePosixPath)):
            return str(value)
        raise _Unresolved(f"{name}() conversion")

    def _path_function(self, name: str, args: list) -> Any:
        paths = [_as_path(a) for a in args]
        if name in ("os.path.abspath", "os.path.realpath"):
            return posixpath.normpath(posixpath.join(SUBMISSION_ROOT, paths[0]))
        return getattr(posixpath, name.rsplit(".", 1)[1])(*paths)

    def _path_method(self, base: PurePosixPath, method: str, args: list) -> Any:
        if method in ("resolve", "absolute", "expanduser"):
            return PurePosixPath(posixpath.normpath(posixpath.join(SUBMISSION_ROOT, str(base))))
        if method in ("with_suffix", "with_name", "with_stem", "joinpath"):
            try:
                return getattr(base, method)(*[_text(a) for a in args])
            except ValueError as err:
                raise _Unresolved(f"Path.{method}: {err}") from None
        if method == "read_text":
            return self._read(str(base), "r")
        if method == "read_bytes":
            return self._read(str(base), "rb")
        if method == "open":
            return _Handle(str(base), _text(args[0]) if args else "r")
        raise _Unresolved(f"Path.{method}()")

    # -- files -----------------------------------------------------------------------------------

    def _read(self, path: str, mode: str) -> _Data:
        if any(c in mode for c in "wax+"):
            raise _Unresolved(f"read from a file opened with mode {mode!r}")
        normalized = posixpath.normpath(posixpath.join(SUBMISSION_ROOT, path))
        virtual = self.virtual_files()
        if normalized in virtual:
            return virtual[normalized]
        if normalized.startswith(TEMP_ROOT + "/") or normalized == TEMP_ROOT:
            raise _Unresolved(f"reads {posixpath.basename(normalized)!r} from a temporary directory")
        if not normalized.startswith(SUBMISSION_ROOT + "/"):
            raise _Unresolved(f"reads code from outside the submission folder: {path}")
        rel = normalized[len(SUBMISSION_ROOT) + 1 :]
        raw = self.unwrapper.read_inside(rel)  # raises _Unresolved for escapes / missing files
        data = _Data(raw, file=rel)
        if "b" in mode:
            return data
        try:
            return data.derive(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise _DecodeFailed(f"{rel} is not UTF-8 text: {err}") from None

    def virtual_files(self) -> dict[str, _Data]:
        """Files this layer writes (e.g. a bundle unpacked into a temp dir): path -> content."""
        if self._virtual is not None:
            return self._virtual
        if self._computing_virtual or self.facts is None:
            return {}
        self._computing_virtual = True
        found: dict[str, _Data] = {}
        for write in self.facts.writes:
            for path, content in self._written(write):
                if content is not None:
                    found[path] = content
        self._virtual = found
        self._computing_virtual = False
        return found

    def written_files(self) -> list[tuple[str, int, _Data | None]]:
        """(path, line, content or None when unknown) of the files module-level code writes."""
        out = []
        for write in self.facts.writes if self.facts else ():
            if write.module_level:
                out += [(path, write.call.lineno, content) for path, content in self._written(write)]
        return out

    def _written(self, write: _Write) -> list[tuple[str, _Data | None]]:
        """What one write call writes, once per iteration of the loops around it."""
        envs: list[dict] = [{}]
        for loop in write.loops:  # for name, content in zip([...], parts): ...
            try:
                items = self.eval(loop.iter, write.scope, _pos(loop), {})
            except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
                return []
            if not isinstance(items, (list, tuple)) or len(items) > 10_000:
                return []
            new_envs = []
            for env in envs:
                for item in items:
                    bound = _unpack(loop.target, item)
                    if bound is None:
                        return []
                    new_envs.append({**env, **bound})
            envs = new_envs
        out = []
        call = write.call
        for env in envs:
            try:
                target = self.eval(call.func.value, write.scope, _pos(call), env)
            except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
                continue  # sys.stdout.write(...), a log file handle, ...: not a file we can name
            if isinstance(target, _Handle) and any(c in target.mode for c in "wax"):
                path = target.path
            elif isinstance(target, PurePosixPath) and call.func.attr != "write":
                path = str(target)
            else:
                continue
            try:
                content = self.eval(call.args[0], write.scope, _pos(call), env) if call.args else None
            except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
                content = None
            normalized = posixpath.normpath(posixpath.join(SUBMISSION_ROOT, path))
            if isinstance(content, _Data):
                member = _display_path(normalized)
                content = _Data(content.value, content.steps, content.line, content.file, member)
            else:
                content = None
            out.append((normalized, content))
        return out

    def _check_size(self, size: int) -> None:
        if size > self.unwrapper.layer_limit():
            raise _OverBound(f"a value of {size} bytes")


# Whitelisted pure functions, by qualified name.
DECOMPRESSOR_OBJECTS = {
    ("lzma-decompressor",),
    ("zlib-decompressor",),
    ("bz2.BZ2Decompressor",),
    ("brotli.Decompressor",),
}
DECOMPRESSORS = {
    "lzma.decompress",
    "zlib.decompress",
    "gzip.decompress",
    "bz2.decompress",
    "brotli.decompress",
}
CODEC_FUNCTIONS = {
    "base64.b85decode": ("b85", base64.b85decode),
    "base64.b64decode": ("b64", _b64),
    "base64.standard_b64decode": ("b64", base64.standard_b64decode),
    "base64.urlsafe_b64decode": ("b64", base64.urlsafe_b64decode),
    "base64.decodebytes": ("b64", base64.decodebytes),
    "base64.a85decode": ("a85", base64.a85decode),
    "base64.b32decode": ("b32", base64.b32decode),
    "base64.b16decode": ("hex", base64.b16decode),
    "binascii.unhexlify": ("hex", binascii.unhexlify),
    "binascii.a2b_hex": ("hex", binascii.a2b_hex),
    "binascii.a2b_base64": ("b64", binascii.a2b_base64),
    "builtins.bytes.fromhex": ("hex", _hex),
}
FUNCTION_ALIASES = {"lzma.LZMADecompressor.decompress": "lzma.decompress"}
PATH_FUNCTIONS = {
    f"os.path.{name}" for name in ("join", "dirname", "basename", "normpath", "abspath", "realpath")
}


INT_OPERATORS = {  # on small ints only (filter options such as `1 << 20`, `9 | PRESET_EXTREME`)
    ast.BitOr: operator.or_,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.LShift: lambda a, b: a << b if 0 <= b <= 64 else _refuse_shift(),
}


def _refuse_shift():
    raise _Unresolved("shift out of range")


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 62


def _is_known_function(name: str) -> bool:
    return name in DECOMPRESSORS or name in CODEC_FUNCTIONS or name in PATH_FUNCTIONS


def _module_constant(qualified: str) -> int | None:
    """lzma.FORMAT_RAW, lzma.FILTER_LZMA2, zlib.MAX_WBITS, ... (upper-case ints only)."""
    module, _, attr = qualified.rpartition(".")
    if module in ("lzma", "zlib") and attr.isupper():
        value = getattr(lzma if module == "lzma" else zlib, attr, None)
        return value if isinstance(value, int) else None
    return None


def _describe_unknown(name: str) -> str:
    if name.startswith(("os.environ", "os.getenv")):
        return f"the code comes from the environment ({name})"
    if name.startswith(("urllib", "requests", "http", "socket", "httpx")):
        return f"the code comes from the network ({name})"
    if name.startswith(("marshal", "pickle", "types.CodeType", "dill")):
        return f"the code is serialized bytecode/objects ({name})"
    if name.startswith(("builtins.input", "sys.stdin", "sys.argv")):
        return f"the code comes from run-time input ({name})"
    return f"{name}() is not a known pure decode step"


def _codec(data: Any, step: str, decoder) -> _Data:
    if not isinstance(data, _Data):
        raise _Unresolved(f"{step} decode of a non-literal value")
    try:
        return data.derive(decoder(data.value), step)
    except (ValueError, TypeError, binascii.Error) as err:
        raise _DecodeFailed(f"{step}: {err}") from None


def _arg(args: list, kwargs: dict, index: int, *names: str, default: Any = ...) -> Any:
    if len(args) > index:
        return args[index]
    for name in names:
        if name in kwargs:
            return kwargs[name]
    if default is ...:
        raise _Unresolved("missing argument")
    return default


def _plain(value: Any) -> Any:
    """A Python value for use as an argument of a real function (filters, keys, encodings)."""
    if isinstance(value, _Data):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (_Qualified, _Handle, _Code)):
        raise _Unresolved(f"a {type(value).__name__} used as a plain value")
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, PurePosixPath):
        return str(value)
    if not isinstance(value, str):
        raise _Unresolved("expected text")
    return value


def _as_path(value: Any) -> str:
    if isinstance(value, PurePosixPath):
        return str(value)
    if isinstance(value, _Data) and isinstance(value.value, str):
        return value.value
    if isinstance(value, str):
        return value
    raise _Unresolved("a path that is not a literal")


def _wrap_json(value: Any, origin: _Data) -> Any:
    if isinstance(value, str):
        return origin.derive(value, "json")
    if isinstance(value, list):
        return [_wrap_json(v, origin) for v in value]
    if isinstance(value, dict):
        return {k: _wrap_json(v, origin) for k, v in value.items()}
    return value


def _unpack(target: ast.expr, item: Any) -> dict | None:
    if isinstance(target, ast.Name):
        return {target.id: item}
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(item, (list, tuple)):
        if len(target.elts) != len(item):
            return None
        out: dict = {}
        for t, v in zip(target.elts, item):
            part = _unpack(t, v)
            if part is None:
                return None
            out.update(part)
        return out
    return None


def _bind_arguments(function: ast.AST, call: ast.Call, caller_scope: _Scope) -> dict | None:
    """Parameter name -> thunk of the argument expression at one call site."""
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    args = function.args
    positional = [a.arg for a in [*args.posonlyargs, *args.args]]
    env: dict[str, Any] = {}
    for name, default in zip(reversed(positional), reversed(args.defaults)):
        env[name] = _Thunk(default, caller_scope, _pos(function), {})
    for name, node in zip(positional, call.args):
        if isinstance(node, ast.Starred):
            return None
        env[name] = _Thunk(node, caller_scope, _pos(call), {})
    for keyword in call.keywords:
        if keyword.arg is None:
            return None
        env[keyword.arg] = _Thunk(keyword.value, caller_scope, _pos(call), {})
    return env


def _short(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, TypeError, AttributeError, RecursionError):  # odd synthetic trees
        text = type(node).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ================================================================================================
# 5. The literal scan of records-format.md §4.3, for exec arguments we could not resolve.

B85_CHARS = re.compile(r"[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]+")
B64_CHARS = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
HEX_CHARS = re.compile(r"(?:[0-9a-fA-F]{2})+")
# A run must start where the alphabet starts (the lookbehind), which keeps the search linear.
B85_RUN = re.compile(r"(?<![0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~])[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]{64,}")
B64_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{64,}")
WHITESPACE = re.compile(rb"\s+")


def _has_encoded_run(text: str) -> bool:
    """A cheap pre-check: some line holds 64+ characters of base85/base64 data."""
    long_lines = "\n".join(line for line in text.split("\n") if len(line) >= 64)
    for pattern in (B85_RUN, B64_RUN):
        for match in pattern.finditer(long_lines):
            run = match.group()
            # encoded data is mixed-case with digits; minified code is mostly lower case
            if sum(c.isupper() for c in run) >= len(run) // 8 and sum(c.isdigit() for c in run) >= 3:
                return True
    return False


def _candidate_literals(tree: ast.Module, min_chars: int) -> list[tuple[_Data, int]]:
    """Long str/bytes literals (ast already merged implicit concatenation), and tuples/lists of
    literals that a wrapper would "".join()."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            if len(node.value) >= min_chars:
                out.append((_Data(node.value, line=node.lineno), node.lineno))
        elif isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) > 1:
            parts = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(parts) == len(node.elts) and all(isinstance(p, str) for p in parts):
                joined = "".join(parts)
                if len(joined) >= min_chars:
                    out.append((_Data(joined, line=node.lineno), node.lineno))
    return out


def _scan_literal(data: _Data, limit: int, memlimit: int) -> tuple[_Data | None, str | None]:
    """Try the §4.3 recipe on one literal: (decoded Python-looking text, None) or (None, why)."""
    raw = data.value.encode("latin-1", "ignore") if isinstance(data.value, str) else data.value
    compact = WHITESPACE.sub(b"", raw)
    attempts: list[tuple[str, bytes]] = []
    text = compact.decode("ascii", "ignore")
    if B85_CHARS.fullmatch(text):
        try:
            attempts.append(("b85", base64.b85decode(compact)))
        except ValueError:
            pass
    if B64_CHARS.fullmatch(text):
        try:
            attempts.append(("b64", base64.b64decode(compact + b"=" * (-len(compact) % 4), altchars=b"-_")))
        except (ValueError, binascii.Error):
            pass
    if HEX_CHARS.fullmatch(text):
        attempts.append(("hex", bytes.fromhex(text)))
    if isinstance(data.value, bytes):
        attempts.append(("", data.value))  # a bytes literal may be compressed as is
    why = None
    for step, blob in attempts:
        for method, opts, name in _RECIPE:
            try:
                out = _decompress(method, blob, limit, lzma_memlimit=memlimit, **opts)
            except _DecodeFailed:
                continue
            if name == "xz":  # FORMAT_AUTO also reads the legacy .lzma container
                name = _lzma_step_name(blob, lzma.FORMAT_AUTO, None)
            steps = (step, name) if step else (name,)
            decoded = _Data(out, steps, data.line)
            if _looks_like_text(out):
                return decoded, None
            why = f"{'+'.join(steps)} decodes to {len(out)} bytes that are not text"
        if blob.startswith(ZSTD_MAGIC):
            why = "a zstd stream (no zstd decoder is used)"
    return None, why


_RECIPE = [  # (method, options, chain step) in the order of records-format.md §4.3
    ("lzma", {"format": lzma.FORMAT_AUTO}, "xz"),
    ("lzma", {"format": lzma.FORMAT_RAW, "filters": [{"id": lzma.FILTER_LZMA2}]}, "lzma-raw"),
    ("zlib", {"wbits": zlib.MAX_WBITS}, "zlib"),
    ("gzip", {}, "gzip"),
    ("bz2", {}, "bz2"),
    ("brotli", {}, "brotli"),
]


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        # the cut may split a character; decode the whole (bounded) payload in that case
        try:
            text = data.decode("utf-8")[:4096]
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


# ================================================================================================
# 6. The driver: layers, limits, findings.


class _Unwrapper:
    def __init__(self, folder: Path, limits: UnwrapLimits):
        self.folder = folder
        self.folder_resolved = folder.resolve()
        self.limits = limits
        self.result = UnwrapResult()
        self.decoded_total = 0
        self.reached: set[str] = set()  # folder-relative files already unwrapped
        self._seen_payloads: set[str] = set()

    def relative(self, path: Path) -> str | None:
        """``path`` (absolute, cwd-relative, or folder-relative) relative to the folder."""
        for candidate in (path, self.folder / path):
            try:
                return candidate.relative_to(self.folder).as_posix()
            except ValueError:
                pass
        try:
            return path.absolute().relative_to(self.folder.absolute()).as_posix()
        except ValueError:
            return None

    def layer_limit(self) -> int:
        return max(0, min(self.limits.max_layer_bytes, self.limits.max_total_bytes - self.decoded_total))

    def read_inside(self, rel: str) -> bytes:
        """Bytes of a folder file; refuses paths and symlinks that leave the folder."""
        if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
            raise _Unresolved(f"reads code from outside the submission folder: {rel}")
        target = self.folder / rel
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError) as err:  # symlink loops
            raise _Unresolved(f"cannot resolve {rel}: {err}") from None
        if not resolved.is_relative_to(self.folder_resolved):
            raise _Unresolved(f"{rel} is a symlink that leaves the submission folder")
        if not resolved.is_file():
            raise _Unresolved(f"{rel} is not a file in the submission folder")
        size = resolved.stat().st_size
        if size > self.limits.max_file_bytes:
            raise _OverBound(f"{rel} has {size} bytes")
        self.reached.add(resolved.relative_to(self.folder_resolved).as_posix())
        return resolved.read_bytes()

    # -- shipped files ---------------------------------------------------------------------------

    def add_shipped(self, path: Path, *, is_entry: bool) -> None:
        rel = self.relative(path) or path.name
        try:
            raw = self.read_inside(rel)
        except _Unresolved as err:
            self._report_unreadable(rel, str(err), is_entry)
            return
        except _OverBound as err:
            self.result.findings.append(
                finding(
                    "HYG006",
                    f"{rel} is larger than the {self.limits.max_file_bytes}-byte bound ({err}); not read",
                    location=Location(file=rel),
                    data={"bound": self.limits.max_file_bytes},
                )
            )
            return
        self._seen_payloads.add(hashlib.sha256(raw).hexdigest())  # a helper exec'ing it adds nothing
        source = SourceFile(
            path=rel, text="", shipped_bytes=len(raw), decoded_bytes=len(raw), is_entry=is_entry
        )
        text, error = _source_text(raw)
        source.text = text or ""
        if error:
            source.parse_error = error
            self.result.sources.append(source)
            return
        self._layer(source, dunder_file=f"{SUBMISSION_ROOT}/{rel}")

    def _report_unreadable(self, rel: str, why: str, is_entry: bool) -> None:
        self.result.findings.append(
            finding(
                "HYG005",
                f"{rel} cannot be reviewed: {why}",
                location=Location(file=rel),
                severity=Severity.ERROR if is_entry else Severity.WARNING,
            )
        )

    # -- one layer -------------------------------------------------------------------------------

    def _layer(self, source: SourceFile, dunder_file: str, parsed: ParsedSource | None = None) -> None:
        if parsed is None and len(source.text) > self.limits.max_parse_bytes:
            source.parse_error = (
                f"not analysed: {len(source.text):,} characters of code, over the analysis budget of "
                f"{self.limits.max_parse_bytes:,} (real decoded scripts are under 500 KB)"
            )
            self.result.sources.append(source)
            return
        parsed = parsed or parse_python(source.text, source.path)
        source.tree, source.parse_error, source.used_fallback = (
            parsed.tree,
            parsed.error,
            parsed.used_fallback,
        )
        self.result.sources.append(source)
        if source.tree is None:
            return
        interp = _Interpreter(source, source.tree, dunder_file, self)
        sinks = interp.sinks()
        payloads: list[_Payload] = []
        unresolved: list[tuple[_Site, str]] = []
        for site in sinks:
            try:
                payloads += interp.resolve_site(site)
            except _Unresolved as err:
                unresolved.append((site, str(err)))
            except _NeedsParam as err:
                unresolved.append((site, f"depends on parameter {err.name!r}"))
            except _OverBound as err:
                self._bomb(source, site.call.lineno, str(err))
            except _DecodeFailed as err:
                self._unreviewable(source, site.call.lineno, f"the payload does not decode: {err}")
        if unresolved or not sinks:
            payloads += self._literal_scan(source, unresolved)
        if any(site.module_level for site in sinks):  # a wrapper: what does it do before exec?
            written = interp.written_files()
            self._hidden_config(source, interp, sinks, written)
            # Python files it unpacks are code too, even when run by import rather than exec.
            payloads += [
                _Payload(content, line, "bundle")
                for path, line, content in written
                if content is not None and path.endswith(".py")
            ]
        for payload in payloads:
            self._child(source, payload, dunder_file)

    def _literal_scan(self, source: SourceFile, unresolved: list[tuple[_Site, str]]) -> list[_Payload]:
        """§4.3 fallback. With unresolved exec sites: their best guess (or HYG005 error).
        Without any exec site: only literals that decode to text (a payload with no visible exec)."""
        if not unresolved and not _has_encoded_run(source.text):
            return []
        found: list[_Payload] = []
        reasons = []
        for data, line in _candidate_literals(source.tree, self.limits.min_literal_chars):
            try:
                decoded, why = _scan_literal(data, self.layer_limit(), self.limits.lzma_memlimit)
            except _OverBound as err:
                self._bomb(source, line, str(err))
                continue
            site_line = unresolved[0][0].call.lineno if unresolved else line
            if decoded is not None and len(decoded.value) > self.limits.max_parse_bytes:
                # too big to parse here: kept as a payload, and _layer says it was not analysed
                found.append(_Payload(decoded, site_line, "literal-scan"))
                continue
            if decoded is not None:
                parsed = parse_python(decoded.value.decode("utf-8", "replace"), source.path)
                if parsed.tree is not None:
                    found.append(_Payload(decoded, site_line, "literal-scan", parsed=parsed))
                    continue
                why = f"{'+'.join(decoded.steps)} decodes to text that is not Python ({parsed.error})"
            if why:
                reasons.append(f"line {line}: {why}")
        for site, why in unresolved:
            line = site.call.lineno
            if found:
                self._unreviewable(
                    source,
                    line,
                    f"the code run at line {line} could not be resolved statically ({why}); "
                    f"assuming it is the payload decoded from the literal at line {found[0].data.line}",
                    severity=Severity.WARNING,
                    confidence=Confidence.HEURISTIC,
                    data={"reason": why, "route": "literal-scan"},
                )
            else:
                extra = f"; literals tried: {'; '.join(reasons)}" if reasons else ""
                message = f"it runs code that cannot be decoded statically: {why}{extra}"
                self._unreviewable(source, line, message, data={"reason": why})
        if found and not unresolved:
            self._unreviewable(
                source,
                found[0].data.line,
                "a compressed Python payload is embedded but no exec of it is visible",
                severity=Severity.WARNING,
                confidence=Confidence.HEURISTIC,
                data={"route": "literal-scan"},
            )
        return found

    def _child(self, parent: SourceFile, payload: _Payload, dunder_file: str) -> None:
        data = payload.data
        raw = data.value.encode("utf-8") if isinstance(data.value, str) else data.value
        digest = hashlib.sha256(raw).hexdigest()
        if digest in self._seen_payloads:
            return  # the same code reached twice (e.g. try/except around two exec forms)
        self._seen_payloads.add(digest)
        depth = parent.depth + 1
        line = payload.site_line
        if depth > self.limits.max_depth:
            self._unreviewable(
                parent, line, f"wrappers are nested deeper than {self.limits.max_depth} layers"
            )
            return
        if payload.route == "indirection":
            child_path, chain, wrapper = data.file or parent.path, [], None
            shipped = len(raw)
        else:
            steps = list(data.steps)
            if data.file and data.file != parent.path:
                steps = [f"read:{data.file}", *steps]
            if payload.route == "bundle":
                steps.append(f"bundle:{data.member}")
            chain = [*parent.chain, "exec", *steps] if parent.chain else steps
            child_path, shipped = parent.path, parent.shipped_bytes
            wrapper = f"{parent.path}: " + " → ".join(STEP_NAMES.get(s, s) for s in chain) if chain else None
            self.decoded_total += len(raw)
        text, error = _source_text(raw) if isinstance(data.value, bytes) else (data.value, None)
        label = payload.label
        if label and label.startswith(SUBMISSION_ROOT + "/"):
            label = label[len(SUBMISSION_ROOT) + 1 :]
        child = SourceFile(
            path=child_path,
            text=text or "",
            chain=chain,
            wrapper=wrapper,
            shipped_bytes=shipped,
            decoded_bytes=len(raw),
            is_entry=parent.is_entry,
            origin_line=data.line if payload.route != "indirection" else line,
            depth=depth,
            route=payload.route,
            label=label or data.member,
            via=f"{parent.path}:{line}",
            # Every layer of a payload sits in one line range of the shipped file: the outermost one.
            shipped_line=None if payload.route == "indirection"
            else (parent.shipped_line if parent.depth > 0 else (data.line or line)),
        )
        if error:
            child.parse_error = error
            self.result.sources.append(child)
            self._unreviewable(parent, line, f"the payload ({len(raw)} bytes) is not text: {error}")
            return
        if payload.route == "indirection":
            self.reached.add(child_path)
        runpy_file = payload.runpy_path and posixpath.normpath(
            posixpath.join(SUBMISSION_ROOT, payload.runpy_path)
        )
        self._layer(child, dunder_file=runpy_file or dunder_file, parsed=payload.parsed)
        if child.tree is None:
            self._unreviewable(parent, line, f"the payload ({len(raw)} bytes) is {child.parse_error}")

    # -- findings --------------------------------------------------------------------------------

    def _unreviewable(
        self,
        source: SourceFile,
        line: int | None,
        why: str,
        *,
        severity: Severity | None = None,
        confidence: Confidence | None = None,
        data: dict | None = None,
    ) -> None:
        if severity is None:
            severity = Severity.ERROR if source.is_entry else Severity.WARNING
        self.result.findings.append(
            finding(
                "HYG005",
                f"unreviewable wrapper: {why}",
                location=source.location(line),
                severity=severity,
                confidence=confidence,
                data={"is_entry": source.is_entry, **(data or {})},
            )
        )

    def _bomb(self, source: SourceFile, line: int, why: str) -> None:
        self.result.findings.append(
            finding(
                "HYG006",
                f"decoding the payload at line {line} exceeds the size bound "
                f"({self.limits.max_layer_bytes} bytes per layer, {self.limits.max_total_bytes} in total): {why}; "
                "a decompression bomb or an oversized payload, not decoded",
                location=source.location(line),
                data={
                    "max_layer_bytes": self.limits.max_layer_bytes,
                    "max_total_bytes": self.limits.max_total_bytes,
                },
            )
        )

    def _hidden_config(
        self, source: SourceFile, interp: _Interpreter, sinks: list[_Site], written: list
    ) -> None:
        """HYG007: environment overrides and file writes a wrapper makes before it runs its payload."""
        last_exec = max(_pos(s.call) for s in sinks if s.module_level)
        env_lines: list[int] = []
        env: dict[str, str] = {}
        for node, scope, module_level in interp.facts.env_writes:
            if not module_level or _pos(node) > last_exec:
                continue
            keys = _env_write(interp, node, scope)
            if keys is not None:
                env.update(keys)
                env_lines.append(node.lineno)
        written = [(p, line, c) for p, line, c in written if (line, 0) < last_exec]
        if not env_lines and not written:
            return
        parts = []
        if env:
            shown = ", ".join(f"{k}={v}" for k, v in list(env.items())[:12])
            parts.append(f"sets environment variables before exec ({shown})")
        elif env_lines:
            parts.append("sets environment variables before exec")
        if written:
            names = sorted({_display_path(p) for p, _, _ in written})
            where = "a temporary directory" if any(p.startswith(TEMP_ROOT) for p, _, _ in written) else "disk"
            parts.append(f"writes {len(names)} file(s) to {where} at run time ({', '.join(names[:8])})")
        lines = sorted(set(env_lines + [line for _, line, _ in written]))
        self.result.findings.append(
            finding(
                "HYG007",
                "hidden code or config in wrapper: " + "; ".join(parts),
                location=source.location(lines[0]),
                path=[source.location(line) for line in lines[1:20]],
                data={"env": env, "files": [_display_path(p) for p, _, _ in written], "lines": lines},
            )
        )


def _env_write(interp: _Interpreter, node: ast.AST, scope: _Scope) -> dict[str, str] | None:
    """Keys (and literal values) an os.environ write sets, or None if ``node`` is not one."""

    def is_environ(expr: ast.AST) -> bool:
        try:
            value = interp.eval(expr, scope, _pos(node), {})
        except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
            return False
        return isinstance(value, _Qualified) and value.name == "os.environ"

    def shown(expr: ast.AST) -> str:
        try:
            return str(_plain(interp.eval(expr, scope, _pos(node), {})))
        except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
            return "<" + _short(expr, 30) + ">"

    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        keys = {}
        for target in targets:
            if isinstance(target, ast.Subscript) and is_environ(target.value):
                keys[shown(target.slice)] = shown(node.value)
        return keys or None
    call = node
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
    method = call.func.attr
    if method == "putenv":
        try:
            is_os = interp.eval(call.func.value, scope, _pos(node), {}) == _Qualified("os")
        except (_Unresolved, _NeedsParam, _OverBound, _DecodeFailed):
            is_os = False
        return {shown(call.args[0]): shown(call.args[1])} if is_os and len(call.args) == 2 else None
    if not is_environ(call.func.value):
        return None
    if method in ("setdefault", "__setitem__") and len(call.args) == 2:
        return {shown(call.args[0]): shown(call.args[1])}
    keys = {k.arg: shown(k.value) for k in call.keywords if k.arg}
    for arg in call.args:
        if isinstance(arg, ast.Dict):
            keys.update({shown(k): shown(v) for k, v in zip(arg.keys, arg.values) if k is not None})
        else:
            keys["<" + _short(arg, 30) + ">"] = "?"
    return keys


def _display_path(path: str) -> str:
    for root in (SUBMISSION_ROOT, TEMP_ROOT):
        if path.startswith(root + "/"):
            rest = path[len(root) + 1 :]
            return f"<tmp>/{rest.split('/', 1)[1] if '/' in rest else rest}" if root == TEMP_ROOT else rest
    return path


def _source_text(raw: bytes) -> tuple[str | None, str | None]:
    """Decode Python source bytes as the interpreter would (PEP 263 cookie, BOM, else UTF-8)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(encoding), None
    except (SyntaxError, LookupError, UnicodeDecodeError) as err:
        return None, f"not decodable as Python source text: {err}"


def _snippet(text: str, line: int, limit: int = 160) -> str | None:
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    snippet = lines[line - 1].strip()
    return snippet if len(snippet) <= limit else snippet[: limit - 1] + "…"
