"""Shared helpers for the rerun tests (no tests here): subject folders, tiny-scale options, and a
small pool that runs several reruns at once (each rerun is its own sandboxed process)."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = Path(__file__).resolve().parent / "rerun_subjects"
WORKERS = max(1, min(2, os.cpu_count() or 1))

# The reference stack at a size a CPU runs in seconds: 2 layers x 32 wide, no recurrence,
# 4 training steps. Everything the evaluations do is unchanged.
REFERENCE_TEST_ENV = {
    "NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "MLP_MULT": "2",
    "ROPE_DIMS": "8", "XSA_LAST_N": "2", "NUM_LOOPS": "0", "PARALLEL_RESIDUAL_START": "-1",
    "WARMUP_STEPS": "0", "GPTQ_CALIBRATION_BATCHES": "1", "EVAL_BATCH_SEQS": "16", "TTT_BATCH_SEQS": "8",
    "TIED_EMBED_INIT_STD": "0.02", "MUON_MOMENTUM_WARMUP_STEPS": "5", "EMA_DECAY": "0.9",
    "QUANT_MIN_NUMEL": "4096", "TRAIN_BATCH_TOKENS": "1024", "TTT_CHUNK_TOKENS": "512", "TTT_CHUNK_SIZE": "32",
}


def fast_options(**overrides):
    """Options for a tiny CPU rerun: vocab 256, 32-id support (floor ln 32), 2 K validation tokens."""
    from auditor.rerun.harness import RerunOptions

    base = {"vocab_size": 256, "support_size": 32, "seq_len": 64, "doc_len": 128, "iterations": 4,
            "val_tokens_small": 2048, "val_tokens_large": 0, "train_tokens": 65_536, "timeout_s": 600,
            "run_timeout_s": 240, "norm_alternatives": 4}
    env = overrides.pop("env", {})
    base.update(overrides)
    return RerunOptions(env=env, **base)


def reference_record(tmp_root: Path, variant: str) -> Path:
    """A record folder holding the reference stack's bundled script for ``variant``."""
    bundle = pytest.importorskip("reference_impl.bundle")
    folder = tmp_root / f"ref_{variant}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "train_gpt.py").write_text(bundle.build_script(variant), encoding="utf-8")
    return folder


def run_all(jobs: dict):
    """{name: (folder, options)} -> {name: RerunResult}, WORKERS at a time."""
    from auditor.rerun.harness import rerun_record

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {name: pool.submit(rerun_record, folder, opts) for name, (folder, opts) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def rule_ids(result, severity: str | None = "error") -> set[str]:
    return {f.rule_id for f in result.findings if severity is None or f.severity.value == severity}


def describe(result) -> str:
    """Everything a failing assertion should show."""
    lines = [f"status={result.status}"]
    lines += [f"  {f.rule_id} {f.severity.value}: {f.message[:240]}" for f in result.findings]
    for run in result.summary.get("runs", []):
        lines.append(f"  run {run['name']}: ok={run['ok']} error={run['error']} finals="
                     f"{[(f['label'], f['val_loss']) for f in run['finals']]}")
    return "\n".join(lines)


def needs_torch():
    pytest.importorskip("torch")
    pytest.importorskip("sentencepiece")
