"""Reference stack on one device: training throughput, convergence, quantization and eval speed.

Three measurements, all in-process with the reference_impl modules:
  throughput   tokens/s of full training steps (forward, backward, Muon + AdamW) per model size
  convergence  the tiny-cpu preset end to end on synthetic data: loss curve, pre/post-quantization
               val_bpb, GPTQ + brotli time, plain / sliding / TTT eval throughput
  (GPU only)   the record shape (11L x 512, vocab 8192) throughput when --device cuda is available
Writes bench/results/ref_throughput.json.

    python bench/ref_throughput.py [--device auto|cpu|cuda] [--threads N] [--steps 20]

Note: no GPU was available when the committed results were taken; they are CPU figures only.
CPU numbers on a shared machine depend on the load: the load average is recorded next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reference_impl.artifact import deserialize, serialize
from reference_impl.data import TrainLoader
from reference_impl.evaluate import ValidationData, autocast_for, eval_val, eval_val_sliding, sync_device
from reference_impl.hparams import Hyperparameters
from reference_impl.logging_fmt import configure_logging
from reference_impl.model import GPT
from reference_impl.muon import OptimizerSet
from reference_impl.presets import TINY_CPU_ENV, preset_hparams
from reference_impl.synthetic import write_synthetic_dataset
from reference_impl.train import seed_everything, train_model
from reference_impl.ttt import eval_val_ttt

SIZES = {  # name -> overrides of the tiny-cpu preset (same architecture, other widths)
    "tiny-cpu (6L x 64)": {},
    "small (8L x 128, seq 256)": {"num_layers": 8, "model_dim": 128, "rope_dims": 16, "xsa_last_n": 8,
                                  "loop_start": 3, "loop_end": 4, "parallel_residual_start": 5,
                                  "train_seq_len": 256, "rope_train_seq_len": 256, "train_batch_tokens": 8192},
}
RECORD_SHAPE = {"train_seq_len": 2048, "train_batch_tokens": 2048 * 8, "grad_accum_override": 1}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def timed(device, fn):
    sync_device(device)
    t0 = time.perf_counter()
    out = fn()
    sync_device(device)
    return out, time.perf_counter() - t0


def train_throughput(h: Hyperparameters, device, steps: int, warmup: int = 2) -> dict:
    """Full optimizer steps with recurrence on (the slower, late-training regime)."""
    seed_everything(0)
    model = GPT(h).to(device)
    model.looping_active = h.num_loops > 0
    optimizers = OptimizerSet(h, model)
    loader = TrainLoader(h.train_files, h.train_seq_len, seed=0)
    seqs = h.train_batch_tokens // h.train_seq_len

    def step():
        x, y = loader.next_batch(seqs, device)
        with autocast_for(device):
            loss = model(x, y)
        loss.backward()
        optimizers.step()

    for _ in range(warmup):
        step()
    _, seconds = timed(device, lambda: [step() for _ in range(steps)])
    return {"params": sum(p.numel() for p in model.parameters()), "tokens_per_step": seqs * h.train_seq_len,
            "steps": steps, "ms_per_step": round(1000 * seconds / steps, 1),
            "train_tokens_per_s": round(steps * seqs * h.train_seq_len / seconds)}


def convergence(h: Hyperparameters, device, workdir: Path) -> dict:
    """The tiny-cpu preset's whole pipeline, timed stage by stage."""
    configure_logging(None, True)
    h.model_path = str(workdir / "final_model.pt")
    h.quantized_model_path = str(workdir / "final_model.int6.ptz")
    seed_everything(h.seed)
    val_data = ValidationData.load(h, device)
    (model, info), train_s = timed(device, lambda: train_model(h, device, val_data))
    pre, _ = timed(device, lambda: eval_val(h, device, val_data, model))
    sizes, quant_s = timed(device, lambda: serialize(h, model, "# bench\n", device))
    results = {"steps": info["steps"], "train_s": round(train_s, 1), "train_loss_curve": info["train_losses"],
               "train_tokens_per_s": round(info["steps"] * h.train_batch_tokens / (info["train_time_ms"] / 1000)),
               "pre_quant": {"val_loss": round(pre[0], 4), "val_bpb": round(pre[1], 4)},
               "gptq_and_compress_s": round(quant_s, 1), "model_bytes": sizes["model_bytes"]}
    for label, fn in (("quantized", eval_val), ("sliding", eval_val_sliding), ("ttt", eval_val_ttt)):
        eval_model = deserialize(h, device)
        eval_model.looping_active = h.num_loops > 0
        (loss, bpb), seconds = timed(device, lambda fn=fn, m=eval_model: fn(h, device, val_data, m))
        results[label] = {"val_loss": round(loss, 4), "val_bpb": round(bpb, 4), "seconds": round(seconds, 2),
                          "scored_tokens_per_s": round(val_data.num_targets / seconds)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per throughput size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ref_throughput.json")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: no CUDA device available")
    device = torch.device("cuda" if cuda else "cpu")
    torch.set_num_threads(args.threads)

    report = {"benchmark": "reference_impl training/eval throughput and convergence",
              "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "command": " ".join(["python", "bench/ref_throughput.py", *sys.argv[1:]]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "device": str(device),
                          "gpu": torch.cuda.get_device_name(0) if cuda else None,
                          "load_average_start": load_average()},
              "note": None if cuda else "No GPU was available for this run: CPU figures only. The record "
                                        "configuration (8xH100, 600 s) could not be measured here."}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_dataset(Path(tmp) / "data", vocab_size=512, train_tokens=400_000, val_tokens=32_768)
        base = preset_hparams("tiny-cpu", {"DATA_DIR": str(data.data_dir)})
        report["throughput"] = {}
        for name, overrides in SIZES.items():
            report["throughput"][name] = train_throughput(base.replace(**overrides), device, args.steps)
            print(name, report["throughput"][name], flush=True)
        if cuda:
            record = preset_hparams("1xh100", {"DATA_DIR": str(data.data_dir)}).replace(vocab_size=512, **RECORD_SHAPE)
            report["throughput"]["record shape (11L x 512, vocab 512 data)"] = train_throughput(record, device, 10)
        report["convergence_tiny_cpu"] = convergence(base, device, Path(tmp))
        print("convergence", report["convergence_tiny_cpu"], flush=True)
    report["machine"]["load_average_end"] = load_average()
    report["tiny_cpu_env"] = TINY_CPU_ENV
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
