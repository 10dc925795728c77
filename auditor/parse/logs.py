"""Reading a training log into facts: scores, sizes, times, seed, configuration.

A log is streamed line by line (a 1 GB log is never loaded whole) through a small state machine:

* launcher noise (torchrun banners, NCCL warnings, ``[rankN]:`` prefixes, epoch timestamps) is
  stripped or skipped;
* embedded source code is recognised and fingerprinted (length + sha256) instead of parsed:
  Family A writes the whole script before a line of 100 ``=``; Family B/C put it between
  ``Source code:`` and 100-``=`` lines; the shared corpus replaces it by a placeholder line
  ``[embedded source removed from this corpus copy: N bytes, sha256 H]``;
* every other line goes through cheap substring prefilters before any regex runs, and metric
  regexes demand numbers, so f-strings such as ``val_bpb:{val_bpb:.8f}`` never match.

Which final line is "the" reported score follows records-format.md §3.5; see ``select_reported``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditor.findings import finding
from auditor.models import Finding, Location, SeedRun, Severity
from auditor.parse.textio import (
    PROBLEM_BINARY,
    PROBLEM_EMPTY,
    PROBLEM_NOT_FILE,
    PROBLEM_SYMLINK_ESCAPE,
    ReadStats,
    folder_root_of,
    iter_lines_bounded,
)

LOG_MAX_BYTES = 64 << 20  # real logs are < 3 MB; beyond this we read the head and say so
LOG_MAX_LINE = 32 << 10  # the longest real line (a key=value hyper-parameter dump) is ~4 KB
EMBED_TEXT_LIMIT = 512 << 10  # keep embedded source text up to this size (scripts are < 400 KB)
MAX_SERIES = 50_000  # per-step lines kept per kind; a 10-minute run logs a few thousand
MAX_FINALS = 10_000

SEPARATOR = "=" * 100
ARTIFACT_CAP_BYTES = 16_000_000

NUM = r"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|inf)"

TIMESTAMP = re.compile(r"\d{10}\.\d{3} ")
RANK_PREFIX = re.compile(r"\[(?:rank|default)\d+\]:\s?")
NOISE_W = re.compile(r"W\d{4} \d\d:\d\d:\d\d\.\d+ \d+ ")
NOISE_BRACKET = re.compile(r"\[W\d{3,4} |\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ")
PLACEHOLDER = re.compile(
    r"\[embedded source removed from this corpus copy: (?P<n>\d+) bytes, sha256 (?P<sha>[0-9a-f]{64})\]$"
)
PY_LINE = re.compile(
    r"(?:import [A-Za-z_]|from [A-Za-z_.][\w.]* import |def [A-Za-z_]\w*\(|async def |class [A-Za-z_]\w*[(:]"
    r"|if __name__ ?==|@[A-Za-z_][\w.]*(?:\(|$))"
)

PY_ASSIGN = re.compile(r"[A-Za-z_][\w.]*(?:\s*:\s*[A-Za-z_][\w\[\], .|]*?)?\s*[-+*/|&]?=\s")
FINAL = re.compile(
    r"(?P<label>[A-Za-z][A-Za-z0-9_:+\-. ]*?)\s+(?:stride:(?P<stride>\d+)\s+)?"
    r"val_loss[:=]\s*(?P<loss>" + NUM + r")\s+(?:sliding\s+)?val_bpb[:=]\s*(?P<bpb>" + NUM + r")(?P<tail>.*)$"
)
STEP_VAL = re.compile(
    r"(?:step:)?(?P<step>\d+)/(?P<iters>\d+)\s+val_loss:\s*(?P<loss>" + NUM + r")\s+"
    r"val_bpb:\s*(?P<bpb>" + NUM + r")(?P<tail>.*)$"
)
STEP_TRAIN = re.compile(
    r"(?:step:)?(?P<step>\d+)/(?P<iters>\d+)\s+train_loss:\s*(?P<loss>" + NUM + r")"
    r"(?:\s+train_time:\s*(?P<t>\d+(?:\.\d+)?)(?P<unit>ms|m)\b)?"
)
STEP_TRAIN_SHORT = re.compile(  # ternary/binary/XNOR: step:1000/10000 loss:3.3120 t:91478ms avg:91.5ms
    r"step:(?P<step>\d+)/(?P<iters>\d+)\s+loss:\s*(?P<loss>" + NUM + r")\s+t:(?P<t>\d+(?:\.\d+)?)ms"
)
TRAIN_TIME_TAIL = re.compile(r"train_time:\s*(?P<t>\d+(?:\.\d+)?)(?P<unit>ms|m)\b")
STOP = re.compile(
    r"stopping_early: \S+ train_time:\s*(?P<ms>\d+(?:\.\d+)?)ms(?:\s+step:\s*(?P<step>\d+)/(?P<iters>\d+))?"
)
CODE_SIZE = re.compile(r"Code size(?: \((?P<kind>compressed|uncompressed)\))?: (?P<n>\d+) bytes")
SERIALIZED = re.compile(
    r"Serialized model(?: (?P<fmt>[^:]+))?: (?P<n>\d+) bytes"
    r"(?: \(payload:(?P<payload>\d+) raw_torch:(?P<raw>\d+) payload_ratio:(?P<ratio>[\d.]+)x\))?"
)
TOTAL_SIZE = re.compile(r"Total submission size(?: (?P<fmt>[^:]+))?: (?P<n>\d+) bytes")
ARTIFACT_LINE = re.compile(
    r"artifact:(?P<mb>\d+(?:\.\d+)?)MB\s+(?P<kind>\w+):(?P<nq>\d+)\((?P<qb>\d+)B\)\s+"
    r"fp:(?P<nf>\d+)\((?P<fb>\d+)B\)\s+code:(?P<code>\d+)"
)
BUDGET_LINE = re.compile(r"budget:(?P<n>\d+)/(?P<cap>\d+)")
APPROX_TOTAL = re.compile(  # JEPA: "INT4+fp8+brotli: 15.67MB model + 0.077MB code = 15.75/16.00MB FITS"
    r"\s*(?P<fmt>\S+): (?P<model>\d+(?:\.\d+)?)MB model \+ (?P<code>\d+(?:\.\d+)?)MB code = "
    r"(?P<total>\d+(?:\.\d+)?)/(?P<cap>\d+(?:\.\d+)?)MB"
)
SEED_LINE = re.compile(r"seed:\s?(?P<n>\d+)$")
SEED_EQ = re.compile(r"(?:^|\s)seed=(?P<n>\d+)\b")
# Lines where "seed=N" is a log statement: "[19:23:20] RUN seed=42", "=== seed=42 result ===", or a
# line of key=value tokens only — not code such as "def f(vocab_size=1024, seed=42):".
SEED_EQ_LINE = re.compile(
    r"(?:\[\d\d:\d\d:\d\d\] )?(?:RUN |DONE |=== )?(?:[A-Za-z_]\w*=\S*\s+)*seed=(?P<n>\d+)"
    r"(?:\s+[A-Za-z_]\w*=\S*)*(?: result ===)?$"
)
SEED_FILENAME = re.compile(r"seed[_-]?(\d+)", re.IGNORECASE)
VAL_TOKENS_A = re.compile(r"val_loader:shards pattern=(?P<glob>\S+) tokens:(?P<n>\d+)")
VAL_TOKENS_B = re.compile(r"val_tokens:\s*(?P<n>\d+)$")
TRAIN_SHARDS = re.compile(r"(?:train_loader:dataset:(?P<ds>\S+) )?train_shards:\s*(?P<n>\d+)")
TOTAL_EVAL = re.compile(r"total_eval_time:\s*(?P<s>\d+(?:\.\d+)?)s")
VERSION = re.compile(r"(?:Running )?(?P<what>Python|PyTorch) (?P<ver>\d[\w.+\-]*)")
TOKENIZER = re.compile(r"tokenizer_path=(?P<path>\S+)")
TOKENIZER_KIND = re.compile(r"tokenizer_kind=(?P<kind>\S+)")
GPTQ_RESERVE = re.compile(r"gptq:reserving (?P<s>\d+(?:\.\d+)?)s, effective=(?P<ms>\d+(?:\.\d+)?)ms")
DUMP_LINE = re.compile(r"  (?P<key>[A-Za-z_][A-Za-z0-9_]*):(?: (?P<val>.*))?$")
KV_TOKEN = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<val>\S*)")
SUMMARY_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:[^\s:/]\S*(?:\s+[A-Za-z_][A-Za-z0-9_]*[:=]\S+)*$")
SUMMARY_BLOCK = re.compile(r"(?P<key>[a-z_]+):\s{2,}(?P<val>\S.*)$")

EVAL_TIME_MS = re.compile(r"\beval_time:(?P<ms>\d+(?:\.\d+)?)ms\b")
TIME_MS = re.compile(r"(?<![a-z_])time:(?P<ms>\d+(?:\.\d+)?)ms\b")
ELAPSED_S = re.compile(r"\belapsed=(?P<s>\d+(?:\.\d+)?)s\b")
STRIDE = re.compile(r"\bstride[:=]\s*(?P<n>\d+)")

SUSPICIOUS = re.compile(r"slot|ngram|n-gram|ppm|hedge|etlb|two_pass|two-pass|twopass", re.IGNORECASE)
PREQUANT = re.compile(r"pre[-_]?quant", re.IGNORECASE)

# Log lines that mark a method switching on (first line and count are kept per kind).
MARKER_PREFIXES = {
    "ema:": "ema",
    "swa:": "swa",
    "late_qat:": "late_qat",
    "qat:": "qat",
    "layer_loop:": "layer_loop",
    "recurrence:": "recurrence",
    "ttt_sliding:start": "ttt_start",
    "ttt:start": "ttt_start",
    "ttt_phased:": "ttt_start",
    "beginning TTT eval timer": "ttt_start",
    "ttt_lora:": "ttt_lora",
    "ttt_chunk [": "ttt_progress",
    "ttp:": "ttt_progress",
    "tttg:": "ttt_progress",
    "ttpp:": "ttt_progress",
    "ttpr:": "ttt_progress",
    "ttt:": "ttt",
    "ttt_sliding:": "ttt",
    "gptq:": "gptq",
    "GPTQ:": "gptq",
    "GPTQ quantization": "gptq",
    "selective_prune:": "prune",
    "temp_scaling optimal": "temperature",
    "ngram_tilt:": "ngram",
    "ngram:": "ngram",
    "slot:": "slot",
    "etlb:": "etlb",
    "ppm:": "ppm",
    "peak memory": "peak_memory",
    "warmup_step:": "warmup",
    "warmup:": "warmup",
}
_MARKER_TUPLE = tuple(MARKER_PREFIXES)
_TTT_PROGRESS = tuple(k for k, v in MARKER_PREFIXES.items() if v == "ttt_progress")

DIAGNOSTIC_PREFIXES = ("diagnostic", "pre-quantization", "pre_quant", "prequant", "ttt_sliding:done")
FAILED_TTT_MARGIN_BPB = 0.01  # a TTT line this much worse than the score before it is a failed try


# ---------------------------------------------------------------------------------------------
# What a log says


@dataclass(slots=True)
class FinalLine:
    """``<label> val_loss:<f> val_bpb:<f><tail>`` — one evaluation result."""

    label: str
    val_loss: float
    val_bpb: float
    line: int
    tail: str = ""
    stride: int | None = None
    eval_time_ms: float | None = None
    exact: bool = False
    bpb_decimals: int = 0
    diagnostic: bool = False
    kind: str = "other"  # roundtrip | sliding | ttt | other
    prefixed: bool = False  # the line started with "Final BPB: "

    @property
    def base_label(self) -> str:
        return self.label.replace("_exact", "")


@dataclass(slots=True)
class StepVal:
    step: int
    iters: int
    val_loss: float
    val_bpb: float
    line: int
    train_time_ms: float | None = None


@dataclass(slots=True)
class TrainLoss:
    step: int
    iters: int
    loss: float
    line: int
    train_time_ms: float | None = None


@dataclass(slots=True)
class SizeLine:
    n: int
    line: int
    fmt: str | None = None  # serialized/total: "int8+zlib", ...; code: "compressed"/"uncompressed"/None
    payload: int | None = None
    raw_torch: int | None = None


@dataclass(slots=True)
class StopLine:
    train_time_ms: float
    line: int
    step: int | None = None
    iters: int | None = None


@dataclass(slots=True)
class Marker:
    kind: str
    line: int  # first occurrence
    text: str
    count: int = 1


@dataclass(slots=True)
class SuspiciousLabel:
    label: str
    reason: str
    line: int


@dataclass(slots=True)
class ArtifactLine:
    """The ternary/binary/XNOR accounting lines (``artifact:`` and ``budget:``)."""

    line: int
    mb: float | None = None
    code: int | None = None
    budget_bytes: int | None = None
    budget_line: int | None = None


@dataclass(slots=True)
class EmbeddedSource:
    """A copy of the running script inside the log, fingerprinted.

    ``sha256``/``n_bytes`` describe the whole script text as logged (lines joined by ``\\n``; this
    equals the script file when it ends with a single newline). For the corpus placeholder, the
    removed part is known only by its size and hash (``removed_*``), and ``prefix`` holds the
    lines kept before it; ``sha256`` is then known only when nothing was kept.
    """

    kind: str  # "before_separator" (Family A / after a dump) | "source_block" (Source code:)
    start_line: int
    end_line: int
    n_bytes: int
    sha256: str | None
    placeholder: bool = False
    prefix: str = ""
    removed_bytes: int | None = None
    removed_sha256: str | None = None
    text: str | None = None  # kept when smaller than EMBED_TEXT_LIMIT

    def matches(self, script: bytes) -> bool:
        """Is ``script`` (a shipped file's bytes) the code this log ran (modulo trailing newlines)?"""
        if self.placeholder:
            head = self.prefix.encode("utf-8")
            if not script.startswith(head) or self.removed_sha256 is None:
                return False
            rest = script[len(head) :]
            return any(hashlib.sha256(c).hexdigest() == self.removed_sha256 for c in _newline_variants(rest))
        if self.sha256 is None:
            return False
        mine = self.sha256
        return any(hashlib.sha256(c).hexdigest() == mine for c in _newline_variants(script)) or (
            self.text is not None and self.text.rstrip("\n").encode("utf-8") == script.rstrip(b"\n")
        )


def _newline_variants(data: bytes) -> list[bytes]:
    stripped = data.rstrip(b"\n")
    return [data, stripped, stripped + b"\n"]


@dataclass
class ParsedLog:
    rel: str
    path: str
    sha256: str = ""
    size: int | None = None
    lines: int = 0
    problems: list[str] = field(default_factory=list)
    truncated: bool = False
    has_timestamps: bool = False

    finals: list[FinalLine] = field(default_factory=list)
    reported: FinalLine | None = None
    reported_note: str | None = None
    reported_eval_time_ms: float | None = None  # from the reported line, else from its non-exact twin
    step_vals: list[StepVal] = field(default_factory=list)
    train_losses: list[TrainLoss] = field(default_factory=list)
    series_dropped: int = 0  # step lines beyond MAX_SERIES (counted, not kept)
    stopping_early: StopLine | None = None
    last_train_time_ms: float | None = None
    total_eval_time_s: float | None = None

    code_sizes: list[SizeLine] = field(default_factory=list)
    serialized: list[SizeLine] = field(default_factory=list)
    totals: list[SizeLine] = field(default_factory=list)
    artifact_line: ArtifactLine | None = None
    approx_total_mb: float | None = None  # "... = 15.75/16.00MB FITS" (JEPA); megabytes, rounded
    artifact_bytes: int | None = None
    artifact_source: str | None = None  # which rule produced artifact_bytes
    artifact_fmt: str | None = None
    code_bytes: int | None = None  # the counted code (compressed one when logged)
    code_bytes_uncompressed: int | None = None
    model_bytes: int | None = None

    seed: int | None = None
    seed_source: str | None = None  # "log" | "hyperparameters" | "filename"
    seed_in_filename: int | None = None  # compare with ``seed``: 04-30's train_seed_42.txt logs seed:1337
    seeds_seen: list[int] = field(default_factory=list)
    hyperparameters: dict[str, str] = field(default_factory=dict)
    hyperparameters_line: int | None = None
    summary: dict[str, str] = field(default_factory=dict)  # Family A key:value setup lines
    summary_block: dict[str, str] = field(default_factory=dict)  # 03-22 trailing "---" block
    val_tokens: int | None = None
    val_glob: str | None = None
    train_shards: int | None = None
    train_dataset: str | None = None
    model_params: int | None = None
    python_version: str | None = None
    pytorch_version: str | None = None
    tokenizer_path: str | None = None
    tokenizer_kind: str | None = None
    logfile: str | None = None  # "logs/<run_id>.txt" printed by the script
    gptq_reserve_s: float | None = None
    gptq_effective_ms: float | None = None
    world_size: int | None = None
    grad_accum_steps: int | None = None
    markers: dict[str, Marker] = field(default_factory=dict)
    suspicious: list[SuspiciousLabel] = field(default_factory=list)
    embedded_sources: list[EmbeddedSource] = field(default_factory=list)
    separators: int = 0

    @property
    def problem(self) -> str | None:
        return "; ".join(self.problems) if self.problems else None

    @property
    def readable(self) -> bool:
        """False when nothing could be parsed (binary, unreadable, link out of the folder)."""
        return self.lines > 0

    @property
    def has_training(self) -> bool:
        return bool(self.train_losses or self.step_vals or self.stopping_early)

    @property
    def last_step_val(self) -> StepVal | None:
        return self.step_vals[-1] if self.step_vals else None

    @property
    def train_time_ms(self) -> float | None:
        """Training wallclock: the stop line when present, else the last logged train_time."""
        if self.stopping_early is not None:
            return self.stopping_early.train_time_ms
        return self.last_train_time_ms

    @property
    def candidates(self) -> list[FinalLine]:
        """Final lines that could be a reported score (not diagnostics)."""
        return [f for f in self.finals if not f.diagnostic]

    def to_seed_run(self) -> SeedRun:
        rep = self.reported
        return SeedRun(
            log_file=self.rel,
            seed=self.seed,
            seed_source=self.seed_source,
            label=rep.label if rep else None,
            val_loss=rep.val_loss if rep else None,
            val_bpb=rep.val_bpb if rep else None,
            line=rep.line if rep else None,
            artifact_bytes=self.artifact_bytes,
            code_bytes=self.code_bytes,
            model_bytes=self.model_bytes,
            train_time_ms=self.train_time_ms,
            eval_time_ms=self.reported_eval_time_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for src in out["embedded_sources"]:
            src.pop("text", None)
        return out


# ---------------------------------------------------------------------------------------------
# The parser


def parse_log(path: Path, rel: str, *, max_bytes: int = LOG_MAX_BYTES) -> ParsedLog:
    """Parse one log file. Never raises for bad input: problems land in ``ParsedLog.problems``."""
    path = Path(path)
    log = ParsedLog(rel=rel, path=str(path))
    stats = ReadStats()
    parser = _LogParser(log)
    hasher = hashlib.sha256()
    root = folder_root_of(path, rel)
    bad_lines: list[int] = []
    for number, line in enumerate(
        iter_lines_bounded(path, max_bytes, LOG_MAX_LINE, stats=stats, root=root, digest=hasher), 1
    ):
        try:
            parser.feed(number, line)
        except (ValueError, OverflowError):  # e.g. a 5,000-digit "seed:" beyond int()'s limit
            bad_lines.append(number)
    parser.finish(stats.lines)
    log.lines = stats.lines
    log.size = stats.size
    log.truncated = stats.truncated
    log.problems = list(stats.problems)
    if bad_lines:
        log.problems.append(
            f"{len(bad_lines)} line(s) with unparseable numbers, first at line {bad_lines[0]}"
        )
    if stats.long_lines:
        log.problems.append(f"{stats.long_lines} over-long line(s) cut at {LOG_MAX_LINE} characters")
    log.sha256 = hasher.hexdigest() if stats.bytes_read or stats.size == 0 else ""
    if log.lines and not log.finals:
        log.problems.append("no final metric line")
    m = SEED_FILENAME.search(Path(rel).name)
    if m:
        log.seed_in_filename = int(m.group(1))
        if log.seed is None:
            log.seed, log.seed_source = log.seed_in_filename, "filename"
    select_reported(log)
    derive_sizes(log)
    return log


class _LogParser:
    """Feeds lines into a ParsedLog. Kept separate so the per-line path stays flat and fast."""

    def __init__(self, log: ParsedLog):
        self.log = log
        self.mode = "normal"  # normal | source_header | source
        self.in_dump = False
        self.seen_step = False  # setup summary lines only count before training starts
        self.seed_log: int | None = None
        self.seed_hp: int | None = None
        self.after_kv_header = False  # the line after "--- Hyperparameters ---"
        self.in_summary_block = False
        # The run of unrecognised lines since the last recognised one: embedded code, if a
        # 100-'=' line closes it and it looks like Python.
        self.cand: list[str] = []
        self.cand_start = 0
        self.cand_chars = 0
        self.cand_hasher: Any = None  # switches to streaming hashing past EMBED_TEXT_LIMIT
        self.cand_n_bytes = 0
        self.cand_python = False
        self.cand_placeholder: re.Match[str] | None = None
        self.cand_prefix = ""

    # -- embedded-code candidate -------------------------------------------------------------

    def _cand_add(self, number: int, line: str) -> None:
        if not self.cand and self.cand_hasher is None:
            self.cand_start = number
        if not self.cand_python and PY_LINE.match(line):
            self.cand_python = True
        if self.cand_hasher is not None:
            data = line.encode("utf-8", "replace")
            self.cand_hasher.update(b"\n" + data)
            self.cand_n_bytes += 1 + len(data)
            return
        self.cand.append(line)
        self.cand_chars += len(line) + 1
        if self.cand_chars > EMBED_TEXT_LIMIT:
            data = "\n".join(self.cand).encode("utf-8", "replace")
            self.cand_hasher = hashlib.sha256(data)
            self.cand_n_bytes = len(data)
            self.cand = []

    def _cand_reset(self) -> None:
        if self.cand or self.cand_hasher is not None or self.cand_placeholder is not None:
            self.cand = []
            self.cand_chars = 0
            self.cand_hasher = None
            self.cand_n_bytes = 0
            self.cand_python = False
            self.cand_placeholder = None
            self.cand_prefix = ""

    def _cand_close(self, end_line: int, kind: str, force: bool) -> None:
        """A separator ends the candidate: record it as embedded source when it is code."""
        is_code = force or self.cand_placeholder is not None or self.cand_python
        has_content = bool(self.cand) or self.cand_hasher is not None or self.cand_placeholder is not None
        if is_code and has_content:
            self.log.embedded_sources.append(self._cand_source(end_line, kind))
        self._cand_reset()

    def _cand_source(self, end_line: int, kind: str) -> EmbeddedSource:
        ph = self.cand_placeholder
        if ph is not None:
            removed = int(ph.group("n"))
            prefix_bytes = len(self.cand_prefix.encode("utf-8", "replace"))
            return EmbeddedSource(
                kind=kind,
                start_line=self.cand_start,
                end_line=end_line,
                n_bytes=prefix_bytes + removed,
                sha256=ph.group("sha") if not self.cand_prefix else None,
                placeholder=True,
                prefix=self.cand_prefix,
                removed_bytes=removed,
                removed_sha256=ph.group("sha"),
            )
        if self.cand_hasher is not None:
            return EmbeddedSource(
                kind=kind,
                start_line=self.cand_start,
                end_line=end_line,
                n_bytes=self.cand_n_bytes,
                sha256=self.cand_hasher.hexdigest(),
            )
        text = "\n".join(self.cand)
        data = text.encode("utf-8", "replace")
        return EmbeddedSource(
            kind=kind,
            start_line=self.cand_start,
            end_line=end_line,
            n_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            text=text,
        )

    def _placeholder(self, number: int, match: re.Match[str]) -> None:
        if not self.cand and self.cand_hasher is None:
            self.cand_start = number
        if self.cand_hasher is None and self.cand:
            self.cand_prefix = "\n".join(self.cand) + "\n"
        self.cand_placeholder = match
        self.cand_python = True

    # -- per line ----------------------------------------------------------------------------

    def feed(self, number: int, raw: str) -> None:
        # ``raw`` keeps trailing spaces: embedded code is hashed as written.
        if raw[:1].isdigit() and TIMESTAMP.match(raw):
            raw = raw[15:]
            self.log.has_timestamps = True
        line = raw.rstrip()
        if not line:
            if self.mode == "source" or self.cand or self.cand_hasher is not None:
                self._cand_add(number, raw)
            self.in_summary_block = False
            return
        if line == SEPARATOR:
            self.log.separators += 1
            if self.mode == "source_header":
                self._cand_reset()
                self.mode = "source"
                return
            if self.mode == "source":
                self._cand_close(number - 1, "source_block", force=True)
                self.mode = "normal"
                return
            self._cand_close(number - 1, "before_separator", force=False)
            self.in_dump = False
            return
        if line[0] == "[" and line.startswith("[embedded source removed"):
            m = PLACEHOLDER.match(line)
            if m:  # the corpus stand-in for embedded code: part of the open candidate
                self._placeholder(number, m)
                return
        if self.mode == "source":
            self._cand_add(number, raw)
            return
        if self.mode == "source_header":
            self.mode = "normal"
        if self.in_dump:
            if line[0] in " \t":
                m = DUMP_LINE.match(line)
                if m:
                    self.log.hyperparameters[m.group("key")] = m.group("val") or ""
                return
            self.in_dump = False
        if self._recognise(number, line):
            self._cand_reset()
        else:
            self._cand_add(number, raw)

    def _recognise(self, number: int, line: str) -> bool:
        """Parse one log line; False when it is not a known log line (maybe embedded code)."""
        log = self.log
        c0 = line[0]
        if c0 == "[":
            m = RANK_PREFIX.match(line)
            if m:
                rest = line[m.end() :]
                if not rest:
                    return True
                return self._recognise(number, rest) or True
            if NOISE_BRACKET.match(line):
                return True
        elif c0 == "W" and NOISE_W.match(line):
            return True
        # Most lines of a TTT log. Exact prefixes only: embedded code has names like ttt_chunk_size.
        if (c0 == "t" and line.startswith(_TTT_PROGRESS)) or (c0 == " " and line.startswith("  ttt_chunk [")):
            self._marker("ttt_progress", number, line)
            return True
        if self.after_kv_header:
            self.after_kv_header = False
            if "=" in line:
                for m in KV_TOKEN.finditer(line):
                    log.hyperparameters[m.group("key")] = m.group("val")
                log.hyperparameters_line = number
                self._seed_from_kv(line, "hyperparameters")
                return True
        if line.startswith("Final BPB: "):
            return self._final(number, line[len("Final BPB: ") :], prefixed=True)
        if "val_bpb" in line or "val_loss" in line:
            return self._metric(number, line)
        if "train_loss" in line:
            m = STEP_TRAIN.match(line)
            if m:
                self._train(number, m, m.group("t"), m.group("unit"))
                return True
        if c0 == "s" and line.startswith("step:") and " loss:" in line:
            m = STEP_TRAIN_SHORT.match(line)
            if m:
                self._train(number, m, m.group("t"), "ms")
                return True
        if "bytes" in line and self._sizes(number, line):
            return True
        return self._setup(number, line)

    def _metric(self, number: int, line: str) -> bool:
        log = self.log
        m = FINAL.match(line)
        if m and not m.group("label").startswith("step:"):
            return self._final(number, line, match=m)
        m = STEP_VAL.match(line)
        if m:
            self.seen_step = True
            tail = m.group("tail")
            t = TRAIN_TIME_TAIL.search(tail)
            ms = _to_ms(t.group("t"), t.group("unit")) if t else None
            if ms is not None:
                log.last_train_time_ms = ms
            if len(log.step_vals) < MAX_SERIES:
                log.step_vals.append(
                    StepVal(
                        step=int(m.group("step")),
                        iters=int(m.group("iters")),
                        val_loss=float(m.group("loss")),
                        val_bpb=float(m.group("bpb")),
                        line=number,
                        train_time_ms=ms,
                    )
                )
            else:
                log.series_dropped += 1
            return True
        if line.startswith("val_bpb:enabled"):
            self._tokenizer(line)
            return True
        if self.in_summary_block:
            m = SUMMARY_BLOCK.match(line)
            if m:
                log.summary_block[m.group("key")] = m.group("val")
                return True
        if "train_loss" in line:
            m = STEP_TRAIN.match(line)
            if m:
                self._train(number, m, m.group("t"), m.group("unit"))
                return True
        return self._setup(number, line)

    def _final(
        self, number: int, line: str, *, match: re.Match[str] | None = None, prefixed: bool = False
    ) -> bool:
        m = match or FINAL.match(line)
        if m is None or m.group("label").startswith("step:"):
            return False
        log = self.log
        if len(log.finals) >= MAX_FINALS:
            return True
        label = m.group("label").strip()
        tail = m.group("tail").strip()
        bpb_text = m.group("bpb")
        stride = m.group("stride")
        if stride is None:
            s = STRIDE.search(tail)
            stride = s.group("n") if s else None
        final = FinalLine(
            label=label,
            val_loss=float(m.group("loss")),
            val_bpb=float(bpb_text),
            line=number,
            tail=tail,
            stride=int(stride) if stride else None,
            eval_time_ms=_eval_time_ms(tail),
            exact="_exact" in label,
            bpb_decimals=len(bpb_text.partition(".")[2]),
            diagnostic=label.lower().startswith(DIAGNOSTIC_PREFIXES),
            kind=_label_kind(label),
            prefixed=prefixed,
        )
        log.finals.append(final)
        reason = _suspicious_reason(label)
        if reason:
            log.suspicious.append(SuspiciousLabel(label=label, reason=reason, line=number))
        if prefixed:
            log.suspicious.append(
                SuspiciousLabel(label=label, reason="'Final BPB:' prefix (hand-edited log?)", line=number)
            )
        return True

    def _train(self, number: int, m: re.Match[str], t: str | None, unit: str | None) -> None:
        log = self.log
        self.seen_step = True
        ms = _to_ms(t, unit) if t else None
        if ms is not None:
            log.last_train_time_ms = ms
        if len(log.train_losses) < MAX_SERIES:
            log.train_losses.append(
                TrainLoss(
                    step=int(m.group("step")),
                    iters=int(m.group("iters")),
                    loss=float(m.group("loss")),
                    line=number,
                    train_time_ms=ms,
                )
            )
        else:
            log.series_dropped += 1

    def _sizes(self, number: int, line: str) -> bool:
        log = self.log
        c0 = line[0]
        if c0 == "C" and line.startswith("Code size"):
            m = CODE_SIZE.match(line)
            if m:
                log.code_sizes.append(SizeLine(n=int(m.group("n")), line=number, fmt=m.group("kind")))
                return True
        elif c0 == "S" and line.startswith("Serialized model"):
            m = SERIALIZED.match(line)
            if m:
                log.serialized.append(
                    SizeLine(
                        n=int(m.group("n")),
                        line=number,
                        fmt=(m.group("fmt") or "").strip() or None,
                        payload=int(m.group("payload")) if m.group("payload") else None,
                        raw_torch=int(m.group("raw")) if m.group("raw") else None,
                    )
                )
                return True
        elif c0 == "T" and line.startswith("Total submission size"):
            m = TOTAL_SIZE.match(line)
            if m:
                log.totals.append(
                    SizeLine(n=int(m.group("n")), line=number, fmt=(m.group("fmt") or "").strip() or None)
                )
                return True
        return False

    def _setup(self, number: int, line: str) -> bool:
        """Identity/setup/marker lines. False when the line is unknown."""
        log = self.log
        c0 = line[0]
        if ("=" in line or ":" in line) and PY_ASSIGN.match(line):
            return False  # `ema: float = 0.997`, `ttt_chunk_size = 32`: embedded code, not a log line
        if c0 == "s":
            if line.startswith("seed:"):
                m = SEED_LINE.match(line)
                if m:
                    self._seed(int(m.group("n")), "log")
                    log.summary["seed"] = m.group("n")
                    return True
            elif line.startswith("stopping_early"):
                m = STOP.match(line)
                if m:
                    ms = float(m.group("ms"))
                    log.stopping_early = StopLine(
                        train_time_ms=ms,
                        line=number,
                        step=int(m.group("step")) if m.group("step") else None,
                        iters=int(m.group("iters")) if m.group("iters") else None,
                    )
                    log.last_train_time_ms = ms
                    return True
        elif c0 == "t":
            if line.startswith("total_eval_time"):
                m = TOTAL_EVAL.match(line)
                if m:
                    log.total_eval_time_s = float(m.group("s"))
                    return True
            elif line.startswith(("train_shards", "train_loader:")):
                m = TRAIN_SHARDS.match(line)
                if m:
                    log.train_shards = int(m.group("n"))
                    if m.group("ds"):
                        log.train_dataset = m.group("ds")
                    return True
        elif c0 == "v":
            if line.startswith("val_loader:"):
                m = VAL_TOKENS_A.match(line)
                if m:
                    log.val_tokens, log.val_glob = int(m.group("n")), m.group("glob")
                    return True
            elif line.startswith("val_tokens:"):
                m = VAL_TOKENS_B.match(line)
                if m:
                    log.val_tokens = int(m.group("n"))
                    return True
        elif c0 in "RP":
            m = VERSION.match(line)
            if m and m.group("what") == "Python":
                log.python_version = m.group("ver")
                return True
            if m:
                log.pytorch_version = m.group("ver")
                return True
            if line.startswith("RUN seed="):
                self._seed_from_kv(line, "log")
                return True
        elif c0 == "H" and line == "Hyperparameters:":
            self.in_dump = True
            log.hyperparameters_line = number
            return True
        elif c0 == "-":
            if line.startswith("--- Hyperparameters"):
                self.after_kv_header = True
                return True
            if line == "---":
                self.in_summary_block = True
                return True
        elif c0 == "S" and line == "Source code:":
            self.mode = "source_header"
            return True
        elif c0 == "a" and line.startswith("artifact:"):
            m = ARTIFACT_LINE.match(line)
            if m:
                log.artifact_line = ArtifactLine(
                    line=number, mb=float(m.group("mb")), code=int(m.group("code"))
                )
                return True
        elif c0 == "b" and line.startswith("budget:"):
            m = BUDGET_LINE.match(line)
            if m:
                art = log.artifact_line or ArtifactLine(line=number)
                art.budget_bytes, art.budget_line = int(m.group("n")), number
                log.artifact_line = art
                return True
        elif c0 == "l" and line.startswith("logs/") and " " not in line:
            log.logfile = line  # Family A prints its internal log path first
            return True
        elif c0 == "g" and line.startswith("gptq:reserving"):
            m = GPTQ_RESERVE.match(line)
            if m:
                log.gptq_reserve_s = float(m.group("s"))
                log.gptq_effective_ms = float(m.group("ms"))
                self._marker("gptq", number, line)
                return True
        elif c0 == " " and "MB model + " in line:
            m = APPROX_TOTAL.match(line)
            if m:
                log.approx_total_mb = float(m.group("total"))
                return True
        if self.in_summary_block:
            m = SUMMARY_BLOCK.match(line)
            if m:
                log.summary_block[m.group("key")] = m.group("val")
                return True
        if line.startswith(_MARKER_TUPLE):
            for prefix, kind in MARKER_PREFIXES.items():
                if line.startswith(prefix):
                    self._marker(kind, number, line)
                    break
            return True
        if not self.seen_step and ":" in line and SUMMARY_LINE.match(line):
            self._summary(line)
            return True
        if "seed=" in line:
            m = SEED_EQ_LINE.match(line)
            if m:
                self._seed(int(m.group("n")), "log")
                return True
        return False

    # -- helpers -----------------------------------------------------------------------------

    def _summary(self, line: str) -> None:
        log = self.log
        for token in line.split():
            key, sep, val = token.partition(":")
            if not sep:
                key, _, val = token.partition("=")
            log.summary[key] = val
        if "tokenizer_path=" in line or "tokenizer_kind=" in line:
            self._tokenizer(line)
        if line.startswith("model_params:"):
            log.model_params = _int_or_none(log.summary.get("model_params"))
        if line.startswith("params:") and log.model_params is None:
            log.model_params = _int_or_none(log.summary.get("params"))

    def _tokenizer(self, line: str) -> None:
        m = TOKENIZER.search(line)
        if m:
            self.log.tokenizer_path = m.group("path")
        m = TOKENIZER_KIND.search(line)
        if m:
            self.log.tokenizer_kind = m.group("kind")

    def _seed(self, seed: int, source: str) -> None:
        log = self.log
        if not log.seeds_seen or log.seeds_seen[-1] != seed:
            log.seeds_seen.append(seed)
        if source == "log":
            self.seed_log = seed
        else:
            self.seed_hp = seed

    def _seed_from_kv(self, line: str, source: str) -> None:
        m = SEED_EQ.search(line)
        if m:
            self._seed(int(m.group("n")), source)

    def _marker(self, kind: str, number: int, line: str) -> None:
        markers = self.log.markers
        found = markers.get(kind)
        if found is None:
            markers[kind] = Marker(kind=kind, line=number, text=line[:200])
        else:
            found.count += 1

    def finish(self, n_lines: int) -> None:
        log = self.log
        # An embedded block still open at EOF is not closed by its separator: keep it only when
        # it is an explicit "Source code:" block (the log was cut short).
        if self.mode == "source":
            self._cand_close(n_lines, "source_block", force=True)
        hp = log.hyperparameters
        seed_dump = _int_or_none(hp.get("seed"))
        if self.seed_log is not None:
            log.seed, log.seed_source = self.seed_log, "log"
        elif seed_dump is not None or self.seed_hp is not None:
            log.seed = seed_dump if seed_dump is not None else self.seed_hp
            log.seed_source = "hyperparameters"
            if seed_dump is not None and seed_dump not in log.seeds_seen:
                log.seeds_seen.append(seed_dump)
        if log.tokenizer_path is None and hp.get("tokenizer_path"):
            log.tokenizer_path = hp["tokenizer_path"]
        ws = hp.get("world_size") or log.summary.get("world_size") or log.summary.get("ws")
        log.world_size = _int_or_none(ws)
        ga = hp.get("grad_accum_steps") or log.summary.get("grad_accum_steps") or log.summary.get("ga")
        log.grad_accum_steps = _int_or_none(ga)
        if log.model_params is None:
            log.model_params = _int_or_none(log.summary.get("model_params"))


def _to_ms(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v * 60_000.0 if unit == "m" else v  # Family B/C log train_time in minutes


def _eval_time_ms(tail: str) -> float | None:
    if "time" not in tail and "elapsed" not in tail:
        return None
    m = EVAL_TIME_MS.search(tail) or TIME_MS.search(tail)
    if m:
        return float(m.group("ms"))
    m = ELAPSED_S.search(tail)
    if m:
        return float(m.group("s")) * 1000.0
    return None


def _label_kind(label: str) -> str:
    low = label.lower()
    if "ttt" in low:
        return "ttt"
    if "sliding" in low or "slot" in low or "ngram" in low or "ppm" in low or "hedge" in low:
        return "sliding"
    if "roundtrip" in low or low in ("quantized", "final_roundtrip"):
        return "roundtrip"
    return "other"


def _suspicious_reason(label: str) -> str | None:
    m = SUSPICIOUS.search(label)
    if m:
        return f"label mentions '{m.group(0)}'"
    low = label.lower()
    if PREQUANT.search(low) and "ttt" in low:
        return "pre-quant TTT label"
    return None


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Deciding what the log reports


def select_reported(log: ParsedLog) -> FinalLine | None:
    """The reported score of a run (records-format.md §3.5).

    Take the last final line that is not a diagnostic; a ``*_roundtrip`` line followed by a
    sliding/TTT line is a diagnostic too. Prefer the ``_exact`` twin. Two departures from "the
    last line", each noted in ``reported_note``: a roundtrip line that only repeats an earlier
    sliding result (compatibility duplicate) yields that earlier line, and a TTT line much worse
    than the score before it (a failed TTT try) yields the score before it.
    """
    cands = log.candidates
    if not cands:
        log.reported, log.reported_note = None, None
        return None
    kept: list[FinalLine] = []
    for i, f in enumerate(cands):
        if f.kind == "roundtrip" and any(g.kind != "roundtrip" for g in cands[i + 1 :]):
            continue
        kept.append(f)
    chosen = kept[-1]
    note = None
    if chosen.kind == "roundtrip":
        for g in reversed(kept[:-1]):
            if g.kind != "roundtrip" and g.val_bpb == chosen.val_bpb and g.val_loss == chosen.val_loss:
                note = f"'{chosen.label}' (line {chosen.line}) repeats '{g.label}'; reporting the latter"
                chosen = g
                break
    if chosen.kind == "ttt":
        # Only a plain sliding-window score counts as the fallback: other earlier lines
        # (e.g. "swa_eval") may be pre-quantization numbers.
        before = [
            g for g in kept if g.line < chosen.line and g.kind == "sliding" and not SUSPICIOUS.search(g.label)
        ]
        if before:
            prev = _exact_twin(before[-1], kept)
            if chosen.val_bpb - prev.val_bpb > FAILED_TTT_MARGIN_BPB:
                note = (
                    f"last line '{chosen.label}' val_bpb {chosen.val_bpb} (line {chosen.line}) is worse than "
                    f"'{prev.label}' {prev.val_bpb}: a failed TTT try, not the reported score"
                )
                chosen = prev
    chosen = _exact_twin(chosen, kept)
    log.reported, log.reported_note = chosen, note
    log.reported_eval_time_ms = chosen.eval_time_ms
    if chosen.eval_time_ms is None:  # "*_exact" lines carry no timing; their twin does
        timed = [g for g in cands if g.base_label == chosen.base_label and g.eval_time_ms is not None]
        if timed:
            log.reported_eval_time_ms = min(timed, key=lambda g: abs(g.line - chosen.line)).eval_time_ms
    return chosen


def _exact_twin(line: FinalLine, pool: list[FinalLine]) -> FinalLine:
    if line.exact:
        return line
    twins = [g for g in pool if g.exact and g.base_label == line.base_label]
    if not twins:
        return line
    # The twin printed right after (or before) this line.
    return min(twins, key=lambda g: abs(g.line - line.line))


def derive_sizes(log: ParsedLog) -> None:
    """Artifact, code and model bytes of the run (records-format.md §3.3).

    Artifact = the last ``Total submission size <fmt>`` with a format; else the ternary
    ``budget:`` line; else the last unqualified total that is not the raw (uncompressed
    ``torch.save``) total that Family A prints first.
    """
    code = [c for c in log.code_sizes if c.fmt != "uncompressed"]
    compressed = [c for c in code if c.fmt == "compressed"]
    plain = [c for c in code if c.fmt is None]
    if compressed:
        log.code_bytes = compressed[-1].n
    elif plain:
        log.code_bytes = plain[-1].n
    elif log.artifact_line is not None and log.artifact_line.code is not None:
        log.code_bytes = log.artifact_line.code
    unc = [c for c in log.code_sizes if c.fmt == "uncompressed"]
    log.code_bytes_uncompressed = unc[-1].n if unc else (plain[-1].n if plain and compressed else None)

    qualified = [t for t in log.totals if t.fmt]
    if qualified:
        last = qualified[-1]
        log.artifact_bytes, log.artifact_fmt = last.n, last.fmt
        log.artifact_source = f"line {last.line}: Total submission size {last.fmt}"
    elif log.artifact_line is not None and log.artifact_line.budget_bytes is not None:
        art = log.artifact_line
        log.artifact_bytes = art.budget_bytes
        log.artifact_source = f"line {art.budget_line}: budget"
    else:
        for total in reversed([t for t in log.totals if not t.fmt]):
            fmt = _unqualified_total_format(log, total)
            if fmt == "raw":
                continue
            log.artifact_bytes, log.artifact_fmt = total.n, fmt
            log.artifact_source = f"line {total.line}: Total submission size (unqualified)"
            break

    serialized = [s for s in log.serialized if s.fmt]
    if log.artifact_fmt:
        same = [s for s in serialized if s.fmt == log.artifact_fmt]
        if same:
            log.model_bytes = same[-1].n
    if log.model_bytes is None and serialized:
        before = [s for s in serialized if not log.totals or s.line <= log.totals[-1].line] or serialized
        log.model_bytes = before[-1].n
    from_budget = log.artifact_source is not None and "budget" in log.artifact_source
    if (
        log.model_bytes is None
        and from_budget
        and log.artifact_bytes is not None
        and log.code_bytes is not None
    ):
        log.model_bytes = log.artifact_bytes - log.code_bytes  # ternary: budget = blob + code


def _unqualified_total_format(log: ParsedLog, total: SizeLine) -> str | None:
    """'raw' when an unqualified total is the uncompressed state dict + code; else the format of
    the compressed model it adds up to (or None when nothing says)."""
    prev_ser = [s for s in log.serialized if s.line < total.line]
    codes = {c.n for c in log.code_sizes}
    if prev_ser:
        last = prev_ser[-1]
        if any(total.n == last.n + c for c in codes) or total.n - last.n < 1_000_000 and total.n >= last.n:
            return "raw" if last.fmt is None else last.fmt
    return None


# ---------------------------------------------------------------------------------------------
# HYG004: logs that could not be (fully) read

_UNUSABLE = (PROBLEM_BINARY, PROBLEM_EMPTY, PROBLEM_NOT_FILE, PROBLEM_SYMLINK_ESCAPE, "unreadable")
_READ_PROBLEMS = _UNUSABLE + ("not UTF-8", "larger than limit")


def read_problems(log: ParsedLog) -> list[str]:
    """The problems that are about reading the file (not about its content, like a missing final line)."""
    return [p for p in log.problems if p.startswith(_READ_PROBLEMS) or "over-long line" in p]


def unusable(log: ParsedLog) -> bool:
    """Nothing could be parsed from this log."""
    return any(p.startswith(_UNUSABLE) for p in log.problems) or log.lines == 0


MAX_LOG_FINDINGS = 20  # one finding per unreadable log up to this many, then one for the rest


def unreadable_log_findings(logs: list[ParsedLog]) -> list[Finding]:
    """HYG004 for each log that could not be fully read; an error when it was the folder's only
    log and nothing could be parsed from it."""
    out: list[Finding] = []
    usable = [log for log in logs if not unusable(log)]
    rest: list[ParsedLog] = []
    for log in logs:
        problems = read_problems(log)
        if not problems:
            continue
        if len(out) >= MAX_LOG_FINDINGS:
            rest.append(log)
            continue
        bad = unusable(log)
        severity = Severity.ERROR if bad and not usable and len(logs) == 1 else None
        what = "is unreadable" if bad else "was read with problems"
        out.append(
            finding(
                "HYG004",
                f"{log.rel} {what}: {'; '.join(problems)}",
                location=Location(file=log.rel),
                severity=severity,
                data={"problems": problems, "size": log.size, "lines_parsed": log.lines},
                origin="log",
            )
        )
    if rest:  # one finding for the rest: a flood of bad logs must not flood the report
        shown = ", ".join(log.rel for log in rest[:5])
        out.append(
            finding(
                "HYG004",
                f"{len(rest)} more logs could not be fully read ({shown}{', ...' if len(rest) > 5 else ''})",
                location=Location(file=rest[0].rel),
                data={"more": len(rest), "files": [log.rel for log in rest[:50]]},
                origin="log",
            )
        )
    return out
