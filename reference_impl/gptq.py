"""GPTQ quantization with std-based clipping (SDClip) and the Hessians it needs.

Matrices of the blocks go to int6 (MATRIX_BITS), the tied embedding to int8 (EMBED_BITS); every
other tensor is stored as fp16. Each row gets one fp16 scale = clip_sigmas * std(row) / qmax,
so values beyond clip_sigmas standard deviations are clipped. GPTQ then quantizes the columns
one by one (largest Hessian diagonal first) and spreads each column's rounding error over the
columns not yet quantized, using the Cholesky factor of the inverse Hessian.

Hessians H = X^T X come from calibration inputs collected inside the training time budget:
training batches, or sequences the model samples itself (no validation data, PR #1019 ruling).
"""

import re
from collections import defaultdict

import torch
import torch.nn.functional as F

from .evaluate import autocast_for
from .model import CastedLinear


def quantizable_tensors(model, h) -> dict[str, int]:
    """name -> bits for every tensor GPTQ handles; the rest of the state dict passes through."""
    chosen = {}
    if model.tok_emb.weight.numel() >= h.quant_min_numel:
        chosen["tok_emb.weight"] = h.embed_bits
    for name, module in model.named_modules():
        in_scope = name.startswith("blocks.") or name == "bigram.proj"
        if isinstance(module, CastedLinear) and in_scope and module.weight.numel() >= h.quant_min_numel:
            chosen[name + ".weight"] = h.matrix_bits
    return chosen


@torch.no_grad()
def collect_hessians(model, batches, names: set[str]) -> dict[str, torch.Tensor]:
    """Average X^T X of the inputs seen by each named weight over calibration batches.

    A linear layer's input is X. The tied embedding acts as the output head, so its "input" is
    the final hidden state (the output of forward_hidden)."""
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = defaultdict(int)

    def accumulate(name: str, x: torch.Tensor) -> None:
        x = x.detach().float().reshape(-1, x.size(-1))
        if name not in sums:
            sums[name] = torch.zeros(x.size(1), x.size(1), device=x.device)
        sums[name].addmm_(x.T, x)
        rows[name] += x.size(0)

    hooks = []
    for name, module in model.named_modules():
        if name + ".weight" in names and isinstance(module, CastedLinear):
            hooks.append(module.register_forward_hook(
                lambda mod, inp, out, key=name + ".weight": accumulate(key, inp[0])))
    was_training = model.training
    model.eval()
    try:
        for input_ids in batches:
            with autocast_for(input_ids.device):
                hidden = model.forward_hidden(input_ids)
            if "tok_emb.weight" in names:
                accumulate("tok_emb.weight", hidden)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {name: (s / rows[name]).cpu() for name, s in sums.items()}


@torch.no_grad()
def generate_calibration_tokens(model, num_seqs: int, seq_len: int, bos_id: int, temperature: float = 0.8,
                                seed: int = 0, batch_seqs: int = 16) -> list[torch.Tensor]:
    """Self-generated calibration text: sample from the trained model, starting at BOS.
    Plain re-encoding per token (no KV cache): simple, and only used for small budgets."""
    device = model.tok_emb.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    batches = []
    for start in range(0, num_seqs, batch_seqs):
        n = min(batch_seqs, num_seqs - start)
        seqs = torch.full((n, 1), bos_id, dtype=torch.long, device=device)
        for _ in range(seq_len - 1):
            logits = model.forward_logits(seqs)[:, -1].float() / temperature
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)
            seqs = torch.cat([seqs, nxt], dim=1)
        batches.append(seqs)
    return batches


def sdclip_scales(w: torch.Tensor, bits: int, clip_sigmas: float) -> torch.Tensor:
    """Per-row fp16 step size: clip_sigmas row standard deviations map to the largest level."""
    qmax = 2 ** (bits - 1) - 1
    return (clip_sigmas * w.float().std(dim=1) / qmax).clamp_min(1e-10).to(torch.float16)


