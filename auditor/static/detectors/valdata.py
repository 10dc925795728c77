"""C303 validation data on the training path.

- validation tokens mixed into the batches of a training loop (a backward pass whose loss carries
  both training and validation data);
- forward passes over validation tokens while forward hooks are registered: calibration statistics
  (GPTQ Hessians ``H += x.T @ x``) computed from the validation set;
- validation tokens (or data derived from them without scoring) serialized or compressed into the
  artifact: the "paid prefix".

Reading validation data during training only to *score* it (``VAL_LOSS_EVERY``) is not flagged:
scores are not training signal. Training on validation tokens after training (pre-quant TTT) is
C301.
"""

from __future__ import annotations

from auditor.models import Confidence
from auditor.static.analysis import Analysis
from auditor.static.detectors.common import group_by_site
from auditor.static.values import TOK, TRAIN, VAL


def detect(an: Analysis) -> list:
    out = []
    mixed = [ev for ev in an.events if ev.kind == "backward" and VAL in ev.labels and TRAIN in ev.labels]
    for _site, evs in group_by_site(mixed).items():
        ev = evs[0]
        msg = (
            f"The training loss at line {ev.line} is computed on batches that contain validation tokens as "
            f"well as training tokens: validation data is used as training signal."
        )
        out.append(
            an.make(
                "C303",
                msg,
                location=an.event_loc(ev),
                path=an.path(ev.labels[VAL], an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.STRONG,
            )
        )
    calib = [ev for ev in an.events if ev.kind == "calib"]
    for _site, evs in group_by_site(calib).items():
        ev = evs[0]
        msg = (
            f"Forward passes over validation tokens run while forward hooks are registered (line {ev.line}): "
            f"calibration statistics (e.g. GPTQ Hessians) are collected on the validation set and shape the "
            f"quantized artifact. Calibrate on training data or self-generated tokens inside the training budget."
        )
        out.append(
            an.make(
                "C303",
                msg,
                location=an.event_loc(ev),
                path=an.path(ev.labels[VAL], an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.STRONG,
            )
        )
    art = [ev for ev in an.events if ev.kind == "artifact"]
    for _site, evs in group_by_site(art).items():
        ev = evs[0]
        raw = TOK in ev.labels
        msg = (
            f"{'Validation tokens are' if raw else 'Data derived from validation tokens is'} written into a "
            f"serialized/compressed payload at line {ev.line} (`{ev.info.get('sink', '')}`): validation data "
            f"must not be packed into the artifact (the 'paid prefix' ruling)."
        )
        out.append(
            an.make(
                "C303",
                msg,
                location=an.event_loc(ev),
                path=an.path(ev.labels[VAL], an.event_loc(ev)),
                reach=an.reach_events(evs),
                confidence=Confidence.STRONG if raw else Confidence.HEURISTIC,
            )
        )
    return out
