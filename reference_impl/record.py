"""Produce a complete record folder by running the bundled script, as a submitter would.

out/
  train_gpt.py        the bundle (its size is the counted code, regime 1; or the LZMA wrapper)
  train_seed<N>.log   stdout+stderr of each seed's run
  submission.json     schema family D (seeds, seed_results, mean val_bpb, bytes_total, ...)
  README.md           results, the exact command, techniques, compliance notes
Runs happen in a work directory outside `out` (the checkpoints and internal logs stay there).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .bundle import build_script, wrap_script
from .presets import Preset, get_preset, preset_hparams
from .synthetic import write_synthetic_dataset

FINAL_RE = re.compile(r"^(?P<label>[A-Za-z][\w:+\-. ]*?) val_loss:(?P<loss>[-\d.eE+naif]+) "
                      r"val_bpb:(?P<bpb>[-\d.eE+naif]+) eval_time:(?P<ms>\d+)ms$")
TRAIN_RE = re.compile(r"^(?P<step>\d+)/(?P<iters>\d+) train_loss: (?P<loss>\S+) train_time: (?P<m>[\d.]+)m tok/s: \d+$")
TOTAL_RE = re.compile(r"^Total submission size (?P<fmt>\S+): (?P<n>\d+) bytes$")
MODEL_RE = re.compile(r"^Serialized model (?P<fmt>\S+): (?P<n>\d+) bytes$")
CODE_RE = re.compile(r"^Code size: (?P<n>\d+) bytes$")
STOP_RE = re.compile(r"^stopping_early: wallclock_cap train_time: (?P<ms>\d+)ms step: (?P<step>\d+)/\d+$")
EVAL_TOTAL_RE = re.compile(r"^total_eval_time:(?P<s>[\d.]+)s$")
PRODUCTION_RE = re.compile(r"^artifact_production_time: (?P<ms>\d+)ms")
DEFAULT_SEEDS = {"record-8xh100": [42, 314, 999]}


class RecordBuildError(Exception):
    """A run failed or its log lacks what a record needs; the message says which and why."""


@dataclass
class RunSummary:
    """What one seed's log says (our own log format, parsed the way an auditor would)."""

    seed: int
    log_file: str
    evals: dict = field(default_factory=dict)  # label -> (val_loss, val_bpb, eval_time_ms), in log order
    train_losses: list = field(default_factory=list)  # (step, loss)
    artifact_bytes: int | None = None
    model_bytes: int | None = None
    code_bytes: int | None = None
    stop_step: int | None = None
    artifact_production_ms: int | None = None
    total_eval_time_s: float | None = None

    def check_complete(self) -> None:
        if self.artifact_bytes is None or self.code_bytes is None:
            raise RecordBuildError(f"{self.log_file} has no size lines")
        self.reported  # noqa: B018 -- raises when there is no reported metric

    @property
    def reported(self) -> tuple[str, float, float]:
        """(label, val_loss, val_bpb) of the last final-metric line that is not a diagnostic."""
        for label in reversed(list(self.evals)):
            if not label.startswith("diagnostic"):
                return (label, *self.evals[label][:2])
        raise RecordBuildError(f"{self.log_file}: no reported (non-diagnostic) final metric line")


def parse_run_log(text: str, seed: int, log_file: str) -> RunSummary:
    run = RunSummary(seed=seed, log_file=log_file)
    for line in text.splitlines():
        line = line.rstrip()
        if m := FINAL_RE.match(line):
            run.evals[m["label"]] = (float(m["loss"]), float(m["bpb"]), int(m["ms"]))
        elif m := TRAIN_RE.match(line):
            run.train_losses.append((int(m["step"]), float(m["loss"])))
        elif m := TOTAL_RE.match(line):
            run.artifact_bytes = int(m["n"])
        elif m := MODEL_RE.match(line):
            run.model_bytes = int(m["n"])
        elif m := CODE_RE.match(line):
            run.code_bytes = int(m["n"])
        elif m := STOP_RE.match(line):
            run.stop_step = int(m["step"])
        elif m := EVAL_TOTAL_RE.match(line):
            run.total_eval_time_s = float(m["s"])
        elif m := PRODUCTION_RE.match(line):
            run.artifact_production_ms = int(m["ms"])
    return run


@dataclass
class RecordResult:
    out: Path
    preset: str
    variant: str
    runs: list[RunSummary]
    submission: dict
    data_dir: Path


