"""Significance (auditor/significance.py): hand-computed statistics, the real records, edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import special, stats

import rules
from auditor.models import Confidence, EligibilityStatus, SeedRun, Severity
from auditor.significance import (
    FRONTIER_POLICY,
    LN2,
    NATS_BYTE,
    NATS_TOKEN,
    README_POLICY,
    Baseline,
    QuotedP,
    assess,
    baseline_from_record,
    candidate_date,
    claim_location,
    decisive_row,
    find_quoted_p,
    leaderboard_baseline,
    load_leaderboard,
    one_sided_test,
    quoted_p_agrees,
    significance_for_record,
)
from auditor.verdict import eligibility

SP8192_RATIO = 2.58310385  # val_loss / val_bpb of the SP8192 rows (ln 2 x bytes/token)
SP1024_RATIO = 1.68842  # the same for SP1024 (#549/#1019)


def runs_from_bpb(bpbs, ratio=SP8192_RATIO, first_seed=1):
    return [
        SeedRun(
            log_file=f"train_seed{first_seed + i}.log", seed=first_seed + i, val_bpb=b, val_loss=b * ratio
        )
        for i, b in enumerate(bpbs)
    ]


def baseline(bpbs, ratio=SP8192_RATIO, name="base", tokenizer=None):
    return Baseline(
        name=name,
        runs=tuple(runs_from_bpb(bpbs, ratio, first_seed=100)),
        source="record",
        tokenizer=tokenizer,
    )


def welch_by_hand(c, b, margin=0.0):
    """Explicit Welch formulas: t, Welch-Satterthwaite df, one-sided p from the t CDF, z p."""
    nc, nb = len(c), len(b)
    mc, mb = sum(c) / nc, sum(b) / nb - margin
    vc = sum((x - sum(c) / nc) ** 2 for x in c) / (nc - 1)
    vb = sum((x - sum(b) / nb) ** 2 for x in b) / (nb - 1)
    se2 = vc / nc + vb / nb
    t = (mc - mb) / math.sqrt(se2)
    df = se2**2 / ((vc / nc) ** 2 / (nc - 1) + (vb / nb) ** 2 / (nb - 1))
    p = special.stdtr(df, t)  # P(T <= t): H1 "candidate lower"
    z_p = 0.5 * math.erfc(-t / math.sqrt(2))
    return t, df, p, z_p


def rows_by(result):
    return {(r.policy, r.unit): r for r in result.significance.rows}


def rule_ids(result):
    return sorted(f.rule_id for f in result.findings)


# --- the test statistic -----------------------------------------------------------------------


@pytest.mark.parametrize("margin", [0.0, 0.005, 0.01])
def test_welch_matches_explicit_formulas(margin):
    c = [2.7860, 2.7871, 2.7855, 2.7880]
    b = [2.7950, 2.7911, 2.7932]
    t, df, p, z_p = welch_by_hand(c, b, margin)
    out = one_sided_test(c, b, margin)
    assert out.t_stat == pytest.approx(t, rel=1e-9)
    assert out.df == pytest.approx(df, rel=1e-9)
    assert out.p_value == pytest.approx(p, rel=1e-7)
    assert out.z_p_value == pytest.approx(z_p, rel=1e-7)
    assert out.note is None


def test_margin_makes_the_test_harder():
    c, b = [1.0, 1.001, 0.999], [1.006, 1.007, 1.005]
    assert one_sided_test(c, b, 0.0).p_value < one_sided_test(c, b, 0.005).p_value < 0.5
    assert one_sided_test(c, b, 0.0061).p_value > 0.5  # improvement 0.006 < margin


def test_one_baseline_run_uses_one_sample_test():
    c = [1.070, 1.072, 1.071]
    out = one_sided_test(c, [1.080], 0.005)
    mean = sum(c) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in c) / 2)
    t = (mean - (1.080 - 0.005)) / (sd / math.sqrt(3))
    assert out.t_stat == pytest.approx(t)
    assert out.df == 2
    assert out.p_value == pytest.approx(special.stdtr(2, t))
    assert "one baseline run" in out.note


def test_one_candidate_run_tests_the_baseline_runs():
    b = [1.080, 1.082, 1.081]
    out = one_sided_test([1.070], b)
    mean = sum(b) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in b) / 2)
    t = (1.070 - mean) / (sd / math.sqrt(3))  # same sign convention: negative = candidate lower
    assert out.t_stat == pytest.approx(t)
    assert out.p_value == pytest.approx(special.stdtr(2, t))
    assert "one candidate run" in out.note


def test_single_runs_and_zero_variance_are_refused():
    assert one_sided_test([1.07], [1.08]).p_value is None
    out = one_sided_test([1.07, 1.07, 1.07], [1.08, 1.08])
    assert out.p_value is None and out.t_stat is None
    assert "zero variance" in out.note
    assert one_sided_test([], [1.08, 1.09]).p_value is None


# --- policies, units, findings -------------------------------------------------------------------

BASE_1514 = [1.07928348, 1.08024795, 1.07996676]  # PR #1514 per-seed val_bpb


def test_policies_disagree_small_margin():
    result = assess(runs_from_bpb([1.0780, 1.0785, 1.0782]), baseline(BASE_1514))
    rows = rows_by(result)
    assert set(rows) == {(p, u) for p in ("readme", "frontier") for u in (NATS_TOKEN, NATS_BYTE)}
    readme, frontier = rows["readme", NATS_TOKEN], rows["frontier", NATS_BYTE]
    assert not readme.significant and frontier.significant
    assert readme.margin == README_POLICY.margin and readme.alpha == 0.01
    assert frontier.margin == 0.0 and frontier.alpha == FRONTIER_POLICY.alpha == 0.25
    # nats/byte is BPB x ln 2; nats/token uses val_loss
    assert rows["frontier", NATS_BYTE].mean_candidate == pytest.approx((1.0780 + 1.0785 + 1.0782) / 3 * LN2)
    assert rows["frontier", NATS_TOKEN].mean_candidate == pytest.approx(
        (1.0780 + 1.0785 + 1.0782) / 3 * SP8192_RATIO
    )
    # without a margin the t-test is scale free: same p in both units
    assert rows["frontier", NATS_TOKEN].p_value == pytest.approx(
        rows["frontier", NATS_BYTE].p_value, rel=1e-6
    )
    assert rule_ids(result) == ["SIG001"]
    sig001 = result.findings[0]
    assert sig001.severity == Severity.WARNING and sig001.origin == "log"
    assert "margin" in sig001.message


def test_clear_improvement_passes_both_policies():
    result = assess(runs_from_bpb([1.0740, 1.0745, 1.0742]), baseline(BASE_1514))
    rows = rows_by(result)
    assert rows["readme", NATS_TOKEN].significant and rows["frontier", NATS_BYTE].significant
    assert rule_ids(result) == []


def test_no_improvement_is_a_frontier_error():
    result = assess(runs_from_bpb([1.0797, 1.0800, 1.0796]), baseline(BASE_1514))
    by_rule = {f.rule_id: f for f in result.findings}
    assert set(by_rule) == {"SIG001", "SIG002"}
    assert by_rule["SIG002"].severity == Severity.ERROR
    assert by_rule["SIG002"].confidence == Confidence.PROOF
    assert by_rule["SIG002"].data["p_value"] > 0.25


def test_worse_candidate_says_not_better():
    result = assess(runs_from_bpb([1.0830, 1.0835, 1.0832]), baseline(BASE_1514))
    sig002 = next(f for f in result.findings if f.rule_id == "SIG002")
    assert "not better" in sig002.message
    assert rows_by(result)["frontier", NATS_BYTE].delta < 0


def test_fewer_than_three_seeds():
    result = assess(runs_from_bpb([1.0740, 1.0745]), baseline(BASE_1514))
    sig003 = [f for f in result.findings if f.rule_id == "SIG003"]
    assert len(sig003) == 1 and sig003[0].data["n_seeds"] == 2 and sig003[0].severity == Severity.WARNING
    assert rows_by(result)["frontier", NATS_BYTE].n_candidate == 2


def test_one_run_each_side_is_refused_not_failed():
    result = assess(runs_from_bpb([1.0700]), baseline([1.0798]))
    rows = rows_by(result)
    assert all(r.p_value is None and not r.significant for r in rows.values())
    assert "refused" in rows["frontier", NATS_BYTE].note
    by_rule = {f.rule_id: f for f in result.findings}
    assert by_rule["SIG003"].data["n_seeds"] == 1
    # no test was possible: SIG002 is downgraded, never a proof error
    assert by_rule["SIG002"].severity == Severity.WARNING
    assert by_rule["SIG002"].confidence == Confidence.HEURISTIC


def test_no_runs_at_all():
    result = assess([], baseline(BASE_1514))
    assert result.significance.rows == []
    assert rule_ids(result) == ["SIG003"]


def test_zero_variance_candidate_and_baseline():
    result = assess(runs_from_bpb([1.07, 1.07, 1.07]), baseline([1.08, 1.08, 1.08]))
    row = rows_by(result)["frontier", NATS_BYTE]
    assert row.p_value is None and "zero variance" in row.note
    assert not any(f.severity == Severity.ERROR for f in result.findings)


def test_nan_and_missing_scores_are_dropped():
    cand = runs_from_bpb([1.0740, 1.0745, 1.0742])
    cand.append(SeedRun(log_file="train_seed9.log", seed=9, val_bpb=float("nan"), val_loss=float("nan")))
    cand.append(SeedRun(log_file="train_seed10.log", seed=10, val_bpb=1.0741, val_loss=None))
    result = assess(cand, baseline(BASE_1514))
    rows = rows_by(result)
    assert rows["frontier", NATS_BYTE].n_candidate == 4
    assert rows["frontier", NATS_TOKEN].n_candidate == 3
    assert "dropped" in rows["frontier", NATS_TOKEN].note
    assert all(math.isfinite(r.mean_candidate) for r in rows.values())


def test_duplicates_and_repeated_seeds_count_once():
    cand = runs_from_bpb([1.0740, 1.0745, 1.0742])
    cand.append(cand[0].model_copy(update={"log_file": "train.log"}))  # same seed again
    cand.append(
        cand[1].model_copy(update={"log_file": "copy.log", "seed": None, "duplicate_of": "train_seed2.log"})
    )
    result = assess(cand, baseline(BASE_1514))
    assert rows_by(result)["readme", NATS_TOKEN].n_candidate == 3


def test_reproduction_runs_pooled_only_for_frontier():
    own = runs_from_bpb([1.0790, 1.0795, 1.0788])
    extra = runs_from_bpb([1.0791, 1.0789, 1.0793], first_seed=50)
    without = assess(own, baseline(BASE_1514))
    pooled = assess(own, baseline(BASE_1514), extra_runs=extra)
    rows = rows_by(pooled)
    assert rows["frontier", NATS_BYTE].n_candidate == 6
    assert rows["readme", NATS_BYTE].n_candidate == 3
    assert "pooled" in rows["frontier", NATS_BYTE].note
    assert rows["frontier", NATS_BYTE].p_value < rows_by(without)["frontier", NATS_BYTE].p_value


def test_nats_per_token_not_decisive_across_tokenizers():
    # SP1024 candidate (about 2.44 bytes/token) against an SP8192 baseline (about 3.7 bytes/token):
    # val_loss is lower for SP1024 at a worse BPB, so nats/token would call it an improvement.
    cand = runs_from_bpb([1.0900, 1.0905, 1.0902], ratio=SP1024_RATIO)
    result = assess(cand, baseline(BASE_1514, tokenizer="sp8192"), candidate_tokenizer="sp1024")
    rows = rows_by(result)
    assert rows["readme", NATS_TOKEN].delta > 0.005  # meaningless "improvement" in nats/token
    assert "not comparable" in rows["readme", NATS_TOKEN].note
    assert decisive_row(result.significance.rows, "readme", comparable=False).unit == NATS_BYTE
    assert {"SIG001", "SIG002"} <= set(rule_ids(result))
    # detected from the loss/bpb ratio alone, too
    again = assess(cand, baseline(BASE_1514))
    assert "bytes/token differ" in rows_by(again)["readme", NATS_TOKEN].note


def test_z_test_disagreeing_with_t_test():
    result = assess(runs_from_bpb([1.0768, 1.0770, 1.0772]), baseline(BASE_1514))
    row = rows_by(result)["readme", NATS_TOKEN]
    assert row.z_p_value < 0.01 < row.p_value
    assert result.significance.z_test_p == row.z_p_value
    sig004 = [f for f in result.findings if f.rule_id == "SIG004"]
    assert len(sig004) == 1 and sig004[0].data["policy"] == "readme"


def test_quoted_p_comparison():
    from auditor.models import Location

    loc = Location(file="README.md", line=3)
    assert quoted_p_agrees(QuotedP(0.02, False, loc, ""), [0.0203])
    assert not quoted_p_agrees(QuotedP(0.0001, False, loc, ""), [0.008, 0.8])
    assert quoted_p_agrees(QuotedP(5e-5, False, loc, ""), [3e-7])  # both tiny
    assert not quoted_p_agrees(QuotedP(1e-3, False, loc, ""), [3e-7])
    assert quoted_p_agrees(QuotedP(0.001, True, loc, ""), [0.004])  # "p < 0.001" vs 0.004: within 10x
    assert not quoted_p_agrees(QuotedP(0.001, True, loc, ""), [0.2, 0.5])

    quoted = QuotedP(0.0001, False, loc, "p = 0.0001")
    result = assess(runs_from_bpb([1.0780, 1.0785, 1.0782]), baseline(BASE_1514), quoted_p=quoted)
    sig004 = [f for f in result.findings if f.rule_id == "SIG004"]
    assert len(sig004) == 1 and sig004[0].location == loc
    assert result.significance.quoted_p == 0.0001


# --- the real records (committed leaderboard, no corpus needed) -----------------------------------


def _row(pr):
    return next(r for r in load_leaderboard() if r.pr == pr)


def test_pr1019_example_from_rules_md():
    """#1019: 1.89002 -> 1.88218 nats, delta 0.0078 (clears 0.005); Welch t = -11.83, df 3.31 on BPB."""
    base, cand = _row(549), _row(1019)
    result = assess(
        cand.runs, Baseline(name="PR #549", runs=base.runs, source="leaderboard", tokenizer="sp1024")
    )
    rows = rows_by(result)
    readme = rows["readme", NATS_TOKEN]
    assert readme.mean_baseline == pytest.approx(1.89002068, abs=1e-8)
    assert readme.mean_candidate == pytest.approx(1.88217853, abs=1e-8)
    assert readme.delta == pytest.approx(0.00784215, abs=1e-8)
    assert readme.significant and readme.p_value < 0.01
    frontier = rows["frontier", NATS_BYTE]
    assert frontier.t_stat == pytest.approx(-11.83, abs=0.005)
    assert frontier.df == pytest.approx(3.3063, abs=1e-4)
    assert rule_ids(result) == []


