"""The GPT: record-config size, layer schedule, causality, BOS masking, CPU forward."""

import math

import pytest
import torch

from reference_impl.hparams import Hyperparameters
from reference_impl.logging_fmt import hparams_dump_lines
from reference_impl.model import GPT, SmearGate, count_parameters, looped_layer_order
from reference_impl.presets import describe_preset, preset_hparams
from reference_impl.testing import tiny_hparams, tiny_model, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield

RECORD_SHAPE = {"vocab_size": 8192, "num_layers": 11, "model_dim": 512, "num_heads": 8, "num_kv_heads": 4,
                "mlp_mult": 4.0, "num_loops": 2, "loop_start": 3, "loop_end": 5, "skip_gates_enabled": True,
                "tie_embeddings": True, "bigram_hash_buckets": 0}


def test_record_config_parameter_count_matches_the_1493_logs():
    # The #1493 logs print model_params:35944536 (no SmearGate); the BOS-masked SmearGate adds 12 + 1.
    assert count_parameters(Hyperparameters(**RECORD_SHAPE, smear_gate_enabled=False)) == 35_944_536
    assert count_parameters(Hyperparameters(**RECORD_SHAPE, smear_gate_enabled=True)) == 35_944_549


def test_record_preset_is_constructible_and_printable():
    h = preset_hparams("record-8xh100")
    assert (h.num_layers, h.model_dim, h.vocab_size, h.num_heads, h.num_kv_heads) == (11, 512, 8192, 8, 4)
    assert h.ttt_enabled and h.max_wallclock_seconds == 600.0 and h.gptq_reserve_seconds == 12.0
    with torch.device("meta"):
        model = GPT(h)
    assert model.looped_schedule == ([0, 1, 2, 3, 4, 5, 3, 4], [5, 3, 4, 5, 6, 7, 8, 9, 10])  # as in the logs
    assert [b.parallel for b in model.blocks] == [False] * 7 + [True] * 4
    assert all(b.attn.use_xsa for b in model.blocks)
    text = describe_preset("record-8xh100")
    assert text.startswith("Hyperparameters:\n  adam_eps: 1e-08") and "  qk_gain_init: 5.25" in text
    assert text.endswith("model_params:35944549")
    assert describe_preset("1xh100").endswith("model_params:35944549")
    lines = hparams_dump_lines(h)
    assert lines[1:] == sorted(lines[1:]) and all(line.startswith("  ") for line in lines[1:])


def test_looped_layer_order():
    assert looped_layer_order(11, 3, 5, 2) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]
    assert looped_layer_order(6, 2, 3, 1) == [0, 1, 2, 3, 2, 3, 4, 5]


def test_forward_on_cpu_starts_near_uniform_loss():
    h = tiny_hparams()
    torch.manual_seed(0)
    model = GPT(h)
    x = torch.randint(0, h.vocab_size, (2, 32))
    loss = model(x, torch.roll(x, -1, 1))
    assert abs(loss.item() - math.log(h.vocab_size)) < 0.2
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_predictions_never_depend_on_later_tokens():
    for looping in (False, True):
        h = tiny_hparams(bigram_hash_buckets=32)
        model = tiny_model(h, noise=0.2)
        model.looping_active = looping
        torch.manual_seed(1)
        x = torch.randint(2, h.vocab_size, (1, 32))
        base = model.forward_logits(x)
        for t in (5, 17, 31):
            changed = x.clone()
            changed[0, t] = (changed[0, t] + 7) % h.vocab_size
            out = model.forward_logits(changed)
            assert torch.allclose(out[:, :t], base[:, :t], atol=1e-5)
            assert not torch.allclose(out[:, t], base[:, t])


def test_smear_gate_does_not_cross_a_bos():
    torch.manual_seed(2)
    gate = SmearGate(dim=16, window=4, bos_id=1)
    with torch.no_grad():
        gate.lam.fill_(1.0)
        gate.gate.weight.normal_()
    ids = torch.tensor([[5, 9, 1, 7, 1, 3]])
    x = torch.randn(1, 6, 16)
    y = gate(x, ids)
    bos = ids[0] == 1
    assert torch.equal(y[0, bos], x[0, bos])  # a document's BOS carries nothing from before it
    assert not torch.allclose(y[0, 1], x[0, 1]) and not torch.allclose(y[0, 3], x[0, 3])
    assert torch.equal(y[0, 0], x[0, 0])


def test_bigram_hash_features_are_zero_at_bos():
    h = tiny_hparams(bigram_hash_buckets=32)
    model = tiny_model(h, noise=0.2)
    ids = torch.tensor([[4, 1, 6, 1]])
    feats = model.bigram(ids)
    assert torch.equal(feats[0, 1], torch.zeros_like(feats[0, 1]))
    assert feats[0, 2].abs().sum() > 0
