"""Training-log parsing (auditor.parse.logs) on hand-written logs of every family.

The fixture logs in tests/fixtures/logs/ were written for these tests; they mimic the shapes
described in records-format.md §3 (launcher noise, embedded source, dumps, size lines, labels).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from auditor.models import Severity
from auditor.parse.logs import (
    LOG_MAX_BYTES,
    parse_log,
    unreadable_log_findings,
)

FIX = Path(__file__).parent / "fixtures" / "logs"


def _parse(name: str):
    return parse_log(FIX / name, name)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    p.write_bytes(text)
    return p


# -- Family A ------------------------------------------------------------------------------------


def test_family_a_reported_score_sizes_and_setup():
    log = _parse("family_a.log")
    rep = log.reported
    assert rep.label == "final_int8_zlib_roundtrip_exact" and rep.exact
    assert rep.val_bpb == pytest.approx(1.22436570) and rep.val_loss == pytest.approx(2.07269931)
    assert rep.bpb_decimals == 8 and rep.line == 69
    assert log.reported_eval_time_ms == 1401.0  # borrowed from the non-exact twin
    # The raw 67 MB total is ignored; the int8+zlib one is the artifact.
    assert log.artifact_bytes == 15_863_489 and log.artifact_fmt == "int8+zlib"
    assert log.code_bytes == 47_642 and log.model_bytes == 15_815_847
    assert [t.fmt for t in log.totals] == [None, "int8+zlib"]
    assert log.serialized[-1].payload == 17_178_912 and log.serialized[-1].raw_torch == 17_224_025
    assert (log.seed, log.seed_source) == (1337, "log")
    assert log.stopping_early.train_time_ms == 600_038 and log.stopping_early.step == 13_780
    assert log.train_time_ms == 600_038
    assert log.last_step_val.val_bpb == pytest.approx(1.2172)  # the pre-quantization score
    assert [t.step for t in log.train_losses] == [1, 200]
    assert log.val_tokens == 62_021_632 and log.val_glob.endswith("fineweb_val_*.bin")
    assert log.train_shards == 80 and log.train_dataset == "fineweb10B_sp1024"
    assert log.model_params == 17_059_912 and log.world_size == 8 and log.grad_accum_steps == 1
    assert log.tokenizer_path == "./data/tokenizers/fineweb_1024_bpe.model"
    assert log.tokenizer_kind == "sentencepiece"
    assert log.summary["train_seq_len"] == "1024" and log.summary["max_wallclock_seconds"] == "600.000"
    assert log.summary["flash"] == "True"
    assert (log.python_version, log.pytorch_version) == ("3.12.3", "2.9.1+cu128")
    assert {"swa", "late_qat", "ema", "warmup"} <= set(log.markers)
    assert not {"temperature", "slot", "ttt_progress"} & set(log.markers)  # code lines are not markers
    assert log.markers["late_qat"].line == 58
    assert log.problems == [] and log.has_training


def test_family_a_embedded_source_is_fingerprinted_not_parsed():
    log = _parse("family_a.log")
    # The code block holds f-string look-alikes of every metric line; none was parsed.
    assert [f.label for f in log.finals] == ["final_int8_zlib_roundtrip", "final_int8_zlib_roundtrip_exact"]
    assert len(log.totals) == 2 and log.seeds_seen == [1337]
    [src] = log.embedded_sources
    script = (FIX / "family_a_script.py.txt").read_bytes()
    assert src.kind == "before_separator" and not src.placeholder
    assert (src.start_line, src.end_line) == (1, 32)
    assert src.n_bytes == len(script)
    assert src.sha256 == hashlib.sha256(script).hexdigest()  # trailing spaces kept
    assert src.text.encode() == script
    assert src.matches(script) and src.matches(script + b"\n")
    assert not src.matches(script.replace(b"1337", b"1338"))


def test_stdout_capture_with_launcher_noise_has_the_same_facts():
    noisy, internal = _parse("stdout_noise.log"), _parse("family_a.log")
    assert noisy.embedded_sources == []
    assert noisy.logfile == "logs/3f1c.txt"
    assert noisy.reported.val_bpb == internal.reported.val_bpb
    assert noisy.artifact_bytes == internal.artifact_bytes
    assert noisy.seed == internal.seed and noisy.val_tokens == internal.val_tokens


# -- Family B/C ----------------------------------------------------------------------------------


def test_family_bc_dump_sizes_times_and_ttt():
    log = _parse("family_bc.log")
    assert log.reported.label == "quantized_ttt_phased"
    assert log.reported.val_bpb == pytest.approx(1.07216564) and log.reported.eval_time_ms == 500_104
    assert [f.label for f in log.finals if f.diagnostic] == [
        "diagnostic pre-quantization post-ema",
        "diagnostic quantized",
    ]
    hp = log.hyperparameters
    assert hp["seed"] == "42" and hp["eval_only_path"] == "" and hp["ttt_enabled"] == "True"
    assert log.hyperparameters_line == 2
    assert (log.seed, log.seed_source) == (42, "hyperparameters")
    assert log.code_bytes == 27_310 and log.code_bytes_uncompressed == 120_786
    assert log.artifact_bytes == 15_996_664 and log.model_bytes == 15_969_354
    assert (log.gptq_reserve_s, log.gptq_effective_ms) == (12.0, 588_000.0)
    assert log.total_eval_time_s == 500.1
    assert log.val_tokens == 40_540_160 and log.train_shards == 128
    # Family B/C log train_time in minutes.
    assert [t.train_time_ms for t in log.train_losses] == [0.0, pytest.approx(48_000.0)]
    assert [(s.step, s.val_bpb) for s in log.step_vals][-1] == (4986, pytest.approx(1.0723))
    assert log.stopping_early.train_time_ms == 588_046 and log.stopping_early.iters == 20_000
    assert {"ttt_start", "ttt_progress", "ttt_lora", "layer_loop", "gptq"} <= set(log.markers)


def test_family_bc_source_block_is_never_parsed():
    log = _parse("family_bc.log")
    # The embedded module quotes "final_int8_zlib_roundtrip_exact val_loss:9.99999999 ..." verbatim.
    assert all(f.val_bpb < 9 for f in log.finals)
    assert all(t.n != 1 for t in log.totals)
    [src] = log.embedded_sources
    assert src.kind == "source_block" and src.start_line == 17
    assert src.matches((FIX / "family_bc_script.py.txt").read_bytes())


def test_caseops_log_with_epoch_timestamps():
    log = _parse("caseops_timestamped.log")
    assert log.has_timestamps
    assert log.hyperparameters["caseops_enabled"] == "True"
    assert (log.seed, log.seed_source) == (1234, "hyperparameters")
    assert log.val_tokens == 47_851_520 and log.train_shards == 80
    assert log.reported.val_bpb == pytest.approx(1.06610085)
    assert log.artifact_bytes == 15_978_834 and log.code_bytes == 28_025
    assert log.train_time_ms == 596_140


# -- exotic formats ------------------------------------------------------------------------------


def test_ternary_key_value_dump_budget_line_and_placeholder():
    log = _parse("ternary_seed42.txt")
    assert (log.seed, log.seed_source, log.seed_in_filename) == (42, "hyperparameters", 42)
    assert log.hyperparameters["vocab_size"] == "8192" and log.hyperparameters_line == 8
    assert log.reported.label == "final_sliding" and log.reported.val_bpb == pytest.approx(1.1565)
    assert log.reported.stride == 16 and log.reported.eval_time_ms == 429_311
    assert log.artifact_bytes == 15_993_853 and log.artifact_source.endswith("budget")
    assert log.code_bytes == 70_853 and log.model_bytes == 15_993_853 - 70_853
    assert log.artifact_line.mb == pytest.approx(15.92)
    assert [t.loss for t in log.train_losses] == [pytest.approx(3.3120), pytest.approx(3.0211)]
    assert log.train_time_ms == 599_652 and log.world_size == 8
    assert (log.python_version, log.pytorch_version) == ("3.13.12", "2.10.0+cu128")
    [src] = log.embedded_sources
    assert src.placeholder and src.removed_bytes == 70_750 and src.removed_sha256 == "ab" * 32
    prefix = '"Ternary training script written for the pgolf tests."\n\n'
    assert src.prefix == prefix and src.n_bytes == len(prefix) + 70_750
    assert src.sha256 is None  # part of the code was kept, so the whole hash is unknown


def test_corpus_placeholder_matches_the_shipped_script(tmp_path):
    script = b'"""doc"""\nimport os\n\n\ndef main():\n    return 1\n'
    rest = script[len(b'"""doc"""\n') :]
    log_text = (
        '"""doc"""\n'
        f"[embedded source removed from this corpus copy: {len(rest)} bytes, sha256 "
        f"{hashlib.sha256(rest).hexdigest()}]\n" + "=" * 100 + "\nRunning Python 3.12.3\nseed:1\n"
    )
    log = parse_log(_write(tmp_path, "train.log", log_text), "train.log")
    [src] = log.embedded_sources
    assert src.n_bytes == len(script) and src.prefix == '"""doc"""\n'
    assert src.matches(script) and not src.matches(script + b"# changed\n")


def test_summary_block_and_compatibility_duplicate():
    log = _parse("summary_block_seed2024.log")
    assert log.reported.label == "final_int6_sliding_window_exact"
    assert log.reported.val_bpb == pytest.approx(1.12278022)
    assert "repeats" in log.reported_note
    assert log.reported_eval_time_ms == 73_133
    assert log.summary_block == {
        "val_bpb": "1.12278022",
        "artifact_bytes": "15555017",
        "line_count": "1402",
        "valid": "true",
    }
    assert [f.label for f in log.finals if f.diagnostic] == ["DIAGNOSTIC post_ema"]
    # The compatibility int8+zlib total repeats the int6+zstd one: same number either way.
    assert log.artifact_bytes == 15_555_017 and log.model_bytes == 15_487_414


def test_no_final_line_two_unqualified_totals_and_rank_traceback():
    log = _parse("no_final.log")
    assert log.reported is None and log.finals == []
    assert "no final metric line" in log.problems
    assert log.last_step_val.val_bpb == pytest.approx(1.1898)  # DGAttention's JSON used this
    # First unqualified total = raw state dict + code; second = compressed model + code.
    assert log.artifact_bytes == 16_638_468 and log.artifact_fmt == "rdquant+zstd"
    assert log.model_bytes == 16_558_180
    run = log.to_seed_run()
    assert run.val_bpb is None and run.artifact_bytes == 16_638_468 and run.seed == 1337


def test_tee_prefixes_and_failed_ttt_try():
    log = _parse("tee_failed_ttt.log")
    assert log.seed == 314
    assert log.reported.label == "final_int6_sliding_window"
    assert log.reported.val_bpb == pytest.approx(1.08938974)
    assert "failed TTT try" in log.reported_note
    assert log.finals[-1].label == "final_int6_ttt"
    done = next(f for f in log.finals if f.label == "ttt_sliding:done")
    assert done.diagnostic and done.eval_time_ms == 405_000.0
    assert log.artifact_bytes == 15_999_533


def test_suspicious_labels():
    log = _parse("suspicious_seed7.log")
    reasons = {(s.label, s.reason) for s in log.suspicious}
    assert ("post-prequant-ttt", "pre-quant TTT label") in reasons
    assert ("final_ngram_exact", "label mentions 'ngram'") in reasons
    assert ("final_slot_exact", "label mentions 'slot'") in reasons
    assert any("Final BPB" in r for _, r in reasons)
    assert log.reported.label == "final_slot_exact" and log.reported.prefixed


# -- selection rules on small synthetic logs -----------------------------------------------------


def test_roundtrip_followed_by_sliding_is_not_reported(tmp_path):
    text = (
        "final_int6_roundtrip val_loss:1.9359 val_bpb:1.1466 eval_time:5788ms\n"
        "final_int6_roundtrip_exact val_loss:1.93592275 val_bpb:1.14656250\n"
        "final_int6_sliding_window val_loss:1.8958 val_bpb:1.1228 stride:64 eval_time:73133ms\n"
        "final_int6_sliding_window_exact val_loss:1.89576235 val_bpb:1.12278022\n"
    )
    log = parse_log(_write(tmp_path, "a.log", text), "a.log")
    assert log.reported.label == "final_int6_sliding_window_exact" and log.reported_note is None
    assert log.finals[2].stride == 64


def test_exact_twin_preferred_when_printed_first(tmp_path):
    text = (
        "final_sliding_window_eval_exact stride:64 val_loss:1.96369923 val_bpb:1.16301431\n"
        "final_sliding_window_eval stride:64 val_loss:1.9637 val_bpb:1.1630 eval_time:72000ms\n"
    )
    log = parse_log(_write(tmp_path, "a.log", text), "a.log")
    assert log.reported.label == "final_sliding_window_eval_exact" and log.reported.stride == 64
    assert log.reported_eval_time_ms == 72_000


def test_sliding_word_variant_and_equals_separator(tmp_path):
    text = (
        "final_int8_zlib_roundtrip_exact val_loss:2.05 val_bpb:1.2184\n"
        "final_int8_zlib_roundtrip_exact sliding val_loss:2.02 sliding val_bpb:1.19709881\n"
    )
    log = parse_log(_write(tmp_path, "a.log", text), "a.log")
    assert log.reported.label == "final_int8_zlib_roundtrip_exact sliding"
    assert log.reported.val_bpb == pytest.approx(1.19709881)


def test_metrics_require_numbers(tmp_path):
    text = (
        'log0(f"final_int8_zlib_roundtrip val_loss:{q_val_loss:.4f} val_bpb:{q_val_bpb:.4f}")\n'
        "final_int8_zlib_roundtrip val_loss:{q:.4f} val_bpb:{b:.4f}\n"
        "step:{step}/{iters} val_loss:{v:.4f} val_bpb:{b:.4f}\n"
        "Total submission size int8+zlib: {n} bytes\n"
        "seed:{seed}\n"
    )
    log = parse_log(_write(tmp_path, "a.log", text), "a.log")
    assert log.finals == [] and log.step_vals == [] and log.totals == [] and log.seed is None


def test_seed_from_filename_as_last_resort_and_mismatch_is_visible(tmp_path):
    log = parse_log(
        _write(tmp_path, "train_seed_2026.txt", "final_x val_loss:2.0 val_bpb:1.2\n"), "train_seed_2026.txt"
    )
    assert (log.seed, log.seed_source) == (2026, "filename")
    log = parse_log(
        _write(tmp_path, "train_seed42.log", "seed:1337\nfinal_x val_loss:2.0 val_bpb:1.2\n"),
        "train_seed42.log",
    )
    assert (log.seed, log.seed_in_filename) == (1337, 42)
    log = parse_log(
        _write(tmp_path, "summary.log", "[19:23:20] RUN seed=42\n[19:35:17] RUN seed=0\n"), "summary.log"
    )
    assert log.seeds_seen == [42, 0] and log.seed == 0


def test_to_seed_run():
    run = _parse("family_bc.log").to_seed_run()
    assert run.log_file == "family_bc.log" and run.seed == 42 and run.seed_source == "hyperparameters"
    assert run.label == "quantized_ttt_phased" and run.val_bpb == pytest.approx(1.07216564)
    assert run.line == 63 and run.artifact_bytes == 15_996_664 and run.code_bytes == 27_310
    assert run.model_bytes == 15_969_354 and run.train_time_ms == 588_046 and run.eval_time_ms == 500_104


def test_byte_identical_logs_share_a_hash(tmp_path):
    a = tmp_path / "train.log"
    b = tmp_path / "train_seed1337.log"
    shutil.copy(FIX / "family_a.log", a)
    shutil.copy(FIX / "family_a.log", b)
    la, lb = parse_log(a, a.name), parse_log(b, b.name)
    assert la.sha256 == lb.sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert la.sha256 != _parse("stdout_noise.log").sha256


# -- unreadable logs (HYG004) ------------------------------------------------------------------


def test_binary_log_only_log_is_an_error(tmp_path):
    log = parse_log(_write(tmp_path, "train.log", b"\x1f\x8b\x08\x00" + bytes(300)), "train.log")
    assert log.problems == ["binary file"] and not log.readable and log.reported is None
    [f] = unreadable_log_findings([log])
    assert f.rule_id == "HYG004" and f.severity == Severity.ERROR and f.location.file == "train.log"
    good = _parse("family_a.log")
    [f] = unreadable_log_findings([good, log])
    assert f.severity == Severity.WARNING
    assert unreadable_log_findings([good]) == []


def test_empty_and_non_utf8_logs(tmp_path):
    empty = parse_log(_write(tmp_path, "train_seed1.log", b""), "train_seed1.log")
    assert empty.problems == ["empty"] and empty.lines == 0
    latin = parse_log(
        _write(
            tmp_path,
            "train_seed2.log",
            "seed:2 caf\u00e9\nfinal_x val_loss:2.0 val_bpb:1.2\n".encode("latin-1"),
        ),
        "train_seed2.log",
    )
    assert latin.reported.val_bpb == 1.2 and latin.problems == ["not UTF-8 (decoded with replacement)"]
    findings = unreadable_log_findings([empty, latin])
    assert [(f.severity, f.message.split(":")[0]) for f in findings] == [
        (Severity.WARNING, "train_seed1.log is unreadable"),
        (Severity.WARNING, "train_seed2.log was read with problems"),
    ]


def test_utf16_log_is_parsed_and_flagged(tmp_path):
    text = (FIX / "family_a.log").read_text()
    log = parse_log(_write(tmp_path, "train.log", text.encode("utf-16")), "train.log")
    assert log.reported.val_bpb == pytest.approx(1.2243657)
    assert log.problems == ["not UTF-8: UTF-16 text (decoded)"]
    assert unreadable_log_findings([log])[0].severity == Severity.WARNING


def test_symlink_leaving_the_folder_is_not_read(tmp_path):
    outside = _write(tmp_path, "elsewhere/secret.log", "final_x val_loss:2.0 val_bpb:1.2\n")
    folder = tmp_path / "records" / "track_10min_16mb" / "rec"
    (folder / "logs").mkdir(parents=True)
    os.symlink(outside, folder / "logs" / "train.log")
    log = parse_log(folder / "logs" / "train.log", "logs/train.log")
    assert log.problems == ["symlink leaving the folder"] and log.finals == []
    assert unreadable_log_findings([log])[0].severity == Severity.ERROR


def test_truncated_log_reports_the_limit(tmp_path):
    lines = [f"step:{i}/20000 train_loss:2.5000 train_time:{i}ms step_avg:1.00ms" for i in range(40_000)]
    lines.append("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000")
    p = _write(tmp_path, "train.log", "\n".join(lines) + "\n")
    log = parse_log(p, "train.log", max_bytes=1 << 20)
    assert log.truncated and log.reported is None
    assert f"larger than limit: read first {1 << 20} bytes" in log.problems
    assert "was read with problems" in unreadable_log_findings([log])[0].message
    assert parse_log(p, "train.log").reported.val_bpb == 1.2  # the default limit reads it all


def test_gigabyte_log_default_limit(tmp_path):
    p = tmp_path / "train.log"
    with p.open("wb") as fh:
        fh.write((FIX / "family_bc.log").read_bytes() * 20)
        fh.truncate(1 << 30)
    log = parse_log(p, "train.log")
    assert log.size == 1 << 30 and log.truncated
    assert f"larger than limit: read first {LOG_MAX_BYTES} bytes" in log.problems
    assert log.reported.label == "quantized_ttt_phased"  # what was read is still parsed


def test_code_that_looks_like_log_lines_stays_in_the_embedded_source(tmp_path):
    script = (
        '"""\n'
        "Competition entry.\n"
        "https://github.com/openai/parameter-golf\n"
        "Note:see the README\n"
        '"""\n'
        "import os\n"
        "ema: float = 0.997\n"
        "ttt_chunk_size = 32\n"
        "\n"
        "def generate_calib(model, num_seqs=64,\n"
        "                   vocab_size=1024, temperature=0.8, seed=42):\n"
        "    return model\n"
    )
    text = script + "\n" + "=" * 100 + "\nRunning Python 3.11.7\nseed:7\n"
    log = parse_log(_write(tmp_path, "train.log", text), "train.log")
    [src] = log.embedded_sources
    assert (src.start_line, src.sha256) == (1, hashlib.sha256(script.encode()).hexdigest())
    assert log.seeds_seen == [7] and log.summary == {"seed": "7"} and log.markers == {}