@pytest.mark.parametrize(
    ("candidate", "previous", "annotated_p"),
    [(1514, 1493, 0.020), (1529, 1514, 0.001), (1769, 1736, 0.063), (2135, 2014, 0.014)],
)
def test_maintainers_frontier_p_values(candidate, previous, annotated_p):
    """The p-values annotated on the maintainers' leaderboard (PR #1902 / #2146) are reproduced,
    each against the row the maintainers compared it with (given as the baseline)."""
    result = assess(_row(candidate).runs, _row(previous).to_baseline(), policies=(FRONTIER_POLICY,))
    assert round(rows_by(result)["frontier", NATS_BYTE].p_value, 3) == annotated_p
    assert "SIG002" not in rule_ids(result)


def test_default_baseline_is_the_frontier_merged_before_the_submission():
    # #1514 was opened at 23:37 UTC on 2026-04-09, after #1493 was merged that day (21:12 UTC).
    assert leaderboard_baseline(None, pr=1514).pr == 1493
    # #1529 (opened 2026-04-11): #1514 was merged only on 2026-04-29, so #1493 is the frontier.
    base = leaderboard_baseline(None, pr=1529)
    assert base.pr == 1493 and "#1514 (merged 2026-04-29)" in base.reason
    # #2135: the leaderboard-branch rows #1945/#1953/#2014 were never merged on main.
    base = leaderboard_baseline(None, pr=2135)
    assert base.pr == 1855 and "never merged" in base.reason
    # An unknown folder with a date only: strictly earlier merges (same-day ones may be later).
    assert leaderboard_baseline("2026-04-09", folder="2026-04-09_New").pr == 1019
    assert leaderboard_baseline("2026-04-10", folder="2026-04-10_New").pr == 1493
    assert leaderboard_baseline("2026-04-30", folder="2026-04-30_New").pr == 1855
    assert leaderboard_baseline("2026-03-01") is None
    assert leaderboard_baseline(None) is None
    # the worse, later Ternary row (1.157 on 03-24) never becomes the baseline
    assert leaderboard_baseline("2026-03-26").pr == 549
    assert leaderboard_baseline("2026-03-31").pr == 1019  # merged 2026-03-30
    # with a timestamp, the same-day order counts
    assert leaderboard_baseline("2026-04-09", at="2026-04-09T22:00:00+00:00").pr == 1493
    assert leaderboard_baseline("2026-04-09", at="2026-04-09T20:00:00+00:00").pr == 1019


