"""Server-rendered pages (Jinja2, autoescaped): the audit report, the rule docs, an index."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup
from pydantic import ValidationError

from api.db import Audit
from auditor.models import AuditReport

TEMPLATES = Path(__file__).parent / "templates"
ARTIFACT_LIMIT = 16_000_000  # bytes: code + compressed model (README of the challenge)
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["numbered"] = numbered_lines
    env.filters["bytes"] = lambda n: "—" if n is None else f"{int(n):,}"
    env.filters["bpb"] = lambda x: "—" if x is None else f"{x:.5f}"
    env.filters["pval"] = lambda x: "—" if x is None else (f"{x:.2e}" if x < 1e-3 else f"{x:.4f}")
    env.globals["ARTIFACT_LIMIT"] = ARTIFACT_LIMIT
    return env


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # Raw HTML in Markdown is escaped, not passed through.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def numbered_lines(snippet: str | None, start: int | None) -> list[tuple[int | None, str]]:
    """Split a code excerpt into (line number, text) rows; numbers start at the finding's line."""
    if not snippet:
        return []
    lines = snippet.rstrip("\n").split("\n")
    return [((start + i) if start is not None else None, line) for i, line in enumerate(lines)]


def source_label(job: Audit) -> str:
    if job.kind == "upload":
        return f"upload {job.upload_name or ''}".strip()
    if job.kind == "pr" and job.pr_number is not None:
        return f"PR #{job.pr_number}"
    ref = job.ref or ""
    return f"{job.repo} @ {ref}" if job.repo else ref


def render_report(report_json: str, fmt: str) -> str:
    from auditor import report as report_mod

    return report_mod.render(AuditReport.model_validate_json(report_json), fmt)


def artifact_bars(runs) -> dict:
    """Geometry of the per-seed artifact-size chart, with the 16,000,000-byte line."""
    sizes = [r.artifact_bytes for r in runs if r.artifact_bytes is not None]
    scale = max([ARTIFACT_LIMIT * 1.08] + [s * 1.04 for s in sizes])
    bars = [
        {"label": (f"seed {r.seed}" if r.seed is not None else r.log_file), "bytes": r.artifact_bytes,
         "width": 100.0 * r.artifact_bytes / scale, "over": r.artifact_bytes > ARTIFACT_LIMIT,
         "duplicate_of": r.duplicate_of}
        for r in runs if r.artifact_bytes is not None
    ]
    return {"bars": bars, "limit_left": 100.0 * ARTIFACT_LIMIT / scale}


def _render(name: str, **context) -> str:
    return _env().get_template(name).render(**context)


def audit_page(request: Request, job: Audit) -> str:
    report, note = None, None
    if job.report_json:
        try:
            report = AuditReport.model_validate_json(job.report_json)
        except ValidationError:
            note = "the stored report does not match this pgolf version's schema; see the JSON report"
    comment = None
    if report is not None:
        try:
            comment = render_report(job.report_json, "markdown")
        except Exception:  # noqa: BLE001 - the page must render even if a renderer has a bug
            comment = None
    records = []
    if report is not None:
        for rec in report.records:
            records.append({
                "rec": rec,
                "chart": artifact_bars(rec.runs),
                "findings": sorted(rec.findings, key=lambda f: SEVERITY_ORDER.get(f.severity.value, 9)),
            })
    rerun = json.loads(job.rerun_json) if job.rerun_json else None
    return _render("audit.html", job=job, report=report, records=records, comment=comment, rerun=rerun,
                   label=source_label(job), pending=job.status in ("queued", "running"), note=note)


def index_page(request: Request, rows: list[Audit]) -> str:
    return _render("index.html", rows=rows, label=source_label)


def rules_page(request: Request, rules: list) -> str:
    return _render("rules.html", rules=rules)


def rule_page(request: Request, rule) -> str:
    return _render("rule.html", rule=rule, doc_html=Markup(_markdown().render(rule.doc)))
