"""The GPT of the #1394 -> #1493 record lineage.

11 layers x 512, 8 query / 4 KV heads, MLP x4 with LeakyReLU(0.5)^2, partial RoPE on 16 of the
64 head dims, RMS-normed Q and K with a learnable per-head gain, XSA (the attention output has
its component along the token's own value removed), U-Net skips with sigmoid gates, depth
recurrence (layers LOOP_START..LOOP_END replayed when looping is switched on), parallel
attention/MLP residuals from PARALLEL_RESIDUAL_START, a BOS-masked SmearGate, an optional
BigramHash input embedding, tied embeddings and a tanh logit softcap.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

try:  # FlashAttention-3 (Hopper); everything else uses PyTorch SDPA.
    from flash_attn_interface import flash_attn_func as flash_attn_3_func
except ImportError:
    flash_attn_3_func = None


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q: [B, T, H, D]; k, v: [B, T, Hkv, D] (grouped-query). Returns [B, T, H, D].
    On GPUs attention always runs in bf16 (the fused kernels need it), whatever the input dtype."""
    if q.is_cuda and q.dtype == torch.float32:
        return causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()
    if flash_attn_3_func is not None and q.is_cuda:
        out = flash_attn_3_func(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True, enable_gqa=q.size(2) != k.size(2))
    return y.transpose(1, 2)


def rotary_tables(seq_len: int, rope_dims: int, base: float, train_seq_len: int, device) -> tuple:
    """cos/sin of shape [1, T, 1, rope_dims/2]. Longer-than-training contexts stretch the base
    (NTK style) so the lowest frequency still covers the window. Built per call on purpose: a
    cached table created under inference_mode could not be reused by test-time training."""
    if seq_len > train_seq_len and rope_dims > 2:
        base = base * (seq_len / train_seq_len) ** (rope_dims / (rope_dims - 2))
    inv_freq = 1.0 / base ** (torch.arange(0, rope_dims, 2, device=device, dtype=torch.float32) / rope_dims)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def apply_partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rope_dims: int) -> torch.Tensor:
    """Rotate the first rope_dims dims of each head; the rest carry no position."""
    half = rope_dims // 2
    x1, x2, rest = x[..., :half], x[..., half:rope_dims], x[..., rope_dims:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest), dim=-1)


class CastedLinear(nn.Linear):
    """Bias-free linear layer computing in the activation dtype. `lora` may hold a low-rank
    (A, B) pair that test-time training adds on top; it is not part of the state dict."""

    lora: tuple | None = None

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=False)
        self.zero_init = zero_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight.to(x.dtype))
        if self.lora is not None:
            a, b = self.lora
            y = y + F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype))
        return y


class CausalSelfAttention(nn.Module):
    def __init__(self, h, layer_idx: int):
        super().__init__()
        self.num_heads, self.num_kv_heads = h.num_heads, h.num_kv_heads
        self.head_dim = h.model_dim // h.num_heads
        self.rope_dims, self.rope_base, self.rope_train_seq_len = h.rope_dims, h.rope_base, h.rope_train_seq_len
        kv_dim = h.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(h.model_dim, h.model_dim)
        self.c_k = CastedLinear(h.model_dim, kv_dim)
        self.c_v = CastedLinear(h.model_dim, kv_dim)
        self.proj = CastedLinear(h.model_dim, h.model_dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((h.num_heads,), h.qk_gain_init, dtype=torch.float32))
        self.use_xsa = layer_idx >= h.num_layers - h.xsa_last_n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, seq_len, dim = x.shape
        q = self.c_q(x).view(bsz, seq_len, self.num_heads, self.head_dim)
        k = self.c_k(x).view(bsz, seq_len, self.num_kv_heads, self.head_dim)
        v = self.c_v(x).view(bsz, seq_len, self.num_kv_heads, self.head_dim)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        if self.rope_dims > 0:
            cos, sin = rotary_tables(seq_len, self.rope_dims, self.rope_base, self.rope_train_seq_len, x.device)
            q = apply_partial_rotary(q, cos, sin, self.rope_dims)
            k = apply_partial_rotary(k, cos, sin, self.rope_dims)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = causal_attention(q, k, v)
        if self.use_xsa:
            y = remove_own_value(y, v)
        return self.proj(y.reshape(bsz, seq_len, dim))


