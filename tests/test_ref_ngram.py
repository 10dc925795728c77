"""The legal n-gram mixture: full normalized distributions, counts updated only after scoring."""

import pytest
import torch

from reference_impl import ngram_mix
from reference_impl.evaluate import ScoreAccumulator, eval_val_sliding
from reference_impl.ngram_mix import OnlineNgram, eval_val_ngram_mix, mixture_log_probs
from reference_impl.testing import random_validation_data, tiny_hparams, tiny_model, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


def test_every_position_gets_a_distribution_over_the_whole_vocabulary():
    torch.manual_seed(0)
    ngram = OnlineNgram(vocab_size=50, buckets=64, device="cpu")
    prev2, prev1, target = (torch.randint(0, 50, (400,)) for _ in range(3))
    ngram.update(prev2, prev1, target)
    p, counts = ngram.distribution(prev2[:40], prev1[:40])
    assert p.shape == (40, 50) and (p > 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(40), atol=1e-5)
    log_p = mixture_log_probs(torch.randn(40, 50) * 3, p, counts, max_weight=0.3, confidence=4.0)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(40), atol=1e-5)  # C2: sums to 1 over the vocab


def test_counts_only_ever_contain_already_scored_targets(monkeypatch):
    h = tiny_hparams()
    val_data = random_validation_data(8 * h.eval_seq_len + 1, h.vocab_size)
    scored: set[int] = set()
    violations = []
    original_add, original_update = ScoreAccumulator.add, OnlineNgram.update

    def add(self, nll, positions):
        scored.update(positions.tolist())
        return original_add(self, nll, positions)

    def update(self, prev2, prev1, target):
        # An update carries one batch of targets and may only follow that batch's scores, so the
        # number of targets learned can never exceed the number scored.
        learned = int(self.unigram.sum()) + target.numel()
        if learned > len(scored):
            violations.append(learned)
        return original_update(self, prev2, prev1, target)

    monkeypatch.setattr(ScoreAccumulator, "add", add)
    monkeypatch.setattr(OnlineNgram, "update", update)
    eval_val_ngram_mix(h, "cpu", val_data, tiny_model(h))
    assert violations == [] and len(scored) == val_data.num_targets


def test_first_batch_is_scored_from_empty_counts(monkeypatch):
    h = tiny_hparams()
    val_data = random_validation_data(4 * h.eval_seq_len + 1, h.vocab_size)
    totals = []
    original = OnlineNgram.distribution

    def distribution(self, prev2, prev1):
        totals.append(float(self.unigram.sum()))
        return original(self, prev2, prev1)

    monkeypatch.setattr(ngram_mix.OnlineNgram, "distribution", distribution)
    eval_val_ngram_mix(h, "cpu", val_data, tiny_model(h))
    assert totals[0] == 0.0 and totals == sorted(totals) and totals[-1] < val_data.num_targets


def test_zero_mixing_weight_reproduces_the_sliding_eval():
    h = tiny_hparams(ngram_mix_max_weight=0.0)
    val_data = random_validation_data(6 * h.eval_seq_len + 1, h.vocab_size)
    mixed = eval_val_ngram_mix(h, "cpu", val_data, tiny_model(h))
    sliding = eval_val_sliding(h, "cpu", val_data, tiny_model(h))
    assert mixed == pytest.approx(sliding, abs=1e-6)


def test_mixture_helps_on_a_repetitive_stream():
    h = tiny_hparams(ngram_mix_max_weight=0.5, ngram_mix_confidence=2.0)
    pattern = torch.tensor([1, 7, 9, 11, 13, 17, 19, 23])
    tokens = pattern.repeat(40)[: 8 * h.eval_seq_len + 1]
    val_data = random_validation_data(tokens.numel(), h.vocab_size)
    val_data.tokens = tokens
    mixed_loss, _ = eval_val_ngram_mix(h, "cpu", val_data, tiny_model(h))
    plain_loss, _ = eval_val_sliding(h, "cpu", val_data, tiny_model(h))
    assert mixed_loss < plain_loss - 0.5