def test_no_leaderboard_row_is_a_baseline_before_it_was_merged():
    rows = load_leaderboard()
    for row in rows:
        base = leaderboard_baseline(None, pr=row.pr, folder=row.folder)
        if base is None:
            continue
        chosen = next(r for r in rows if r.label == base.name)
        assert chosen.merged is not None, row.label
        assert chosen.merged <= (row.opened_at or row.date)[:10], (row.label, chosen.label)


def _published(pr: int) -> tuple[list[SeedRun], str]:
    data = json.loads((Path(__file__).parent / "fixtures" / "significance" / f"pr{pr}.json").read_text())
    runs = [
        SeedRun(log_file=s["log_file"], seed=s["seed"], seed_source="log", label=s["label"],
                val_loss=s["val_loss"], val_bpb=s["val_bpb"], line=s["line"])
        for s in data["seeds"]
    ]
    return runs, data["opened_at"]


def test_pr1755_caseops_is_significant_under_the_readme_rule_per_byte(tmp_path):
    """CaseOps changes bytes/token (3.157 vs 3.727), so the per-byte row decides; its margin is
    0.005 nats/token converted at the baseline's bytes/token (0.001342 nats/byte)."""
    runs, opened = _published(1755)
    folder = tmp_path / "2026-04-20_SP8192_3LayerRecur_ParResid_QK525_LegalTTT_CaseOps"
    folder.mkdir()
    result = significance_for_record(folder, runs, track="track_10min_16mb", opened=opened)
    sig = result.significance
    assert sig.baseline.startswith("PR #1493") and "#1736 (merged 2026-04-29)" in sig.baseline_reason
    assert sig.policies == ["readme"] and "from 2026-04-28" in sig.notes[0]
    per_byte = rows_by(result)["readme", NATS_BYTE]
    assert per_byte.decisive and not rows_by(result)["readme", NATS_TOKEN].decisive
    assert per_byte.margin == pytest.approx(0.005 / 3.7266, rel=1e-3)
    assert per_byte.p_value == pytest.approx(0.00097, abs=0.00003)
    # an independent computation: Welch's test on the shifted per-byte values
    cand = [r.val_bpb * LN2 for r in runs]
    base = [r.val_bpb * LN2 - per_byte.margin for r in _row(1493).runs]
    assert per_byte.p_value == pytest.approx(stats.ttest_ind(cand, base, equal_var=False, alternative="less").pvalue)
    assert per_byte.significant and "SIG001" not in rule_ids(result)
    assert "SIG002" not in rule_ids(result)


