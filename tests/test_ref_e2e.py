"""End to end: `pgolf train --preset tiny-cpu` produces a complete, self-consistent record folder,
and the bundled script also runs under torchrun (2 CPU processes, gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reference_impl.bundle import build_script
from reference_impl.cli import train_command
from reference_impl.presets import TINY_CPU_ENV
from reference_impl.record import parse_run_log
from reference_impl.synthetic import write_synthetic_dataset

pytestmark = pytest.mark.slow
CAP_BYTES = 16_000_000


def build_tiny_cpu_record(out_dir: Path, seeds: list[int] | None = None) -> Path:
    """Run the tiny-cpu preset into `out_dir` (as `pgolf train --preset tiny-cpu --out out_dir`)
    and return the record folder. Extend the assertions on it (e.g. `pgolf audit`) freely."""
    train_command("tiny-cpu", out_dir, seeds=seeds, work_dir=out_dir.parent / "work", quiet=True)
    return out_dir


@pytest.fixture(scope="module")
def tiny_cpu_record(tmp_path_factory) -> Path:
    return build_tiny_cpu_record(tmp_path_factory.mktemp("tiny_cpu") / "record")


def test_record_folder_is_complete(tiny_cpu_record):
    names = sorted(p.name for p in tiny_cpu_record.iterdir())
    assert names == ["README.md", "submission.json", "train_gpt.py", "train_seed1337.log"]
    readme = (tiny_cpu_record / "README.md").read_text()
    assert "python train_gpt.py" in readme and "SEED=1337" in readme and "VOCAB_SIZE=512" in readme


def test_training_converges_and_quantization_is_faithful(tiny_cpu_record):
    log_text = (tiny_cpu_record / "train_seed1337.log").read_text()
    run = parse_run_log(log_text, 1337, "train_seed1337.log")
    assert "Hyperparameters:\n" in log_text and "\n  seed: 1337\n" in log_text
    first_loss, last_loss = run.train_losses[0][1], run.train_losses[-1][1]
    assert last_loss < first_loss - 1.5, run.train_losses
    assert list(run.evals) == ["diagnostic pre-quantization post-ema", "diagnostic quantized",
                               "quantized_sliding_window", "quantized_ttt"]
    pre_loss, quant_loss = run.evals["diagnostic pre-quantization post-ema"][0], run.evals["diagnostic quantized"][0]
    assert abs(quant_loss - pre_loss) < 0.05, (pre_loss, quant_loss)
    assert run.total_eval_time_s is not None and run.reported[0] == "quantized_ttt"


def test_artifact_accounting_matches_the_files(tiny_cpu_record):
    run = parse_run_log((tiny_cpu_record / "train_seed1337.log").read_text(), 1337, "train_seed1337.log")
    code_bytes = (tiny_cpu_record / "train_gpt.py").stat().st_size
    assert run.code_bytes == code_bytes  # regime 1: the shipped file is the counted code
    assert run.artifact_bytes == run.code_bytes + run.model_bytes < CAP_BYTES
    submission = json.loads((tiny_cpu_record / "submission.json").read_text())
    _, val_loss, val_bpb = run.reported
    assert submission["seeds"] == [1337] and submission["track"] == "non_record_16mb"
    assert submission["val_bpb"] == pytest.approx(val_bpb, abs=1e-8)
    assert submission["val_loss"] == pytest.approx(val_loss, abs=1e-8)
    assert submission["seed_results"]["1337"]["artifact_bytes"] == run.artifact_bytes
    assert submission["bytes_total"] == run.artifact_bytes and submission["bytes_code"] == code_bytes


def test_bundled_script_runs_under_torchrun_with_two_cpu_ranks(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", vocab_size=512, train_tokens=60_000, val_tokens=4_096)
    (tmp_path / "train_gpt.py").write_text(build_script("record"))
    env = {**os.environ, **TINY_CPU_ENV, "DATA_DIR": str(data.data_dir), "SEED": "7", "RUN_ID": "ddp",
           "ITERATIONS": "6", "WARMUP_STEPS": "0", "TTT_CHUNK_TOKENS": "1024", "MAX_WALLCLOCK_SECONDS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train_gpt.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = parse_run_log(proc.stdout, 7, "ddp")
    assert "  world_size: 2" in proc.stdout and "  grad_accum_steps: 1" in proc.stdout
    assert run.reported[0] == "quantized_ttt" and run.artifact_bytes < CAP_BYTES
    # Every rank scored its share and the single-pass check (all-reduced counts) passed.
    assert (tmp_path / "logs" / "ddp.txt").read_text().count("quantized_ttt val_loss:") == 1


def test_pgolf_audit_passes_the_produced_record(tiny_cpu_record, tmp_path):
    """The reference stack's own output is a legal record: the whole audit (static C1-C4 included)
    must PASS it once it sits in the non-record track (a tiny CPU run beats no leaderboard row)."""
    from auditor import intake
    from auditor.models import Severity, Verdict
    from auditor.pipeline import AuditOptions, audit_record

    dest = tmp_path / "records" / "track_non_record_16mb" / "2026-11-01_Reference_TinyCPU"
    shutil.copytree(tiny_cpu_record, dest)
    (rec,) = intake.discover_records(dest)
    audit = audit_record(rec, AuditOptions())
    errors = [f"{f.rule_id} {f.location.short() if f.location else ''}: {f.message}"
              for f in audit.findings if f.severity is Severity.ERROR]
    assert audit.verdict is Verdict.PASS, errors or [f.message for f in audit.findings]
