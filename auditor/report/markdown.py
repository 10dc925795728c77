"""A review comment a maintainer can paste into the PR (GitHub-flavoured Markdown).

Everything that came from the submission (messages, snippets, paths) is treated as untrusted text:
HTML is escaped, ``@`` is neutralized so a pasted comment pings nobody, code goes into fences longer
than any backtick run inside it. GitHub rejects comments over 65,536 characters, so findings are
cut per severity group (with a note) until the comment fits.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import NamedTuple

from auditor.models import AuditReport, Finding, RecordAudit, Severity, Significance
from auditor.report import common

GITHUB_COMMENT_LIMIT = 65_536
MAX_LINES = 150  # a comment a maintainer reads; the full report is JSON/SARIF
MAX_SNIPPET_LINES = 20
MAX_MESSAGE_CHARS = 3_000


class Detail(NamedTuple):
    decisive: int  # findings per record shown in full
    snippet_lines: int
    listed: int  # other findings per record, one line each (folded)
    reasons: int  # eligibility reasons shown
    tables: bool  # runs and significance tables (folded)


# Tried in order until the comment fits the line and character budgets.
DETAIL_LEVELS = (
    Detail(2, 12, 40, 4, True),
    Detail(2, 8, 15, 3, True),
    Detail(2, 5, 8, 2, True),
    Detail(1, 4, 5, 2, False),
    Detail(1, 2, 3, 1, False),
    Detail(1, 1, 0, 1, False),
    Detail(1, 0, 0, 0, False),  # the decisive finding's rule, line and why, nothing else
    Detail(0, 0, 0, 0, False),
)
LANGUAGE = {
    ".py": "python",
    ".json": "json",
    ".md": "markdown",
    ".log": "text",
    ".txt": "text",
    ".sh": "bash",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".cpp": "cpp",
    ".cu": "cuda",
}


def text(value: str) -> str:
    """Untrusted text for Markdown prose: no raw HTML, no @mentions."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")


def cell(value: str) -> str:
    return text(value).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def code(value: str) -> str:
    """An inline code span that survives backticks inside the value."""
    value = value.replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def code_cell(value: str) -> str:
    """A code span inside a table cell: GFM splits cells on ``|`` even inside code."""
    return code(value).replace("|", "\\|")


def fenced(value: str, language: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{value.rstrip()}\n{fence}"


def _clip_lines(value: str, limit: int) -> str:
    lines = value.splitlines()
    if len(lines) <= limit:
        return value
    return "\n".join(lines[:limit] + [f"... ({len(lines) - limit} more lines)"])


def _clip_chars(value: str, limit: int) -> str:
    return (
        value
        if len(value) <= limit
        else value[:limit].rstrip() + f" ... ({len(value) - limit} more characters)"
    )


def render(report: AuditReport, *, limit: int = GITHUB_COMMENT_LIMIT, max_lines: int = MAX_LINES) -> str:
    """The comment: verdict per folder and the decisive findings first, the rest folded, within
    ``max_lines`` lines and ``limit`` characters (detail is dropped level by level until it fits)."""
    body = ""
    for detail in DETAIL_LEVELS:
        body = _render(report, detail, limit)
        if len(body) <= limit and body.count("\n") <= max_lines:
            return body
    return _hard_cut(body, limit)


def _hard_cut(body: str, limit: int) -> str:
    note = (
        f"\n\n> **Truncated:** this comment exceeded the {limit:,}-character limit; "
        "see the JSON or SARIF report for everything.\n"
    )
    cut = body[: max(0, limit - len(note))]
    boundary = max(cut.rfind("\n### "), cut.rfind("\n#### "))
    if boundary > 0:
        cut = cut[:boundary]
    return cut.rstrip() + note


def pr_label(pr) -> str:
    """``owner/repo#N`` for a GitHub PR, ``PR #N`` or the ref otherwise; never a local path."""
    number = re.search(r"(?:^|/)pull/(\d+)/", pr.ref or "")
    gh = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", pr.repo or "") or re.fullmatch(
        r"([\w.-]+/[\w.-]+)", pr.repo or ""
    )
    repo = gh.group(1) if gh else None
    if number:
        return f"{repo}#{number.group(1)}" if repo else f"PR #{number.group(1)}"
    return f"{repo} {pr.ref}" if repo else f"ref {pr.ref}"


