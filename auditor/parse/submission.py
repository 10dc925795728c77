"""Reading ``submission.json`` (and ``submission_<x>.json``) into one normalized model.

The 58 public metadata files use 39 different key sets (records-format.md §2): scores live in
``val_bpb``, ``mean_val_bpb``, ``mean_bpb`` or (03-20 Int5MLP) in ``val_loss``; per-seed results
in ``seed_results``, a ``seeds`` dict, parallel ``seeds``/``seed_scores`` lists or a nested
``compliance_rerun``; times in ms or s; numbers sometimes as strings. ``Submission`` is one shape
for all of them, and ``provenance`` says for every normalized field which key it came from, the
raw value, and any note about the conversion — so a finding can quote the file exactly.

Broken JSON never raises: it becomes a HYG003 finding (with the JSON error's line and column)
and ``submission=None``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from auditor.findings import finding
from auditor.models import Finding, Location, Severity
from auditor.parse.textio import folder_root_of, read_text_bounded

SUBMISSION_MAX_BYTES = 1 << 20  # real files are < 6 KB
BPB_IN_VAL_LOSS_BELOW = 1.3  # a val_loss (nats/token) this low is a BPB in disguise (no tokenizer gets there)

RULE_MALFORMED = "HYG003"

# Keys whose value is a compressed-model size (the artifact minus code).
MODEL_BYTES_KEYS = ("bytes_model_compressed", "bytes_model_int6_zstd", "bytes_model_int8_zlib")


class Provenance(BaseModel):
    """Where one normalized value came from."""

    key: str  # JSON key path, e.g. "seed_results.42.val_bpb"
    raw: Any = None  # the value as written in the file
    note: str | None = None  # how it was converted, or why it is doubtful


class PValue(BaseModel):
    value: float
    relation: str = "="  # "=", "<", "<=", ">"
    raw: Any = None


class SeedClaim(BaseModel):
    """What the JSON claims for one seed. Times are seconds."""

    val_bpb: float | None = None
    val_loss: float | None = None
    artifact_bytes: int | None = None
    train_time_s: float | None = None
    eval_time_s: float | None = None
    steps: int | None = None
    pre_ttt_val_bpb: float | None = None
    step_avg_ms: float | None = None
    source: str | None = None  # free text, e.g. "Reproduction by @..."
    extra: dict[str, Any] = Field(default_factory=dict)


class Submission(BaseModel):
    file: str
    schema_family: str  # A-F per records-format.md §2.1, "?" when none fits
    name: str | None = None
    author: str | None = None
    github_id: str | None = None
    blurb: str | None = None
    date: str | None = None  # as written
    date_iso: str | None = None  # YYYY-MM-DD
    track_raw: str | None = None
    track: str | None = None  # "10min_16mb" | "non_record_16mb" | "non_record_unlimited_16mb"
    val_bpb: float | None = None
    val_loss: float | None = None
    val_bpb_std: float | None = None
    val_loss_std: float | None = None
    val_loss_holds_bpb: bool = False  # the 03-20 Int5MLP quirk
    pre_quant_val_bpb: float | None = None
    pre_quant_val_loss: float | None = None
    bytes_total: int | None = None
    bytes_code: int | None = None
    bytes_model: int | None = None
    artifact_bytes_mean: float | None = None
    artifact_bytes_max: int | None = None
    seeds: list[int] = Field(default_factory=list)
    per_seed: dict[int, SeedClaim] = Field(default_factory=dict)
    rerun_per_seed: dict[int, SeedClaim] = Field(default_factory=dict)  # compliance_rerun.seed_results
    p_value: PValue | None = None
    t_statistic: float | None = None
    train_time_s: float | None = None
    eval_time_s: float | None = None  # the largest when a per-seed list is given
    eval_time_s_list: list[float] = Field(default_factory=list)
    step_stop: int | None = None
    compliance: dict[str, Any] = Field(default_factory=dict)  # self-declared, raw
    compliance_flags: dict[str, bool] = Field(default_factory=dict)  # boolean flags, synonyms merged
    base_pr: int | None = None
    supports_pr: int | None = None
    submission_type: str | None = None
    val_bpb_method: str | None = None
    hardware: str | None = None
    pytorch_version: str | None = None
    notes: list[str] = Field(default_factory=list)
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The normalized claims for the report (no raw JSON, per-seed kept)."""
        return self.model_dump(mode="json", exclude={"raw"}, exclude_none=True, exclude_defaults=True)

    def source_of(self, field_path: str) -> Provenance | None:
        return self.provenance.get(field_path)


