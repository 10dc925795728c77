"""Parse Python source into an ``ast`` tree, including code written for Python 3.12 and 3.13.

The auditor runs on Python 3.11, but five of the seven decoded record wrappers use PEP 701
f-strings (the same quote nested inside ``{...}``), and any submission may use PEP 695/696 type
parameters (``def f[T](x)``, ``class C[T = int]``, ``type A = int``), which 3.11's parser rejects.
Code the detectors cannot read is code they cannot flag, so we:

1. try ``ast.parse`` (fast, exact);
2. on a SyntaxError at a type-parameter list or a ``type`` statement, blank the parameter list
   (``type A[T] = v`` becomes ``A = v``): type parameters carry no runtime values for the
   detectors, and blanking keeps every line and column of the code around them;
3. on a SyntaxError at an f-string, let libcst (which understands 3.12+ syntax) parse only the
   statement around the error, rewrite each offending f-string into a 3.11-parseable call that
   keeps every embedded expression and every newline, splice it back and parse again (repeat per
   failing statement; if no small region works, rewrite the whole module once), then turn the
   marker calls back into ``ast.JoinedStr`` nodes, so the tree has the same shape and the same
   line numbers as a 3.12 parser would give (column offsets inside a rewritten f-string are not
   exact; the lines are);
4. if the module still does not parse, parse it top-level statement by statement: the tree holds
   every statement that parses, and ``error`` names the lines that did not (so the detectors still
   run on every function that parses, and the audit says what it could not read).

Nothing is executed; libcst and ``ast`` only parse.
"""

from __future__ import annotations

import ast
import io
import re
import threading
import tokenize
from dataclasses import dataclass

# Marker calls the rewrite emits; restored to JoinedStr / FormattedValue after parsing.
FSTRING_MARK = "__pgolf_fstring__"
FVALUE_MARK = "__pgolf_fvalue__"

MAX_REGION_FIXES = 200  # failing statements fixed region by region, then the whole module once
REGION_LINES_UP = 12  # how far above the error line a statement may start
REGION_LINES_DOWN = 24  # how far below it a statement may end
# Bounds on adversarial input: every region fix re-parses the whole text, and libcst is slow.
REPARSE_CHAR_BUDGET = 20_000_000  # characters ast.parse may see across region fixes
WHOLE_MODULE_MAX_CHARS = 1_000_000  # the largest real decoded payload is ~400 KB


@dataclass
class ParsedSource:
    tree: ast.Module | None
    error: str | None = None
    used_fallback: bool = False  # a rewrite was needed (3.12+ syntax)
    fstrings_rewritten: int = 0
    partial: bool = False  # ``tree`` holds only the statements that parse; ``error`` names the rest


# CPython 3.11 keeps the AST constructor's recursion bookkeeping in interpreter-wide state:
# two threads parsing at once can fail with "SystemError: AST constructor recursion depth
# mismatch". Parsing is serialized within a process (processes are unaffected).
_PARSE_LOCK = threading.Lock()


def parse_python(text: str, filename: str = "<unknown>") -> ParsedSource:
    """Parse ``text``; never raises. ``error`` says why when there is no tree."""
    with _PARSE_LOCK:
        return _parse_python(text, filename)


def _parse_python(text: str, filename: str) -> ParsedSource:
    text = text.removeprefix("\ufeff")  # a BOM is legal in files, not in ast.parse's str input
    try:
        return ParsedSource(tree=ast.parse(text, filename=filename))
    except SyntaxError as err:
        first_error, first_line, first_msg = _describe(err), err.lineno or 0, str(err.msg)
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes, absurd nesting
        return _parse_statements(text, filename, _describe(err))
    try:
        tree, count = _parse_with_rewrites(text, filename, first_line, first_msg)
    except _RewriteFailed:
        return _parse_statements(text, filename, first_error)
    return ParsedSource(tree=tree, used_fallback=True, fstrings_rewritten=count)


INT_DIGITS = re.compile(r"Exceeds the limit \((\d+) digits\).*value has (\d+) digits")


