"""The deliberately broken variants run as bundled scripts and really do what they are named for
(each run is compared with the legal script on the same data and seed)."""

import os
import re
import subprocess
import sys

import pytest

from reference_impl.bundle import BROKEN_VARIANTS, build_script
from reference_impl.presets import TINY_CPU_ENV
from reference_impl.record import parse_run_log
from reference_impl.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.slow
QUICK_ENV = {"ITERATIONS": "4", "WARMUP_STEPS": "0", "TTT_CHUNK_TOKENS": "1024", "EVAL_BATCH_SEQS": "8",
             "MAX_WALLCLOCK_SECONDS": "0", "SEED": "7"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken_data")
    write_synthetic_dataset(root, vocab_size=512, train_tokens=40_000, val_tokens=4_096)
    return root


def run_variant(variant, data_dir, tmp_path):
    work = tmp_path / variant
    work.mkdir()
    (work / "train_gpt.py").write_text(build_script(variant))
    env = {**os.environ, **TINY_CPU_ENV, **QUICK_ENV, "DATA_DIR": str(data_dir), "RUN_ID": variant}
    proc = subprocess.run([sys.executable, "train_gpt.py"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout, parse_run_log(proc.stdout, 7, variant).evals


@pytest.fixture(scope="module")
def legal(data_dir, tmp_path_factory):
    return run_variant("record", data_dir, tmp_path_factory.mktemp("legal"))


@pytest.mark.parametrize("variant", BROKEN_VARIANTS)
def test_broken_variant_runs_and_misbehaves(variant, data_dir, legal, tmp_path):
    legal_log, legal_evals = legal
    log, evals = run_variant(variant, data_dir, tmp_path)
    assert f"variant: {variant}" not in legal_log
    before_ttt = ("diagnostic quantized", "quantized_sliding_window")
    if variant == "prequant_ttt":
        assert "prequant_ttt:epoch 3/3" in log
        assert evals["diagnostic quantized"][:2] != legal_evals["diagnostic quantized"][:2]  # weights saw val
    elif variant == "slot":
        assert evals["quantized_slot"][0] < evals["quantized_sliding_window"][0]  # "gains" from its own targets
    elif variant == "ngram_target_cache":
        assert "quantized_ngram" in evals
    else:
        assert all(evals[k][:2] == legal_evals[k][:2] for k in before_ttt)  # same model, same data
        assert evals["quantized_ttt"][:2] != legal_evals["quantized_ttt"][:2]
        if variant == "two_pass":
            assert re.search(r"^ttt_two_pass: pass 1 val_loss:\S+ val_bpb:\S+", log, re.MULTILINE)
        if variant == "best_of_k":
            assert "ttt_best_of_k: trajectory 3/3" in log
            assert evals["quantized_ttt"][1] <= legal_evals["quantized_ttt"][1]