class SubmissionParse(BaseModel):
    submission: Submission | None = None
    findings: list[Finding] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------


def parse_submission(path: Path, rel: str) -> SubmissionParse:
    """Parse a metadata JSON file. Never raises for bad input."""
    path = Path(path)
    read = read_text_bounded(path, SUBMISSION_MAX_BYTES, root=folder_root_of(path, rel))
    problems = [p for p in read.problems]
    if (
        read.text is None
        or read.truncated
        or read.text == ""
        or any(p.startswith("not UTF-8") for p in problems)
    ):
        why = read.problem or "unreadable"
        if read.truncated:
            why = f"larger than {SUBMISSION_MAX_BYTES} bytes"
        return SubmissionParse(findings=[_malformed(rel, f"cannot be read as JSON text: {why}")])
    text = read.text
    notes: list[str] = []
    if text.startswith("\ufeff"):
        text = text[1:]
        notes.append("file starts with a UTF-8 byte-order mark (strict parsers reject it)")
    nonstandard: list[str] = []
    duplicates: list[str] = []

    def constant(name: str) -> None:
        nonstandard.append(name)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                duplicates.append(k)
            out[k] = v
        return out

    try:
        data = json.loads(text, parse_constant=constant, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        doc_lines = exc.doc.splitlines()
        snippet = doc_lines[exc.lineno - 1][:200] if 0 < exc.lineno <= len(doc_lines) else ""
        return SubmissionParse(
            findings=[
                _malformed(
                    rel,
                    f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    line=exc.lineno,
                    column=exc.colno,
                    snippet=snippet,
                )
            ]
        )
    except RecursionError:
        return SubmissionParse(findings=[_malformed(rel, "is not valid JSON: nested too deeply")])
    except ValueError as exc:  # e.g. an integer literal beyond Python's 4,300-digit limit
        limit = sys.get_int_max_str_digits()
        huge = re.search(rf"\d{{{limit + 1},}}", text) if limit else None
        if huge is None:
            return SubmissionParse(findings=[_malformed(rel, f"is not valid JSON: {exc}")])
        line = text.count("\n", 0, huge.start()) + 1
        return SubmissionParse(findings=[_malformed(
            rel, f"holds a number of {len(huge.group())} digits (line {line}), more than any field can mean; "
            f"numbers of up to {limit} digits are read", line=line)])
    if not isinstance(data, dict):
        return SubmissionParse(
            findings=[_malformed(rel, f"top-level value is {_json_type(data)}, not an object")]
        )
    findings: list[Finding] = []
    if nonstandard:
        findings.append(
            _malformed(
                rel,
                f"uses non-standard constant(s) {', '.join(sorted(set(nonstandard)))} that strict JSON "
                "parsers reject; read as null",
                severity=Severity.WARNING,
            )
        )
    if duplicates:
        notes.append(f"duplicate key(s) {', '.join(sorted(set(duplicates)))}: the last value wins")
    sub = normalize(data, rel)
    sub.notes[:0] = notes
    return SubmissionParse(submission=sub, findings=findings)


def _malformed(
    rel: str,
    what: str,
    *,
    line: int | None = None,
    column: int | None = None,
    snippet: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    return finding(
        RULE_MALFORMED,
        f"{rel} {what}",
        location=Location(file=rel, line=line, column=column, snippet=snippet),
        severity=severity,
        origin="metadata",
    )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# ---------------------------------------------------------------------------------------------
# Normalization


class _Builder:
    """Collects normalized values together with their provenance."""

    def __init__(self, data: dict[str, Any], rel: str):
        self.data = data
        self.values: dict[str, Any] = {}
        self.prov: dict[str, Provenance] = {}
        self.notes: list[str] = []
        self.rel = rel

    def put(self, field: str, value: Any, key: str, raw: Any, note: str | None = None) -> None:
        if value is None:
            return
        self.values[field] = value
        self.prov[field] = Provenance(key=key, raw=raw, note=note)

    def first_number(self, field: str, keys: tuple[str, ...], *, integer: bool = False) -> None:
        for key in keys:
            if key not in self.data:
                continue
            raw = self.data[key]
            value, note = to_number(raw, integer=integer)
            if value is not None:
                self.put(field, value, key, raw, note)
                return
            if raw is not None:
                self.notes.append(f"{key}: {raw!r} is not a number")

    def first_text(self, field: str, keys: tuple[str, ...]) -> None:
        for key in keys:
            raw = self.data.get(key)
            if isinstance(raw, str) and raw.strip():
                self.put(field, raw.strip(), key, raw)
                return
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                self.put(field, str(raw), key, raw, "number written where text was expected")
                return


def normalize(data: dict[str, Any], rel: str) -> Submission:
    b = _Builder(data, rel)
    for fld, keys in (
        ("name", ("name", "run_name")),
        ("author", ("author",)),
        ("github_id", ("github_id",)),
        ("blurb", ("blurb",)),
        ("date", ("date",)),
        ("track_raw", ("track",)),
        ("submission_type", ("submission_type",)),
        ("val_bpb_method", ("val_bpb_method", "eval_method")),
        ("hardware", ("hardware", "gpu", "platform")),
        ("pytorch_version", ("pytorch_version",)),
    ):
        b.first_text(fld, keys)
    for key in ("author", "github_id", "name"):
        if data.get(key) == "":
            b.notes.append(f"{key} is an empty string")

    if "date" in b.values:
        m = re.match(r"(\d{4})-(\d\d)-(\d\d)", b.values["date"])
        if m:
            b.put("date_iso", m.group(0), "date", data.get("date"))
    if "track_raw" in b.values:
        b.put("track", normalize_track(b.values["track_raw"]), "track", data.get("track"))

    _scores(b)
    b.first_number("val_bpb_std", ("val_bpb_std", "std_bpb", "bpb_std"))
    b.first_number("val_loss_std", ("val_loss_std", "std_val_loss_nats"))
    b.first_number("pre_quant_val_bpb", ("pre_quant_val_bpb",))
    b.first_number("pre_quant_val_loss", ("pre_quant_val_loss",))
    _sizes(b)
    per_seed, seeds = _per_seed(b)
    b.first_number("t_statistic", ("t_statistic", "t_stat"))
    _p_value(b)
    _times(b)
    b.first_number("step_stop", ("step_stop", "train_steps"), integer=True)
    b.first_number("base_pr", ("base_pr",), integer=True)
    b.first_number("supports_pr", ("supports_pr",), integer=True)

    compliance = data.get("compliance")
    flags: dict[str, bool] = {}
    if isinstance(compliance, dict):
        flags = normalize_compliance(compliance)
    elif compliance is not None:
        b.notes.append(f"compliance is {_json_type(compliance)}, not an object")

    rerun: dict[int, SeedClaim] = {}
    cr = data.get("compliance_rerun")
    if isinstance(cr, dict) and isinstance(cr.get("seed_results"), dict):
        rerun = _seed_map(b, cr["seed_results"], "compliance_rerun.seed_results", "rerun_per_seed")

    sub = Submission(
        file=rel,
        schema_family=schema_family(data),
        seeds=seeds,
        per_seed=per_seed,
        rerun_per_seed=rerun,
        compliance=compliance if isinstance(compliance, dict) else {},
        compliance_flags=flags,
        notes=b.notes,
        provenance=b.prov,
        raw=data,
        **{k: v for k, v in b.values.items() if k in Submission.model_fields},
    )
    return sub


def _scores(b: _Builder) -> None:
    data = b.data
    b.first_number("val_loss", ("val_loss", "mean_val_loss", "mean_val_loss_nats"))
    for key, note in (
        ("val_bpb", None),
        ("mean_val_bpb", "no val_bpb; taken from mean_val_bpb"),
        ("mean_bpb", "no val_bpb; taken from mean_bpb"),
        ("val_bpb_mean", "no val_bpb; taken from val_bpb_mean"),
        ("val_bpb_3seed_mean", "no val_bpb; taken from val_bpb_3seed_mean"),
        ("validation_bpb", "no val_bpb; taken from validation_bpb"),
    ):
        if key not in data:
            continue
        raw = data[key]
        value, conv = to_number(raw)
        if value is None and isinstance(raw, dict):  # PR-wide: {"mean": ..., "std": ...}
            for inner in ("mean", "value", "val_bpb"):
                value, conv = to_number(raw.get(inner))
                if value is not None:
                    conv = f"taken from {key}.{inner}"
                    key = f"{key}.{inner}"
                    break
        if value is not None:
            b.put("val_bpb", value, key, raw, "; ".join(x for x in (note, conv) if x) or None)
            return
        if raw is not None:
            b.notes.append(f"{key}: {raw!r} is not a number")
    loss = b.values.get("val_loss")
    if loss is not None and loss < BPB_IN_VAL_LOSS_BELOW:
        # 03-20 Int5MLP: the 3-seed mean BPB was written into val_loss.
        b.values["val_loss_holds_bpb"] = True
        prov = b.prov["val_loss"]
        b.put(
            "val_bpb",
            loss,
            prov.key,
            prov.raw,
            f"val_loss holds BPB? no val_bpb key and val_loss {loss} < {BPB_IN_VAL_LOSS_BELOW}",
        )
        b.notes.append(f"val_loss {loss} is read as the BPB score (no val_bpb key; too low for nats/token)")
        # Keep it out of val_loss so nothing downstream takes it for nats/token.
        del b.values["val_loss"]
        prov.note = _join(prov.note, "moved to val_bpb: the value is a BPB, not nats/token")


def _sizes(b: _Builder) -> None:
    data = b.data
    b.first_number(
        "bytes_total", ("bytes_total", "artifact_bytes", "artifact_size_bytes", "total_bytes"), integer=True
    )
    if "bytes_total" in b.prov and b.prov["bytes_total"].key != "bytes_total":
        b.prov["bytes_total"].note = _join(
            b.prov["bytes_total"].note, f"no bytes_total; taken from {b.prov['bytes_total'].key}"
        )
    b.first_number("bytes_code", ("bytes_code", "code_bytes"), integer=True)
    keys = tuple(k for k in MODEL_BYTES_KEYS if k in data) + tuple(
        sorted(k for k in data if k.startswith("bytes_model_") and k not in MODEL_BYTES_KEYS)
    )
    b.first_number("bytes_model", keys, integer=True)
    b.first_number("artifact_bytes_mean", ("artifact_bytes_mean",))
    b.first_number("artifact_bytes_max", ("artifact_bytes_max",), integer=True)
    for fld, step in (("bytes_code", 1000), ("bytes_total", 10_000)):
        v = b.values.get(fld)
        if isinstance(v, int) and v > 0 and v % step == 0:
            b.prov[fld].note = _join(
                b.prov[fld].note, f"round number ({v}): probably not an exact byte count"
            )


def _per_seed(b: _Builder) -> tuple[dict[int, SeedClaim], list[int]]:
    data = b.data
    per_seed: dict[int, SeedClaim] = {}
    if isinstance(data.get("seed_results"), dict):
        per_seed = _seed_map(b, data["seed_results"], "seed_results", "per_seed")
    if isinstance(data.get("val_bpb_per_seed"), dict):  # PR-wide: {"42": 0.9018, ...}
        for k, v in _seed_map(b, data["val_bpb_per_seed"], "val_bpb_per_seed", "per_seed").items():
            per_seed.setdefault(k, v)
    seeds_raw = data.get("seeds")
    seeds: list[int] = []
    if isinstance(seeds_raw, dict):  # family E: per-seed objects under "seeds"
        extra = _seed_map(b, seeds_raw, "seeds", "per_seed")
        for k, v in extra.items():
            per_seed.setdefault(k, v)
        seeds = list(extra)
    elif isinstance(seeds_raw, list):
        for i, s in enumerate(seeds_raw):
            n, _ = to_number(s, integer=True)
            if n is None:
                b.notes.append(f"seeds[{i}]: {s!r} is not an integer")
            else:
                seeds.append(n)
        if seeds:
            b.prov["seeds"] = Provenance(key="seeds", raw=seeds_raw)
        scores = data.get("seed_scores")
        if isinstance(scores, list):
            if len(scores) != len(seeds):
                b.notes.append(f"seed_scores has {len(scores)} values for {len(seeds)} seeds")
            for i, (seed, raw) in enumerate(zip(seeds, scores)):
                value, note = to_number(raw)
                claim = per_seed.setdefault(seed, SeedClaim())
                if value is not None and claim.val_bpb is None:
                    claim.val_bpb = value
                    b.prov[f"per_seed.{seed}.val_bpb"] = Provenance(
                        key=f"seed_scores.{i}", raw=raw, note=note
                    )
    elif seeds_raw is not None:
        n, _ = to_number(seeds_raw, integer=True)
        if n is not None:
            seeds = [n]
            b.prov["seeds"] = Provenance(key="seeds", raw=seeds_raw)
    if not seeds and per_seed:
        seeds = list(per_seed)
        b.prov["seeds"] = Provenance(
            key="seed_results", raw=list(data.get("seed_results", {})), note="keys of seed_results"
        )
    if not seeds and "seed" in data:
        n, _ = to_number(data["seed"], integer=True)
        if n is not None:
            seeds = [n]
            b.prov["seeds"] = Provenance(key="seed", raw=data["seed"])
    if per_seed and seeds and set(per_seed) != set(seeds):
        b.notes.append(f"seeds {sorted(seeds)} differ from the per-seed results {sorted(per_seed)}")
    if "val_bpb" not in b.values:
        vals = [c.val_bpb for c in per_seed.values() if c.val_bpb is not None]
        if vals:
            mean = sum(vals) / len(vals)
            b.put(
                "val_bpb",
                mean,
                "per_seed.*.val_bpb",
                vals,
                f"no top-level score; mean of {len(vals)} per-seed values",
            )
    return per_seed, seeds


SEED_FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "val_bpb": ("val_bpb", "bpb", "val_var_bpb", "post_ttt_val_bpb"),
    "val_loss": ("val_loss", "post_ttt_val_loss"),
    "artifact_bytes": ("artifact_bytes", "bytes_total", "total_bytes", "artifact_size_bytes"),
    "steps": ("steps", "step_stop", "train_steps"),
    "pre_ttt_val_bpb": ("pre_ttt_val_bpb", "pre_ttt_sliding_bpb", "sliding_bpb"),
    "step_avg_ms": ("step_avg_ms", "ms_per_step"),
}
TIME_KEYS: dict[str, tuple[tuple[str, float], ...]] = {  # key -> seconds per unit
    "train_time_s": (
        ("train_time_s", 1.0),
        ("train_time_seconds", 1.0),
        ("train_time_ms", 1e-3),
        ("wallclock_seconds", 1.0),
    ),
    "eval_time_s": (
        ("eval_time_s", 1.0),
        ("eval_time_seconds", 1.0),
        ("ttt_eval_time_s", 1.0),
        ("eval_time_ms", 1e-3),
        ("ttt_time_ms", 1e-3),
        ("post_ttt_eval_time_ms", 1e-3),
    ),
}


def _seed_map(b: _Builder, mapping: dict[str, Any], prefix: str, field_prefix: str) -> dict[int, SeedClaim]:
    out: dict[int, SeedClaim] = {}
    for key, entry in mapping.items():
        seed, _ = to_number(key, integer=True)
        if seed is None:
            b.notes.append(f"{prefix}: key {key!r} is not a seed number")
            continue
        if not isinstance(entry, dict):
            value, note = to_number(entry)
            if value is not None:  # {"42": 1.0812} — a bare score
                out[seed] = SeedClaim(val_bpb=value)
                b.prov[f"{field_prefix}.{seed}.val_bpb"] = Provenance(
                    key=f"{prefix}.{key}", raw=entry, note=note
                )
            else:
                b.notes.append(f"{prefix}.{key} is {_json_type(entry)}, not an object")
            continue
        claim = SeedClaim()
        used: set[str] = set()
        for fld, keys in SEED_FIELD_KEYS.items():
            for k in keys:
                if k in entry:
                    value, note = to_number(entry[k], integer=fld in ("artifact_bytes", "steps"))
                    if value is None:
                        continue
                    if fld == "val_bpb" and k != "val_bpb":
                        note = _join(note, f"no val_bpb; taken from {k}")
                    setattr(claim, fld, value)
                    used.add(k)
                    b.prov[f"{field_prefix}.{seed}.{fld}"] = Provenance(
                        key=f"{prefix}.{key}.{k}", raw=entry[k], note=note
                    )
                    break
        for fld, units in TIME_KEYS.items():
            for k, scale in units:
                if k in entry:
                    value, note = to_number(entry[k])
                    if value is None:
                        continue
                    if scale != 1.0:
                        note = _join(note, f"{k} converted from ms to s")
                    if k.startswith(("ttt_", "post_ttt")):
                        note = _join(note, "TTT eval time only")
                    setattr(claim, fld, value * scale)
                    used.add(k)
                    b.prov[f"{field_prefix}.{seed}.{fld}"] = Provenance(
                        key=f"{prefix}.{key}.{k}", raw=entry[k], note=note
                    )
                    break
        if isinstance(entry.get("source"), str):
            claim.source = entry["source"]
            used.add("source")
        claim.extra = {k: v for k, v in entry.items() if k not in used}
        out[seed] = claim
    return out


def _p_value(b: _Builder) -> None:
    data = b.data
    keys = [k for k in data if k in ("p_value", "pvalue", "p") or k.startswith("p_value")]
    for key in keys:
        p = parse_p_value(data[key])
        if p is not None:
            b.put("p_value", p, key, data[key])
            return
        b.notes.append(f"{key}: {data[key]!r} is not a p-value")


def _times(b: _Builder) -> None:
    data = b.data
    for key, scale in (
        ("wallclock_seconds", 1.0),
        ("train_time_seconds", 1.0),
        ("train_time_s", 1.0),
        ("train_time_ms", 1e-3),
    ):
        if key in data:
            value, note = to_number(data[key])
            if value is not None:
                if scale != 1.0:
                    note = _join(note, f"{key} converted from ms to s")
                b.put("train_time_s", value * scale, key, data[key], note)
                break
    for key, scale in (("eval_time_seconds", 1.0), ("eval_time_s", 1.0), ("eval_time_ms", 1e-3)):
        if key not in data:
            continue
        raw = data[key]
        if isinstance(raw, list):
            values = [v for v in (to_number(x)[0] for x in raw) if v is not None]
            if values:
                scaled = [v * scale for v in values]
                b.values["eval_time_s_list"] = scaled
                b.prov["eval_time_s_list"] = Provenance(key=key, raw=raw)
                b.put("eval_time_s", max(scaled), key, raw, "per-seed list; the largest value")
                return
        value, note = to_number(raw)
        if value is not None:
            if scale != 1.0:
                note = _join(note, f"{key} converted from ms to s")
            b.put("eval_time_s", value * scale, key, raw, note)
            return


# ---------------------------------------------------------------------------------------------
# Small normalizers (public: the checks and the README parser use them too)


_NUMBER_IN_TEXT = re.compile(r"^\s*[~≈]?\s*(-?\d[\d,_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)\s*$")


def to_number(raw: Any, *, integer: bool = False) -> tuple[Any, str | None]:
    """A JSON value as int/float, and a note when a conversion was needed (None: not a number)."""
    if raw is None or isinstance(raw, bool):
        return None, None
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            return None, None
        if integer:
            if isinstance(raw, float) and not raw.is_integer():
                return round(raw), f"{raw} rounded to an integer"
            return int(raw), None
        return (float(raw) if isinstance(raw, int) else raw), None
    if isinstance(raw, str):
        m = _NUMBER_IN_TEXT.match(raw)
        if not m:
            return None, None
        try:
            value = float(m.group(1).replace(",", "").replace("_", ""))
        except ValueError:
            return None, None
        if not math.isfinite(value):
            return None, None
        note = f"number written as a string {raw!r}"
        if integer:
            return round(value), note
        return value, note
    return None, None


def parse_p_value(raw: Any) -> PValue | None:
    """``0.0001`` or ``"<0.001"`` / ``"p < 0.01"`` / ``"1e-4"``."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            return None
        return PValue(value=float(raw), relation="=", raw=raw)
    if isinstance(raw, str):
        m = re.match(r"^\s*(?:p\s*)?(<=|≤|<|>|=)?\s*(\d*\.?\d+(?:[eE][-+]?\d+)?)\s*$", raw)
        if m:
            rel = {"≤": "<=", None: "="}.get(m.group(1), m.group(1))
            return PValue(value=float(m.group(2)), relation=rel, raw=raw)
    return None


def normalize_track(raw: str | None) -> str | None:
    """Map the >20 spellings of the track to three names (None when it names neither)."""
    if not raw:
        return None
    t = raw.lower().replace("-", "_").replace(" ", "_")
    if "non_record" in t or "nonrecord" in t or "unlimited" in t:
        return "non_record_unlimited_16mb" if "unlimited" in t else "non_record_16mb"
    if "10min" in t or "10_min" in t or t in ("record", "track_record"):
        return "10min_16mb"
    return None


COMPLIANCE_SYNONYMS = {
    "training_under_600s": "train_under_600s",
    "artifact_under_16_mb": "artifact_under_16mb",
    "no_hashed_ngram_cache": "no_ngram_cache",
}


def normalize_compliance(compliance: dict[str, Any]) -> dict[str, bool]:
    """The boolean self-declarations, with the spellings seen in the wild merged."""
    out: dict[str, bool] = {}
    for key, value in compliance.items():
        if isinstance(value, bool):
            out[COMPLIANCE_SYNONYMS.get(key, key)] = value
    return out


LAUNCH_KEYS = {
    "author",
    "github_id",
    "name",
    "blurb",
    "date",
    "val_loss",
    "val_bpb",
    "bytes_total",
    "bytes_code",
}
MINIMAL_KEYS = {"name", "val_bpb", "bytes_total", "blurb", "author", "github_id", "date"}


def schema_family(data: dict[str, Any]) -> str:
    """The §2.1 family of a metadata file (descriptive only; parsing never depends on it)."""
    keys = set(data)
    if isinstance(data.get("seed_results"), dict):
        return "D"
    if isinstance(data.get("seeds"), dict):
        return "E"
    if "run_name" in keys or not {"author", "name"} & keys or ("val_bpb" not in keys and "val_loss" in keys):
        return "F"
    if keys == LAUNCH_KEYS:
        return "A"
    if MINIMAL_KEYS <= keys and "val_loss" not in keys:
        return "C"
    if len(LAUNCH_KEYS & keys) >= 7:
        return "B"
    return "?"


def _join(a: str | None, b: str | None) -> str | None:
    return "; ".join(x for x in (a, b) if x) or None
