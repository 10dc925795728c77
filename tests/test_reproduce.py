"""`pgolf reproduce`: the bundled reference record run again at its own configuration, on CPU.

Real runs (the record's own train_gpt.py in the sandbox on synthetic FineWeb-format shards, ~70 s
each here): the record as shipped is REPRODUCED; the same record with its claimed val_bpb edited
down by 0.01 is NOT_REPRODUCED with the per-seed table; a training cap it cannot meet stops it
from outside (INCOMPLETE, the overrun named). Refusals and bad data fail before anything runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditor.errors import ExitCode, PgolfError
from auditor.models import ReproVerdict

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/records/track_non_record_16mb/2026-11-01_Reference_TinyCPU_ScoreFirstTTT"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from reference_impl.synthetic import write_synthetic_dataset

    # the data the example's README names: write_synthetic_dataset(DATA_DIR, 512, 400000, 32768, seed=0)
    out = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(out, vocab_size=512, train_tokens=400_000, val_tokens=32_768, seed=0)
    for p in [out, *out.rglob("*")]:  # read by the sandbox's unprivileged uid (mounted, never copied)
        p.chmod(0o755 if p.is_dir() else 0o644)
    return out


@pytest.fixture(scope="module")
def reproduced(data_dir, tmp_path_factory):
    from auditor.reproduce import ReproOptions, reproduce_record

    logs = tmp_path_factory.mktemp("logs")
    return reproduce_record(EXAMPLE, ReproOptions(data_dir=data_dir, out_dir=logs)), logs


def test_reference_record_is_reproduced(reproduced):
    audit, logs = reproduced
    repro = audit.reproduction
    assert repro.verdict is ReproVerdict.REPRODUCED, repro.reason
    (row,) = repro.seeds
    assert row.seed == 1337 and row.status == "completed"
    assert row.claimed_source == "submission.json seed_results"
    assert abs(row.delta_bpb) <= repro.tolerance_bpb and row.within_tolerance
    assert row.reproduced_label == "quantized_ttt"
    # the artifact measured from the file the run wrote, beside what its log counts
    assert row.model_file and row.model_file.endswith(".ptz")
    assert row.measured_artifact_bytes == pytest.approx(row.reproduced_artifact_bytes, rel=0.01)
    assert row.outside_train_s and row.outside_eval_s and row.reproduced_eval_s
    assert (logs / "reproduce_seed1337.log").is_file()
    assert repro.hardware["torch"].startswith("2.") and repro.hardware["gpu_count"] == 0
    assert repro.tolerance_source.startswith("auto")
    # the command that ran: the README's environment with the data paths moved onto --data
    assert "DATA_DIR=./data/" not in repro.command and "SEED=1337" in repro.command
    assert repro.findings == []  # the reproduced log breaks no limit
    # a section of the full audit (static analysis included)
    assert audit.compliance is not None and not any(f.rule_id == "HYG010" for f in audit.findings)


def test_reproduction_renders_in_every_format(reproduced):
    from auditor import __version__, report
    from auditor.models import AuditReport

    audit, _ = reproduced
    full = AuditReport(tool_version=__version__, generated_at="2026-12-04T00:00:00+00:00", verdict=audit.verdict,
                       records=[audit])
    text = report.render(full, "text", color=False)
    assert "Reproduction" in text and "REPRODUCED" in text and "1337" in text
    md = report.render(full, "markdown")
    assert "**Reproduction:** `REPRODUCED`" in md and "| seed | status |" in md
    data = json.loads(report.render(full, "json"))
    assert data["schema_version"] == "2.1"
    assert data["records"][0]["reproduction"]["seeds"][0]["within_tolerance"] is True


def test_edited_claim_is_not_reproduced(reproduced, tmp_path):
    """The record with its claimed val_bpb edited down by 0.01, compared with the logs the real run
    above produced (`--from-logs`: the comparison is the same code, nothing runs twice)."""
    _, logs = reproduced
    record = tmp_path / "records" / "track_non_record_16mb" / EXAMPLE.name
    shutil.copytree(EXAMPLE, record)
    sub = json.loads((record / "submission.json").read_text())
    sub["val_bpb"] = round(sub["val_bpb"] - 0.01, 8)
    sub["seed_results"]["1337"]["val_bpb"] = round(sub["seed_results"]["1337"]["val_bpb"] - 0.01, 8)
    (record / "submission.json").write_text(json.dumps(sub, indent=2))
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "auditor", "reproduce", str(record), "--from-logs", str(logs),
                           "-f", "json", "-o", str(out)], check=False, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    repro = json.loads(out.read_text())["records"][0]["reproduction"]
    assert repro["verdict"] == "NOT_REPRODUCED"
    (row,) = repro["seeds"]
    assert row["claimed_bpb"] == sub["seed_results"]["1337"]["val_bpb"]
    assert row["delta_bpb"] == pytest.approx(0.01, abs=0.0015) and row["within_tolerance"] is False
    assert "seed 1337" in repro["reason"] and "tolerance" in repro["reason"]
    assert repro["source"] == f"logs: {logs.resolve()}" and repro["hardware"]["note"].startswith("not run")
    # the record as shipped, against the same logs: reproduced
    same = subprocess.run([sys.executable, "-m", "auditor", "reproduce", str(EXAMPLE), "--from-logs", str(logs)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr[-2000:]


def test_training_cap_is_enforced_from_outside(data_dir, tmp_path):
    from auditor.reproduce import ReproOptions, reproduce_record

    t0 = time.monotonic()
    audit = reproduce_record(EXAMPLE, ReproOptions(data_dir=data_dir, out_dir=tmp_path, train_cap_s=2,
                                                   setup_allowance_s=1))
    repro = audit.reproduction
    assert time.monotonic() - t0 < 60  # stopped, not run to the end (~70 s)
    assert repro.verdict is ReproVerdict.INCOMPLETE
    (row,) = repro.seeds
    assert row.status == "train_cap" and "over the training cap" in row.reason
    assert repro.caps_s["train"] == 2


def test_missing_shard_fails_before_anything_runs(data_dir, tmp_path):
    from auditor.reproduce import ReproOptions, reproduce_record

    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    broken.chmod(0o755)
    for p in broken.rglob("fineweb_val_*.bin"):
        p.unlink()
    with pytest.raises(PgolfError, match="no validation shards") as exc:
        reproduce_record(EXAMPLE, ReproOptions(data_dir=broken, out_dir=tmp_path / "logs"))
    assert exc.value.exit_code == ExitCode.INPUT_ERROR
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_refuses_a_gpu_record_on_a_host_without_gpus(data_dir, tmp_path):
    from auditor.reproduce import ReproOptions, reproduce_record

    record = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, record)
    sub = json.loads((record / "submission.json").read_text())
    sub["hardware"] = "8xH100 80GB SXM"
    (record / "submission.json").write_text(json.dumps(sub))
    with pytest.raises(PgolfError, match=r"ran on 8 GPU\(s\).*--scale-steps") as exc:
        reproduce_record(record, ReproOptions(data_dir=data_dir, out_dir=tmp_path / "logs"))
    assert exc.value.exit_code == ExitCode.USAGE


def test_cli_input_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "auditor", "reproduce", *args], check=False, capture_output=True,
                              text=True, timeout=120)

    missing = run(str(EXAMPLE), "--data", str(tmp_path / "nope"))
    assert missing.returncode == int(ExitCode.INPUT_ERROR) and "data folder not found" in missing.stderr
    neither = run(str(EXAMPLE))
    assert neither.returncode == int(ExitCode.USAGE) and "--from-logs" in neither.stderr
    empty = run(str(EXAMPLE), "--from-logs", str(tmp_path))
    assert empty.returncode == 3  # INCOMPLETE: no log of seed 1337 there
    bad = run(str(EXAMPLE), "--data", str(tmp_path), "--tolerance", "tight")
    assert bad.returncode == int(ExitCode.USAGE)
    seeds = run(str(EXAMPLE), "--data", str(tmp_path), "--seeds", "a,b")
    assert seeds.returncode == int(ExitCode.USAGE)


def test_auto_tolerance_follows_the_claimed_spread():
    from auditor.models import RecordAudit, SeedRun, Verdict
    from auditor.reproduce import TOLERANCE_FLOOR_BPB, tolerance_for

    def audit(bpbs):
        runs = [SeedRun(log_file=f"train_seed{i}.log", seed=i, val_bpb=b, line=1) for i, b in enumerate(bpbs)]
        return RecordAudit(path="x", name="x", verdict=Verdict.PASS, runs=runs)

    tight, _ = tolerance_for(audit([1.0800, 1.0801, 1.0802]), None)
    assert tight == TOLERANCE_FLOOR_BPB
    wide, why = tolerance_for(audit([1.080, 1.084, 1.088]), None)
    assert wide == pytest.approx(2 * 0.004) and "standard deviation" in why
    given, why = tolerance_for(audit([1.08]), 0.01)
    assert given == 0.01 and why.startswith("given")


def test_phase_watch_stops_a_partial_run_at_its_step(tmp_path):
    from auditor.reproduce import ReproOptions, _PhaseWatch

    out = tmp_path / "stdout.txt"
    out.write_text("1/100 train_loss: 6.0\n")
    watch = _PhaseWatch(ReproOptions(data_dir=tmp_path), target_step=50)
    assert watch(out) is None
    with out.open("a") as f:  # the step line arrives in two writes: only whole lines count
        f.write("step:25/100 val_loss:4.1000 val_bpb:2.0000\nstep:50/100 val_loss:3.5")
    assert watch(out) is None
    with out.open("a") as f:
        f.write("000 val_bpb:1.7000\n")
    reason = watch(out)
    assert reason and "step 50" in reason and watch.status == "stopped_at_step"
    assert watch.step_val == (50, 3.5, 1.7)


def test_phase_watch_eval_cap(tmp_path):
    from auditor.reproduce import ReproOptions, _PhaseWatch

    out = tmp_path / "stdout.txt"
    out.write_text("Serialized model: 100 bytes\n")
    watch = _PhaseWatch(ReproOptions(data_dir=tmp_path, eval_cap_s=0.2), target_step=None)
    assert watch(out) is None and watch.train_end_at is not None
    time.sleep(0.3)
    reason = watch(out)
    assert reason and "over the evaluation cap" in reason and watch.status == "eval_cap"


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() != 0,
                    reason="the sandbox switches to an unprivileged uid only when pgolf runs as root")
def test_private_data_folder_is_refused_with_the_fix(data_dir, tmp_path):
    from auditor.reproduce import ReproOptions, reproduce_record

    private = tmp_path / "data"
    shutil.copytree(data_dir, private)
    private.chmod(0o700)
    with pytest.raises(PgolfError, match=r"not readable by the sandbox's unprivileged user.*chmod -R o\+rX"):
        reproduce_record(EXAMPLE, ReproOptions(data_dir=private, out_dir=tmp_path / "logs"))


def test_reference_flag_runs_the_bundled_reference_script(data_dir):
    """--reference: the reference stack's own single-file script replaces the record's."""
    from auditor.options import AuditOptions
    from auditor.pipeline import audit_paths
    from auditor.reproduce import ReproOptions, _plan
    from reference_impl.bundle import build_script

    audit = audit_paths([EXAMPLE], AuditOptions(static=False)).records[0]
    plan = _plan(EXAMPLE, audit, ReproOptions(data_dir=data_dir, reference=True))
    assert plan.script.parent != EXAMPLE and plan.script.read_text() == build_script("record")
    assert plan.seeds == [1337] and plan.nproc == 1
    env = plan.env_by_seed[1337]
    assert env["SEED"] == "1337" and env["DATA_DIR"] == str(data_dir.resolve()) + "/"
    assert env["TOKENIZER_PATH"].startswith(str(data_dir.resolve()))