def _render(report: AuditReport, detail: Detail, limit: int) -> str:
    findings = common.all_findings(report)
    total = common.counts(findings)
    out: list[str] = [f"## pgolf audit: `{report.verdict.value}`", ""]
    out.append(
        f"**Verdict: `{report.verdict.value}`** | errors: {total[Severity.ERROR]} | "
        f"warnings: {total[Severity.WARNING]} | info: {total[Severity.INFO]} | pgolf {text(report.tool_version)}"
    )
    if report.error:
        out += ["", f"> **Audit error:** {text(report.error)}"]
    if report.pr:
        commit = f" at {code(report.pr.commit[:12])}" if report.pr.commit else ""
        out += ["", f"Audited {text(pr_label(report.pr))}{commit}."]
        if report.pr.outside_changes:
            shown = report.pr.outside_changes[:10]
            more = len(report.pr.outside_changes) - len(shown)
            out.append("Changes outside the record folder: " + ", ".join(code(p) for p in shown)
                       + (f" and {more} more" if more else ""))
    if len(report.records) > 1:
        out += ["", "| Record | Verdict | Compliance | Eligibility | Decisive finding |", "|---|---|---|---|---|"]
        for record in report.records:
            top = _decisive(record.findings, 1)
            out.append(
                f"| {code_cell(record.name)} | `{record.verdict.value}` | "
                f"`{record.compliance.value if record.compliance else '-'}` | "
                f"`{record.eligibility.status.value if record.eligibility else '-'}` | "
                + (f"`{top[0].rule_id}` {_where(top[0].location, code_cell)}" if top else "none") + " |"
            )
    omitted = 0
    for record in report.records:
        lines, dropped = _record(record, detail)
        out += [""] + lines
        omitted += dropped
    if report.findings:
        out += ["", "### Findings not tied to one record"]
        lines, dropped = _folded(report.findings, detail, decisive=detail.decisive)
        out += lines
        omitted += dropped
    if omitted:
        out += ["", f"> {omitted} further findings are in the full report (`pgolf audit ... -f json` or `-f sarif`)."]
    out += [
        "",
        (
            "<sub>Generated by pgolf. Line numbers of unwrapped code refer to the decoded payload of the "
            "shipped wrapper. Rule docs: `pgolf rules RULE_ID`.</sub>"
        ),
        "",
    ]
    return "\n".join(out)


def _decisive(findings: list[Finding], n: int) -> list[Finding]:
    """The findings that decide the verdict, most serious first (findings arrive sorted)."""
    errors = [f for f in findings if f.severity is Severity.ERROR]
    warnings = [f for f in findings if f.severity is Severity.WARNING]
    return (errors or warnings)[:n]


