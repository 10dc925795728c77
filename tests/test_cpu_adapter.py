"""The CPU execution adapter (auditor/rerun/bootstrap/pgolf_cpu.py): a record script written for
CUDA runs unchanged on a CPU host inside the rerun sandbox, the report lists every substitution,
and what the adapter cannot provide stops the run with a message that names it.

The subject (tests/rerun_subjects/cuda_idioms) is our own code using each CUDA-only idiom of the
records; the shims and the tiny-scale choices are checked beside it."""

from __future__ import annotations

import importlib
import importlib.util
import math

import pytest
from test_rerun_support import SUBJECTS, describe, fast_options, needs_torch, run_all

from auditor.rerun import probes as P
from auditor.rerun.harness import TINY_VOCAB, _learned_uniform

SUBJECT = SUBJECTS / "cuda_idioms"
# (what the adapter reports, the idiom in the subject that needs it)
EXPECTED = {
    "torch.cuda.is_available": "the script refuses to start without CUDA",
    "torch.cuda.set_device": "set_device(rank)",
    "torch.cuda.get_device_properties": "device properties logged",
    "torch.cuda.get_device_capability": "capability logged",
    "torch.cuda.device_count": "device count logged",
    "torch.cuda.manual_seed_all": "CUDA seeding",
    "torch.cuda.synchronize": "synchronize before reading the timer",
    "torch.cuda.max_memory_allocated": "memory statistics",
    "torch.cuda.empty_cache": "empty_cache",
    "torch.cuda.Event -> host clock": "CUDA events for timing",
    "torch.compile -> eager": "torch.compile",
    "autocast(cuda) -> autocast(cpu), same dtype": "bf16 autocast for cuda",
    "device='cuda' -> cpu": "factories with device='cuda'",
    "tensor.cuda() -> cpu": "model.cuda()",
    "tensor.to('cuda') -> cpu": ".to(device)",
    "tensor.pin_memory() -> no-op": "pin_memory",
    "init_process_group(nccl) -> one-process in-memory group (collectives are identities)": "NCCL group",
    "triton stand-in: @triton.jit kernels defined (a launch stops the run)": "a Triton kernel defined",
    "switch use_fused_residual = True -> False (its torch path)": "an attribute that selects a kernel",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs():
    needs_torch()
    # vocab_size None: the tiny default (TINY_VOCAB) applies, as in a real audit's rerun
    base = {"probes": ("trace", "gibbs"), "vocab_size": None, "tiny_model": True, "iterations": 150}
    return run_all({
        "ok": (SUBJECT, fast_options(**base)),
        "triton": (SUBJECT, fast_options(**base, env={"USE_TRITON": "1"})),
        "world2": (SUBJECT, fast_options(**base, env={"WORLD_SIZE": "2"})),
    })


def test_cuda_only_script_runs_on_cpu_and_every_substitution_is_listed(runs):
    r = runs["ok"]
    assert r.status == "ok", describe(r)
    run = r.summary["runs"][0]
    used = {a["adaptation"]: a for a in run["adapter"]}
    missing = {k: why for k, why in EXPECTED.items() if k not in used}
    assert not missing, (missing, sorted(used))
    # where each was first used is a line of the script, not of torch or the bootstrap
    assert used["tensor.cuda() -> cpu"]["first"].startswith("train_gpt.py:")
    assert r.summary["script"]["requires_cuda"] is True
    # the script's own Triton switch was turned off, so its torch path ran and no kernel launched
    assert r.summary["overrides"]["USE_TRITON"] == "0"
    # ... and the switch written in the code was turned off as the script was loaded, at its line
    assert r.summary["script"]["kernel_switches"] == ["use_fused_residual"]
    flip = used["switch use_fused_residual = True -> False (its torch path)"]
    line = int(flip["first"].split(":")[1])
    assert "self.use_fused_residual = True" in (SUBJECT / "train_gpt.py").read_text().splitlines()[line - 1]
    assert not any("refused" in k for k in used)
    assert r.summary["vocab_size"] == TINY_VOCAB
    assert "CPU adapter" in r.summary["device_note"]


def test_the_trace_and_gibbs_probe_work_on_the_adapted_run(runs):
    r = runs["ok"]
    lines = {la["label"]: la for la in r.summary["trace"]["lines"]}
    # two lines print one number (4 and 8 decimals): both are attributed to the scores by value
    assert set(lines) == {"final_cuda", "final_cuda_exact"}
    assert all(la["attribution"] == "value" for la in lines.values()), lines
    assert lines["final_cuda_exact"]["reported"]
    n_targets = r.summary["options"]["val_tokens_small"]
    assert lines["final_cuda_exact"]["n_scored"] == n_targets
    gibbs = [g for g in r.summary["gibbs"] if g["reported"]]
    assert gibbs and not gibbs[0]["violated"] and gibbs[0]["counts_from"] == "trace"
    learned = r.summary["learned_uniform"]
    assert learned["learned"], learned
    assert learned["margin_nats"] <= 0.1 and learned["untrained_loss"] == pytest.approx(math.log(TINY_VOCAB), abs=1e-5)
    assert not [f for f in r.findings if f.severity.value != "info"], describe(r)


def test_the_report_lists_the_rerun_and_the_adapter(runs):
    from auditor.report import common

    lines = common.rerun_lines(runs["ok"].summary)
    assert lines[0].startswith("device cpu")
    assert any(line.startswith("run trace: ok") for line in lines)
    assert any(line.startswith("Gibbs (trace): 'final_cuda_exact'") for line in lines)
    adapter = next(line for line in lines if line.startswith("CPU adapter substitutions:"))
    assert "tensor.cuda() -> cpu (first at train_gpt.py:" in adapter


def test_a_triton_kernel_launch_stops_the_run_and_names_the_kernel(runs):
    r = runs["triton"]
    assert r.status == "failed"
    f = next(f for f in r.findings if f.rule_id == "DYN900")
    assert "Triton kernel 'scale_kernel' launched" in f.message, describe(r)
    assert "pgolf[triton]" in f.message


def test_a_multi_process_group_is_refused_with_the_reason(runs):
    r = runs["world2"]
    assert r.status == "failed"
    f = next(f for f in r.findings if f.rule_id == "DYN900")
    assert "2-process group" in f.message and "one process" in f.message, describe(r)


def test_a_short_run_says_the_gibbs_probe_is_weakened():
    # 2 steps cannot learn the support: the rerun says how weak the probe is instead of claiming
    # a sharp margin
    weak = _learned_uniform([P.gibbs_check("trace", "final", True, 4.6, 64, P.np.array([0]), 4097)], 128)
    assert weak is not None and not weak["learned"]
    assert "Gibbs probe weakened" in weak["note"] and "has not learned" in weak["note"]
    diverged = _learned_uniform([P.gibbs_check("trace", "final", True, 9.0, 64, P.np.array([0]), 4097)], 128)
    assert "diverged" in diverged["note"]
    sharp = _learned_uniform([P.gibbs_check("trace", "final", True, 4.17, 64, P.np.array([0]), 4097)], 128)
    assert sharp["learned"] and "sharp" in sharp["note"]
    # a violation is proof whatever the model learned: no weakness note beside it
    assert _learned_uniform([P.gibbs_check("trace", "final", True, 2.0, 64, P.np.array([0]), 4097)], 128) is None


@pytest.fixture
def shims(monkeypatch):
    """The two stand-ins as the sandboxed script imports them (shims/ on sys.path); forgotten
    afterwards, so later tests still see FlashAttention as missing here."""
    import sys

    from auditor.rerun.workspace import SHIMS_DIR

    names = ("flash_attn_interface", "flash_attn")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    monkeypatch.syspath_prepend(str(SHIMS_DIR))
    try:
        fa3, fa2 = importlib.import_module("flash_attn_interface"), importlib.import_module("flash_attn")
        assert fa3.__file__.startswith(str(SHIMS_DIR)) and fa2.__file__.startswith(str(SHIMS_DIR))
        yield fa3, fa2
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
        importlib.invalidate_caches()


def test_flash_attention_shims_are_sdpa_with_the_flags_honoured(shims):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    fa3, fa2 = shims
    torch.manual_seed(0)
    b, t, h, d = 2, 9, 2, 8
    q, k, v = (torch.randn(b, t, h, d) for _ in range(3))

    def reference(mask):
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
        s = s.masked_fill(~mask, float("-inf"))
        return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)

    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    causal = reference(j <= i)
    out3 = fa3.flash_attn_func(q, k, v, causal=True)
    out3 = out3[0] if isinstance(out3, tuple) else out3
    assert torch.allclose(out3, causal, atol=1e-5)
    assert torch.allclose(fa2.flash_attn_func(q, k, v, causal=True), causal, atol=1e-5)
    full = fa2.flash_attn_func(q, k, v, causal=False)
    assert torch.allclose(full, reference(torch.ones(t, t, dtype=torch.bool)), atol=1e-5)
    assert not torch.allclose(full, causal, atol=1e-3)  # the flag matters
    # sliding window (left 3, right 0): each query sees itself and the 3 before it
    windowed = fa2.flash_attn_func(q, k, v, causal=True, window_size=(3, 0))
    assert torch.allclose(windowed, reference((j <= i) & (j >= i - 3)), atol=1e-5)
    assert torch.allclose(F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                         is_causal=True).transpose(1, 2), causal, atol=1e-5)


