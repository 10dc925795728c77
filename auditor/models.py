"""The verdict model: what every stage of the audit produces and every report consumes.

Everything here is a pydantic model so the JSON report is just ``model_dump`` and its schema
(`pgolf schema`) is generated, versioned and documented from one place.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

# Bump on any incompatible change of the JSON report; additive changes bump the minor part.
REPORT_SCHEMA_VERSION = "2.1"  # 2.0: compliance and eligibility axes, report-level error; 2.1: reproduction


class Condition(str, Enum):
    """What a rule protects. C1–C4 are the evaluation conditions of Issue #1017."""

    C1 = "C1"  # causal: p_t depends only on the artifact and tokens < t
    C2 = "C2"  # a full normalized distribution over the vocabulary
    C3 = "C3"  # score before any state is updated with the token
    C4 = "C4"  # one left-to-right pass, each token scored once
    LIMIT = "LIMIT"  # 16,000,000 bytes, 600 s train, 600 s eval
    CLAIM = "CLAIM"  # what submission.json / README claim vs. what the logs show
    SIG = "SIG"  # statistical significance against the previous record
    HYGIENE = "HYGIENE"  # files, scope, reviewability, network, data hygiene


class Severity(str, Enum):
    ERROR = "error"  # breaks a rule: the submission is not acceptable as is
    WARNING = "warning"  # needs a human look, or breaks a soft expectation
    INFO = "info"  # context for the reviewer, never changes the verdict


class Confidence(str, Enum):
    """How sure the finding is. Only PROOF and STRONG errors can turn a verdict into FAIL."""

    PROOF = "proof"  # arithmetic on logs, a decoded fact, or a dynamic probe/trace
    STRONG = "strong"  # dataflow evidence through the code that leaves little room
    HEURISTIC = "heuristic"  # a pattern that is often, but not always, a violation


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    ERROR = "ERROR"  # the audit could not be completed (unreadable input, internal error)


class EligibilityStatus(str, Enum):
    """Record eligibility (LIMIT, CLAIM, SIG, paperwork HYG001-HYG004): a separate axis from
    compliance (C1-C4 and eval hygiene); `auditor.verdict.axis` says which finding goes where.

    Not beating the previous record is a fact about the leaderboard, not a rule violation."""

    RECORD_ELIGIBLE = "record_eligible"  # within limits, claims backed, significant under every policy
    NOT_A_NEW_RECORD = "not_a_new_record"  # valid, but does not clear the significance bar
    NOT_ELIGIBLE = "not_eligible"  # a limit broken or a claim not backed by the logs
    NON_RECORD_TRACK = "non_record_track"  # the non-record track has no record bar
    UNDETERMINED = "undetermined"  # what eligibility needs (limits, significance) could not be checked


class Eligibility(BaseModel):
    status: EligibilityStatus
    reasons: list[str] = Field(default_factory=list)  # each with the rule ID it comes from


class Location(BaseModel):
    """A place in a file. For unwrapped code, ``line`` is the line in the decoded payload and
    ``wrapper`` names the chain that produced it (e.g. ``train_gpt.py: lzma(raw)+b85``)."""

    file: str
    line: int | None = None
    end_line: int | None = None
    column: int | None = None
    snippet: str | None = None
    wrapper: str | None = None
    wrapper_line: int | None = None  # unwrapped code: the line of the shipped file holding the payload
    role: str | None = None  # in a dataflow path: "source", "via", "sink", ...

    def short(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} [{self.wrapper}]" if self.wrapper else where


class Finding(BaseModel):
    rule_id: str
    condition: Condition
    severity: Severity
    confidence: Confidence
    message: str
    location: Location | None = None
    # The evidence path, in order (source -> via -> sink); empty when the location says it all.
    path: list[Location] = Field(default_factory=list)
    # Free-form structured facts behind the message (seed, bytes, p-values, ...).
    data: dict[str, Any] = Field(default_factory=dict)
    # Reachability of the code (e.g. "behind TTT_ENABLED=0, not enabled by README/logs").
    reachability: str | None = None
    reference: str | None = None  # link to the rule doc / the ruling
    origin: str = "static"  # static | log | metadata | dynamic


class SeedRun(BaseModel):
    """One training/eval run as read from a log file."""

    log_file: str
    seed: int | None = None
    seed_source: str | None = None  # "log" | "hyperparameters" | "filename"
    label: str | None = None  # the final-metric label chosen as the reported score
    val_loss: float | None = None  # nats/token
    val_bpb: float | None = None
    line: int | None = None  # line of the reported final metric in the log
    artifact_bytes: int | None = None
    code_bytes: int | None = None
    model_bytes: int | None = None
    train_time_ms: float | None = None
    eval_time_ms: float | None = None
    duplicate_of: str | None = None  # byte-identical to another log of the same folder


class SignificanceRow(BaseModel):
    policy: str  # "readme" | "frontier"
    baseline: str
    unit: str  # "nats/token" | "nats/byte"
    n_candidate: int
    n_baseline: int
    mean_candidate: float
    mean_baseline: float
    delta: float  # baseline - candidate (positive = improvement)
    margin: float  # in this row's unit (0.005 nats/token converted at the baseline's bytes/token)
    t_stat: float | None = None
    p_value: float | None = None
    df: float | None = None  # Welch-Satterthwaite (or n-1 for a one-sample test)
    z_p_value: float | None = None  # normal approximation with the same standard error
    alpha: float
    significant: bool
    decisive: bool = False  # the row its policy is decided on (see significance.decisive_row)
    note: str | None = None