def run_command(nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train_gpt.py"]
    return [sys.executable, "train_gpt.py"]


def shell_command(preset: Preset, nproc: int, seed: int, data_dir: str, extra_env: dict) -> str:
    """The command line a reader of the README would type."""
    env = " ".join(f"{k}={v}" for k, v in {"DATA_DIR": data_dir, "SEED": seed, **preset.env, **extra_env}.items())
    runner = (f"torchrun --standalone --nproc_per_node={nproc} train_gpt.py" if nproc > 1
              else "python train_gpt.py")
    return f"{env} \\\n  {runner}"


def _run_seed(preset: Preset, nproc: int, seed: int, run_dir: Path, script_path: Path, data_dir: Path,
              log_path: Path, extra_env: dict, echo) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(script_path, run_dir / "train_gpt.py")
    env = {**os.environ, **preset.env, **extra_env, "DATA_DIR": str(data_dir), "SEED": str(seed),
           "RUN_ID": f"{preset.name}_seed{seed}"}
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(run_command(nproc), cwd=run_dir, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout:
            log_file.write(line)
            if echo:
                echo(line.rstrip("\n"))
        code = proc.wait()
    if code != 0:
        tail = "".join(log_path.read_text(encoding="utf-8").splitlines(keepends=True)[-25:])
        raise RecordBuildError(f"seed {seed} failed with exit code {code}; last lines of {log_path}:\n{tail}")


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 8)


def make_submission(preset: Preset, variant: str, runs: list[RunSummary], torch_version: str) -> dict:
    label = runs[0].reported[0]
    bpbs = [r.reported[2] for r in runs]
    losses = [r.reported[1] for r in runs]
    broken = variant != "record"
    submission = {
        "author": "pgolf reference implementation",
        "github_id": "pgolf",
        "name": f"pgolf reference stack ({preset.name})" + (f" — BROKEN VARIANT {variant}" if broken else ""),
        "blurb": (f"DELIBERATELY NON-COMPLIANT TEST SUBJECT ({variant}); not a submission. " if broken else "")
        + f"Reference re-implementation of the #1394 -> #1493 record stack, {preset.description}. "
        + f"Reported metric: {label}.",
        "date": date.today().isoformat(),
        "track": preset.track,
        "val_bpb": _mean(bpbs),
        "val_loss": _mean(losses),
        "seeds": [r.seed for r in runs],
        "seed_results": {str(r.seed): {"val_bpb": round(r.reported[2], 8), "val_loss": round(r.reported[1], 8),
                                       "artifact_bytes": r.artifact_bytes,
                                       "steps": (r.stop_step or (r.train_losses[-1][0] if r.train_losses else None))}
                         for r in runs},
        "bytes_total": max(r.artifact_bytes for r in runs),
        "bytes_code": runs[0].code_bytes,
        "hardware": preset.hardware,
        "pytorch_version": torch_version,
        "technique_summary": "SP tokenizer + 11L/512 GPT (GQA 8/4, MLP4x LeakyReLU(0.5)^2, partial RoPE 16, QK-norm + "
                             "QK gain, XSA, U-Net skip gates, 3-layer depth recurrence, parallel residuals, BOS-masked "
                             "SmearGate) + Muon(row-normalized)/AdamW + EMA + GPTQ SDClip int6/int8 + brotli + "
                             "score-first TTT",
        "compliance": {"train_under_600s": True, "artifact_under_16mb": True, "eval_under_600s": True,
                       "score_first_ttt": True, "no_slot": True, "no_pre_quant_ttt": True,
                       "no_ngram_cache": True, "smeargate_bos_fix": True},
    }
    if len(bpbs) > 1:
        submission["val_bpb_std"] = round(statistics.stdev(bpbs), 8)
    return submission


def make_readme(preset: Preset, variant: str, runs: list[RunSummary], submission: dict, nproc: int,
                data_note: str, extra_env: dict) -> str:
    label = runs[0].reported[0]
    h = preset_hparams(preset.name, extra_env)
    rows = "\n".join(f"| {r.seed} | {r.reported[2]:.8f} | {r.reported[1]:.8f} | {r.artifact_bytes:,} |" for r in runs)
    warning = (f"\n> **DELIBERATELY NON-COMPLIANT TEST SUBJECT** (`{variant}`, see `reference_impl/broken/`). "
               "It exists to exercise the auditor and must never be submitted.\n" if variant != "record" else "")
    return f"""# {submission['name']}
{warning}
**val_bpb = {submission['val_bpb']:.8f}** (mean of {len(runs)} seed(s), `{label}`) | {preset.hardware}

| Seed | val_bpb | val_loss | Artifact bytes |
|------|---------|----------|----------------|
{rows}

Artifact = code bytes (`train_gpt.py` itself, {submission['bytes_code']:,} bytes) + compressed model bytes,
as printed on the `Total submission size quantized+brotli` line of each log.

## Run

{data_note}

```bash
{shell_command(preset, nproc, runs[0].seed, "./data/", extra_env)}
```

The script reads everything from environment variables (`class Hyperparameters`); the values above
are the ones that differ from its defaults. `pgolf train --preset {preset.name} --out DIR` regenerates
this folder.

## What it does

- Model: {h.num_layers} layers x {h.model_dim}, vocab {h.vocab_size}, tied embeddings, {h.num_heads} query /
  {h.num_kv_heads} KV heads, MLP x{h.mlp_mult:g} with LeakyReLU({h.leaky_relu_slope:g})^2, partial RoPE
  ({h.rope_dims} dims), RMS-normed Q/K with a learnable gain (init {h.qk_gain_init:g}), XSA, U-Net skips with
  sigmoid gates, depth recurrence (layers {h.loop_start}-{h.loop_end} looped, on from {h.enable_looping_at:.0%}
  of training), parallel residuals from layer {h.parallel_residual_start}, SmearGate masked at BOS, logit
  softcap {h.logit_softcap:g}.
- Training: Muon (Newton–Schulz, row-normalized) for block matrices, AdamW for embeddings and scalars,
  linear warmdown, EMA weights; the wallclock cap keeps `GPTQ_RESERVE_SECONDS` for calibration.
- Artifact: GPTQ with std-based clipping (int6 matrices, int8 embedding, fp16 small tensors), Hessians
  from training data inside the training budget, byte shuffle + brotli.
- Evaluation: plain, sliding window (stride {h.eval_stride}), and score-first chunked TTT:
  each chunk is scored under `torch.inference_mode()` before the model trains on it; the last chunk is
  never trained on; every target is scored exactly once (checked at run time).

## Included files

- `README.md`, `submission.json`, `train_gpt.py`
{chr(10).join(f'- `{Path(r.log_file).name}`' for r in runs)}
"""


def build_record(preset: str, out: str | Path, seeds: list[int] | None = None, data_dir: str | Path | None = None,
                 nproc: int | None = None, work_dir: str | Path | None = None, wrap: bool = False,
                 overwrite: bool = False, extra_env: dict | None = None, variant: str = "record",
                 echo=None) -> RecordResult:
    """Bundle the script, run every seed, and write the record folder. `variant` other than
    "record" builds a deliberately broken test subject (Python API only, never a CLI preset)."""
    import torch

    spec = get_preset(preset)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RecordBuildError(f"{out} is not empty (pass overwrite=True / --overwrite to replace it)")
    seeds = list(seeds or DEFAULT_SEEDS.get(spec.name, [1337]))
    nproc = nproc or spec.nproc
    if 8 % nproc:
        raise RecordBuildError(f"nproc={nproc} must divide 8 (grad_accum_steps = 8 // WORLD_SIZE)")
    if data_dir is None and spec.synthetic is None:
        raise RecordBuildError(f"preset {spec.name} trains on FineWeb: pass the DATA_DIR holding "
                               f"datasets/fineweb10B_sp8192/ and tokenizers/fineweb_8192_bpe.model")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise RecordBuildError(f"DATA_DIR {data_dir} does not exist")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=f"pgolf_{spec.name}_"))
    work.mkdir(parents=True, exist_ok=True)

    if data_dir is None:
        data_dir = work / "data"
        write_synthetic_dataset(data_dir, seed=0, **spec.synthetic)
        data_note = ("Data: synthetic FineWeb-format shards written by "
                     "`reference_impl.synthetic.write_synthetic_dataset(DATA_DIR, "
                     + ", ".join(f"{k}={v}" for k, v in spec.synthetic.items()) + ", seed=0)`.")
    else:
        data_dir = Path(data_dir).resolve()
        data_note = "Data: the FineWeb shards and tokenizer under DATA_DIR (Family-B layout)."

    extra_env = {k: str(v) for k, v in (extra_env or {}).items()}
    out.mkdir(parents=True, exist_ok=True)
    script = build_script(variant)
    (out / "train_gpt.py").write_text(wrap_script(script) if wrap else script, encoding="utf-8")
    runs = []
    for seed in seeds:
        log_path = out / f"train_seed{seed}.log"
        _run_seed(spec, nproc, seed, work / f"seed{seed}", out / "train_gpt.py", Path(data_dir).resolve(),
                  log_path, extra_env, echo)
        run = parse_run_log(log_path.read_text(encoding="utf-8"), seed, log_path.name)
        run.check_complete()
        runs.append(run)

    submission = make_submission(spec, variant, runs, torch.__version__)
    (out / "submission.json").write_text(json.dumps(submission, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(make_readme(spec, variant, runs, submission, nproc, data_note, extra_env), encoding="utf-8")
    return RecordResult(out=out, preset=spec.name, variant=variant, runs=runs, submission=submission,
                        data_dir=Path(data_dir))
