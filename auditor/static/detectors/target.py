"""C101 target-keyed lookup, C201 gold-token blend, C102 target-gated choice.

All three are judged at the place where a score is committed (a per-token loss accumulated into
what becomes val_loss/val_bpb, or returned by a scoring helper) from the labels the dataflow layer
attached to that loss:

- TKEY: part of the loss was read from a table with a key computed from the realized target
  (the n-gram ``full_key = ctx_hash ^ (target * prime)`` family) -> C101;
- BLEND: that target-keyed value was blended with the model's probability of the target, or is a
  ratio of such counts, so the scored probability exists for the target only -> C201;
- GATE: the loss depends on a comparison of target-dependent values (the better of two predictors
  for the realized token, a mask or hint switched by a property of the realized token) -> C102.

The legal counterparts never produce these labels: gathering a full (mixed) distribution at the
target, the closed-form tilt ``nll + log Z - beta * 1[target == hint]`` with a prefix-only hint,
hashed embeddings of *input* tokens (they feed the model before the distribution is formed), and
counts *written* with the target after scoring (writes are not reads).
"""

from __future__ import annotations

from auditor.models import Confidence
from auditor.static.analysis import Analysis
from auditor.static.detectors.common import group_by_site
from auditor.static.values import BLEND, GATE, STATE, TDIST, TKEY, TLUT, TMIX, VAL


def _key_step(chain, prefixes):
    for step in chain:
        if any(step.note.startswith(p) for p in prefixes):
            return step
    return chain[-1] if chain else None


def _by_use(chain) -> bool:
    src = chain[0].note if chain else ""
    return "cross-entropy target" in src or "next-token slice" in src


