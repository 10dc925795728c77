"""The tracer and analyzer on small subjects of our own (tests/rerun_subjects/mini_eval): trace
paths the reference stack does not take — hand-written SGD on parameters, an element-wise min of
two scorings, a torch count table built from all validation tokens, scoring done in numpy — each
caught with evidence (event, positions, source line), and the legal shapes clean."""

from __future__ import annotations

import pytest
from test_rerun_support import SUBJECTS, describe, fast_options, needs_torch, rule_ids, run_all

pytestmark = pytest.mark.slow

MINI = SUBJECTS / "mini_eval"
MODES = {
    "plain": ("trace", "gibbs"),
    "numpy_blend": ("trace", "gibbs", "norm"),
    "manual_sgd_first": ("trace",),
    "min_of_two": ("trace",),
    "torch_cache": ("trace",),
    "target_ratio": ("trace", "gibbs", "norm"),
    "masked_rows_ttt": ("trace",),
    "unmasked_rows_ttt": ("trace",),
    "scratch_warmup": ("trace",),
    "scratch_kept": ("trace",),
}


def _line_of(text: str, after: str = "") -> int:
    """Line number of the first line containing ``text`` (after the line containing ``after``)."""
    seen = not after
    for no, line in enumerate((MINI / "train_gpt.py").read_text().splitlines(), 1):
        seen = seen or after in line
        if seen and text in line:
            return no
    raise AssertionError(f"{text!r} not in the subject")


@pytest.fixture(scope="module")
def results():
    needs_torch()
    jobs = {mode: (MINI, fast_options(probes=probes, iterations=30, env={"EVAL_MODE": mode}))
            for mode, probes in MODES.items()}
    return run_all(jobs)


def _reported(result):
    lines = result.summary["trace"]["lines"]
    return next(la for la in lines if la["reported"])


@pytest.mark.parametrize("mode", ["plain", "numpy_blend"])
def test_legal_shapes_are_clean_and_fully_attributed(results, mode):
    r = results[mode]
    assert r.status == "ok" and not rule_ids(r, None) - {"DYN900"}, describe(r)
    la = _reported(r)
    # every target once, BOS targets included: BOS every 128 of 2049 tokens, never the last one
    assert la["n_scored"] == 2048 and la["n_bos_scored"] == 15
    assert not la["violations"]
    # the committed per-token scores reproduce the printed number
    sign = -1.0 if la["values_kind"] == "log-likelihood" else 1.0
    assert sign * la["mean_of_values"] == pytest.approx(la["val_loss"], abs=1e-6)
    assert la["normalization"]["verified"] >= 32 and la["normalization"]["unnormalized"] == 0
    gibbs = [g for g in r.summary["gibbs"] if g["reported"]]
    assert gibbs and all(not g["violated"] and g["counts_from"] == "trace" for g in gibbs)


def test_numpy_scoring_is_followed_through_numpy(results):
    la = _reported(results["numpy_blend"])
    assert la["values_kind"] == "log-likelihood"  # -np.log(p).sum(): the negation comes after the sum
    assert "counterfactual" not in results["numpy_blend"].summary.get("normalization", {})


def test_hand_written_sgd_on_validation_is_an_update_before_score(results):
    r = results["manual_sgd_first"]
    f = next((f for f in r.findings if f.rule_id == "DYN301"), None)
    assert f is not None and f.severity.value == "error", describe(r)
    assert f.data["kind"] == "c3_update" and "in-place parameter change" in f.message
    assert f.location.line == _line_of("p -= h.lr * p.grad") and "p.grad" in f.location.snippet
    assert f.data["positions"].startswith("1-") and f.data["event"] > 0
    assert any(p.role == "backward" and p.line == _line_of("loss.backward()", after="def eval_manual_sgd_first")
               for p in f.path)


def test_elementwise_min_of_two_scorings_counts_twice(results):
    r = results["min_of_two"]
    f = next((f for f in r.findings if f.rule_id == "DYN401"), None)
    assert f is not None and f.data["kind"] == "c4_multiple", describe(r)
    assert f.data["count"] == 2048 and "combines 2 scores" in f.message


def test_cache_built_from_all_validation_tokens_is_caught(results):
    r = results["torch_cache"]
    f = next((f for f in r.findings if f.rule_id == "DYN301"), None)
    assert f is not None and f.data["kind"] == "c3_write", describe(r)
    assert f.location.line == _line_of("table.index_add_(") and "index_add_" in f.message


def test_target_keyed_ratio_fails_normalization_and_gibbs(results):
    r = results["target_ratio"]
    ids = rule_ids(r)
    assert {"DYN201", "DYN001"} <= ids, describe(r)
    norm = r.summary["normalization"]["counterfactual"]
    assert norm["violated"] and norm["probability_mass"] > 1.0 and len(norm["tokens"]) >= 2
    # the trace could not see a normalized row behind these scores: that is what sent it to the probe
    assert r.summary["normalization"]["trace"]["verified"] == 0
    g = next(g for g in r.summary["gibbs"] if g["reported"])
    assert g["margin_nats"] < -g["tolerance"]


def test_findings_are_dynamic_proof_with_serializable_summary(results):
    import json

    for r in results.values():
        for f in r.findings:
            # proof, except the one that says it has none: an update of parameters discarded before scoring
            discarded = f.data.get("kind") == "c3_update_discarded"
            assert f.origin == "dynamic" and f.confidence.value == ("heuristic" if discarded else "proof")
        json.dumps(r.model_dump(mode="json"))  # the API stores it as JSON


def test_rows_weighted_zero_in_a_ttt_loss_are_not_used(results):
    """``(loss.mean(-1) * active).sum().backward()``: the rows an exact 0 weight removes carry no
    gradient, so training on a batch that pads with a later (unscored) block is score-first; the
    same batch with weight 1 trains on the block before scoring it (C3)."""
    masked = results["masked_rows_ttt"]
    assert masked.status == "ok" and "DYN301" not in rule_ids(masked, None), describe(masked)
    assert not _reported(masked)["violations"]
    unmasked = results["unmasked_rows_ttt"]
    assert "DYN301" in rule_ids(unmasked, "error"), describe(unmasked)
    (finding,) = [f for f in unmasked.findings if f.rule_id == "DYN301"]
    assert "optimizer step" in finding.message


def test_an_update_of_discarded_parameters_is_a_warning_not_a_proof(results):
    """A scratch optimizer stepped on unscored validation tokens and thrown away before scoring (a
    compile warm-up): the update is reported, as a warning that says why; kept and used, it is C3."""
    warm = results["scratch_warmup"]
    (finding,) = [f for f in warm.findings if f.rule_id == "DYN301"]
    assert finding.severity.value == "warning" and finding.confidence.value == "heuristic", describe(warm)
    assert "discarded at event" in finding.message and "reviewer should check" in finding.message
    kept = results["scratch_kept"]
    assert "DYN301" in rule_ids(kept, "error"), describe(kept)
