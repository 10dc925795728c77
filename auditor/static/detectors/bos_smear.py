"""C103 previous-token mixing across document boundaries (SmearGate without a BOS mask).

Recognised shapes (any names, any axis, numpy or torch, one-liners alike):
- ``x[:, 1:] + g * x[:, :-1]`` (often inside ``cat([x[:, :1], ...], dim=1)``);
- a shifted copy ``prev = cat([zeros_like(x[:, :1]), x[:, :-1]], 1)`` / ``F.pad(x[:, :-1], (0, 0, 1, 0))``
  / ``roll(x, 1, 1)`` mixed back into ``x`` (``(1 - g) * x + g * prev``);

Not a smear: hashed features of token-id pairs (``(prev * p + ids * q) % buckets``, ``a ^ b``) feeding an
embedding table. They are input features over tokens < t, not a mix of hidden states, and the
SmearGate ruling is about hidden states; an expression under a hash reduction is never reported.

The mixing is BOS-masked when a comparison of token ids with a constant or a BOS id
(``input_ids[:, 1:] == BOS_ID``, ``!= 1``) flows into it, in the same function or in the
arguments its callers pass. Severity follows the ruling's date: PR #1797 (2026-04-24) was the
first submission blocked for it; earlier submissions get an info note.
"""

from __future__ import annotations

import ast

from auditor.models import Confidence, Severity
from auditor.static.analysis import Analysis
from auditor.static.program import FuncInfo, depends_on, names_in, target_names

RULING_DATE = "2026-04-24"


def _slice_at(sl: ast.AST):
    """(axis, kind) for an index like ``[:, 1:]`` / ``[..., :-1]`` / ``[:, :-1, :]``; kind 'cur' or 'prev'."""
    elts = sl.elts if isinstance(sl, ast.Tuple) else [sl]
    found = None
    for axis, e in enumerate(elts):
        if isinstance(e, ast.Slice) and e.step is None:
            lo, up = e.lower, e.upper
            if _int(lo) == 1 and up is None:
                kind = "cur"
            elif lo is None and _int(up) == -1:
                kind = "prev"
            elif lo is None and up is None:
                continue
            else:
                return None
            if found is not None:
                return None
            ellipsis = any(isinstance(x, ast.Constant) and x.value is Ellipsis for x in elts[:axis])
            found = ((-len(elts) + axis) if ellipsis else axis, kind)
        elif isinstance(e, ast.Constant) and e.value is Ellipsis:
            continue
        else:
            return None
    return found


def _int(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
    ):
        return -node.operand.value
    return None


