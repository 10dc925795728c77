"""Static C1-C4 detectors with dataflow evidence.

Entry point: ``run_static(sources, config) -> list[Finding]``. ``sources`` are the (unwrapped)
files of one submission (``auditor.unwrap.SourceFile`` or anything with ``path``, ``text``,
``tree``, ``wrapper``, ``is_entry``); nothing is executed. See ``dataflow.py`` for the model and
``detectors/`` for the rules (C101 C102 C103 C201 C301 C302 C303 C401 C402 HYG008).
"""

from __future__ import annotations

import ast
import gc
import logging

from auditor.findings import finding
from auditor.models import Finding, Location, Severity
from auditor.static.analysis import Analysis, StaticConfig
from auditor.static.detectors import DETECTORS
from auditor.static.program import SourceLike

__all__ = ["SourceLike", "StaticConfig", "analyze", "run_static"]

log = logging.getLogger(__name__)


def analyze(sources: list[SourceLike], config: StaticConfig | None = None) -> Analysis:
    """The dataflow analysis alone (for tools and tests that want the events)."""
    return Analysis([_parsed(s) for s in sources], config or StaticConfig())


def run_static(sources: list[SourceLike], config: StaticConfig) -> list[Finding]:
    """Run every static detector over one submission's sources.

    Never raises on odd code: an internal failure of the analysis (or of one detector) becomes an
    HYG010 warning saying which part of the static audit is missing."""
    parsed = [_parsed(s) for s in sources]
    parsed = [s for s in parsed if getattr(s, "tree", None) is not None]
    if not parsed:
        return []
    gc_was_on = gc.isenabled()
    gc.disable()  # the analysis allocates many short-lived acyclic values; cyclic GC only costs time
    try:
        an = Analysis(parsed, config or StaticConfig())
    except (RecursionError, MemoryError, Exception) as exc:
        log.exception("static analysis failed")
        return [_incomplete(parsed, f"the dataflow analysis failed ({type(exc).__name__}: {exc})")]
    finally:
        if gc_was_on:
            gc.enable()
    findings: list[Finding] = []
    seen: set[tuple] = set()
    for det in DETECTORS:
        try:
            found = det.detect(an)
        except (RecursionError, Exception) as exc:
            log.exception("static detector %s failed", det.__name__)
            found = [
                _incomplete(
                    parsed, f"detector {det.__name__.rsplit('.', 1)[-1]} failed ({type(exc).__name__}: {exc})"
                )
            ]
        for f in found:
            key = (
                f.rule_id,
                f.location.file if f.location else None,
                f.location.line if f.location else None,
            )
            if key in seen:
                continue
            seen.add(key)
            findings.append(f)
    if an.interp.truncated:
        findings.append(
            _incomplete(
                parsed,
                "the dataflow analysis reached its budget; some calls were summarized without following them",
                severity=Severity.INFO,
            )
        )
    return findings


def _incomplete(parsed, why: str, severity: Severity = Severity.WARNING) -> Finding:
    entry = next((s for s in parsed if getattr(s, "is_entry", False)), parsed[0])
    return finding(
        "HYG010",
        f"Static C1-C4 audit incomplete for {entry.path}: {why}.",
        location=Location(file=entry.path, wrapper=getattr(entry, "wrapper", None)),
        severity=severity,
    )


class _Parsed:
    __slots__ = ("is_entry", "path", "text", "tree", "wrapper")

    def __init__(self, src: SourceLike, tree):
        self.path = src.path
        self.text = src.text
        self.tree = tree
        self.wrapper = getattr(src, "wrapper", None)
        self.is_entry = bool(getattr(src, "is_entry", False))


def _parsed(src: SourceLike):
    """Sources with a tree (parsed here if the caller did not)."""
    if getattr(src, "tree", None) is not None:
        return src
    text = getattr(src, "text", None)
    if not text:
        return src
    tree = _parse(text, str(getattr(src, "path", "<source>")))
    return _Parsed(src, tree)


def _parse(text: str, filename: str):
    try:
        from auditor.pysource import parse_python
    except ImportError:  # pragma: no cover - the module exists in the project
        try:
            return ast.parse(text, filename=filename)
        except (SyntaxError, ValueError):
            return None
    return parse_python(text, filename).tree
