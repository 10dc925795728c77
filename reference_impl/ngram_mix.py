"""A legal n-gram mixture: full-vocabulary, normalized, and updated only after scoring.

For every scored position the online n-gram model gives a whole distribution over the
vocabulary (a trigram row smoothed towards a bigram row smoothed towards add-one unigrams; each
level sums to 1), which is mixed with the network's softmax using a weight computed from the
context count alone. The target is used only to read the final probability and, after the
batch's scores are committed, to update the counts. Contrast with the illegal #779-family cache
(rules.md §2.1), which scores one target-keyed count ratio with a context-count denominator.

Counts are updated strictly in stream order, so this evaluator is not sharded: under DDP every
rank computes it in full (results are not summed over ranks).
"""

import torch
import torch.nn.functional as F

from .evaluate import ScoreAccumulator, autocast_for, sliding_windows, window_batch


class OnlineNgram:
    def __init__(self, vocab_size: int, buckets: int, device, smoothing: float = 1.0):
        self.vocab_size, self.buckets, self.smoothing = vocab_size, buckets, smoothing
        self.unigram = torch.zeros(vocab_size, device=device)
        self.bigram = torch.zeros(min(buckets, vocab_size), vocab_size, device=device)
        self.trigram = torch.zeros(buckets, vocab_size, device=device)

    def context_rows(self, prev2: torch.Tensor, prev1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prev1 % self.bigram.size(0), (prev2 * 1_000_003 + prev1) % self.buckets

    def distribution(self, prev2: torch.Tensor, prev1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(p [n, V] with rows summing to 1, trigram context counts [n]) from the counts so far."""
        k = self.smoothing
        row2, row3 = self.context_rows(prev2, prev1)
        p1 = (self.unigram + 1.0) / (self.unigram.sum() + self.vocab_size)
        c2 = self.bigram[row2]
        p2 = (c2 + k * p1) / (c2.sum(-1, keepdim=True) + k)
        c3 = self.trigram[row3]
        n3 = c3.sum(-1, keepdim=True)
        return (c3 + k * p2) / (n3 + k), n3.squeeze(-1)

    def update(self, prev2: torch.Tensor, prev1: torch.Tensor, target: torch.Tensor) -> None:
        row2, row3 = self.context_rows(prev2, prev1)
        ones = torch.ones_like(target, dtype=self.unigram.dtype)
        self.unigram.index_put_((target,), ones, accumulate=True)
        self.bigram.index_put_((row2, target), ones, accumulate=True)
        self.trigram.index_put_((row3, target), ones, accumulate=True)


def mixture_log_probs(model_logits: torch.Tensor, ngram_p: torch.Tensor, context_count: torch.Tensor,
                      max_weight: float, confidence: float) -> torch.Tensor:
    """log((1 - w) softmax(logits) + w q) over the whole vocabulary, w = max_weight * n / (n + c)."""
    weight = (max_weight * context_count / (context_count + confidence))[:, None]
    p_model = F.softmax(model_logits.float(), dim=-1)
    return torch.log((1.0 - weight) * p_model + weight * ngram_p)


@torch.no_grad()
def eval_val_ngram_mix(h, device, val_data, model) -> tuple[float, float]:
    tokens = val_data.tokens
    windows = sliding_windows(val_data.num_targets, h.eval_seq_len, h.eval_stride)
    ngram = OnlineNgram(h.vocab_size, h.ngram_mix_buckets, tokens.device)
    acc = ScoreAccumulator(val_data, sharded=False)
    model.eval()
    with torch.inference_mode():
        for b0 in range(0, len(windows), h.eval_batch_seqs):
            x, y, positions, mask = window_batch(val_data, windows[b0:b0 + h.eval_batch_seqs], h.eval_seq_len)
            with autocast_for(x.device):
                logits = model.forward_logits(x)
            pos = positions[mask]  # batches come in stream order, so pos is increasing
            prev1 = tokens[pos - 1]
            prev2 = torch.where(pos >= 2, tokens[(pos - 2).clamp_min(0)], torch.full_like(pos, h.bos_id))
            ngram_p, context_count = ngram.distribution(prev2, prev1)  # counts from earlier batches only
            log_p = mixture_log_probs(logits[mask], ngram_p, context_count, h.ngram_mix_max_weight,
                                      h.ngram_mix_confidence)
            acc.add(-log_p.gather(1, y[mask][:, None]).squeeze(1), pos)  # commit scores ...
            ngram.update(prev2, prev1, tokens[pos])  # ... then learn from these targets
    acc.check_single_pass()
    return acc.result()
