"""Statistical significance of a record claim against the previous record (rules.md §4).

Two policies are checked side by side because the written rule and the maintainers' practice differ:

* ``readme``   — the README rule: beat the baseline by more than 0.005 nats per token at p < 0.01
                 (H0: improvement <= 0.005; the baseline is shifted by the margin).
* ``frontier`` — what maintainers applied from PR #1902 (2026-04-28) on: beat the previous frontier
                 row at p < 0.25, no margin, independent reproduction runs pooled with the
                 candidate's. It applies to records submitted from that date only.

Each policy is tested in two units, nats/token (``val_loss``) and nats/byte (``val_bpb * ln 2``):
submitters used both, and nats/token is not comparable across tokenizers. The README margin is
0.005 nats *per token*; on the nats/byte row it is converted at the baseline's bytes per token
(val_loss / (val_bpb ln 2)), so both rows test the same improvement.

The default baseline is the frontier when the candidate was submitted: the best record *merged*
before the candidate's date (rules/leaderboard.json carries merge dates), never a row merged later
or one that was never merged. The test is SciPy's
one-sided Welch t-test; the z-test p (normal approximation with the same standard error) is
reported too because it is what a "p < ..." computed by hand with n = 3 usually is, and it is far
more optimistic than the t-test at 2-4 degrees of freedom.

Lower scores are better, so "improvement" = mean(baseline) - mean(candidate).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

import rules
from auditor import intake
from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, SeedRun, Severity, Significance, SignificanceRow

LN2 = math.log(2)
NATS_TOKEN = "nats/token"
NATS_BYTE = "nats/byte"
UNITS = (NATS_TOKEN, NATS_BYTE)
MIN_SEEDS = 3
# A quoted p-value further than this factor from every recomputed one is reported (SIG004).
QUOTED_P_FACTOR = 10.0
# Below this, p-values are "tiny" and their ratio no longer means anything.
TINY_P = 1e-4
# val_loss / val_bpb = ln 2 * bytes/token; a different ratio means a different tokenizer or val set.
RATIO_TOLERANCE = 0.01


@dataclass(frozen=True)
class Policy:
    name: str
    margin: float  # nats per token; converted per row by row_margin()
    alpha: float
    pool_extra_runs: bool
    rule_id: str
    description: str
    since: str | None = None  # first submission date the policy applies to (None: always)


README_POLICY = Policy(
    "readme",
    0.005,
    0.01,
    False,
    "SIG001",
    "README rule: improvement > 0.005 nats/token at p < 0.01 (one-sided Welch, baseline shifted by the margin)",
)
FRONTIER_POLICY = Policy(
    "frontier",
    0.0,
    0.25,
    True,
    "SIG002",
    "maintainers' frontier practice (PR #1902): beat the previous frontier row at p < 0.25, no margin, "
    "reproduction runs pooled",
    since="2026-04-28",
)
POLICIES = (README_POLICY, FRONTIER_POLICY)
POLICY_CHOICES = {"both": POLICIES, "readme": (README_POLICY,), "frontier": (FRONTIER_POLICY,)}


def policies_in_effect(date: str | None, choice: str = "both") -> tuple[tuple[Policy, ...], list[str]]:
    """The policies that apply to a record submitted on ``date`` (of those ``choice`` selects), and
    a note for each one left out because of its date. Without a date every selected policy applies."""
    applied, notes = [], []
    for policy in POLICY_CHOICES[choice]:
        if policy.since and date and date < policy.since:
            notes.append(
                f"the {policy.name} policy applies to records submitted from {policy.since}; "
                f"this one is dated {date}"
            )
            continue
        applied.append(policy)
    return tuple(applied), notes


def row_margin(policy: Policy, unit: str, bytes_per_token: float | None) -> float | None:
    """The policy's margin in ``unit``: nats/token as written, nats/byte at ``bytes_per_token``
    (None when the margin cannot be converted: no run with both val_loss and val_bpb)."""
    if unit == NATS_TOKEN or policy.margin == 0.0:
        return policy.margin
    return policy.margin / bytes_per_token if bytes_per_token else None


@dataclass(frozen=True)
class Baseline:
    """What the candidate is compared with: another record's runs or a shipped leaderboard row."""

    name: str
    runs: tuple[SeedRun, ...]
    source: str  # "record" | "leaderboard"
    date: str | None = None
    pr: int | None = None
    folder: str | None = None
    tokenizer: str | None = None
    score: float | None = None  # the leaderboard's rounded score, for display
    merged: str | None = None  # when it became a record (merge date on main)
    reason: str | None = None  # why it is the baseline