def _record(record: RecordAudit, detail: Detail) -> tuple[list[str], int]:
    runs = record.runs
    mean = common.mean_bpb(runs)
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    biggest = common.max_artifact(runs)
    claimed = common.claimed_bpb(record)
    out = [f"### {code(record.path)}: `{record.verdict.value}`", ""]
    facts = [f"track {code(record.track or '?')}"]
    facts.append(f"mean val_bpb **{common.fmt_float(mean)}** over {len(common.distinct_runs(runs))} run(s)")
    if seeds:
        facts.append("seeds " + ", ".join(str(s) for s in seeds))
    if claimed is not None:
        facts.append(f"claimed {common.fmt_float(claimed)}")
    if biggest is not None:
        facts.append(
            f"max artifact {biggest:,} bytes ({common.fmt_margin(common.ARTIFACT_LIMIT - biggest)} "
            f"the {common.ARTIFACT_LIMIT:,} cap)"
        )
    out.append(" | ".join(facts))
    if record.compliance is not None and record.eligibility is not None:
        axes = f"**Compliance:** `{record.compliance.value}` | **Eligibility:** `{record.eligibility.status.value}`"
        out += ["", axes]
        reasons = record.eligibility.reasons
        out += [f"- {text(_clip_chars(r, 400))}" for r in reasons[: detail.reasons]]
        if len(reasons) > detail.reasons > 0:
            out.append(f"- ({len(reasons) - detail.reasons} more in the full report)")
    if record.error:
        out += ["", f"> **Audit error:** {text(record.error)}"]
    lines, dropped = _folded(record.findings, detail, decisive=detail.decisive)
    out += lines
    if record.reproduction is not None:
        repro = record.reproduction
        out += ["", f"**Reproduction:** `{repro.verdict.value}`" + (" (partial)" if repro.partial else ""), ""]
        out += [f"- {text(_clip_chars(r, 600))}" for r in common.reproduction_lines(repro)]
        out += ["", "| " + " | ".join(common.REPRO_COLUMNS) + " |", "|" + "---|" * len(common.REPRO_COLUMNS)]
        out += ["| " + " | ".join(text(c) for c in row) + " |" for row in common.reproduction_rows(repro)]
    rerun = common.rerun_lines(record.rerun)
    if rerun and detail.tables:
        out += ["", "<details><summary>Rerun</summary>", ""] + [f"- {text(_clip_chars(r, 600))}" for r in rerun]
        out += ["", "</details>"]
    if detail.tables:
        out += ["", "<details><summary>Runs and significance</summary>", ""] + _runs_table(record)
        if record.significance and record.significance.rows:
            out += [""] + _significance(record.significance)
        out += ["", "</details>"]
    return out, dropped