def quantize_rtn(w: torch.Tensor, bits: int, clip_sigmas: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest with the same scales (the baseline GPTQ must beat)."""
    qmax = 2 ** (bits - 1) - 1
    scale = sdclip_scales(w, bits, clip_sigmas)
    q = torch.clamp(torch.round(w.float() / scale.float()[:, None]), -qmax, qmax)
    return q.to(torch.int8), scale


def gptq_quantize_weight(w: torch.Tensor, hessian: torch.Tensor, bits: int, clip_sigmas: float,
                         block_size: int = 128, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize w [rows, cols] against hessian [cols, cols]; returns (int8 levels, fp16 row scales)."""
    qmax = 2 ** (bits - 1) - 1
    w = w.float().clone()
    rows, cols = w.shape
    scale = sdclip_scales(w, bits, clip_sigmas)
    step = scale.float()[:, None]

    hess = hessian.float().clone().to(w.device)
    dead = torch.diag(hess) == 0  # inputs that never fire: their weights cannot matter
    hess[dead, dead] = 1.0
    w[:, dead] = 0.0
    hess.diagonal().add_(damp * torch.diag(hess).mean())

    order = torch.argsort(torch.diag(hess), descending=True)  # most important columns first
    w, hess = w[:, order], hess[order][:, order]
    # Upper Cholesky factor U of H^-1: row j of U gives how column j's error moves later columns.
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hess)), upper=True)

    q = torch.zeros(rows, cols, dtype=torch.int8, device=w.device)
    for b0 in range(0, cols, block_size):
        b1 = min(b0 + block_size, cols)
        block = w[:, b0:b1].clone()
        errors = torch.zeros(rows, b1 - b0, device=w.device)
        for j in range(b1 - b0):
            col = block[:, j:j + 1]
            q_col = torch.clamp(torch.round(col / step), -qmax, qmax)
            q[:, b0 + j] = q_col.squeeze(1).to(torch.int8)
            err = (col - q_col * step) / u[b0 + j, b0 + j]
            block[:, j:] -= err * u[b0 + j, b0 + j:b1][None, :]
            errors[:, j:j + 1] = err
        w[:, b1:] -= errors @ u[b0:b1, b1:]
    return q[:, torch.argsort(order)].cpu(), scale.cpu()


def quantize_state_dict(state_dict: dict, hessians: dict, bits_by_name: dict, h, device="cpu"):
    """-> (tensors, meta), all on the CPU; meta[name] says how each original tensor was stored.
    GPTQ itself runs on `device` (the GPU in real runs: its column loop is the slow part)."""
    tensors, meta = {}, {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if name not in bits_by_name:
            tensors[name] = t.to(torch.float16) if t.is_floating_point() else t
            meta[name] = "passthrough (float16)"
            continue
        bits = bits_by_name[name]
        clip = h.embed_clip_sigmas if name == "tok_emb.weight" else h.matrix_clip_sigmas
        q, scale = gptq_quantize_weight(t.to(device), hessians[name], bits, clip, block_size=h.gptq_block_size)
        tensors[name + ".q"], tensors[name + ".scale"] = q, scale
        meta[name] = f"gptq (int{bits})"
    return tensors, meta


def dequantize_state_dict(tensors: dict, meta: dict, template: dict) -> dict:
    """Rebuild a float state dict with the dtypes of `template` (the freshly built model's)."""
    out = {}
    for name, ref in template.items():
        kind = meta.get(name)
        if kind is None:
            raise KeyError(f"artifact has no entry for {name}")
        if kind.startswith("passthrough"):
            out[name] = tensors[name].to(ref.dtype)
        else:
            q, scale = tensors[name + ".q"], tensors[name + ".scale"]
            out[name] = (q.float() * scale.float()[:, None]).to(ref.dtype)
    return out


def quantization_summary_lines(meta: dict) -> list[str]:
    """`Quantized weights:` then, per storage kind, the parameter names with layer indices folded."""
    groups = defaultdict(set)
    for name, kind in meta.items():
        groups[kind].add(re.sub(r"\.\d+\.", ".", name))
    return ["Quantized weights:"] + [f"  {kind}: {', '.join(sorted(groups[kind]))}" for kind in sorted(groups)]
