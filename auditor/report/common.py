"""What every report format needs: ordering, per-record numbers, paths and evidence strings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from auditor.models import AuditReport, Finding, Location, RecordAudit, SeedRun, Severity
from auditor.significance import distinct_runs

ARTIFACT_LIMIT = 16_000_000  # decimal bytes: code + compressed model (README)
SEVERITY_ORDER = (Severity.ERROR, Severity.WARNING, Severity.INFO)
SEVERITY_TITLE = {Severity.ERROR: "Errors", Severity.WARNING: "Warnings", Severity.INFO: "Info"}


@dataclass(frozen=True)
class RunRow:
    seed: str
    val_bpb: float | None
    val_loss: float | None
    artifact_bytes: int | None
    where: str  # log file[:line]
    duplicate_of: str | None

    @property
    def margin(self) -> int | None:
        """Bytes left under the 16,000,000 cap (negative = over)."""
        return None if self.artifact_bytes is None else ARTIFACT_LIMIT - self.artifact_bytes


def run_rows(record: RecordAudit) -> list[RunRow]:
    rows = []
    for run in record.runs:
        where = run.log_file if run.line is None else f"{run.log_file}:{run.line}"
        rows.append(
            RunRow(
                seed="-" if run.seed is None else str(run.seed),
                val_bpb=run.val_bpb,
                val_loss=run.val_loss,
                artifact_bytes=run.artifact_bytes,
                where=where,
                duplicate_of=run.duplicate_of,
            )
        )
    return rows


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def mean_bpb(runs: list[SeedRun]) -> float | None:
    """Mean over distinct seeds (duplicate logs counted once), as the leaderboard reports it."""
    return _mean(r.val_bpb for r in distinct_runs(runs))


def mean_loss(runs: list[SeedRun]) -> float | None:
    return _mean(r.val_loss for r in distinct_runs(runs))


def max_artifact(runs: list[SeedRun]) -> int | None:
    sizes = [r.artifact_bytes for r in runs if r.artifact_bytes is not None]
    return max(sizes) if sizes else None


def claimed_bpb(record: RecordAudit) -> float | None:
    value = record.claimed.get("val_bpb")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    out = {s: 0 for s in SEVERITY_ORDER}
    for f in findings:
        out[f.severity] += 1
    return out


def by_severity(findings: Iterable[Finding]) -> dict[Severity, list[Finding]]:
    out: dict[Severity, list[Finding]] = {s: [] for s in SEVERITY_ORDER}
    for f in findings:
        out[f.severity].append(f)
    for items in out.values():
        items.sort(
            key=lambda f: (
                f.rule_id,
                f.location.file if f.location else "",
                (f.location.line or 0) if f.location else 0,
            )
        )
    return out


def all_findings(report: AuditReport) -> list[Finding]:
    return [f for r in report.records for f in r.findings] + list(report.findings)


def where(loc: Location | None) -> str:
    """``file:line`` (plus ``-end``), or "(no location)"."""
    if loc is None:
        return "(no location)"
    text = loc.file
    if loc.line is not None:
        text += f":{loc.line}"
        if loc.end_line is not None and loc.end_line != loc.line:
            text += f"-{loc.end_line}"
    return text


def wrapper_note(loc: Location | None) -> str | None:
    """For unwrapped code: the line is in the decoded payload, not in the shipped file."""
    if loc is None or not loc.wrapper:
        return None
    return f"line in the decoded payload of {loc.wrapper}"


def fmt_float(value: float | None, digits: int = 8) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None else str(value)
    return f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def fmt_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def fmt_margin(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n:,} under" if n >= 0 else f"{-n:,} OVER"


def repo_relative(record_path: str, options: dict | None = None) -> str:
    """A record folder as a repository-relative POSIX path (``records/<track>/<folder>``).

    Audits of a checkout or PR carry paths like that already; a local absolute path is cut at its
    ``records/`` segment, or made relative to ``options['root']``, or reduced to the folder name.
    """
    path = record_path.replace("\\", "/").rstrip("/")
    parts = PurePosixPath(path).parts
    if "records" in parts:
        return str(PurePosixPath(*parts[parts.index("records") :]))
    root = (options or {}).get("root")
    if isinstance(root, str) and root:
        root = root.replace("\\", "/").rstrip("/")
        if path.startswith(root + "/"):
            return path[len(root) + 1 :]
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return parts[-1] if parts else path
    return _strip_dot(path) or "."


def file_path(record_path: str | None, file: str, options: dict | None = None) -> str:
    """A finding's file as a repository-relative POSIX path. ``Location.file`` is relative to its
    record folder (or, for report-level findings, to the audited root)."""
    file = file.replace("\\", "/")
    if record_path is None:
        return repo_relative(file, options) if file.startswith("/") else _strip_dot(file)
    base = repo_relative(record_path, options)
    if file.startswith("/"):
        norm_record = record_path.replace("\\", "/").rstrip("/") + "/"
        if file.startswith(norm_record):
            file = file[len(norm_record) :]
        else:
            return repo_relative(file, options)
    file = _strip_dot(file)
    if file == base or file.startswith(base + "/"):
        return file
    return f"{base}/{file}" if base not in ("", ".") else file


def is_folder(loc) -> bool:
    """A finding about the record folder itself (a missing file, its contents), or with no place."""
    return loc is None or loc.role == "folder" or loc.file.replace("\\", "/").rstrip("/") in ("", ".")


def _strip_dot(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def significance_basis(sig) -> str:
    """One line: which baseline, why, and the policies in effect (with the date they were chosen by)."""
    when = f" (submitted {sig.candidate_date}, from {sig.candidate_date_source})" if sig.candidate_date else ""
    why = f"baseline: {sig.baseline_reason}" if sig.baseline_reason else f"baseline: {sig.baseline}"
    extra = "; ".join(sig.notes)
    return f"{why}; policies in effect: {', '.join(sig.policies) or 'none'}{when}" + (f"; {extra}" if extra else "")


def rerun_lines(summary: dict | None) -> list[str]:
    """The rerun in a few lines (text and Markdown show these; JSON carries the whole summary):
    device, each run, the reported score's Gibbs margin, whether the tiny model learned the
    uniform support, and every run-time substitution of the CPU adapter."""
    if not summary:
        return []
    out = [(f"device {summary.get('device', '?')}, {summary.get('duration_s', '?')} s, "
            f"{summary.get('verdict_hint', '?')}")]
    for run in summary.get("runs") or []:
        state = "ok" if run.get("ok") else f"stopped: {run.get('error')}"
        wall = run.get("wall_seconds")
        out.append(f"run {run.get('name')}: {state}" + (f" ({wall:.1f} s)" if isinstance(wall, (int, float)) else ""))
    reported = [g for g in summary.get("gibbs") or [] if g.get("reported")]
    for g in reported:
        out.append(f"Gibbs ({g['run']}): '{g['label']}' {g['val_loss']:.6f} vs floor {g['floor']:.6f}, "
                   f"margin {g['margin_nats']:+.4f} nats (tolerance {g['tolerance']:.4f})")
    learned = summary.get("learned_uniform")
    if learned:
        out.append(learned["note"])
    used: dict[str, str | None] = {}
    for run in summary.get("runs") or []:
        for a in run.get("adapter") or []:
            used.setdefault(a["adaptation"], a.get("first"))
    if used:
        out.append("CPU adapter substitutions: " + "; ".join(
            f"{what}" + (f" (first at {where})" if where else "") for what, where in sorted(used.items())))
    return out


REPRO_COLUMNS = ("seed", "status", "claimed val_bpb", "reproduced", "Δ", "within", "artifact claimed",
                 "artifact reproduced", "train s (log/outside)", "eval s (log/outside)")


def reproduction_rows(repro) -> list[tuple[str, ...]]:
    """The per-seed table of a reproduction (text and Markdown render the same cells)."""

    def num(v, fmt="{:.6f}"):
        return fmt.format(v) if v is not None else "-"

    def pair(a, b):
        return f"{num(a, '{:.1f}')} / {num(b, '{:.1f}')}"

    rows = []
    for r in repro.seeds:
        measured = r.measured_artifact_bytes if r.measured_artifact_bytes is not None else r.reproduced_artifact_bytes
        within = "-" if r.within_tolerance is None else ("yes" if r.within_tolerance else "NO")
        rows.append((str(r.seed) + (f" @step {r.step}" if r.step else ""), r.status, num(r.claimed_bpb),
                     num(r.reproduced_bpb), num(r.delta_bpb, "{:+.6f}"), within,
                     num(r.claimed_artifact_bytes, "{:,}"), num(measured, "{:,}"),
                     pair(r.reproduced_train_s, r.outside_train_s), pair(r.reproduced_eval_s, r.outside_eval_s)))
    return rows


def reproduction_lines(repro) -> list[str]:
    """A reproduction in a few lines besides its table: verdict, tolerance, what ran, where."""
    if repro is None:
        return []
    hw = repro.hardware or {}
    gpus = hw.get("gpus") or []
    where = (f"{len(gpus)}x {gpus[0]}" if gpus else f"CPU ({hw.get('cpu') or '?'}, {hw.get('host_cpus')} cores)")
    out = [f"{repro.verdict.value}{' (partial: step-matched)' if repro.partial else ''}: {repro.reason}",
           f"tolerance ±{repro.tolerance_bpb:.4f} BPB ({repro.tolerance_source})",
           f"ran: {repro.command}" if len(repro.command) < 400 else f"ran: ... {repro.command[-380:]}",
           f"on {where}; torch {hw.get('torch', '?')}, CUDA {hw.get('cuda') or '-'}"
           + (f", driver {hw['driver']}" if hw.get("driver") else "") + f"; data {repro.data_dir}",
           "caps enforced from outside: " + ", ".join(f"{k} {v:.0f} s" for k, v in repro.caps_s.items())]
    for r in repro.seeds:
        if r.reason:
            out.append(f"seed {r.seed}: {r.reason}")
        if r.model_file:
            out.append(f"seed {r.seed}: model file {r.model_file}; log {r.log_file}")
    for f in repro.findings:
        out.append(f"reproduced logs: {f.rule_id} {f.severity.value}: {f.message}")
    return out