@dataclass(frozen=True)
class QuotedP:
    """A p-value the submitter wrote down (``bound`` for "p < value"), with the z they quote."""

    value: float
    bound: bool
    location: Location
    text: str
    z: float | None = None


class TestOutcome(NamedTuple):
    t_stat: float | None
    p_value: float | None
    df: float | None
    z_p_value: float | None
    note: str | None
    z_stat: float | None = None  # (mean candidate - mean shifted baseline) / SE: negative = better


class SignificanceResult(NamedTuple):
    significance: Significance
    findings: list[Finding]


# ---------------------------------------------------------------------------------------------
# The test itself.


def _stats():
    """scipy.stats, imported when a test is actually computed (it costs a second at start-up)."""
    from scipy import stats

    return stats


def _clean(values: Sequence[float | None]) -> tuple[np.ndarray, int]:
    """Finite values and how many were dropped (missing, NaN, inf)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return np.asarray(kept, dtype=float), len(values) - len(kept)


def one_sided_test(candidate: Sequence[float], baseline: Sequence[float], margin: float = 0.0) -> TestOutcome:
    """Test H1: mean(baseline) - mean(candidate) > margin against H0: <= margin.

    Welch's t-test when both sides have >= 2 runs; a one-sample t-test against the single run when
    one side has exactly one; refused when both have one or the variance is zero (no error estimate).
    The t statistic keeps SciPy's sign: negative when the candidate is lower (better).
    """
    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float) - margin  # shifting the baseline tests "improvement > margin"
    nc, nb = len(c), len(b)
    if nc == 0 or nb == 0:
        return TestOutcome(None, None, None, None, "no scores on one side")
    if nc == 1 and nb == 1:
        return TestOutcome(None, None, None, None, "one run on each side: no variance estimate, test refused")
    var_c = float(c.var(ddof=1)) if nc > 1 else 0.0
    var_b = float(b.var(ddof=1)) if nb > 1 else 0.0
    se = math.sqrt(var_c / nc + var_b / nb)
    if not se > 0.0:
        return TestOutcome(
            None,
            None,
            None,
            None,
            "zero variance (identical scores on every run): the t-test is undefined; duplicated logs?",
        )
    note = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if nc >= 2 and nb >= 2:
            res = _stats().ttest_ind(c, b, equal_var=False, alternative="less")
            t, p, df = float(res.statistic), float(res.pvalue), float(res.df)
        elif nb == 1:
            res = _stats().ttest_1samp(c, popmean=float(b[0]), alternative="less")
            t, p, df = float(res.statistic), float(res.pvalue), float(nc - 1)
            note = "one baseline run: one-sample t-test of the candidate runs against it"
        else:
            res = _stats().ttest_1samp(b, popmean=float(c[0]), alternative="greater")
            t, p, df = -float(res.statistic), float(res.pvalue), float(nb - 1)
            note = "one candidate run: one-sample t-test of the baseline runs against it"
    z = (float(c.mean()) - float(b.mean())) / se
    z_p = float(_stats().norm.cdf(z))
    return TestOutcome(t, p, df, z_p, note, float(z))


def _unit_values(runs: Sequence[SeedRun], unit: str) -> list[float | None]:
    if unit == NATS_TOKEN:
        return [r.val_loss for r in runs]
    return [None if r.val_bpb is None else r.val_bpb * LN2 for r in runs]


def _bytes_per_token(runs: Sequence[SeedRun]) -> float | None:
    ratios = [
        r.val_loss / (r.val_bpb * LN2)
        for r in runs
        if r.val_loss is not None and r.val_bpb and math.isfinite(r.val_loss) and math.isfinite(r.val_bpb)
    ]
    return float(np.median(ratios)) if ratios else None


def _has_score(run: SeedRun) -> bool:
    return any(v is not None and math.isfinite(v) for v in (run.val_loss, run.val_bpb))


def distinct_runs(runs: Sequence[SeedRun]) -> list[SeedRun]:
    """One run per seed, byte-identical duplicate logs dropped (records-format §1.1)."""
    out: list[SeedRun] = []
    seeds: set[int] = set()
    for run in runs:
        if run.duplicate_of:
            continue
        if run.seed is not None:
            if run.seed in seeds:
                continue
            seeds.add(run.seed)
        out.append(run)
    return out


def tokenizers_comparable(
    candidate: Sequence[SeedRun], baseline: Baseline, candidate_tokenizer: str | None = None
) -> tuple[bool, str | None]:
    """Whether nats/token means the same thing on both sides, and why not."""
    if candidate_tokenizer and baseline.tokenizer and candidate_tokenizer != baseline.tokenizer:
        return False, f"tokenizers differ ({candidate_tokenizer} vs {baseline.tokenizer})"
    rc, rb = _bytes_per_token(candidate), _bytes_per_token(baseline.runs)
    if rc and rb and abs(rc / rb - 1.0) > RATIO_TOLERANCE:
        return False, f"bytes/token differ ({rc:.3f} vs {rb:.3f}): different tokenizer or validation bytes"
    return True, None


# ---------------------------------------------------------------------------------------------
# Rows and findings.


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _row(
    policy: Policy, unit: str, cand: Sequence[SeedRun], baseline: Baseline, extra_note: str | None
) -> SignificanceRow | None:
    cvals, c_dropped = _clean(_unit_values(cand, unit))
    bvals, b_dropped = _clean(_unit_values(baseline.runs, unit))
    if len(cvals) == 0 or len(bvals) == 0:
        return None
    # The baseline's bytes/token converts the margin (it defines the bar); the candidate's when
    # the baseline has no run with both metrics.
    bpt = _bytes_per_token(baseline.runs) or _bytes_per_token(cand)
    margin = row_margin(policy, unit, bpt)
    if margin is None:
        return None  # a nats/byte row whose margin cannot be converted would test another bar
    outcome = one_sided_test(cvals, bvals, margin)
    delta = float(bvals.mean() - cvals.mean())
    notes = [n for n in (outcome.note, extra_note) if n]
    if unit == NATS_BYTE and policy.margin:
        notes.append(f"margin {policy.margin:g} nats/token = {margin:.6f} nats/byte at {bpt:.4f} bytes/token")
    if c_dropped or b_dropped:
        notes.append(f"dropped non-finite or missing scores: {c_dropped} candidate, {b_dropped} baseline")
    significant = outcome.p_value is not None and outcome.p_value < policy.alpha and delta > margin
    return SignificanceRow(
        policy=policy.name,
        baseline=baseline.name,
        unit=unit,
        n_candidate=len(cvals),
        n_baseline=len(bvals),
        mean_candidate=float(cvals.mean()),
        mean_baseline=float(bvals.mean()),
        delta=delta,
        margin=margin,
        t_stat=outcome.t_stat,
        p_value=outcome.p_value,
        df=outcome.df,
        z_p_value=outcome.z_p_value,
        alpha=policy.alpha,
        significant=significant,
        note="; ".join(notes) or None,
    )


def decisive_row(
    rows: Sequence[SignificanceRow], policy: str, comparable: bool = True
) -> SignificanceRow | None:
    """The row a policy is decided on: nats/token for the README rule (its literal unit) when the
    tokenizers match, otherwise nats/byte; nats/byte (= BPB scaled) for the frontier policy."""
    by_unit = {r.unit: r for r in rows if r.policy == policy}
    if policy == README_POLICY.name and comparable and NATS_TOKEN in by_unit:
        return by_unit[NATS_TOKEN]
    return by_unit.get(NATS_BYTE) or by_unit.get(NATS_TOKEN)


def _describe(row: SignificanceRow) -> str:
    test = (
        f"t={row.t_stat:.2f}, df={row.df:.2f}, p={_fmt_p(row.p_value)}"
        if row.t_stat is not None
        else "no test"
    )
    return (
        f"{row.n_candidate} vs {row.n_baseline} runs, mean {row.mean_candidate:.6f} vs {row.mean_baseline:.6f} "
        f"{row.unit}, improvement {row.delta:+.6f} (margin {row.margin:g}), {test}"
    )


def assess(
    candidate_runs: Sequence[SeedRun],
    baseline: Baseline,
    *,
    extra_runs: Sequence[SeedRun] = (),
    quoted_p: QuotedP | None = None,
    claim_location: Location | None = None,
    candidate_tokenizer: str | None = None,
    policies: Sequence[Policy] = POLICIES,
    candidate_date: str | None = None,
    candidate_date_source: str | None = None,
    notes: Sequence[str] = (),
) -> SignificanceResult:
    """Significance rows for the ``policies`` in effect and both units, plus SIG001-SIG004 findings.

    ``extra_runs`` are independent reproduction runs of the candidate; only the frontier policy
    pools them (as the maintainers did for PR #1855).
    """
    own = distinct_runs(candidate_runs)
    pooled = own + [r for r in extra_runs if not r.duplicate_of]
    comparable, why_not = tokenizers_comparable(own or pooled, baseline, candidate_tokenizer)
    rows: list[SignificanceRow] = []
    for policy in policies:
        cand = pooled if policy.pool_extra_runs else own
        for unit in UNITS:
            note = None
            if unit == NATS_TOKEN and not comparable:
                note = f"{why_not}: nats/token not comparable, not decisive"
            if policy.pool_extra_runs and len(pooled) > len(own):
                note = "; ".join(filter(None, [note, f"{len(pooled) - len(own)} reproduction runs pooled"]))
            row = _row(policy, unit, cand, baseline, note)
            if row is not None:
                rows.append(row)

    for policy in policies:
        if (chosen := decisive_row(rows, policy.name, comparable)) is not None:
            rows[rows.index(chosen)] = chosen = chosen.model_copy(update={"decisive": True})
    readme = decisive_row(rows, README_POLICY.name, comparable)
    sig = Significance(
        baseline=baseline.name,
        baseline_reason=baseline.reason,
        candidate_date=candidate_date,
        candidate_date_source=candidate_date_source,
        policies=[p.name for p in policies],
        notes=list(notes),
        rows=rows,
        z_test_p=readme.z_p_value if readme else None,
        quoted_p=quoted_p.value if quoted_p else None,
    )
    findings: list[Finding] = []
    common = {"baseline": baseline.name, "baseline_source": baseline.source}

    scored = [r for r in own if _has_score(r)]
    seeds = sorted({r.seed for r in scored if r.seed is not None})
    if len(scored) < MIN_SEEDS:
        findings.append(
            finding(
                "SIG003",
                f"{len(scored)} distinct seed run(s) with a final score; the README expects about {MIN_SEEDS} "
                f"to show significance" + (" (no run could be scored)" if not scored else ""),
                location=claim_location,
                origin="log",
                data={**common, "n_seeds": len(scored), "seeds": seeds},
            )
        )

    for policy in policies:
        row = decisive_row(rows, policy.name, comparable)
        if row is None or row.significant:
            continue
        if row.p_value is None and row.delta > row.margin:
            # No test was possible (one run each, zero variance): not proof of anything.
            findings.append(
                finding(
                    policy.rule_id,
                    f"significance under the {policy.name} policy could not be tested against {baseline.name}: "
                    f"{row.note}. {_describe(row)}",
                    location=claim_location,
                    origin="log",
                    severity=Severity.WARNING,
                    confidence=Confidence.HEURISTIC,
                    data={**common, **row.model_dump(mode="json")},
                )
            )
            continue
        if row.delta <= 0:
            why = "the candidate's mean is not better than the baseline's"
        elif row.delta <= row.margin:
            why = f"the mean improvement does not clear the {row.margin:g} margin"
        else:
            why = f"p={_fmt_p(row.p_value)} is not below {row.alpha:g}"
        findings.append(
            finding(
                policy.rule_id,
                f"not significant under the {policy.description} against {baseline.name}: {why}. {_describe(row)}",
                location=claim_location,
                origin="log",
                data={**common, **row.model_dump(mode="json")},
            )
        )

    for policy in policies:
        row = decisive_row(rows, policy.name, comparable)
        if row is None or row.p_value is None or row.z_p_value is None:
            continue
        if (row.p_value < policy.alpha) != (row.z_p_value < policy.alpha):
            findings.append(
                finding(
                    "SIG004",
                    f"z-test and t-test disagree under the {policy.name} policy (alpha {policy.alpha:g}): "
                    f"z-test p={_fmt_p(row.z_p_value)}, Welch t-test p={_fmt_p(row.p_value)} "
                    f"(df={row.df:.2f}); with few seeds the normal approximation overstates significance",
                    location=claim_location,
                    origin="log",
                    data={
                        **common,
                        "policy": policy.name,
                        "unit": row.unit,
                        "t_p": row.p_value,
                        "z_p": row.z_p_value,
                        "df": row.df,
                    },
                )
            )

    if quoted_p is not None:
        findings += _check_quoted_p(quoted_p, rows, own, baseline, common)
    return SignificanceResult(sig, findings)


def submitter_z(candidate: Sequence[SeedRun], baseline: Baseline, unit: str) -> tuple[float, float] | None:
    """The z-test submitters compute by hand: mean improvement over the combined standard error,
    each side's SEM = std / sqrt(n), no margin. (z, one-sided normal p), or None without spread.
    It is ``one_sided_test``'s normal approximation at margin 0, with the sign of an improvement."""
    c, _ = _clean(_unit_values(candidate, unit))
    b, _ = _clean(_unit_values(baseline.runs, unit))
    outcome = one_sided_test(c, b, 0.0)
    if outcome.z_stat is None:
        return None
    return -outcome.z_stat, outcome.z_p_value


def _check_quoted_p(
    quoted_p: QuotedP,
    rows: Sequence[SignificanceRow],
    own: Sequence[SeedRun],
    baseline: Baseline,
    common: dict,
) -> list[Finding]:
    """SIG004 on the submitter's own p: recompute their test as well as ours, and say which one
    the quote matches (a z-test at n = 3 overstates significance; a quote matching nothing points
    to another baseline or test)."""
    t_ps = [r.p_value for r in rows if r.p_value is not None]
    if not t_ps:
        return []
    theirs = {unit: z for unit in UNITS if (z := submitter_z(own, baseline, unit)) is not None}
    z_text = ", ".join(f"z={z:.2f}, p={_fmt_p(p)} ({unit})" for unit, (z, p) in theirs.items())
    quoted_z = f"; the submitter quotes z \u2248 {quoted_p.z:g}" if quoted_p.z is not None else ""
    data = {
        **common,
        "quoted_p": quoted_p.value,
        "quoted_bound": quoted_p.bound,
        "quoted_text": quoted_p.text,
        "quoted_z": quoted_p.z,
        "recomputed": t_ps,
        "submitter_z": {u: {"z": z, "p": p} for u, (z, p) in theirs.items()},
    }
    if quoted_p_agrees(quoted_p, t_ps):
        return []
    shown = ", ".join(f"{r.policy}/{r.unit} p={_fmt_p(r.p_value)}" for r in rows)
    if theirs and quoted_p_agrees(quoted_p, [p for _z, p in theirs.values()]):
        return [
            finding(
                "SIG004",
                f"quoted p-value {'< ' if quoted_p.bound else ''}{quoted_p.value:g} is the submitter's z-test "
                f"against {baseline.name}, recomputed here with their standard error (SEM = std/\u221an per side, "
                f"no margin): {z_text}{quoted_z}. The Welch t-test the rules use gives {shown}",
                location=quoted_p.location,
                origin="log",
                severity=Severity.INFO,
                data=data,
            )
        ]
    return [
        finding(
            "SIG004",
            f"quoted p-value {'< ' if quoted_p.bound else ''}{quoted_p.value:g} is more than "
            f"{QUOTED_P_FACTOR:g}x away from every recomputed p-value against {baseline.name}: Welch t-test "
            f"{shown}; z-test with the submitter's SEM {z_text or 'n/a'}{quoted_z}; "
            "the submitter may have used another baseline or test",
            location=quoted_p.location,
            origin="log",
            data=data,
        )
    ]


def quoted_p_agrees(quoted: QuotedP, recomputed: Sequence[float]) -> bool:
    """True when some recomputed p is within QUOTED_P_FACTOR of the quote (or both are tiny)."""
    for p in recomputed:
        if quoted.bound:
            if p <= quoted.value * QUOTED_P_FACTOR:
                return True
            continue
        if quoted.value < TINY_P and p < TINY_P:
            return True
        low, high = sorted((max(quoted.value, 1e-300), max(p, 1e-300)))
        if high / low <= QUOTED_P_FACTOR:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Baselines: another record's runs, or the shipped leaderboard table.


def baseline_from_record(
    name: str, runs: Sequence[SeedRun], *, tokenizer: str | None = None, date: str | None = None
) -> Baseline:
    """A baseline from another record folder (``--baseline RECORD``), runs parsed by the caller."""
    return Baseline(
        name=name,
        runs=tuple(distinct_runs(runs)),
        source="record",
        date=date,
        folder=Path(name).name,
        tokenizer=tokenizer,
    )


@dataclass(frozen=True)
class LeaderboardRow:
    name: str
    folder: str | None
    pr: int | None
    date: str
    score: float
    tokenizer: str | None
    runs: tuple[SeedRun, ...]
    other_runs: tuple[SeedRun, ...]
    merged: str | None = None  # merge date on main; None: listed but never merged (not a baseline)
    merged_at: str | None = None  # the merge as an ISO timestamp (orders same-day events)
    opened_at: str | None = None  # the PR's first commit (author date), ISO timestamp

    def to_baseline(self, reason: str | None = None) -> Baseline:
        return Baseline(
            name=self.label,
            runs=self.runs,
            source="leaderboard",
            date=self.date,
            pr=self.pr,
            folder=self.folder,
            tokenizer=self.tokenizer,
            score=self.score,
            merged=self.merged,
            reason=reason,
        )

    @property
    def label(self) -> str:
        pr = f"PR #{self.pr} " if self.pr else ""
        return f"{pr}{self.folder or self.name} ({self.date}, {self.score:.4f})"


def _seed_run(folder: str | None, item: dict) -> SeedRun:
    log = item.get("log")
    return SeedRun(
        log_file=f"{folder}/{log}"
        if folder and log
        else (log or f"{folder or 'leaderboard'}:seed{item.get('seed')}"),
        seed=item.get("seed"),
        seed_source="leaderboard",
        label=item.get("label"),
        val_loss=item.get("val_loss"),
        val_bpb=item.get("val_bpb"),
        line=item.get("line"),
        artifact_bytes=item.get("artifact_bytes"),
    )


def load_leaderboard(path: Path | None = None) -> list[LeaderboardRow]:
    """The shipped record-track leaderboard (rules/leaderboard.json), in chronological order."""
    return list(_load_leaderboard(str(path or rules.LEADERBOARD_FILE)))


@lru_cache(maxsize=4)
def _load_leaderboard(path: str) -> tuple[LeaderboardRow, ...]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for item in data.get("rows", []):
        folder = item.get("folder")
        rows.append(
            LeaderboardRow(
                name=item["name"],
                folder=folder,
                pr=item.get("pr"),
                date=item["date"],
                score=float(item["score"]),
                tokenizer=item.get("tokenizer"),
                runs=tuple(_seed_run(folder, s) for s in item.get("seeds", [])),
                other_runs=tuple(_seed_run(folder, s) for s in item.get("other_runs", [])),
                # Schema 1 tables had no merge dates: their rows count from their table date.
                merged=item.get("merged") if "merged" in item else item["date"],
                merged_at=item.get("merged_at"),
                opened_at=item.get("opened_at"),
            )
        )
    rows.sort(key=lambda r: (r.date, r.pr or 0))
    return tuple(rows)


def _utc(stamp: str | None) -> datetime | None:
    try:
        when = datetime.fromisoformat(stamp) if stamp and "T" in stamp else None
    except ValueError:
        return None
    return when.astimezone(UTC) if when and when.tzinfo else None


def merged_before(row: LeaderboardRow, date: str, at: str | None = None) -> bool:
    """Whether ``row`` was a merged record before the candidate's submission: by timestamps when
    both are known (same-day merges are common), else strictly by date (a same-day merge may have
    come after the submission, so it does not count)."""
    if row.merged is None:
        return False
    merged_at, when = _utc(row.merged_at), _utc(at)
    if merged_at and when:
        return merged_at < when
    return row.merged < date


def leaderboard_baseline(
    date: str | None,
    *,
    folder: str | None = None,
    pr: int | None = None,
    rows: Sequence[LeaderboardRow] | None = None,
    date_source: str | None = None,
    at: str | None = None,
) -> Baseline | None:
    """The frontier when the candidate was submitted: the best-scoring row *merged* before it (a
    row merged later, or never, was not yet a record the candidate had to beat). ``at`` is the
    submission's timestamp when known (git intake). A candidate that is itself a leaderboard row is
    never its own baseline, and without a date of its own it takes its PR's first commit (or its
    row's date). The returned baseline says why it was chosen."""
    rows = list(rows if rows is not None else load_leaderboard())
    own = next((r for r in rows if (folder and r.folder == folder) or (pr and r.pr == pr)), None)
    if date is None and own is not None:
        if own.opened_at:
            date, at, date_source = own.opened_at[:10], own.opened_at, "its PR's first commit"
        else:
            date, date_source = own.date, "its leaderboard row"
    if date is None:
        return None
    if at is None and own is not None and own.opened_at and own.opened_at[:10] == date:
        at = own.opened_at  # the row's own submission time orders same-day merges
    others = [r for r in rows if r is not own and r.runs]
    earlier = [r for r in others if merged_before(r, date, at)]
    if not earlier:
        return None
    best = min(earlier, key=lambda r: (r.score, r.merged))
    why = (
        f"the best record merged before {date}"
        + (f" (date from {date_source})" if date_source else "")
        + f": merged {best.merged}"
    )
    # Rows dated before the candidate but merged after it (or never) are what a date-only rule
    # would have picked: name them, so the choice can be checked.
    later = [r for r in others if r.score < best.score and r not in earlier and r.date < date]
    if later:
        shown = ", ".join(
            f"{'PR #' + str(r.pr) if r.pr else r.name} ({'merged ' + r.merged if r.merged else 'never merged'})"
            for r in sorted(later, key=lambda r: r.score)[:3]
        )
        why += f"; better rows dated earlier were not yet merged: {shown}"
    return best.to_baseline(why)


# ---------------------------------------------------------------------------------------------
# Reading the claim out of a record folder: its date, where the score is claimed, a quoted p.

DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
P_RE = re.compile(
    r"(?<![\w.])p(?:[\s-]?value)?\s*(?P<op><<|≪|<=|<|=|≈|~|:)\s*`?(?P<num>\d*\.\d+(?:[eE]-?\d+)?|\d+[eE]-\d+)`?"
    r"(?=(?P<rest>[^\n]{0,24}))",  # a lookahead: a second "p = ..." in the same line is still found
    re.IGNORECASE,
)
# "clears p<0.01", "threshold p < 0.01", "significant at p < 0.01": the bar, not a result.
THRESHOLD_BEFORE_RE = re.compile(
    r"\b(?:clears?|clearing|threshold|below|under|than|requires?|required|needs?|at|alpha|target|bar|vs\.?)\s*$",
    re.IGNORECASE,
)
THRESHOLD_AFTER_RE = re.compile(r"^\s*(?:threshold|bar|cutoff|level|required)", re.IGNORECASE)
Z_RE = re.compile(r"(?<![\w.])z\s*(?:=|≈|~|:)\s*(?P<z>-?\d+(?:\.\d+)?)", re.IGNORECASE)
P_KEY_RE = re.compile(r"^(?:p|p_?value|welch_p|p_value_.*|pvalue_.*)$", re.IGNORECASE)


def candidate_date(record_dir: Path | str, claimed: dict | None = None) -> str | None:
    """submission.json ``date`` (YYYY-MM-DD prefix) or the folder name's date prefix."""
    return dated(record_dir, claimed)[0]


def dated(
    record_dir: Path | str, claimed: dict | None = None, opened: str | None = None
) -> tuple[str | None, str | None]:
    """(date, where it came from): the PR's first commit (``opened``, from git intake) when known,
    else submission.json ``date``, else the folder name's date prefix."""
    if opened and DATE_RE.match(opened):
        return opened[:10], "the PR's first commit"  # ISO timestamp from git; the day is shown
    for key in ("date_iso", "date"):
        value = (claimed or {}).get(key)
        if isinstance(value, str) and (m := DATE_RE.match(value.strip())):
            return m.group(1), f"submission.json {key}"
    m = DATE_RE.match(Path(record_dir).name)
    return (m.group(1), "the folder name") if m else (None, None)


def _submission_file(record_dir: Path) -> Path | None:
    for path in sorted(record_dir.glob("submission*.json")):
        if path.is_file():
            return path
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def claim_location(record_dir: Path | str) -> Location | None:
    """Where the score is claimed: the ``val_bpb`` line of submission.json, else the README line."""
    record_dir = Path(record_dir)
    sub = _submission_file(record_dir)
    if sub:
        for i, line in enumerate(_read_lines(sub), 1):
            if re.search(r'"(?:val_bpb|mean_val_bpb|mean_bpb)"\s*:', line):
                return Location(file=sub.name, line=i, snippet=line.strip()[:300], role="claim")
    readme = record_dir / "README.md"
    for i, line in enumerate(_read_lines(readme), 1):
        if re.search(r"val_bpb|bpb", line, re.IGNORECASE) and re.search(r"\d\.\d{3,}", line):
            return Location(file="README.md", line=i, snippet=line.strip()[:300], role="claim")
    if sub:
        return Location(file=sub.name, line=1, role="claim")
    return None


def find_quoted_p(record_dir: Path | str) -> QuotedP | None:
    """The first p-value the submitter quotes: a ``p_value``-like key of submission.json, else a
    ``p = 0.004`` / ``p < 0.01`` / ``p-value: ...`` phrase in README.md."""
    record_dir = Path(record_dir)
    sub = _submission_file(record_dir)
    if sub:
        lines = _read_lines(sub)
        try:
            data = json.loads("\n".join(lines))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                if not P_KEY_RE.match(key):
                    continue
                bound = isinstance(value, str) and value.strip().startswith("<")
                try:
                    number = float(str(value).strip().lstrip("<= ").strip())
                except ValueError:
                    continue
                if 0.0 < number <= 1.0:
                    line = next((i for i, text in enumerate(lines, 1) if f'"{key}"' in text), None)
                    loc = Location(
                        file=sub.name,
                        line=line,
                        snippet=lines[line - 1].strip()[:300] if line else None,
                        role="quoted p",
                    )
                    return QuotedP(number, bound, loc, f"{key}: {value}")
    for i, line in enumerate(_read_lines(record_dir / "README.md"), 1):
        for m in P_RE.finditer(line):
            op, number, rest = m.group("op"), m.group("num"), m.group("rest")
            if op in ("<", "<=") and (
                THRESHOLD_BEFORE_RE.search(line[: m.start()]) or THRESHOLD_AFTER_RE.match(rest)
            ):
                continue  # the significance bar the submitter compares with, not their p
            # "p-value < 1.195: 0.0023" states the hypothesis, then the p-value.
            if (after := re.match(r"\s*:\s*`?(\d*\.\d+(?:[eE]-?\d+)?)", rest)) and float(number) > 1:
                op, number = "=", after.group(1)
            value = float(number)
            if not 0.0 < value <= 1.0:
                continue
            loc = Location(file="README.md", line=i, snippet=line.strip()[:300], role="quoted p")
            z = Z_RE.search(line)
            return QuotedP(
                value,
                op in ("<", "<<", "≪", "<="),
                loc,
                m.group(0).strip(),
                float(z.group("z")) if z else None,
            )
    return None


is_non_record_track = intake.is_non_record_track


def significance_for_record(
    record_dir: Path | str,
    runs: Sequence[SeedRun],
    *,
    track: str | None = None,
    claimed: dict | None = None,
    baseline: Baseline | None = None,
    extra_runs: Sequence[SeedRun] = (),
    pr: int | None = None,
    candidate_tokenizer: str | None = None,
    leaderboard: Sequence[LeaderboardRow] | None = None,
    opened: str | None = None,
    policy: str = "both",
) -> SignificanceResult | None:
    """Significance of one record folder, or None when it does not apply (non-record track, or no
    earlier merged record to compare with and no ``baseline`` given). ``opened`` is the PR's first
    commit date when the record came through git intake; ``policy`` selects the policies (both,
    readme, frontier), each applied only from its own date."""
    if is_non_record_track(track):
        return None
    record_dir = Path(record_dir)
    date, source = dated(record_dir, claimed, opened)
    if baseline is None:
        baseline = leaderboard_baseline(
            date, folder=record_dir.name, pr=pr, rows=leaderboard, date_source=source, at=opened
        )
        if baseline is None:
            return None
    elif baseline.reason is None:
        baseline = replace(baseline, reason="given with --baseline")
    policies, notes = policies_in_effect(date, policy)
    if date is None:
        notes.append("no submission date found: every selected policy applied")
    return assess(
        runs,
        baseline,
        extra_runs=extra_runs,
        quoted_p=find_quoted_p(record_dir),
        claim_location=claim_location(record_dir),
        candidate_tokenizer=candidate_tokenizer,
        policies=policies,
        candidate_date=date,
        candidate_date_source=source,
        notes=notes,
    )
