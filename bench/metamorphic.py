"""Metamorphic robustness of the static verdict: the same program, written differently, must get
the same findings.

Every must-flag / must-pass fixture of the static rules (C1xx-C4xx, HYG008) is rewritten by
transformations that keep what the code computes, and the C1-C4 / network rules pgolf raises on
the rewrite are compared with those it raises on the original:

* ``rename``   every variable and function the file defines gets a meaningless name (``v17``):
               a verdict must not come from identifiers (``targets``, ``val_tokens``, ``cache``);
* ``wrap``     the file ships as an lzma + base85 self-extracting wrapper (records-format §2);
* ``reorder``  top-level functions and classes in reverse order (definitions are resolved at call
               time, so behaviour is unchanged);
* ``padding``  unrelated helpers (never called) are added before and after the code;
* ``split``    the code moves to a sibling module that train_gpt.py imports;
* ``split_wrapped`` the same, with that module shipped as a self-extracting wrapper;
* ``generics`` every function and class gets a PEP 695 type parameter (``def f[T_](...)``) and
               the file ends with a ``type`` statement: Python 3.12 syntax, which the auditor's
               own 3.11 parser rejects, must not hide code from the detectors.

    python bench/metamorphic.py            # writes bench/results/metamorphic.txt

The agreement figure (transformed variants whose rule set equals the original's) is in the README.
"""

from __future__ import annotations

import ast
import base64
import builtins
import lzma
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FIXTURES = REPO_ROOT / "rules" / "fixtures"
RESULTS = REPO_ROOT / "bench" / "results" / "metamorphic.txt"
STATIC_RULE_DIRS = ("C101", "C102", "C103", "C201", "C301", "C302", "C303", "C401", "C402", "HYG008")
COMPARED = ("C1", "C2", "C3", "C4")  # rule-id prefixes whose findings are compared, with HYG008


