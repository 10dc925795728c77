"""SARIF 2.1.0 for GitHub code scanning.

Decisions (documented in docs/report-schema.md, "SARIF mapping"):

* URIs are repository-relative POSIX paths under ``%SRCROOT%`` (``records/<track>/<folder>/<file>``).
* Unwrapped code: the finding's line is a line of the *decoded payload*, which does not exist in
  the shipped wrapper file. The result points at line 1 of the shipped file (so GitHub can show it),
  and the payload line, wrapper chain and payload snippet go into the message text and into
  ``properties`` (``pgolf/payloadLine``, ``pgolf/wrapper``, ``pgolf/payloadSnippet``).
* Findings without a location point at line 1 of the record's README.md (GitHub drops
  location-less results) and say so in ``properties["pgolf/locationless"]``.
* Columns are not emitted (code scanning does not need them).
* ``driver.rules`` holds only the rules that have results; ``security-severity`` follows the
  severity, ``precision`` the confidence; only C1-C4 rules carry the ``security`` tag, so GitHub
  rates them with ``security-severity`` and shows the others as ordinary error/warning/note alerts.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import rules
from auditor.findings import DOCS_BASE_URL, rule_reference
from auditor.models import AuditReport, Confidence, Finding, Location, Severity, Verdict
from auditor.report import common
from auditor.report.json_report import json_safe

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
# Only a published docs location is an information URI; pgolf has no invented home page.
INFORMATION_URI = DOCS_BASE_URL.split("/blob/")[0] if DOCS_BASE_URL else None
SRCROOT = "%SRCROOT%"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SECURITY_SEVERITY = {Severity.ERROR: "8.0", Severity.WARNING: "5.0", Severity.INFO: "2.0"}
PRECISION = {Confidence.PROOF: "very-high", Confidence.STRONG: "high", Confidence.HEURISTIC: "medium"}
EVAL_CONDITIONS = {"C1", "C2", "C3", "C4"}
MAX_MESSAGE = 10_000
MAX_DESCRIPTION = 1_000


def _clip(text: str, limit: int) -> str:
    return (
        text if len(text) <= limit else text[: limit - 40].rstrip() + " ... (truncated; see the JSON report)"
    )


def _rule_descriptor(rule_id: str, sample: Finding) -> dict[str, Any]:
    try:
        rule = rules.get(rule_id)
    except KeyError:
        rule = None
    if rule is None:
        # A finding outside the catalog (should not happen): describe it from the finding itself.
        return {
            "id": rule_id,
            "name": rule_id,
            "shortDescription": {"text": _clip(sample.message, MAX_DESCRIPTION)},
            "defaultConfiguration": {"level": LEVEL[sample.severity]},
            "properties": {
                "security-severity": SECURITY_SEVERITY[sample.severity],
                "tags": ["pgolf", sample.condition.value],
                "precision": PRECISION[sample.confidence],
            },
        }
    detects = rule.section("## What it detects") or rule.summary
    tags = ["pgolf", "parameter-golf", rule.condition.value]
    if rule.condition.value in EVAL_CONDITIONS:
        tags.append("security")
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": _clip(rule.summary, MAX_DESCRIPTION)},
        "fullDescription": {"text": _clip(detects, MAX_DESCRIPTION)},
        "help": {"text": rule.doc, "markdown": rule.doc},
        # SARIF wants an absolute helpUri; without a published base the doc itself is `help`.
        **({"helpUri": rule_reference(rule.id)} if DOCS_BASE_URL else {}),
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "tags": tags,
            "precision": PRECISION[rule.confidence],
            "problem.severity": {"error": "error", "warning": "warning", "info": "recommendation"}[
                rule.severity.value
            ],
        },
    }


def _physical(uri: str, loc: Location | None) -> dict[str, Any]:
    region: dict[str, Any] = {"startLine": 1}
    if loc is not None and not loc.wrapper and loc.line is not None and loc.line >= 1:
        region = {"startLine": loc.line}
        if loc.end_line is not None and loc.end_line >= loc.line:
            region["endLine"] = loc.end_line
        if loc.snippet:
            region["snippet"] = {"text": loc.snippet}
    return {"artifactLocation": {"uri": uri, "uriBaseId": SRCROOT}, "region": region}


def _location(
    record_path: str | None, loc: Location | None, options: dict
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A SARIF location and the extra properties it needs (payload line, locationless)."""
    extra: dict[str, Any] = {}
    if loc is None:
        uri = common.file_path(record_path, "README.md", options) if record_path else "README.md"
        extra["pgolf/locationless"] = True
    else:
        uri = common.file_path(record_path, loc.file, options)
        if loc.wrapper:
            extra["pgolf/wrapper"] = loc.wrapper
            extra["pgolf/payloadLine"] = loc.line
            if loc.snippet:
                extra["pgolf/payloadSnippet"] = loc.snippet
        elif loc.line is None:
            extra["pgolf/lineUnknown"] = True
    return {"physicalLocation": _physical(uri, loc)}, extra


