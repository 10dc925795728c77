"""Stand-in for FlashAttention-3's ``flash_attn_interface`` on machines without it (CPU reruns).

Same call shape as ``flash_attn_func(q, k, v, causal=...)`` with [batch, seq, heads, dim] inputs;
computed with PyTorch's scaled_dot_product_attention, so numbers differ from FA3 only by rounding.
Grouped-query attention (fewer KV heads) is expanded to the query heads.
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
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        dropout_p=dropout_p,
        is_causal=causal,
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
