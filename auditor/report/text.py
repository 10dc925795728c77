"""Terminal report (rich): per record a runs table, findings by severity, the significance table."""

from __future__ import annotations

import os
import shutil
import sys
from io import StringIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor.models import AuditReport, Finding, RecordAudit, Severity, Significance, Verdict
from auditor.report import common

VERDICT_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.FAIL: "bold red",
    Verdict.NEEDS_REVIEW: "bold yellow",
    Verdict.ERROR: "bold magenta",
}
SEVERITY_STYLE = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_SNIPPET_LINES = 12
MAX_MESSAGE_CHARS = 4_000


def use_color(stream=None) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def render(report: AuditReport, *, color: bool | None = None, width: int | None = None) -> str:
    color = use_color() if color is None else color
    if width is None:
        # The terminal's width when printing to one, else a stable 120 columns (files, CI logs).
        width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 120
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=max(width, 60),
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    total = common.counts(common.all_findings(report))
    header = Text.assemble(
        ("pgolf ", "bold"),
        (report.tool_version, ""),
        "  verdict: ",
        (report.verdict.value, VERDICT_STYLE[report.verdict]),
        f"  ({total[Severity.ERROR]} errors, {total[Severity.WARNING]} warnings, {total[Severity.INFO]} info)",
    )
    console.print(header)
    console.print(
        Text(f"generated {report.generated_at}, report schema {report.schema_version}", style="dim")
    )
    if report.error:
        console.print(Text(f"audit error: {report.error}", style="magenta"))
    if report.pr:
        console.print(Text(f"PR {report.pr.repo} {report.pr.ref} (commit {report.pr.commit or '?'})"))
        for path in report.pr.outside_changes:
            console.print(Text(f"  change outside the record folder: {path}", style="yellow"))
    for record in report.records:
        console.print()
        console.rule(Text(record.path, style="bold"), align="left")
        for renderable in _record(record):
            console.print(renderable)
    if report.findings:
        console.print()
        console.print(Text("Findings not tied to one record", style="bold"))
        for renderable in _findings(report.findings):
            console.print(renderable)
    return buffer.getvalue()


def _record(record: RecordAudit) -> list:
    parts: list = []
    claimed = common.claimed_bpb(record)
    summary = Text.assemble(
        ("verdict ", ""),
        (record.verdict.value, VERDICT_STYLE[record.verdict]),
        f"   track {record.track or '?'}",
        f"   mean val_bpb {common.fmt_float(common.mean_bpb(record.runs))}",
        f"   claimed {common.fmt_float(claimed)}" if claimed is not None else "",
    )
    parts.append(summary)
    if record.compliance is not None:
        parts.append(Text.assemble("compliance ", (record.compliance.value, VERDICT_STYLE[record.compliance])))
    if record.eligibility is not None:
        parts.append(Text(f"eligibility {record.eligibility.status.value}"))
        for reason in record.eligibility.reasons:
            parts.append(Text(f"  - {reason}", style="dim"))
    if record.error:
        parts.append(Text(f"audit error: {record.error}", style="magenta"))
    parts.append(_runs_table(record))
    if record.significance and record.significance.rows:
        parts.append(_significance_table(record.significance))
    rerun = common.rerun_lines(record.rerun)
    if rerun:
        parts.append(Text("Rerun", style="bold"))
        parts.extend(Text(f"  {line}") for line in rerun)
    if record.reproduction is not None:
        parts.append(Text("Reproduction", style="bold"))
        parts.extend(Text(f"  {line}") for line in common.reproduction_lines(record.reproduction))
        table = Table(box=box.SIMPLE_HEAD)
        for col in common.REPRO_COLUMNS:
            table.add_column(col)
        for row in common.reproduction_rows(record.reproduction):
            table.add_row(*row)
        parts.append(table)
    parts.extend(_findings(record.findings))
    return parts


