"""C301 train-before-score, C302 SLOT, C401 multi-pass / rescoring, from the order of events.

A *state update* is a backward pass on a loss of validation tokens (then an optimizer step), or a
write into a table keyed by validation tokens. It is legal when it is *score-first*: some enclosing
loop that walks the validation data (chunks, windows, document batches) contains, earlier in the
same iteration, the commit of the scores of those tokens - possibly inside helpers, possibly in an
outer frame (phased global SGD runs after the phase's documents were scored in the same loop).

- No score-first loop at all -> C301 (pre-quant TTT, adaptation passes before the eval).
- In a data loop the update comes *before* the score of the same iteration -> C301, or C302 when
  the optimized tensors are per-window tensors created in the eval (delta / logit bias: SLOT).
  SLOT whose loss only covers the already-scored context (``[:s]``) is reported as a warning.
- Score-first, but an enclosing *repeat* loop (epochs over the same tokens) contains both, or the
  score is only accumulated when the epoch variable says "last epoch" -> C401.
- A table keyed by validation tokens filled outside any scoring loop, then read by scores -> C401
  (statistics over the whole validation stream built before scoring, two-pass rescoring).
"""

from __future__ import annotations

import ast

from auditor.models import Confidence, Severity
from auditor.static.analysis import Analysis, pos
from auditor.static.detectors.common import (
    group_by_site,
    guard_uses_loop_var,
    is_repeat_loop,
    is_score_candidate,
    order_in_common_loop,
)
from auditor.static.events import Event
from auditor.static.program import names_in
from auditor.static.values import LOCALPARAM, STATE, TRAIN, VAL


def detect(an: Analysis) -> list:
    out = []
    scores = [ev for ev in an.events if is_score_candidate(ev)]
    steps = [ev for ev in an.events if ev.kind == "step"]
    backwards = [
        ev for ev in an.events if ev.kind == "backward" and VAL in ev.labels and TRAIN not in ev.labels
    ]
    for evs in group_by_site(backwards).values():
        f = _judge_update(an, evs, scores, steps, kind="train")
        if f is not None:
            out.append(f)
    updates = [ev for ev in an.events if ev.kind == "update" and VAL in ev.labels]
    reads = [ev for ev in an.events if ev.kind == "tread"]
    for evs in group_by_site(updates).values():
        f = _judge_table(an, evs, reads, scores)
        if f is not None:
            out.append(f)
    return out


def _short_path(an: Analysis, ev: Event, cite: list[Event]) -> list:
    """Evidence: where the validation tokens come from, how they reach the update's function, the
    update itself, then the scores it is ordered against."""
    chain = ev.labels.get(VAL, ()) or ev.labels.get(LOCALPARAM, ())
    steps = list(chain[:2])
    inside = [st for st in chain if st.file == ev.file.idx and ev.func.line <= st.line <= ev.line]
    steps += inside[-2:]
    path = an.path(tuple(steps), sink=an.event_loc(ev))
    for c in cite:
        loc = an.event_loc(c, role="via")
        loc.snippet = f"{loc.snippet}  # {'score committed' if c.kind == 'score' else 'table read'}"
        path.append(loc)
    return path


def _same_table(update: Event, read: Event) -> bool:
    a, b = update.info.get("table"), read.info.get("table")
    return a is None or b is None or a == b or a.split(".")[-1] == b.split(".")[-1]


