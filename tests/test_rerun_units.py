"""Fast checks of the rerun building blocks: synthetic data, the probes' arithmetic, the analyzer's
helpers, static script inspection, options and the static/dynamic comparison (nothing is run)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auditor.models import Condition, Confidence, Severity
from auditor.rerun import probes as P
from auditor.rerun import synthetic
from auditor.rerun.trace_analysis import _calibrate, ranges
from auditor.rerun.workspace import env_reads, find_entry, inspect_script, tiny_overrides

# --- synthetic data ---------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [64, 256, 1024, 8192])
def test_tokenizer_has_exact_vocab_and_challenge_ids(tmp_path, vocab):
    spm = pytest.importorskip("sentencepiece")
    path = tmp_path / "t.model"
    path.write_bytes(synthetic.tokenizer_model_bytes(vocab))
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.vocab_size() == vocab
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert sp.is_control(1) and sp.is_unknown(3)
    assert sp.piece_to_id("\u2581") != sp.unk_id()  # byte counting needs '▁' as its own piece
    assert sp.is_byte(4) == (vocab >= 269)
    for i, (piece, kind) in enumerate(synthetic.piece_table(vocab)):
        assert sp.id_to_piece(i) == piece


def test_support_is_ordinary_pieces_and_reproducible():
    a = synthetic.default_support(1024, 64, seed=3)
    b = synthetic.default_support(1024, 64, seed=3)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 64
    table = synthetic.piece_table(1024)
    assert all(table[i][1] == synthetic.NORMAL and table[i][0] != synthetic.SPACE for i in a)
    with pytest.raises(ValueError):
        synthetic.default_support(16, 64)


def test_gibbs_stream_layout_and_shard_roundtrip(tmp_path):
    support = synthetic.default_support(256, 32)
    s = synthetic.gibbs_stream(1025, support, doc_len=100, seed=1)
    assert s.tokens.dtype == np.uint16 and len(s.tokens) == 1025
    assert np.array_equal(s.bos_positions, np.arange(0, 1025, 100))
    non_bos = np.delete(s.tokens, s.bos_positions)
    assert set(non_bos.tolist()) <= set(support.tolist())
    # i.i.d. uniform: every support id shows up with roughly equal frequency
    counts = np.bincount(non_bos, minlength=256)[support]
    assert counts.min() > 0 and counts.max() < 4 * counts.mean()
    path = tmp_path / "fineweb_val_000000.bin"
    synthetic.write_shard(path, s.tokens)
    assert path.stat().st_size == 1024 + 2 * 1025
    assert np.array_equal(synthetic.read_shard(path), s.tokens)


def test_resample_after_keeps_prefix_and_documents():
    support = synthetic.default_support(256, 32)
    s = synthetic.gibbs_stream(2049, support, doc_len=128, seed=2)
    t = 1031
    b = synthetic.resample_after(s, t, seed=5)
    assert np.array_equal(b.tokens[:t], s.tokens[:t])
    assert np.array_equal(b.bos_positions, s.bos_positions)
    tail = np.setdiff1d(np.arange(t, 2049), s.bos_positions)
    assert (b.tokens[tail] != s.tokens[tail]).all()


def test_byte_sidecar_matches_lut_rule():
    vocab = 256
    table = synthetic.piece_table(vocab)
    space_id = next(i for i, (p, k) in enumerate(table) if p.startswith(synthetic.SPACE) and len(p) > 1)
    plain_id = next(i for i, (p, k) in enumerate(table) if k == synthetic.NORMAL and not p.startswith(synthetic.SPACE))
    tokens = np.array([1, space_id, space_id, plain_id, 1, space_id], dtype=np.uint16)
    b = synthetic.byte_sidecar(tokens, vocab)
    n = len(table[space_id][0]) - 1
    assert b.tolist() == [0, n, n + 1, len(table[plain_id][0]), 0, n]  # no space right after BOS


# --- probes arithmetic -------------------------------------------------------------------------


def test_gibbs_floor_and_tolerance():
    assert P.gibbs_floor(64, 1000, 0) == pytest.approx(math.log(64))
    assert P.gibbs_floor(64, 1000, 10) == pytest.approx(math.log(64) * 0.99)
    assert P.gibbs_tolerance(1_000_000, 1e-6) == pytest.approx(13.8155 / 1e6 + P.NUMERIC_SLACK, rel=1e-3)
    bos = np.arange(0, 4097, 256)
    traced = P.gibbs_check("r", "x", True, math.log(32) - 0.05, 32, bos, 4097, traced=(4096, 16))
    assert traced.violated and traced.counts_from == "trace"
    assert traced.margin == pytest.approx(-0.05 + math.log(32) * 16 / 4096)
    ok = P.gibbs_check("r", "x", True, math.log(32) + 0.01, 32, bos, 4097)
    assert not ok.violated and ok.counts_from == "assumed"
    # untraced: tolerance sized for a quarter of the targets
    assert ok.tolerance == pytest.approx(P.gibbs_tolerance(4096 // 4))


def test_gibbs_bound_holds_for_a_random_compliant_predictor():
    """Ville: a causal, normalized predictor's mean NLL on uniform i.i.d. tokens falls below
    ln S - ln(1/alpha)/n with probability <= alpha. Simulate lucky but legal predictors."""
    rng = np.random.default_rng(0)
    s, n = 16, 4000
    worst = math.inf
    for _ in range(200):
        q = rng.dirichlet(np.full(s, 50.0))  # close to uniform: the hardest case for the floor
        x = rng.integers(0, s, size=n)
        mean_nll = float(-np.log(q[x]).mean())
        worst = min(worst, mean_nll - math.log(s))
    assert worst > -P.gibbs_tolerance(n)


def test_compare_prefix():
    a = {1: 3.0, 2: 3.1, 5: 2.0, 9: 1.0}
    same = P.compare_prefix(a, dict(a), t=6)
    assert same.compared == 3 and not same.violated
    b = dict(a)
    b.update({2: 3.2, 9: 7.0})  # position 9 is after t: ignored
    diff = P.compare_prefix(a, b, t=6)
    assert diff.violated and diff.first_position == 2 and diff.differing == 1
    assert P.compare_prefix({}, {}, t=3).note


def test_normalization_check_mass():
    c = P.NormalizationCheck(position=5, tokens=[1, 2], scores=[math.log(2), math.log(2)])
    assert c.mass == pytest.approx(1.0) and not c.violated
    c.scores.append(math.log(4))
    assert c.violated


def test_alternative_tokens_and_probe_positions():
    support = np.arange(10, 42)
    alts = P.alternative_tokens(support, 17, 5)
    assert len(set(alts)) == 5 and 17 not in alts and set(alts) <= set(support.tolist())
    bos = np.arange(0, 2049, 128)
    pos = P.probe_positions(2049, bos, 64)
    assert len(pos) == 64 and not set(pos) & set(bos.tolist()) and min(pos) >= 1


# --- analyzer helpers --------------------------------------------------------------------------


def test_ranges():
    assert ranges(np.array([5, 6, 7, 9, 12, 13])) == "5-7, 9, 12-13"
    assert ranges(np.array([])) == "none"
    assert "more ranges" in ranges(np.arange(0, 100, 2), limit=3)


def test_calibrate_values_against_printed_number():
    nll = {1: 2.0, 2: 4.0}
    assert _calibrate(nll, 3.0, 3.0)[0] == "nll"
    kind, vals = _calibrate({1: -2.0, 2: -4.0}, -3.0, 3.0)
    assert kind == "log-likelihood" and vals == nll
    kind, vals = _calibrate({1: math.exp(-2.0), 2: math.exp(-4.0)}, 0.07, 3.0)
    assert kind == "probability" and vals[1] == pytest.approx(2.0)
    assert _calibrate({1: 1.0}, 1.0, 5.0) == ("unknown", {})


# --- static inspection of scripts ---------------------------------------------------------------


SCRIPT = '''
import os
def _env_flag(name, default):
    return bool(int(os.environ.get(name, default)))
class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    iterations = int(os.getenv("ITERATIONS", "20000"))
    seq = int(os.environ["TRAIN_SEQ_LEN"])
    ttt = _env_flag("TTT_ENABLED", "0")
    lower = os.environ.get("not_an_env_name", "x")
'''


def test_env_reads_and_tiny_overrides(tmp_path):
    import ast

    reads = env_reads(ast.parse(SCRIPT))
    assert reads == {"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "VOCAB_SIZE": "1024",
                     "ITERATIONS": "20000", "TRAIN_SEQ_LEN": None, "TTT_ENABLED": "0"}
    (tmp_path / "train_gpt.py").write_text(SCRIPT)
    info = inspect_script(tmp_path)
    assert info.vocab_size == 1024 and not info.requires_cuda and info.wrapper is None
    env = tiny_overrides(info, iterations=7, seq_len=64, vocab_size=512, tiny_model=True, device="cpu")
    assert env == {"ITERATIONS": "7", "TRAIN_SEQ_LEN": "64", "VOCAB_SIZE": "512"}  # only names it reads


def test_entry_script_choice(tmp_path):
    from auditor.rerun.workspace import WorkspaceError

    with pytest.raises(WorkspaceError):
        find_entry(tmp_path)
    (tmp_path / "train_alt.py").write_text("print(1)\n")
    assert find_entry(tmp_path) == "train_alt.py"
    (tmp_path / "train_gpt.py").write_text("print(1)\n")
    assert find_entry(tmp_path) == "train_gpt.py"


def test_wrapped_script_runs_its_decoded_payload(tmp_path):
    bundle = pytest.importorskip("reference_impl.bundle")
    script = bundle.build_script("record")
    shipped = bundle.wrap_script(script)
    (tmp_path / "train_gpt.py").write_text(shipped)
    info = inspect_script(tmp_path)
    assert info.wrapper and "b85" in info.wrapper
    assert info.run_text != shipped and "class Hyperparameters" in info.run_text
    assert info.reads("TTT_ENABLED") and info.vocab_size == 8192 and info.caseops


def test_cuda_requirement_is_read_from_the_explicit_refusal(tmp_path):
    (tmp_path / "train_gpt.py").write_text(
        'import torch\nif not torch.cuda.is_available():\n    raise RuntimeError("CUDA is required")\n')
    assert inspect_script(tmp_path).requires_cuda
    (tmp_path / "train_gpt.py").write_text(
        'import torch\nif DEVICE == "cuda":\n    if not torch.cuda.is_available():\n        raise RuntimeError("no GPU")\n')
    assert not inspect_script(tmp_path).requires_cuda


def test_missing_flash_attention_is_shimmed(tmp_path):
    (tmp_path / "train_gpt.py").write_text("from flash_attn_interface import flash_attn_func\n")
    info = inspect_script(tmp_path)
    assert info.missing_modules == ["flash_attn_interface"]


def test_flash_attention_shim_matches_sdpa():
    torch = pytest.importorskip("torch")
    import importlib.util

    from auditor.rerun.workspace import SHIMS_DIR

    spec = importlib.util.spec_from_file_location("fa_shim", SHIMS_DIR / "flash_attn_interface.py")
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    q, k, v = torch.randn(2, 5, 4, 8), torch.randn(2, 5, 2, 8), torch.randn(2, 5, 2, 8)
    out = shim.flash_attn_func(q, k, v, causal=True)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2),
        is_causal=True).transpose(1, 2)
    assert out.shape == q.shape and torch.allclose(out, ref, atol=1e-6)


# --- options, results, static/dynamic comparison ---------------------------------------------


def test_options_accept_the_audit_pipelines_object():
    from auditor.pipeline import AuditOptions
    from auditor.rerun.harness import RerunOptions

    o = RerunOptions.coerce(AuditOptions(rerun=True, rerun_probes=("gibbs",), rerun_timeout_s=120, rerun_device="cuda"))
    assert o.probes == ("gibbs",) and o.timeout_s == 120 and o.device == "cuda" and o.run_timeout_s == 120
    assert RerunOptions.coerce({"probes": ["all"]}).wants("norm")
    assert RerunOptions.coerce(None).wants("trace")


def test_compare_with_static_shows_both_sides():
    from auditor.findings import finding
    from auditor.rerun.harness import RerunResult, compare_with_static

    static = [finding("C301", "static says pre-quant TTT", origin="static")]
    clean = RerunResult(record="r", status="ok", findings=[])
    notes = compare_with_static(static, clean)
    assert [n.rule_id for n in notes] == ["DYN902"] and "C3" in notes[0].message
    assert notes[0].severity == Severity.INFO and notes[0].origin == "dynamic"
    proven = RerunResult(record="r", status="ok", findings=[finding("DYN401", "x", origin="dynamic")])
    notes = compare_with_static([], proven)
    assert len(notes) == 1 and notes[0].data["condition"] == "C4"
    assert compare_with_static(static, RerunResult(record="r", status="failed")) == []


def test_dynamic_rules_are_proof_and_documented():
    import rules

    for rid, cond in [("DYN001", Condition.C1), ("DYN101", Condition.C1), ("DYN201", Condition.C2),
                      ("DYN301", Condition.C3), ("DYN401", Condition.C4), ("DYN501", Condition.HYGIENE)]:
        rule = rules.get(rid)
        assert rule.condition == cond and rule.confidence == Confidence.PROOF and rule.severity == Severity.ERROR
    assert rules.get("DYN900").severity == Severity.WARNING


def test_the_rerun_runs_the_readme_commands_configuration(tmp_path):
    """The submitted configuration is the README's training command: its presets and feature
    switches (an n-gram evaluation turned on there) travel into the rerun; what the harness owns
    (data paths, vocabulary, devices, threads, launcher variables, absolute paths) does not."""
    from auditor.rerun.workspace import submitted_env

    (tmp_path / "README.md").write_text(
        "# x\n\n```bash\nNGRAM_TWO_PASS_ENABLED=1 MODEL_PRESET=frontier_lean SEED=1337 RUN=$SEED \\\n"
        "DATA_PATH=./data/datasets/fineweb10B_sp8192 VOCAB_SIZE=8192 CUDA_VISIBLE_DEVICES=0,1 "
        "OMP_NUM_THREADS=8 NCCL_IB_DISABLE=1 TORCHINDUCTOR_CACHE_DIR=/scratch/x CKPT=/workspace/m.pt "
        "DATASETS_DIR=./datasets/fineweb10B_sp8192_caseops \\\n"
        "torchrun --standalone --nproc_per_node=8 train_gpt.py\n```\n")
    env = submitted_env(tmp_path)
    assert env == {"NGRAM_TWO_PASS_ENABLED": "1", "MODEL_PRESET": "frontier_lean", "SEED": "1337"}
    assert submitted_env(tmp_path / "nowhere") == {}
