"""submission.json normalization (auditor.parse.submission) across schema families A-F, and
HYG003 for broken files. Fixtures: tests/fixtures/submissions/ (written for these tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from auditor.models import Confidence, Severity
from auditor.parse.submission import (
    SUBMISSION_MAX_BYTES,
    normalize_track,
    parse_p_value,
    parse_submission,
    to_number,
)

FIX = Path(__file__).parent / "fixtures" / "submissions"


def _sub(name: str):
    parsed = parse_submission(FIX / name, name)
    assert parsed.findings == [], [f.message for f in parsed.findings]
    return parsed.submission


def test_family_a_launch_keys():
    s = _sub("family_a.json")
    assert s.schema_family == "A"
    assert (s.val_bpb, s.val_loss, s.bytes_total, s.bytes_code) == (1.2243657, 2.07269931, 15_863_489, 47_642)
    assert (s.author, s.github_id, s.date, s.date_iso) == (
        "Ada Example",
        "ada-example",
        "2026-03-18T14:56:29Z",
        "2026-03-18",
    )
    assert s.provenance["val_bpb"].key == "val_bpb" and s.provenance["val_bpb"].note is None
    assert s.seeds == [] and s.per_seed == {} and s.track is None


def test_family_b_strings_aliases_and_units():
    s = _sub("family_b.json")
    assert s.schema_family == "B"
    assert s.val_loss == pytest.approx(2.01348383)
    assert "string" in s.provenance["val_loss"].note  # "2.01348383" was a string
    assert s.bytes_code == 65_000 and s.provenance["bytes_code"].key == "code_bytes"
    assert "round number" in s.provenance["bytes_code"].note
    assert s.bytes_model == 15_816_489 and s.provenance["bytes_model"].key == "bytes_model_int8_zlib"
    assert (s.train_time_s, s.eval_time_s, s.step_stop) == (600.028, 69.881, 13_450)
    assert (s.pre_quant_val_bpb, s.pre_quant_val_loss) == (1.2196, 2.0592)
    assert s.track_raw == "non-record-unlimited-compute-16mb" and s.track == "non_record_unlimited_16mb"
    assert s.seeds == [1337] and s.provenance["seeds"].key == "seed"


def test_family_c_parallel_lists():
    s = _sub("family_c.json")
    assert s.schema_family == "C" and s.val_loss is None and s.base_pr == 1218
    assert s.seeds == [42, 0, 1337]
    assert {k: c.val_bpb for k, c in s.per_seed.items()} == {42: 1.09057, 0: 1.09084, 1337: 1.09230}
    assert s.provenance["per_seed.1337.val_bpb"].key == "seed_scores.2"
    assert s.eval_time_s_list == [83.0, 83.0, 84.5] and s.eval_time_s == 84.5


def test_family_d_seed_results_compliance_and_p_value():
    s = _sub("family_d.json")
    assert s.schema_family == "D" and s.track == "10min_16mb"
    assert s.seeds == [0, 42, 1234] and set(s.per_seed) == {0, 42, 1234}
    zero, forty_two, other = s.per_seed[0], s.per_seed[42], s.per_seed[1234]
    assert (zero.val_bpb, zero.artifact_bytes, zero.steps, zero.train_time_s, zero.eval_time_s) == (
        1.0680582,
        15_932_307,
        4843,
        596.1,
        397.2,
    )
    assert forty_two.eval_time_s == 412.0 and "ms to s" in s.provenance["per_seed.42.eval_time_s"].note
    assert forty_two.val_loss == 2.337
    assert other.val_bpb == pytest.approx(1.06727867) and other.eval_time_s == 380.5
    assert other.extra == {"gptq_reserve_seconds": 0.5}
    assert s.provenance["per_seed.1234.val_bpb"].key == "seed_results.1234.val_bpb"
    assert s.p_value.relation == "<" and s.p_value.value == 0.001 and s.p_value.raw == "<0.001"
    assert s.compliance_flags == {
        "train_under_600s": True,
        "artifact_under_16mb": True,
        "eval_under_600s": True,
        "no_ngram_cache": True,
        "score_first_ttt": True,
    }
    assert s.compliance["note"] == "self-declared"  # kept raw
    assert (s.val_bpb_std, s.hardware, s.pytorch_version) == (0.00036931, "8xH100 80GB SXM", "2.9.1+cu128")


def test_family_e_seeds_dict_in_milliseconds():
    s = _sub("family_e.json")
    assert s.schema_family == "E" and s.seeds == [0, 42]
    assert s.per_seed[0].train_time_s == pytest.approx(588.004)
    assert s.per_seed[0].eval_time_s == pytest.approx(293.43)
    assert "TTT eval time only" in s.provenance["per_seed.0.eval_time_s"].note
    assert s.per_seed[42].artifact_bytes == 15_992_546 and s.per_seed[42].pre_ttt_val_bpb == 1.08485
    assert s.val_bpb == 1.08279384 and s.provenance["val_bpb"].key == "val_bpb"
    assert s.val_bpb_method == "legal_ttt_exact_sliding_window_stride64"
    assert s.compliance_flags == {"no_slot": True, "three_seeds": False}


def test_family_f_bpb_written_into_val_loss():
    s = _sub("family_f_val_loss_holds_bpb.json")
    assert s.schema_family == "F"
    assert s.val_bpb == 1.14276 and s.val_loss is None and s.val_loss_holds_bpb
    prov = s.provenance["val_bpb"]
    assert prov.key == "val_loss" and "val_loss holds BPB?" in prov.note
    assert any("read as the BPB score" in n for n in s.notes)
    assert s.bytes_total == 15_900_000 and "round number" in s.provenance["bytes_total"].note


def test_family_f_run_name_flat_hyperparameters():
    s = _sub("family_f_run_name.json")
    assert s.schema_family == "F" and s.name == "11L_flat_hyperparameters"
    assert s.provenance["name"].key == "run_name"
    assert s.seeds == [1337, 42, 123] and s.per_seed == {}
    assert s.t_statistic == 313.2 and s.p_value.relation == "<"
    assert (s.artifact_bytes_mean, s.train_time_s, s.eval_time_s) == (15_427_455, 600, 88)
    assert s.bytes_total is None


def test_mean_val_bpb_fallback_and_top_level_artifact_bytes():
    s = _sub("mean_val_bpb_fallback.json")
    assert s.val_bpb == 1.17491245 and s.provenance["val_bpb"].key == "mean_val_bpb"
    assert "mean_val_bpb" in s.provenance["val_bpb"].note
    assert s.val_loss == 1.98379046 and s.provenance["val_loss"].key == "mean_val_loss"
    assert s.bytes_total == 15_374_243 and s.provenance["bytes_total"].key == "artifact_bytes"
    assert s.bytes_code == 50_651
    assert s.per_seed[1337].step_avg_ms == 57.55 and s.per_seed[42].steps == 10_710
    assert s.seeds == [1337, 42] and s.provenance["seeds"].note == "keys of seed_results"
    assert s.p_value.value == 0.0001 and s.p_value.relation == "="
    assert s.author == "Mo Example" and s.github_id is None


def test_compliance_rerun_and_record_support():
    s = _sub("compliance_rerun.json")
    assert s.submission_type == "record_support" and s.supports_pr == 1851
    assert s.per_seed[42].source == "PR #1851" and s.per_seed[314].eval_time_s == 525.6
    assert set(s.rerun_per_seed) == {42, 314}
    assert s.rerun_per_seed[42].val_bpb == 1.06083288 and s.rerun_per_seed[314].train_time_s == 592.045
    assert s.provenance["rerun_per_seed.42.val_bpb"].key == "compliance_rerun.seed_results.42.val_bpb"
    assert s.compliance_flags == {"gptq_within_budget_confirmed": True}
    assert s.compliance["artifact_bytes_max"] == 15_952_690


def test_nulls_placeholders_and_odd_per_seed_entries():
    s = _sub("odd_values.json")
    assert s.author is None and s.github_id is None
    assert {"author is an empty string", "github_id is an empty string"} <= set(s.notes)
    assert any("fill after runs" in n for n in s.notes)  # the placeholder string is not a score
    assert s.val_loss is None and s.bytes_code is None and s.val_bpb_std is None
    assert s.bytes_total == 15_327_112 and "string" in s.provenance["bytes_total"].note
    assert s.track == "10min_16mb"
    assert s.seeds == [7] and any("seeds[1]" in n for n in s.notes)
    assert s.per_seed[7].val_bpb == 1.1465 and "val_var_bpb" in s.provenance["per_seed.7.val_bpb"].note
    assert s.per_seed[8].val_bpb == 1.25  # a bare number per seed
    assert 9 not in s.per_seed and "seven" not in str(list(s.per_seed))
    # No usable top-level score: the mean of the per-seed values, marked as derived.
    assert s.val_bpb == pytest.approx((1.1465 + 1.25) / 2)
    assert "mean of 2 per-seed values" in s.provenance["val_bpb"].note
    assert s.eval_time_s == 1819


def test_summary_is_json_ready_and_keeps_provenance():
    s = _sub("family_d.json")
    summary = s.summary()
    json.dumps(summary)
    assert "raw" not in summary and summary["val_bpb"] == 1.06780094
    assert summary["per_seed"]["42"]["eval_time_s"] == 412.0
    assert summary["provenance"]["val_bpb"]["key"] == "val_bpb"


def test_bom_and_duplicate_keys_are_notes_not_errors():
    s = _sub("duplicate_key_bom.json")
    assert s.val_bpb == 1.0813  # last one wins, as in every JSON reader
    assert any("byte-order mark" in n for n in s.notes) and any("duplicate key" in n for n in s.notes)


# -- HYG003 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,expect,line,column",
    [
        ("missing_comma.json", "Expecting ',' delimiter", 4, 3),
        ("unterminated_string.json", "Invalid control character", 3, 24),
        ("trailing_data.json", "Extra data", 2, 1),
        ("top_level_array.json", "top-level value is an array", None, None),
        ("empty.json", "cannot be read as JSON text: empty", None, None),
        ("not_utf8.json", "not UTF-8", None, None),
        ("binary.json", "binary file", None, None),
    ],
)
def test_malformed_json_is_hyg003_without_traceback(name, expect, line, column):
    parsed = parse_submission(FIX / name, name)
    assert parsed.submission is None
    [f] = parsed.findings
    assert f.rule_id == "HYG003" and f.severity == Severity.ERROR and f.confidence == Confidence.PROOF
    assert expect in f.message and f.message.startswith(name)
    assert (f.location.file, f.location.line, f.location.column) == (name, line, column)
    if line:
        assert f.location.snippet == (FIX / name).read_text().splitlines()[line - 1][:200]


def test_unterminated_string_at_end_of_file(tmp_path):
    p = tmp_path / "submission.json"
    p.write_text('{"name": "x", "val_bpb": 1.08, "blurb": "cut here')
    [f] = parse_submission(p, "submission.json").findings
    assert "Unterminated string" in f.message and f.location.line == 1


def test_nan_constant_is_a_warning_and_the_file_is_still_read():
    parsed = parse_submission(FIX / "nan_constant.json", "nan_constant.json")
    [f] = parsed.findings
    assert f.rule_id == "HYG003" and f.severity == Severity.WARNING
    assert "Infinity" in f.message and "NaN" in f.message
    assert parsed.submission.val_bpb == 1.0812 and parsed.submission.val_loss is None
    assert parsed.submission.bytes_total is None


def test_huge_and_deep_and_unreadable_files(tmp_path):
    big = tmp_path / "submission.json"
    big.write_text('{"blurb": "' + "x" * SUBMISSION_MAX_BYTES + '"}')
    [f] = parse_submission(big, "submission.json").findings
    assert f"larger than {SUBMISSION_MAX_BYTES} bytes" in f.message
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    [f] = parse_submission(deep, "deep.json").findings
    assert f.rule_id == "HYG003"
    [f] = parse_submission(tmp_path / "missing.json", "missing.json").findings
    assert "unreadable" in f.message


def test_symlinked_submission_leaving_the_folder(tmp_path):
    (tmp_path / "outside.json").write_text('{"val_bpb": 1.0}')
    folder = tmp_path / "rec"
    folder.mkdir()
    os.symlink(tmp_path / "outside.json", folder / "submission.json")
    parsed = parse_submission(folder / "submission.json", "submission.json")
    assert parsed.submission is None and "symlink leaving the folder" in parsed.findings[0].message


def test_variant_file_name_is_parsed_the_same(tmp_path):
    p = tmp_path / "submission_ternary.json"
    p.write_bytes((FIX / "family_a.json").read_bytes())
    s = parse_submission(p, "submission_ternary.json").submission
    assert s.file == "submission_ternary.json" and s.val_bpb == 1.2243657


# -- small normalizers ---------------------------------------------------------------------------


def test_to_number_and_p_value_and_track():
    assert to_number("15,327,112", integer=True)[0] == 15_327_112
    assert to_number(" 1.1194 ")[0] == 1.1194
    assert to_number(True) == (None, None) and to_number("n/a") == (None, None)
    assert to_number(float("nan")) == (None, None)
    assert to_number(65000.7, integer=True)[0] == 65001
    assert parse_p_value("<0.001").relation == "<" and parse_p_value("p <= 0.01").relation == "<="
    assert parse_p_value("1e-4").value == 1e-4 and parse_p_value("significant") is None
    assert normalize_track("non-record-16mb") == "non_record_16mb"
    assert normalize_track("track_10min_16mb") == "10min_16mb" and normalize_track("phase3") is None