def remove_own_value(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """XSA: subtract from each head's output its projection on the (unit) value of its KV group."""
    bsz, seq_len, heads, head_dim = y.shape
    kv_heads = v.size(2)
    y = y.view(bsz, seq_len, kv_heads, heads // kv_heads, head_dim)
    unit_v = F.normalize(v, dim=-1).unsqueeze(3)
    y = y - (y * unit_v).sum(dim=-1, keepdim=True) * unit_v
    return y.view(bsz, seq_len, heads, head_dim)


class MLP(nn.Module):
    def __init__(self, h):
        super().__init__()
        hidden = int(h.mlp_mult * h.model_dim)
        self.fc = CastedLinear(h.model_dim, hidden)
        self.proj = CastedLinear(hidden, h.model_dim, zero_init=True)
        self.slope = h.leaky_relu_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.leaky_relu(self.fc(x), negative_slope=self.slope).square())


class Block(nn.Module):
    def __init__(self, h, layer_idx: int):
        super().__init__()
        dim = h.model_dim
        self.attn = CausalSelfAttention(h, layer_idx)
        self.mlp = MLP(h)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        # Learned mix of the running residual and the (normed) input embedding x0.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        self.norm_scale = 1.0 / math.sqrt(layer_idx + 1) if h.ln_scale else 1.0
        self.parallel = 0 <= h.parallel_residual_start <= layer_idx

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        attn_out = self.attn(F.rms_norm(x, (x.size(-1),)) * self.norm_scale)
        if self.parallel:  # attention and MLP both read the same input (GPT-J style)
            mlp_out = self.mlp(F.rms_norm(x, (x.size(-1),)) * self.norm_scale)
            return x + self.attn_scale.to(x.dtype) * attn_out + self.mlp_scale.to(x.dtype) * mlp_out
        x = x + self.attn_scale.to(x.dtype) * attn_out
        return x + self.mlp_scale.to(x.dtype) * self.mlp(F.rms_norm(x, (x.size(-1),)) * self.norm_scale)


class SmearGate(nn.Module):
    """Adds a gated copy of the previous token's embedding. The gate is forced to zero where the
    current token is BOS, so a document never reads the previous document (PR #1797 ruling)."""

    def __init__(self, dim: int, window: int, bos_id: int):
        super().__init__()
        self.window, self.bos_id = min(window, dim), bos_id
        self.gate = CastedLinear(self.window, 1, zero_init=True)
        self.lam = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        g = self.lam.to(x.dtype) * torch.sigmoid(self.gate(x[:, 1:, : self.window]))
        g = g.masked_fill((input_ids[:, 1:] == self.bos_id).unsqueeze(-1), 0.0)
        return torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1]], dim=1)


