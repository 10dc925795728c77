"""``pgolf reproduce``: run a submission at its own configuration and compare with its claims.

The straight line: audit the record (its claims: per-seed val_bpb/val_loss, artifact bytes and
times, from submission.json and the logs) -> check the data folder before anything long starts
(`pgolf data check`) -> plan (script, launcher, the README command's environment per seed, the
GPUs it needs against the GPUs here) -> run every seed in the rerun sandbox (no network, its own
working copy, the data read-only, the train and eval caps enforced from outside by watching the
log it prints) -> parse the logs it wrote with the audit's own parser -> compare per seed within a
tolerance derived from the submission's own seed spread -> audit the reproduced logs with the usual
checks (a reproduction that breaks a limit says so) -> one `Reproduction` in the record's report.

Nothing here judges compliance: a reproduction answers "does this code produce these numbers".
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from auditor.errors import ExitCode, PgolfError
from auditor.models import Finding, RecordAudit, Reproduction, ReproSeed, ReproVerdict, Severity
from auditor.options import ReproduceOptions

# The tolerance floor: two runs of the same seed on the same hardware differ by a few 1e-4 BPB
# (non-deterministic kernels, reduction order); a claim closer than this cannot be told apart.
TOLERANCE_FLOOR_BPB = 0.0015
# auto tolerance = max(floor, SPREAD_FACTOR x the sample standard deviation of the claimed seeds)
SPREAD_FACTOR = 2.0
TRAIN_CAP_S = 600.0
EVAL_CAP_S = 600.0
# model construction, data loading and compilation before the training clock starts, and the
# interpreter/torch start-up: not counted against the caps, but bounded
SETUP_ALLOWANCE_S = 300.0
# lines a record script prints when its training phase is over (serialization comes first)
TRAIN_END = re.compile(r"^(?:Serialized model|Total submission size|stopping_early|peak memory)", re.MULTILINE)
STEP_VAL = re.compile(r"(?:^|\s)(?:step:)?(\d+)/(\d+)\s+val_loss:\s*([0-9.]+)\s+val_bpb:\s*([0-9.]+)", re.MULTILINE)
GPU_COUNT = re.compile(r"(\d+)\s*[x×]\s*(?:NVIDIA\s+)?[A-Z]?\d*\s*(?:H100|H200|A100|B200|GPU|L40|4090|5090|3090)",
                       re.IGNORECASE)
MODEL_SUFFIXES = (".ptz", ".pt", ".bin", ".br", ".xz", ".lzma", ".zst", ".zstd", ".gz", ".int6", ".int8", ".npz")
SKIP_DIRS = {".pgolf", ".home", ".tmp", "logs", "data", "__pycache__"}


@dataclass
class ReproOptions:
    data_dir: Path | None  # None only with from_logs
    seeds: list[int] | None = None  # default: the seeds of the record's logs
    nproc: int | None = None  # default: the README command's, else the GPUs the record ran on
    tolerance: float | None = None  # None: auto from the claimed seeds' spread
    reference: bool = False  # run the reference stack's bundled script instead of the record's
    scale_steps: float | None = None  # (0, 1]: stop at this fraction of the logged steps (partial)
    train_cap_s: float = TRAIN_CAP_S
    eval_cap_s: float = EVAL_CAP_S
    setup_allowance_s: float = SETUP_ALLOWANCE_S
    memory_mb: int = 0  # 0: the host's memory minus a margin
    require_isolation: bool = False
    out_dir: Path | None = None  # where the reproduced logs are kept (default: a temp folder)
    extra_env: dict[str, str] = field(default_factory=dict)
    # compare logs reproduced earlier (`--logs-dir` of a run on a GPU host, or a reviewer's own
    # torchrun) with the record's claims: nothing runs, so hardware and outside times are unknown
    from_logs: Path | None = None

    @classmethod
    def from_options(cls, options: ReproduceOptions, data_dir: Path | None, **where) -> ReproOptions:
        """The options a reproduction is asked for (CLI flags or the service's request) plus where
        it runs (data folder, output folder, isolation): one path for both."""
        return cls(data_dir=Path(data_dir) if data_dir is not None else None, seeds=list(options.seeds) if options.seeds else None,
                   nproc=options.nproc, tolerance=options.tolerance, reference=options.reference,
                   scale_steps=options.scale_steps, train_cap_s=options.train_cap_s,
                   eval_cap_s=options.eval_cap_s, setup_allowance_s=options.setup_allowance_s, **where)


@dataclass
class _Plan:
    script: Path  # in the record folder
    script_rel: str
    nproc: int
    seeds: list[int]
    env_by_seed: dict[int, dict[str, str]]
    target_step: int | None  # partial: stop after the reproduced log reports this step
    gpus_here: int


@dataclass
class _SeedRun:
    seed: int
    status: str
    reason: str | None
    log_path: Path | None
    outside_train_s: float | None
    outside_eval_s: float | None
    model_file: Path | None
    model_file_bytes: int | None
    step_val: tuple[int, float, float] | None = None  # (step, val_loss, val_bpb) for partial runs


# --- the one entry point ----------------------------------------------------------------------------
def reproduce_record(record_path: Path, opts: ReproOptions, *, progress=None) -> RecordAudit:
    """Audit ``record_path``, reproduce it, and return its audit with the reproduction attached."""
    from auditor.datacheck import check_data
    from auditor.options import AuditOptions
    from auditor.pipeline import audit_paths

    report = audit_paths([record_path], AuditOptions())  # the full audit: the reproduction is a section of it
    if len(report.records) != 1:
        raise PgolfError(f"{record_path}: give one record folder to reproduce ({len(report.records)} found)")
    audit = report.records[0]
    folder = Path(record_path).resolve()

    if opts.from_logs is not None:
        logs = Path(opts.from_logs).resolve()
        if not logs.is_dir():
            raise PgolfError(f"--from-logs: not a folder: {opts.from_logs}")
        plan = _plan(folder, audit, opts)
        runs = [_logged_run(logs, seed) for seed in plan.seeds]
        audit.reproduction = _compare(folder, audit, plan, runs, opts, logs, {})
        return audit

    data = check_data(Path(opts.data_dir), scan_tokens=False)
    if not data.ok:
        bad = data.problems + [f"{f.path}: {f.detail}" for f in data.files if not f.ok]
        raise PgolfError(f"data folder {opts.data_dir} is not fit for a run: " + "; ".join(bad[:5]))

    _check_readable(Path(opts.data_dir).resolve())
    plan = _plan(folder, audit, opts)
    out_dir = Path(opts.out_dir or tempfile.mkdtemp(prefix="pgolf-repro-")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, sandbox = [], {}
    for seed in plan.seeds:
        if progress:
            progress(f"seed {seed}")
        run, mechanisms = _run_seed(folder, plan, seed, opts, out_dir)
        runs.append(run)
        sandbox = sandbox or mechanisms
    audit.reproduction = _compare(folder, audit, plan, runs, opts, out_dir, sandbox)
    return audit


def _check_readable(data: Path) -> None:
    """Run as root, the sandboxed program is an unprivileged uid: the data must be readable by
    others (it is mounted read-only, never copied: FineWeb's shards are tens of GB)."""
    if os.geteuid() != 0:
        return
    for p in [data, *data.rglob("*")]:
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        need = 0o005 if p.is_dir() else 0o004
        if mode & need != need:
            raise PgolfError(f"{p} is not readable by the sandbox's unprivileged user; make the data folder "
                             f"world-readable (chmod -R o+rX {data}) or run pgolf as that user")


def reproduce_report(record_path: Path, opts: ReproOptions, options: ReproduceOptions, *, progress=None):
    """The whole `pgolf reproduce` result as an `AuditReport` (what the CLI prints with `-f json` and
    the service stores): the record's audit with its reproduction section."""
    from datetime import UTC, datetime

    from auditor import __version__
    from auditor.models import AuditReport

    audit = reproduce_record(record_path, opts, progress=progress)
    return AuditReport(tool_version=__version__, generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
                       verdict=audit.verdict, records=[audit],
                       options={"reproduce": options.model_dump(mode="json")})


# --- planning -----------------------------------------------------------------------------------
def _plan(folder: Path, audit: RecordAudit, opts: ReproOptions) -> _Plan:
    from auditor.parse.readme import parse_readme

    readme = parse_readme(folder / "README.md", "README.md") if (folder / "README.md").is_file() else None
    commands = readme.training_commands if readme else []
    if opts.reference:
        from reference_impl.bundle import build_script

        # the reference stack's own single-file script, in place of the record's
        script = Path(tempfile.mkdtemp(prefix="pgolf-ref-")) / "train_gpt.py"
        script.write_text(build_script("record"), encoding="utf-8")
    else:
        names = [c.script for c in commands if c.script and (folder / c.script).is_file()]
        script = folder / (names[0] if names else "train_gpt.py")
        if not script.is_file():
            raise PgolfError(f"{folder}: no training script to run (train_gpt.py, or the one the README runs)")
    seeds = list(opts.seeds or [r.seed for r in audit.runs if r.seed is not None and not r.duplicate_of])
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise PgolfError(f"{folder}: no seed to reproduce (the logs name none); give --seeds")

    gpus_here = _gpu_count() if opts.from_logs is None else 0
    wanted = opts.nproc or next((c.nproc_per_node for c in commands if c.nproc_per_node), None)
    needed = wanted or _gpus_claimed(audit) or 1
    on_gpu_record = (_gpus_claimed(audit) or 0) > 0 or bool(wanted and wanted > 1)
    if on_gpu_record and needed > max(gpus_here, 0) and opts.from_logs is None:
        if opts.scale_steps is None:
            raise PgolfError(
                f"{folder.name} ran on {needed} GPU(s) ({audit.claimed.get('hardware') or 'per its README'}); "
                f"this host has {gpus_here}. Run it on a host with {needed} GPUs, or give --scale-steps F "
                f"for a reduced-step reproduction on {max(gpus_here, 1)} process(es) compared at a step "
                f"both logs report (labelled partial)", exit_code=ExitCode.USAGE)
        needed = max(gpus_here, 1)

    target_step = None
    if opts.scale_steps is not None:
        if not 0 < opts.scale_steps <= 1:
            raise PgolfError("--scale-steps takes a fraction in (0, 1]", exit_code=ExitCode.USAGE)
        steps = sorted({s for s, *_ in _claimed_step_vals(folder, audit, seeds[0])})
        if not steps:
            raise PgolfError(f"{folder.name}: its logs report no step-matched validation line "
                             f"(`step:N/M val_loss ... val_bpb ...`) to compare a partial run with",
                             exit_code=ExitCode.USAGE)
        goal = max(steps) * opts.scale_steps
        target_step = min(steps, key=lambda s: (abs(s - goal), s))

    env_by_seed = {}
    for seed in seeds:
        env = dict(readme.env_for_seed(seed)) if readme else {}
        if opts.data_dir is not None:
            env.update(_data_env(env, Path(opts.data_dir).resolve()))  # the author's ./data/ -> --data
        env.update(opts.extra_env)
        env["SEED"] = str(seed)
        env_by_seed[seed] = env
    return _Plan(script=script, script_rel=script.name, nproc=needed, seeds=seeds, env_by_seed=env_by_seed,
                 target_step=target_step, gpus_here=gpus_here)


def _gpus_claimed(audit: RecordAudit) -> int | None:
    """GPUs the record ran on, from submission.json's hardware ("8xH100 80GB SXM"); 0 for "CPU"."""
    hw = str(audit.claimed.get("hardware") or "")
    if re.search(r"\bCPU\b", hw, re.IGNORECASE) and not re.search(r"GPU|H100|A100|H200|B200", hw, re.IGNORECASE):
        return 0
    m = GPU_COUNT.search(hw)
    if m:
        return int(m.group(1))
    return 1 if re.search(r"GPU|H100|A100|H200|B200", hw, re.IGNORECASE) else None


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch or a broken driver: no GPU to use
        return 0


def hardware() -> dict:
    """What the reproduction ran on: GPU model, count and driver, torch and CUDA, the CPU."""
    info: dict = {"host_cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    cpu = _cpu_model()
    if cpu:
        info["cpu"] = cpu
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        info["gpu_count"] = n
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(n)]
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        info["torch"] = f"unavailable: {type(exc).__name__}"
        info["gpu_count"] = 0
    smi = shutil.which("nvidia-smi")
    if smi and info.get("gpu_count"):
        try:
            res = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=False)
            drivers = sorted({x.strip() for x in res.stdout.splitlines() if x.strip()})
            if drivers:
                info["driver"] = ", ".join(drivers)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


# --- running ------------------------------------------------------------------------------------
def _run_seed(folder: Path, plan: _Plan, seed: int, opts: ReproOptions, out_dir: Path) -> tuple[_SeedRun, dict]:
    from auditor.rerun.sandbox import SandboxLimits, run_sandboxed
    from auditor.rerun.workspace import BOOTSTRAP_DIR, _copy_record

    root = Path(tempfile.mkdtemp(prefix=f"pgolf-repro-{seed}-"))
    os.chmod(root, 0o755)  # the sandbox uid reaches its workspace through here
    ws = root / "ws"
    _copy_record(folder, ws)
    if plan.script.parent != folder:  # --reference: the bundled script beside the record's files
        shutil.copy2(plan.script, ws / plan.script.name)
    boot = ws / ".pgolf"
    shutil.copytree(BOOTSTRAP_DIR, boot, ignore=shutil.ignore_patterns("__pycache__", "shims", "bin"))
    for d in (ws / ".home", ws / ".tmp", ws / "logs"):
        d.mkdir(exist_ok=True)
    data = Path(opts.data_dir).resolve()
    if not (ws / "data").exists():
        (ws / "data").symlink_to(data, target_is_directory=True)  # scripts default to ./data/...
    before = {p for p in ws.rglob("*") if p.is_file()}

    env = _base_env(ws)
    env.update(plan.env_by_seed[seed])
    env.setdefault("RUN_ID", f"pgolf_repro_seed{seed}")
    script = ws / plan.script.name
    if plan.nproc > 1:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={plan.nproc}",
                str(boot / "pgolf_boot.py"), str(script)]
    else:
        argv = [sys.executable, str(boot / "pgolf_boot.py"), str(script)]

    watch = _PhaseWatch(opts, plan.target_step)
    total = opts.setup_allowance_s + opts.train_cap_s + opts.eval_cap_s + 60
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the sandbox cannot raise it past this
    limits = SandboxLimits(wall_seconds=total, memory_bytes=_memory_bytes(opts), max_processes=4096,
                           max_open_files=min(65536, nofile_hard) if nofile_hard > 0 else 65536,
                           workspace_bytes=64 << 30, file_size_bytes=16 << 30, tmpfs_bytes=8 << 30)
    run_out = root / "out"
    try:
        sb = run_sandboxed(argv, ws, env, limits, out_dir=run_out, out_fds={"PGOLF_GUARD_FD": "guard.jsonl"},
                           require_isolation=opts.require_isolation, ro_paths=[str(data)], watch=watch)
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        return _SeedRun(seed, "not_run", f"the sandbox could not start: {exc}", None, None, None, None, None), {}

    log_src = _script_log(ws, before) or run_out / "stdout.txt"
    log_path = out_dir / f"reproduce_seed{seed}.log"
    shutil.copyfile(log_src, log_path)
    shutil.copyfile(run_out / "stdout.txt", out_dir / f"reproduce_seed{seed}.stdout.txt")
    shutil.copyfile(run_out / "stderr.txt", out_dir / f"reproduce_seed{seed}.stderr.txt")
    model = _model_file(ws, before)
    model_bytes = model.stat().st_size if model else None
    ended = watch.train_end_at or time.monotonic()
    outside_train = round(ended - watch.started, 1) if watch.started else None
    outside_eval = round(time.monotonic() - watch.train_end_at, 1) if watch.train_end_at else None

    if sb.stopped:
        status = watch.status
        reason = sb.stopped
    elif sb.timed_out:
        status, reason = "timed_out", f"the whole run exceeded {total:.0f} s and was stopped"
    elif sb.returncode != 0:
        tail = (sb.stderr or "").strip().splitlines()[-3:]
        status, reason = "failed", f"the script exited with {sb.returncode}" + (f": {' | '.join(tail)}" if tail else "")
    else:
        status, reason = "completed", None
    run = _SeedRun(seed, status, reason, log_path, outside_train, outside_eval,
                   model, model_bytes, step_val=watch.step_val)
    mechanisms = dict(sb.mechanisms)
    shutil.rmtree(root, ignore_errors=True)
    return run, mechanisms


