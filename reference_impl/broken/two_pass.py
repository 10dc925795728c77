"""BROKEN ON PURPOSE — two-pass evaluation (rules.md §2.2; PR #991 reported the re-scored s_1).

Pass 1 is a legal score-first TTT over the whole validation stream; its scores are thrown away.
Pass 2 re-scores every token with the model adapted on all of them and reports that number
under the same label. Tokens are scored twice and the reported score comes after adapting on
them (C4, and C3 for the reported pass).
"""

from ..evaluate import eval_val_sliding
from ..hparams import Hyperparameters, _env_flag
from ..logging_fmt import log
from ..ttt import eval_val_ttt


class Hyperparameters(Hyperparameters):
    ttt_enabled = _env_flag("TTT_ENABLED", "1")


legal_eval_val_ttt = eval_val_ttt


def eval_val_ttt(h, device, val_data, model):
    first_loss, first_bpb = legal_eval_val_ttt(h, device, val_data, model)  # adapts `model` in place
    log(f"ttt_two_pass: pass 1 val_loss:{first_loss:.8f} val_bpb:{first_bpb:.8f}; re-scoring with the adapted model")
    return eval_val_sliding(h, device, val_data, model)
