"""Report renderers: one AuditReport in, one string out.

render(report, "text")      # rich terminal report (no color unless on a TTY; NO_COLOR honoured)
render(report, "json")      # report.model_dump(mode="json"), schema in docs/report-schema.md
render(report, "sarif")     # SARIF 2.1.0 for GitHub code scanning
render(report, "markdown")  # a PR review comment under GitHub's 65,536-character limit
"""

from __future__ import annotations

from typing import Any

from auditor.errors import ExitCode, PgolfError
from auditor.models import AuditReport

FORMATS = ("text", "json", "sarif", "markdown")
ALIASES = {"md": "markdown", "txt": "text"}


def render(report: AuditReport, fmt: str, **options: Any) -> str:
    """Render ``report`` in ``fmt``; ``options`` go to the renderer (text: ``color``, ``width``;
    json/sarif: ``indent``; markdown: ``limit``)."""
    name = ALIASES.get(fmt.lower(), fmt.lower())
    if name == "text":
        from auditor.report import text as module
    elif name == "json":
        from auditor.report import json_report as module
    elif name == "sarif":
        from auditor.report import sarif as module
    elif name == "markdown":
        from auditor.report import markdown as module
    else:
        raise PgolfError(
            f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}", exit_code=ExitCode.USAGE
        )
    return module.render(report, **options)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the JSON report (see docs/report-schema.md)."""
    from auditor.report.json_report import json_schema as build

    return build()
