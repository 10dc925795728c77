"""The rerun workspace: a copy of the record folder, synthetic data laid out the way the script
expects, tiny-scale env overrides in the script's own env var names, and the bootstrap.

Everything the script will read is found statically (never by importing it): the env vars its
``Hyperparameters`` (or any code) reads with ``os.environ.get``/``os.getenv``/``os.environ[...]`` or
an ``*env*(...)`` helper, the literal defaults, whether it wants CUDA, FlashAttention-3 or a CaseOps
byte sidecar. Wrapped scripts (lzma+base85 self-extractors) are decoded with ``auditor.unwrap`` and
the payload is what runs, so trace line numbers are lines of the decoded code.

Layout written under ``<ws>/data`` (and pointed to by DATA_DIR, DATA_PATH and TOKENIZER_PATH, so
Family A, Family B/C and hard-coded ``./data/...`` defaults all resolve):
    data/datasets/fineweb10B_sp<V>/fineweb_train_000000.bin, fineweb_val_000000.bin
    data/datasets/fineweb10B_sp<V>/fineweb_val_bytes_000000.bin   (CaseOps-style scripts only)
    data/tokenizers/fineweb_<V>_bpe.model
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.pysource import parse_python
from auditor.rerun import synthetic

BOOTSTRAP_DIR = Path(__file__).with_name("bootstrap")
SHIMS_DIR = BOOTSTRAP_DIR / "shims"
SHIMMED_MODULES = ("flash_attn_interface", "flash_attn")
# Switches of CUDA-only fast paths (Triton kernels, fused CUDA ops): on a CPU rerun an env var the
# script reads whose name says so and whose default is on is turned off, so the script takes its
# own torch path; each one is listed in the overrides.
CUDA_ONLY_SWITCH = re.compile(r"(FUSED|TRITON|CUDA_GRAPH|FLASH|FA3|LIGER)")
# The same switches written in the code (``self.use_fused = True``, ``USE_TRITON = True``) in a
# script that defines Triton kernels: the CPU adapter turns those assignments to False as the
# script is loaded (the file is not changed; each switch is listed), so its torch path runs.
KERNEL_SWITCH = re.compile(r"(?i)(fused|triton|cuda_graph|liger)")
TRUE_TEXT = {"1", "true", "True", "TRUE", "yes", "on"}
MAX_COPY_BYTES = 512 << 20  # a record folder is a few MB; refuse to copy something absurd
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")

# Tiny-scale values for the conventional knobs (records-format.md §6). Only names the script
# actually reads are set; ``{seq}``/``{batch}`` are filled from the run options.
TINY_ENV = {
    "ITERATIONS": "{iterations}",
    "MAX_WALLCLOCK_SECONDS": "0",
    "WARMUP_STEPS": "0",
    # a step-count schedule longer than the tiny run would keep the LR near 0 throughout (60 of
    # 3000 warmdown steps = 2 % of it): the model would not learn the uniform support
    "WARMDOWN_ITERS": "{warmdown}",
    "WARMDOWN_STEPS": "{warmdown}",
    "VAL_LOSS_EVERY": "0",
    "TRAIN_LOG_EVERY": "10",
    "TRAIN_SEQ_LEN": "{seq}",
    "EVAL_SEQ_LEN": "{seq}",
    "ROPE_TRAIN_SEQ_LEN": "{seq}",
    "TTT_EVAL_SEQ_LEN": "{seq}",
    "EVAL_STRIDE": "{stride}",
    "TRAIN_BATCH_TOKENS": "{batch_tokens}",
    "GRAD_ACCUM_STEPS": "1",
    "VAL_BATCH_SIZE": "{val_batch_tokens}",
    "VAL_BATCH_TOKENS": "{val_batch_tokens}",
    "EVAL_BATCH_SEQS": "32",
    "GPTQ_CALIBRATION_BATCHES": "2",
    "GPTQ_RESERVE_SECONDS": "0",
    "TTT_CHUNK_TOKENS": "{ttt_chunk}",
    "TTT_BATCH_SEQS": "4",
    "TTT_CHUNK_SIZE": "{ttt_doc_chunk}",
    "PHASED_TTT_PREFIX_DOCS": "4",
    "VAL_DOC_FRACTION": "1.0",
    "SEED": "1337",
    "RUN_ID": "pgolf_rerun",
    "COMPILE_ENABLED": "0",
    "TORCH_COMPILE": "0",
}
TINY_MODEL_ENV = {
    "NUM_LAYERS": "2",
    "MODEL_DIM": "64",
    "NUM_HEADS": "2",
    "NUM_KV_HEADS": "2",
    "MLP_MULT": "2",
}


# Knobs that name layers of the full-depth model (LOOP_START=3, PARALLEL_START_LAYER=8, VE_LAYERS=9,10,
# XSA_LAST_N=11): with NUM_LAYERS shrunk they would index past the tiny model, so they are scaled
# with it. Counts (…_N, FREEZE_BLOCKS, DEPTH) scale by L/D, indices by (L-1)/(D-1); negatives
# (-1 = off) and non-integer defaults are left alone.
LAYER_KNOB = re.compile(r"(LAYER|LOOP_START|LOOP_END|XSA_LAST_N|FREEZE_BLOCKS|EFFECTIVE_DEPTH)")
LAYER_KNOB_NOT = re.compile(r"(^NUM_LAYERS$|_AT$|_STEPS?$|_IS_|_SIZE$|_RANK$|^INT\d|^N_INT|^(DISABLE|ENABLE|USE)_)")
LAYER_COUNT = re.compile(r"(_N$|FREEZE_BLOCKS|DEPTH)")


def _scaled_layer_knob(name: str, default: str, full: int, tiny: int) -> str | None:
    items = [x.strip() for x in default.split(",")]
    if not items or not all(x.isdigit() for x in items):
        return None
    values = [int(x) for x in items]
    if any(v > full for v in values):
        return None
    if LAYER_COUNT.search(name):
        out = [min(tiny, round(v * tiny / full)) for v in values]
    else:
        out = [min(tiny - 1, round(v * (tiny - 1) / max(full - 1, 1))) for v in values]
    return ",".join(str(v) for v in dict.fromkeys(out))


class WorkspaceError(Exception):
    """The record cannot be prepared for a rerun (the message says why)."""


@dataclass
class ScriptInfo:
    folder: Path
    entry: str  # the shipped entry script, relative to the folder
    run_text: str  # the code that runs (the decoded payload when the entry is a wrapper)
    wrapper: str | None = None  # e.g. "train_gpt.py: b85 → lzma(raw LZMA2)"
    env_defaults: dict[str, str | None] = field(default_factory=dict)  # env var -> literal default
    vocab_size: int | None = None
    caseops: bool = False
    requires_cuda: bool = False
    kernel_switches: list[str] = field(default_factory=list)  # names set True that select Triton paths
    newer_syntax: bytes | None = None  # pickled tree, when this Python cannot compile the code itself
    executes: str | None = None  # a sibling .py the entry runs with exec(open(...).read())
    missing_modules: list[str] = field(default_factory=list)  # imported, not installed, shimmable
    unavailable_modules: list[str] = field(default_factory=list)  # imported, not installed, no shim

    def reads(self, name: str) -> bool:
        return name in self.env_defaults


def find_entry(folder: Path, script: str | None = None) -> str:
    if script:
        if not (folder / script).is_file():
            raise WorkspaceError(f"{script} not found in {folder}")
        return script
    if (folder / "train_gpt.py").is_file():
        return "train_gpt.py"
    candidates = sorted(p.name for p in folder.glob("*.py") if p.name.startswith("train"))
    if len(candidates) == 1:
        return candidates[0]
    raise WorkspaceError(f"no entry script in {folder} (expected train_gpt.py; found {candidates or 'none'})")


def _decoded_entry(folder: Path, entry: str) -> tuple[str, str | None]:
    """The text that actually runs: the deepest payload an exec in the entry decodes to."""
    from auditor.unwrap import unwrap_file

    shipped = (folder / entry).read_text(encoding="utf-8", errors="replace")
    try:
        result = unwrap_file(folder / entry, folder)
    except Exception:  # noqa: BLE001 - the unwrapper never runs code; any failure means "run as shipped"
        return shipped, None
    payloads = [s for s in result.sources if s.depth > 0 and s.is_entry and s.route == "exec-arg" and s.tree]
    if not payloads:
        return shipped, None
    best = max(payloads, key=lambda s: s.depth)
    return best.text, best.wrapper


def _literal(node: ast.AST | None) -> str | None:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return None
    return None if value is None else str(value)


def env_reads(tree: ast.AST) -> dict[str, str | None]:
    """Env var names the code reads, with their literal defaults when there is one."""
    found: dict[str, str | None] = {}

    def note(name_node: ast.AST, default: ast.AST | None) -> None:
        if (
            isinstance(name_node, ast.Constant)
            and isinstance(name_node.value, str)
            and ENV_NAME.match(name_node.value)
            and found.get(name_node.value) is None
        ):
            found[name_node.value] = _literal(default)

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            is_env = (
                (name == "get" and owner.endswith("environ"))
                or name in ("getenv", "environ_get")
                or "env" in name.lower()
            )
            if is_env:
                note(
                    node.args[0],
                    node.args[1]
                    if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg in ("default", "d")), None),
                )
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            note(node.slice, None)
    return found


def _requires_cuda(text: str) -> bool:
    """The records' explicit refusal (``raise RuntimeError("CUDA is required")``). A guarded check
    (raise only when DEVICE=cuda was asked for) does not count."""
    return bool(re.search(r"""["'][^"'\n]*CUDA is required[^"'\n]*["']""", text))