def _guard_only(read: Event) -> bool:
    """A table read whose value is only tested to raise (a run-time "already scored?" guard) is
    bookkeeping, not a read for a score: ``ok = seen[pos] > 0`` used only in ``if not ok: raise``."""
    func = read.func.node
    stmt = next((n for n in ast.walk(func) if isinstance(n, ast.Assign) and n.lineno <= read.line
                 <= (n.end_lineno or n.lineno) and read.node in set(ast.walk(n.value))), None)
    if stmt is None or len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
        return False
    name = stmt.targets[0].id
    uses = [n for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
    if not uses:
        return False
    guards = [n for n in ast.walk(func) if isinstance(n, ast.If) and all(isinstance(b, ast.Raise) for b in n.body)
              and not n.orelse]
    asserts = [n for n in ast.walk(func) if isinstance(n, ast.Assert)]
    guarded = {id(u) for g in guards for u in ast.walk(g.test)} | {id(u) for a in asserts for u in ast.walk(a.test)}
    return all(id(u) in guarded for u in uses)


def _bookkeeping(read: Event, update: Event) -> bool:
    """A read that only serves the update itself: inside the updating statement (``row[y] =
    row.get(y, 0) + 1``), in the test of an ``if`` around it (``if row[y] > best[ctx][1]:
    best[ctx] = ...``), or held in a name used only there (``b = best.get(ctx)`` then ``if b is
    None or ...:``). Such a read neither shows that the table was read for a score before the
    update nor after it."""
    if read.func is not update.func:
        return False
    func = read.func.node
    nodes = {id(n) for n in ast.walk(func)}
    if id(read.node) not in nodes or id(update.node) not in nodes:
        return False
    zones: list[ast.AST] = []  # where a read serves the update
    for n in ast.walk(func):
        if isinstance(n, (ast.Assign, ast.AugAssign, ast.Expr)) and any(m is update.node for m in ast.walk(n)):
            zones.append(n)
        elif isinstance(n, ast.If) and any(m is update.node for b in n.body for m in ast.walk(b)):
            zones.append(n.test)
    inside = {id(m) for z in zones for m in ast.walk(z)}
    if id(read.node) in inside:
        return True
    holder = next((n for n in ast.walk(func) if isinstance(n, ast.Assign) and len(n.targets) == 1
                   and isinstance(n.targets[0], ast.Name) and any(m is read.node for m in ast.walk(n.value))), None)
    if holder is None:
        return False
    name = holder.targets[0].id
    loads = [n for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
    return bool(loads) and all(id(u) in inside for u in loads)


def _feeds_a_score_after(read: Event, scores: list[Event]) -> bool:
    """Whether a score of the same loop iteration comes after this read, so that it can use it.
    A read after every score of its iteration (the update's own bookkeeping: the running best of
    a context, after the token was scored) only serves later iterations, which is score-first.
    With no score in a loop it shares, it is taken to feed one (the conservative reading)."""
    orders = [order_in_common_loop(s, read) for s in scores]
    shared = [o for o in orders if o is not None]
    return not shared or any(not score_first for _, _, score_first in shared)


def _judge_table(an: Analysis, evs: list[Event], reads: list[Event], scores: list[Event]):
    """A table keyed by validation tokens must only be read for scoring *before* it is updated
    with those tokens (in the same iteration), and never be filled from the whole stream first."""
    verdicts = []
    reads = [r for r in reads if not _guard_only(r)]
    for ev in evs:
        relevant = [r for r in reads if _same_table(ev, r) and r.frames[0].func is ev.frames[0].func]
        read_after_in_loop = None
        read_before_in_loop = False
        bookkeeping = False  # read after the update, but after every score of the iteration too
        for r in relevant:
            if _bookkeeping(r, ev):
                continue  # the update's own reads (an increment, the running-best test)
            res = order_in_common_loop(ev, r)
            if res is None:
                continue
            if not res[2]:
                read_before_in_loop = True
            elif _feeds_a_score_after(r, scores):
                read_after_in_loop = read_after_in_loop or r
            else:
                bookkeeping = True
        if read_after_in_loop is not None and not read_before_in_loop:
            r = read_after_in_loop
            verdicts.append(
                {
                    "rule": "C301",
                    "event": ev,
                    "cite": [r],
                    "confidence": Confidence.STRONG,
                    "message": (
                        f"Inside the loop over validation data a table is updated with the current "
                        f"tokens (line {ev.line}) before it is read for their scores (line {r.line}): "
                        f"each token's own count is in the table when it is scored (C3)."
                    ),
                }
            )
            continue
        if read_before_in_loop or read_after_in_loop is not None or bookkeeping:
            return None  # score-first cache
        later = [r for r in relevant if r.order > ev.order]
        if not later:
            continue
        scored_after = [
            s
            for s in scores
            if s.order > ev.order and STATE in s.labels and s.frames[0].func is ev.frames[0].func
        ]
        cite = [later[0]] + scored_after[:1]
        verdicts.append(
            {
                "rule": "C401",
                "event": ev,
                "cite": cite,
                "confidence": Confidence.STRONG,
                "message": (
                    f"A table keyed by validation tokens is filled at line {ev.line} outside any "
                    f"score-first loop, and read afterwards to score tokens (line {later[0].line}): "
                    f"statistics of the validation stream, including the tokens being scored, are "
                    f"built before scoring (C4; two-pass / full rescoring)."
                ),
            }
        )
    if not verdicts:
        return None
    v = verdicts[0]
    ev = v["event"]
    reach = an.reach_events([x["event"] for x in verdicts])
    sink = an.event_loc(ev)
    path = _short_path(an, ev, v["cite"])
    return an.make(v["rule"], v["message"], location=sink, path=path, reach=reach, confidence=v["confidence"])


def _judge_update(an: Analysis, evs: list[Event], scores: list[Event], steps: list[Event], kind: str):
    verdicts = []
    for ev in evs:
        verdicts.append(_judge_one(an, ev, scores, steps, kind))
    # the site is fine if some path through it is fine
    if any(v is None for v in verdicts):
        return None
    # prefer the most specific explanation
    order = {"C302": 0, "C401-epochs": 1, "C401-last": 1, "C301-inloop": 2, "C401-stream": 3, "C301": 4}
    verdicts.sort(key=lambda v: order.get(v["rule"], 9))
    v = verdicts[0]
    ev = v["event"]
    reach = an.reach_events([x["event"] for x in verdicts])
    sink = an.event_loc(ev)
    path = _short_path(an, ev, v.get("cite", []))
    return an.make(
        v["rule"].split("-")[0],
        v["message"],
        location=sink,
        path=path,
        reach=reach,
        confidence=v["confidence"],
        data=v.get("data", {}),
        severity=v.get("severity"),
    )


def _judge_one(an: Analysis, ev: Event, scores: list[Event], steps: list[Event], kind: str):
    """None when score-first; otherwise a dict describing the violation."""
    before: list[tuple[Event, tuple]] = []
    after: list[tuple[Event, tuple]] = []
    for s in scores:
        r = order_in_common_loop(s, ev)
        if r is None:
            continue
        k, loops, s_first = r
        (before if s_first else after).append((s, (k, loops)))
    what = (
        "an optimizer step on validation tokens"
        if kind == "train"
        else "a table keyed by validation tokens is written"
    )
    if kind == "train" and not after and not before and _throwaway(ev, steps):
        return None  # a fresh adapter trained and then discarded (compile warm-up): no scored state changes
    fn = ev.func
    for s, (k, loops) in before:
        # score-first in a loop; but is an enclosing repeat loop revisiting the same tokens?
        for lp, lfunc in _loops_with_funcs(ev, k, loops):
            if is_repeat_loop(lfunc, lp, _user_functions(an)) and _contains_loop_of(s, lp):
                last_guard = _guard_on(s, lp, lfunc)
                if last_guard is not None:
                    return {
                        "rule": "C401-last",
                        "event": ev,
                        "cite": [s],
                        "confidence": Confidence.STRONG,
                        "message": (
                            f"The loss is accumulated only when `{ast.unparse(last_guard.test)[:60]}` "
                            f"(line {last_guard.line}) inside a loop over epochs (line {lp.lineno}) that "
                            f"also trains on the same validation tokens (line {ev.line}): the reported "
                            f"score comes from the last of several passes, after the tokens were "
                            f"trained on (C4, and C3)."
                        ),
                    }
                later = [
                    x
                    for x in scores
                    if x.order > ev.order
                    and x.frames[0].func is ev.frames[0].func
                    and not _contains_loop_of(x, lp)
                ]
                if not s.info.get("returned") and later:
                    # the pass loop only logs its training loss; the reported score comes later
                    return {
                        "rule": "C301",
                        "event": ev,
                        "cite": [later[0]],
                        "confidence": Confidence.STRONG,
                        "message": (
                            f"The model is trained on validation tokens for several passes (backward at line "
                            f"{ev.line}, in `{ev.func.name}`, loop at line {lp.lineno}); the loss logged there is "
                            f"bookkeeping, and the reported score is computed afterwards (line {later[0].line}) "
                            f"on tokens the model was already trained on (C3; pre-quant / pre-eval TTT)."
                        ),
                    }
                return {
                    "rule": "C401-epochs",
                    "event": ev,
                    "cite": [s],
                    "confidence": Confidence.STRONG,
                    "message": (
                        f"Scores are committed (line {s.line}) inside a loop over repeated passes "
                        f"(line {lp.lineno}) that also contains {what} (line {ev.line}): from the second "
                        f"pass on, tokens are scored again after the state was updated with them (C4)."
                    ),
                }
    if before:
        return None  # score-first: every update follows the scores of its iteration
    later = [s for s in scores if s.order > ev.order and s.frames[0].func is ev.frames[0].func]
    if after:
        s, (k, loops) = after[0]
        slot = kind == "train" and _optimizes_local_tensors(ev, steps)
        if slot:
            context_only = _context_only(an, ev, s)
            if context_only:
                return {
                    "rule": "C302",
                    "event": ev,
                    "cite": [s],
                    "confidence": Confidence.HEURISTIC,
                    "severity": Severity.WARNING,
                    "message": (
                        f"Per-window tensors are optimized (line {ev.line}) before the window is scored "
                        f"(line {s.line}), with a loss restricted to the already-scored context: "
                        f"'causal/context-only SLOT' has no ruling (Issue #1336) and is high-risk."
                    ),
                }
            return {
                "rule": "C302",
                "event": ev,
                "cite": [s],
                "confidence": Confidence.STRONG,
                "message": (
                    f"SLOT: per-window tensors created in the eval (delta / bias) are optimized with a "
                    f"loss over the window's targets (line {ev.line}) and the same positions are then "
                    f"scored with them (line {s.line}): each score uses parameters fitted to the token "
                    f"being scored (C1/C3)."
                ),
            }
        return {
            "rule": "C301-inloop",
            "event": ev,
            "cite": [s],
            "confidence": Confidence.STRONG,
            "message": (
                f"Inside the loop over validation data, {what} (line {ev.line}) before the same "
                f"iteration's tokens are scored (line {s.line}): state is updated with tokens before "
                f"their score is committed (C3)."
            ),
        }
    if kind == "train":
        if not later:
            return {
                "rule": "C301",
                "event": ev,
                "confidence": Confidence.HEURISTIC,
                "message": (
                    f"Backward/optimizer steps on a loss of validation tokens (line {ev.line}) with no "
                    f"score of those tokens committed before them; no later scoring was found either "
                    f"(C3: no training on validation tokens before they are scored)."
                ),
            }
        return {
            "rule": "C301",
            "event": ev,
            "cite": [later[0]],
            "confidence": Confidence.STRONG,
            "message": (
                f"The model is trained on validation tokens (backward at line {ev.line}, in "
                f"`{fn.name}`) before those tokens are scored: no score is committed before the update "
                f"in any enclosing loop, and the validation set is scored afterwards (line "
                f"{later[0].line}) with the adapted weights (C3; pre-quant / pre-eval TTT)."
            ),
        }
    # table writes outside any scoring loop: statistics of the stream built before scoring
    readers = [s for s in later if STATE in s.labels]
    if not readers:
        return None
    return {
        "rule": "C401-stream",
        "event": ev,
        "cite": [readers[0]],
        "confidence": Confidence.STRONG,
        "message": (
            f"A table keyed by validation tokens is filled at line {ev.line} outside any score-first "
            f"loop, and scores committed later (line {readers[0].line}) read it: statistics of the "
            f"validation stream (including the tokens being scored) are built before scoring (C4; "
            f"two-pass / full rescoring)."
        ),
    }


def _user_functions(an: Analysis) -> frozenset[str]:
    names = getattr(an, "_user_function_names", None)
    if names is None:
        names = frozenset(f.name for f in an.program.funcs if f.kind not in ("module", "classbody"))
        an._user_function_names = names
    return names


def _loops_with_funcs(ev: Event, k: int, loops: list):
    out = []
    for fr in ev.frames[: k + 1]:
        for lp in fr.loops:
            if any(lp is m for m in loops):
                out.append((lp, fr.func))
    return out


def _contains_loop_of(s: Event, lp) -> bool:
    return any(any(lp is m for m in fr.loops) for fr in s.frames)


def _guard_on(s: Event, lp, lfunc):
    for fr in s.frames:
        for g in fr.guards:
            if g.func is lfunc and guard_uses_loop_var(lfunc, g.test, lp):
                return g
    return None


def _steps_next_to(ev: Event, steps: list[Event]) -> list[Event]:
    """Optimizer steps in the same function and call path as a backward event."""
    out = []
    for st in steps:
        n = len(st.frames)
        if st.frames[0].func is not ev.frames[0].func or n > len(ev.frames):
            continue
        # the step runs in the backward's function or in a caller on the same path
        # (LBFGS: opt.step(closure) calls the closure that runs backward)
        same_path = all(a.key() == b.key() for a, b in zip(st.frames[:-1], ev.frames[: n - 1]))
        if not same_path or st.frames[-1].func is not ev.frames[n - 1].func:
            continue
        if n < len(ev.frames) and st.frames[-1].anchor is not ev.frames[n - 1].anchor:
            continue  # in a caller, only the very call that ran the backward (opt.step(closure))
        out.append(st)
    return out


def _throwaway(ev: Event, steps: list[Event]) -> bool:
    near = _steps_next_to(ev, steps)
    return bool(near) and all(st.info.get("temp") for st in near)


def _optimizes_local_tensors(ev: Event, steps: list[Event]) -> bool:
    """Whether the optimizer stepped next to this backward updates tensors created in the eval."""
    return any(LOCALPARAM in st.labels for st in _steps_next_to(ev, steps))


def _context_only(an: Analysis, train: Event, score: Event) -> bool:
    """The SLOT loss is sliced/masked up to the index where the scored slice starts (``[:s]`` vs
    ``[s:wlen]``): only already-scored context positions are optimized."""
    score_starts = set()
    for node in ast.walk(score.node):
        if isinstance(node, ast.Slice) and node.lower is not None:
            score_starts |= names_in(node.lower)
    for b in score.info.get("binds", []):
        for node in ast.walk(b):
            if isinstance(node, ast.Slice) and node.lower is not None:
                score_starts |= names_in(node.lower)
    if not score_starts:
        return False
    func = train.func
    stops = set()
    for node in func.all_nodes():
        if (
            isinstance(node, ast.Slice)
            and node.upper is not None
            and node.lower is None
            and pos(node) < pos(train.node)
        ):
            stops |= names_in(node.upper)
    covers_scored = False
    for node in func.all_nodes():
        if (
            isinstance(node, ast.Slice)
            and node.lower is not None
            and pos(node) < pos(train.node)
            and names_in(node.lower) & score_starts
        ):
            covers_scored = True
    return bool(stops & score_starts) and not covers_scored
