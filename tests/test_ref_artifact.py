"""Artifact serialization: byte shuffle, compression, exact round trip, sizes."""

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from reference_impl.artifact import (
    byte_shuffle,
    byte_unshuffle,
    deserialize,
    pack_quantized,
    serialize,
    unpack_quantized,
)
from reference_impl.gptq import (
    collect_hessians,
    dequantize_state_dict,
    quantizable_tensors,
    quantize_state_dict,
)
from reference_impl.logging_fmt import configure_logging
from reference_impl.synthetic import write_synthetic_dataset
from reference_impl.testing import tiny_hparams, tiny_model, torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=5))
def test_byte_shuffle_is_invertible(data, stride):
    assert byte_unshuffle(byte_shuffle(data, stride)) == data


def test_unshuffle_rejects_foreign_payloads():
    with pytest.raises(ValueError):
        byte_unshuffle(b"not shuffled at all")


def quantized_tiny_model():
    h = tiny_hparams(model_dim=64, vocab_size=128, quant_min_numel=256)
    model = tiny_model(h)
    bits = quantizable_tensors(model, h)
    hessians = collect_hessians(model, [torch.randint(0, 128, (4, 32))], set(bits))
    return h, model, quantize_state_dict(model.state_dict(), hessians, bits, h)


@pytest.mark.parametrize("compressor", ["brotli", "lzma"])
def test_pack_unpack_is_exact(compressor):
    _, model, (tensors, meta) = quantized_tiny_model()
    blob = pack_quantized(tensors, meta, compressor)
    tensors2, meta2 = unpack_quantized(blob, compressor)
    assert meta2 == meta
    assert tensors2.keys() == tensors.keys()
    for name, t in tensors.items():
        assert tensors2[name].dtype == t.dtype and torch.equal(tensors2[name], t), name
    template = model.state_dict()
    a, b = dequantize_state_dict(tensors, meta, template), dequantize_state_dict(tensors2, meta2, template)
    assert all(torch.equal(a[k], b[k]) for k in template)
    assert pack_quantized(tensors, meta, compressor) == blob  # deterministic bytes


def test_serialize_writes_artifact_that_deserializes_to_the_quantized_weights(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", vocab_size=512, train_tokens=20_000, val_tokens=2_048)
    h = tiny_hparams(vocab_size=512, model_dim=64, data_dir=str(data.data_dir), gptq_calibration_batches=2,
                     model_path=str(tmp_path / "final_model.pt"),
                     quantized_model_path=str(tmp_path / "final_model.int6.ptz"))
    configure_logging(None, True)
    model = tiny_model(h)
    code = "print('hello')\n"
    sizes = serialize(h, model, code, torch.device("cpu"))
    out = capsys.readouterr().out
    blob = (tmp_path / "final_model.int6.ptz").read_bytes()
    assert sizes == {"code_bytes": len(code), "model_bytes": len(blob), "total_bytes": len(code) + len(blob)}
    assert f"Code size: {len(code)} bytes" in out
    assert f"Serialized model quantized+brotli: {len(blob)} bytes" in out
    assert f"Total submission size quantized+brotli: {len(blob) + len(code)} bytes" in out
    assert "GPTQ:collected" in out and "  gptq (int6): blocks.attn.c_k.weight" in out

    restored = deserialize(h, torch.device("cpu"))
    tensors, meta = unpack_quantized(blob, "brotli")
    expected = dequantize_state_dict(tensors, meta, model.state_dict())
    for name, value in restored.state_dict().items():
        assert torch.equal(value, expected[name]), name