def detect(an: Analysis) -> list:
    out = []
    # scores of validation tokens only (training losses carry the same shapes)
    scores = [ev for ev in an.events if ev.kind in ("score", "ret") and VAL in ev.labels]
    best_lines = {(ev.file.idx, ev.line) for ev in an.events if ev.kind == "best"}

    # -- C101 / C201: group by the table read (one finding per lookup site) ---------------------
    lookups: dict[tuple, list] = {}
    blends: dict[tuple, list] = {}
    for ev in scores:
        chain = ev.labels.get(TKEY)
        if chain:
            step = _key_step(chain, ("table read with a key", "gathered with a key"))
            lookups.setdefault((step.file, step.line), []).append(ev)
        bchain = ev.labels.get(BLEND)
        if bchain:
            step = _key_step(bchain, ("blended with", "ratio of table counts"))
            blends.setdefault((step.file, step.line), []).append(ev)

    for evs in lookups.values():
        ev = _prefer_score(evs)
        chain = ev.labels[TKEY]
        read = _key_step(chain, ("table read with a key", "gathered with a key"))
        key = _key_step(chain, ("key computed from the target",))
        sink = an.event_loc(ev)
        reach = an.reach_events(evs)
        # complete path: the target is identified by its use, or the keyed value is blended into the
        # probability of the target that is scored
        complete = _by_use(chain) or any(BLEND in e.labels for e in evs)
        msg = (
            f"A table is read with a key built from the realized target token "
            f"(key at line {key.line if key else '?'}, read at line {read.line}) and the value reaches the "
            f"score committed at line {ev.line}: the probability of x_t is looked up with x_t itself, "
            f"so p_t depends on the token being predicted (C1)."
        )
        out.append(
            an.make(
                "C101",
                msg,
                location=an.loc(read),
                path=an.path(chain, sink),
                reach=reach,
                confidence=Confidence.STRONG if complete else Confidence.HEURISTIC,
                data={"score_line": ev.line, "read_line": read.line, "eval_built_table": STATE in ev.labels},
            )
        )

    for evs in blends.values():
        ev = _prefer_score(evs)
        chain = ev.labels[BLEND]
        step = _key_step(chain, ("blended with", "ratio of table counts"))
        sink = an.event_loc(ev)
        reach = an.reach_events(evs)
        hashed = TMIX in {s.note for s in chain} or any("key computed" in s.note for s in chain)
        what = (
            "a target-keyed count ratio is blended with the model's probability of the target"
            if "blended" in step.note
            else "the score is a ratio of counts looked up with the target"
        )
        msg = (
            f"At line {step.line} {what}; the scored probability is built for the realized token only and "
            f"is never normalized over the vocabulary (context-count / hash-bin denominators), so the implied "
            f"distribution does not sum to 1 (C2)."
        )
        out.append(
            an.make(
                "C201",
                msg,
                location=an.loc(step),
                path=an.path(chain, sink),
                reach=reach,
                confidence=Confidence.STRONG if hashed or _by_use(chain) else Confidence.HEURISTIC,
                data={"score_line": ev.line, "blend_line": step.line},
            )
        )

    # -- C102: target-gated choices --------------------------------------------------------------
    gates: dict[tuple, list] = {}
    for ev in scores:
        chain = ev.labels.get(GATE) or ev.labels.get(TLUT)
        if not chain:
            continue
        step = _key_step(
            chain,
            (
                "per-token choice",
                "comparison of target-dependent",
                "selection",
                "masked by",
                "test on the realized token",
                "lookup on the realized token",
            ),
        )
        if (step.file, step.line) in best_lines or (ev.file.idx, ev.line) in best_lines:
            continue  # a running best over passes: C402
        if TKEY in ev.labels and any((s.file, s.line) in lookups for s in chain):
            # the gate only chooses which target-keyed n-gram value to use: reported as C101
            continue
        gates.setdefault((step.file, step.line), []).append(ev)
    for evs in gates.values():
        ev = _prefer_score(evs)
        chain = ev.labels.get(GATE) or ev.labels[TLUT]
        step = _key_step(
            chain,
            (
                "per-token choice",
                "comparison of target-dependent",
                "selection",
                "masked by",
                "test on the realized token",
                "lookup on the realized token",
            ),
        )
        sink = an.event_loc(ev)
        reach = an.reach_events(evs)
        if step.note.startswith("per-token choice"):
            why = "picks, per token, between predictions by their probability of the realized token (an oracle gate)"
        elif "lookup on the realized token" in [s.note for s in chain] or "test on the realized token" in [
            s.note for s in chain
        ]:
            why = "switches on a property of the realized token (a hint, mask or weight gated by the target)"
        elif any("target compared with a hint" in s.note for s in chain):
            why = (
                "is switched per token by comparing the realized token with another token (a stored or "
                "predicted hint: the loss depends on whether the guess was right)"
            )
        else:
            why = "is chosen by comparing values that depend on the realized token"
        msg = (
            f"The score committed at line {ev.line} {why} (line {step.line}); the predictive distribution is "
            f"not fixed before x_t is revealed (C1)."
        )
        out.append(
            an.make(
                "C102",
                msg,
                location=an.loc(step),
                path=an.path(chain, sink),
                reach=reach,
                confidence=Confidence.STRONG if len(chain) >= 3 else Confidence.HEURISTIC,
                data={"score_line": ev.line, "gate_line": step.line},
            )
        )
    # -- C302 (closed form): a distribution shifted by target-dependent values, then scored --------
    shifted: dict[tuple, list] = {}
    for ev in scores:
        chain = ev.labels.get(TDIST)
        if chain:
            step = _key_step(chain, ("distribution built from target", "target-dependent values added"))
            shifted.setdefault((step.file, step.line), []).append(ev)
    for evs in shifted.values():
        ev = _prefer_score(evs)
        chain = ev.labels[TDIST]
        step = _key_step(chain, ("distribution built from target", "target-dependent values added"))
        msg = (
            f"The distribution scored at line {ev.line} was shifted by values computed from the targets of the "
            f"same positions (line {step.line}): a closed-form per-window fit to the tokens being scored "
            f"(SLOT-like, C1/C3)."
        )
        out.append(
            an.make(
                "C302",
                msg,
                location=an.loc(step),
                path=an.path(chain, an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.HEURISTIC,
                data={"score_line": ev.line},
            )
        )
    return out


def _prefer_score(evs):
    for ev in evs:
        if ev.kind == "score":
            return ev
    return evs[0]


__all__ = ["detect", "group_by_site"]