def _logged_run(logs: Path, seed: int) -> _SeedRun:
    """A seed's log in a folder of earlier reproductions: ``reproduce_seed<S>.log`` (what
    `--logs-dir` keeps), else any ``*.log``/``*.txt`` whose own seed is ``seed``."""
    from auditor.parse.logs import parse_log

    path = logs / f"reproduce_seed{seed}.log"
    if not path.is_file():
        path = None
        for cand in sorted(list(logs.glob("*.log")) + list(logs.glob("*.txt"))):
            if cand.is_file() and parse_log(cand, cand.name).seed == seed:
                path = cand
                break
    if path is None:
        return _SeedRun(seed, "not_run", f"no log of seed {seed} in {logs}", None, None, None, None, None)
    return _SeedRun(seed, "completed", None, path, None, None, None, None)


class _PhaseWatch:
    """Reads the program's stdout while it runs: stops it when training outlasts its cap (with the
    setup allowance: the clock of the rules starts at the training loop), when evaluation outlasts
    its cap after the training-end marker, or, for a partial run, once the target step's validation
    line is out."""

    def __init__(self, opts: ReproOptions, target_step: int | None):
        self.opts = opts
        self.target_step = target_step
        self.started: float | None = None
        self.train_end_at: float | None = None
        self.status = "completed"
        self.step_val: tuple[int, float, float] | None = None
        self._pos = 0
        self._carry = ""  # a line the program has not finished writing yet

    def __call__(self, stdout: Path) -> str | None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        try:
            with open(stdout, encoding="utf-8", errors="replace") as f:
                f.seek(self._pos)
                chunk = f.read(1 << 20)
                self._pos = f.tell()
        except OSError:
            chunk = ""
        text = self._carry + chunk
        cut = text.rfind("\n") + 1
        chunk, self._carry = text[:cut], text[cut:][-(1 << 16):]  # whole lines only
        if self.train_end_at is None and TRAIN_END.search(chunk):
            self.train_end_at = now
        if self.target_step is not None:
            for m in STEP_VAL.finditer(chunk):
                if int(m.group(1)) == self.target_step:
                    self.step_val = (int(m.group(1)), float(m.group(3)), float(m.group(4)))
                    self.status = "stopped_at_step"
                    return f"partial reproduction: stopped after step {self.target_step}'s validation line"
            return None
        if self.train_end_at is None:
            limit = self.opts.setup_allowance_s + self.opts.train_cap_s
            if now - self.started > limit:
                self.status = "train_cap"
                return (f"training still running after {now - self.started:.0f} s ({self.opts.train_cap_s:.0f} s "
                        f"cap + {self.opts.setup_allowance_s:.0f} s setup allowance): over the training cap")
        elif now - self.train_end_at > self.opts.eval_cap_s:
            self.status = "eval_cap"
            return (f"evaluation still running {now - self.train_end_at:.0f} s after training ended "
                    f"({self.opts.eval_cap_s:.0f} s cap): over the evaluation cap")
        return None


