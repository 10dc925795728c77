"""Synthetic FineWeb-shaped data for tests and the tiny preset (no downloads).

Text comes from a small invented language: a Zipf-distributed lexicon of syllable words
(some with accented letters, so multi-byte UTF-8 and byte-fallback pieces occur), where each
word prefers a handful of successors and each document draws extra words from its own topic.
That gives a model structure to learn at short range (successors) and long range (the topic,
which rewards context: sliding windows and test-time training). A
SentencePiece BPE tokenizer is trained on the training text with the settings of the real
data pipeline (byte fallback, split digits, no dummy prefix, pad/bos/eos/unk = 0/1/2/3),
unless an existing .model (e.g. the real 8192-piece one) is passed in. Documents are stored
as [BOS] + tokens in shards of the real format, in the DATA_DIR layout the records use:
  <out>/datasets/fineweb10B_sp<V>/fineweb_{train,val}_NNNNNN.bin (+ fineweb_val_bytes_* sidecar)
  <out>/tokenizers/fineweb_<V>_bpe.model
"""

import io
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import write_data_shard

CONSONANTS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "ch", "sh", "th", "qu", "ñ"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "é", "ö"]
BOS_ID = 1


@dataclass
class SyntheticDataset:
    data_dir: Path
    datasets_dir: Path
    tokenizer_path: Path
    vocab_size: int
    train_shards: list[Path] = field(default_factory=list)
    val_shards: list[Path] = field(default_factory=list)
    byte_sidecar: Path | None = None
    train_tokens: int = 0
    val_tokens: int = 0


class PseudoLanguage:
    def __init__(self, seed: int, num_words: int = 3000, successors: int = 6, follow_prob: float = 0.6,
                 num_topics: int = 24, topic_words: int = 80, topic_prob: float = 0.6):
        rng = np.random.default_rng([seed, 0])
        words: set[str] = set()
        while len(words) < num_words:
            syllables = int(rng.integers(1, 4))
            words.add("".join(CONSONANTS[rng.integers(len(CONSONANTS))] + VOWELS[rng.integers(len(VOWELS))]
                              for _ in range(syllables)))
        self.words = sorted(words)
        rng.shuffle(self.words)  # frequency rank unrelated to spelling
        ranks = np.arange(1, num_words + 1)
        self.zipf = (1.0 / ranks ** 1.1) / (1.0 / ranks ** 1.1).sum()
        self.successors = rng.choice(num_words, size=(num_words, successors), p=self.zipf)
        self.topics = np.stack([rng.choice(num_words, size=topic_words, replace=False) for _ in range(num_topics)])
        self.follow_prob, self.topic_prob = follow_prob, topic_prob

    def documents(self, rng: np.random.Generator):
        """Endless stream of documents (sentences of words, punctuation, the odd number)."""
        n = len(self.words)
        while True:
            length = int(rng.integers(30, 300))
            follow = rng.random(length) < self.follow_prob
            pick = rng.integers(0, self.successors.shape[1], size=length)
            fresh = rng.choice(n, size=length, p=self.zipf)
            on_topic = rng.random(length) < self.topic_prob
            fresh[on_topic] = rng.choice(self.topics[rng.integers(len(self.topics))], size=int(on_topic.sum()))
            ends = rng.random(length)
            word, out, capital = int(fresh[0]), [], True
            for i in range(length):
                word = int(self.successors[word, pick[i]]) if follow[i] else int(fresh[i])
                text = self.words[word]
                if ends[i] < 0.02:
                    text = str(int(rng.integers(1, 3000)))
                out.append(text.capitalize() if capital else text)
                capital = ends[i] > 0.9
                if capital:
                    out[-1] += "." if ends[i] > 0.93 else "?"
                elif ends[i] > 0.82:
                    out[-1] += ","
            yield " ".join(out) + "."


def train_tokenizer(texts: list[str], vocab_size: int) -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, character_coverage=0.9995,
        normalization_rule_name="identity", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        num_threads=1, minloglevel=2, max_sentence_length=100_000)
    return buf.getvalue()


def encode_stream(sp, docs, num_tokens: int, with_bytes: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """[BOS] + ids per document until num_tokens; optionally the UTF-8 bytes each token covers
    (measured by decoding growing prefixes, as the CaseOps sidecar builder does; BOS = 0)."""
    tokens = np.empty(num_tokens, dtype=np.int64)
    counts = np.zeros(num_tokens, dtype=np.int64) if with_bytes else None
    filled = 0
    while filled < num_tokens:
        ids = sp.encode(next(docs))
        take = min(len(ids) + 1, num_tokens - filled)
        tokens[filled] = BOS_ID
        tokens[filled + 1:filled + take] = ids[:take - 1]
        if with_bytes:
            lengths = [len(sp.decode(ids[:i]).encode("utf-8")) for i in range(take)]
            counts[filled + 1:filled + take] = np.diff(lengths)
        filled += take
    return tokens, counts


def write_synthetic_dataset(out_dir: str | Path, vocab_size: int = 512, train_tokens: int = 400_000,
                            val_tokens: int = 32_768, seed: int = 0, sp_model: str | Path | None = None,
                            shard_tokens: int | None = None, byte_sidecar: bool = False) -> SyntheticDataset:
    """Write a complete DATA_DIR; returns where everything went."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    datasets_dir = out_dir / "datasets" / f"fineweb10B_sp{vocab_size}"
    tokenizer_path = out_dir / "tokenizers" / f"fineweb_{vocab_size}_bpe.model"
    datasets_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path.parent.mkdir(parents=True, exist_ok=True)

    language = PseudoLanguage(seed)
    train_docs = language.documents(np.random.default_rng([seed, 2]))
    if sp_model is not None:
        shutil.copyfile(sp_model, tokenizer_path)
    else:
        sample = [next(train_docs) for _ in range(400)]
        tokenizer_path.write_bytes(train_tokenizer(sample, vocab_size))
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    if sp.vocab_size() != vocab_size:
        raise ValueError(f"tokenizer has {sp.vocab_size()} pieces, expected {vocab_size}")

    result = SyntheticDataset(out_dir, datasets_dir, tokenizer_path, vocab_size,
                              train_tokens=train_tokens, val_tokens=val_tokens)
    val, val_bytes = encode_stream(sp, language.documents(np.random.default_rng([seed, 1])), val_tokens, byte_sidecar)
    result.val_shards.append(datasets_dir / "fineweb_val_000000.bin")
    write_data_shard(result.val_shards[0], val)
    if byte_sidecar:
        result.byte_sidecar = datasets_dir / "fineweb_val_bytes_000000.bin"
        write_data_shard(result.byte_sidecar, val_bytes)

    train, _ = encode_stream(sp, train_docs, train_tokens, False)
    shard_tokens = shard_tokens or math.ceil(train_tokens / 2)
    for i, s0 in enumerate(range(0, train_tokens, shard_tokens)):
        path = datasets_dir / f"fineweb_train_{i:06d}.bin"
        write_data_shard(path, train[s0:s0 + shard_tokens])
        result.train_shards.append(path)
    return result
