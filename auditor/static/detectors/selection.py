"""C402 best-of-k: minimum/best over passes, runs or temperatures chosen on validation.

- a running best over passes kept per token: ``best[idx] = minimum(best[idx], nll)``;
- a hyperparameter (temperature, pass, seed) chosen by comparing validation scores and then used in
  the score that is reported (the SEL label reaches a committed score).
"""

from __future__ import annotations

from auditor.models import Confidence
from auditor.static.analysis import Analysis
from auditor.static.detectors.common import group_by_site
from auditor.static.values import ATT, SEL


def detect(an: Analysis) -> list:
    out = []
    best = [ev for ev in an.events if ev.kind == "best"]
    for evs in group_by_site(best).values():
        ev = evs[0]
        msg = (
            f"A running {ev.info.get('how', 'min')} over repeated scorings is kept at line {ev.line} "
            f"(`{ev.info.get('acc')}`): each token keeps the best of several passes, so the reported loss is "
            f"a best-of-k over executions, not one left-to-right pass (C4)."
        )
        out.append(
            an.make(
                "C402",
                msg,
                location=an.event_loc(ev),
                path=an.path(ev.labels.get(ATT, ()), an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.STRONG,
            )
        )
    sel = [ev for ev in an.events if ev.kind in ("score", "ret", "report") and SEL in ev.labels]
    by_step: dict[tuple, list] = {}
    for ev in sel:
        chain = ev.labels[SEL]
        step = next(
            (s for s in chain if s.note.startswith(("comparison of validation scores", "best of several"))),
            chain[-1],
        )
        by_step.setdefault((step.file, step.line), []).append(ev)
    for (_f, line), evs in by_step.items():
        ev = next((e for e in evs if e.kind == "score"), evs[0])
        chain = ev.labels[SEL]
        msg = (
            f"A choice made by comparing validation scores (line {line}) feeds the score committed at line "
            f"{ev.line}: the reported number is selected on the validation set (best-of-k over "
            f"runs/temperatures/passes, C4)."
        )
        out.append(
            an.make(
                "C402",
                msg,
                location=an.event_loc(ev),
                path=an.path(chain, an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.HEURISTIC,
            )
        )
    return out
