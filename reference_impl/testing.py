"""Small in-process fixtures for tests and benchmarks: a tiny configuration, a model whose
zero-initialized projections are randomized (so every path carries signal), and validation
data built in memory."""

import contextlib

import torch

from .evaluate import ValidationData
from .hparams import Hyperparameters
from .model import GPT

TINY_OVERRIDES = {
    "vocab_size": 64, "num_layers": 4, "model_dim": 32, "num_heads": 4, "num_kv_heads": 2, "mlp_mult": 2.0,
    "rope_dims": 4, "rope_train_seq_len": 32, "xsa_last_n": 4, "num_loops": 1, "loop_start": 1,
    "loop_end": 2, "parallel_residual_start": 2, "train_seq_len": 32, "eval_seq_len": 32, "eval_stride": 8,
    "eval_batch_seqs": 8, "train_batch_tokens": 256, "grad_accum_override": 1, "val_batch_tokens": 256,
    "ttt_chunk_tokens": 64, "ttt_epochs": 2, "ttt_lr": 0.05, "ttt_batch_seqs": 2, "ttt_chunk_size": 8,
    "ttt_lora_rank": 2, "ttt_lora_lr": 0.05, "quant_min_numel": 256, "gptq_calibration_batches": 2,
    "phased_ttt_prefix_docs": 6, "phased_ttt_num_phases": 2, "ngram_mix_buckets": 256,
    "compile_enabled": "0", "device_kind": "cpu", "seed": 0,
}


def tiny_hparams(**overrides) -> Hyperparameters:
    return Hyperparameters(**{**TINY_OVERRIDES, **overrides})


def tiny_model(h: Hyperparameters, seed: int = 0, noise: float = 0.05) -> GPT:
    """A tiny GPT with every weight randomized (including the zero-initialized ones and the
    SmearGate strength), so causality and adaptation tests exercise every path."""
    torch.manual_seed(seed)
    model = GPT(h)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


def random_validation_data(num_tokens: int, vocab_size: int, bos_id: int = 1, doc_len: tuple = (10, 40),
                           seed: int = 0) -> ValidationData:
    """Documents of random tokens, each starting with BOS; one byte per non-BOS target."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.empty(num_tokens, dtype=torch.long)
    i = 0
    while i < num_tokens:
        length = int(torch.randint(doc_len[0], doc_len[1] + 1, (1,), generator=gen))
        doc = torch.randint(2, vocab_size, (length,), generator=gen)
        doc[0] = bos_id
        tokens[i:i + length] = doc[: num_tokens - i]
        i += length
    target_bytes = (tokens != bos_id).int()
    target_bytes[0] = 0
    return ValidationData(tokens, target_bytes, "test")



@contextlib.contextmanager
def torch_threads(n: int):
    """Tiny models run fastest on one intra-op thread, and far faster on a loaded machine
    (OpenMP barriers under contention can cost 10x)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
