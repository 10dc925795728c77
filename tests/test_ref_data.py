"""Shard format, validation loading, the training loader."""

import numpy as np
import pytest
import torch

from reference_impl.data import (
    SHARD_HEADER_BYTES,
    TrainLoader,
    list_shards,
    load_data_shard,
    load_validation_tokens,
    read_shard_header,
    write_data_shard,
)


def test_shard_round_trip_and_header(tmp_path):
    tokens = np.array([1, 0, 65535, 42, 8191], dtype=np.int64)
    path = tmp_path / "fineweb_train_000000.bin"
    write_data_shard(path, tokens)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[:3].tolist() == [20240520, 1, 5] and not header[3:].any()
    assert path.stat().st_size == SHARD_HEADER_BYTES + 2 * 5
    assert load_data_shard(path).tolist() == tokens.tolist()


def test_bad_shards_are_rejected_with_a_reason(tmp_path):
    good = tmp_path / "good.bin"
    write_data_shard(good, np.arange(10))
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-2])
    with pytest.raises(ValueError, match="size"):
        read_shard_header(truncated)
    wrong_magic = tmp_path / "magic.bin"
    raw = bytearray(good.read_bytes())
    raw[0] ^= 0xFF
    wrong_magic.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="header"):
        read_shard_header(wrong_magic)
    with pytest.raises(ValueError, match="uint16"):
        write_data_shard(tmp_path / "big.bin", np.array([70000]))


def test_validation_excludes_byte_sidecars_and_truncates(tmp_path):
    write_data_shard(tmp_path / "fineweb_val_000000.bin", np.arange(10))
    write_data_shard(tmp_path / "fineweb_val_000001.bin", np.arange(10, 26))
    write_data_shard(tmp_path / "fineweb_val_bytes_000000.bin", np.full(26, 7))
    assert [p.name for p in list_shards(str(tmp_path / "fineweb_val_*.bin"))] == [
        "fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    val = load_validation_tokens(str(tmp_path / "fineweb_val_*.bin"), seq_len=8)
    assert val.tolist() == list(range(25))  # 25 targets -> 3 sequences of 8, plus the first input
    with pytest.raises(ValueError, match="shorter"):
        load_validation_tokens(str(tmp_path / "fineweb_val_*.bin"), seq_len=64)
    with pytest.raises(FileNotFoundError):
        load_validation_tokens(str(tmp_path / "missing_*.bin"), seq_len=8)


def make_train_shards(tmp_path, sizes):
    offset = 0
    for i, n in enumerate(sizes):
        write_data_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.arange(offset, offset + n) % 60000)
        offset += n
    return str(tmp_path / "fineweb_train_*.bin")


def test_train_loader_is_deterministic_multi_shard_and_consistent(tmp_path):
    pattern = make_train_shards(tmp_path, [1000, 700, 1300])
    a, b = TrainLoader(pattern, 16, seed=3), TrainLoader(pattern, 16, seed=3)
    for _ in range(5):
        (xa, ya), (xb, yb) = a.next_batch(8, "cpu"), b.next_batch(8, "cpu")
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 1:], ya[:, :-1])  # targets are inputs shifted by one
        assert ((ya[:, -1] - xa[:, -1]) % 60000 == 1).all()  # windows never straddle shards
    other = TrainLoader(pattern, 16, seed=4).next_batch(8, "cpu")[0]
    assert not torch.equal(other, TrainLoader(pattern, 16, seed=3).next_batch(8, "cpu")[0])
    first_tokens = a.next_batch(64, "cpu")[0][:, 0].numpy()
    shards = set(np.searchsorted([1000, 1700, 3000], first_tokens, side="right").tolist())
    assert shards == {0, 1, 2}  # draws from every shard


def test_train_loader_ranks_split_each_epoch(tmp_path):
    pattern = make_train_shards(tmp_path, [900, 900])
    per_epoch = sum((n - 1) // 16 for n in (900, 900))
    ranks = [TrainLoader(pattern, 16, rank=r, world_size=2, seed=7) for r in range(2)]
    seen = [{int(row[0]) for row in loader.next_batch(len(loader.order), "cpu")[0]} for loader in ranks]
    assert not seen[0] & seen[1]
    assert len(seen[0]) + len(seen[1]) >= per_epoch - 2
    before = ranks[0].epoch
    ranks[0].next_batch(1, "cpu")
    assert ranks[0].epoch == before + 1  # exhausted epochs roll over
