"""Score-first TTT: no adaptation step ever uses a validation target that is not scored yet.

The evaluators are instrumented from the outside: every score committed through
ScoreAccumulator.add, every forward pass with gradients (its target positions recovered from the
tensor's offset into the validation token buffer) and every optimizer step (a global pre-step
hook). At each step, every target that reached the model with gradients since the previous step
must already have been scored. The deliberately broken last-epoch-only variant is the negative
control that shows the check can fail.
"""

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from reference_impl import ttt
from reference_impl.broken import last_epoch_only
from reference_impl.evaluate import ScoreAccumulator, eval_val_sliding
from reference_impl.testing import random_validation_data, tiny_hparams, tiny_model, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


class Trace:
    def __init__(self, val_data):
        self.buffer = val_data.tokens.untyped_storage().data_ptr()
        self.scored: set[int] = set()
        self.pending: set[int] = set()  # targets seen with gradients since the last step
        self.trained: set[int] = set()
        self.steps = 0
        self.violations: list[int] = []

    def on_score(self, positions):
        self.scored.update(positions.reshape(-1).tolist())

    def on_forward(self, y):
        if torch.is_grad_enabled() and y.untyped_storage().data_ptr() == self.buffer:
            start = y.storage_offset()
            self.pending.update(range(start, start + y.numel()))

    def on_step(self, *_):
        self.steps += 1
        self.violations += sorted(self.pending - self.scored)
        self.trained |= self.pending
        self.pending = set()


@pytest.fixture
def traced(monkeypatch):
    def run(fn, module, h, model, val_data):
        trace = Trace(val_data)
        original_add, original_nll = ScoreAccumulator.add, module.per_token_nll

        def add(self, nll, positions):
            trace.on_score(positions)
            return original_add(self, nll, positions)

        def per_token_nll(model, x, y):
            trace.on_forward(y)
            return original_nll(model, x, y)

        monkeypatch.setattr(ScoreAccumulator, "add", add)
        monkeypatch.setattr(module, "per_token_nll", per_token_nll)
        handle = register_optimizer_step_pre_hook(trace.on_step)
        try:
            result = fn(h, "cpu", val_data, model)
        finally:
            handle.remove()
        return result, trace

    return run


def setup(**overrides):
    h = tiny_hparams(**overrides)
    val_data = random_validation_data(8 * h.eval_seq_len + 1, h.vocab_size)
    return h, val_data


def test_chunked_ttt_trains_only_on_scored_chunks_and_never_on_the_last(traced):
    h, val_data = setup()
    result, trace = traced(ttt.eval_val_ttt, ttt, h, tiny_model(h), val_data)
    num_chunks = -(-val_data.num_targets // h.ttt_chunk_tokens)
    assert trace.steps > 0 and trace.violations == []
    assert trace.scored == set(range(1, val_data.num_targets + 1))
    last_chunk = set(range((num_chunks - 1) * h.ttt_chunk_tokens + 1, val_data.num_targets + 1))
    assert not trace.trained & last_chunk
    assert trace.trained == set(range(1, (num_chunks - 1) * h.ttt_chunk_tokens + 1))
    assert result != eval_val_sliding(h, "cpu", val_data, tiny_model(h))  # the adaptation did something


def test_chunked_ttt_without_learning_rate_is_exactly_the_sliding_eval():
    h, val_data = setup(ttt_lr=0.0)
    assert ttt.eval_val_ttt(h, "cpu", val_data, tiny_model(h)) == eval_val_sliding(h, "cpu", val_data, tiny_model(h))


def test_the_check_catches_scoring_after_training(traced):
    h, val_data = setup()
    _, trace = traced(last_epoch_only.eval_val_ttt, last_epoch_only, h, tiny_model(h), val_data)
    assert trace.violations  # epochs before the last trained on targets scored only afterwards


@pytest.mark.parametrize("lora_rank", [2, 0])
def test_document_ttt_scores_each_chunk_before_stepping_on_it(traced, lora_rank):
    h, val_data = setup(ttt_lora_rank=lora_rank, ttt_lr=0.01)
    model = tiny_model(h)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    _, trace = traced(ttt.eval_val_ttt_doc, ttt, h, model, val_data)
    docs = ttt.find_documents(val_data.tokens, h.bos_id)
    expected_steps = sum(-(-(last - first) // h.ttt_chunk_size) - 1 for first, last in docs)
    assert trace.steps == expected_steps and trace.violations == []
    assert trace.scored == set(range(1, val_data.num_targets + 1))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())  # reset after the run
    assert all(layer.lora is None for block in model.blocks for layer in (block.attn.c_q, block.attn.proj))


def test_document_ttt_scores_every_document_start_with_the_base_model(monkeypatch):
    """Adapters are reset per document: the first chunk of each document must score exactly as
    the unadapted model does."""
    h, val_data = setup()
    docs = ttt.find_documents(val_data.tokens, h.bos_id)
    first_chunks = {first + 1: min(first + h.ttt_chunk_size, last) for first, last in docs}
    seen = {}
    original_add = ScoreAccumulator.add

    def add(self, nll, positions):
        if int(positions[0]) in first_chunks:
            seen[int(positions[0])] = nll.clone()
        return original_add(self, nll, positions)

    monkeypatch.setattr(ScoreAccumulator, "add", add)
    model = tiny_model(h)
    ttt.eval_val_ttt_doc(h, "cpu", val_data, model)
    tokens = val_data.tokens
    with torch.no_grad():
        for start, end in first_chunks.items():
            base = model.token_nll(tokens[start - 1:end][None], tokens[start:end + 1][None])[0]
            assert torch.allclose(seen[start], base, atol=1e-5), start


def test_phased_ttt_global_steps_use_only_scored_documents(traced):
    h, val_data = setup(global_ttt_lr=0.05, ttt_batch_seqs=1)
    _, trace = traced(ttt.eval_val_ttt_phased, ttt, h, tiny_model(h), val_data)
    assert trace.violations == [] and trace.steps > 0
    assert trace.scored == set(range(1, val_data.num_targets + 1))


def test_guard_refuses_unscored_targets():
    _, val_data = setup()
    acc = ScoreAccumulator(val_data)
    acc.add(torch.zeros(3), torch.tensor([1, 2, 3]))
    acc.require_scored(torch.tensor([1, 3]))
    with pytest.raises(RuntimeError, match="not been scored"):
        acc.require_scored(torch.tensor([3, 4]))
    with pytest.raises(RuntimeError, match="scored between"):
        acc.check_single_pass()


def test_ttt_config_must_keep_chunks_on_stride_boundaries():
    with pytest.raises(ValueError, match="multiple of EVAL_STRIDE"):
        tiny_hparams(ttt_chunk_tokens=60).validate()