def _executed_sibling(folder: Path, entry: str, tree: ast.AST) -> str | None:
    """The other .py of the folder that an ``exec(...open(...)...)`` in the entry names, if any."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "exec"):
            continue
        inner = list(ast.walk(node))
        if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open" for n in inner):
            continue
        for n in inner:
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".py"):
                name = Path(n.value).name
                if name != entry and (folder / name).is_file():
                    return name
    return None


def _kernel_switches(tree: ast.AST) -> list[str]:
    """Names (attributes or variables) assigned the constant True whose name says they select a
    fused/Triton path, in a script that defines ``@triton.jit`` kernels."""
    defines_kernels = any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any("triton" in ast.unparse(d) for d in node.decorator_list)
        for node in ast.walk(tree)
    )
    if not defines_kernels:
        return []
    names = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if not (isinstance(value, ast.Constant) and value.value is True):
            continue
        for t in targets:
            name = t.attr if isinstance(t, ast.Attribute) else t.id if isinstance(t, ast.Name) else None
            if name and KERNEL_SWITCH.search(name):
                names.add(name)
    return sorted(names)


def _imported_modules(tree: ast.AST) -> set[str]:
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module.split(".")[0])
    return mods


def inspect_script(folder: Path, script: str | None = None) -> ScriptInfo:
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkspaceError(f"{folder} is not a directory")
    entry = find_entry(folder, script)
    text, wrapper = _decoded_entry(folder, entry)
    parsed = parse_python(text, entry)
    if parsed.tree is None:
        raise WorkspaceError(f"{entry} does not parse as Python: {parsed.error}")
    info = ScriptInfo(folder=folder, entry=entry, run_text=text, wrapper=wrapper)
    info.env_defaults = env_reads(parsed.tree)
    sibling = _executed_sibling(folder, entry, parsed.tree)
    if sibling is not None:
        # ``exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())``: the
        # knobs, imports and data the run needs are those of the file the entry executes
        sib_text, _ = _decoded_entry(folder, sibling)
        sib = parse_python(sib_text, sibling)
        if sib.tree is not None:
            info.env_defaults = {**env_reads(sib.tree), **info.env_defaults}
            info.executes = sibling
            text = text + "\n" + sib_text
            parsed_trees = (parsed.tree, sib.tree)
        else:
            parsed_trees = (parsed.tree,)
    else:
        parsed_trees = (parsed.tree,)
    vocab = info.env_defaults.get("VOCAB_SIZE")
    info.vocab_size = int(vocab) if vocab and vocab.isdigit() else None
    # Only scripts that name the sidecar get one: most scripts glob fineweb_val_*.bin, which also
    # matches fineweb_val_bytes_*.bin, and would read the sidecar as validation tokens (a bare
    # "_bytes_" is in every script's base_bytes_lut and must not count).
    info.caseops = any(k in text for k in ("fineweb_val_bytes", "CASEOPS_ENABLED", "VAL_BYTE_SIDECAR"))
    info.requires_cuda = _requires_cuda(text)
    info.kernel_switches = _kernel_switches(parsed.tree)
    if parsed.used_fallback:
        # written for a newer Python (PEP 701 f-strings): pgolf's parser rewrote it to the same
        # tree with the same lines; the sandboxed interpreter runs that tree
        import pickle

        info.newer_syntax = pickle.dumps(parsed.tree)
    local = {p.stem for p in folder.glob("*.py")}
    for mod in sorted(set().union(*(_imported_modules(t) for t in parsed_trees)) - local):
        if importlib.util.find_spec(mod) is None:
            (info.missing_modules if mod in SHIMMED_MODULES else info.unavailable_modules).append(mod)
    return info


@dataclass
class DataSpec:
    """What synthetic data a run gets."""

    vocab_size: int
    support: np.ndarray
    val: synthetic.Stream
    train_tokens: int
    doc_len: int
    seed: int = 0
    value_positions: str | list[int] = "all"  # positions whose per-token scores the trace records
    probe_positions: list[int] = field(default_factory=list)


@dataclass
class Workspace:
    root: Path  # the run's private directory (workspace + outputs)
    ws: Path  # the program's cwd: copy of the record folder + data + bootstrap
    script: Path  # what runs (inside ws)
    env: dict[str, str]
    overrides: dict[str, str]  # the script-level env overrides we chose (reported)
    val_layout: Path
    data: DataSpec
    info: ScriptInfo
    notes: list[str] = field(default_factory=list)


# Environment the harness owns whatever the README's command says: where the data is, the
# tokenizer and vocabulary of the synthetic data, devices, threads, the launcher's variables.
HARNESS_OWNED_ENV = {"DATA_PATH", "DATA_DIR", "TOKENIZER_PATH", "VOCAB_SIZE", "RUN_ID", "PYTHONPATH", "PATH",
                     "HOME", "TMPDIR", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                     "LOCAL_WORLD_SIZE", "NPROC_PER_NODE", "NPROC", "NGPUS", "NUM_GPUS"}
HARNESS_OWNED_PREFIXES = ("CUDA_", "NCCL_", "TORCH", "PYTORCH_", "TRITON_", "OMP_", "MKL_", "OPENBLAS_", "PGOLF_")


def submitted_env(folder: Path) -> dict[str, str]:
    """The environment of the README's training command (the submitted configuration: presets,
    feature switches such as an n-gram evaluation turned on there), minus what the harness owns.
    The tiny-scale overrides are applied on top of it."""
    from auditor.parse.readme import parse_readme

    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        env = parse_readme(readme, "README.md").env_for_seed(None)
    except (OSError, ValueError):
        return {}
    out = {}
    for key, value in env.items():
        # a path (``./datasets/...``, ``/workspace/...``) names the author's machine; the harness
        # owns where things are
        # (and ``$SEED``: a shell variable of the author's loop, not a value)
        if key in HARNESS_OWNED_ENV or key.startswith(HARNESS_OWNED_PREFIXES) or any(c in value for c in "/\\$`"):
            continue
        out[key] = value
    return out


def _copy_record(src: Path, dst: Path) -> None:
    total = 0
    for p in src.rglob("*"):
        if p.is_symlink():
            continue  # a link could point anywhere on the host; the copy holds real files only
        if p.is_file():
            total += p.stat().st_size
            if total > MAX_COPY_BYTES:
                raise WorkspaceError(f"record folder is larger than {MAX_COPY_BYTES >> 20} MiB")
    shutil.copytree(
        src, dst, symlinks=False, ignore=lambda d, names: [n for n in names if (Path(d) / n).is_symlink()]
    )


def sandbox_env(ws: Path, pythonpath: list[str]) -> dict[str, str]:
    """The environment every sandboxed program starts from (reruns and reproductions): the
    interpreter on PATH, the bootstrap on PYTHONPATH, home, temp and caches inside the workspace."""
    return {
        "PATH": f"{Path(os.sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(ws / ".home"),
        "TMPDIR": str(ws / ".tmp"),
        "XDG_CACHE_HOME": str(ws / ".home" / ".cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(ws / ".tmp" / "inductor"),
        "TRITON_CACHE_DIR": str(ws / ".tmp" / "triton"),
        "MPLCONFIGDIR": str(ws / ".tmp" / "mpl"),
        "USER": "pgolf",
        "LOGNAME": "pgolf",
        "LANG": "C.UTF-8",
        "PGOLF_WORKSPACE": str(ws),
    }


def tiny_overrides(
    info: ScriptInfo, *, iterations: int, seq_len: int, vocab_size: int, tiny_model: bool, device: str,
    submitted: dict[str, str] | None = None,
) -> dict[str, str]:
    """The tiny-scale environment. ``submitted`` (the README command's) counts as the script's
    defaults where it sets them: its layer indices are scaled with the depth, its CUDA-only
    switches turned off, like the script's own."""
    defaults = {**info.env_defaults, **(submitted or {})}
    values = {
        "iterations": iterations,
        "warmdown": max(1, iterations // 4),
        "seq": seq_len,
        "stride": max(1, seq_len // 2),
        "batch_tokens": 8 * seq_len,
        # evaluation holds no gradients: 32 sequences per step (per micro-batch of 8) keep a large
        # Gibbs stream from costing thousands of one-sequence forward passes
        "val_batch_tokens": 8 * 32 * seq_len,
        "ttt_chunk": 4 * seq_len,
        "ttt_doc_chunk": max(8, seq_len // 4),
    }
    env = {k: v.format(**values) for k, v in TINY_ENV.items() if info.reads(k)}
    if tiny_model:
        env.update({k: v for k, v in TINY_MODEL_ENV.items() if info.reads(k)})
        full = defaults.get("NUM_LAYERS")
        if "NUM_LAYERS" in env and full and full.isdigit() and int(full) > int(env["NUM_LAYERS"]):
            for name, default in defaults.items():
                if default and LAYER_KNOB.search(name) and not LAYER_KNOB_NOT.search(name) and name not in env:
                    scaled = _scaled_layer_knob(name, default, int(full), int(env["NUM_LAYERS"]))
                    if scaled is not None and scaled != default:
                        env[name] = scaled
    if info.reads("VOCAB_SIZE"):
        env["VOCAB_SIZE"] = str(vocab_size)
    if info.reads("DEVICE"):
        env["DEVICE"] = device
    if device == "cpu":
        for name, default in defaults.items():
            if CUDA_ONLY_SWITCH.search(name) and default in TRUE_TEXT and name not in env:
                env[name] = "0"
    return env


def build_workspace(
    info: ScriptInfo,
    root: Path,
    data: DataSpec,
    *,
    overrides: dict[str, str],
    trace: bool,
    device: str = "cpu",
    threads: int = 2,
) -> Workspace:
    """Materialize one run's directory. ``root`` must not exist yet."""
    root = Path(root)
    root.mkdir(parents=True)
    os.chmod(root, 0o711)  # the sandbox uid traverses it to reach ws; it cannot list it
    ws = root / "ws"
    _copy_record(info.folder, ws)
    script = ws / info.entry
    notes: list[str] = []
    if info.wrapper:
        (ws / (info.entry + ".shipped")).write_bytes((info.folder / info.entry).read_bytes())
        script.write_text(info.run_text, encoding="utf-8")
        notes.append(f"runs the decoded payload of {info.wrapper}")

    # data
    v = data.vocab_size
    ds = ws / "data" / "datasets" / f"fineweb10B_sp{v}"
    tok_dir = ws / "data" / "tokenizers"
    ds.mkdir(parents=True)
    tok_dir.mkdir(parents=True)
    tok_path = tok_dir / f"fineweb_{v}_bpe.model"
    tok_path.write_bytes(synthetic.tokenizer_model_bytes(v))
    train = synthetic.gibbs_stream(data.train_tokens, data.support, data.doc_len, seed=data.seed + 1_000_003)
    synthetic.write_shard(ds / "fineweb_train_000000.bin", train.tokens)
    val_path = ds / "fineweb_val_000000.bin"
    synthetic.write_shard(val_path, data.val.tokens)
    if info.caseops:
        synthetic.write_shard(ds / "fineweb_val_bytes_000000.bin", synthetic.byte_sidecar(data.val.tokens, v))
        notes.append("wrote a CaseOps-style byte sidecar")

    # bootstrap (copied, so the program never needs to read our package)
    boot = ws / ".pgolf"
    shutil.copytree(BOOTSTRAP_DIR, boot, ignore=shutil.ignore_patterns("__pycache__"))
    layout = boot / "val_layout.json"  # inside ws: /tmp is private in the sandbox
    layout.write_text(
        json.dumps(
            {
                "shards": [{"path": str(val_path), "start": 0, "tokens": len(data.val.tokens)}],
                "n_tokens": len(data.val.tokens),
                "values": data.value_positions,
                "probes": [int(p) for p in data.probe_positions],
            }
        )
    )
    os.chmod(layout, 0o644)
    for d in (ws / ".home", ws / ".tmp", ws / "logs"):
        d.mkdir(exist_ok=True)

    pythonpath = [str(boot)]
    if info.missing_modules or device == "cpu":
        # on a CPU there is no FlashAttention to shadow, and an import the static scan cannot see
        # (a payload decoded at run time, an import inside exec) must still find the stand-in
        pythonpath.append(str(boot / "shims"))
        if info.missing_modules:
            notes.append("shimmed " + ", ".join(info.missing_modules))
    data_dir = ws / "data"
    env = {
        **sandbox_env(ws, pythonpath),
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "PGOLF_VAL_LAYOUT": str(layout),
        "DATA_DIR": str(data_dir) + "/",
        "DATA_PATH": str(ds),
        "TOKENIZER_PATH": str(tok_path),
    }
    if info.newer_syntax is not None:
        tree_path = boot / "script_ast.pickle"
        tree_path.write_bytes(info.newer_syntax)
        os.chmod(tree_path, 0o644)
        env["PGOLF_SCRIPT_AST"] = str(tree_path)
        notes.append("the script needs a newer Python's syntax (PEP 701 f-strings): it runs from the tree "
                     "pgolf parsed, same lines")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["PGOLF_NO_COMPILE"] = "1"
        env["TORCHDYNAMO_DISABLE"] = "1"
        env["PGOLF_CPU_ADAPTER"] = "1"  # bootstrap/pgolf_cpu.py: cuda -> cpu at run time
        if info.kernel_switches:
            env["PGOLF_CPU_SWITCHES"] = ",".join(info.kernel_switches)
            notes.append("Triton-path switches turned off at load time: " + ", ".join(info.kernel_switches))
        env["TRITON_INTERPRET"] = "1"  # where Triton is installed, its kernels run on the CPU
        env["PATH"] = f"{boot / 'bin'}:{env['PATH']}"  # a stand-in nvidia-smi for the scripts that log it
    elif os.environ.get("CUDA_VISIBLE_DEVICES"):
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    if trace:
        env["TORCHDYNAMO_DISABLE"] = "1"
    env.update(overrides)
    return Workspace(
        root=root,
        ws=ws,
        script=script,
        env=env,
        overrides=dict(overrides),
        val_layout=layout,
        data=data,
        info=info,
        notes=notes,
    )