def test_pr1716_is_not_significant_under_the_readme_rule(tmp_path):
    runs, opened = _published(1716)
    folder = tmp_path / "2026-04-18_SP8192_BigramHash32_PathAv3"
    folder.mkdir()
    result = significance_for_record(folder, runs, track="track_10min_16mb", opened=opened)
    assert result.significance.baseline.startswith("PR #1493")
    rows = rows_by(result)
    assert rows["readme", NATS_TOKEN].p_value == pytest.approx(0.043, abs=0.0005)
    assert rows["readme", NATS_BYTE].p_value == pytest.approx(0.078, abs=0.0005)
    assert rows["readme", NATS_TOKEN].decisive  # same tokenizer: the README's own unit decides
    assert "SIG001" in rule_ids(result)
    elig = eligibility([], result.significance, non_record_track=False)
    assert elig.status is EligibilityStatus.NOT_A_NEW_RECORD
    assert elig.reasons[0].startswith("not a new record under the README rule")


def test_policy_choice_filters_the_table(tmp_path):
    runs, _opened = _published(1716)
    folder = tmp_path / "x"
    folder.mkdir()
    late = "2026-04-30T10:00:00+00:00"
    both = significance_for_record(folder, runs, track="track_10min_16mb", opened=late)
    assert {r.policy for r in both.significance.rows} == {"readme", "frontier"}
    only = significance_for_record(folder, runs, track="track_10min_16mb", opened=late, policy="frontier")
    assert {r.policy for r in only.significance.rows} == {"frontier"}
    assert "SIG001" not in rule_ids(only)


