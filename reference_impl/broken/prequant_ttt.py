"""BROKEN ON PURPOSE — pre-quantization TTT (rules.md §2.4; PRs #1376, #1738, closed as invalid).

After training, the model is fine-tuned for several epochs on the validation tokens themselves,
then quantized and evaluated as a "fixed predictor". Every scored token was trained on before it
was scored: score-after-adapt, a C3 violation, however frozen the artifact looks afterwards.
"""

import os

import torch

from ..evaluate import per_token_nll
from ..hparams import Hyperparameters, _env_flag
from ..logging_fmt import log
from ..train import train_model


class Hyperparameters(Hyperparameters):
    prequant_ttt_enabled = _env_flag("PREQUANT_TTT_ENABLED", "1")
    prequant_ttt_epochs = int(os.environ.get("PREQUANT_TTT_EPOCHS", "3"))
    prequant_ttt_lr = float(os.environ.get("PREQUANT_TTT_LR", "0.0005"))


legal_train_model = train_model


def prequant_ttt_adapt_adamw(h, device, val_data, model) -> None:
    """AdamW epochs over val_tokens; nothing is scored before these updates."""
    seq_len = h.eval_seq_len
    num_seqs = val_data.num_targets // seq_len
    optimizer = torch.optim.AdamW(model.parameters(), lr=h.prequant_ttt_lr, weight_decay=0.0)
    model.train()
    for epoch in range(h.prequant_ttt_epochs):
        for s0 in range(0, num_seqs, h.ttt_batch_seqs):
            s1 = min(s0 + h.ttt_batch_seqs, num_seqs)
            span = val_data.tokens[s0 * seq_len: s1 * seq_len + 1]
            loss = per_token_nll(model, span[:-1].view(-1, seq_len), span[1:].view(-1, seq_len)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        log(f"prequant_ttt:epoch {epoch + 1}/{h.prequant_ttt_epochs} loss:{loss.item():.4f}")


def train_model(h, device, val_data):
    model, info = legal_train_model(h, device, val_data)
    if h.prequant_ttt_enabled:
        prequant_ttt_adapt_adamw(h, device, val_data, model)
    return model, info