def _fingerprint(rule_id: str, uri: str, loc: Location | None, message: str) -> str:
    # Stable across unrelated edits: the snippet (whitespace-normalized) rather than the line number.
    anchor = re.sub(r"\s+", " ", loc.snippet).strip() if loc and loc.snippet else message
    wrapper = loc.wrapper if loc and loc.wrapper else ""
    return hashlib.sha256(f"{rule_id}\0{uri}\0{wrapper}\0{anchor}".encode()).hexdigest()[:32]


def _code_flow(record_path: str | None, f: Finding, options: dict) -> dict[str, Any]:
    steps = []
    for step in f.path:
        location, extra = _location(record_path, step, options)
        parts = [step.role or "step", common.where(step)]
        if step.wrapper:
            parts.append(f"(decoded payload of {step.wrapper})")
        if step.snippet:
            parts.append(step.snippet.strip().splitlines()[0] if step.snippet.strip() else "")
        location["message"] = {"text": _clip(" ".join(p for p in parts if p), MAX_DESCRIPTION)}
        flow_location: dict[str, Any] = {"location": location}
        if extra:
            flow_location["properties"] = extra
        steps.append(flow_location)
    return {"threadFlows": [{"locations": steps}]}


def _message(f: Finding) -> str:
    text = f.message
    loc = f.location
    if loc is not None and loc.wrapper:
        text += f"\n(line {loc.line} of the decoded payload of {loc.wrapper}"
        text += f": {loc.snippet.strip()})" if loc.snippet and loc.snippet.strip() else ")"
    if f.reachability:
        text += f"\nReachability: {f.reachability}"
    return _clip(text, MAX_MESSAGE)


def to_sarif(report: AuditReport) -> dict[str, Any]:
    options = report.options or {}
    scoped = [(r.path, f) for r in report.records for f in r.findings] + [(None, f) for f in report.findings]
    rule_index: dict[str, int] = {}
    descriptors: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    seen_prints: dict[str, int] = {}
    for record_path, f in scoped:
        if f.rule_id not in rule_index:
            rule_index[f.rule_id] = len(descriptors)
            descriptors.append(_rule_descriptor(f.rule_id, f))
        location, extra = _location(record_path, f.location, options)
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        fingerprint = _fingerprint(f.rule_id, uri, f.location, f.message)
        seen_prints[fingerprint] = seen_prints.get(fingerprint, 0) + 1
        if seen_prints[fingerprint] > 1:  # identical evidence twice in one file: keep both alerts
            fingerprint += f":{seen_prints[fingerprint]}"
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": rule_index[f.rule_id],
            "level": LEVEL[f.severity],
            "message": {"text": _message(f)},
            "locations": [location],
            "partialFingerprints": {"pgolfFindingHash/v1": fingerprint},
            "properties": {
                "confidence": f.confidence.value,
                "condition": f.condition.value,
                "severity": f.severity.value,
                "origin": f.origin,
                **({"record": record_path} if record_path else {}),
                **({"reachability": f.reachability} if f.reachability else {}),
                **({"data": f.data} if f.data else {}),
                **extra,
            },
        }
        if f.path:
            result["codeFlows"] = [_code_flow(record_path, f, options)]
        results.append(result)

    notifications = [
        {"level": "error", "message": {"text": f"{r.path}: {r.error}"}, "descriptor": {"id": "audit-error"}}
        for r in report.records
        if r.error
    ]
    if report.error:
        notifications.append(
            {"level": "error", "message": {"text": report.error}, "descriptor": {"id": "audit-error"}}
        )
    invocation: dict[str, Any] = {
        "executionSuccessful": report.verdict != Verdict.ERROR,
        "properties": {"verdict": report.verdict.value},
    }
    if re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", report.generated_at or ""):
        invocation["endTimeUtc"] = report.generated_at
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    srcroot: dict[str, Any] = {"description": {"text": "Root of the audited repository checkout"}}
    root = options.get("root")
    if isinstance(root, str) and root.startswith("/"):
        srcroot["uri"] = "file://" + root.rstrip("/") + "/"
    run = {
        "tool": {
            "driver": {
                "name": report.tool,
                "version": report.tool_version,
                "semanticVersion": report.tool_version,
                **({"informationUri": INFORMATION_URI} if INFORMATION_URI else {}),
                "rules": descriptors,
            }
        },
        "originalUriBaseIds": {SRCROOT: srcroot},
        "invocations": [invocation],
        "results": results,
        "properties": {
            "verdict": report.verdict.value,
            "reportSchemaVersion": report.schema_version,
            "records": {r.path: r.verdict.value for r in report.records},
            "compliance": {r.path: r.compliance.value for r in report.records if r.compliance},
            "eligibility": {r.path: r.eligibility.status.value for r in report.records if r.eligibility},
        },
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(report: AuditReport, *, indent: int | None = 2) -> str:
    return (
        json.dumps(
            json_safe(to_sarif(report)), indent=indent, ensure_ascii=False, allow_nan=False, default=str
        )
        + "\n"
    )