def _base_env(ws: Path) -> dict[str, str]:
    """The sandbox's own environment, plus the device and thread choices of the host that runs it."""
    from auditor.rerun.workspace import sandbox_env

    env = sandbox_env(ws, [str(ws / ".pgolf")])
    for var in ("CUDA_VISIBLE_DEVICES", "NCCL_DEBUG", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    return env


def _data_env(readme_env: dict[str, str], data: Path) -> dict[str, str]:
    """The README's data paths (``./data/...`` of the author's machine) rewritten onto ``--data``."""
    out = {"DATA_DIR": str(data) + "/"}
    datasets = sorted((data / "datasets").glob("fineweb10B_sp*")) if (data / "datasets").is_dir() else []
    toks = sorted((data / "tokenizers").glob("*.model")) if (data / "tokenizers").is_dir() else []
    vocab = readme_env.get("VOCAB_SIZE")
    if vocab:
        datasets = [d for d in datasets if d.name.endswith(f"sp{vocab}")] or datasets
        toks = [t for t in toks if f"_{vocab}_" in t.name] or toks
    if len(datasets) == 1:
        out["DATA_PATH"] = str(datasets[0])
    if len(toks) == 1:
        out["TOKENIZER_PATH"] = str(toks[0])
    for key in ("DATA_PATH", "TOKENIZER_PATH"):
        val = readme_env.get(key)
        if val:  # keep the README's choice of file, under --data
            rel = re.sub(r"^(?:\./)?data/", "", val)
            if (data / rel).exists():
                out[key] = str(data / rel)
    return out


def _memory_bytes(opts: ReproOptions) -> int:
    if opts.memory_mb:
        return opts.memory_mb << 20
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 16 << 30
    return max(2 << 30, int(total * 0.85))


def _script_log(ws: Path, before: set[Path]) -> Path | None:
    """The log file the script wrote itself (``logs/<RUN_ID>.txt``), else None (stdout is used)."""
    logs = [p for p in (ws / "logs").glob("*") if p.is_file() and p not in before]
    return max(logs, key=lambda p: p.stat().st_size) if logs else None


def _model_file(ws: Path, before: set[Path]) -> Path | None:
    """The compressed model the run wrote: the largest new file with a model suffix."""
    new = []
    for p in ws.rglob("*"):
        rel = p.relative_to(ws)
        if rel.parts and rel.parts[0] in SKIP_DIRS:
            continue
        if p.is_file() and not p.is_symlink() and p not in before and p.name.lower().endswith(MODEL_SUFFIXES):
            new.append(p)
    if not new:
        return None
    compressed = [p for p in new if p.suffix.lower() in (".ptz", ".br", ".xz", ".lzma", ".zst", ".zstd", ".gz")]
    return max(compressed or new, key=lambda p: p.stat().st_size)


# --- comparing ----------------------------------------------------------------------------------
def tolerance_for(audit: RecordAudit, given: float | None) -> tuple[float, str]:
    if given is not None:
        return given, f"given: {given} BPB"
    values = [v for v in _claimed_by_seed(audit).values() if v[0] is not None]
    bpbs = [v[0] for v in values]
    if len(bpbs) >= 2:
        sd = statistics.stdev(bpbs)
        tol = max(TOLERANCE_FLOOR_BPB, SPREAD_FACTOR * sd)
        return tol, (f"auto: max({TOLERANCE_FLOOR_BPB} BPB floor, {SPREAD_FACTOR:g} x the claimed seeds' standard "
                     f"deviation {sd:.6f} over {len(bpbs)} seeds)")
    return TOLERANCE_FLOOR_BPB, (f"auto: {TOLERANCE_FLOOR_BPB} BPB floor (one claimed seed: no spread to derive "
                                 f"a tolerance from)")


def _claimed_by_seed(audit: RecordAudit) -> dict[int, tuple[float | None, float | None, int | None, str]]:
    """seed -> (val_bpb, val_loss, artifact bytes, where the claim is written). submission.json's
    per-seed results are the claim; a seed it does not list is claimed by its log."""
    out: dict[int, tuple] = {}
    for run in audit.runs:
        if run.seed is not None and not run.duplicate_of and run.seed not in out:
            out[run.seed] = (run.val_bpb, run.val_loss, run.artifact_bytes, f"{run.log_file}:{run.line}")
    per_seed = audit.claimed.get("per_seed") or {}
    for key, vals in per_seed.items():
        try:
            seed = int(key)
        except (TypeError, ValueError):
            continue
        if isinstance(vals, dict) and vals.get("val_bpb") is not None:
            prev = out.get(seed, (None, None, None, ""))
            out[seed] = (float(vals["val_bpb"]),
                         float(vals["val_loss"]) if vals.get("val_loss") is not None else prev[1],
                         int(vals["artifact_bytes"]) if vals.get("artifact_bytes") is not None else prev[2],
                         "submission.json seed_results")
    if not per_seed and audit.claimed.get("val_bpb") is not None and len(out) <= 1:
        # one seed, and submission.json states only the mean: that number is the claim
        for seed in list(out) or []:
            prev = out[seed]
            out[seed] = (float(audit.claimed["val_bpb"]), audit.claimed.get("val_loss") or prev[1], prev[2],
                         "submission.json val_bpb")
    return out


def _claimed_step_vals(folder: Path, audit: RecordAudit, seed: int) -> list[tuple[int, float, float]]:
    from auditor.parse.logs import parse_log

    run = next((r for r in audit.runs if r.seed == seed), audit.runs[0] if audit.runs else None)
    if run is None:
        return []
    log = parse_log(folder / run.log_file, run.log_file)
    return [(s.step, s.val_loss, s.val_bpb) for s in log.step_vals]


def _compare(folder: Path, audit: RecordAudit, plan: _Plan, runs: list[_SeedRun], opts: ReproOptions,
             out_dir: Path, sandbox: dict) -> Reproduction:
    from auditor.parse.logs import parse_log

    tol, tol_source = tolerance_for(audit, opts.tolerance)
    claims = _claimed_by_seed(audit)
    by_seed_log = {r.seed: r for r in audit.runs if r.seed is not None}
    rows: list[ReproSeed] = []
    for run in runs:
        claim = claims.get(run.seed, (None, None, None, None))
        orig = by_seed_log.get(run.seed)
        row = ReproSeed(seed=run.seed, status=run.status, reason=run.reason, claimed_bpb=claim[0],
                        claimed_loss=claim[1], claimed_source=claim[3], claimed_artifact_bytes=claim[2],
                        claimed_train_s=_s(orig.train_time_ms) if orig else None,
                        claimed_eval_s=_s(orig.eval_time_ms) if orig else None,
                        outside_train_s=run.outside_train_s, outside_eval_s=run.outside_eval_s,
                        log_file=str(run.log_path) if run.log_path else None,
                        model_file=run.model_file.name if run.model_file else None)
        if run.log_path is not None and run.log_path.is_file():
            log = parse_log(run.log_path, run.log_path.name)
            if log.reported is not None:
                row.reproduced_bpb, row.reproduced_loss = log.reported.val_bpb, log.reported.val_loss
                row.reproduced_label = log.reported.label
            row.reproduced_artifact_bytes = log.artifact_bytes
            row.reproduced_train_s = _s(log.stopping_early.train_time_ms if log.stopping_early
                                        else log.last_train_time_ms)
            row.reproduced_eval_s = _s(log.reported_eval_time_ms)
            if run.model_file_bytes is not None:
                code = log.code_bytes if log.code_bytes is not None else (folder / plan.script_rel).stat().st_size
                row.measured_artifact_bytes = code + run.model_file_bytes
        if plan.target_step is not None:
            # partial: the claim is the original log's line at the same step
            orig_steps = {s: (loss, bpb) for s, loss, bpb in _claimed_step_vals(folder, audit, run.seed)}
            row.step = plan.target_step
            if plan.target_step in orig_steps:
                row.claimed_loss, row.claimed_bpb = orig_steps[plan.target_step]
                row.claimed_source = f"{orig.log_file if orig else 'log'} step {plan.target_step}"
            if run.step_val is not None:
                _, row.reproduced_loss, row.reproduced_bpb = run.step_val
                row.reproduced_label = f"step {plan.target_step} validation"
                row.status = "completed"
                row.reason = None
        if row.status == "completed" and row.reproduced_bpb is None:
            row.status = "failed"
            row.reason = "the run ended without a final score line"
        if row.reproduced_bpb is not None and row.claimed_bpb is not None and row.status == "completed":
            row.delta_bpb = round(row.reproduced_bpb - row.claimed_bpb, 8)
            row.within_tolerance = abs(row.delta_bpb) <= tol
        rows.append(row)

    findings = _audit_reproduced_logs(folder, runs, out_dir) if plan.target_step is None else []
    verdict, reason = _verdict(rows, tol, findings)
    command = (("torchrun --standalone --nproc_per_node=" + str(plan.nproc)) if plan.nproc > 1 else "python")
    env_shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(plan.env_by_seed[plan.seeds[0]].items()))
    return Reproduction(
        verdict=verdict, reason=reason, partial=plan.target_step is not None, tolerance_bpb=tol,
        tolerance_source=tol_source, script=plan.script_rel if not opts.reference else f"reference: {plan.script}",
        command=f"{env_shown} {command} {plan.script_rel}".strip(), nproc=plan.nproc,
        data_dir=str(opts.data_dir) if opts.data_dir is not None else "-",
        seeds=rows, findings=findings, sandbox=sandbox,
        hardware=hardware() if opts.from_logs is None else {"note": "not run by pgolf: compared from logs"},
        source="run" if opts.from_logs is None else f"logs: {out_dir}",
        caps_s={"train": opts.train_cap_s, "eval": opts.eval_cap_s, "setup_allowance": opts.setup_allowance_s},
        out_dir=str(out_dir))


