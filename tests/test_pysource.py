"""parse_python: Python 3.12 f-strings (PEP 701) parsed on 3.11 with the same tree and lines.

Reference: each case is written once with `§` for the quote nested inside the f-string. With
`§` = `"` (same quote as the f-string) only a 3.12 parser accepts it; with `§` = `'` it is plain
3.11 code that means exactly the same thing. The fallback must give the same AST (ignoring
columns) and the same line numbers for every node.
"""

from __future__ import annotations

import ast
import sys

import pytest

from auditor.pysource import FSTRING_MARK, FVALUE_MARK, parse_python

PEP701_CASES = {
    "subscript": 'x = f"lr={d[§lr§]}"\n',
    "several_per_line": 'log(f"a={d[§a§]}", f"b={d[§b§]}");y=f"{d[§c§]}"\n',
    "conversion_and_nested_spec": 'print(f"{cfg[§name§]!r:>{cfg[§w§]}} done")\n',
    "debug_equals": 'print(f"{d[§a§]=}", f"{d[§b§]=:.3f}", f"{d[§c§]=!s}")\n',
    "method_call_in_expression": 'msg = f"{§,§.join(names)} and {§-§*3}"\n',
    "concatenation": 'msg = ("head " f"{d[§k§]}" " tail"\n       f" more {d[§j§]}")\n',
    "parenthesized_multiline": 'value = (\n    f"{d[§k§]}"\n)\n',
    # ¶ is the f-string's own triple quote in the 3.12 variant
    "triple_quoted_multiline": 'text = f"""first {d[¶a¶]}\nsecond line\nthird {d[¶b¶]!r} end\n"""\nafter = 1\n',
    "expression_spanning_lines": 'text = f"""{\n    d[¶a¶]\n    + d[¶b¶]\n}"""\n',
    # (3.12 source, 3.11 source with the same meaning)
    "nested_fstring": (
        'x = f"{f"{d["a"]}"} and {f"{1+2}"}"\n',
        'x = f"""{f\'{d["a"]}\'} and {f\'{1+2}\'}"""\n',
    ),
    "raw_fstring": 'pattern = rf"\\d+{d[§k§]}\\s"\n',
    "escaped_braces": 'x = f"{{literal}} {d[§k§]} {{{d[§j§]}}}"\n',
    "indented_block": 'def f(d):\n\tif d:\n\t\treturn f"{d[§k§]}"\n\treturn None\n',
    "inside_class_and_lambda": 'class C:\n    fmt = lambda self, d: f"<{d[§k§]}>"\n    other = 2\n',
    "multiline_call_around": 'log(\n    "a",\n    f"{d[§k§]}",\n    3,\n)\n',
    "continuation_line": 'x = 1 + \\\n    len(f"{d[§k§]}")\n',
    "minified_statements": 'if a:b=f"{c[§k§]}";d=[f"{e[§x§]}" for e in f];g=3\nh=4\n',
    "two_distant_failures": 'a = f"{d[§a§]}"\n' + "pad = 0\n" * 40 + 'b = f"{d[§b§]}"\n',
    "long_statement_above": "table = {\n"
    + "".join(f"    'k{i}': {i},\n" for i in range(30))
    + '    "x": f"{d[§k§]}",\n}\nz = 1\n',
    "crlf_line_endings": 'a = 1\r\nb = f"{d[§k§]}"\r\nc = 2\r\n',
    "long_triple_quoted": 'x = f"""\n' + "line\n" * 30 + "{d[¶k¶]}\n" + "more\n" * 5 + '"""\n',
}


def _variants(case: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(case, tuple):
        return case
    pep701 = case.replace("§", '"').replace("¶", '"""')
    return pep701, case.replace("§", "'").replace("¶", "'")


def _same_quotes(tree: ast.AST) -> ast.AST:
    """f"{x=}" keeps the expression's source text, quotes included; compare it quote-blind."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("="):
            node.value = node.value.replace('"', "'")
    return tree


def _lines(tree: ast.AST) -> list[tuple[str, int | None, int | None]]:
    return [
        (type(node).__name__, getattr(node, "lineno", None), getattr(node, "end_lineno", None))
        for node in ast.walk(tree)
    ]


@pytest.mark.parametrize("name", sorted(PEP701_CASES))
def test_pep701_source_parses_with_the_same_tree_and_lines(name):
    pep701, reference_text = _variants(PEP701_CASES[name])
    if sys.version_info < (3, 12):  # the case really needs the fallback on this interpreter
        with pytest.raises(SyntaxError):
            ast.parse(pep701)
    parsed = parse_python(pep701, f"{name}.py")
    reference = ast.parse(reference_text)
    assert parsed.error is None
    assert parsed.used_fallback is (sys.version_info < (3, 12))
    assert ast.dump(_same_quotes(parsed.tree)) == ast.dump(_same_quotes(reference))
    assert _lines(parsed.tree) == _lines(reference)
    dumped = ast.dump(parsed.tree)
    assert FSTRING_MARK not in dumped and FVALUE_MARK not in dumped


def test_known_lines_of_a_multiline_fstring():
    source = (
        "import os\n"  # 1
        "def report(d):\n"  # 2
        '    return f"""head\n'  # 3
        '{d["alpha"]} and\n'  # 4
        '{os.environ["BETA"]=}\n'  # 5
        '"""\n'  # 6
        "tail = 7\n"  # 7
    )
    parsed = parse_python(source, "known.py")
    assert parsed.error is None
    by_value = {n.value: n.lineno for n in ast.walk(parsed.tree) if isinstance(n, ast.Constant)}
    assert by_value["alpha"] == 4
    assert by_value["BETA"] == 5
    assert by_value[7] == 7
    joined = next(n for n in ast.walk(parsed.tree) if isinstance(n, ast.JoinedStr))
    assert (joined.lineno, joined.end_lineno) == (3, 6)
    names = {n.id: n.lineno for n in ast.walk(parsed.tree) if isinstance(n, ast.Name)}
    assert names["os"] == 5 and names["tail"] == 7


