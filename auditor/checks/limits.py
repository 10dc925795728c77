"""LIMIT: 16,000,000 bytes per seed, 600 s training, 600 s evaluation — from logs and shipped files."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from auditor import intake
from auditor.checks.evidence import log_location, source_location, text_line
from auditor.codesize import find_virtual_wrapper, virtual_wrapper_size
from auditor.context import RecordContext
from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, Severity

ARTIFACT_CAP = 16_000_000
TRAIN_CAP_MS = 600_000
EVAL_CAP_MS = 600_000
THIN_MARGIN = 16_000  # 0.1% of the cap
# The wallclock cap is checked between steps, so a capped run overshoots by part of a step
# (~0.1 s is common in accepted records); more than this is reported as over the cap.
TRAIN_OVERSHOOT_MS = 1_000
# Virtual-wrapper recomputation drifts by tens of bytes across minifier/Python versions.
VIRTUAL_TOLERANCE = 256


@dataclass
class CodeBytes:
    """Code bytes as pgolf recomputes them from the shipped files."""

    n: int
    how: str
    location: Location
    exact: bool  # False when a re-minification was involved (version drift possible)


def check(ctx: RecordContext) -> list[Finding]:
    code = recompute_code_bytes(ctx)
    out: list[Finding] = []
    logs = ctx.unique_logs
    if not logs:
        out.append(
            finding(
                "LIM006",
                "No train log: the artifact size cannot be checked against the cap.",
                location=Location(file=".", role="folder"),
            )
        )
    for log in logs:
        found = _artifact(log, code)
        if not intake.is_non_record_track(ctx.record.track):  # unknown track: hold it to the record-track caps
            found += _times(log)
        out += _not_backing_claim(ctx, log, found)
    out = _group_code_mismatches(out)
    out += _virtual_wrapper_info(ctx, code)
    out += _uncounted_modules(ctx)
    return out


def _not_backing_claim(ctx: RecordContext, log, found: list[Finding]) -> list[Finding]:
    """A log that does not back the claimed score (an ablation, an older run) cannot fail the
    record on limits; its errors become warnings that say so."""
    if ctx.claim_logs is None or log.rel in ctx.claim_logs:
        return found
    out = []
    for f in found:
        if f.severity is Severity.ERROR:
            f = f.model_copy(
                update={
                    "severity": Severity.WARNING,
                    "message": f.message + " (this log does not back the claimed score)",
                }
            )
        out.append(f)
    return out


def _group_code_mismatches(found: list[Finding]) -> list[Finding]:
    """One LIM002 per distinct logged code size, naming every seed that logged it."""
    groups: dict[tuple, list[Finding]] = {}
    for f in found:
        if f.rule_id == "LIM002":
            groups.setdefault((f.data["logged"], f.data["recomputed"], f.severity), []).append(f)
    merged = []
    for fs in groups.values():
        first = fs[0]
        if len(fs) == 1:
            merged.append(first)
            continue
        seeds = sorted({str(f.data.get("seed")) for f in fs})
        merged.append(
            first.model_copy(
                update={
                    "message": f"seeds {', '.join(seeds)}: "
                    + first.message.split(": ", 1)[1].replace("the log counts", "the logs count"),
                    "path": first.path + [f.location for f in fs[1:] if f.location is not None],
                    "data": {**first.data, "seeds": seeds},
                }
            )
        )
    return [f for f in found if f.rule_id != "LIM002"] + merged


def _virtual_wrapper_info(ctx: RecordContext, code: CodeBytes | None) -> list[Finding]:
    if code is None or code.exact:
        return []
    shipped = sum({s.path: s.shipped_bytes for s in ctx.entry_sources}.values())
    return [
        finding(
            "LIM008",
            f"Code bytes are counted as a virtual wrapper: {code.n:,} B recomputed "
            f"({code.how}) instead of the shipped {shipped:,} B file.",
            location=code.location,
            data={"recomputed": code.n, "shipped": shipped},
        )
    ]


def recompute_code_bytes(ctx: RecordContext) -> CodeBytes | None:
    entries = ctx.entry_sources
    if not entries:
        return None
    shipped = {}
    for src in entries:  # a wrapper and its payloads share one shipped file: count it once
        shipped.setdefault(src.path, src.shipped_bytes)
    plain = next((s for s in entries if not s.chain and s.tree is not None), None)
    first = entries[0]
    loc = Location(file=first.path, line=None, wrapper=first.wrapper)
    if len(shipped) == 1 and plain is not None and ctx.options.recompute_code_size:
        spec = find_virtual_wrapper(plain.tree, plain.text)
        if spec is not None:
            size = virtual_wrapper_size(plain.text, spec)
            how = (
                f"virtual wrapper re-made: python-minifier {size.minifier_version} "
                f"({_opts(spec.minify_options)}) + {spec.compressor} + base85 of {plain.path}"
            )
            return CodeBytes(
                size.wrapper_bytes,
                how,
                Location(file=plain.path, line=spec.line, snippet=_line(plain.text, spec.line)),
                exact=False,
            )
    files = " + ".join(f"{p} ({n:,} B)" for p, n in shipped.items())
    return CodeBytes(sum(shipped.values()), f"shipped file size: {files}", loc, exact=True)


def _artifact(log, code: CodeBytes | None) -> list[Finding]:
    out: list[Finding] = []
    seed = _seed(log)
    total = log.artifact_bytes
    total_loc = _log_loc(log, _line_of(log.totals, total))
    if total is None and log.model_bytes is None:
        if log.has_training:
            out.append(
                finding(
                    "LIM006", f"{seed}: no artifact size line in {log.rel}.", location=Location(file=log.rel)
                )
            )
        return out

    # Compare the log's counted code bytes with what the folder ships.
    if code is not None and log.code_bytes is not None and code.n != log.code_bytes:
        diff = code.n - log.code_bytes
        small = not code.exact and abs(diff) <= VIRTUAL_TOLERANCE
        out.append(
            finding(
                "LIM002",
                f"{seed}: the log counts {log.code_bytes:,} code bytes; recomputed from the folder: "
                f"{code.n:,} ({diff:+,} B; {code.how})."
                + (" Within re-minification drift." if small else ""),
                location=_log_loc(log, _line_of(log.code_sizes, log.code_bytes)),
                path=[code.location.model_copy(update={"role": "recomputed"})],
                severity=Severity.INFO if small else None,
                confidence=Confidence.STRONG if not code.exact else None,
                data={"seed": log.seed, "logged": log.code_bytes, "recomputed": code.n},
                origin="log",
            )
        )

    if total is not None and total > ARTIFACT_CAP:
        out.append(
            finding(
                "LIM001",
                f"{seed}: artifact {total:,} bytes is over the 16,000,000-byte cap by {total - ARTIFACT_CAP:,}.",
                location=total_loc,
                data={"seed": log.seed, "artifact_bytes": total},
                origin="log",
            )
        )
        return out

    # The log may under-count code: rebuild the total from model bytes + recomputed code.
    recomputed_total = None
    if code is not None and log.model_bytes is not None:
        recomputed_total = log.model_bytes + code.n
        if recomputed_total > ARTIFACT_CAP and (
            code.exact or recomputed_total - ARTIFACT_CAP > VIRTUAL_TOLERANCE
        ):
            out.append(
                finding(
                    "LIM001",
                    f"{seed}: model {log.model_bytes:,} B + recomputed code {code.n:,} B = "
                    f"{recomputed_total:,} bytes, over the cap by {recomputed_total - ARTIFACT_CAP:,}"
                    + (f" (the log says {total:,})." if total is not None else "."),
                    location=_log_loc(log, _line_of(log.serialized, log.model_bytes)),
                    path=[code.location.model_copy(update={"role": "code"})],
                    confidence=Confidence.PROOF if code.exact else Confidence.STRONG,
                    data={"seed": log.seed, "model_bytes": log.model_bytes, "code_bytes": code.n},
                    origin="log",
                )
            )
            return out

    best = max(x for x in (total, recomputed_total) if x is not None)
    if ARTIFACT_CAP - best < THIN_MARGIN:
        out.append(
            finding(
                "LIM007",
                f"{seed}: {best:,} bytes leaves {ARTIFACT_CAP - best:,} bytes of margin.",
                location=total_loc,
                data={"seed": log.seed, "artifact_bytes": best},
                origin="log",
            )
        )
    return out


def _times(log) -> list[Finding]:
    out: list[Finding] = []
    seed = _seed(log)
    train_ms = log.train_time_ms
    if train_ms is not None and train_ms > TRAIN_CAP_MS:
        line = log.stopping_early.line if log.stopping_early else None
        over = train_ms - TRAIN_CAP_MS
        capped = log.stopping_early is not None and over <= TRAIN_OVERSHOOT_MS
        out.append(
            finding(
                "LIM003",
                f"{seed}: trained {train_ms:,.0f} ms, {over:,.0f} ms over 600 s"
                + (
                    " — the wallclock cap stopped it; a sub-second overshoot of the last step is "
                    "common in accepted records."
                    if capped
                    else "."
                ),
                location=_log_loc(log, line),
                severity=Severity.INFO if capped else None,
                data={"seed": log.seed, "train_time_ms": train_ms},
                origin="log",
            )
        )
    wall = log.hyperparameters.get("max_wallclock_seconds")
    if wall is not None and _float(wall) is not None and _float(wall) > 600:
        out.append(
            finding(
                "LIM003",
                f"{seed}: configured max_wallclock_seconds={wall} (> 600).",
                location=_log_loc(log, log.hyperparameters_line),
                severity=Severity.WARNING,
                data={"seed": log.seed},
                origin="log",
            )
        )
    rep = log.reported
    eval_ms = rep.eval_time_ms if rep is not None else None
    source = f"the reported line '{rep.label}'" if eval_ms is not None else None
    if log.total_eval_time_s is not None and (eval_ms is None or log.total_eval_time_s * 1000 > eval_ms):
        eval_ms, source = log.total_eval_time_s * 1000, "total_eval_time"
    if eval_ms is not None and eval_ms > EVAL_CAP_MS:
        out.append(
            finding(
                "LIM004",
                f"{seed}: evaluation took {eval_ms / 1000:,.1f} s ({source}), over the 600 s cap.",
                location=_log_loc(log, rep.line if rep else None),
                data={"seed": log.seed, "eval_time_ms": eval_ms},
                origin="log",
            )
        )
    return out


def _uncounted_modules(ctx: RecordContext) -> list[Finding]:
    """Sibling .py modules (or C/C++ sources) that the entry script loads at run time."""
    siblings = {Path(f.rel).stem: f for f in ctx.record.scripts if "/" not in f.rel}
    entry_files = {s.path for s in ctx.entry_sources}
    siblings = {name: f for name, f in siblings.items() if f.rel not in entry_files}
    out: list[Finding] = []
    for src in ctx.entry_sources:
        if src.tree is None or not any(name in src.text for name in siblings):
            continue
        for node in ast.walk(src.tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            for name in names:
                entry = siblings.get(name)
                if entry is None or entry.rel in entry_files:
                    continue
                out.append(
                    finding(
                        "LIM005",
                        f"{src.path} imports the sibling module {entry.rel} ({entry.size:,} B) at run time; "
                        "its bytes are not part of the counted code size.",
                        location=source_location(src, node.lineno),
                        data={"module": entry.rel, "bytes": entry.size},
                    )
                )
    return out


# -- small helpers ---------------------------------------------------------------------------------


def _seed(log) -> str:
    return f"seed {log.seed}" if log.seed is not None else log.rel


def _line_of(lines, n) -> int | None:
    for item in reversed(lines):
        if item.n == n:
            return item.line
    return None


_log_loc = log_location
_line = text_line


def _opts(options) -> str:
    return ", ".join(f"{k}={v}" for k, v in options)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
