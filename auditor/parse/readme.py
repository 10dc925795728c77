"""Reading a record's README.md: how it was run and what it claims.

The scored configuration is often not the script's defaults but the environment assignments of
the README's launch command (``SEED=42 MATRIX_LR=0.026 torchrun ... train_gpt.py``; records-format
§6), so every ``torchrun``/``python`` command in a code block (or an inline code span) is kept with
its inline ``KEY=VALUE`` assignments and the ``export``s before it in the same block. The text is
searched for claimed BPB numbers, quoted p-values, statistical-test names and seeds.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditor.findings import finding
from auditor.models import Finding, Location
from auditor.parse.textio import read_text_bounded

README_MAX_BYTES = 1 << 20

ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LAUNCHERS = ("torchrun", "python", "python3", "accelerate", "deepspeed", "srun", "mpirun")
PREFIX_WORDS = {"env", "nohup", "time", "do", "then", "exec", "sudo", "uv", "run"}
FOR_SEEDS = re.compile(r"\bfor\s+\w*seed\w*\s+in\s+((?:\d+\s*)+)", re.IGNORECASE)

BPB_PATTERNS = (
    re.compile(r"(?:val_bpb|\bbpb)\b[^0-9\n]{0,25}?(\d\.\d{3,8})\b", re.IGNORECASE),
    re.compile(r"\b(\d\.\d{3,8})\s*(?:val_)?bpb\b", re.IGNORECASE),
)
P_VALUE = re.compile(
    r"(?<![A-Za-z0-9_])p(?:[-_ ]?values?)?(?:\s*\([^)]{0,20}\))?\s*(?P<op><=|>=|≤|≥|<|>|=|≈|~|:)\s*\**`?\s*"
    r"(?P<num>\d*\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)(?=(?P<rest>[^\n]{0,24}))",
    re.IGNORECASE,
)
STAT_TESTS = (
    # "z = 2.9" / "t=31.42" only in lower case: "T=0.90" is a temperature, "Z = 1 + ..." a normalizer.
    ("z-test", re.compile(r"(?i:\bz[- ]?(?:test|score|stat(?:istic)?)\b)|\bz\s*=\s*-?\d+\.\d")),
    ("welch", re.compile(r"\bwelch", re.IGNORECASE)),
    ("t-test", re.compile(r"(?i:\bt[- ]?test\b|\bttest_\w+|\bt[- ]stat(?:istic)?\b)|\bt\s*=\s*-?\d+\.\d")),
    ("mann-whitney", re.compile(r"mann[- ]whitney", re.IGNORECASE)),
    ("bootstrap", re.compile(r"\bbootstrap", re.IGNORECASE)),
    ("permutation", re.compile(r"\bpermutation test", re.IGNORECASE)),
)
SEED_LIST = re.compile(
    r"\bseeds?\b\s*(?:[:=]\s*|\(\s*)?((?:\d{1,10}\s*(?:,|/|&|\band\b)\s*)*\d{1,10})(?![\d.])", re.IGNORECASE
)


@dataclass(slots=True)
class RunCommand:
    """One launch command: ``KEY=V ... torchrun --nproc_per_node=8 train_gpt.py args``."""

    line: int  # first line of the (backslash-continued) command in README.md
    text: str  # the command as one line
    launcher: str  # torchrun | python | ...
    env: dict[str, str] = field(default_factory=dict)  # inline assignments, then earlier exports
    exports: dict[str, str] = field(default_factory=dict)  # `export K=V` earlier in the same block
    script: str | None = None  # the .py it runs
    args: list[str] = field(default_factory=list)
    nproc_per_node: int | None = None
    in_code_block: bool = True

    @property
    def seed(self) -> int | None:
        value = self.env.get("SEED")
        return int(value) if value is not None and value.isdigit() else None


@dataclass(slots=True)
class Mention:
    line: int
    snippet: str
    value: float | None = None
    relation: str | None = None  # for p-values: = < <= > ≈
    kind: str | None = None  # for statistical tests: z-test, welch, t-test, ...
    in_code_block: bool = False


@dataclass
class ReadmeInfo:
    path: str
    rel: str
    problems: list[str] = field(default_factory=list)
    title: str | None = None
    commands: list[RunCommand] = field(default_factory=list)
    claimed_bpb: list[Mention] = field(default_factory=list)
    p_values: list[Mention] = field(default_factory=list)
    stat_tests: list[Mention] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # in order of first mention
    findings: list[Finding] = field(default_factory=list)  # HYG004 when the file was not fully readable

    @property
    def training_commands(self) -> list[RunCommand]:
        """Commands that run a training script (``train*.py``) — the scored configuration."""
        return [c for c in self.commands if c.script and Path(c.script).name.startswith("train")]

    @property
    def z_test(self) -> bool:
        return any(m.kind == "z-test" for m in self.stat_tests)

    def env_for_seed(self, seed: int | None) -> dict[str, str]:
        """The env of the training command for ``seed`` (or the first one when no seed matches)."""
        cmds = self.training_commands or self.commands
        for cmd in cmds:
            if seed is not None and cmd.seed == seed:
                return dict(cmd.env)
        return dict(cmds[0].env) if cmds else {}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = [f.model_dump(mode="json") for f in self.findings]
        return out


def parse_readme(path: Path, rel: str | None = None) -> ReadmeInfo:
    """Parse a README. Never raises for bad input (problems land in ``problems``/``findings``)."""
    path = Path(path)
    rel = rel or path.name
    info = ReadmeInfo(path=str(path), rel=rel)
    root = path.parent if "/" not in rel else None
    read = read_text_bounded(path, README_MAX_BYTES, root=root)
    info.problems = list(read.problems)
    if read.problems:
        info.findings.append(
            finding(
                "HYG004",
                f"{rel} {'is unreadable' if read.text is None else 'was read with problems'}: {read.problem}",
                location=Location(file=rel),
                data={"problems": list(read.problems), "size": read.size},
                origin="metadata",
            )
        )
    if not read.text:
        return info
    _scan(info, read.text.splitlines())
    return info


def _scan(info: ReadmeInfo, lines: list[str]) -> None:
    in_block = False
    block_exports: dict[str, str] = {}
    pending: list[str] = []  # backslash-continued command lines
    pending_start = 0
    seeds: list[int] = []
    table_seed_col: int | None = None

    def add_seeds(values: list[int]) -> None:
        for s in values:
            if s not in seeds:
                seeds.append(s)

    for number, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if FENCE.match(line):
            if in_block and pending:
                _command_line(info, " ".join(pending), pending_start, block_exports, True, add_seeds)
                pending = []
            in_block = not in_block
            block_exports = {}
            continue
        if in_block:
            text = line.strip()
            text = text.removeprefix("$ ")
            if text.endswith("\\"):
                if not pending:
                    pending_start = number
                pending.append(text[:-1].strip())
                continue
            if pending:
                pending.append(text)
                text, start = " ".join(pending), pending_start
                pending = []
            else:
                start = number
            if text and not text.startswith("#"):
                _command_line(info, text, start, block_exports, True, add_seeds)
            _mentions(info, line, number, in_code=True)
            continue
        # Prose.
        if info.title is None and line.startswith("# "):
            info.title = line[2:].strip()
        for span in INLINE_CODE.findall(line):
            if any(w in span for w in LAUNCHERS) and ".py" in span:
                _command_line(info, span, number, {}, False, add_seeds)
        if line.startswith(("    ", "\t")) and ".py" in line and any(w in line for w in LAUNCHERS):
            _command_line(info, line.strip(), number, {}, True, add_seeds)  # indented code block
        _mentions(info, line, number, in_code=False)
        # Seeds: lists in prose and the first column of a table headed "Seed".
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        )
        if cells:
            header = [c.lower().strip("* ") for c in cells]
            if any(h.startswith("seed") for h in header) and table_seed_col is None:
                table_seed_col = next(i for i, h in enumerate(header) if h.startswith("seed"))
            elif table_seed_col is not None and table_seed_col < len(cells):
                cell = cells[table_seed_col].strip("*` ")
                if cell.isdigit():
                    add_seeds([int(cell)])
        else:
            table_seed_col = None
        for m in SEED_LIST.finditer(line):
            add_seeds([int(x) for x in re.findall(r"\d+", m.group(1))])
    if pending:
        _command_line(info, " ".join(pending), pending_start, block_exports, True, add_seeds)
    info.seeds = seeds


def _command_line(
    info: ReadmeInfo,
    text: str,
    number: int,
    exports: dict[str, str],
    in_block: bool,
    add_seeds: Any,
) -> None:
    m = FOR_SEEDS.search(text)
    if m:
        add_seeds([int(x) for x in m.group(1).split()])
    for simple in _split_commands(text):
        if not simple:
            continue
        if simple[0] == "export":
            for tok in simple[1:]:
                if ENV_ASSIGN.match(tok):
                    key, _, val = tok.partition("=")
                    exports[key] = val
            continue
        cmd = _run_command(simple, number, text, exports, in_block)
        if cmd is not None:
            info.commands.append(cmd)
            if cmd.seed is not None:
                add_seeds([cmd.seed])


def _split_commands(text: str) -> list[list[str]]:
    """Shell-ish tokenization into simple commands (split at ; && || |). Never raises."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        tokens = text.split()
    out: list[list[str]] = [[]]
    for tok in tokens:
        if tok and set(tok) <= set(";&|"):
            out.append([])
        else:
            out[-1].append(tok)
    return out


