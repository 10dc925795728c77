"""The submission artifact: quantized tensors -> torch.save -> byte shuffle -> brotli/lzma.

Artifact size = code bytes (the script file itself, regime 1) + compressed model bytes.
"""

import io
import lzma
import os
import time

import numpy as np
import torch

from .data import TrainLoader
from .evaluate import dist_ready
from .gptq import (
    collect_hessians,
    dequantize_state_dict,
    generate_calibration_tokens,
    quantizable_tensors,
    quantization_summary_lines,
    quantize_state_dict,
)
from .logging_fmt import log, size_lines
from .model import GPT

SHUFFLE_MAGIC = b"BSH1"


def byte_shuffle(data: bytes, stride: int = 2) -> bytes:
    """Group byte k of every stride-byte word together (all low bytes, then all high bytes):
    fp16 scales and passthrough tensors compress better that way."""
    arr = np.frombuffer(data, dtype=np.uint8)
    pad = (-arr.size) % stride
    grid = np.concatenate([arr, np.zeros(pad, dtype=np.uint8)]).reshape(-1, stride)
    return SHUFFLE_MAGIC + bytes([stride, pad]) + grid.T.tobytes()


def byte_unshuffle(blob: bytes) -> bytes:
    if blob[:4] != SHUFFLE_MAGIC:
        raise ValueError("not a byte-shuffled payload")
    stride, pad = blob[4], blob[5]
    arr = np.frombuffer(blob, dtype=np.uint8, offset=6)
    data = arr.reshape(stride, -1).T.reshape(-1)
    return data[: data.size - pad].tobytes()


def compress_bytes(data: bytes, compressor: str) -> bytes:
    if compressor == "brotli":
        import brotli
        return brotli.compress(data, quality=11)
    if compressor == "lzma":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    raise ValueError(f"unknown compressor {compressor!r}")


def decompress_bytes(blob: bytes, compressor: str) -> bytes:
    if compressor == "brotli":
        import brotli
        return brotli.decompress(blob)
    if compressor == "lzma":
        return lzma.decompress(blob)
    raise ValueError(f"unknown compressor {compressor!r}")


def pack_quantized(tensors: dict, meta: dict, compressor: str) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": tensors, "m": meta}, buf)
    return compress_bytes(byte_shuffle(buf.getvalue()), compressor)


def unpack_quantized(blob: bytes, compressor: str) -> tuple[dict, dict]:
    payload = torch.load(io.BytesIO(byte_unshuffle(decompress_bytes(blob, compressor))),
                         map_location="cpu", weights_only=True)
    return payload["w"], payload["m"]


def calibration_batches(h, model, device) -> list[torch.Tensor]:
    """Inputs for the GPTQ Hessians: training sequences (a loader seeded apart from the
    training one) or text the model generates itself. Never validation data."""
    local_seqs = max(1, h.train_batch_tokens // (h.world_size * h.grad_accum_steps * h.train_seq_len))
    if h.gptq_calibration_source == "selfgen":
        return generate_calibration_tokens(model, h.gptq_calibration_batches, h.train_seq_len, h.bos_id,
                                           seed=h.seed + h.rank)
    loader = TrainLoader(h.train_files, h.train_seq_len, h.rank, h.world_size, seed=h.seed + 10_000)
    return [loader.next_batch(local_seqs, device)[0] for _ in range(h.gptq_calibration_batches)]


def average_hessians_across_ranks(hessians: dict, device) -> dict:
    """Every rank saw different calibration batches; all must quantize with the same Hessians."""
    if not dist_ready():
        return hessians
    averaged = {}
    for name in sorted(hessians):  # same order on every rank
        total = hessians[name].to(device)
        torch.distributed.all_reduce(total)
        averaged[name] = (total / torch.distributed.get_world_size()).cpu()
    return averaged


def serialize(h, model, code: str, device) -> dict:
    """Quantize the trained model and write the artifact; log the size lines. Returns the sizes."""
    code_bytes = len(code.encode("utf-8"))
    if h.is_main_process:
        torch.save(model.state_dict(), h.model_path)
        log(f"Serialized model: {os.path.getsize(h.model_path)} bytes")
        log(f"Code size: {code_bytes} bytes")
    bits_by_name = quantizable_tensors(model, h)
    log(f"GPTQ:collecting Hessians from {h.gptq_calibration_source} calibration data...")
    t0 = time.perf_counter()
    batches = calibration_batches(h, model, device)
    hessians = average_hessians_across_ranks(collect_hessians(model, batches, set(bits_by_name)), device)
    log(f"GPTQ:collected {len(hessians)} Hessians in {time.perf_counter() - t0:.1f}s")
    tensors, meta = quantize_state_dict(model.state_dict(), hessians, bits_by_name, h, device=device)
    for line in quantization_summary_lines(meta):
        log(line)
    blob = pack_quantized(tensors, meta, h.compressor)
    if h.is_main_process:
        with open(h.quantized_model_path, "wb") as f:
            f.write(blob)
    for line in size_lines(code_bytes, len(blob), h.compressor):
        log(line)
    return {"code_bytes": code_bytes, "model_bytes": len(blob), "total_bytes": code_bytes + len(blob)}


def deserialize(h, device) -> GPT:
    """A fresh model with the dequantized artifact weights (what evaluation may use)."""
    with open(h.quantized_model_path, "rb") as f:
        tensors, meta = unpack_quantized(f.read(), h.compressor)
    model = GPT(h).to(device)
    model.load_state_dict(dequantize_state_dict(tensors, meta, model.state_dict()), strict=True)
    return model
