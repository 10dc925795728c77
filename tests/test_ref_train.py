"""The training loop: wallclock cap with the GPTQ reserve, recurrence switch, schedule, EMA."""

import re

import numpy as np
import pytest
import torch

from reference_impl.data import write_data_shard
from reference_impl.logging_fmt import configure_logging
from reference_impl.testing import random_validation_data, tiny_hparams, torch_threads
from reference_impl.train import lr_scale, train_model


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def train_dir(tmp_path):
    cycle = np.random.default_rng(0).permutation(62) + 2  # each token determines the next: learnable
    datasets = tmp_path / "datasets" / "fineweb10B_sp64"
    datasets.mkdir(parents=True)
    for i in range(2):
        write_data_shard(datasets / f"fineweb_train_{i:06d}.bin", np.tile(cycle, 80)[i:])
    configure_logging(None, True)
    return tmp_path


def test_wallclock_cap_stops_early_inside_the_reserve(train_dir, capsys):
    h = tiny_hparams(data_dir=str(train_dir), iterations=100_000, max_wallclock_seconds=2.0,
                     gptq_reserve_seconds=1.0, warmup_steps=1, train_log_every=1000)
    val = random_validation_data(4 * h.eval_seq_len + 1, h.vocab_size)
    model, info = train_model(h, torch.device("cpu"), val)
    out = capsys.readouterr().out
    assert "gptq:reserving 1s, effective=1000ms" in out
    stop = re.search(r"^stopping_early: wallclock_cap train_time: (\d+)ms step: (\d+)/100000$", out, re.MULTILINE)
    assert stop and 1000 <= int(stop.group(1)) < 60_000 and int(stop.group(2)) == info["steps"] < 100_000
    assert re.search(rf"^{info['steps']}/100000 train_loss: [\d.]+ train_time: [\d.]+m tok/s: \d+$", out, re.MULTILINE)
    assert re.search(rf"^{info['steps']}/100000 val_loss: [\d.]+ val_bpb: [\d.]+$", out, re.MULTILINE)
    switch = re.search(r"^layer_loop:enabled step:(\d+) frac:([\d.]+) encoder:\[0, 1, 2\] decoder:\[1, 2, 3\]$",
                       out, re.MULTILINE)
    assert switch and float(switch.group(2)) >= h.enable_looping_at and model.looping_active
    assert out.index("warmup_step: 1/1") < out.index("loop_warmup_step: 1/1") < out.index("1/100000 train_loss")
    assert out.rstrip().endswith("ema:applying EMA weights")


def test_step_capped_run_trains_and_loads_ema_weights(train_dir, capsys):
    h = tiny_hparams(data_dir=str(train_dir), iterations=30, max_wallclock_seconds=0, warmup_steps=0,
                     train_log_every=5, ema_decay=0.5, matrix_lr=0.05, tied_embed_lr=0.05)
    val = random_validation_data(4 * h.eval_seq_len + 1, h.vocab_size)
    model, info = train_model(h, torch.device("cpu"), val)
    out = capsys.readouterr().out
    assert "stopping_early" not in out and "gptq:reserving" not in out and info["steps"] == 30
    losses = [loss for _, loss in info["train_losses"]]
    assert losses[-1] < losses[0] - 1.0
    assert all(t.dtype == torch.float32 for t in model.state_dict().values())


def test_learning_rate_schedule():
    h = tiny_hparams(warmdown_frac=0.5, min_lr=0.1, lr_warmup_steps=4)
    assert lr_scale(h, 0.0, 0) == pytest.approx(0.25)
    assert lr_scale(h, 0.3, 10) == 1.0
    assert lr_scale(h, 0.75, 10) == pytest.approx(0.5)
    assert lr_scale(h, 0.99, 10) == pytest.approx(0.1)  # floor


def test_invalid_configurations_are_explained():
    with pytest.raises(ValueError, match="NUM_HEADS must be divisible by NUM_KV_HEADS"):
        tiny_hparams(num_kv_heads=3).validate()
    with pytest.raises(ValueError, match="LOOP_START"):
        tiny_hparams(loop_end=9).validate()
    with pytest.raises(ValueError, match="COMPRESSOR"):
        tiny_hparams(compressor="zstd").validate()
    with pytest.raises(AttributeError, match="unknown hyperparameter"):
        tiny_hparams(not_a_field=1)


def test_returned_weights_are_the_ema(train_dir):
    """With EMA_DECAY=1 the average never moves, so training must hand back the initial weights."""
    from reference_impl.model import GPT

    h = tiny_hparams(data_dir=str(train_dir), iterations=3, max_wallclock_seconds=0, warmup_steps=0, ema_decay=1.0)
    torch.manual_seed(11)
    initial = GPT(h).state_dict()
    torch.manual_seed(11)
    model, _ = train_model(h, torch.device("cpu"), random_validation_data(2 * h.eval_seq_len + 1, h.vocab_size))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in initial.items())