def _runs_table(record: RecordAudit) -> list[str]:
    runs = record.runs
    out = [
        f"| Seed | val_bpb | val_loss | Artifact bytes | Margin to {common.ARTIFACT_LIMIT:,} | Log |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in common.run_rows(record):
        log = code_cell(row.where) + (
            f" (duplicate of {code_cell(row.duplicate_of)})" if row.duplicate_of else ""
        )
        out.append(
            f"| {cell(row.seed)} | {common.fmt_float(row.val_bpb)} | {common.fmt_float(row.val_loss)} | "
            f"{common.fmt_bytes(row.artifact_bytes)} | {common.fmt_margin(row.margin)} | {log} |"
        )
    if runs:
        out.append(
            f"| **Mean** | **{common.fmt_float(common.mean_bpb(runs))}** | "
            f"{common.fmt_float(common.mean_loss(runs))} | max {common.fmt_bytes(common.max_artifact(runs))} | | |"
        )
    else:
        out.append("| - | n/a | n/a | n/a | n/a | no scored runs |")
    return out


def _folded(findings: list[Finding], detail: Detail, *, decisive: int) -> tuple[list[str], int]:
    """The decisive findings in full (rule, line, snippet, why), every other one a line in a
    folded list, up to ``detail.listed`` of them; returns the lines and how many were left out."""
    lead = _decisive(findings, decisive)
    out: list[str] = []
    if lead:
        out += ["", "#### Decisive finding" + ("s" if len(lead) > 1 else "")]
        for f in lead:
            out += [""] + _finding(f, detail.snippet_lines)
    rest = [f for f in findings if f not in lead]
    listed = rest[: detail.listed]
    if listed:
        counts = common.counts(rest)
        summary = ", ".join(f"{n} {sev.value}" for sev, n in counts.items() if n)
        out += ["", f"<details><summary>Other findings ({summary})</summary>", ""]
        out += [_one_line(f) for f in listed]
        if len(rest) > len(listed):
            out.append(f"- ... {len(rest) - len(listed)} more in the full report")
        out += ["", "</details>"]
    return out, len(rest) - len(listed)


def _where(loc, fmt=None) -> str:
    """Where a finding is, for a one-line summary: a file and line, or "the folder"."""
    fmt = fmt or code
    if common.is_folder(loc):
        return "(the folder)"
    return fmt(common.where(loc))


def _one_line(f: Finding) -> str:
    where = f" {_where(f.location)}"
    first = f.message.strip().splitlines()[0] if f.message.strip() else ""
    return f"- `{f.rule_id}` {f.severity.value}{where}: {text(_clip_chars(first, 200))}"


def _finding(f: Finding, snippet_lines: int = MAX_SNIPPET_LINES) -> list[str]:
    # Only an absolute link resolves in a PR comment; a repository-relative doc would 404 there.
    rule = f"[`{f.rule_id}`]({f.reference})" if f.reference and "://" in f.reference else f"`{f.rule_id}`"
    loc = f.location
    head = f"- **{rule}** {f.severity.value} | {f.condition.value} | {f.confidence.value} confidence"
    if loc is not None:
        head += f" | {_where(loc)}"
        if loc.wrapper:
            head += f" (line in the decoded payload; wrapper chain: {code(loc.wrapper)})"
    out = [head, "", "  " + text(_clip_chars(f.message, MAX_MESSAGE_CHARS)).replace("\n", "\n  ")]
    if loc is not None and loc.snippet and snippet_lines > 0:
        language = LANGUAGE.get(PurePosixPath(loc.file).suffix.lower(), "")
        out += ["", _indent(fenced(_clip_lines(loc.snippet, snippet_lines), language))]
    if f.path and snippet_lines > 0:
        out += ["", "  Evidence path:"]
        # The source and the sink matter most: long paths keep both ends.
        steps = f.path if len(f.path) <= snippet_lines + 2 else [*f.path[:1], *f.path[-(snippet_lines + 1):]]
        for i, step in enumerate(steps, 1):
            snippet = step.snippet.strip().splitlines()[0] if step.snippet and step.snippet.strip() else ""
            wrapper = f" (payload of {code(step.wrapper)})" if step.wrapper else ""
            role = f"{text(step.role)}: " if step.role else ""
            out.append(
                f"  {i}. {role}{code(common.where(step))}{wrapper}" + (f" {code(snippet)}" if snippet else "")
            )
    if f.reachability:
        out += ["", f"  Reachability: {text(f.reachability)}"]
    return out


def _indent(block: str) -> str:
    return "\n".join("  " + line if line else line for line in block.splitlines())


def _significance(sig: Significance) -> list[str]:
    out = [
        f"#### Significance vs {text(sig.baseline or '?')}",
        "",
        (
            "| Policy | Unit | n cand/base | Mean cand | Mean base | Improvement | Margin | t | df | p (t) | "
            "p (z) | alpha | Significant |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sig.rows:
        out.append(
            f"| {r.policy} | {r.unit} | {r.n_candidate}/{r.n_baseline} | {r.mean_candidate:.6f} | "
            f"{r.mean_baseline:.6f} | {r.delta:+.6f} | {r.margin:g} | "
            f"{'n/a' if r.t_stat is None else f'{r.t_stat:.2f}'} | {'n/a' if r.df is None else f'{r.df:.2f}'} | "
            f"{common.fmt_p(r.p_value)} | {common.fmt_p(r.z_p_value)} | {r.alpha:g} | "
            f"{'**yes**' if r.significant else 'no'}{' (decisive)' if r.decisive else ''} |"
        )
    notes = [common.significance_basis(sig)]
    notes += [f"{r.policy} / {r.unit}: {r.note}" for r in sig.rows if r.note]
    if sig.quoted_p is not None:
        notes.append(f"p-value quoted by the submission: {sig.quoted_p:g}")
    if notes:
        out += [""] + [f"- {text(n)}" for n in notes]
    out += [
        "",
        (
            "_readme_: improvement > 0.005 nats/token at p < 0.01 (README rule; the nats/byte margin is converted "
            "at the baseline's bytes/token); _frontier_: beat the previous frontier row at p < 0.25, no margin, "
            "reproduction runs pooled (maintainers' practice for records submitted from 2026-04-28, PR #1902). "
            "One-sided Welch t-test; p (z) is the normal approximation."
        ),
    ]
    return out
