"""Black-box probes: what a compliant evaluation cannot do, checked on numbers the script prints
(or, with the trace, on its per-position scores).

Gibbs floor (DYN001). The validation stream is BOS every ``doc_len`` tokens and i.i.d. uniform over
a support of S ids elsewhere, so its true conditional law u_t is known: a point mass at document
starts, uniform over the support otherwise. For any predictor that is causal, normalized, scores a
token before adapting on it and scores it once (C1–C4), the likelihood ratio prod_t q_t(x_t)/u_t(x_t)
is a non-negative supermartingale with mean <= 1, so by Ville's inequality

    P( mean NLL <= floor - delta ) <= exp(-n * delta),   floor = ln(S) * (non-BOS scored) / n.

No variance assumption is needed. With false-alarm probability ``alpha`` the tolerance is
delta = ln(1/alpha) / n, plus a small numeric slack for float accumulation. A reported val_loss
more than delta below the floor is proof that the evaluation leaked targets or re-scored.

Causality (DYN101). Two validation streams share positions [0, t) and differ at every non-BOS
position from t on; a causal evaluation of a model trained only on training data must give every
target before t the same score in both runs (within float tolerance).

Normalization (DYN201). At one scored position p the stream is rerun with x_p replaced by other
support tokens, nothing else changed. A causal, normalized scorer assigns those tokens the
probabilities of one distribution over the vocabulary, so exp(-score) summed over the tried tokens
is at most 1; more than 1 proves the scored "probabilities" are not a distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEFAULT_ALPHA = 1e-6
NUMERIC_SLACK = 2e-4  # nats: float32 scores summed in float64 (or float32) over up to ~1e6 tokens
CAUSAL_ABS, CAUSAL_REL = 1e-4, 1e-5
NORM_SLACK = 1e-3


@dataclass
class GibbsCheck:
    run: str
    label: str
    reported: bool
    val_loss: float
    support: int
    n_scored: int
    n_bos_scored: int
    floor: float
    tolerance: float
    counts_from: str  # "trace" | "assumed"
    alpha: float = DEFAULT_ALPHA

    @property
    def margin(self) -> float:
        """val_loss - floor, in nats: negative means below the floor."""
        return self.val_loss - self.floor

    @property
    def violated(self) -> bool:
        return self.margin < -self.tolerance

    def as_dict(self) -> dict:
        return {"run": self.run, "label": self.label, "reported": self.reported, "val_loss": self.val_loss,
                "support": self.support, "n_scored": self.n_scored, "n_bos_scored": self.n_bos_scored,
                "floor": round(self.floor, 8), "tolerance": round(self.tolerance, 8),
                "margin_nats": round(self.margin, 8), "violated": self.violated, "counts_from": self.counts_from,
                "alpha": self.alpha}


def gibbs_floor(support: int, n_scored: int, n_bos_scored: int) -> float:
    if n_scored <= 0:
        return math.log(support)
    return math.log(support) * (n_scored - n_bos_scored) / n_scored


def gibbs_tolerance(n_scored: int, alpha: float = DEFAULT_ALPHA) -> float:
    return math.log(1.0 / alpha) / max(n_scored, 1) + NUMERIC_SLACK


def gibbs_check(run: str, label: str, reported: bool, val_loss: float, support: int, bos_positions: np.ndarray,
                n_tokens: int, traced: tuple[int, int] | None = None, alpha: float = DEFAULT_ALPHA) -> GibbsCheck:
    """Floor and tolerance for one printed val_loss. ``traced``: (scored, BOS scored) from the trace;
    without it every target 1..N-1 is assumed scored, the BOS share is taken as the stream's, and the
    tolerance is computed for a quarter of the targets (a script may score fewer than we assume)."""
    if traced is not None and traced[0] > 0:
        n, n_bos = traced
        tol = gibbs_tolerance(n, alpha)
        source = "trace"
    else:
        n = max(n_tokens - 1, 1)
        n_bos = int(np.count_nonzero((bos_positions >= 1) & (bos_positions < n_tokens)))
        tol = gibbs_tolerance(max(n // 4, 1), alpha)
        source = "assumed"
    return GibbsCheck(run, label, reported, val_loss, support, n, n_bos, gibbs_floor(support, n, n_bos), tol, source,
                      alpha)


@dataclass
class CausalityCheck:
    t: int
    compared: int
    differing: int
    max_abs_diff: float
    first_position: int | None = None
    value_a: float | None = None
    value_b: float | None = None
    label: str = ""
    note: str = ""

    @property
    def violated(self) -> bool:
        return self.differing > 0

    def as_dict(self) -> dict:
        return {"t": self.t, "label": self.label, "compared": self.compared, "differing": self.differing,
                "max_abs_diff": self.max_abs_diff, "first_position": self.first_position,
                "value_a": self.value_a, "value_b": self.value_b, "violated": self.violated, "note": self.note}


def compare_prefix(values_a: dict[int, float], values_b: dict[int, float], t: int, label: str = "") -> CausalityCheck:
    """Per-position scores of the shared prefix (targets 1..t-1) must agree."""
    common = sorted(p for p in values_a if p < t and p in values_b)
    if not common:
        return CausalityCheck(t=t, compared=0, differing=0, max_abs_diff=0.0, label=label,
                              note="no per-position scores of the shared prefix in both runs")
    a = np.array([values_a[p] for p in common])
    b = np.array([values_b[p] for p in common])
    diff = np.abs(a - b)
    bad = diff > CAUSAL_ABS + CAUSAL_REL * np.maximum(np.abs(a), np.abs(b))
    first = int(np.nonzero(bad)[0][0]) if bad.any() else None
    return CausalityCheck(
        t=t, compared=len(common), differing=int(bad.sum()), max_abs_diff=float(diff.max()),
        first_position=common[first] if first is not None else None,
        value_a=float(a[first]) if first is not None else None,
        value_b=float(b[first]) if first is not None else None, label=label)


@dataclass
class NormalizationCheck:
    position: int
    tokens: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # committed NLL of the target in each run
    note: str = ""

    @property
    def mass(self) -> float:
        return float(sum(math.exp(-s) for s in self.scores))

    @property
    def violated(self) -> bool:
        return len(self.scores) >= 2 and self.mass > 1.0 + NORM_SLACK

    def as_dict(self) -> dict:
        return {"position": self.position, "tokens": self.tokens, "scores": self.scores,
                "probability_mass": round(self.mass, 6), "violated": self.violated, "note": self.note}


def alternative_tokens(support: np.ndarray, original: int, k: int, seed: int = 0) -> list[int]:
    """``k`` support tokens other than ``original``, chosen reproducibly."""
    pool = np.asarray([int(s) for s in support if int(s) != int(original)])
    rng = np.random.default_rng([seed, 11, int(original)])
    return [int(x) for x in rng.choice(pool, size=min(k, len(pool)), replace=False)]


def probe_positions(n_tokens: int, bos_positions: np.ndarray, count: int = 64) -> list[int]:
    """Up to ``count`` scoreable (non-BOS, >= 1) positions spread over the stream."""
    bos = {int(b) for b in bos_positions}
    cands = np.linspace(1, n_tokens - 1, num=min(count * 2, max(n_tokens - 1, 1)), dtype=np.int64)
    out = []
    for p in cands:
        p = int(p)
        while p in bos and p + 1 < n_tokens:
            p += 1
        if p not in bos and p not in out:
            out.append(p)
        if len(out) >= count:
            break
    return out
