"""Synthetic data for reruns: a SentencePiece model of any vocabulary size, token streams for the
probes, and shards in the real format (records-format.md §5.1).

The tokenizer is written directly as a SentencePiece ModelProto (a few lines of protobuf wire
format), so any vocabulary size is available instantly and deterministically without training or
the protobuf package. Ids follow the challenge convention: pad 0, bos 1, eos 2, unk 3, then 256
byte pieces when the vocabulary has room, then '▁', then short lowercase pieces with and without a
leading '▁'.

Streams are documents of fixed length ``doc_len``: a BOS (id 1) at every multiple of ``doc_len``,
every other token drawn i.i.d. uniformly from a support of S ordinary pieces. The true conditional
law is therefore known exactly (a point mass on BOS at doc starts, uniform over S elsewhere), which
is what the Gibbs floor needs.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_BYTES = 1024
BOS_ID = 1
SPACE = "\u2581"
# SentencePiece piece types
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(fieldno: int, wire: int) -> bytes:
    return _varint(fieldno << 3 | wire)


def _ld(fieldno: int, payload: bytes) -> bytes:
    return _key(fieldno, 2) + _varint(len(payload)) + payload


def _vi(fieldno: int, n: int) -> bytes:
    return _key(fieldno, 0) + _varint(n)


def _f32(fieldno: int, x: float) -> bytes:
    return _key(fieldno, 5) + struct.pack("<f", x)


@lru_cache(maxsize=8)
def piece_table(vocab_size: int) -> tuple[tuple[str, int], ...]:
    """(piece, type) for every id of the synthetic tokenizer."""
    if vocab_size < 8:
        raise ValueError(f"vocabulary of {vocab_size} is too small for a synthetic tokenizer")
    pieces: list[tuple[str, int]] = [
        ("<pad>", CONTROL),
        ("<s>", CONTROL),
        ("</s>", CONTROL),
        ("<unk>", UNKNOWN),
    ]
    if vocab_size >= 4 + 256 + 1 + 8:
        pieces += [(f"<0x{b:02X}>", BYTE) for b in range(256)]
    pieces.append((SPACE, NORMAL))
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ("".join(t) for n in itertools.count(1) for t in itertools.product(letters, repeat=n))
    while len(pieces) < vocab_size:
        w = next(words)
        pieces.append((w, NORMAL))
        if len(pieces) < vocab_size:
            pieces.append((SPACE + w, NORMAL))
    return tuple(pieces)


@lru_cache(maxsize=8)
def tokenizer_model_bytes(vocab_size: int) -> bytes:
    """A SentencePiece BPE ModelProto with exactly ``vocab_size`` pieces."""
    body = bytearray()
    for i, (piece, kind) in enumerate(piece_table(vocab_size)):
        score = 0.0 if kind != NORMAL else -1.0 - i * 1e-3
        body += _ld(1, _ld(1, piece.encode()) + _f32(2, score) + _vi(3, kind))
    has_bytes = any(kind == BYTE for _, kind in piece_table(vocab_size))
    trainer = (
        _vi(3, 2)
        + _vi(4, vocab_size)
        + _vi(35, int(has_bytes))
        + _vi(40, 3)
        + _vi(41, 1)
        + _vi(42, 2)
        + _vi(43, 0)
    )
    normalizer = _ld(1, b"identity") + _vi(3, 0) + _vi(4, 0) + _vi(5, 1)
    return bytes(body) + _ld(2, trainer) + _ld(3, normalizer)


def piece_bytes(vocab_size: int) -> np.ndarray:
    """UTF-8 bytes of each piece without a leading '▁' (0 for control/unknown, 1 for byte pieces)."""
    out = np.zeros(vocab_size, dtype=np.int64)
    for i, (piece, kind) in enumerate(piece_table(vocab_size)):
        if kind == BYTE:
            out[i] = 1
        elif kind == NORMAL:
            out[i] = len(piece.removeprefix(SPACE).encode())
    return out


def default_support(vocab_size: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` ordinary pieces (no '▁' alone, no byte or control ids), chosen reproducibly."""
    normal = [i for i, (p, k) in enumerate(piece_table(vocab_size)) if k == NORMAL and p != SPACE]
    if size > len(normal):
        raise ValueError(f"support of {size} ids does not fit a vocabulary of {vocab_size}")
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(np.asarray(normal), size=size, replace=False))