def _run_command(
    tokens: list[str], number: int, text: str, exports: dict[str, str], in_block: bool
) -> RunCommand | None:
    env: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if ENV_ASSIGN.match(tok):
            key, _, val = tok.partition("=")
            env[key] = val
        elif tok in PREFIX_WORDS:
            pass
        else:
            break
        i += 1
    if i >= len(tokens):
        return None
    launcher = Path(tokens[i]).name
    if not (launcher in LAUNCHERS or re.fullmatch(r"python3?(\.\d+)?", launcher)):
        return None
    rest = tokens[i + 1 :]
    script = next((t for t in rest if t.endswith(".py")), None)
    if script is None and "-m" not in rest:
        return None
    nproc = None
    for j, tok in enumerate(rest):
        if tok.startswith(("--nproc_per_node", "--nproc-per-node")):
            value = tok.partition("=")[2] or (rest[j + 1] if j + 1 < len(rest) else "")
            nproc = int(value) if value.isdigit() else None
    args = rest[rest.index(script) + 1 :] if script in rest else []
    merged = {**exports, **env}
    return RunCommand(
        line=number,
        text=text.strip(),
        launcher="python" if launcher.startswith("python") else launcher,
        env=merged,
        exports=dict(exports),
        script=script,
        args=args,
        nproc_per_node=nproc,
        in_code_block=in_block,
    )


