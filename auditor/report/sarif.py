"""SARIF 2.1.0 for GitHub code scanning.

Decisions (documented in docs/report-schema.md, "SARIF mapping"):

* URIs are repository-relative POSIX paths under ``%SRCROOT%`` (``records/<track>/<folder>/<file>``)
  in every mode: a folder audited outside a records tree is placed under its track (the
  submission's own ``track``, else ``track_10min_16mb``, marked ``pgolf/trackAssumed``). No
  machine path appears anywhere (``%SRCROOT%`` has a description, no ``uri``).
* Unwrapped code: the finding's line is a line of the *decoded payload*, which does not exist in
  the shipped wrapper file. The region is the shipped file's line that holds the payload (the
  wrapper line); the payload line and snippet are in the message text (what code scanning shows)
  and in a ``relatedLocations`` entry, and in ``properties`` (``pgolf/payloadLine``, ...).
* Findings about a folder (a missing file, the folder's contents) and findings without a
  location point at line 1 of a file the folder does have (README.md, submission.json, the entry
  script, ...), marked ``pgolf/folderFinding``; with no such file they become run-level
  notifications (GitHub drops location-less results).
* ``defaultConfiguration.level`` of each rule is the level its results in this run use.
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
from auditor.models import AuditReport, Confidence, Finding, Location, RecordAudit, Severity, Verdict
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
    if loc is not None and loc.wrapper:
        region = {"startLine": loc.wrapper_line if loc.wrapper_line and loc.wrapper_line >= 1 else 1}
    elif loc is not None and loc.line is not None and loc.line >= 1:
        region = {"startLine": loc.line}
        if loc.end_line is not None and loc.end_line >= loc.line:
            region["endLine"] = loc.end_line
        if loc.snippet:
            region["snippet"] = {"text": loc.snippet}
    return {"artifactLocation": {"uri": uri, "uriBaseId": SRCROOT}, "region": region}


ANCHOR_PREFERENCE = ("README.md", "submission.json")


def _anchor(record: RecordAudit | None) -> str | None:
    """A file the record folder has, for findings about the folder itself."""
    if record is None or not record.files:
        return None
    files = record.files
    entry = next((s["file"] for s in record.sources if s.get("entry")), None)
    for name in (*ANCHOR_PREFERENCE, entry):
        if name and name in files:
            return name
    return next((f for f in files if f.endswith(".json")), files[0])


def record_base(record: RecordAudit, options: dict) -> tuple[str, bool]:
    """The record folder as a repository path, and whether its track was assumed."""
    rel = common.repo_relative(record.path, options)
    if rel.startswith("records/"):
        return rel, False
    track = record.track
    claimed = (record.claimed or {}).get("track")
    if not track and isinstance(claimed, str) and re.fullmatch(r"[\w.-]+", claimed):
        track = claimed if claimed.startswith("track_") else f"track_{claimed}"
    return f"records/{track or 'track_10min_16mb'}/{record.name}", not track


def _location(
    record: RecordAudit | None, loc: Location | None, options: dict
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A SARIF location and the extra properties it needs (payload line, folder finding), or None
    when there is no file to point at (the caller makes a notification)."""
    extra: dict[str, Any] = {}
    base, assumed = record_base(record, options) if record is not None else (None, False)
    if assumed:
        extra["pgolf/trackAssumed"] = True
    if common.is_folder(loc) or (record is not None and loc.file.rstrip("/") in (record.path, base)):
        anchor = _anchor(record)
        if anchor is None:
            return None
        extra["pgolf/folderFinding"] = True
        uri, loc = f"{base}/{anchor}", None
    else:
        uri = f"{base}/{_inside(record, loc.file, options)}" if base else common.file_path(None, loc.file, options)
        if loc.wrapper:
            extra["pgolf/wrapper"] = loc.wrapper
            extra["pgolf/payloadLine"] = loc.line
            if loc.snippet:
                extra["pgolf/payloadSnippet"] = loc.snippet
        elif loc.line is None:
            extra["pgolf/lineUnknown"] = True
    return {"physicalLocation": _physical(uri, loc)}, extra


def _inside(record: RecordAudit, file: str, options: dict) -> str:
    """A Location.file (relative to its record folder; rarely absolute) as a path inside it."""
    full = common.file_path(record.path, file, options)
    rel = common.repo_relative(record.path, options)
    return full[len(rel) + 1 :] if rel not in ("", ".") and full.startswith(rel + "/") else full


