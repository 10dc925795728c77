"""Stand-in for FlashAttention-3's ``flash_attn_interface`` on machines without it (CPU reruns).

Same call shape as ``flash_attn_func(q, k, v, causal=...)`` with [batch, seq, heads, dim] inputs;
computed with PyTorch's scaled_dot_product_attention, so numbers differ from FA3 only by rounding.
Grouped-query attention (fewer KV heads) is expanded to the query heads; ``causal`` and a local
``window_size=(left, right)`` are honoured as masks (FlashAttention's convention: query i attends
to keys j with i - left <= j <= i + right, -1 meaning unbounded; causal caps right at 0).
"""

import itertools

import torch
import torch.nn.functional as F


def _expand_kv(q, k, v):
    if k.shape[2] != q.shape[2]:
        rep = q.shape[2] // k.shape[2]
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
    return k, v


def _window_mask(sq, sk, causal, window_size, device):
    left, right = (window_size if window_size is not None else (-1, -1))
    if left is None or left < 0:
        left = -1
    if right is None or right < 0:
        right = -1
    if left < 0 and right < 0:
        return None  # plain (causal or full) attention: SDPA's own flag
    # bottom-right aligned like FlashAttention when the key side is longer
    i = torch.arange(sq, device=device).unsqueeze(1) + (sk - sq)
    j = torch.arange(sk, device=device).unsqueeze(0)
    allowed = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if left >= 0:
        allowed &= j >= i - left
    if causal:
        allowed &= j <= i
    elif right >= 0:
        allowed &= j <= i + right
    return allowed


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    *args,
    return_attn_probs=False,
    **kwargs,
):
    k, v = _expand_kv(q, k, v)
    mask = _window_mask(q.shape[1], k.shape[1], causal, window_size, q.device)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        dropout_p=dropout_p,
        is_causal=causal and mask is None,
        scale=softmax_scale,
    )
    out = out.transpose(1, 2)
    return (out, None) if return_attn_probs else out


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q=None,
    max_seqlen_k=None,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    *args,
    **kwargs,
):
    """Packed sequences [total, heads, dim] with cumulative lengths: attention within each sequence."""
    outs = []
    bounds = cu_seqlens_q.tolist()
    for a, b in itertools.pairwise(bounds):
        qs, ks, vs = q[a:b].unsqueeze(0), k[a:b].unsqueeze(0), v[a:b].unsqueeze(0)
        outs.append(flash_attn_func(qs, ks, vs, dropout_p, softmax_scale, causal).squeeze(0))
    return torch.cat(outs, dim=0)
