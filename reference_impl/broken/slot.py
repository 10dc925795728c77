"""BROKEN ON PURPOSE — SLOT (rules.md §2.3; PRs #1172, #1209, #1430 ...).

For every batch of sliding windows, a per-window hidden-state delta and a vocabulary-sized logit
bias are optimized with AdamW against the very targets the window then scores (the optimization
mask equals the scoring mask). Each score depends on its own target (C1) and is computed after
adapting on it (C3).
"""

import os

import torch
import torch.nn.functional as F

from ..evaluate import ScoreAccumulator, autocast_for, rank_slice, sliding_windows, timed_eval, window_batch
from ..hparams import Hyperparameters, _env_flag
from ..pipeline import load_eval_model, run_quantized_evals


class Hyperparameters(Hyperparameters):
    slot_enabled = _env_flag("SLOT_ENABLED", "1")
    slot_steps = int(os.environ.get("SLOT_STEPS", "8"))
    slot_lr = float(os.environ.get("SLOT_LR", "0.005"))


legal_run_quantized_evals = run_quantized_evals


def slot_window_nll(model, hidden, weight, delta, logit_bias, y):
    logits = F.linear(hidden + delta, weight)
    logits = model.logit_softcap * torch.tanh(logits / model.logit_softcap) + logit_bias
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none").view_as(y)


def eval_val_sliding_slot(h, device, val_data, model) -> tuple[float, float]:
    windows = sliding_windows(val_data.num_targets, h.eval_seq_len, h.eval_stride)
    first, last = rank_slice(len(windows), h.rank, h.world_size)
    acc = ScoreAccumulator(val_data)
    model.eval()
    for b0 in range(first, last, h.eval_batch_seqs):
        x, y, positions, mask = window_batch(val_data, windows[b0:min(b0 + h.eval_batch_seqs, last)], h.eval_seq_len)
        with torch.no_grad(), autocast_for(x.device):
            hidden = model.forward_hidden(x).float()
        weight = model.tok_emb.weight.detach().float()
        delta = torch.zeros(x.size(0), 1, hidden.size(-1), device=x.device, requires_grad=True)
        logit_bias = torch.zeros(x.size(0), 1, weight.size(0), device=x.device, requires_grad=True)
        optimizer = torch.optim.AdamW([delta, logit_bias], lr=h.slot_lr, weight_decay=1e-8)
        for _ in range(h.slot_steps):
            nll = slot_window_nll(model, hidden, weight, delta, logit_bias, y)
            loss = (nll * mask).sum() / mask.sum()  # the scored positions are the objective
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            acc.add(slot_window_nll(model, hidden, weight, delta, logit_bias, y)[mask], positions[mask])
    acc.check_single_pass()
    return acc.result()


def run_quantized_evals(h, device, val_data):
    results = legal_run_quantized_evals(h, device, val_data)
    if h.slot_enabled:
        results.append(timed_eval("quantized_slot", device, eval_val_sliding_slot, h, device, val_data,
                                  load_eval_model(h, device)))
    return results
