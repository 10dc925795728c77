"""The parsers on the real corpus (../shared/corpus: every public record folder's non-code files).

Checks that every log, submission JSON and README parses, that the reported score of the logs
reconciles with the JSON for the record folders records-format.md §3.5 says reconcile, and that
the §8 red flags visible in logs/JSON are visible in the parsed facts. Skipped when the corpus is
absent.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from auditor.parse.logs import ARTIFACT_CAP_BYTES, ParsedLog, parse_log, read_problems
from auditor.parse.readme import parse_readme
from auditor.parse.submission import Submission, parse_submission

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "records"
RECORD = CORPUS / "track_10min_16mb"
NON_RECORD = CORPUS / "track_non_record_16mb"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not available"),
]


def _is_log(p: Path) -> bool:
    return p.is_file() and (
        p.suffix == ".log" or (p.suffix == ".txt" and not p.name.startswith("requirements"))
    )


@cache
def _logs(folder: Path) -> tuple[ParsedLog, ...]:
    return tuple(
        parse_log(p, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*")) if _is_log(p)
    )


@cache
def _submission(folder: Path) -> Submission | None:
    files = sorted(folder.glob("submission*.json"))
    if not files:
        return None
    parsed = parse_submission(files[0], files[0].name)
    assert parsed.findings == [], [f.message for f in parsed.findings]
    return parsed.submission


def _folder(prefix: str, track: Path = RECORD) -> Path:
    [folder] = [p for p in track.iterdir() if p.name.startswith(prefix)]
    return folder


def _all_folders() -> list[Path]:
    return sorted(p for t in (RECORD, NON_RECORD) for p in t.iterdir() if p.is_dir())


def _tolerance(claim: float) -> float:
    """records-format §3.5: 4-dp (rounded) JSON values ±5e-5, full-precision ones 1e-8."""
    decimals = len(repr(claim).partition(".")[2])
    return 1e-8 if decimals >= 7 else 5e-5


def _scored_logs(folder: Path) -> list[ParsedLog]:
    """The logs the JSON score comes from, byte-identical copies dropped, one run per seed."""
    logs = list(_logs(folder))
    if folder.name.startswith("2026-04-23"):  # eval-only re-runs on saved artifacts
        logs = [log for log in logs if log.rel.startswith("ttt_pr1767/")]
    if folder.name.startswith("2026-04-29"):  # the original runs, not the compliance re-runs
        logs = [log for log in logs if "original" in log.rel]
    seen: set[str] = set()
    by_seed: dict[int | None, ParsedLog] = {}
    for log in sorted(logs, key=lambda log: log.rel):
        if log.sha256 in seen or log.reported is None:
            continue
        seen.add(log.sha256)
        by_seed[log.seed] = log  # several distinct logs of one seed are attempts: the last counts
    return list(by_seed.values())


def _aggregations(folder: Path) -> dict[str, float]:
    runs = _scored_logs(folder)
    values = [log.reported.val_bpb for log in runs]
    out = {"mean": sum(values) / len(values), "best": min(values)}
    train_log = [log for log in _logs(folder) if log.rel == "train.log" and log.reported]
    if train_log:
        out["train.log"] = train_log[0].reported.val_bpb
    return out


# -- everything parses -----------------------------------------------------------------------------


def test_every_log_parses():
    logs = [log for folder in _all_folders() for log in _logs(folder)]
    assert len(logs) == 165
    assert all(read_problems(log) == [] and log.lines > 0 and log.sha256 for log in logs)
    no_final = sorted(log.rel for log in logs if not log.finals)
    assert no_final == [
        "log_eggroll_3-last-layers.txt",
        "log_eggroll_all-layers-perturbed.txt",
        "train.log",  # N DGAttention: only the pre-quant step line
        "ttt_pr1767/summary.log",
    ]
    assert sum(1 for log in logs if log.embedded_sources) == 79
    dumps = sum(1 for log in logs if log.hyperparameters)
    assert dumps == 69 + 16  # "Hyperparameters:" dumps + "--- Hyperparameters ---" key=value lines
    assert sum(1 for log in logs if log.seed is not None) == 164  # all but LegendreGPT
    assert all(log.to_seed_run().log_file == log.rel for log in logs)


def test_every_submission_json_parses_into_its_family():
    files = sorted(CORPUS.glob("*/*/submission*.json"))
    assert len(files) == 58
    families = Counter()
    for p in files:
        parsed = parse_submission(p, p.name)
        assert parsed.findings == [] and parsed.submission is not None, p
        families[parsed.submission.schema_family] += 1
        assert parsed.submission.val_bpb is not None, p  # every file has a score somewhere
    assert families == {"A": 14, "B": 12, "C": 4, "D": 23, "E": 2, "F": 3}


def test_every_readme_parses():
    readmes = sorted(CORPUS.glob("*/*/README.md"))
    assert len(readmes) == 59
    infos = [parse_readme(p) for p in readmes]
    assert all(info.problems == [] and info.findings == [] for info in infos)
    assert sum(1 for info in infos if info.training_commands) >= 40
    lqer = parse_readme(_folder("2026-04-27_SP8192_LQER") / "README.md")
    assert len(lqer.training_commands[0].env) == 44  # records-format §6: 44 variables


# -- reconciliation (records-format §3.5) ------------------------------------------------------------


def test_record_track_scores_reconcile_except_mlp3x():
    folders = [f for f in sorted(RECORD.iterdir()) if _submission(f) is not None]
    assert len(folders) == 45
    failed = []
    for folder in folders:
        claim = _submission(folder).val_bpb
        hits = [k for k, v in _aggregations(folder).items() if abs(v - claim) <= _tolerance(claim)]
        if not hits:
            failed.append(folder.name)
    assert failed == ["2026-03-19_MLP3x_QAT_Int6_SlidingWindow"]


@pytest.mark.parametrize(
    "prefix,aggregation",
    [
        ("2026-03-17_NaiveBaseline", "train.log"),
        ("2026-03-17_LoRA_TTT", "mean"),  # four attempts of seed 1337: the last one, train_v3.txt
        ("2026-03-19_Seq2048_FP16Emb_TunedLR", "best"),
        ("2026-03-19_TrainingOptSeq4096", "train.log"),
        ("2026-03-19_SlidingWindow_FP16Emb_10L_MuonWD_OvertoneInit", "mean"),  # mean_val_bpb
        ("2026-03-20_10L_Int5MLP", "mean"),  # the BPB stored in val_loss
        ("2026-03-20_11L_XSA4", "train.log"),
        ("2026-03-24_74M_Ternary", "best"),
        ("2026-04-04_SP4096", "mean"),  # the seed-42 log ends with a failed TTT try
        ("2026-04-23_SP8192_CaseOps", "mean"),  # from ttt_pr1767/
        ("2026-04-29_SmearGateBOSFix", "mean"),  # from the *original* logs
    ],
)
def test_aggregation_semantics(prefix, aggregation):
    folder = _folder(prefix)
    claim = _submission(folder).val_bpb
    assert abs(_aggregations(folder)[aggregation] - claim) <= _tolerance(claim)


def test_non_record_scores_match_a_final_line():
    expected = [
        "2026-03-18_Quasi10Bfrom50B",
        "2026-03-24_106M_Binary",
        "2026-03-26_37M_LeWM_Jepa",
        "2026-03-29_HNet_ByteVsSubword",
        "2026-03-30_ByteJEPA",
        "2026-04-15_Mamba3Hybrid",
        "2026-04-30_Random_Linear_Adapter",  # the seed-1337 roundtrip line; sliding_val_bpb its sliding line
    ]
    for prefix in expected:
        folder = _folder(prefix, NON_RECORD)
        claim = _submission(folder).val_bpb
        lines = [f.val_bpb for log in _logs(folder) for f in log.candidates]
        assert any(abs(v - claim) <= _tolerance(claim) for v in lines), prefix
    gdn = _folder("2026-04-04_GDN_Hybrid", NON_RECORD)  # mean of the two seq32768 runs
    runs = [log.reported.val_bpb for log in _logs(gdn) if "hybrid_gdn_1xh100_600s_seq32768" in log.rel]
    assert len(runs) == 2 and abs(sum(runs) / 2 - _submission(gdn).val_bpb) <= 5e-5


def test_duplicate_train_logs_are_byte_identical_copies():
    for prefix, twin in [
        ("2026-03-20_11L_XSA4", "train_seed1337.log"),
        ("2026-03-21_11L_XSA4_EMA_PartialRoPE", "train_seed2025.log"),
        ("2026-03-22_11L_EMA_GPTQ-lite", "train_seed1337.log"),
        ("2026-04-06_SP8192_HessianSDClip", "train_seed1337.log"),
    ]:
        logs = {log.rel: log for log in _logs(_folder(prefix))}
        assert logs["train.log"].sha256 == logs[twin].sha256, prefix
        others = [log for rel, log in logs.items() if rel not in ("train.log", twin)]
        assert all(log.sha256 != logs["train.log"].sha256 for log in others)


# -- §8 red flags as parsed facts ----------------------------------------------------------------------


def test_red_flag_int6_ste_total_over_cap_and_no_metadata():
    folder = _folder("2026-03-19_int6_STE")
    [log] = _logs(folder)
    assert log.artifact_bytes == 16_186_500 > ARTIFACT_CAP_BYTES
    assert _submission(folder) is None and not (folder / "README.md").exists()


def test_red_flag_hessian_totals_over_cap_while_json_omits_code():
    folder = _folder("2026-04-06_SP8192_HessianSDClip")
    sub = _submission(folder)
    runs = _scored_logs(folder)
    assert len(runs) == 3
    assert all(log.artifact_bytes > ARTIFACT_CAP_BYTES for log in runs)
    assert {log.code_bytes for log in _logs(folder)} == {78_688, 80_055}
    # JSON bytes_total is the mean model size: code left out; per seed, artifact_bytes = model bytes.
    assert sub.bytes_total == round(sum(log.model_bytes for log in runs) / 3) and sub.bytes_code is None
    assert all(sub.per_seed[log.seed].artifact_bytes == log.model_bytes for log in runs)


def test_red_flag_dgattention_claims_the_pre_quant_step_value():
    folder = _folder("2026-03-23_DGAttention", NON_RECORD)
    [log] = _logs(folder)
    sub = _submission(folder)
    assert log.reported is None and log.last_step_val.step == 2979
    assert log.last_step_val.val_bpb == sub.val_bpb == 1.1898
    assert log.artifact_bytes == sub.bytes_total == 16_638_468 > ARTIFACT_CAP_BYTES


def test_red_flag_legendre_claim_matches_no_log_line():
    folder = _folder("2026-03-31_LegendreGPT", NON_RECORD)
    [log] = _logs(folder)
    claim = _submission(folder).val_bpb
    assert claim == 1.2266 and log.reported.val_bpb == 1.2353 and log.seed is None
    assert all(abs(f.val_bpb - claim) > 5e-5 for f in log.finals)
    # The only equal number in the log is a mid-training pre-quantization value.
    assert [s.step for s in log.step_vals if abs(s.val_bpb - claim) <= 5e-5] == [34_000]


def test_red_flag_mlp3x_mean_claim_without_the_runs():
    folder = _folder("2026-03-19_MLP3x_QAT")
    [log] = _logs(folder)
    sub = _submission(folder)
    assert sub.val_bpb == 1.15015359 and sub.seeds == [1337, 42, 123]
    assert log.reported.val_bpb == pytest.approx(1.16660881) and log.seed == 1337
    assert sub.p_value.relation == "<" and sub.p_value.value == 0.001


def test_red_flag_mdlm_has_no_logs():
    folder = _folder("2026-03-29_LLaDA_MDLM", NON_RECORD)
    sub = _submission(folder)
    assert _logs(folder) == ()
    assert sub.per_seed[42].val_bpb == 1.1465 and "val_var_bpb" in sub.provenance["per_seed.42.val_bpb"].note


def test_seed_mismatches_between_file_name_and_log_are_visible():
    log = next(log for log in _logs(_folder("2026-04-18_PR1626")) if log.rel == "train_seed0.log")
    assert (log.seed, log.seed_in_filename) == (1337, 0)
    adapter = _logs(_folder("2026-04-30_Random_Linear", NON_RECORD))
    assert {(log.seed, log.seed_in_filename) for log in adapter} == {(1337, 1337), (1337, 2026), (1337, 42)}
