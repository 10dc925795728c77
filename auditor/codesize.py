"""Code bytes, recomputed from what is shipped.

Three regimes (records-format.md §4.4):
  * plain script or real wrapper: code bytes = the shipped file's size;
  * "virtual wrapper": the script logs the size of a wrapper it *would* produce by minifying its
    own source and compressing it (pyminify + lzma/brotli + base85). We recompute that number with
    python-minifier so the log is not taken on trust;
  * indirection: a stub that execs a sibling; the sibling's bytes count too.

Re-minifying a 150 KB script takes seconds, so results are cached by content hash on disk.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import lzma
from dataclasses import asdict, dataclass
from pathlib import Path

import brotli
import python_minifier

from auditor.cache import atomic_write, cache_root

# pyminify command-line flags -> python_minifier.minify keyword arguments.
_PYMINIFY_FLAGS = {
    "--no-rename-locals": ("rename_locals", False),
    "--no-hoist-literals": ("hoist_literals", False),
    "--remove-literal-statements": ("remove_literal_statements", True),
    "--remove-asserts": ("remove_asserts", True),
    "--remove-debug": ("remove_debug", True),
    "--prefer-single-line": ("prefer_single_line", True),
    "--rename-globals": ("rename_globals", True),
    "--no-remove-annotations": ("remove_annotations", False),
}

_CANONICAL_TEMPLATES = {
    "lzma": (b'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("', b'")))\n'),
    "brotli": (b'import brotli as B,base64 as A\nexec(B.decompress(A.b85decode("', b'")))\n'),
}


@dataclass(frozen=True)
class VirtualWrapperSpec:
    """How a script computes its own 'compressed code size', read from its AST."""

    line: int  # where the pyminify invocation sits
    minify_options: tuple[tuple[str, bool], ...]
    compressor: str  # "lzma" | "brotli"
    compressor_level: int | None
    prefix: bytes
    suffix: bytes
    template_found: bool  # False: the canonical template was assumed


@dataclass(frozen=True)
class VirtualWrapperSize:
    spec: VirtualWrapperSpec
    minified_bytes: int
    wrapper_bytes: int
    minifier_version: str


def find_virtual_wrapper(tree: ast.Module, text: str | None = None) -> VirtualWrapperSpec | None:
    """Find a pyminify/python_minifier invocation and the compression that follows it."""
    if text is not None and "minif" not in text:  # cheap prefilter: walking a 150 KB AST is not
        return None
    for func in _functions_with_minifier(tree):
        flags, line = _minifier_flags(func)
        if line is None:
            continue
        compressor, level = _compressor(func)
        if compressor is None:
            continue
        template = _template(func)
        prefix, suffix = template or _CANONICAL_TEMPLATES[compressor]
        options = {"rename_locals": True, "hoist_literals": True}
        for flag in flags:
            if flag in _PYMINIFY_FLAGS:
                key, value = _PYMINIFY_FLAGS[flag]
                options[key] = value
        return VirtualWrapperSpec(
            line=line,
            minify_options=tuple(sorted(options.items())),
            compressor=compressor,
            compressor_level=level,
            prefix=prefix,
            suffix=suffix,
            template_found=template is not None,
        )
    return None


def _functions_with_minifier(tree: ast.Module) -> list[ast.AST]:
    """Innermost functions that mention pyminify / python_minifier (one walk of the tree)."""
    found = []

    def visit(node: ast.AST, func: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child)
            elif func is not None and (
                (isinstance(child, ast.Constant) and child.value == "pyminify")
                or (isinstance(child, ast.Attribute) and child.attr == "minify")
            ):
                if func not in found:
                    found.append(func)
            else:
                visit(child, func)

    visit(tree, None)
    return found


def _minifier_flags(func: ast.AST) -> tuple[list[str], int | None]:
    for node in ast.walk(func):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "pyminify":
                flags = [
                    e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
                return flags, node.lineno
        if isinstance(node, ast.Call) and _dotted(node.func).endswith("minify"):
            kwargs = {
                kw.arg: kw.value.value
                for kw in node.keywords
                if kw.arg and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool)
            }
            flags = [f for f, (key, val) in _PYMINIFY_FLAGS.items() if kwargs.get(key) == val]
            return flags, node.lineno
    return [], None


def _compressor(func: ast.AST) -> tuple[str | None, int | None]:
    for node in ast.walk(func):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.endswith("compress") and not name.endswith("decompress"):
                kind = "brotli" if "brotli" in name else "lzma" if "lzma" in name else None
                if kind is None:
                    continue
                level = None
                for kw in node.keywords:
                    if kw.arg in ("preset", "quality") and isinstance(kw.value, ast.Constant):
                        level = int(kw.value.value)
                return kind, level
    return None, None


def _template(func: ast.AST) -> tuple[bytes, bytes] | None:
    """The ``b'<prefix>' + encoded + b'<suffix>'`` expression that builds the wrapper."""
    for node in ast.walk(func):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = _flatten_add(node)
            consts = [p for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, bytes)]
            if len(parts) == 3 and len(consts) == 2 and b"exec(" in consts[0].value:
                return parts[0].value, parts[2].value
    return None


def _flatten_add(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _flatten_add(node.left) + _flatten_add(node.right)
    return [node]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _minifier_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("python-minifier")
    except PackageNotFoundError:
        return "unknown"


def _cache_dir() -> Path:
    return cache_root() / "codesize"


def virtual_wrapper_size(source: str, spec: VirtualWrapperSpec) -> VirtualWrapperSize:
    """Minify + compress + base85 the source the way the script does, and measure the wrapper."""
    version = _minifier_version()
    key_material = json.dumps([version, spec.minify_options, spec.compressor, spec.compressor_level])
    key = hashlib.sha256(key_material.encode() + b"\0" + source.encode()).hexdigest()
    cache_file = _cache_dir() / f"{key}.json"
    try:
        cached = json.loads(cache_file.read_text())
        return VirtualWrapperSize(spec, cached["minified"], cached["wrapper"], version)
    except (OSError, ValueError, KeyError):
        pass
    minified = python_minifier.minify(source, **dict(spec.minify_options)).encode()
    if spec.compressor == "brotli":
        compressed = brotli.compress(minified, quality=spec.compressor_level or 11)
    else:
        compressed = lzma.compress(minified, preset=spec.compressor_level if spec.compressor_level else 6)
    wrapper = len(spec.prefix) + len(base64.b85encode(compressed)) + len(spec.suffix)
    try:
        atomic_write(cache_file, json.dumps({"minified": len(minified), "wrapper": wrapper, "spec": asdict(spec)},
                                            default=repr).encode())
    except OSError:
        pass  # a read-only cache only costs time
    return VirtualWrapperSize(spec, len(minified), wrapper, version)
