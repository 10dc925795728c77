"""The bundler: one self-contained script, record conventions, broken variants kept apart."""

import ast
import base64
import lzma
import re
from pathlib import Path

import pytest

from reference_impl.bundle import BROKEN_VARIANTS, BundleError, build_script, wrap_script

PACKAGE = Path(__file__).resolve().parents[1] / "reference_impl"
REQUIRED_ENV = {
    "DATA_DIR", "DATA_PATH", "TOKENIZER_PATH", "VOCAB_SIZE", "SEED", "RUN_ID", "ITERATIONS",
    "MAX_WALLCLOCK_SECONDS", "GPTQ_RESERVE_SECONDS", "WARMUP_STEPS", "TRAIN_BATCH_TOKENS", "TRAIN_SEQ_LEN",
    "VAL_BATCH_TOKENS", "VAL_LOSS_EVERY", "NUM_LAYERS", "MODEL_DIM", "NUM_HEADS", "NUM_KV_HEADS", "MLP_MULT",
    "EVAL_STRIDE", "EVAL_SEQ_LEN", "SLIDING_WINDOW_ENABLED", "TTT_ENABLED", "TTT_LR", "TTT_EPOCHS",
    "TTT_CHUNK_TOKENS", "GPTQ_CALIBRATION_BATCHES", "COMPRESSOR",
}
BROKEN_MARKERS = {
    "prequant_ttt": "def prequant_ttt_adapt_adamw", "slot": "def eval_val_sliding_slot",
    "ngram_target_cache": "def ngram_hash_keys", "two_pass": "ttt_two_pass:", "best_of_k": "ttt_best_of_k",
    "last_epoch_only": "if epoch == h.ttt_epochs - 1",
}


def class_env_vars(tree: ast.Module, class_name: str) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)
                        and ast.unparse(call.func) in ("os.environ.get", "_env_flag")):
                    names.add(call.args[0].value)
    return names


def test_record_script_is_self_contained_and_follows_the_conventions():
    script = build_script("record")
    tree = ast.parse(script)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("reference_impl")
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("reference_impl") for a in node.names)
    assert REQUIRED_ENV <= class_env_vars(tree, "Hyperparameters")
    assert script.rstrip().endswith('if __name__ == "__main__":\n    main()')
    top_level = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert len(top_level) == len(set(top_level))  # no silent redefinitions in the record script
    for marker in BROKEN_MARKERS.values():
        assert marker not in script
    assert "legal_" not in script and "BROKEN ON PURPOSE" not in script


def test_legal_modules_never_import_the_broken_variants():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "broken" not in (node.module or ""), path.name
            if isinstance(node, ast.Import):
                assert not any("broken" in a.name for a in node.names), path.name


@pytest.mark.parametrize("variant", BROKEN_VARIANTS)
def test_broken_variants_bundle_with_their_defect_last(variant):
    script = build_script(variant)
    assert BROKEN_MARKERS[variant] in script
    assert f"variant: {variant}" in script and "BROKEN ON PURPOSE" in script
    section = script.index(f"reference_impl/broken/{variant}.py")
    assert section > script.index("reference_impl/pipeline.py")  # rebinds names after the legal stack
    tree = ast.parse(script)
    hparams_classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Hyperparameters"]
    assert len(hparams_classes) == 2  # the variant subclasses the record's Hyperparameters


def test_unknown_variant_is_refused():
    with pytest.raises(BundleError, match="unknown variant"):
        build_script("sneaky")


def decode_wrapper(wrapped: str) -> str:
    assert wrapped.startswith("import lzma as L,base64 as B\nexec(L.decompress(B.b85decode(\"")
    payload = re.search(r'b85decode\("([^"]+)"\)', wrapped).group(1)
    return lzma.decompress(base64.b85decode(payload)).decode()


def test_wrapper_decodes_statically_to_the_script():
    script = build_script("record")
    assert decode_wrapper(wrap_script(script, minify=False)) == script
    wrapped = wrap_script(script)
    minified = decode_wrapper(wrapped)
    tree = ast.parse(minified)  # still the same program: same top-level names and env switches
    assert REQUIRED_ENV <= class_env_vars(tree, "Hyperparameters")
    assert {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} == {
        n.name for n in ast.parse(script).body if isinstance(n, ast.FunctionDef)}
    assert len(wrapped) < len(script) / 3
