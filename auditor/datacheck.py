"""``pgolf data check DIR``: is a FineWeb data folder fit for a long run, before the run starts?

Layout (records-format.md §5): ``DIR/datasets/fineweb10B_sp<V>/fineweb_{train,val}_NNNNNN.bin``
shards, optional ``fineweb_val_bytes_NNNNNN.bin`` byte sidecars (CaseOps), and
``DIR/tokenizers/*.model``. A shard is a 256 x int32 little-endian header ``[20240520, 1, n, 0...]``
followed by ``n`` uint16 values. Checked, per file: the header, the size the header implies, the
token ids against the vocabulary (the folder's ``sp<V>``, or the tokenizer's), each sidecar
against the validation shard it belongs to, and that the tokenizer loads with that vocabulary.
Nothing is written; a shard's tokens are read in bounded chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.rerun.synthetic import SHARD_HEADER_BYTES as HEADER_BYTES
from auditor.rerun.synthetic import SHARD_MAGIC, SHARD_VERSION

HEADER_INTS = HEADER_BYTES // 4
CHUNK_TOKENS = 1 << 24  # 32 MB of uint16 at a time
SHARD_NAME = re.compile(r"^fineweb_(train|val|val_bytes)_(\d+)\.bin$")


@dataclass
class FileCheck:
    path: str
    kind: str  # train | val | val_bytes | tokenizer
    ok: bool
    detail: str
    tokens: int | None = None


@dataclass
class DataReport:
    root: str
    vocab_size: int | None
    files: list[FileCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the folder as a whole

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.ok for f in self.files)

    def to_dict(self) -> dict:
        return {"root": self.root, "vocab_size": self.vocab_size, "ok": self.ok, "problems": self.problems,
                "files": [vars(f) for f in self.files]}


def _shard_header(path: Path) -> tuple[int | None, str]:
    """(token count, "") or (None, why)."""
    try:
        size = path.stat().st_size
        header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if header.size < HEADER_INTS:
        return None, f"{size} bytes: shorter than the {HEADER_BYTES}-byte header"
    if int(header[0]) != SHARD_MAGIC:
        return None, f"magic {int(header[0])}, expected {SHARD_MAGIC}: not a shard"
    if int(header[1]) != SHARD_VERSION:
        return None, f"version {int(header[1])}, expected {SHARD_VERSION}"
    n = int(header[2])
    if n < 0:
        return None, f"negative token count {n}"
    expected = HEADER_BYTES + 2 * n
    if size != expected:
        return None, f"{size:,} bytes, but the header's {n:,} tokens need {expected:,} (truncated or padded)"
    return n, ""


def _max_value(path: Path, n: int) -> int:
    data = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))
    best = 0
    for start in range(0, n, CHUNK_TOKENS):
        best = max(best, int(data[start:start + CHUNK_TOKENS].max()))
    return best


def _tokenizer_vocab(path: Path) -> tuple[int | None, str]:
    try:
        import sentencepiece as spm
    except ImportError:
        return None, "sentencepiece is not installed (the train extra): not loaded"
    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        return None, f"does not load as a SentencePiece model ({str(exc).splitlines()[0][:120]})"
    return int(sp.vocab_size()), ""


def check_data(root: Path, *, vocab_size: int | None = None, scan_tokens: bool = True) -> DataReport:
    root = Path(root)
    report = DataReport(root=str(root), vocab_size=vocab_size)
    if not root.is_dir():
        report.problems.append(f"{root} is not a folder")
        return report
    datasets = sorted(root.glob("datasets/fineweb10B_sp*")) or ([root] if any(root.glob("fineweb_*.bin")) else [])
    tokenizers = sorted(root.glob("tokenizers/*.model")) or sorted(root.glob("*.model"))
    if not datasets:
        report.problems.append("no datasets/fineweb10B_sp<V>/ folder and no fineweb_*.bin shards")
    if len(datasets) > 1 and vocab_size is None:
        report.problems.append("several datasets (" + ", ".join(d.name for d in datasets) + "): give --vocab")
    names = [re.search(r"_sp(\d+)$", d.name) for d in datasets]
    data_vocabs = {int(m.group(1)) for m in names if m}
    want = vocab_size or (data_vocabs.pop() if len(data_vocabs) == 1 else None)
    for tok in tokenizers:
        v, why = _tokenizer_vocab(tok)
        if v is None:  # not loaded: a defect, unless only sentencepiece is missing here
            ok, detail = why.startswith("sentencepiece"), why
        else:
            ok = want is None or v == want
            detail = f"loads, {v} pieces" + ("" if ok else f", but the data's vocabulary is {want}")
        report.files.append(FileCheck(str(tok.relative_to(root)), "tokenizer", ok, detail))
    if not tokenizers:
        report.problems.append("no tokenizer (tokenizers/*.model)")

    for ds in datasets:
        m = re.search(r"_sp(\d+)$", ds.name)
        vocab = vocab_size or (int(m.group(1)) if m else None)
        report.vocab_size = report.vocab_size or vocab
        shards: dict[str, dict[int, tuple[Path, int | None]]] = {"train": {}, "val": {}, "val_bytes": {}}
        for path in sorted(ds.glob("fineweb_*.bin")):
            name = SHARD_NAME.match(path.name)
            rel = str(path.relative_to(root))
            if name is None:
                report.files.append(FileCheck(rel, "other", False, "not a fineweb_{train,val,val_bytes}_N.bin name"))
                continue
            kind, index = name.group(1), int(name.group(2))
            n, why = _shard_header(path)
            check = FileCheck(rel, kind, n is not None, why or f"{n:,} values", tokens=n)
            if n is not None and scan_tokens and kind != "val_bytes" and vocab is not None and n:
                top = _max_value(path, n)
                if top >= vocab:
                    check.ok, check.detail = False, f"{n:,} tokens, but id {top} is outside the vocabulary of {vocab}"
            shards[kind][index] = (path, n)
            report.files.append(check)
        if not shards["val"]:
            report.problems.append(f"{ds.name}: no validation shards (fineweb_val_*.bin)")
        if not shards["train"]:
            report.problems.append(f"{ds.name}: no training shards (fineweb_train_*.bin)")
        for index, (path, n) in sorted(shards["val_bytes"].items()):
            val = shards["val"].get(index)
            entry = next(f for f in report.files if f.path == str(path.relative_to(root)))
            if val is None:
                entry.ok, entry.detail = False, f"a byte sidecar without fineweb_val_{index:06d}.bin"
            elif n is not None and val[1] is not None and n != val[1]:
                entry.ok, entry.detail = False, f"{n:,} byte counts for the {val[1]:,} tokens of its shard"
    return report


def render_text(report: DataReport) -> str:
    lines = [f"data check of {report.root}: {'OK' if report.ok else 'PROBLEMS'}"
             + (f" (vocabulary {report.vocab_size})" if report.vocab_size else "")]
    lines += [f"  problem: {p}" for p in report.problems]
    for f in report.files:
        lines.append(f"  {'ok ' if f.ok else 'BAD'} {f.kind:<9} {f.path}: {f.detail}")
    return "\n".join(lines) + "\n"
