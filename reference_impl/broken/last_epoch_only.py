"""BROKEN ON PURPOSE — multi-epoch TTT that scores in the last epoch (rules.md §2.4; PRs #525, #568).

Each chunk is trained on for TTT_EPOCHS epochs and its loss is accumulated only in the final
epoch (`if epoch == ttt_epochs - 1`), i.e. after the model has already trained on those very
tokens: score-after-update (C3). The last chunk is trained on too.
"""

import math

import torch

from ..evaluate import ScoreAccumulator, per_token_nll
from ..hparams import Hyperparameters, _env_flag
from ..logging_fmt import log


class Hyperparameters(Hyperparameters):
    ttt_enabled = _env_flag("TTT_ENABLED", "1")


def eval_val_ttt(h, device, val_data, model):
    seq_len = h.eval_seq_len
    num_seqs = val_data.num_targets // seq_len
    seqs_per_chunk = max(1, h.ttt_chunk_tokens // seq_len)
    num_chunks = math.ceil(num_seqs / seqs_per_chunk)
    log(f"ttt:start chunks={num_chunks} ttt_lr={h.ttt_lr} ttt_epochs={h.ttt_epochs}")
    optimizer = torch.optim.SGD(model.parameters(), lr=h.ttt_lr, momentum=h.ttt_momentum)
    acc = ScoreAccumulator(val_data, sharded=False)
    model.train()
    for ci in range(num_chunks):
        s_first, s_last = ci * seqs_per_chunk, min((ci + 1) * seqs_per_chunk, num_seqs)
        for epoch in range(h.ttt_epochs):
            for s0 in range(s_first, s_last, h.ttt_batch_seqs):
                s1 = min(s0 + h.ttt_batch_seqs, s_last)
                span = val_data.tokens[s0 * seq_len: s1 * seq_len + 1]
                nll = per_token_nll(model, span[:-1].view(-1, seq_len), span[1:].view(-1, seq_len))
                if epoch == h.ttt_epochs - 1:
                    acc.add(nll.detach(), torch.arange(s0 * seq_len + 1, s1 * seq_len + 1, device=span.device))
                optimizer.zero_grad(set_to_none=True)
                nll.mean().backward()
                optimizer.step()
    model.eval()
    return acc.result()