# --- transformations ---------------------------------------------------------------------------


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.mapping:
            return ast.copy_location(ast.Name(id=self.mapping[node.id], ctx=node.ctx), node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.name = self.mapping.get(node.name, node.name)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.generic_visit(node)
        node.name = self.mapping.get(node.name, node.name)
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        node.names = [self.mapping.get(n, n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global


def _renamable(tree: ast.Module) -> list[str]:
    """Names the file itself binds (variables, functions, classes), minus anything whose name is
    visible from outside: imports, builtins, dunders, methods and class attributes, parameters
    (callers may pass them by keyword), and names also used as attributes or keywords
    (``self.x = x``, ``f(dim=dim)``)."""
    bound: set[str] = set()
    fixed: set[str] = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            fixed.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            fixed.add(node.arg)
        elif isinstance(node, ast.Attribute):
            fixed.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            fixed.add(node.arg)
        elif isinstance(node, ast.ClassDef):
            # Methods and class attributes are reached as attributes (``forward`` through
            # ``__call__``): their names are part of the interface.
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    fixed.add(stmt.name)
                for target in getattr(stmt, "targets", [getattr(stmt, "target", None)]):
                    if isinstance(target, ast.Name):
                        fixed.add(target.id)
    return sorted(n for n in bound - fixed if not n.startswith("__"))


def rename(source: str) -> str:
    tree = ast.parse(source)
    mapping = {name: f"v{i}" for i, name in enumerate(_renamable(tree))}
    return ast.unparse(_Renamer(mapping).visit(tree)) + "\n"


def wrap(source: str) -> str:
    blob = base64.b85encode(
        lzma.compress(source.encode(), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    ).decode()
    return (
        "import lzma as L,base64 as B\n"
        f'exec(L.decompress(B.b85decode("{blob}"),format=L.FORMAT_RAW,filters=[{{"id":L.FILTER_LZMA2}}]))\n'
    )


def reorder(source: str) -> str:
    tree = ast.parse(source)
    head = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    defs = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    rest = [s for s in tree.body if s not in head and s not in defs]
    doc = [rest.pop(0)] if rest and isinstance(rest[0], ast.Expr) and isinstance(rest[0].value, ast.Constant) else []
    # Module-level assignments stay before the definitions (decorators and defaults may read them).
    assigns = [s for s in rest if not (isinstance(s, ast.If) and "__main__" in ast.unparse(s.test))]
    main = [s for s in rest if s not in assigns]
    tree.body = doc + head + assigns + list(reversed(defs)) + main
    return ast.unparse(tree) + "\n"


PADDING_BEFORE = '''
def _pad_unused_stats(values, eps=1e-6):
    total = 0.0
    for v in values:
        total += float(v)
    return total / (len(values) + eps)


class _PadUnusedConfig:
    def __init__(self):
        self.flags = {"verbose": False}
'''

PADDING_AFTER = '''

def _pad_unused_format(rows):
    return "\\n".join(str(r) for r in rows)
'''


def padding(source: str) -> str:
    tree = ast.parse(source)
    # After the imports and the docstring, so `from __future__` stays first.
    cut = 0
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) or (
            i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        ):
            cut = stmt.end_lineno or cut
    lines = source.splitlines(keepends=True)
    return "".join(lines[:cut]) + PADDING_BEFORE + "".join(lines[cut:]) + PADDING_AFTER


def split(source: str) -> dict[str, str]:
    """The code moves to a sibling module; train_gpt.py imports every name from it and keeps only
    the ``__main__`` block (records ship helpers this way: online_ngram_tilt.py, kernels.py)."""
    tree = ast.parse(source)
    main = [s for s in tree.body if isinstance(s, ast.If) and "__main__" in ast.unparse(s.test)]
    body = [s for s in tree.body if s not in main]
    names = sorted(
        {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        | {t.id for n in body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    )
    imports = [s for s in body if isinstance(s, (ast.Import, ast.ImportFrom)) and getattr(s, "module", "") != "__future__"]
    helper = ast.unparse(ast.Module(body=body, type_ignores=[])) + "\n"
    entry = [ast.unparse(s) for s in imports]
    # Importing runs the module's own top-level code too (a wrapper's exec, say).
    entry.append(f"from eval_helpers import {', '.join(names)}" if names else "import eval_helpers")
    entry += [ast.unparse(s) for s in main]
    return {"train_gpt.py": "\n".join(entry) + "\n", "eval_helpers.py": helper}


def split_wrapped(source: str) -> dict[str, str]:
    """``split``, with the helper module shipped as a self-extracting wrapper (an evasion: the
    illegal code sits, encoded, in a file the entry only imports)."""
    files = split(source)
    files["eval_helpers.py"] = wrap(files["eval_helpers.py"])
    return files


GENERIC_DEF = re.compile(r"^(\s*(?:async\s+)?(?:def|class)\s+[A-Za-z_]\w*)(?=[(:])", re.MULTILINE)


def generics(source: str) -> str:
    """3.12 syntax with the same runtime values: unused type parameters and a type alias."""
    return GENERIC_DEF.sub(r"\1[T_pgolf]", source) + "\n\ntype _PgolfAlias = int\n"


TRANSFORMS: dict[str, Callable[[str], str | dict[str, str]]] = {
    "rename": rename,
    "wrap": wrap,
    "reorder": reorder,
    "padding": padding,
    "split": split,
    "split_wrapped": split_wrapped,
    "generics": generics,
}


# --- running pgolf -----------------------------------------------------------------------------


def fixtures() -> list[Path]:
    return sorted(p for d in STATIC_RULE_DIRS for p in (FIXTURES / d).glob("*.py"))


def rule_set(source: str | dict[str, str]) -> frozenset[str]:
    """The compared rules pgolf raises (error or warning) on ``source`` shipped as train_gpt.py
    (or on the files of a dict, named as given)."""
    from auditor import intake
    from auditor.options import AuditOptions
    from auditor.pipeline import audit_record

    with tempfile.TemporaryDirectory(prefix="pgolf-meta-") as tmp:
        folder = Path(tmp) / "record"
        folder.mkdir()
        files = source if isinstance(source, dict) else {"train_gpt.py": source}
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        audit = audit_record(intake.discover_records(folder)[0], AuditOptions())
    return frozenset(
        f.rule_id
        for f in audit.findings
        if (f.rule_id.startswith(COMPARED) or f.rule_id == "HYG008") and f.severity.value in ("error", "warning")
    )


def evaluate(paths: list[Path] | None = None) -> list[tuple[str, str, frozenset, frozenset]]:
    """(fixture, transform, original rules, rules on the variant) for every pair."""
    rows = []
    for path in paths or fixtures():
        source = path.read_text(encoding="utf-8")
        original = rule_set(source)
        for name, transform in TRANSFORMS.items():
            rows.append((f"{path.parent.name}/{path.name}", name, original, rule_set(transform(source))))
    return rows


def main() -> int:
    rows = evaluate()
    agree = [r for r in rows if r[2] == r[3]]
    by_transform = {}
    for _fixture, name, a, b in rows:
        ok, total = by_transform.get(name, (0, 0))
        by_transform[name] = (ok + (a == b), total + 1)
    lines = [
        (
            f"metamorphic agreement: {len(agree)}/{len(rows)} transformed variants get the same rules "
            f"as their original ({len(fixtures())} static fixtures x {len(TRANSFORMS)} transforms)"
        ),
        "by transform: " + ", ".join(f"{n} {ok}/{total}" for n, (ok, total) in by_transform.items()),
        "",
    ]
    lines += [
        f"DIFFERS {fixture} [{name}]: original {sorted(a)} -> variant {sorted(b)}"
        for fixture, name, a, b in rows
        if a != b
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