def _shifted(node: ast.AST, kind: str):
    """Subscripts of kind 'cur'/'prev' inside ``node``: [(base_dump, axis, subscript)]."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Subscript):
            s = _slice_at(n.slice)
            if s is not None and s[1] == kind:
                out.append((ast.dump(n.value), s[0], n))
    return out


def _prev_copies(func: FuncInfo) -> dict[str, str]:
    """Names bound to a one-step-shifted copy of a tensor: name -> dump of the shifted tensor."""
    out = {}
    for node in func.all_nodes():
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        names = target_names(node.targets[0])
        if len(names) != 1:
            continue
        v = node.value
        if isinstance(v, ast.Call):
            fname = ast.unparse(v.func).rsplit(".", 1)[-1]
            if fname in ("cat", "concatenate", "pad", "stack") and _shifted(v, "prev"):
                base = _shifted(v, "prev")[0][0]
                out[names[0]] = base
            elif fname == "roll" and v.args:
                shift = (
                    v.args[1]
                    if len(v.args) > 1
                    else next((k.value for k in v.keywords if k.arg == "shifts"), None)
                )
                if _int(shift) == 1:
                    tensor = (
                        v.args[0]
                        if not isinstance(v.func, ast.Attribute) or fname != "roll" or len(v.args) > 2
                        else v.func.value
                    )
                    if isinstance(v.func, ast.Attribute) and ast.unparse(v.func.value) not in (
                        "torch",
                        "np",
                        "numpy",
                    ):
                        tensor = v.func.value
                    out[names[0]] = ast.dump(tensor)
    return out


def _bos_mask_names(func: FuncInfo) -> set[str]:
    names = set()
    for node in func.all_nodes():
        if isinstance(node, ast.Assign) and any(_is_bos_compare(c) for c in ast.walk(node.value)):
            for t in node.targets:
                names |= set(target_names(t))
    return names


def _is_bos_compare(node: ast.AST) -> bool:
    if (
        not isinstance(node, ast.Compare)
        or len(node.ops) != 1
        or not isinstance(node.ops[0], (ast.Eq, ast.NotEq))
    ):
        return False
    sides = [node.left, node.comparators[0]]
    const_side = [
        s
        for s in sides
        if (isinstance(s, ast.Constant) and isinstance(s.value, int) and not isinstance(s.value, bool))
        or isinstance(s, (ast.Name, ast.Attribute))
    ]
    data_side = [s for s in sides if isinstance(s, (ast.Subscript, ast.Name, ast.Attribute, ast.Call))]
    return (
        bool(const_side)
        and bool(data_side)
        and any(isinstance(s, (ast.Subscript, ast.Call)) or s is node.left for s in data_side)
    )


def _masked(an: Analysis, func: FuncInfo, expr: ast.AST) -> bool:
    if any(_is_bos_compare(n) for n in ast.walk(expr)):
        return True
    masks = _bos_mask_names(func)
    used = names_in(expr)
    if masks and depends_on(func, used, masks):
        return True
    # a mask built by the caller and passed in as an argument
    params = set(func.params) - {"self"}
    if used & params or depends_on(func, used, params):
        for edge in an.interp.edges.get(func.id, []):
            caller = edge.caller
            cmasks = _bos_mask_names(caller)
            call = edge.node
            if isinstance(call, ast.Call):
                arg_names = set()
                for a in list(call.args) + [k.value for k in call.keywords]:
                    arg_names |= names_in(a)
                    if any(_is_bos_compare(n) for n in ast.walk(a)):
                        return True
                if cmasks and depends_on(caller, arg_names, cmasks):
                    return True
    return False


def _has_shifts(func: FuncInfo) -> bool:
    kinds = set()
    for n in func.all_nodes():
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, (ast.Attribute, ast.Name))
            and (n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id) == "roll"
        ):
            return True
        if isinstance(n, ast.Subscript) and isinstance(n.slice, (ast.Slice, ast.Tuple)):
            sa = _slice_at(n.slice)
            if sa is not None:
                kinds.add(sa[1])
                if len(kinds) == 2:
                    return True
    return "prev" in kinds


def _smears(func: FuncInfo):
    """(node, kind) for each previous-token mixing expression in ``func``."""
    if not _has_shifts(func):
        return
    prev_copies = _prev_copies(func)
    # Everything under a hash reduction (mod a bucket count, xor) combines token ids: skip it.
    seen = {
        id(n)
        for node in func.all_nodes()
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitXor, ast.Mod))
        for n in ast.walk(node)
    }
    for node in func.all_nodes():
        if not isinstance(node, ast.BinOp):
            continue
        if isinstance(node.op, (ast.Add, ast.Sub)):
            left_cur, right_prev = _shifted(node.left, "cur"), _shifted(node.right, "prev")
            right_cur, left_prev = _shifted(node.right, "cur"), _shifted(node.left, "prev")
            pairs = [(c, p) for c in left_cur + right_cur for p in right_prev + left_prev]
            if any(c[0] == p[0] and c[1] == p[1] for c, p in pairs) and id(node) not in seen:
                seen.add(id(node))
                yield node, "smear"
                continue
            if prev_copies:
                lnames, rnames = names_in(node.left), names_in(node.right)
                for pname, base in prev_copies.items():
                    other = lnames if pname in rnames else (rnames if pname in lnames else None)
                    if other is None:
                        continue
                    base_names = (
                        {n.id for n in ast.walk(ast.parse(_undump_name(base))) if isinstance(n, ast.Name)}
                        if _undump_name(base)
                        else set()
                    )
                    if base_names & other and id(node) not in seen:
                        seen.add(id(node))
                        yield node, "smear"
                        break


def _undump_name(dump: str) -> str | None:
    # bases are usually plain names: Name(id='x', ctx=Load())
    if dump.startswith("Name(id='"):
        return dump[len("Name(id='") :].split("'", 1)[0]
    return None


def detect(an: Analysis) -> list:
    out = []
    date = (an.submission_date() or "")[:10]
    in_scope = set(an.interp.module_env)
    for func in an.program.funcs:
        if func.file.idx not in in_scope or func.kind in ("module", "classbody"):
            continue
        for node, kind in _smears(func):
            if _masked(an, func, node):
                continue
            reach = an.reach_node(func, node)
            loc = an.node_loc(func, node)
            what = "previous-token smear of hidden states"
            if not date:
                sev = Severity.WARNING
                when = "the submission date is unknown; the ruling applies from 2026-04-24 (PR #1797)"
            elif date >= RULING_DATE:
                sev = Severity.ERROR
                when = f"submitted {date}, after the ruling (PR #1797, {RULING_DATE})"
            else:
                sev = Severity.INFO
                when = f"submitted {date}, before the ruling (PR #1797, {RULING_DATE}); noted for context"
            msg = (
                f"{what[0].upper() + what[1:]} at line {node.lineno} in `{func.name}` has no BOS mask: the first "
                f"token of each document is mixed with the last token of the previous document ({when})."
            )
            out.append(
                an.make(
                    "C103",
                    msg,
                    location=loc,
                    path=[loc],
                    reach=reach,
                    confidence=Confidence.STRONG,
                    severity=sev,
                    data={"kind": kind, "function": func.qualname},
                )
            )
    return out
