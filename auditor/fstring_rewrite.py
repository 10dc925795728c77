"""The libcst half of ``auditor.pysource``: rewrite PEP 701 f-strings that Python 3.11 cannot
parse into marker calls with the same lines (``pysource._FStringRestorer`` turns them back).

Imported only when a file needs it: libcst takes a noticeable part of a second to import.
"""

from __future__ import annotations

import ast

import libcst as cst

from auditor.pysource import FSTRING_MARK, FVALUE_MARK, _RewriteFailed


def rewrite_lines(block: list[str], *, indented: bool) -> tuple[list[str], int]:
    """Rewrite the offending f-strings of ``block`` (whole lines); same number of lines out."""
    code = "\n".join(block) + "\n"
    # An indented block parses as the body of a dummy `if`; the extra first line is dropped after.
    wrap = indented and block[0][:1] in (" ", "\t")
    try:
        module = cst.parse_module("if 1:\n" + code if wrap else code)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001 - ParserSyntaxError, and pyo3 panics (BaseException)
        raise _RewriteFailed(str(err)) from None
    rewriter = _FStringRewriter()
    try:
        new_code = module.visit(rewriter).code
    except RecursionError:
        raise _RewriteFailed("nesting too deep") from None
    if wrap:
        new_code = new_code.split("\n", 1)[1]
    new_lines = new_code.split("\n")[:-1]
    if len(new_lines) != len(block):
        raise _RewriteFailed("line count changed")
    return new_lines, rewriter.count


class _FStringRewriter(cst.CSTTransformer):
    """Replace each f-string that 3.11 cannot parse by marker calls with the same newlines:

        f"a{x["k"]!r:>{w}}b"  ->  __pgolf_fstring__('a',__pgolf_fvalue__(x["k"],114,
                                      __pgolf_fstring__('>',__pgolf_fvalue__(w,-1,None))),'b')

    An implicit concatenation ("abc" f"{x["k"]}") becomes one call for the whole of it: libcst
    does not allow a call as one piece of a concatenation, and neither does Python.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._concat_pieces: set[int] = set()  # ids of (original) pieces of a concatenation
        self._inner_concats: set[int] = set()  # ids of concatenations nested in another one

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> bool:
        pieces, _ = _flatten_concat(node)
        self._concat_pieces.update(id(p) for p in pieces)
        if isinstance(node.right, cst.ConcatenatedString):
            self._inner_concats.add(id(node.right))
        return True

    def leave_FormattedString(self, original: cst.FormattedString, updated: cst.FormattedString):
        if id(original) in self._concat_pieces or _parses_on_this_python(_code(updated)):
            return updated  # handled with its concatenation, or the inner rewrites were enough
        self.count += 1
        return _marker_call(_fstring_args(updated), updated.lpar, updated.rpar, _code(original))

    def leave_ConcatenatedString(self, original: cst.ConcatenatedString, updated: cst.ConcatenatedString):
        if id(original) in self._inner_concats or _parses_on_this_python(_code(updated)):
            return updated
        pieces, gaps = _flatten_concat(updated)
        args = []
        for i, piece in enumerate(pieces):
            if isinstance(piece, cst.FormattedString):
                self.count += not _parses_on_this_python(_code(piece))
                piece_args = _fstring_args(piece)
            else:
                piece_args = _code(piece)  # a plain string literal, kept verbatim
            args.append((gaps[i - 1] if i else "") + piece_args)
        return _marker_call(
            ",".join(a for a in args if a.strip()), updated.lpar, updated.rpar, _code(original)
        )


def _marker_call(args: str, lpar, rpar, original_code: str) -> cst.BaseExpression:
    call = "".join(_code(p) for p in lpar) + f"{FSTRING_MARK}({args})" + "".join(_code(p) for p in rpar)
    if call.count("\n") != original_code.count("\n"):
        raise _RewriteFailed("rewrite changed the number of lines")
    return cst.parse_expression(call)


def _flatten_concat(node: cst.ConcatenatedString) -> tuple[list[cst.BaseExpression], list[str]]:
    pieces: list[cst.BaseExpression] = []
    gaps: list[str] = []
    current: cst.BaseExpression = node
    while isinstance(current, cst.ConcatenatedString):
        pieces.append(current.left)
        gaps.append(_code(current.whitespace_between))
        current = current.right
    pieces.append(current)
    return pieces, gaps


def _fstring_args(node: cst.FormattedString) -> str:
    quote = node.end
    prefix = node.start[: -len(quote)].replace("f", "").replace("F", "")
    return ",".join(_part_args(part, prefix, quote) for part in node.parts)


def _part_args(part: cst.BaseFormattedStringContent, prefix: str, quote: str) -> str:
    if isinstance(part, cst.FormattedStringText):
        return _text_arg(part.value, prefix, quote)
    assert isinstance(part, cst.FormattedStringExpression)
    expression = (
        _code(part.whitespace_before_expression)
        + _code(part.expression)
        + _code(part.whitespace_after_expression)
    )
    debug_text = ""
    if part.equal is not None:  # f"{x=}" shows the expression text, then its value
        debug_text = repr(expression + _code(part.equal)) + ","
    if part.conversion:
        conversion = ord(part.conversion)
    else:  # what CPython does: "=" without a format spec implies !r
        conversion = ord("r") if part.equal is not None and part.format_spec is None else -1
    spec = "None"
    if part.format_spec is not None:
        spec = f"{FSTRING_MARK}(" + ",".join(_part_args(p, prefix, quote) for p in part.format_spec) + ")"
    return f"{debug_text}{FVALUE_MARK}({expression},{conversion},{spec})"


def _text_arg(raw: str, prefix: str, quote: str) -> str:
    """A literal-text piece as a one-line str literal, followed by the newlines it spanned."""
    raw_unbraced = raw.replace("{{", "{").replace("}}", "}")
    value = raw_unbraced
    if "r" not in prefix.lower():
        try:
            value = ast.literal_eval(quote + raw_unbraced + quote)
        except (SyntaxError, ValueError):
            value = raw_unbraced  # e.g. a trailing backslash; the exact text matters little here
    return repr(value) + "\n" * raw.count("\n")


def _code(node: cst.CSTNode) -> str:
    return _EMPTY_MODULE.code_for_node(node)


_EMPTY_MODULE = cst.Module(body=[])


def _parses_on_this_python(expression_code: str) -> bool:
    try:
        ast.parse(expression_code, mode="eval")
        return True
    except (SyntaxError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------
# Step 3: turn the marker calls back into JoinedStr nodes (only inside the rewritten lines).
