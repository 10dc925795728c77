"""Bytes per token from the SentencePiece piece table (records-format.md §5.2, Issue #1017 §V).

For a scored target y with previous token x:
    bytes(y) = base_bytes[y] + (has_leading_space[y] and not is_boundary[x])
base_bytes is the UTF-8 length of the piece without its leading '▁' (1 for byte-fallback
pieces, 0 for control/unknown/unused ids); the '▁' costs one byte unless it follows a
boundary token (BOS etc.), where no space exists in the original text.
"""

import numpy as np
import torch

SPACE_MARK = "\u2581"


def build_sentencepiece_luts(sp, vocab_size: int, device: torch.device | str = "cpu"):
    """(base_bytes int16, has_leading_space bool, is_boundary bool), each of length
    max(sp.vocab_size(), vocab_size). `sp` is anything with the SentencePieceProcessor methods used."""
    if sp.piece_to_id(SPACE_MARK) == sp.unk_id():
        raise ValueError("tokenizer must have '\u2581' as its own piece for byte counting (Issue #897)")
    sp_size = int(sp.vocab_size())
    size = max(sp_size, vocab_size)
    base_bytes = np.zeros(size, dtype=np.int16)
    has_leading_space = np.zeros(size, dtype=np.bool_)
    is_boundary = np.ones(size, dtype=np.bool_)  # ids beyond the tokenizer count as boundaries
    for token_id in range(sp_size):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        is_boundary[token_id] = False
        if sp.is_byte(token_id):
            base_bytes[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith(SPACE_MARK):
            has_leading_space[token_id] = True
            piece = piece[1:]
        base_bytes[token_id] = len(piece.encode("utf-8"))
    return (torch.tensor(base_bytes, device=device), torch.tensor(has_leading_space, device=device),
            torch.tensor(is_boundary, device=device))


def target_byte_counts(tokens: torch.Tensor, luts) -> torch.Tensor:
    """Bytes of every target position 1..N-1 of a token stream (entry 0 is the unscored first token)."""
    base_bytes, has_leading_space, is_boundary = luts
    tokens = tokens.long()
    out = torch.zeros(tokens.numel(), dtype=torch.int32, device=tokens.device)
    prev, tgt = tokens[:-1], tokens[1:]
    out[1:] = base_bytes[tgt].int() + (has_leading_space[tgt] & ~is_boundary[prev]).int()
    return out