def _mentions(info: ReadmeInfo, line: str, number: int, *, in_code: bool) -> None:
    if not line.strip():
        return
    snippet = line.strip()[:300]
    low = line.lower()
    if "bpb" in low:
        seen: set[float] = set()
        for pattern in BPB_PATTERNS:
            for m in pattern.finditer(line):
                value = float(m.group(1))
                if 0.3 <= value <= 5.0 and value not in seen:
                    seen.add(value)
                    info.claimed_bpb.append(
                        Mention(line=number, snippet=snippet, value=value, in_code_block=in_code)
                    )
    if "p" in low:
        for m in P_VALUE.finditer(line):
            op, value = m.group("op"), float(m.group("num"))
            after = re.match(r"\s*:\s*`?(\d*\.\d+(?:[eE][-+]?\d+)?)", m.group("rest"))
            if value > 1 and after:  # "p-value < 1.195: 0.0023": the hypothesis, then the p-value
                op, value = "=", float(after.group(1))
            if not 0.0 <= value <= 1.0:
                continue
            relation = {"≤": "<=", "≥": ">=", ":": "=", "~": "≈"}.get(op, op)
            info.p_values.append(
                Mention(line=number, snippet=snippet, value=value, relation=relation, in_code_block=in_code)
            )
    for kind, pattern in STAT_TESTS:
        if pattern.search(line):
            info.stat_tests.append(Mention(line=number, snippet=snippet, kind=kind, in_code_block=in_code))
