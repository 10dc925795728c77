"""Metamorphic robustness: every static fixture, rewritten in ways that keep what it computes
(renamed identifiers, a self-extracting wrapper, reordered definitions, unrelated padding, code
moved to an imported module, wrapped or not), gets the same C1-C4 / network rules as the original.
A verdict that changes with the spelling of a program was tuned to its shape, not its semantics."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import libcst
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pgolf_metamorphic", ROOT / "bench" / "metamorphic.py")
meta = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = meta
spec.loader.exec_module(meta)

FIXTURES = meta.fixtures()


def test_the_suite_covers_every_static_rule_with_both_kinds():
    names = {(p.parent.name, p.name.split("_", 1)[0]) for p in FIXTURES}
    for rule in meta.STATIC_RULE_DIRS:
        assert (rule, "flag") in names and (rule, "pass") in names, rule


@pytest.mark.parametrize("transform", sorted(meta.TRANSFORMS))
def test_transforms_keep_the_program_valid_python(transform):
    for path in FIXTURES:
        out = meta.TRANSFORMS[transform](path.read_text(encoding="utf-8"))
        for text in out.values() if isinstance(out, dict) else [out]:
            libcst.parse_module(text)  # any Python 3 syntax (``generics`` writes 3.12)


def test_rename_really_renames():
    src = "import torch\n\ndef score(targets, k=1):\n    cache = {}\n    hits = cache.get(k)\n    return hits\n"
    out = meta.rename(src)
    assert "cache" not in out and "hits" not in out and "def v" in out
    assert "targets" in out and "k=1" in out  # parameters are part of the interface


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name}/{p.name}" for p in FIXTURES])
def test_variants_get_the_rules_of_the_original(path):
    source = path.read_text(encoding="utf-8")
    original = meta.rule_set(source)
    if path.name.startswith("flag_"):
        assert original, "a must-flag fixture must raise something to compare"
    differs = {}
    for name, transform in meta.TRANSFORMS.items():
        got = meta.rule_set(transform(source))
        if got != original:
            differs[name] = sorted(got)
    assert not differs, f"original {sorted(original)}; variants differ: {differs}"
