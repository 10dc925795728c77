"""Entry point of the record script: train -> quantize -> write artifact -> evaluate.

Evaluations after the artifact is written (each on a freshly deserialized model):
  diagnostic quantized        plain non-overlapping blocks (always)
  quantized_sliding_window    SLIDING_WINDOW_ENABLED=1 (stride EVAL_STRIDE)
  quantized_ngram_mix         NGRAM_MIX_ENABLED=1 (normalized n-gram mixture over sliding windows)
  quantized_ttt               TTT_ENABLED=1, TTT_MODE=chunked (score-first chunked TTT)
  quantized_ttt_lora          TTT_ENABLED=1, TTT_MODE=doc (per-document score-then-step)
  quantized_ttt_phased        TTT_ENABLED=1, TTT_MODE=phased (doc mode + global SGD phases)
The last line printed is the reported score; total_eval_time covers all of them.
"""

import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .artifact import deserialize, serialize
from .evaluate import ValidationData, eval_val, eval_val_sliding, sync_device, timed_eval
from .hparams import Hyperparameters
from .logging_fmt import configure_logging, hparams_dump_lines, log
from .ngram_mix import eval_val_ngram_mix
from .train import compile_wanted, seed_everything, train_model
from .ttt import eval_val_ttt, eval_val_ttt_doc, eval_val_ttt_phased


def resolve_device(h) -> torch.device:
    kind = h.device_kind
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("DEVICE=cuda but no CUDA device is available")
        device = torch.device("cuda", h.local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return device
    return torch.device("cpu")


def ttt_eval_for(mode: str):
    """(log label, evaluator) of a TTT_MODE. Looked up at call time, not stored in a table, so a
    name rebound later in the script (the broken test variants) is the one that runs."""
    if mode == "doc":
        return "quantized_ttt_lora", eval_val_ttt_doc
    if mode == "phased":
        return "quantized_ttt_phased", eval_val_ttt_phased
    return "quantized_ttt", eval_val_ttt


def load_eval_model(h, device):
    """The artifact's weights in a fresh model, recurrence on (as trained at the end)."""
    model = deserialize(h, device)
    model.looping_active = h.num_loops > 0
    if compile_wanted(h, device):
        model.forward_logits = torch.compile(model.forward_logits)
    return model


def run_quantized_evals(h, device, val_data) -> list[dict]:
    results = [timed_eval("diagnostic quantized", device, eval_val, h, device, val_data, load_eval_model(h, device))]
    if h.sliding_window_enabled:
        results.append(timed_eval("quantized_sliding_window", device, eval_val_sliding, h, device, val_data,
                                  load_eval_model(h, device)))
    if h.ngram_mix_enabled:
        results.append(timed_eval("quantized_ngram_mix", device, eval_val_ngram_mix, h, device, val_data,
                                  load_eval_model(h, device)))
    if h.ttt_enabled:
        label, fn = ttt_eval_for(h.ttt_mode)
        results.append(timed_eval(label, device, fn, h, device, val_data, load_eval_model(h, device)))
    return results


def log_run_header(h, code: str) -> None:
    log("=" * 100, console=False)
    log("Source code:", console=False)
    log(code, console=False)
    log("=" * 100, console=False)
    for line in hparams_dump_lines(h):
        log(line)
    log(f"Running Python {sys.version}", console=False)
    log(f"Running PyTorch {torch.__version__}", console=False)
    if torch.cuda.is_available():
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False)
        log(smi.stdout, console=False)
    log("=" * 100, console=False)


def train_and_eval(h, device, code: str) -> list[dict]:
    seed_everything(h.seed)
    val_data = ValidationData.load(h, device)
    log(f"train_shards: {len(list(Path(h.datasets_dir).glob('fineweb_train_*.bin')))}")
    log(f"val_tokens: {val_data.num_targets}")
    log(f"val_bytes_source: {val_data.byte_source}")

    model, info = train_model(h, device, val_data)
    serialize(h, model, code, device)
    sync_device(device)
    log(f"artifact_production_time: {1000.0 * (time.perf_counter() - info['t_start']):.0f}ms "
        f"(training + GPTQ + compression)")
    timed_eval("diagnostic pre-quantization post-ema", device, eval_val, h, device, val_data, model)
    del model
    if h.distributed:
        dist.barrier()

    t0 = time.perf_counter()
    results = run_quantized_evals(h, device, val_data)
    log(f"total_eval_time:{time.perf_counter() - t0:.1f}s")
    return results


def main() -> None:
    h = Hyperparameters()
    h.validate()
    if h.world_size <= 0 or 8 % h.world_size:
        raise ValueError(f"WORLD_SIZE={h.world_size} must divide 8")
    device = resolve_device(h)
    if h.distributed:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    configure_logging(h.logfile, h.is_main_process)
    code = Path(__file__).read_text(encoding="utf-8")
    log_run_header(h, code)
    try:
        train_and_eval(h, device, code)
        if h.distributed:
            dist.barrier()  # no rank tears the group down while another is still in a collective
    finally:
        if h.distributed:
            dist.destroy_process_group()