def test_only_offending_fstrings_are_rewritten():
    source = 'a = f"{x}"\nb = f"{d["k"]}"\nc = f\'{d["k"]}\'\nd = f"{e[\'k\']}"\n'
    parsed = parse_python(source, "count.py")
    assert parsed.used_fallback
    assert parsed.fstrings_rewritten == 1


def test_plain_source_does_not_use_the_fallback():
    parsed = parse_python("x = f\"{d['k']}\"\n", "plain.py")
    assert parsed.tree is not None and not parsed.used_fallback and parsed.fstrings_rewritten == 0


@pytest.mark.parametrize(
    "text",
    [
        "This is prose, not code.\n",
        "def f(:\n    pass\n",
        'x = f"{d["k"]}" +\n',  # 3.12 syntax *and* broken
        "\x00\x01binary",
        "x = (" * 300 + ")" * 300,
    ],
)
def test_non_python_gives_an_error_not_an_exception(text):
    parsed = parse_python(text, "bad.py")
    assert parsed.tree is None
    assert parsed.error.startswith("not Python (or newer syntax than supported): ")


def test_bom_and_empty_source():
    assert parse_python("\ufeffx = 1\n", "bom.py").tree is not None
    assert parse_python("", "empty.py").tree is not None


# --- PEP 695 / 696 type parameters (3.12, 3.13) ---------------------------------------------------
# Each case: (3.12+ source, 3.11 source that computes the same values). Type parameters carry no
# runtime value the detectors need, so the tree must equal the plain version's, node for node,
# line for line (columns too: the parameter list is blanked, not removed).

TYPE_PARAM_CASES = {
    "generic_function": ("def f[T](x: T) -> T:\n    return x\n", "def f(x: T) -> T:\n    return x\n"),
    "bounds_and_constraints": ("def f[T: int, U: (str, bytes)](x): return x\n", "def f(x): return x\n"),
    "defaults_pep696": ("class C[T = int, *Ts = *tuple[int], **P = [int]]:\n    a = 1\n",
                        "class C:\n    a = 1\n"),
    "multiline_with_comment": ("def f[\n    T,  # a comment with ] in it\n    U = int,\n](x: T):\n    return x\nw = 1\n",
                               "def f(\n\n\n    x: T):\n    return x\nw = 1\n"),
    "string_bound": ('def f[T: "list[int]"](x): return x\n', "def f(x): return x\n"),
    "async_method": ("class C:\n    async def g[T](self, x):\n        return x\n",
                     "class C:\n    async def g(self, x):\n        return x\n"),
    "type_alias": ("x = 1\ntype A = int | None\ny = x\n", "x = 1\nA = int | None\ny = x\n"),
    "generic_type_alias": ("type Pair[T] = tuple[T, T]\nz = 3\n", "Pair = tuple[T, T]\nz = 3\n"),
    "indented_alias": ("def f():\n    type L = list[int]\n    return L\n", "def f():\n    L = list[int]\n    return L\n"),
    "with_a_pep701_fstring": ('def f[T](d):\n    return f"{d["k"]}"\n', "def f(d):\n    return f\"{d['k']}\"\n"),
}


def _shape(tree: ast.AST) -> list[tuple[str, int]]:
    return [(type(n).__name__, getattr(n, "lineno", 0)) for n in ast.walk(tree)]


@pytest.mark.parametrize("name", sorted(TYPE_PARAM_CASES))
def test_type_parameters_parse_to_the_tree_of_the_same_code_without_them(name):
    new, plain = TYPE_PARAM_CASES[name]
    got = parse_python(new)
    assert got.error is None and got.tree is not None and not got.partial
    assert got.used_fallback
    want = ast.parse(plain)
    assert _shape(got.tree) == _shape(want)
    if "fstring" not in name:
        assert ast.dump(got.tree, include_attributes=False) == ast.dump(want, include_attributes=False)


def test_a_name_called_type_is_not_a_type_statement():
    src = "type = 3\nprint(type)\nx = type\n"
    got = parse_python(src)
    assert got.error is None and not got.used_fallback


def test_a_broken_statement_leaves_the_rest_of_the_module_readable():
    src = "import torch\n\ndef ok(x):\n    return x\n\ndef broken(:\n    pass\n\nclass Later:\n    def m(self):\n        return 2\n"
    got = parse_python(src)
    assert got.partial and got.tree is not None
    assert [type(s).__name__ for s in got.tree.body] == ["Import", "FunctionDef", "ClassDef"]
    assert got.tree.body[2].lineno == 9 and got.tree.body[2].body[0].lineno == 10
    assert "lines 6-8 could not be parsed" in got.error and "the rest was read" in got.error


def test_nothing_parseable_is_still_an_error():
    got = parse_python("def (:\n  ]]\n")
    assert got.tree is None and "not Python" in got.error
