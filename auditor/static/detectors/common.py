"""Helpers shared by the detectors: grouping events by site, loop kinds, event ordering."""

from __future__ import annotations

import ast
from collections import defaultdict

from auditor.static.analysis import pos
from auditor.static.events import Event
from auditor.static.program import FuncInfo, depends_on, dotted, names_in, target_names
from auditor.static.values import ATT, CALLRES, VAL

LOGGING_HINTS = ("log", "print", "format", "write", "info", "debug", "warn")


def group_by_site(events: list[Event]) -> dict[tuple, list[Event]]:
    """Events of the same statement reached through different call paths."""
    out: dict[tuple, list[Event]] = defaultdict(list)
    for ev in events:
        out[(ev.file.idx, id(ev.node))].append(ev)
    return out


def is_score_candidate(ev: Event) -> bool:
    """A score commit: per-token losses of validation data accumulated into what the function
    returns (the reported val_loss), not bookkeeping of a training loss."""
    if ev.kind != "score" or not ev.info.get("reported", True) or ev.info.get("in_module"):
        return False
    return ATT in ev.labels or (CALLRES in ev.labels and VAL in ev.labels)


def common_prefix(a: Event, b: Event) -> int:
    k = 0
    while k < len(a.frames) and k < len(b.frames) and a.frames[k].key() == b.frames[k].key():
        k += 1
    return k


def _inside(func: FuncInfo, node: ast.AST, container: ast.AST) -> bool:
    parents = func.parents()
    cur = node
    while cur is not None:
        if cur is container:
            return True
        cur = parents.get(id(cur))
    return False


def order_in_common_loop(first: Event, second: Event):
    """If ``first`` and ``second`` meet in a loop body (same function, common loop), return
    ``(k, loops, first_before_second)``; else None. ``first``'s anchor may move up to the statement
    that computed the accumulated value (a score is committed when its value is computed)."""
    if first.frames[0].func is not second.frames[0].func:
        return None
    k = common_prefix(first, second)
    if k >= len(first.frames) or k >= len(second.frames):
        return None
    f1, f2 = first.frames[k], second.frames[k]
    if f1.func is not f2.func:
        return None
    shared = [lp for fr in first.frames[:k] for lp in fr.loops]
    common = [lp for lp in f1.loops if any(lp is m for m in f2.loops)]
    loops = shared + common
    if not loops:
        return None
    a1 = pos(f1.anchor)
    if k == len(first.frames) - 1 and first.kind == "score":
        inner = common[-1] if common else None
        for b in first.info.get("binds", []):
            if inner is None or _inside(f1.func, b, inner):
                a1 = min(a1, pos(b))
    return k, loops, a1 < pos(f2.anchor)


def loop_var_names(loop: ast.AST) -> set[str]:
    if isinstance(loop, (ast.For, ast.AsyncFor)):
        return set(target_names(loop.target))
    if isinstance(loop, ast.comprehension):
        return set(target_names(loop.target))
    if isinstance(loop, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        out: set[str] = set()
        for g in loop.generators:
            out |= set(target_names(g.target))
        return out
    return set()


def is_repeat_loop(func: FuncInfo, loop: ast.AST, user_functions: frozenset[str] = frozenset()) -> bool:
    """A loop whose iteration variable never selects data (``for epoch in range(E)``): each
    iteration revisits the same tokens. The variable selects data when it reaches a subscript
    index/slice or an argument of a user-defined function; learning-rate schedules and logging
    (``cos(pi * epoch / E)``, ``log(f"{epoch}")``) do not count. While-loops are data loops."""
    if not isinstance(loop, (ast.For, ast.AsyncFor)):
        return False
    loop_vars = loop_var_names(loop)
    if not loop_vars:
        return True
    used: set[str] = set()
    for node in ast.walk(loop):
        if node is loop.iter:
            continue
        if isinstance(node, ast.Subscript) and not isinstance(node.ctx, ast.Store):
            used |= names_in(node.slice)
        elif isinstance(node, ast.Call):
            fname = (dotted(node.func) or "").rsplit(".", 1)[-1]
            if fname not in user_functions or any(h in fname.lower() for h in LOGGING_HINTS):
                continue
            for a in node.args:
                used |= names_in(a)
            for kw in node.keywords:
                used |= names_in(kw.value)
    return not depends_on(func, used, loop_vars)


def guard_uses_loop_var(func: FuncInfo, test: ast.AST, loop: ast.AST) -> bool:
    loop_vars = loop_var_names(loop)
    return bool(loop_vars) and depends_on(func, names_in(test), loop_vars)


def snippet_of(ev: Event) -> str:
    return ev.file.snippet(ev.line) or ""
