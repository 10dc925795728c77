"""Audit options: a light module (no scipy/libcst imports) so the service starts fast."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["both", "readme", "frontier"]


class AuditOptions(BaseModel):
    """Options that change an audit's result (and so are part of the service's idempotency key)."""

    model_config = ConfigDict(frozen=True)

    baseline: str | None = None  # a baseline record folder, or a leaderboard row (folder name)
    policy: Policy = "both"
    static: bool = True  # the C1-C4 dataflow detectors
    recompute_code_size: bool = True  # re-minify virtual wrappers (cached; slow on a cold cache)
    rerun: bool = False  # dynamic rerun in the sandbox (needs the train extra)
    rerun_probes: tuple[str, ...] = ("trace", "gibbs", "causal")
    rerun_timeout_s: int = 900
    rerun_device: str = "cpu"


class ReproduceOptions(BaseModel):
    """Options of `pgolf reproduce` that change its result: what the CLI flags and the service's
    request body both hold (``auditor.reproduce.ReproOptions.from_options`` adds where it runs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seeds: tuple[int, ...] | None = Field(None, max_length=16)  # default: the seeds of the record's logs
    nproc: int | None = Field(None, ge=1, le=64)  # default: the README command's, else the record's GPUs
    tolerance: float | None = Field(None, ge=0, le=1)  # BPB; None: auto from the claimed seeds' spread
    reference: bool = False  # run the reference stack's bundled script instead of the record's
    scale_steps: float | None = Field(None, gt=0, le=1)  # partial: stop at this fraction of the logged steps
    train_cap_s: float = Field(600.0, gt=0, le=24 * 3600)
    eval_cap_s: float = Field(600.0, gt=0, le=24 * 3600)
    setup_allowance_s: float = Field(300.0, ge=0, le=3600)