def _verdict(rows: list[ReproSeed], tol: float, findings: list[Finding]) -> tuple[ReproVerdict, str]:
    off = [r for r in rows if r.within_tolerance is False]
    if off:
        parts = [f"seed {r.seed}: {r.reproduced_bpb:.6f} vs claimed {r.claimed_bpb:.6f} ({r.delta_bpb:+.6f})"
                 for r in off]
        return ReproVerdict.NOT_REPRODUCED, f"outside the ±{tol:.4f} BPB tolerance: " + "; ".join(parts)
    broken = [f for f in findings if f.severity is Severity.ERROR]
    incomplete = [r for r in rows if r.status != "completed"]
    if incomplete:
        return ReproVerdict.INCOMPLETE, "; ".join(f"seed {r.seed}: {r.status} ({r.reason})" for r in incomplete)
    unclaimed = [r for r in rows if r.claimed_bpb is None]
    if unclaimed:
        return ReproVerdict.INCOMPLETE, "no claimed score to compare with for seed(s) " + ", ".join(
            str(r.seed) for r in unclaimed)
    if broken:
        return ReproVerdict.NOT_REPRODUCED, ("the scores match, but the reproduced runs break a limit: "
                                             + "; ".join(f"{f.rule_id} {f.message}" for f in broken[:3]))
    return ReproVerdict.REPRODUCED, (f"{len(rows)} seed(s) within ±{tol:.4f} BPB of their claims (largest "
                                     f"difference {max(abs(r.delta_bpb or 0) for r in rows):.6f})")


