"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from auditor.options import AuditOptions, ReproduceOptions

# A baseline is a leaderboard row / record folder *name*: never a path on the server.
BASELINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]{0,199}$")
MAX_RERUN_TIMEOUT_S = 4 * 3600


def check_options(options: AuditOptions) -> AuditOptions:
    if options.baseline is not None and (not BASELINE_RE.match(options.baseline) or ".." in options.baseline):
        raise ValueError("options.baseline must be a record folder name from the leaderboard, not a path")
    if not 1 <= options.rerun_timeout_s <= MAX_RERUN_TIMEOUT_S:
        raise ValueError(f"options.rerun_timeout_s must be between 1 and {MAX_RERUN_TIMEOUT_S}")
    return options


class AuditRequest(BaseModel):
    """Audit a git ref (``repo`` + ``ref``) or a pull request of the configured upstream (``pr``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"pr": 1234},
            {"repo": "https://github.com/someone/parameter-golf.git", "ref": "my-record", "base": "main"},
        ]},
    )

    repo: str | None = Field(None, max_length=500, description="git URL (https); default: the upstream")
    ref: str | None = Field(None, max_length=200, description="branch, tag, full ref or commit SHA")
    base: str | None = Field(None, max_length=200, description="base ref: audit only what `ref` adds")
    pr: int | None = Field(None, ge=1, le=10_000_000, description="PR number: refs/pull/N/head of the upstream")
    options: AuditOptions = Field(default_factory=AuditOptions)

    @model_validator(mode="after")
    def _one_source(self) -> AuditRequest:
        if (self.pr is None) == (self.ref is None):
            raise ValueError("give either `ref` (with `repo`) or `pr`")
        if self.pr is None and self.repo is None:
            raise ValueError("`ref` needs `repo` (a git URL)")
        check_options(self.options)
        return self


class Source(BaseModel):
    kind: Literal["git", "pr", "upload"]
    repo: str | None = None
    ref: str | None = None
    base: str | None = None
    pr: int | None = None
    commit: str | None = None
    base_commit: str | None = None
    upload_name: str | None = None
    upload_sha256: str | None = None


class RerunState(BaseModel):
    status: str
    attempts: int
    job_id: str | None = None
    error: str | None = None
    results: list[dict[str, Any]] | None = None


class Links(BaseModel):
    self: str
    html: str
    json_report: str = Field(alias="json")
    markdown: str
    sarif: str

    model_config = ConfigDict(populate_by_name=True)


class AuditOut(BaseModel):
    id: str
    status: Literal["queued", "running", "rerunning", "done", "failed"]
    source: Source
    options: dict[str, Any]
    submitted_by: str | None = None
    attempts: int
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verdict: str | None = None
    report: dict[str, Any] | None = Field(
        None, description="the versioned verdict JSON, byte-for-byte what `pgolf audit -f json` prints"
    )
    rerun: RerunState | None = None
    links: Links


class AuditSummary(BaseModel):
    id: str
    status: str
    kind: str
    verdict: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    label: str


class AuditList(BaseModel):
    audits: list[AuditSummary]


class RuleOut(BaseModel):
    id: str
    name: str
    condition: str
    severity: str
    confidence: str
    summary: str
    references: list[str] = Field(default_factory=list)
    doc: str | None = Field(None, description="full Markdown doc (only on /v1/rules/{id})")
    html_url: str


class RuleList(BaseModel):
    rules: list[RuleOut]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    workers: int
    rerun_queue: str


class ErrorOut(BaseModel):
    detail: Any


RECORD_RE = re.compile(r"^records/[A-Za-z0-9_.+-]{1,100}/[A-Za-z0-9][A-Za-z0-9 _.,+()=-]{0,199}$")
DATA_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ReproductionRequest(BaseModel):
    """Reproduce one record folder of a git ref (``repo`` + ``ref``) or of PR ``pr`` of the upstream,
    on a data folder of the server (``data``: its name under the data root, never a path)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"pr": 1493, "record": "records/track_10min_16mb/2026-04-08_SP8192_ParallelResid_ScoreFirstTTT",
             "data": "fineweb_sp8192", "options": {"seeds": [42, 314, 999]}},
        ]},
    )

    repo: str | None = Field(None, max_length=500, description="git URL (https); default: the upstream")
    ref: str | None = Field(None, max_length=200, description="branch, tag, full ref or commit SHA")
    pr: int | None = Field(None, ge=1, le=10_000_000, description="PR number: refs/pull/N/head of the upstream")
    record: str = Field(..., max_length=320, description="the record folder in that commit: records/<track>/<folder>")
    data: str = Field(..., max_length=100, description="a data folder name under the server's data root")
    options: ReproduceOptions = Field(default_factory=ReproduceOptions)

    @model_validator(mode="after")
    def _check(self) -> ReproductionRequest:
        if (self.pr is None) == (self.ref is None):
            raise ValueError("give either `ref` (with `repo`) or `pr`")
        if self.pr is None and self.repo is None:
            raise ValueError("`ref` needs `repo` (a git URL)")
        if not RECORD_RE.match(self.record) or ".." in self.record.split("/"):
            raise ValueError("`record` must be records/<track>/<folder> inside the repository")
        if not DATA_NAME_RE.match(self.data) or ".." in self.data:
            raise ValueError("`data` must be the name of a data folder under the server's data root, not a path")
        return self


class ReproductionLinks(BaseModel):
    self: str
    json_report: str = Field(alias="json")
    markdown: str

    model_config = ConfigDict(populate_by_name=True)


class ReproductionOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    source: Source
    record: str
    data: str
    options: dict[str, Any]
    submitted_by: str | None = None
    attempts: int = 0
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verdict: str | None = Field(None, description="REPRODUCED, NOT_REPRODUCED or INCOMPLETE once done")
    report: dict[str, Any] | None = Field(None, description="the audit report with its reproduction section")
    links: ReproductionLinks
