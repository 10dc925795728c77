"""Stand-in for FlashAttention-2's ``flash_attn`` package on machines without it (CPU reruns): the
same functions as the FlashAttention-3 stand-in, which computes them with PyTorch's SDPA."""

from flash_attn_interface import flash_attn_func, flash_attn_varlen_func

__all__ = ["flash_attn_func", "flash_attn_varlen_func"]
