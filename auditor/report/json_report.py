"""JSON report: the AuditReport model as is, plus its JSON Schema (docs/report-schema.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from auditor.models import REPORT_SCHEMA_VERSION, AuditReport

SCHEMA_ID = "urn:pgolf:report-schema"  # a name, not a location: the schema ships in docs/
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON; they become null (only free-form ``data`` can carry them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def to_dict(report: AuditReport) -> dict[str, Any]:
    return json_safe(report.model_dump(mode="json"))


def render(report: AuditReport, *, indent: int | None = 2) -> str:
    return json.dumps(to_dict(report), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def load(text: str) -> AuditReport:
    """Read a JSON report back (e.g. to re-render it in another format)."""
    return AuditReport.model_validate_json(text)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the JSON report, generated from the pydantic models."""
    schema = AuditReport.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "pgolf audit report",
        "x-pgolf-schema-version": REPORT_SCHEMA_VERSION,
        **{k: v for k, v in schema.items() if k != "title"},
    }


def write_json_schema(path: Path = SCHEMA_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