def test_leaderboard_file_is_numbers_only():
    data = json.loads(rules.LEADERBOARD_FILE.read_text())
    assert data["rows"]
    for row in data["rows"]:
        assert set(row) >= {"folder", "pr", "date", "score", "val_bpb_mean", "seeds", "tokenizer"}
        for seed in row["seeds"]:
            assert isinstance(seed["val_bpb"], float)
        if row["evidence"] == "logs":
            bpbs = [s["val_bpb"] for s in row["seeds"]]
            assert row["val_bpb_mean"] == pytest.approx(sum(bpbs) / len(bpbs), abs=1e-8)


# --- reading the claim from a folder ----------------------------------------------------------


def _folder(tmp_path, name="2026-04-10_Test", readme="", submission=None):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "README.md").write_text(readme, encoding="utf-8")
    if submission is not None:
        (folder / "submission.json").write_text(json.dumps(submission, indent=2), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("line", "value", "bound"),
    [
        ("- One-sided one-sample t-test: `t=31.42` with `df=2`, which gives `p=0.00051`", 0.00051, False),
        ("**Mean val_bpb: 1.1748** (3 seeds, p<0.001)", 0.001, True),
        ("- t-statistic: -93.6, df=2, p << 0.01", 0.01, True),
        ("p-value < 1.195: 0.00234486", 0.00234486, False),
        ("Welch p-value: 0.034 vs the previous record", 0.034, False),
        # the bar the submitter compares with is not their p (PR #1755's README)
        ("- **z ≈ 22.8, p ≪ 0.0001** ✓ clears p<0.01 threshold", 0.0001, True),
        ("significant at p < 0.01: p = 0.0042", 0.0042, False),
    ],
)
def test_find_quoted_p_in_readme(tmp_path, line, value, bound):
    folder = _folder(tmp_path, readme=f"# Title\n\nTTT_P=0.5 top_p=0.9\n{line}\n")
    quoted = find_quoted_p(folder)
    assert quoted is not None
    assert quoted.value == pytest.approx(value) and quoted.bound is bound
    assert quoted.location.file == "README.md" and quoted.location.line == 4


