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

from auditor.models import Confidence, Severity
from auditor.static.analysis import Analysis
from auditor.static.dataflow import TABLE_NOTE
from auditor.static.detectors.common import group_by_site
from auditor.static.reachability import Reach
from auditor.static.values import TOK, TRAIN, VAL


def detect(an: Analysis) -> list:
    out = []
    mixed = [
        ev
        for ev in an.events
        if ev.kind == "backward"
        and VAL in ev.labels
        and TRAIN in ev.labels
        and not any(st.note == TABLE_NOTE for st in ev.labels[TRAIN])  # train-built tables read by the model
    ]
    for evs in group_by_site(mixed).values():
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
    for evs in group_by_site(calib).values():
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
    out.extend(_tool_prefix(an))
    art = [ev for ev in an.events if ev.kind == "artifact"]
    for evs in group_by_site(art).values():
        ev = evs[0]
        raw = TOK in ev.labels
        if calib and not raw:
            continue  # the weights quantized with validation-calibrated statistics: reported above
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


COMPRESSORS = {"compress", "compressobj"}
FILE_WRITES = {"write", "write_bytes", "tofile", "save", "dump", "savez", "savez_compressed"}


def _tool_prefix(an: Analysis) -> list:
    """A stand-alone script shipped beside the entry that compresses validation tokens and writes the
    result to a file: the builder of a "paid prefix" blob (its output is shipped in the artifact)."""
    out = []
    tool = [ev for ev in getattr(an.interp, "tool_events", []) if ev.kind == "artifact"]
    by_file: dict[int, list] = {}
    for ev in tool:
        by_file.setdefault(ev.file.idx, []).append(ev)
    for evs in by_file.values():
        packed = [
            ev
            for ev in evs
            if VAL in ev.labels and str(ev.info.get("sink", "")).rsplit(".", 1)[-1] in COMPRESSORS
        ]
        written = [ev for ev in evs if str(ev.info.get("sink", "")).rsplit(".", 1)[-1] in FILE_WRITES]
        if not packed:
            continue
        ev = packed[0]
        fname = an.event_loc(ev).file
        if written:
            w = written[0]
            msg = (
                f"`{fname}` (a stand-alone script shipped with the submission) compresses validation tokens at "
                f"line {ev.line} and writes the result to a file at line {w.line}: a 'paid prefix' blob of "
                f"validation data built for the artifact. Validation data must not be packed into the artifact."
            )
            path = an.path(ev.labels[VAL], an.event_loc(w))
            reach = Reach("reachable", f"in `{fname}`, a tool script run by hand, not by the entry point")
            out.append(
                an.make(
                    "C303",
                    msg,
                    location=an.event_loc(ev),
                    path=path,
                    reach=reach,
                    confidence=Confidence.HEURISTIC,
                )
            )
        else:
            msg = (
                f"`{fname}` (a stand-alone script shipped with the submission) compresses validation tokens at "
                f"line {ev.line}; the result is not written to a file here. Check that no validation data "
                f"ends up in the artifact."
            )
            out.append(
                an.make(
                    "C303",
                    msg,
                    location=an.event_loc(ev),
                    path=an.path(ev.labels[VAL], an.event_loc(ev)),
                    reach=Reach("unknown", f"in `{fname}`, a tool script not run by the entry point"),
                    confidence=Confidence.HEURISTIC,
                    severity=Severity.WARNING,
                )
            )
    return out