def test_only_scripts_that_name_the_byte_sidecar_get_one(tmp_path):
    from auditor.rerun.workspace import inspect_script

    # every script has base_bytes_lut; a sidecar written for it would be read as validation tokens
    # by its fineweb_val_*.bin glob
    (tmp_path / "train_gpt.py").write_text("base_bytes_lut = None\nx_bytes_y = 1\n")
    assert not inspect_script(tmp_path).caseops
    (tmp_path / "train_gpt.py").write_text("pattern = 'fineweb_val_bytes_*.bin'\n")
    assert inspect_script(tmp_path).caseops


def test_an_entry_that_execs_a_sibling_file_is_inspected_through_it(tmp_path):
    from auditor.rerun.workspace import inspect_script

    (tmp_path / "train_gpt.py").write_text(
        'exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())\n')
    (tmp_path / "train_gpt_decode.py").write_text(
        "import os\nfrom flash_attn_interface import flash_attn_func\n"
        "vocab_size = int(os.environ.get('VOCAB_SIZE', 8192))\n")
    info = inspect_script(tmp_path)
    assert info.executes == "train_gpt_decode.py" and info.entry == "train_gpt.py"
    assert info.vocab_size == 8192 and "VOCAB_SIZE" in info.env_defaults
    if importlib.util.find_spec("flash_attn_interface") is None:
        assert info.missing_modules == ["flash_attn_interface"]