def test_quoted_z_is_checked_with_the_submitters_own_test(tmp_path):
    """A quote that matches only the z-test the submitter computed by hand (SEM per side, no
    margin) is named as such, with the Welch t-test beside it."""
    runs, opened = _published(1716)
    folder = _folder(tmp_path, name="2026-04-18_X", readme="- z = 16.1, p < 1e-10 (one-sided)\n")
    result = significance_for_record(folder, runs, track="track_10min_16mb", opened=opened)
    quoted = next(f for f in result.findings if f.rule_id == "SIG004" and f.data.get("quoted_p"))
    assert quoted.data["quoted_z"] == 16.1
    assert "submitter's z-test" in quoted.message and "Welch t-test" in quoted.message
    assert quoted.severity is Severity.INFO
    z, p = quoted.data["submitter_z"]["nats/token"]["z"], quoted.data["submitter_z"]["nats/token"]["p"]
    assert p == pytest.approx(special.ndtr(-z))


def test_find_quoted_p_prefers_submission_json(tmp_path):
    folder = _folder(
        tmp_path, readme="p = 0.3\n", submission={"name": "x", "val_bpb": 1.07, "p_value": "<0.001"}
    )
    quoted = find_quoted_p(folder)
    assert (quoted.value, quoted.bound, quoted.location.file) == (0.001, True, "submission.json")
    assert '"p_value"' in quoted.location.snippet
    assert find_quoted_p(_folder(tmp_path, name="b", readme="no statistics here, top_p=0.9\n")) is None


def test_claim_location_and_date(tmp_path):
    folder = _folder(tmp_path, submission={"name": "x", "date": "2026-04-12T10:00:00Z", "val_bpb": 1.07})
    loc = claim_location(folder)
    assert loc.file == "submission.json" and loc.line == 4 and '"val_bpb"' in loc.snippet
    assert candidate_date(folder, {"date": "2026-04-12T10:00:00Z"}) == "2026-04-12"
    assert candidate_date(folder, {}) == "2026-04-10"
    assert candidate_date(folder, {"date_iso": "2026-04-11", "date": "April 11"}) == "2026-04-11"
    assert candidate_date(Path("no_date_here"), None) is None
    bare = _folder(tmp_path, name="bare", readme="# t\n\n**val_bpb: 1.0812** (3 seeds)\n")
    assert claim_location(bare).line == 3


