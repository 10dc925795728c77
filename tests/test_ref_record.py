"""Record folder assembly: log parsing, submission.json aggregation, CLI errors (no training)."""

import json

import pytest

from auditor.errors import InputError
from reference_impl.cli import describe_command, train_command
from reference_impl.presets import PRESETS, get_preset
from reference_impl.record import RecordBuildError, make_submission, parse_run_log

LOG = """Hyperparameters:
  seed: {seed}
model_params:305189
1/80 train_loss: 6.2504 train_time: 0.1m tok/s: 1004
80/80 train_loss: 2.6993 train_time: 0.7m tok/s: 7777
stopping_early: wallclock_cap train_time: 41000ms step: 80/80
Serialized model: 1242940 bytes
Code size: 93662 bytes
Serialized model quantized+brotli: {model} bytes
Total submission size quantized+brotli: {total} bytes
diagnostic pre-quantization post-ema val_loss:2.73221590 val_bpb:1.13480804 eval_time:846ms
diagnostic quantized val_loss:2.74143663 val_bpb:1.13863781 eval_time:6519ms
quantized_sliding_window val_loss:2.74703985 val_bpb:1.14096507 eval_time:8524ms
ttt:start chunks=4 ttt_lr=0.002 ttt_epochs=2
quantized_ttt val_loss:{loss} val_bpb:{bpb} eval_time:15017ms
total_eval_time:32.2s
"""


def run(seed, bpb, loss, model):
    text = LOG.format(seed=seed, bpb=bpb, loss=loss, model=model, total=model + 93662)
    return parse_run_log(text, seed, f"train_seed{seed}.log")


def test_parse_run_log_reads_our_lines():
    r = run(1, "1.14068830", "2.74637348", 175340)
    assert r.reported == ("quantized_ttt", 2.74637348, 1.1406883)
    assert r.artifact_bytes == 175340 + 93662 and r.model_bytes == 175340  # not the raw torch.save size
    assert r.code_bytes == 93662 and r.stop_step == 80 and r.total_eval_time_s == 32.2
    assert r.train_losses == [(1, 6.2504), (80, 2.6993)]
    assert next(iter(r.evals)) == "diagnostic pre-quantization post-ema"
    r.check_complete()


def test_a_log_without_a_reported_metric_is_refused():
    r = parse_run_log("Code size: 5 bytes\nTotal submission size quantized+brotli: 9 bytes\n"
                      "diagnostic quantized val_loss:1.0 val_bpb:1.0 eval_time:1ms\n", 1, "x.log")
    with pytest.raises(RecordBuildError, match="no reported"):
        r.check_complete()


def test_submission_aggregates_seeds():
    runs = [run(42, "1.10000000", "2.80000000", 15_000_000), run(314, "1.12000000", "2.82000000", 15_100_000)]
    sub = make_submission(get_preset("record-8xh100"), "record", runs, "2.13.0")
    assert sub["val_bpb"] == pytest.approx(1.11) and sub["val_loss"] == pytest.approx(2.81)
    assert sub["val_bpb_std"] == pytest.approx(0.01414214, abs=1e-8)
    assert sub["seeds"] == [42, 314] and sub["track"] == "10min_16mb"
    assert sub["seed_results"]["314"] == {"val_bpb": 1.12, "val_loss": 2.82, "artifact_bytes": 15_193_662,
                                          "steps": 80}
    assert sub["bytes_total"] == 15_193_662 and sub["bytes_code"] == 93662
    json.dumps(sub)
    broken = make_submission(get_preset("tiny-cpu"), "slot", runs[:1], "2.13.0")
    assert "BROKEN VARIANT slot" in broken["name"] and broken["blurb"].startswith("DELIBERATELY NON-COMPLIANT")


def test_cli_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="unknown preset"):
        train_command("huge", tmp_path / "out")
    with pytest.raises(InputError, match="pass the DATA_DIR"):
        train_command("record-8xh100", tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        train_command("1xh100", tmp_path / "out", data_dir=tmp_path / "nope")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        train_command("tiny-cpu", busy)
    with pytest.raises(InputError, match="must divide 8"):
        train_command("tiny-cpu", tmp_path / "out3", nproc=3)
    assert not (tmp_path / "out").exists()


def test_every_preset_describes_itself():
    for name in PRESETS:
        text = describe_command(name)
        assert text.startswith("Hyperparameters:") and "\nmodel_params:" in text
    assert "  num_layers: 6" in describe_command("tiny-cpu")
