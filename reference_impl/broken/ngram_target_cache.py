"""BROKEN ON PURPOSE — hashed n-gram cache keyed by the target (rules.md §2.1; the #779 family).

Two count tables per order: one keyed by a hash of the context, one by the context hash XOR the
realized target. The cache "probability" of the target is full_counts[full_key] / ctx_counts
[ctx_key], blended with the model's probability of that one token. Nothing is defined for the
other V-1 tokens, so the scores are not from a normalized distribution (C2), and the lookup
reads the target before its probability is fixed (C1). Counts are updated after scoring, which
does not make it legal.
"""

import os

import numpy as np
import torch

from ..evaluate import ScoreAccumulator, per_token_nll, sliding_windows, timed_eval, window_batch
from ..hparams import Hyperparameters, _env_flag
from ..pipeline import load_eval_model, run_quantized_evals

NGRAM_PRIMES = np.array([36313, 27191, 51647, 81929, 131071, 174763, 233017], dtype=np.int64)


class Hyperparameters(Hyperparameters):
    ngram_cache_enabled = _env_flag("NGRAM_CACHE_ENABLED", "1")
    ngram_order = int(os.environ.get("NGRAM_ORDER", "4"))
    ngram_buckets = int(os.environ.get("NGRAM_BUCKETS", "1048576"))
    ngram_alpha = float(os.environ.get("NGRAM_ALPHA", "0.4"))
    ngram_min_count = int(os.environ.get("NGRAM_MIN_COUNT", "2"))


legal_run_quantized_evals = run_quantized_evals


def ngram_hash_keys(tokens_np: np.ndarray, pos: np.ndarray, order: int, mask: int):
    """Context key from the order-1 previous tokens, full key = context key XOR target."""
    ctx_hash = np.zeros(len(pos), dtype=np.int64)
    for k in range(1, order):
        prev = tokens_np[np.maximum(pos - k, 0)]
        ctx_hash ^= prev * NGRAM_PRIMES[k % len(NGRAM_PRIMES)]
    tgt = tokens_np[pos]
    full_key = (ctx_hash ^ (tgt * NGRAM_PRIMES[0])) & mask
    return ctx_hash & mask, full_key


@torch.no_grad()
def eval_val_ngram_cache(h, device, val_data, model) -> tuple[float, float]:
    tokens_np = val_data.tokens.cpu().numpy()
    mask = h.ngram_buckets - 1
    ctx_counts = np.zeros(h.ngram_buckets, dtype=np.float64)
    full_counts = np.zeros(h.ngram_buckets, dtype=np.float64)
    windows = sliding_windows(val_data.num_targets, h.eval_seq_len, h.eval_stride)
    acc = ScoreAccumulator(val_data, sharded=False)
    model.eval()
    for b0 in range(0, len(windows), h.eval_batch_seqs):
        x, y, positions, scored = window_batch(val_data, windows[b0:b0 + h.eval_batch_seqs], h.eval_seq_len)
        p_model = torch.exp(-per_token_nll(model, x, y)[scored]).double().cpu().numpy()
        pos = positions[scored].cpu().numpy()
        ctx_key, full_key = ngram_hash_keys(tokens_np, pos, h.ngram_order, mask)
        hit = ctx_counts[ctx_key] >= h.ngram_min_count
        p_cache = np.minimum(full_counts[full_key] / np.maximum(ctx_counts[ctx_key], 1.0), 1.0)
        blended = np.where(hit, (1.0 - h.ngram_alpha) * p_model + h.ngram_alpha * p_cache, p_model)
        nll = torch.from_numpy(-np.log(np.maximum(blended, 1e-12))).to(val_data.tokens.device)
        acc.add(nll, positions[scored])
        np.add.at(ctx_counts, ctx_key, 1.0)
        np.add.at(full_counts, full_key, 1.0)
    acc.check_single_pass()
    return acc.result()


def run_quantized_evals(h, device, val_data):
    results = legal_run_quantized_evals(h, device, val_data)
    if h.ngram_cache_enabled:
        results.append(timed_eval("quantized_ngram", device, eval_val_ngram_cache, h, device, val_data,
                                  load_eval_model(h, device)))
    return results
