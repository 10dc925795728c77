"""Bytes-per-token LUTs (leading space and boundary rules) and the byte sidecar."""

from pathlib import Path

import pytest
import torch

from reference_impl.evaluate import ValidationData
from reference_impl.hparams import Hyperparameters
from reference_impl.synthetic import write_synthetic_dataset
from reference_impl.testing import torch_threads
from reference_impl.tokenizer_luts import build_sentencepiece_luts, target_byte_counts


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class HandMadeTokenizer:
    """The SentencePieceProcessor methods the LUT builder uses, over a fixed piece table."""

    def __init__(self, pieces):
        self.pieces = pieces  # list of (piece, kind) with kind in control/unknown/unused/byte/normal

    def vocab_size(self):
        return len(self.pieces)

    def piece_to_id(self, piece):
        return next((i for i, (p, _) in enumerate(self.pieces) if p == piece), self.unk_id())

    def unk_id(self):
        return next(i for i, (_, kind) in enumerate(self.pieces) if kind == "unknown")

    def id_to_piece(self, i):
        return self.pieces[i][0]

    def is_control(self, i):
        return self.pieces[i][1] == "control"

    def is_unknown(self, i):
        return self.pieces[i][1] == "unknown"

    def is_unused(self, i):
        return self.pieces[i][1] == "unused"

    def is_byte(self, i):
        return self.pieces[i][1] == "byte"


PIECES = [("<pad>", "control"), ("<s>", "control"), ("</s>", "control"), ("<unk>", "unknown"),
          ("<0xC3>", "byte"), ("\u2581", "normal"), ("\u2581hello", "normal"), ("world", "normal"),
          ("é", "normal"), ("\u2581día", "normal"), ("<unused>", "unused")]


def test_luts_on_a_hand_made_tokenizer():
    base, space, boundary = build_sentencepiece_luts(HandMadeTokenizer(PIECES), vocab_size=12)
    assert base.tolist() == [0, 0, 0, 0, 1, 0, 5, 5, 2, 4, 0, 0]
    assert space.tolist() == [False] * 5 + [True, True, False, False, True, False, False]
    assert boundary.tolist() == [True] * 4 + [False] * 6 + [True, True]  # unused and out-of-table ids too


def test_target_bytes_apply_the_leading_space_rule():
    luts = build_sentencepiece_luts(HandMadeTokenizer(PIECES), vocab_size=11)
    #            <s>  ▁hello  ▁   world  é  <0xC3>  <s>  ▁día  ▁día
    tokens = torch.tensor([1, 6, 5, 7, 8, 4, 1, 9, 9])
    counts = target_byte_counts(tokens, luts)
    # position 0 is never a target; "▁hello" after BOS has no space; "▁" alone is one space byte;
    # BOS costs nothing; "▁día" after BOS is 4 bytes, after a normal piece 5.
    assert counts.tolist() == [0, 5, 1, 5, 2, 1, 0, 4, 5]


def test_tokenizer_without_a_space_piece_is_rejected():
    pieces = [p for p in PIECES if p[0] != "\u2581"]
    with pytest.raises(ValueError, match="own piece"):
        build_sentencepiece_luts(HandMadeTokenizer(pieces), vocab_size=len(pieces))


def check_bytes_match_utf8(sp, texts):
    luts = build_sentencepiece_luts(sp, sp.vocab_size())
    for text in texts:
        tokens = torch.tensor([sp.bos_id()] + sp.encode(text))
        assert int(target_byte_counts(tokens, luts).sum()) == len(text.encode("utf-8")), text


TEXTS = ["Quchaité zouvö, 1984 mañana?", "plain ascii words and spaces", "naïve café — 𝄞 emoji 🙂 end.",
         "tabs\tand\nnewlines", "x"]


def test_luts_count_utf8_bytes_for_a_trained_tokenizer(tmp_path):
    import sentencepiece as spm

    data = write_synthetic_dataset(tmp_path, vocab_size=384, train_tokens=4_000, val_tokens=1_000)
    check_bytes_match_utf8(spm.SentencePieceProcessor(model_file=str(data.tokenizer_path)), TEXTS)


@pytest.mark.corpus
def test_luts_count_utf8_bytes_for_the_real_8192_tokenizer():
    import sentencepiece as spm

    model = SHARED / "corpus" / "tokenizers" / "fineweb_8192_bpe.model"
    if not model.is_file():
        pytest.skip("../shared/corpus tokenizers not available")
    check_bytes_match_utf8(spm.SentencePieceProcessor(model_file=str(model)),
                           TEXTS + ["The quick brown fox jumps over the lazy dog. It's 3:45pm!"])


def test_byte_sidecar_is_used_when_present_and_agrees_with_the_luts(tmp_path):
    data = write_synthetic_dataset(tmp_path, vocab_size=384, train_tokens=4_000, val_tokens=3_000,
                                   byte_sidecar=True)
    assert data.byte_sidecar is not None and data.byte_sidecar.name.startswith("fineweb_val_bytes_")
    common = {"data_dir": str(tmp_path), "vocab_size": 384, "eval_seq_len": 64}
    with_sidecar = ValidationData.load(Hyperparameters(**common), "cpu")
    from_luts = ValidationData.load(Hyperparameters(**common, val_byte_sidecar="0"), "cpu")
    assert with_sidecar.byte_source == "sidecar" and from_luts.byte_source == "luts"
    # The sidecar must not leak into the token stream (its name also matches fineweb_val_*).
    assert torch.equal(with_sidecar.tokens, from_luts.tokens)
    assert with_sidecar.num_targets == (3_000 - 1) // 64 * 64
    assert int(with_sidecar.target_bytes.sum()) == int(from_luts.target_bytes.sum())
    with pytest.raises(FileNotFoundError):
        data.byte_sidecar.unlink()
        ValidationData.load(Hyperparameters(**common, val_byte_sidecar="1"), "cpu")
