"""`pgolf data check`: a data folder is validated before a long run, and every defect is named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from auditor.datacheck import check_data
from auditor.rerun import synthetic

ROOT = Path(__file__).resolve().parents[1]
V = 64


def make_data(root: Path, *, sidecar: bool = True) -> Path:
    ds = root / "datasets" / f"fineweb10B_sp{V}"
    ds.mkdir(parents=True)
    rng = np.random.default_rng(0)
    synthetic.write_shard(ds / "fineweb_train_000000.bin", rng.integers(0, V, 5000))
    val = rng.integers(0, V, 3000)
    synthetic.write_shard(ds / "fineweb_val_000000.bin", val)
    if sidecar:
        synthetic.write_shard(ds / "fineweb_val_bytes_000000.bin", synthetic.byte_sidecar(val, V))
    (root / "tokenizers").mkdir()
    (root / "tokenizers" / f"fineweb_{V}_bpe.model").write_bytes(synthetic.tokenizer_model_bytes(V))
    return ds


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", "data", "check", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)


def test_a_good_folder_passes_with_exit_0(tmp_path):
    make_data(tmp_path)
    report = check_data(tmp_path)
    assert report.ok, report.to_dict()
    assert report.vocab_size == V
    assert {f.kind for f in report.files} == {"train", "val", "val_bytes", "tokenizer"}
    proc = run(str(tmp_path), "-f", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True


def _bad(report, kind: str) -> str:
    (f,) = [f for f in report.files if f.kind == kind]
    assert not f.ok and not report.ok
    return f.detail


def test_each_defect_is_named(tmp_path):
    ds = make_data(tmp_path)
    val = ds / "fineweb_val_000000.bin"
    raw = bytearray(val.read_bytes())
    raw[0:4] = (1234).to_bytes(4, "little")
    val.write_bytes(bytes(raw))
    assert "magic 1234" in _bad(check_data(tmp_path), "val")

    raw[0:4] = (20240520).to_bytes(4, "little")
    val.write_bytes(bytes(raw[:-10]))  # truncated
    assert "truncated or padded" in _bad(check_data(tmp_path), "val")

    synthetic.write_shard(val, np.array([1, 2, V + 5]))  # an id outside the vocabulary
    report = check_data(tmp_path)
    assert f"id {V + 5} is outside the vocabulary of {V}" in _bad(report, "val")
    assert "byte counts for the 3 tokens" in _bad(report, "val_bytes")
    quick = check_data(tmp_path, scan_tokens=False)  # headers only: the id is not looked at
    assert all(f.ok for f in quick.files if f.kind == "val")


def test_missing_pieces_are_problems_of_the_folder(tmp_path):
    ds = make_data(tmp_path, sidecar=False)
    (ds / "fineweb_val_000000.bin").unlink()
    (tmp_path / "tokenizers" / f"fineweb_{V}_bpe.model").unlink()
    report = check_data(tmp_path)
    assert any("no validation shards" in p for p in report.problems)
    assert any("no tokenizer" in p for p in report.problems)
    proc = run(str(tmp_path))
    assert proc.returncode == 4 and "PROBLEMS" in proc.stdout and "no validation shards" in proc.stdout


def test_a_tokenizer_of_another_vocabulary_is_named(tmp_path):
    pytest.importorskip("sentencepiece")
    make_data(tmp_path)
    (tmp_path / "tokenizers" / f"fineweb_{V}_bpe.model").write_bytes(synthetic.tokenizer_model_bytes(2 * V))
    assert f"the data's vocabulary is {V}" in _bad(check_data(tmp_path), "tokenizer")


def test_not_a_folder_is_an_input_error(tmp_path):
    proc = run(str(tmp_path / "missing"))
    assert proc.returncode == 4 and "not a folder" in proc.stderr and "Traceback" not in proc.stderr