def _runs_table(record: RecordAudit) -> Table:
    table = Table(title="Runs", title_justify="left", box=box.SIMPLE_HEAD, show_footer=bool(record.runs))
    mean_bpb = common.mean_bpb(record.runs)
    mean_loss = common.mean_loss(record.runs)
    biggest = common.max_artifact(record.runs)
    table.add_column("seed", footer="mean")
    table.add_column("val_bpb", justify="right", footer=common.fmt_float(mean_bpb))
    table.add_column("val_loss", justify="right", footer=common.fmt_float(mean_loss))
    table.add_column(
        f"artifact bytes (cap {common.ARTIFACT_LIMIT:,})",
        justify="right",
        footer=f"max {common.fmt_bytes(biggest)}",
    )
    table.add_column(
        "margin",
        justify="right",
        footer=common.fmt_margin(None if biggest is None else common.ARTIFACT_LIMIT - biggest),
    )
    table.add_column("log")
    if not record.runs:
        table.add_row("-", "n/a", "n/a", "n/a", "n/a", "no scored runs")
    for row in common.run_rows(record):
        margin_style = "red" if row.margin is not None and row.margin < 0 else ""
        log = row.where + (f" (duplicate of {row.duplicate_of})" if row.duplicate_of else "")
        table.add_row(
            row.seed,
            common.fmt_float(row.val_bpb),
            common.fmt_float(row.val_loss),
            common.fmt_bytes(row.artifact_bytes),
            Text(common.fmt_margin(row.margin), style=margin_style),
            Text(log),
        )
    return table


def _significance_table(sig: Significance) -> Table:
    table = Table(
        title=Text(f"Significance vs {sig.baseline}"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    for name, justify in (
        ("policy", "left"),
        ("unit", "left"),
        ("n", "right"),
        ("candidate", "right"),
        ("baseline", "right"),
        ("improvement", "right"),
        ("t (df)", "right"),
        ("p t-test", "right"),
        ("p z-test", "right"),
        ("significant", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)
    for row in sig.rows:
        t_df = "n/a" if row.t_stat is None else f"{row.t_stat:.2f} ({row.df:.1f})"
        table.add_row(
            row.policy,
            row.unit,
            f"{row.n_candidate}/{row.n_baseline}",
            f"{row.mean_candidate:.6f}",
            f"{row.mean_baseline:.6f}",
            f"{row.delta:+.6f}",
            t_df,
            common.fmt_p(row.p_value),
            common.fmt_p(row.z_p_value),
            Text("yes" if row.significant else "no", style="green" if row.significant else "red"),
        )
    notes = [common.significance_basis(sig)]
    notes += [f"{r.policy}: decided on {r.unit}, improvement > {r.margin:.6g} at p < {r.alpha:g}"
              for r in sig.rows if r.decisive]
    notes += [f"{r.policy}/{r.unit}: {r.note}" for r in sig.rows if r.note]
    if sig.quoted_p is not None:
        notes.append(f"quoted p-value: {sig.quoted_p:g}")
    if notes:
        table.caption = Text("\n".join(notes))
        table.caption_justify = "left"
    return table


def _findings(findings: list[Finding]) -> list:
    out: list = []
    for severity, items in common.by_severity(findings).items():
        if not items:
            continue
        out.append(
            Text(
                f"{common.SEVERITY_TITLE[severity]} ({len(items)})", style=f"bold {SEVERITY_STYLE[severity]}"
            )
        )
        for f in items:
            out.append(_finding(f))
    return out


def _finding(f: Finding) -> Text:
    text = Text("  ")
    text.append(f.rule_id, style=f"bold {SEVERITY_STYLE[f.severity]}")
    text.append(f" [{f.condition.value}, {f.confidence.value}, {f.origin}] ")
    text.append(common.where(f.location), style="bold")
    if note := common.wrapper_note(f.location):
        text.append(f" ({note})", style="dim")
    message = f.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f" ... ({len(f.message) - MAX_MESSAGE_CHARS} more characters)"
    text.append("\n    " + message.replace("\n", "\n    "))
    if f.location and f.location.snippet:
        lines = f.location.snippet.splitlines() or [""]
        shown = lines[:MAX_SNIPPET_LINES]
        for line in shown:
            text.append("\n      | " + line, style="dim")
        if len(lines) > len(shown):
            text.append(f"\n      | ... {len(lines) - len(shown)} more lines", style="dim")
    if f.path:
        text.append("\n    path:")
        for step in f.path:
            role = f"{step.role}: " if step.role else ""
            snippet = (
                f"  {step.snippet.strip().splitlines()[0]}" if step.snippet and step.snippet.strip() else ""
            )
            text.append(f"\n      {role}{common.where(step)}{snippet}")
    if f.reachability:
        text.append(f"\n    reachability: {f.reachability}", style="dim")
    if f.reference:
        # A local doc path reads better as the command that shows it.
        shown = f.reference if "://" in f.reference else f"pgolf rules {f.rule_id}  ({f.reference})"
        text.append(f"\n    {shown}", style="dim")
    return text
