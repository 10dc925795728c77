"""Validation data, score accounting and the fixed-model evaluations (plain and sliding window).

val_loss = sum of target NLLs (nats) / scored tokens;  val_bpb = val_loss / ln 2 * tokens / bytes.
Every evaluator, including test-time training, routes its scores through ScoreAccumulator.add:
one place where per-token NLLs enter the result, and where "was this token scored yet?" and
"was every token scored exactly once?" can be asked.
"""

import contextlib
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .data import list_shards, load_validation_byte_sidecar, load_validation_tokens
from .logging_fmt import final_metric_line, log
from .tokenizer_luts import build_sentencepiece_luts, target_byte_counts


def dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def sync_device(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def autocast_for(device):
    """bf16 autocast on GPUs; CPUs compute in fp32 (faster there, and exact for tests)."""
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ValidationData:
    """All validation tokens in order, and the byte count of every target position
    (from the tokenizer LUTs, or from the CaseOps byte sidecar when present)."""

    def __init__(self, tokens: torch.Tensor, target_bytes: torch.Tensor, byte_source: str):
        if tokens.numel() != target_bytes.numel():
            raise ValueError("one byte count per token position is required")
        self.tokens = tokens.long()
        self.target_bytes = target_bytes.to(device=self.tokens.device, dtype=torch.int32)
        self.byte_source = byte_source

    @property
    def num_targets(self) -> int:
        return self.tokens.numel() - 1

    @classmethod
    def load(cls, h, device) -> "ValidationData":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
        if int(sp.vocab_size()) != h.vocab_size:
            raise ValueError(f"VOCAB_SIZE={h.vocab_size} but the tokenizer has {sp.vocab_size()} pieces")
        tokens = load_validation_tokens(h.val_files, h.eval_seq_len).to(device=device, dtype=torch.int64)
        if use_byte_sidecar(h):
            counts = load_validation_byte_sidecar(h.val_bytes_files, tokens.numel())
            counts = counts.to(device=device, dtype=torch.int32)
            counts[0] = 0  # position 0 is never a target
            return cls(tokens, counts, "sidecar")
        luts = build_sentencepiece_luts(sp, h.vocab_size, device)
        return cls(tokens, target_byte_counts(tokens, luts), "luts")


def use_byte_sidecar(h) -> bool:
    if h.val_byte_sidecar == "0":
        return False
    present = bool(list(Path(h.datasets_dir).glob("fineweb_val_bytes_*.bin")))
    if h.val_byte_sidecar == "1" and not present:
        list_shards(h.val_bytes_files, exclude_sidecars=False)  # raises a clear FileNotFoundError
    return present


class ScoreAccumulator:
    """Float64 sums of target NLL, token count and byte count, plus how often each target
    position has been scored. `sharded`: ranks score disjoint parts and results are summed."""

    def __init__(self, val_data: ValidationData, sharded: bool = True):
        device = val_data.tokens.device
        self.val_data, self.sharded = val_data, sharded
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.token_count = torch.zeros((), dtype=torch.float64, device=device)
        self.byte_count = torch.zeros((), dtype=torch.float64, device=device)
        self.times_scored = torch.zeros(val_data.tokens.numel(), dtype=torch.int32, device=device)  # this rank
        self.scored_by_any_rank = torch.zeros(val_data.tokens.numel(), dtype=torch.bool, device=device)

    def add(self, nll: torch.Tensor, positions: torch.Tensor) -> None:
        """Commit scores: nll[i] (nats) is the score of the target at global position positions[i]."""
        nll, positions = nll.detach().reshape(-1).double(), positions.reshape(-1).long()
        self.loss_sum += nll.sum()
        self.token_count += positions.numel()
        self.byte_count += self.val_data.target_bytes[positions].double().sum()
        self.times_scored.index_add_(0, positions, torch.ones_like(positions, dtype=torch.int32))

    def share_scored(self, lo: int, hi: int) -> None:
        """Learn which targets in [lo, hi) any rank has scored (before adapting on them)."""
        span = self.times_scored[lo:hi].clone()
        if self.sharded and dist_ready():
            dist.all_reduce(span)
        self.scored_by_any_rank[lo:hi] |= span > 0

    def require_scored(self, positions: torch.Tensor) -> None:
        """Guard before any adaptation step: training on a target that is not scored yet would
        break score-before-update (C3)."""
        positions = positions.reshape(-1).long()
        scored = (self.times_scored[positions] > 0) | self.scored_by_any_rank[positions]
        if positions.numel() and not bool(scored.all()):
            raise RuntimeError("refusing to adapt on validation targets that have not been scored yet")

    def check_single_pass(self) -> None:
        """Every target 1..N-1 scored exactly once (C4), counted over all ranks."""
        counts = self.times_scored[1:].clone()
        if self.sharded and dist_ready():
            dist.all_reduce(counts)
        if counts.numel() and (int(counts.min()) != 1 or int(counts.max()) != 1):
            raise RuntimeError(f"targets scored between {int(counts.min())} and {int(counts.max())} times")

    def result(self) -> tuple[float, float]:
        totals = torch.stack([self.loss_sum, self.token_count, self.byte_count])
        if self.sharded and dist_ready():
            dist.all_reduce(totals)
        loss_sum, tokens, num_bytes = (float(v) for v in totals)
        val_loss = loss_sum / max(tokens, 1.0)
        return val_loss, val_loss / math.log(2.0) * tokens / max(num_bytes, 1.0)


def per_token_nll(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-token NLL [B, T] from a full softmax over the vocabulary (float32)."""
    with autocast_for(x.device):
        logits = model.forward_logits(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none").view_as(y)


def rank_slice(n: int, rank: int, world_size: int) -> tuple[int, int]:
    return n * rank // world_size, n * (rank + 1) // world_size


@torch.no_grad()
def eval_val(h, device, val_data: ValidationData, model) -> tuple[float, float]:
    """Non-overlapping eval_seq_len blocks; each target sees only the tokens of its own block."""
    seq_len = h.eval_seq_len
    num_seqs = val_data.num_targets // seq_len
    first, last = rank_slice(num_seqs, h.rank, h.world_size)
    batch_seqs = max(1, h.val_batch_tokens // (h.world_size * seq_len))
    acc = ScoreAccumulator(val_data)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s0 in range(first, last, batch_seqs):
            s1 = min(s0 + batch_seqs, last)
            span = val_data.tokens[s0 * seq_len: s1 * seq_len + 1]
            x, y = span[:-1].view(-1, seq_len), span[1:].view(-1, seq_len)
            positions = torch.arange(s0 * seq_len + 1, s1 * seq_len + 1, device=span.device)
            acc.add(per_token_nll(model, x, y), positions)
    model.train(was_training)
    acc.check_single_pass()
    return acc.result()


def sliding_windows(num_targets: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, length, first_scored) per window. Window inputs are tokens start..start+length-1;
    only targets from offset first_scored on are scored, so each target is scored once, by the
    first window that gives it seq_len - stride tokens of context (the first window scores all)."""
    context = seq_len - stride
    windows = []
    for start in range(0, num_targets, stride):
        if start > 0 and start + context >= num_targets:
            break
        windows.append((start, min(seq_len, num_targets - start), 0 if start == 0 else context))
    return windows


def window_batch(val_data: ValidationData, windows, seq_len: int):
    """Inputs, targets, global target positions and the scored mask of a batch of windows."""
    device = val_data.tokens.device
    x = torch.zeros(len(windows), seq_len, dtype=torch.int64, device=device)
    y = torch.zeros_like(x)
    mask = torch.zeros_like(x, dtype=torch.bool)
    offsets = torch.arange(seq_len, device=device)
    starts = torch.tensor([w[0] for w in windows], device=device)
    for i, (start, length, first_scored) in enumerate(windows):
        x[i, :length] = val_data.tokens[start:start + length]
        y[i, :length] = val_data.tokens[start + 1:start + length + 1]
        mask[i, first_scored:length] = True
    return x, y, starts[:, None] + offsets[None, :] + 1, mask


def score_windows(model, val_data, windows, seq_len: int, acc: ScoreAccumulator) -> None:
    x, y, positions, mask = window_batch(val_data, windows, seq_len)
    nll = per_token_nll(model, x, y)
    acc.add(nll[mask], positions[mask])


@torch.no_grad()
def eval_val_sliding(h, device, val_data: ValidationData, model) -> tuple[float, float]:
    """Overlapping windows every EVAL_STRIDE tokens, scoring only each window's new tail."""
    windows = sliding_windows(val_data.num_targets, h.eval_seq_len, h.eval_stride)
    first, last = rank_slice(len(windows), h.rank, h.world_size)
    acc = ScoreAccumulator(val_data)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b0 in range(first, last, h.eval_batch_seqs):
            score_windows(model, val_data, windows[b0:min(b0 + h.eval_batch_seqs, last)], h.eval_seq_len, acc)
    model.train(was_training)
    acc.check_single_pass()
    return acc.result()


def timed_eval(label: str, device, fn, *args, **kwargs) -> dict:
    """Run one evaluation and log `<label> val_loss:… val_bpb:… eval_time:…ms`."""
    sync_device(device)
    t0 = time.perf_counter()
    val_loss, val_bpb = fn(*args, **kwargs)
    sync_device(device)
    elapsed_ms = 1000.0 * (time.perf_counter() - t0)
    log(final_metric_line(label, val_loss, val_bpb, elapsed_ms))
    return {"label": label, "val_loss": val_loss, "val_bpb": val_bpb, "eval_time_ms": elapsed_ms}
