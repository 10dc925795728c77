"""CLAIM: what submission.json says against what the logs and the shipped code show."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import PurePosixPath
from statistics import fmean

from auditor.checks.evidence import log_location
from auditor.context import RecordContext
from auditor.findings import finding
from auditor.models import Finding, Location, Severity

NEAR_ZERO = 1e-9


def check(ctx: RecordContext) -> list[Finding]:
    out: list[Finding] = []
    out += _embedded_source(ctx)
    out += _suspicious_labels(ctx)
    sub = ctx.submission
    if sub is None:
        return out
    runs = [log for log in ctx.unique_logs if log.reported is not None]
    if not runs:
        prequant = _prequant_claim(ctx, ctx.unique_logs)
        if prequant:
            return out + prequant
        if sub.val_bpb is not None or sub.per_seed:
            why = "no log files" if not ctx.logs else "no final metric line in any log"
            out.append(
                finding(
                    "CLM002",
                    f"submission.json claims val_bpb={sub.val_bpb} but there is {why}.",
                    location=claim_location(ctx, "val_bpb"),
                    origin="metadata",
                )
            )
        return out
    out += _score(ctx, runs)
    out += _per_seed(ctx, runs)
    out += _seeds(ctx, runs)
    out += _sizes(ctx)
    return out


# -- the headline score ----------------------------------------------------------------------------


def _score(ctx: RecordContext, runs) -> list[Finding]:
    sub = ctx.submission
    field, claimed = _headline(sub)
    if claimed is None:
        return []
    tol = _tolerance(sub, field)
    matched = _explain(claimed, runs, tol)
    if matched is not None:
        how, logs = matched
        ctx.claim_logs = set(logs)
        if how.startswith("best"):
            return [
                finding(
                    "CLM005",
                    f"val_bpb={claimed} is the {how}: a selection of runs must be disclosed.",
                    location=claim_location(ctx, field),
                    severity=Severity.WARNING,
                    origin="metadata",
                    data={"aggregation": how, "logs": logs},
                )
            ]
        return []
    # No aggregation of final lines explains the claim: is it a pre-quant or diagnostic number?
    prequant = _prequant_claim(ctx, runs)
    if prequant:
        return prequant
    values = ", ".join(f"{log.rel}: {log.reported.val_bpb}" for log in runs)
    mean = fmean(log.reported.val_bpb for log in runs)
    return [
        finding(
            "CLM001",
            f"{field}={claimed} matches no aggregation of the logs' final scores "
            f"(mean {mean:.6f}; per log {values}).",
            location=claim_location(ctx, field),
            path=[log_location(log, log.reported.line) for log in runs],
            data={"claimed": claimed, "mean": mean},
            origin="metadata",
        )
    ]


def _prequant_claim(ctx: RecordContext, logs) -> list[Finding]:
    """CLM006 when the claim equals a pre-quantization step line or a diagnostic final line."""
    sub = ctx.submission
    field, claimed = _headline(sub)
    if claimed is None:
        return []
    tol = _tolerance(sub, field)
    for log in logs:
        # pre-quantization step values first, then diagnostic final lines
        candidates = [(sv.val_bpb, sv.line, f"the pre-quantization step {sv.step} value") for sv in log.step_vals]
        candidates += [(fl.val_bpb, fl.line, f"the diagnostic line '{fl.label}'") for fl in log.finals if fl.diagnostic]
        for value, line, what in candidates:
            if abs(value - claimed) <= tol:
                return [
                    finding(
                        "CLM006",
                        f"val_bpb={claimed} equals {what}, not the final post-quantization score "
                        f"({_final_desc(log)}).",
                        location=claim_location(ctx, field),
                        path=[log_location(log, line)],
                        origin="metadata",
                    )
                ]
    return []


def _explain(claimed: float, runs, tol: float) -> tuple[str, list[str]] | None:
    """Which aggregation of final scores gives the claimed number (mean, one run, best k of n)."""
    groups: dict[str, list] = {"mean of all unique logs": runs}
    for log in runs:
        parent = str(PurePosixPath(log.rel).parent)
        groups.setdefault(f"mean of the logs in {parent}/", []).append(log)
    for word in ("original", "rerun"):
        chosen = [log for log in runs if word in log.rel.lower()]
        if chosen:
            groups[f"mean of the '{word}' logs"] = chosen
    by_seed: dict[int, object] = {}
    for log in runs:
        if log.seed is not None:
            by_seed.setdefault(log.seed, log)
    if by_seed:
        groups["mean over seeds (first log per seed)"] = list(by_seed.values())
    # The closest of the standard aggregations wins: a rounded claim can sit within tolerance of
    # a mean over every log while exactly equal to the one run it was copied from.
    standard: list[tuple[float, str, list]] = []
    for how, logs in groups.items():
        standard.append((abs(fmean(log.reported.val_bpb for log in logs) - claimed), how, logs))
    for log in runs:
        standard.append((abs(log.reported.val_bpb - claimed), f"single run {log.rel}", [log]))
    diff, how, logs = min(standard, key=lambda item: item[0])
    if diff <= tol:
        return how, [log.rel for log in logs]
    for log in runs:  # another non-diagnostic final line of one run (e.g. roundtrip before sliding)
        for fl in log.candidates:
            if abs(fl.val_bpb - claimed) <= tol:
                return f"single run {log.rel} ('{fl.label}' line)", [log.rel]
    ordered = sorted(runs, key=lambda log: log.reported.val_bpb)
    for k in range(2, len(ordered)):
        if abs(fmean(log.reported.val_bpb for log in ordered[:k]) - claimed) <= tol:
            return f"best {k} of {len(ordered)} runs", [log.rel for log in ordered[:k]]
    # Other subsets (e.g. two of many experiment logs): exhaustive on small folders, pairs and
    # triples on larger ones, so the search stays bounded.
    if len(runs) <= 16:
        for k in range(2, len(runs) if len(runs) <= 8 else 4):
            for subset in combinations(runs, k):
                if abs(fmean(log.reported.val_bpb for log in subset) - claimed) <= tol:
                    return f"mean of {k} of {len(runs)} logs", [log.rel for log in subset]
    return None


def _per_seed(ctx: RecordContext, runs) -> list[Finding]:
    sub = ctx.submission
    out: list[Finding] = []
    by_seed: dict[int, list] = {}
    for log in runs:
        if log.seed is not None:
            by_seed.setdefault(log.seed, []).append(log)
    for seed, claim in sorted(sub.per_seed.items()):
        logs = by_seed.get(seed)
        key = f"per_seed.{seed}.val_bpb"
        if not logs:  # a log named for the seed whose run printed another seed
            named = [log for log in runs if log.seed_in_filename == seed and log.seed != seed]
            for log in named:
                out.append(
                    finding(
                        "CLM005",
                        f"{log.rel} is named for seed {seed} but its run used seed {log.seed} "
                        f"({log.seed_source}).",
                        location=log_location(log, log.hyperparameters_line),
                        data={"file_seed": seed, "run_seed": log.seed},
                        origin="log",
                    )
                )
            logs = named
        if not logs:
            if claim.val_bpb is not None:
                out.append(
                    finding(
                        "CLM002",
                        f"seed {seed}: claimed val_bpb={claim.val_bpb} has no log for that seed.",
                        location=claim_location(ctx, key),
                        origin="metadata",
                    )
                )
            continue
        if claim.val_bpb is None:
            continue
        tol = _tolerance(sub, key)
        if not any(abs(fl.val_bpb - claim.val_bpb) <= tol for log in logs for fl in log.candidates):
            got = ", ".join(f"{log.rel}: {log.reported.val_bpb}" for log in logs)
            out.append(
                finding(
                    "CLM001",
                    f"seed {seed}: claimed val_bpb={claim.val_bpb}, the log says {got}.",
                    location=claim_location(ctx, key),
                    path=[log_location(log, log.reported.line) for log in logs],
                    data={"seed": seed, "claimed": claim.val_bpb},
                    origin="metadata",
                )
            )
    return out


def _seeds(ctx: RecordContext, runs) -> list[Finding]:
    sub = ctx.submission
    claimed = set(sub.seeds) | set(sub.per_seed)
    logged = {log.seed for log in runs if log.seed is not None}
    # A file named for a claimed seed stands for it (a mismatch inside is reported per seed).
    for log in runs:
        named = log.seed_in_filename
        if named in claimed and log.seed not in claimed:
            logged = (logged - {log.seed}) | {named}
    if not claimed or not logged or claimed == logged:
        return []
    missing, extra = sorted(claimed - logged), sorted(logged - claimed)
    parts = []
    if missing:
        parts.append(f"claimed seeds without a log: {missing}")
    if extra:
        parts.append(f"logged seeds not claimed: {extra}")
    return [
        finding(
            "CLM005",
            "; ".join(parts) + ".",
            location=claim_location(ctx, "seeds"),
            data={"missing": missing, "extra": extra},
            origin="metadata",
        )
    ]


def _sizes(ctx: RecordContext) -> list[Finding]:
    sub = ctx.submission
    logs = [log for log in ctx.unique_logs if log.artifact_bytes is not None]
    if sub.bytes_total is None or not logs:
        return []
    logged_max = max(log.artifact_bytes for log in logs)
    tol = 1000 if sub.bytes_total % 1000 == 0 else 0  # a rounded claim
    if abs(sub.bytes_total - logged_max) <= tol or any(
        abs(sub.bytes_total - log.artifact_bytes) <= tol for log in logs
    ):
        return []
    models = [log.model_bytes for log in logs if log.model_bytes is not None]
    note = ""
    if models and (
        abs(sub.bytes_total - max(models)) <= max(tol, 1)
        or abs(sub.bytes_total - round(fmean(models))) <= max(tol, 1)
    ):
        note = " It equals the model bytes alone: the code is left out."
    elif sub.bytes_total < logged_max:
        note = " The claim is smaller than what the logs count."
    return [
        finding(
            "CLM004",
            f"bytes_total={sub.bytes_total:,} but the logs' largest artifact is {logged_max:,} bytes." + note,
            location=claim_location(ctx, "bytes_total"),
            path=[log_location(log, None) for log in logs if log.artifact_bytes == logged_max][:1],
            data={"claimed": sub.bytes_total, "logged_max": logged_max},
            origin="metadata",
        )
    ]


# -- logs against the shipped code ---------------------------------------------------------------


def _embedded_source(ctx: RecordContext) -> list[Finding]:
    shipped: list[tuple[str, bytes]] = []
    for f in ctx.record.scripts:
        try:
            shipped.append((f.rel, ctx.record.path_of(f).read_bytes()))
        except OSError:
            continue
    shipped += [(f"{s.path} (decoded payload)", s.text.encode("utf-8")) for s in ctx.sources if s.chain]
    out: list[Finding] = []
    for log in ctx.unique_logs:
        for emb in log.embedded_sources:
            if any(emb.matches(data) for _, data in shipped):
                continue
            sizes = ", ".join(f"{name} {len(data):,} B" for name, data in shipped) or "no script shipped"
            out.append(
                finding(
                    "CLM003",
                    f"{log.rel} embeds a {emb.n_bytes:,}-byte source that matches no shipped script ({sizes}).",
                    location=log_location(log, emb.start_line),
                    origin="log",
                    data={"embedded_bytes": emb.n_bytes, "embedded_sha256": emb.sha256 or emb.removed_sha256},
                )
            )
    return out


def _suspicious_labels(ctx: RecordContext) -> list[Finding]:
    out: list[Finding] = []
    for log in ctx.unique_logs:
        for s in log.suspicious:
            out.append(
                finding(
                    "CLM007",
                    f"{log.rel}: label '{s.label}' — {s.reason}.",
                    location=log_location(log, s.line),
                    origin="log",
                )
            )
    return out


# -- helpers ---------------------------------------------------------------------------------------


def _headline(sub) -> tuple[str, float | None]:
    """The field that holds the claimed score (03-20 Int5MLP stores its BPB in val_loss)."""
    if sub.val_bpb is None and sub.val_loss_holds_bpb:
        return "val_loss", sub.val_loss
    return "val_bpb", sub.val_bpb


def _final_desc(log) -> str:
    if log.reported is None:
        return f"{log.rel} has no final post-quantization line"
    return f"{log.rel}: {log.reported.label} val_bpb={log.reported.val_bpb}"


def _tolerance(sub, field: str) -> float:
    """One unit of the last decimal the claim was written with (4-dp claims are rounded means)."""
    prov = sub.source_of(field)
    raw = prov.raw if prov is not None else None
    text = repr(raw) if isinstance(raw, float) else str(raw) if raw is not None else ""
    m = re.search(r"\.(\d+)$", text)
    decimals = len(m.group(1)) if m else 8
    # One unit of the last decimal: claims are rounded means, and some were truncated instead.
    return 10 ** (-decimals) + NEAR_ZERO


def claim_location(ctx: RecordContext, field: str, *, key_path: str | None = None) -> Location:
    """The line of the JSON key behind a normalized field (found by walking its key path)."""
    file = ctx.submission_file or "submission.json"
    prov = ctx.submission.source_of(field) if ctx.submission is not None else None
    key_path = key_path or (prov.key if prov is not None else field)
    line, snippet = None, None
    try:
        text = ctx.record.path_of(file).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        text = ""
    if text:
        pos = 0
        for part in key_path.split("."):
            hit = text.find(json.dumps(part), pos)
            if hit < 0:
                break
            pos = hit
        else:
            line = text.count("\n", 0, pos) + 1
            snippet = text.splitlines()[line - 1].strip()[:240]
    return Location(file=file, line=line, snippet=snippet)
