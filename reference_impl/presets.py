"""Run presets for `pgolf train`: environment overrides on top of the script's defaults.

The script defaults are the record configuration (#1493 lineage: SP8192, 11L x 512, 3-layer
recurrence from 35 %, parallel residuals from layer 7, QK gain 5.25, EMA 0.9965, GPTQ SDClip
int6/int8 + brotli, 12 s GPTQ reserve), so the record presets only switch on what the records'
README commands switch on (TTT_ENABLED=1).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    nproc: int  # processes per node (GPUs); 1 runs plain `python`
    env: dict = field(default_factory=dict)
    track: str = "non_record_16mb"
    hardware: str = ""
    synthetic: dict | None = None  # write_synthetic_dataset kwargs when no DATA_DIR is given
    description: str = ""


TINY_CPU_ENV = {
    "VOCAB_SIZE": "512", "NUM_LAYERS": "6", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
    "MLP_MULT": "4", "ROPE_DIMS": "8", "ROPE_TRAIN_SEQ_LEN": "128", "XSA_LAST_N": "6",
    "NUM_LOOPS": "1", "LOOP_START": "2", "LOOP_END": "3", "PARALLEL_RESIDUAL_START": "4",
    "TRAIN_SEQ_LEN": "128", "EVAL_SEQ_LEN": "128", "EVAL_STRIDE": "64", "EVAL_BATCH_SEQS": "64",
    "TRAIN_BATCH_TOKENS": "4096", "GRAD_ACCUM_STEPS": "1", "VAL_BATCH_TOKENS": "16384",
    "ITERATIONS": "80", "MAX_WALLCLOCK_SECONDS": "0", "WARMUP_STEPS": "1", "WARMDOWN_FRAC": "0.3",
    "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "10",
    "MATRIX_LR": "0.04", "TIED_EMBED_LR": "0.05", "SCALAR_LR": "0.03", "TIED_EMBED_INIT_STD": "0.02",
    "MUON_MOMENTUM_WARMUP_STEPS": "20", "EMA_DECAY": "0.9",
    "GPTQ_CALIBRATION_BATCHES": "4", "QUANT_MIN_NUMEL": "4096",
    "TTT_ENABLED": "1", "TTT_CHUNK_TOKENS": "8192", "TTT_EPOCHS": "2", "TTT_LR": "0.002",
    "TTT_BATCH_SEQS": "16", "COMPILE_ENABLED": "0",
    # One intra-op thread: tiny matmuls gain little from two, and on a shared CI machine
    # OpenMP barriers under contention make them an order of magnitude slower.
    "OMP_NUM_THREADS": "1",
}

PRESETS = {
    "record-8xh100": Preset(
        name="record-8xh100", nproc=8, env={"TTT_ENABLED": "1"}, track="10min_16mb",
        hardware="8xH100 80GB SXM",
        description="the record configuration: 600 s on 8xH100 (588 s of training + 12 s GPTQ reserve)"),
    "1xh100": Preset(
        name="1xh100", nproc=1, env={"TTT_ENABLED": "1"}, track="non_record_16mb", hardware="1xH100 80GB",
        description="the record configuration on one GPU (8 micro-batches per step, ~1/8 of the steps)"),
    "tiny-cpu": Preset(
        name="tiny-cpu", nproc=1, env=TINY_CPU_ENV, track="non_record_16mb", hardware="CPU",
        synthetic={"vocab_size": 512, "train_tokens": 400_000, "val_tokens": 32_768},
        description="a 6-layer, 64-wide model of the same architecture on synthetic data, for CI"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_hparams(name: str, extra_env: dict | None = None):
    """The Hyperparameters a run of preset `name` would see: the class body is evaluated against
    the preset's environment alone (not the current process environment)."""
    import importlib.util
    import os
    from pathlib import Path
    from unittest import mock

    env = {**get_preset(name).env, **(extra_env or {}), "RUN_ID": f"{name}_describe"}
    spec = importlib.util.spec_from_file_location("_pgolf_preset_hparams", Path(__file__).with_name("hparams.py"))
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, env, clear=True):
        spec.loader.exec_module(module)
        return module.Hyperparameters()


def describe_preset(name: str) -> str:
    """The `Hyperparameters:` dump and the parameter count of a preset, without running it."""
    from .logging_fmt import hparams_dump_lines
    from .model import count_parameters

    h = preset_hparams(name)
    h.validate()
    return "\n".join(hparams_dump_lines(h) + [f"model_params:{count_parameters(h)}"])