def _fingerprint(rule_id: str, uri: str, loc: Location | None, message: str) -> str:
    # Stable across unrelated edits: the snippet (whitespace-normalized) rather than the line number.
    anchor = re.sub(r"\s+", " ", loc.snippet).strip() if loc and loc.snippet else message
    wrapper = loc.wrapper if loc and loc.wrapper else ""
    return hashlib.sha256(f"{rule_id}\0{uri}\0{wrapper}\0{anchor}".encode()).hexdigest()[:32]


def _code_flow(record: RecordAudit | None, f: Finding, options: dict) -> dict[str, Any] | None:
    steps = []
    for step in f.path:
        placed = _location(record, step, options)
        if placed is None:
            continue
        location, extra = placed
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
    return {"threadFlows": [{"locations": steps}]} if steps else None


def _message(f: Finding) -> str:
    text = f.message
    loc = f.location
    if loc is not None and loc.wrapper:
        text += f"\n(line {loc.line} of the decoded payload of {loc.wrapper}"
        text += f": {loc.snippet.strip()})" if loc.snippet and loc.snippet.strip() else ")"
    if f.reachability:
        text += f"\nReachability: {f.reachability}"
    return _clip(text, MAX_MESSAGE)


def _related(location: dict[str, Any], loc: Location | None) -> list[dict[str, Any]]:
    """For unwrapped code: the payload line, shown beside the wrapper line it was decoded from."""
    if loc is None or not loc.wrapper or not loc.line:
        return []
    snippet = loc.snippet.strip().splitlines()[0] if loc.snippet and loc.snippet.strip() else ""
    return [{
        "id": 1,
        "physicalLocation": location["physicalLocation"],
        "message": {"text": _clip(f"decoded payload line {loc.line} ({loc.wrapper}): {snippet}", MAX_DESCRIPTION)},
    }]


def to_sarif(report: AuditReport) -> dict[str, Any]:
    options = report.options or {}
    scoped = [(r, f) for r in report.records for f in r.findings] + [(None, f) for f in report.findings]
    rule_index: dict[str, int] = {}
    descriptors: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    seen_prints: dict[str, int] = {}
    levels: dict[str, set[Severity]] = {}
    for record, f in scoped:
        record_path = record_base(record, options)[0] if record else None  # never a machine path
        placed = _location(record, f.location, options)
        if placed is None:  # nothing in the folder to point at: say it at run level
            notifications.append({
                "level": LEVEL[f.severity],
                "message": {"text": _clip(f"{f.rule_id}: {record_path + ': ' if record_path else ''}{f.message}",
                                          MAX_MESSAGE)},
                "descriptor": {"id": f.rule_id},
            })
            continue
        if f.rule_id not in rule_index:
            rule_index[f.rule_id] = len(descriptors)
            descriptors.append(_rule_descriptor(f.rule_id, f))
        levels.setdefault(f.rule_id, set()).add(f.severity)
        location, extra = placed
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
        if related := _related(location, f.location):
            result["relatedLocations"] = related
        if f.path and (flow := _code_flow(record, f, options)):
            result["codeFlows"] = [flow]
        results.append(result)

    # A rule's default level is the level its results use (a rule downgraded for this record,
    # e.g. an unreachable or dated finding, must not be declared as an error).
    order = (Severity.INFO, Severity.WARNING, Severity.ERROR)
    for rule_id, index in rule_index.items():
        descriptors[index]["defaultConfiguration"]["level"] = LEVEL[max(levels[rule_id], key=order.index)]

    where = {r.path: record_base(r, options)[0] for r in report.records}
    notifications += [
        {"level": "error", "message": {"text": f"{where[r.path]}: {r.error}"}, "descriptor": {"id": "audit-error"}}
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
    # No "uri": the consumer (code scanning) resolves %SRCROOT% to its checkout; a local path
    # here would leak the auditing machine's layout and resolve to nothing elsewhere.
    srcroot: dict[str, Any] = {"description": {"text": "Root of the audited repository (records/... paths)"}}
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
            "records": {where[r.path]: r.verdict.value for r in report.records},
            "compliance": {where[r.path]: r.compliance.value for r in report.records if r.compliance},
            "eligibility": {where[r.path]: r.eligibility.status.value for r in report.records if r.eligibility},
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
