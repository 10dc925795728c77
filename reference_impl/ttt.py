"""Legal test-time training: the model adapts only on validation targets already scored.

Three shapes (records-format.md §5.4), selected with TTT_MODE:
  chunked  score a chunk's sliding windows under inference_mode, then SGD on that chunk's
           tokens; the last chunk is never trained on (#549 / #1413 / #1493).
  doc      per document, per TTT_CHUNK_SIZE tokens: forward with grad, commit the scores,
           then backward/step on the same (now scored) tokens; adapters reset per document;
           a document's last chunk is never trained on.
  phased   doc mode, plus global SGD on the base model after each phase of
           PHASED_TTT_PREFIX_DOCS / PHASED_TTT_NUM_PHASES documents, on those documents only.
Every adaptation step first calls ScoreAccumulator.require_scored on the targets it trains on.
"""

import itertools
import math
import time

import torch
import torch.distributed as dist

from .evaluate import ScoreAccumulator, dist_ready, per_token_nll, rank_slice, score_windows, sliding_windows
from .logging_fmt import log


def set_trainable(model, params) -> None:
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def average_gradients(params) -> None:
    """Sum gradients over ranks (each rank's loss is already divided by the global token count)."""
    if not dist_ready():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def sgd_on_scored_span(model, optimizer, params, val_data, acc, lo: int, hi: int, seq_len: int,
                       batch_seqs: int, epochs: int, grad_clip: float, rank: int, world_size: int) -> int:
    """`epochs` passes over the whole seq_len sequences whose inputs start at lo and whose targets
    end by hi. Every rank runs the same number of steps; returns the number of steps taken."""
    num_seqs = (hi - lo) // seq_len
    if num_seqs <= 0 or epochs <= 0:
        return 0
    acc.require_scored(torch.arange(lo + 1, lo + num_seqs * seq_len + 1, device=val_data.tokens.device))
    per_step = batch_seqs * world_size
    steps = 0
    model.train()
    for _ in range(epochs):
        for g0 in range(0, num_seqs, per_step):
            g1 = min(g0 + per_step, num_seqs)
            r0, r1 = (g0 + i for i in rank_slice(g1 - g0, rank, world_size))
            optimizer.zero_grad(set_to_none=True)
            if r1 > r0:
                span = val_data.tokens[lo + r0 * seq_len: lo + r1 * seq_len + 1]
                x, y = span[:-1].view(-1, seq_len), span[1:].view(-1, seq_len)
                loss = per_token_nll(model, x, y).sum() / ((g1 - g0) * seq_len)
                loss.backward()
            average_gradients(params)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            steps += 1
    return steps


def eval_val_ttt(h, device, val_data, model) -> tuple[float, float]:
    """Chunked score-first TTT over the sliding-window evaluation."""
    seq_len, chunk = h.eval_seq_len, h.ttt_chunk_tokens
    total = val_data.num_targets
    num_chunks = math.ceil(total / chunk)
    chunk_windows = [[] for _ in range(num_chunks)]
    for window in sliding_windows(total, seq_len, h.eval_stride):
        start, _, first_scored = window
        chunk_windows[min((start + first_scored) // chunk, num_chunks - 1)].append(window)
    log(f"ttt:start chunks={num_chunks} ttt_lr={h.ttt_lr} ttt_epochs={h.ttt_epochs}")

    frozen = {id(p) for block in model.blocks[:h.ttt_freeze_blocks] for p in block.parameters()}
    params = [p for p in model.parameters() if id(p) not in frozen]
    set_trainable(model, params)
    optimizer = torch.optim.SGD(params, lr=h.ttt_lr, momentum=h.ttt_momentum)
    acc = ScoreAccumulator(val_data)
    for ci in range(num_chunks):
        # 1) Score this chunk with the model as it is now; the scores are final.
        model.eval()
        first, last = rank_slice(len(chunk_windows[ci]), h.rank, h.world_size)
        with torch.inference_mode():
            for b0 in range(first, last, h.eval_batch_seqs):
                score_windows(model, val_data, chunk_windows[ci][b0:min(b0 + h.eval_batch_seqs, last)],
                              seq_len, acc)
        # 2) Adapt on the chunk just scored, never on the last one (nothing later would use it).
        is_last_chunk = ci == num_chunks - 1
        if is_last_chunk or h.ttt_epochs <= 0:
            continue
        lo, hi = ci * chunk, min((ci + 1) * chunk, total)
        acc.share_scored(lo + 1, hi + 1)
        for group in optimizer.param_groups:  # cosine decay over the chunks
            group["lr"] = h.ttt_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(num_chunks - 1, 1)))
        sgd_on_scored_span(model, optimizer, params, val_data, acc, lo, hi, seq_len, h.ttt_batch_seqs,
                           h.ttt_epochs, h.ttt_grad_clip, h.rank, h.world_size)
    set_trainable(model, list(model.parameters()))
    model.eval()
    acc.check_single_pass()
    return acc.result()