def test_significance_for_record(tmp_path):
    folder = _folder(tmp_path, submission={"name": "x", "date": "2026-04-30", "val_bpb": 1.0742})
    runs = runs_from_bpb([1.0740, 1.0745, 1.0742])
    result = significance_for_record(folder, runs, track="track_10min_16mb", claimed={"date": "2026-04-30"})
    assert result.significance.baseline.startswith("PR #1855")
    assert result.significance.candidate_date_source == "submission.json date"
    assert significance_for_record(folder, runs, track="track_non_record_16mb") is None
    assert significance_for_record(_folder(tmp_path, name="1999-01-01_old"), runs) is None
    other = baseline_from_record("records/track_10min_16mb/2026-04-27_X", _row(1855).runs)
    explicit = significance_for_record(folder, runs, baseline=other, claimed={"date": "2026-04-30"})
    assert explicit.significance.baseline.endswith("2026-04-27_X")
    assert explicit.significance.baseline_reason == "given with --baseline"
    assert rows_by(explicit)["frontier", NATS_BYTE].p_value == pytest.approx(
        rows_by(result)["frontier", NATS_BYTE].p_value
    )


# --- corpus: the committed leaderboard matches the logs (skipped without ../shared) ---------------

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS / "records" / "track_10min_16mb").is_dir(), reason="corpus not available")
def test_committed_leaderboard_matches_corpus_logs():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "build_leaderboard", Path(__file__).resolve().parents[1] / "bench" / "build_leaderboard.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(sys.modules[spec.name])
    module = sys.modules[spec.name]
    committed = {r.folder: r for r in load_leaderboard() if r.folder}
    checked = 0
    for folder in sorted((CORPUS / "records" / "track_10min_16mb").iterdir()):
        if folder.name not in committed:
            continue
        reported, _, _ = module.folder_runs(module.corpus_folder(folder))
        fresh = {(r.seed, r.val_bpb, r.val_loss) for r in reported}
        stored = {(r.seed, r.val_bpb, r.val_loss) for r in committed[folder.name].runs}
        assert fresh == stored, folder.name
        checked += 1
    assert checked >= 40


@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS / "records" / "track_10min_16mb").is_dir(), reason="corpus not available")
def test_every_committed_row_agrees_with_its_merged_record():
    """Each row's seeds are the run(s) its merged record quotes: submission.json's val_bpb is their
    mean (a record quoting one run of several logs keeps that run only), and the table's score
    rounds to it unless the row is marked as not backed by its logs."""
    data = json.loads(rules.LEADERBOARD_FILE.read_text())
    checked = 0
    for row in data["rows"]:
        sub_file = CORPUS / "records" / "track_10min_16mb" / (row["folder"] or "-") / "submission.json"
        if not sub_file.is_file() or not row["merged"]:
            continue
        mean = sum(s["val_bpb"] for s in row["seeds"]) / len(row["seeds"])
        claimed = json.loads(sub_file.read_text()).get("val_bpb")
        if isinstance(claimed, (int, float)) and row["score_matches_logs"]:
            assert mean == pytest.approx(claimed, abs=1e-4), row["name"]
        half_ulp = 0.5 * 10.0 ** -len(repr(float(row["score"])).split(".")[1]) + 5e-5 + 1e-9
        assert row["score_matches_logs"] is (abs(mean - row["score"]) <= half_ulp), row["name"]
        checked += 1
    assert checked >= 40
    assert [r["pr"] for r in data["rows"] if r["score_matches_logs"] is False] == [86]


def test_unscored_runs_do_not_count_as_seeds():
    cand = runs_from_bpb([1.0740, 1.0745])
    cand.append(SeedRun(log_file="train_seed7.log", seed=7, val_bpb=float("nan"), val_loss=None))
    result = assess(cand, baseline(BASE_1514))
    sig003 = next(f for f in result.findings if f.rule_id == "SIG003")
    assert sig003.data["n_seeds"] == 2 and sig003.data["seeds"] == [1, 2]
