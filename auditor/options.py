"""Audit options: a light module (no scipy/libcst imports) so the service starts fast."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

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