@dataclass
class Stream:
    tokens: np.ndarray  # uint16
    doc_len: int
    support: np.ndarray
    bos_id: int = BOS_ID
    notes: dict = field(default_factory=dict)

    @property
    def bos_positions(self) -> np.ndarray:
        return np.nonzero(self.tokens == self.bos_id)[0]


def gibbs_stream(n_tokens: int, support: np.ndarray, doc_len: int, seed: int, bos_id: int = BOS_ID) -> Stream:
    """BOS every ``doc_len`` tokens (never as the last token), everything else i.i.d. uniform over
    ``support``."""
    if doc_len < 2:
        raise ValueError("documents need at least one token after BOS")
    rng = np.random.default_rng(seed)
    tokens = support[rng.integers(0, len(support), size=n_tokens)].astype(np.uint16)
    tokens[::doc_len] = bos_id
    if n_tokens > 1 and tokens[-1] == bos_id:
        # the real validation set ends inside a document; a trailing BOS would be an empty one
        # (document splitters assert every document has a token after its BOS)
        tokens[-1] = support[0]
    return Stream(tokens=tokens, doc_len=doc_len, support=np.asarray(support))


def resample_after(stream: Stream, t: int, seed: int) -> Stream:
    """The same stream with every non-BOS token at positions >= t drawn afresh (causality probe)."""
    tokens = stream.tokens.copy()
    rng = np.random.default_rng([seed, 101])
    tail = np.arange(t, len(tokens))
    tail = tail[tokens[tail] != stream.bos_id]
    fresh = stream.support[rng.integers(0, len(stream.support), size=len(tail))].astype(np.uint16)
    # make sure the streams really differ at t
    same = fresh == tokens[tail]
    fresh[same] = stream.support[(np.searchsorted(stream.support, fresh[same]) + 1) % len(stream.support)]
    tokens[tail] = fresh
    return Stream(tokens=tokens, doc_len=stream.doc_len, support=stream.support, notes={"differs_from": t})


def with_token(stream: Stream, position: int, token: int) -> Stream:
    tokens = stream.tokens.copy()
    tokens[position] = token
    return Stream(
        tokens=tokens,
        doc_len=stream.doc_len,
        support=stream.support,
        notes={"position": position, "token": int(token)},
    )


def write_shard(path: Path, tokens: np.ndarray) -> None:
    tokens = np.asarray(tokens)
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= 2**16):
        raise ValueError("shard tokens must fit in uint16")
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def read_shard(path: Path) -> np.ndarray:
    header = np.fromfile(path, dtype="<i4", count=256)
    if header.size != 256 or header[0] != SHARD_MAGIC:
        raise ValueError(f"{path}: not a shard")
    return np.fromfile(path, dtype="<u2", count=int(header[2]), offset=SHARD_HEADER_BYTES)


def byte_sidecar(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """CaseOps-style per-token original byte counts: the piece's bytes plus its leading space
    (unless it follows BOS); BOS itself counts 0."""
    base = piece_bytes(vocab_size)
    space = np.array(
        [p.startswith(SPACE) and k == NORMAL for p, k in piece_table(vocab_size)], dtype=np.int64
    )
    t = tokens.astype(np.int64)
    counts = base[t] + space[t]
    after_bos = np.zeros(len(t), dtype=bool)
    after_bos[1:] = t[:-1] == BOS_ID
    counts[after_bos] -= space[t][after_bos]
    counts[t == BOS_ID] = 0
    return counts.astype(np.uint16)