def _describe(err: BaseException) -> str:
    """The parser's complaint in words for the report (never advice meant for a Python developer)."""
    if isinstance(err, SyntaxError):
        msg, where = str(err.msg), f" (line {err.lineno})" if err.lineno else ""
        digits = INT_DIGITS.search(msg)
        if digits:
            msg = (f"an integer literal of {digits.group(2)} digits, over the {digits.group(1)}-digit limit of "
                   "Python's int conversion (the interpreter refuses to compile it too)")
        return msg + where
    if isinstance(err, MemoryError):
        return "the parser ran out of memory (nesting too deep)"
    if isinstance(err, RecursionError):
        return "nesting too deep for the parser"
    return str(err) or type(err).__name__


class _RewriteFailed(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# Step 2: rewrite the failing statements with libcst, one region at a time.


def _parse_with_rewrites(
    text: str, filename: str, error_line: int, error_msg: str
) -> tuple[ast.Module, int]:
    # \r\n and lone \r are newlines for Python too, so this keeps every line number.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rewritten_lines: list[tuple[int, int]] = []  # 1-based inclusive ranges we touched
    count = 0
    whole_module_done = False
    region_fixes = max(8, min(MAX_REGION_FIXES, REPARSE_CHAR_BUDGET // max(1, len(text))))
    for attempt in range(region_fixes + 2):  # + the whole-module rewrite and its parse
        if attempt:  # the caller already parsed the original text once
            try:
                tree = ast.parse("\n".join(lines), filename=filename)
                break
            except SyntaxError as err:
                error_line, error_msg = err.lineno or 0, str(err.msg)
            except (ValueError, RecursionError, MemoryError) as err:
                raise _RewriteFailed(str(err)) from None
        if _blank_type_parameters(lines, error_line):
            continue
        if "f-string" not in error_msg and not _fstring_near(lines, error_line):
            raise _RewriteFailed("the error is not about an f-string")  # plain bad syntax: fail fast
        region = _rewrite_region(lines, error_line) if attempt < region_fixes else None
        if region is None:
            if whole_module_done or len(text) > WHOLE_MODULE_MAX_CHARS:
                raise _RewriteFailed("no rewrite made it parse")
            new_lines, n = _rewrite_lines(lines, indented=False)
            if n == 0:
                raise _RewriteFailed("nothing to rewrite")
            lines, whole_module_done = new_lines, True
            rewritten_lines = [(1, len(lines))]
            count += n
            continue
        start, end, new_lines, n = region
        lines[start:end] = new_lines
        rewritten_lines.append((start + 1, end))
        count += n
    else:
        raise _RewriteFailed("too many failing statements")
    try:
        _FStringRestorer(rewritten_lines).restore(tree)
    except RecursionError:
        raise _RewriteFailed("nesting too deep") from None
    return tree, count


FSTRING_OPENER = re.compile(r"(?<![\w])(?:[rR]?[fF]|[fF][rR])['\"]")


def _fstring_near(lines: list[str], error_line: int) -> bool:
    """Only an error at or just below an f-string opener can be a PEP 701 f-string."""
    if not 0 < error_line <= len(lines):
        return False
    start = max(0, error_line - 1 - REGION_LINES_UP)
    return any(FSTRING_OPENER.search(line) for line in lines[start:error_line])


# ------------------------------------------------------------------------------------------------
# PEP 695 / 696 type parameters and ``type`` statements (3.12, 3.13).

TYPE_PARAMS_OPENER = re.compile(r"^(\s*(?:async\s+)?(?:def|class)\s+[A-Za-z_]\w*\s*)\[")
TYPE_ALIAS = re.compile(r"^(\s*)(type\s+)([A-Za-z_]\w*)(\s*)(?=[\[=])")
TYPE_LINES_UP = 3  # the parser may report a multi-line parameter list below its opener


def _blank_type_parameters(lines: list[str], error_line: int) -> bool:
    """Blank the type-parameter list of the ``def``/``class``/``type`` statement at or just above
    ``error_line`` (in place, same lines and columns); True when something was rewritten."""
    if not 0 < error_line <= len(lines):
        return False
    for i in range(error_line - 1, max(-1, error_line - 1 - TYPE_LINES_UP), -1):
        line = lines[i]
        alias = TYPE_ALIAS.match(line)
        if alias:
            # "type A[T] = v" -> "A      [T] = v" (the name keeps its statement's indentation)
            indent, kw, name, gap = alias.groups()
            line = indent + name + " " * (len(kw) + len(gap)) + line[alias.end():]
            lines[i] = line
            bracket = line.find("[", len(indent) + len(name))
            if bracket != -1 and not line[len(indent) + len(name):bracket].strip():
                _blank_brackets(lines, i, bracket)
            return True
        opener = TYPE_PARAMS_OPENER.match(line)
        if opener:
            return _blank_brackets(lines, i, opener.end() - 1)
    return False


def _blank_brackets(lines: list[str], row: int, col: int) -> bool:
    """Replace ``[...]`` starting at lines[row][col] by spaces, skipping over strings and comments
    inside it; a newline inside becomes an explicit line continuation, so that the statement stays
    one logical line once the brackets are gone."""
    depth, quote, r, c = 0, "", row, col
    while r < len(lines):
        line = lines[r]
        while c < len(line):
            ch = line[c]
            if quote:
                if ch == "\\":
                    c += 2
                    continue
                if line.startswith(quote, c):
                    c += len(quote) - 1
                    quote = ""
            elif ch in "\"'":
                quote = line[c:c + 3] if line[c:c + 3] in ('"""', "'''") else ch
                c += len(quote) - 1
            elif ch == "#":
                break
            elif ch in "[(":
                depth += 1
            elif ch in "])":
                depth -= 1
                if depth == 0:
                    _blank_span(lines, row, col, r, c)
                    return True
            c += 1
        r, c = r + 1, 0
        if quote and len(quote) == 1:
            return False  # an unterminated one-line string: not a parameter list we understand
    return False


def _blank_span(lines: list[str], r0: int, c0: int, r1: int, c1: int) -> None:
    for r in range(r0, r1 + 1):
        line = lines[r]
        start = c0 if r == r0 else 0
        end = c1 + 1 if r == r1 else len(line)
        tail = line[end:] if r == r1 else " \\"
        lines[r] = line[:start] + " " * (end - start) + tail


# ------------------------------------------------------------------------------------------------
# Step 4: what parses, statement by statement.

MAX_STATEMENT_MERGE = 8  # a top-level statement may span this many column-0 lines (strings, decorators)
DEDENT_CONTINUATIONS = re.compile(r"^(else|elif|except|finally|case)\b|^[)\]}]")


def _parse_statements(text: str, filename: str, first_error: str) -> ParsedSource:
    """Parse ``text`` one top-level statement at a time; keep what parses, name what does not."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    starts = _statement_starts(text, lines)
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    starts.append(len(lines))
    body: list[ast.stmt] = []
    bad: list[tuple[int, int]] = []
    count, i, budget = 0, 0, REPARSE_CHAR_BUDGET
    while i < len(starts) - 1:
        for j in range(i + 1, min(i + 1 + MAX_STATEMENT_MERGE, len(starts))):
            chunk = "\n".join(lines[starts[i]:starts[j]])
            budget -= len(chunk)
            tree, n = _parse_chunk(chunk, filename) if budget > 0 else (None, 0)
            if tree is not None:
                ast.increment_lineno(tree, starts[i])
                body += tree.body
                count += n
                i = j
                break
        else:
            bad.append((starts[i] + 1, starts[i + 1]))
            i += 1
    if not body:
        return ParsedSource(tree=None, error=f"not Python (or newer syntax than supported): {first_error}")
    merged = _merge_ranges(bad)
    ranges = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in merged[:10]) + (", ..." if len(merged) > 10 else "")
    noun = "line" if len(merged) == 1 and merged[0][0] == merged[0][1] else "lines"
    return ParsedSource(
        tree=ast.Module(body=body, type_ignores=[]),
        error=f"{noun} {ranges} could not be parsed ({first_error}); the rest was read",
        used_fallback=True,
        fstrings_rewritten=count,
        partial=True,
    )


def _statement_starts(text: str, lines: list[str]) -> list[int]:
    """0-based lines where a top-level statement may begin: from the tokenizer (so that lines
    inside a multi-line string never count), and past the point where it gives up, any line
    that starts in column 0."""
    starts: list[int] = []
    logical = 0  # 0-based line where the current logical line began
    at_start = True
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                at_start = True
            elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                if at_start:
                    logical = tok.start[0] - 1
                    if tok.start[1] == 0 and not DEDENT_CONTINUATIONS.match(tok.line):
                        starts.append(logical)
                at_start = False
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError, MemoryError):
        # lost from the logical line it was in (an unclosed bracket, a stray quote) to the end
        return starts + [i for i in range(logical + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "#")
                         and not DEDENT_CONTINUATIONS.match(lines[i])]
    return starts


def _parse_chunk(chunk: str, filename: str) -> tuple[ast.Module | None, int]:
    try:
        return ast.parse(chunk, filename=filename), 0
    except SyntaxError as err:
        try:
            return _parse_with_rewrites(chunk, filename, err.lineno or 0, str(err.msg))
        except _RewriteFailed:
            return None, 0
    except (ValueError, RecursionError, MemoryError):
        return None, 0


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _rewrite_lines(block: list[str], *, indented: bool) -> tuple[list[str], int]:
    """libcst (slow to import) only loads when some file needs the f-string rewrite."""
    from auditor.fstring_rewrite import rewrite_lines

    return rewrite_lines(block, indented=indented)


def _rewrite_region(lines: list[str], error_line: int) -> tuple[int, int, list[str], int] | None:
    """Find a small block of whole lines around ``error_line`` that libcst parses as statements,
    and rewrite its offending f-strings. Returns (start, end, new_lines, count) or None."""
    if not 0 < error_line <= len(lines):
        return None
    err = error_line - 1
    for start in range(err, max(-1, err - REGION_LINES_UP), -1):
        if not lines[start].strip():
            continue
        for end in range(err + 1, min(len(lines), err + REGION_LINES_DOWN) + 1):
            try:
                new_lines, n = _rewrite_lines(lines[start:end], indented=True)
            except _RewriteFailed:
                continue
            if n:
                return start, end, new_lines, n
    return None


class _FStringRestorer:
    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges

    def restore(self, node: ast.AST) -> None:
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST) and self._touched(item):
                        value[i] = self._convert(item)
                        self.restore(value[i])
            elif isinstance(value, ast.AST) and self._touched(value):
                setattr(node, field, self._convert(value))
                self.restore(getattr(node, field))

    def _touched(self, node: ast.AST) -> bool:
        start = getattr(node, "lineno", None)
        if start is None:  # arguments, comprehension, ...: look inside
            return True
        end = getattr(node, "end_lineno", None) or start
        return any(start <= hi and end >= lo for lo, hi in self.ranges)

    def _convert(self, node: ast.AST) -> ast.AST:
        if not _is_marker(node, FSTRING_MARK):
            return node
        return self._joined(node, node)

    def _joined(self, call: ast.Call, where: ast.AST) -> ast.JoinedStr:
        values: list[ast.expr] = []
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if not arg.value:
                    continue
                if values and isinstance(values[-1], ast.Constant):
                    values[-1].value += arg.value  # adjacent literal pieces merge, as in CPython
                    continue
                values.append(ast.copy_location(ast.Constant(value=arg.value), where))
            elif _is_marker(arg, FVALUE_MARK) and len(arg.args) == 3:
                value, conversion, spec = arg.args
                value = self._convert(value)  # the expression may itself be a rewritten f-string
                self.restore(value)
                fmt = self._joined(spec, where) if _is_marker(spec, FSTRING_MARK) else None
                # -1 ("no conversion") parses as a unary minus, not as a Constant
                conv = conversion.value if isinstance(conversion, ast.Constant) else -1
                formatted = ast.FormattedValue(value=value, conversion=conv, format_spec=fmt)
                values.append(ast.copy_location(formatted, where))
            else:  # not produced by our rewrite; keep rather than lose it
                values.append(arg)
        return ast.copy_location(ast.JoinedStr(values=values), where)


def _is_marker(node: ast.AST, name: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
        and not node.keywords
    )
