"""FineWeb shard I/O and the training-sequence loader.

Shard format (records-format.md §5.1): a 256 x int32 little-endian header
[magic 20240520, version 1, num_tokens, 0...] followed by num_tokens uint16 tokens.
"""

import glob
from pathlib import Path

import numpy as np
import torch

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4


def write_data_shard(path: str | Path, tokens: np.ndarray) -> None:
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("shard tokens must fit in uint16")
    header = np.zeros(SHARD_HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def read_shard_header(path: str | Path) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size != SHARD_HEADER_INTS or int(header[0]) != SHARD_MAGIC or int(header[1]) != SHARD_VERSION:
        raise ValueError(f"{path}: not a shard (bad header)")
    num_tokens = int(header[2])
    expected = SHARD_HEADER_BYTES + 2 * num_tokens
    if path.stat().st_size != expected:
        raise ValueError(f"{path}: size {path.stat().st_size} != {expected} bytes for {num_tokens} tokens")
    return num_tokens


def load_data_shard(path: str | Path) -> torch.Tensor:
    num_tokens = read_shard_header(path)
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=SHARD_HEADER_BYTES)
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


def list_shards(pattern: str, exclude_sidecars: bool = True) -> list[Path]:
    """Sorted shard paths. `fineweb_val_bytes_*` sidecars also match `fineweb_val_*`, so token
    globs must drop them, or the byte counts get appended to the token stream."""
    files = sorted(Path(p) for p in glob.glob(pattern))
    if exclude_sidecars:
        files = [f for f in files if "_bytes_" not in f.name]
    if not files:
        raise FileNotFoundError(f"no shards match {pattern}")
    return files


def load_validation_tokens(pattern: str, seq_len: int) -> torch.Tensor:
    """All validation tokens in order, truncated to a whole number of eval sequences (+1 target)."""
    tokens = torch.cat([load_data_shard(f) for f in list_shards(pattern)])
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"validation split ({tokens.numel()} tokens) is shorter than one sequence of {seq_len}")
    return tokens[: usable + 1]


def load_validation_byte_sidecar(pattern: str, num_tokens: int) -> torch.Tensor:
    """Per-token original-text byte counts (CaseOps sidecar), aligned with the validation tokens."""
    counts = torch.cat([load_data_shard(f) for f in list_shards(pattern, exclude_sidecars=False)])
    if counts.numel() < num_tokens:
        raise ValueError(f"byte sidecar has {counts.numel()} entries for {num_tokens} validation tokens")
    return counts[:num_tokens]


class TrainLoader:
    """Deterministic, multi-shard, DDP-aware sampler of (input, target) training sequences.

    Each epoch picks a random phase, cuts every shard into seq_len+1 windows at that phase and
    shuffles the windows of all shards together (seeded by seed and epoch). Rank r takes every
    world_size-th window, so ranks never share a window within an epoch.
    """

    def __init__(self, pattern: str, seq_len: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.files = list_shards(pattern)
        self.sizes = [read_shard_header(f) for f in self.files]
        self.seq_len, self.rank, self.world_size, self.seed = seq_len, rank, world_size, seed
        self.shards = [np.memmap(f, dtype="<u2", mode="r", offset=SHARD_HEADER_BYTES, shape=(n,))
                       for f, n in zip(self.files, self.sizes)]
        if sum(max(0, (n - 1) // seq_len) for n in self.sizes) < world_size:
            raise ValueError(f"training shards hold fewer than {world_size} sequences of {seq_len} tokens")
        self.epoch = -1
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch += 1
        rng = np.random.default_rng([self.seed, self.epoch])
        phase = int(rng.integers(self.seq_len))
        windows = []
        for shard_id, n in enumerate(self.sizes):
            p = phase if n - 1 - phase >= self.seq_len else 0
            starts = np.arange(p, n - self.seq_len, self.seq_len, dtype=np.int64)
            windows.append(np.stack([np.full_like(starts, shard_id), starts], axis=1))
        order = np.concatenate(windows)[rng.permutation(sum(len(w) for w in windows))]
        self.order = order[self.rank::self.world_size]
        self.cursor = 0

    def next_batch(self, num_seqs: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for _ in range(num_seqs):
            if self.cursor >= len(self.order):
                self._start_epoch()
            shard_id, start = self.order[self.cursor]
            self.cursor += 1
            rows.append(np.asarray(self.shards[shard_id][start:start + self.seq_len + 1], dtype=np.int64))
        batch = torch.from_numpy(np.stack(rows))
        return batch[:, :-1].to(device, non_blocking=True), batch[:, 1:].to(device, non_blocking=True)
