"""Muon: Newton–Schulz orthogonalization and the optimizer step."""

import pytest
import torch

from reference_impl.muon import Muon, OptimizerSet, zeropower_via_newtonschulz5
from reference_impl.testing import tiny_hparams, tiny_model, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.mark.parametrize("shape", [(64, 128), (128, 64)])
def test_newton_schulz_pushes_singular_values_to_one(shape):
    torch.manual_seed(0)
    g = torch.randn(shape) * 7.0
    before = torch.linalg.svdvals(g)
    assert before.max() / before.min() > 4  # a Gaussian rectangle is far from orthogonal
    after = torch.linalg.svdvals(zeropower_via_newtonschulz5(g, steps=5))
    assert after.min() > 0.6 and after.max() < 1.25


def test_newton_schulz_tames_an_ill_conditioned_matrix_and_keeps_its_directions():
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(64, 64))
    v, _ = torch.linalg.qr(torch.randn(128, 128))
    g = u @ torch.diag(torch.logspace(-2, 1, 64)) @ v[:, :64].T  # condition number 1000
    x = zeropower_via_newtonschulz5(g, steps=5)
    sv = torch.linalg.svdvals(x)
    assert sv.max() / sv.min() < 6
    # Same singular vectors: U^T X V is (close to) diagonal with positive entries.
    core = u.T @ x @ v[:, :64]
    off_diag = core - torch.diag(torch.diagonal(core))
    assert off_diag.abs().max() < 1e-3 and torch.diagonal(core).min() > 0


def test_muon_step_applies_an_orthogonalized_update():
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.zeros(32, 96))
    grad = torch.randn(32, 96) * 3.0
    p.grad = grad.clone()
    opt = Muon([p], lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.0, row_normalize=True)
    opt.step()
    update = -p.detach()
    sv = torch.linalg.svdvals(update)
    assert sv.min() > 0.6 and sv.max() < 1.25  # wide matrix: no tall-matrix rescaling
    assert torch.sum(update * grad) > 0  # a descent direction


def test_muon_weight_decay_and_tall_scaling():
    torch.manual_seed(3)
    p = torch.nn.Parameter(torch.ones(96, 32))
    p.grad = torch.randn(96, 32)
    opt = Muon([p], lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.5, row_normalize=False)
    expected_decay = torch.ones(96, 32) * (1 - 0.1 * 0.5)
    direction = zeropower_via_newtonschulz5(p.grad, 5).float() * (96 / 32) ** 0.5
    opt.step()
    assert torch.allclose(p.detach(), expected_decay - 0.1 * direction, atol=1e-5)


def test_optimizer_set_covers_every_parameter_once():
    h = tiny_hparams(bigram_hash_buckets=64)
    model = tiny_model(h)
    opts = OptimizerSet(h, model)
    seen = [id(p) for opt in opts.optimizers for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    muon_ids = {id(p) for g in opts.muon.param_groups for p in g["params"]}
    assert id(model.blocks[0].attn.c_q.weight) in muon_ids
    assert id(model.tok_emb.weight) not in muon_ids and id(model.skip_weights) not in muon_ids
    opts.set_lr_scale(0.5)
    assert all(g["lr"] == 0.5 * g["base_lr"] for opt in opts.optimizers for g in opt.param_groups)