class BigramHashEmbedding(nn.Module):
    """An embedding of hash(previous token, token), projected to the model width. Zero at BOS
    positions for the same cross-document reason as SmearGate."""

    def __init__(self, buckets: int, dim: int, model_dim: int, bos_id: int):
        super().__init__()
        self.buckets, self.bos_id = buckets, bos_id
        self.table = nn.Embedding(buckets, dim)
        self.proj = CastedLinear(dim, model_dim, zero_init=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        prev = F.pad(input_ids[:, :-1], (1, 0), value=self.bos_id)
        bucket = (prev * 1_000_003 + input_ids * 7_919) % self.buckets
        feat = self.table(bucket) * (input_ids != self.bos_id).unsqueeze(-1).to(self.table.weight.dtype)
        return self.proj(feat)


def split_encoder_decoder(order: list[int]) -> tuple[list[int], list[int]]:
    half = len(order) // 2
    return order[:half], order[half:]


def looped_layer_order(num_layers: int, loop_start: int, loop_end: int, num_loops: int) -> list[int]:
    """Layer visit order with the loop segment played num_loops extra times, e.g. 11 layers,
    loop 3..5, 2 loops: 0 1 2 3 4 5 3 4 5 3 4 5 6 7 8 9 10."""
    segment = list(range(loop_start, loop_end + 1))
    return list(range(loop_start)) + segment * (num_loops + 1) + list(range(loop_end + 1, num_layers))


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        if h.logit_softcap <= 0:
            raise ValueError("LOGIT_SOFTCAP must be positive")
        self.tie_embeddings, self.logit_softcap = h.tie_embeddings, h.logit_softcap
        self.tok_emb = nn.Embedding(h.vocab_size, h.model_dim)
        self.smear = SmearGate(h.model_dim, h.smear_window, h.bos_id) if h.smear_gate_enabled else None
        self.bigram = (BigramHashEmbedding(h.bigram_hash_buckets, h.bigram_hash_dim, h.model_dim, h.bos_id)
                       if h.bigram_hash_buckets > 0 else None)
        self.blocks = nn.ModuleList(Block(h, i) for i in range(h.num_layers))
        self.lm_head = None if h.tie_embeddings else CastedLinear(h.model_dim, h.vocab_size, zero_init=True)

        self.plain_schedule = split_encoder_decoder(list(range(h.num_layers)))
        looped = looped_layer_order(h.num_layers, h.loop_start, h.loop_end, h.num_loops) if h.num_loops > 0 \
            else list(range(h.num_layers))
        self.looped_schedule = split_encoder_decoder(looped)
        self.looping_active = False
        num_skips = max(min(len(e), len(d)) for e, d in (self.plain_schedule, self.looped_schedule))
        self.skip_weights = nn.Parameter(torch.ones(num_skips, h.model_dim, dtype=torch.float32))
        self.skip_gates = (nn.Parameter(torch.zeros(num_skips, h.model_dim, dtype=torch.float32))
                           if h.skip_gates_enabled else None)
        self._init_weights(h.tied_embed_init_std)

    def _init_weights(self, tied_embed_init_std: float) -> None:
        if self.tok_emb.weight.is_meta:  # shape-only instance (parameter counting)
            return
        if self.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=tied_embed_init_std)
        for module in self.modules():
            if isinstance(module, CastedLinear):
                if module.zero_init:
                    nn.init.zeros_(module.weight)
                elif min(module.weight.shape) >= 64:
                    nn.init.orthogonal_(module.weight)

    @property
    def schedule(self) -> tuple[list[int], list[int]]:
        return self.looped_schedule if self.looping_active else self.plain_schedule

    def forward_hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(input_ids)
        if self.smear is not None:
            x = self.smear(x, input_ids)
        if self.bigram is not None:
            x = x + self.bigram(input_ids).to(x.dtype)
        x = x0 = F.rms_norm(x, (x.size(-1),))
        encoder, decoder = self.schedule
        skips = []
        for i in encoder:
            x = self.blocks[i](x, x0)
            skips.append(x)
        for j, i in enumerate(decoder):
            if skips:  # U-Net: the last encoder output feeds the first decoder layer, and so on
                skip = self.skip_weights[j].to(x.dtype) * skips.pop()
                if self.skip_gates is not None:
                    x = torch.lerp(skip, x, torch.sigmoid(self.skip_gates[j].to(x.dtype)))
                else:
                    x = x + skip
            x = self.blocks[i](x, x0)
        return F.rms_norm(x, (x.size(-1),))

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.forward_hidden(input_ids)
        weight = self.tok_emb.weight if self.tie_embeddings else self.lm_head.weight
        logits = F.linear(hidden, weight.to(hidden.dtype))
        return self.logit_softcap * torch.tanh(logits / self.logit_softcap)

    def token_nll(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood in nats, shape of target_ids (float32)."""
        logits = self.forward_logits(input_ids)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target_ids.reshape(-1), reduction="none")
        return nll.view(target_ids.shape)

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        return self.token_nll(input_ids, target_ids).mean()


def count_parameters(h) -> int:
    """Parameter count of the configuration without allocating it (meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(h).parameters())