def find_documents(tokens: torch.Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(first input position, last target position) per document. A document's inputs start at
    its BOS; its targets run up to and including the next document's BOS, so every target
    1..N-1 belongs to exactly one document."""
    num_targets = tokens.numel() - 1
    starts = (tokens[:num_targets] == bos_id).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return list(zip(starts, starts[1:] + [num_targets]))


class DocumentAdapter:
    """What a document adapts: LoRA pairs on every attention's q, v and output projections
    (rank > 0; B starts at zero so a reset adapter leaves the model unchanged), or all weights
    with plain SGD (rank 0; the weights are restored after each document)."""

    def __init__(self, model, h):
        self.model, self.h = model, h
        self.layers = [m for b in model.blocks for m in (b.attn.c_q, b.attn.c_v, b.attn.proj)]
        self.snapshot = None
        self.params = []
        if h.ttt_lora_rank > 0:
            for layer in self.layers:
                a = torch.zeros(h.ttt_lora_rank, layer.in_features, device=layer.weight.device, requires_grad=True)
                b = torch.zeros(layer.out_features, h.ttt_lora_rank, device=layer.weight.device, requires_grad=True)
                self.params += [a, b]
        else:
            self.params = list(model.parameters())
            self.snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.generator = torch.Generator(device="cpu").manual_seed(h.seed)
        self.attach()

    def attach(self) -> None:
        if self.h.ttt_lora_rank > 0:
            for layer, a, b in zip(self.layers, self.params[0::2], self.params[1::2]):
                layer.lora = (a, b)
        set_trainable(self.model, [] if self.h.ttt_lora_rank > 0 else self.params)

    def detach(self) -> None:
        for layer in self.layers:
            layer.lora = None
        set_trainable(self.model, list(self.model.parameters()))

    def reset(self):
        """Fresh adapter state for a new document; returns its optimizer."""
        with torch.no_grad():
            if self.h.ttt_lora_rank > 0:
                for a, b in zip(self.params[0::2], self.params[1::2]):
                    a.copy_(torch.randn(a.shape, generator=self.generator) / math.sqrt(a.size(1)))
                    b.zero_()
                return torch.optim.Adam(self.params, lr=self.h.ttt_lora_lr)
            self.model.load_state_dict(self.snapshot)
            return torch.optim.SGD(self.params, lr=self.h.ttt_lr)

    def refresh_snapshot(self) -> None:
        """After a global update of the base model, per-document resets must restore the new weights."""
        if self.snapshot is not None:
            self.snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def score_then_adapt_document(h, model, val_data, acc, doc: tuple[int, int], optimizer) -> None:
    """Score the document chunk by chunk; after each chunk's scores are committed, one step on
    that chunk's loss (forward with grad, but score -> backward -> step in that order)."""
    first_input, last_target = doc
    tokens = val_data.tokens
    model.train()
    for c0 in range(first_input, last_target, h.ttt_chunk_size):  # targets c0+1 .. c1
        c1 = min(c0 + h.ttt_chunk_size, last_target)
        ctx0 = max(first_input, c1 - h.eval_seq_len)
        window = tokens[ctx0:c1 + 1][None]  # inputs ctx0..c1-1, targets ctx0+1..c1
        nll = per_token_nll(model, window[:, :-1], window[:, 1:])[0, c0 - ctx0:]
        positions = torch.arange(c0 + 1, c1 + 1, device=tokens.device)
        acc.add(nll.detach(), positions)  # the score is committed before any update
        if c1 < last_target:  # never adapt on a document's last chunk
            acc.require_scored(positions)
            optimizer.zero_grad(set_to_none=True)
            nll.mean().backward()
            optimizer.step()


def eval_val_ttt_doc(h, device, val_data, model) -> tuple[float, float]:
    """Per-document score-then-step TTT; documents are dealt round-robin to ranks."""
    docs = find_documents(val_data.tokens, h.bos_id)
    log(f"ttt_doc:start docs={len(docs)} lora_rank={h.ttt_lora_rank} chunk_size={h.ttt_chunk_size}")
    adapter = DocumentAdapter(model, h)
    acc = ScoreAccumulator(val_data)
    for doc in docs[h.rank::h.world_size]:
        score_then_adapt_document(h, model, val_data, acc, doc, adapter.reset())
    adapter.reset()
    adapter.detach()
    model.eval()
    acc.check_single_pass()
    return acc.result()


def eval_val_ttt_phased(h, device, val_data, model) -> tuple[float, float]:
    """Per-document TTT with global SGD pauses on the documents scored so far."""
    docs = find_documents(val_data.tokens, h.bos_id)
    prefix = min(h.phased_ttt_prefix_docs, len(docs))
    phases = max(1, h.phased_ttt_num_phases)
    boundaries = sorted({max(1, round(prefix * (k + 1) / phases)) for k in range(phases)}) if prefix else []
    log(f"ttt_phased: total_docs:{len(docs)} prefix_docs:{prefix} suffix_docs:{len(docs) - prefix} "
        f"num_phases:{len(boundaries)} boundaries:{boundaries}")
    adapter = DocumentAdapter(model, h)
    acc = ScoreAccumulator(val_data)
    global_opt = torch.optim.SGD(list(model.parameters()), lr=h.global_ttt_lr, momentum=h.global_ttt_momentum)
    t0 = time.perf_counter()
    group_edges = [0] + boundaries + ([len(docs)] if not boundaries or boundaries[-1] < len(docs) else [])
    for gi, (d0, d1) in enumerate(itertools.pairwise(group_edges)):
        for doc in docs[d0:d1][h.rank::h.world_size]:
            score_then_adapt_document(h, model, val_data, acc, doc, adapter.reset())
        if d1 not in boundaries:
            continue
        # Global phase: every document in [d0, d1) is fully scored on every rank's books.
        lo, hi = docs[d0][0], docs[d1 - 1][1]
        acc.share_scored(lo + 1, hi + 1)
        adapter.reset()
        adapter.detach()
        params = list(model.parameters())
        steps = sgd_on_scored_span(model, global_opt, params, val_data, acc, lo, hi, h.eval_seq_len,
                                   h.ttt_batch_seqs, h.global_ttt_epochs, h.ttt_grad_clip, h.rank, h.world_size)
        adapter.refresh_snapshot()
        adapter.attach()
        log(f"ttpp: phase:{gi + 1}/{len(boundaries)} pd:{d1 - d0} gd:{d1} steps:{steps} "
            f"t:{time.perf_counter() - t0:.1f}s")
    adapter.reset()
    adapter.detach()
    model.eval()
    acc.check_single_pass()
    return acc.result()
