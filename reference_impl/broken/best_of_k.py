"""BROKEN ON PURPOSE — best-of-k TTT (rules.md §2.2; PR #573 took the min over 3 trajectories).

The score-first TTT evaluation is run k times from the same weights with different learning
rates, and the best run is reported. Every token is scored k times and the reported score is
selected with knowledge of the targets (C4).
"""

import copy
import os

from ..hparams import Hyperparameters, _env_flag
from ..logging_fmt import log
from ..ttt import eval_val_ttt


class Hyperparameters(Hyperparameters):
    ttt_enabled = _env_flag("TTT_ENABLED", "1")
    ttt_best_of_k = int(os.environ.get("TTT_BEST_OF_K", "3"))


legal_eval_val_ttt = eval_val_ttt


def eval_val_ttt(h, device, val_data, model):
    start = copy.deepcopy(model.state_dict())
    runs = []
    for k in range(h.ttt_best_of_k):
        model.load_state_dict(start)
        trial = copy.copy(h)
        trial.ttt_lr = h.ttt_lr * 2.0 ** (k - 1)
        runs.append(legal_eval_val_ttt(trial, device, val_data, model))
        log(f"ttt_best_of_k: trajectory {k + 1}/{h.ttt_best_of_k} ttt_lr:{trial.ttt_lr} val_bpb:{runs[-1][1]:.8f}")
    return min(runs, key=lambda run: run[1])