class Significance(BaseModel):
    baseline: str | None = None
    baseline_reason: str | None = None  # why this baseline (given, or the frontier when submitted)
    candidate_date: str | None = None  # the date the baseline and the policies were chosen by
    # where that date came from: "the PR's first commit", "submission.json date", "the folder name"
    candidate_date_source: str | None = None
    policies: list[str] = Field(default_factory=list)  # the policies in effect for this record
    notes: list[str] = Field(default_factory=list)  # e.g. a policy not applied because of its date
    rows: list[SignificanceRow] = Field(default_factory=list)
    z_test_p: float | None = None
    quoted_p: float | None = None


class ReproVerdict(str, Enum):
    REPRODUCED = "REPRODUCED"  # every requested seed ran to its final score, within the tolerance
    NOT_REPRODUCED = "NOT_REPRODUCED"  # some seed's score lies outside the tolerance
    INCOMPLETE = "INCOMPLETE"  # some seed produced no final score (stopped, crashed, refused)


class ReproSeed(BaseModel):
    """One seed: what the record claims beside what its code produced here."""

    seed: int
    status: str  # completed | failed | timed_out | train_cap | eval_cap | stopped_at_step | not_run
    reason: str | None = None
    claimed_bpb: float | None = None
    claimed_loss: float | None = None
    claimed_source: str | None = None  # "submission.json seed_results" | "train_seed42.log:613" | ...
    reproduced_bpb: float | None = None
    reproduced_loss: float | None = None
    reproduced_label: str | None = None  # the final-metric label of the reproduced log
    delta_bpb: float | None = None  # reproduced - claimed
    within_tolerance: bool | None = None
    claimed_artifact_bytes: int | None = None
    reproduced_artifact_bytes: int | None = None  # as the reproduced log counts it
    measured_artifact_bytes: int | None = None  # code bytes + the size of the model file it wrote
    model_file: str | None = None
    claimed_train_s: float | None = None
    reproduced_train_s: float | None = None  # from the reproduced log
    claimed_eval_s: float | None = None
    reproduced_eval_s: float | None = None
    outside_train_s: float | None = None  # measured by pgolf: start until the training-end marker
    outside_eval_s: float | None = None  # training-end marker until the process ended
    step: int | None = None  # partial reproductions: the step both logs report
    log_file: str | None = None  # the reproduced log (under the output folder)


class Reproduction(BaseModel):
    """``pgolf reproduce``: the submission's own script at its own configuration, on real data."""

    verdict: ReproVerdict
    reason: str
    partial: bool = False  # --scale-steps: compared at a step both logs report, not the final score
    source: str = "run"  # "run": pgolf ran it; "logs: DIR": compared from logs reproduced earlier
    tolerance_bpb: float
    tolerance_source: str  # how the tolerance was chosen
    script: str
    command: str  # what ran (launcher, nproc, script) and the environment it was given
    nproc: int
    data_dir: str
    seeds: list[ReproSeed] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)  # the usual checks on the reproduced logs
    hardware: dict[str, Any] = Field(default_factory=dict)  # GPUs, driver, torch, CUDA, CPU
    sandbox: dict[str, str] = Field(default_factory=dict)  # isolation mechanisms in effect
    caps_s: dict[str, float] = Field(default_factory=dict)  # train / eval caps enforced from outside
    out_dir: str | None = None  # the reproduced logs and the sandbox's outputs


class RecordAudit(BaseModel):
    path: str
    name: str
    track: str | None = None
    verdict: Verdict  # overall: see auditor/verdict.py
    compliance: Verdict | None = None  # compliance-axis findings alone (C1-C4, eval hygiene)
    eligibility: Eligibility | None = None  # eligibility-axis findings (LIMIT, CLAIM, SIG, paperwork)
    findings: list[Finding] = Field(default_factory=list)
    runs: list[SeedRun] = Field(default_factory=list)
    claimed: dict[str, Any] = Field(default_factory=dict)  # normalized submission.json values
    significance: Significance | None = None
    sources: list[dict[str, Any]] = Field(default_factory=list)  # unwrapped sources: file, chain, bytes
    rerun: dict[str, Any] | None = None  # dynamic rerun summary (runs, probes, trace), with --rerun
    reproduction: Reproduction | None = None  # a full-configuration rerun compared with the claims
    error: str | None = None
    files: list[str] = Field(default_factory=list)  # the folder's top-level files (reports anchor folder findings)


class PRScope(BaseModel):
    repo: str
    ref: str
    base: str | None = None
    commit: str | None = None
    added_records: list[str] = Field(default_factory=list)
    outside_changes: list[str] = Field(default_factory=list)


class AuditReport(BaseModel):
    schema_version: str = REPORT_SCHEMA_VERSION
    tool: str = "pgolf"
    tool_version: str
    generated_at: str
    verdict: Verdict
    error: str | None = None  # why the audit as a whole is ERROR (e.g. no record folder found)
    records: list[RecordAudit] = Field(default_factory=list)
    pr: PRScope | None = None
    findings: list[Finding] = Field(default_factory=list)  # findings not tied to one record
    options: dict[str, Any] = Field(default_factory=dict)
