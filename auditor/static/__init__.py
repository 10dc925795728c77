"""Static C1-C4 detectors with dataflow evidence.

Entry point: ``run_static(sources, config) -> list[Finding]``. ``sources`` are the (unwrapped)
files of one submission (``auditor.unwrap.SourceFile`` or anything with ``path``, ``text``,
``tree``, ``wrapper``, ``is_entry``); nothing is executed. See ``dataflow.py`` for the model and
``detectors/`` for the rules (C101 C102 C103 C201 C301 C302 C303 C401 C402 HYG008).
"""

from __future__ import annotations

import ast
import logging

from auditor.models import Finding
from auditor.static.analysis import Analysis, StaticConfig
from auditor.static.detectors import DETECTORS
from auditor.static.program import SourceLike

__all__ = ["StaticConfig", "SourceLike", "run_static", "analyze"]

log = logging.getLogger(__name__)


def analyze(sources: list[SourceLike], config: StaticConfig | None = None) -> Analysis:
    """The dataflow analysis alone (for tools and tests that want the events)."""
    return Analysis([_parsed(s) for s in sources], config or StaticConfig())


def run_static(sources: list[SourceLike], config: StaticConfig) -> list[Finding]:
    """Run every static detector over one submission's sources."""
    parsed = [_parsed(s) for s in sources]
    parsed = [s for s in parsed if getattr(s, "tree", None) is not None]
    if not parsed:
        return []
    an = Analysis(parsed, config or StaticConfig())
    findings: list[Finding] = []
    seen: set[tuple] = set()
    for det in DETECTORS:
        for f in det.detect(an):
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
        log.info("static analysis budget reached; some call contexts were summarized")
    return findings


class _Parsed:
    __slots__ = ("path", "text", "tree", "wrapper", "is_entry")

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