def _audit_reproduced_logs(folder: Path, runs: list[_SeedRun], out_dir: Path) -> list[Finding]:
    """The usual limit checks on the reproduced logs: a copy of the record with its own logs
    replaced by the reproduced ones, audited without the static analysis."""
    from auditor.options import AuditOptions
    from auditor.pipeline import audit_paths

    logs = [r.log_path for r in runs if r.log_path is not None and r.log_path.is_file()]
    if not logs:
        return []
    with tempfile.TemporaryDirectory(prefix="pgolf-repro-audit-") as tmp:
        copy = Path(tmp) / folder.name
        copy.mkdir()
        for p in folder.iterdir():
            if p.is_file() and not p.is_symlink() and p.suffix not in (".log", ".txt"):
                shutil.copy2(p, copy / p.name)
        for p in logs:
            shutil.copy2(p, copy / p.name)
        report = audit_paths([copy], AuditOptions(static=False, recompute_code_size=False))
    keep = ("LIM",)
    out = []
    for rec in report.records:
        for f in rec.findings:
            if f.rule_id.startswith(keep) and f.severity in (Severity.ERROR, Severity.WARNING):
                out.append(f)
    return out


def _s(ms: float | None) -> float | None:
    return round(ms / 1000.0, 3) if ms is not None else None


__all__ = ["ReproOptions", "hardware", "reproduce_record", "reproduce_report", "tolerance_for"]
