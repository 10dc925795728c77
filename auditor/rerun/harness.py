"""``rerun_record``: run a submission's own script at tiny scale in the sandbox, under the tracer and
the probes, and turn what it did into findings (origin "dynamic", confidence "proof").

Runs (each a fresh workspace and sandbox; the harness never imports submission code):
  trace       traced, small validation stream: C3/C4 from the trace, Gibbs floor on every printed
              val_loss, and the per-position scores the causality/normalization probes compare;
  causal      traced, the same stream resampled from position t on (DYN101);
  gibbs_large untraced, a large stream: hashed caches saturate (DYN001);
  norm_<k>    traced, one token of the stream swapped, only when the trace could not see the
              distribution a score was read from (DYN201).
``probes`` selects among "trace", "gibbs", "causal", "norm" ("all" = every one).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, Severity
from auditor.rerun import probes as P
from auditor.rerun import synthetic
from auditor.rerun.sandbox import DEFAULT_UID, SandboxLimits, SandboxResult, run_sandboxed
from auditor.rerun.trace_analysis import LineAnalysis, TraceReport, Violation, analyze, load_trace
from auditor.rerun.workspace import (
    DataSpec,
    ScriptInfo,
    WorkspaceError,
    build_workspace,
    inspect_script,
    submitted_env,
    tiny_overrides,
)

ALL_PROBES = ("trace", "gibbs", "causal", "norm")
STDOUT_PARSE_BYTES = 32 << 20
VAL_LOSS_TEXT = re.compile(r"val_loss[:=]\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
FORK_BOMB_SPAWNS = 32
# With tiny_model the vocabulary shrinks too (when the script reads VOCAB_SIZE): an untrained model
# starts at ln V, so with V = 2 x support it starts within ln 2 of the Gibbs floor and learns the
# uniform support in tens of steps; the logits and embeddings cost almost nothing.
TINY_VOCAB = 128
# The Gibbs probe is sharp only when the model has learned "uniform over the support": a reported
# loss more than this far above the floor weakens it (a leak worth less goes unseen).
LEARNED_MARGIN_NATS = 0.1


class RerunOptions(BaseModel):
    """Options of one rerun. ``coerce`` also accepts the audit pipeline's options object
    (``rerun_probes``, ``rerun_timeout_s``, ``rerun_device``)."""

    model_config = ConfigDict(extra="ignore")

    device: Literal["cpu", "cuda"] = "cpu"
    probes: tuple[str, ...] = ("trace", "gibbs", "causal", "norm")
    timeout_s: int = Field(900, ge=10, description="wall-clock budget for all runs together")
    run_timeout_s: int = Field(600, ge=5, description="wall-clock limit of one run")
    script: str | None = None  # entry script inside the folder (default train_gpt.py)
    vocab_size: int | None = None  # default: TINY_VOCAB with tiny_model, else the script's VOCAB_SIZE, else 1024
    support_size: int = Field(64, ge=2)
    doc_len: int = Field(256, ge=2)
    seq_len: int = Field(128, ge=8)
    iterations: int = Field(60, ge=1, description="enough for a tiny model to learn the uniform support")
    train_tokens: int = Field(262_144, ge=1024)
    val_tokens_small: int = Field(4_096, ge=64)
    val_tokens_large: int = Field(16_384, ge=0, description="0 skips the large Gibbs run (16k tokens fill the 256-bucket caches of a tiny run 64 deep)")
    tiny_model: bool = False  # also shrink NUM_LAYERS/MODEL_DIM/... (only names the script reads)
    bucket_override: int | None = 256  # *BUCKETS* env vars with a positive default (hash tables) -> this
    env: dict[str, str] = Field(default_factory=dict)  # extra env, applied last
    readme_env: bool = True  # run the README command's environment (the submitted configuration) under the tiny overrides
    seed: int = 0
    alpha: float = Field(P.DEFAULT_ALPHA, gt=0, lt=0.5)
    norm_alternatives: int = Field(4, ge=1, le=64)
    memory_bytes: int = 6 << 30
    max_processes: int = 256
    threads: int = 1
    sandbox_uid: int | None = DEFAULT_UID
    require_isolation: bool = False  # refuse to run when namespaces / uid switching are unavailable
    keep_workdir: bool = False
    work_root: str | None = None

    @classmethod
    def coerce(cls, obj: Any) -> RerunOptions:
        if obj is None:
            return cls()
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, dict):
            return cls.model_validate(obj)
        data: dict[str, Any] = {}
        for ours, theirs in (("probes", "rerun_probes"), ("timeout_s", "rerun_timeout_s"), ("device", "rerun_device")):
            value = getattr(obj, theirs, None)
            if value is None:
                value = getattr(obj, ours, None)
            if value is not None:
                data[ours] = value
        if "timeout_s" in data:
            data["run_timeout_s"] = min(600, int(data["timeout_s"]))
        # An audit's rerun on the CPU must also shrink the model: record defaults (11L x 512,
        # vocab 8192) do not finish on a CPU within any useful budget.
        data["tiny_model"] = data.get("device", "cpu") == "cpu"
        return cls.model_validate(data)

    def wants(self, probe: str) -> bool:
        return probe in self.probes or "all" in self.probes


class RerunResult(BaseModel):
    record: str
    status: Literal["ok", "partial", "failed"]
    findings: list[Finding] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)


@dataclass
class RunOutcome:
    name: str
    purpose: str
    sandbox: SandboxResult | None = None
    finals: list[dict] = field(default_factory=list)
    trace: TraceReport | None = None
    error: str | None = None
    stream: synthetic.Stream | None = None
    workdir: str = ""
    notes: list[str] = field(default_factory=list)
    adapter: list[dict] = field(default_factory=list)  # CPU adapter substitutions the run used

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> dict:
        sb = self.sandbox
        return {
            "name": self.name, "purpose": self.purpose, "ok": self.ok, "error": self.error,
            "returncode": sb.returncode if sb else None, "timed_out": sb.timed_out if sb else None,
            "wall_seconds": sb.wall_seconds if sb else None,
            "notes": self.notes + (sb.notes if sb else []),
            "adapter": self.adapter,
            "finals": [{k: v for k, v in f.items() if k != "text"} for f in self.finals],
            "trace": self.trace.summary() if self.trace else None,
        }


# ---------------------------------------------------------------------------------------------


def _stdout_finals(path: Path) -> list[dict]:
    """Final metric lines of a run's stdout, in order, via the static log parser (same grammar and
    the same choice of the reported line as the static audit). Each entry also lists, under
    ``boundary``, whether the line ends an evaluation; training-time "step/iters val_loss" lines
    are returned too (``final`` False) because they end an evaluation window as well."""
    from auditor.parse.logs import parse_log

    if not path.is_file():
        return []
    log = parse_log(path, path.name, max_bytes=STDOUT_PARSE_BYTES)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for f in log.finals:
        text = lines[f.line - 1] if 0 < f.line <= len(lines) else ""
        m = VAL_LOSS_TEXT.search(text)
        out.append({"label": f.label, "line": f.line, "text": text.strip(), "val_loss": f.val_loss,
                    "val_bpb": f.val_bpb, "val_loss_text": m.group(1) if m else None,
                    "eval_time_ms": f.eval_time_ms, "reported": log.reported is f, "final": True})
    if out and not any(f["reported"] for f in out):
        out[-1]["reported"] = True
    for sv in log.step_vals:
        text = lines[sv.line - 1] if 0 < sv.line <= len(lines) else ""
        out.append({"label": f"step {sv.step}/{sv.iters}", "line": sv.line, "text": text.strip(),
                    "val_loss": sv.val_loss, "val_bpb": sv.val_bpb, "reported": False, "final": False})
    out.sort(key=lambda f: f["line"])
    return out


def _val_tokens(n: int, seq_len: int) -> int:
    """k * seq_len + 1 tokens, so scripts that truncate to whole sequences keep every one."""
    return max(1, round((n - 1) / seq_len)) * seq_len + 1


class _Runner:
    def __init__(self, info: ScriptInfo, opts: RerunOptions, root: Path, overrides: dict[str, str],
                 vocab: int, support: np.ndarray, deadline: float):
        self.info, self.opts, self.root = info, opts, root
        self.overrides, self.vocab, self.support, self.deadline = overrides, vocab, support, deadline

    def run(self, name: str, purpose: str, stream: synthetic.Stream, traced: bool,
            probes: list[int] | None = None) -> RunOutcome:
        out = RunOutcome(name=name, purpose=purpose, stream=stream)
        left = self.deadline - time.monotonic()
        if left < 5:
            out.error = "skipped: the rerun's time budget is used up"
            return out
        data = DataSpec(vocab_size=self.vocab, support=self.support, val=stream, train_tokens=self.opts.train_tokens,
                        doc_len=self.opts.doc_len, seed=self.opts.seed,
                        value_positions="all" if len(stream.tokens) <= 65_536 else list(probes or []),
                        probe_positions=list(probes or []))
        try:
            ws = build_workspace(self.info, self.root / name, data, overrides=self.overrides, trace=traced,
                                 device=self.opts.device, threads=self.opts.threads)
        except (OSError, WorkspaceError) as exc:
            out.error = f"could not prepare the workspace: {exc}"
            return out
        out.workdir = str(ws.root)
        out.notes = list(ws.notes)
        limits = SandboxLimits(wall_seconds=min(self.opts.run_timeout_s, left), memory_bytes=self.opts.memory_bytes,
                               max_processes=self.opts.max_processes)
        fds = {"PGOLF_GUARD_FD": "guard.jsonl", "PGOLF_ADAPTER_FD": "adapter.jsonl"}
        if traced:
            fds["PGOLF_TRACE_FD"] = "trace.jsonl"
        argv = [sys.executable, str(ws.ws / ".pgolf" / "pgolf_boot.py"), str(ws.script)]
        try:
            sb = run_sandboxed(argv, ws.ws, ws.env, limits, out_dir=ws.root / "out", out_fds=fds,
                               uid=self.opts.sandbox_uid, require_isolation=self.opts.require_isolation)
        except RuntimeError as exc:
            out.error = str(exc)
            return out
        out.sandbox = sb
        out.adapter = _adapter_uses(ws.root / "out" / "adapter.jsonl")
        out.finals = _stdout_finals(ws.root / "out" / "stdout.txt")
        if not traced:
            out.finals = [f for f in out.finals if f["final"]]
        if traced:
            tr = load_trace(ws.root / "out" / "trace.jsonl")
            if tr.events:
                out.trace = analyze(tr, out.finals, _initial_positions(stream), len(stream.tokens))
        out.finals = [f for f in out.finals if f["final"]]
        if sb.cgroup.get("oom_kills", 0) > 0:
            out.error = f"stopped by the memory limit ({self.opts.memory_bytes >> 20} MiB)"
        elif sb.timed_out:
            out.error = f"killed after {sb.wall_seconds:.0f} s (wall-clock limit)"
        elif sb.returncode != 0:
            out.error = f"exited with status {sb.returncode}: {_last_error(sb.stderr)}"
        elif not out.finals:
            out.error = "finished without printing a final metric line (<label> val_loss:… val_bpb:…)"
        return out


def _adapter_uses(path: Path) -> list[dict]:
    """What the CPU adapter substituted in one run (bootstrap/pgolf_cpu.py writes it at exit)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:200]
    except OSError:
        return out
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("adaptation"), str):
            out.append({"adaptation": item["adaptation"][:200], "count": int(item.get("count") or 0),
                        "first": str(item.get("first") or "")[:200] or None})
    return out


def _initial_positions(stream: synthetic.Stream) -> np.ndarray:
    """Positions known before any scoring: the first token and every BOS the harness inserted."""
    return np.union1d(np.array([0]), stream.bos_positions).astype(np.int64)


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", ln.strip()) or ln.startswith("pgolf-launcher:"):
            return ln.strip()[:300]
    return (lines[-1].strip()[:300] if lines else "no output on stderr")


# ---------------------------------------------------------------------------------------------
# findings


def _loc(info: ScriptInfo, where: dict | None, role: str | None = None) -> Location | None:
    if not where or "file" not in where:
        return None
    return Location(file=where["file"], line=where.get("line"), snippet=where.get("snippet"),
                    wrapper=info.wrapper if where["file"] == info.entry else None, role=role)


def _violation_finding(info: ScriptInfo, la: LineAnalysis, v: Violation) -> Finding:
    rule = {"c3_update": "DYN301", "c3_update_discarded": "DYN301", "c3_write": "DYN301", "c4_multiple": "DYN401",
            "c4_alternative": "DYN401", "c4_missing": "DYN401", "norm_unnormalized": "DYN201"}[v.kind]
    severity = confidence = None
    if v.kind in ("c4_missing", "c3_update_discarded") or not la.reported:
        severity = Severity.WARNING
    if v.kind == "c3_update_discarded":
        confidence = Confidence.HEURISTIC  # the update proven; that it changed nothing is not
    where = "the reported score" if la.reported else "an evaluation that is not the reported score"
    path = [loc for loc in (_loc(info, r, r.get("role")) for r in v.related) if loc is not None]
    return finding(rule, f"trace: {v.message} [{where}]", location=_loc(info, v.where, "sink"), path=path,
                   severity=severity, confidence=confidence, origin="dynamic",
                   data={"label": la.label, "kind": v.kind, "event": v.seq, "positions": v.positions,
                         "count": v.count, "attribution": la.attribution, "reported": la.reported})


def _guard_findings(info: ScriptInfo, runs: list[RunOutcome], max_processes: int) -> list[Finding]:
    out: list[Finding] = []
    seen: set = set()
    for run in runs:
        sb = run.sandbox
        if sb is None:
            continue
        groups: dict[tuple, list[dict]] = {}
        for ev in sb.guard_events:
            if ev.get("event") in ("write_outside", "network", "spawn", "signal"):
                groups.setdefault((ev["event"], ev.get("op"), ev.get("file"), ev.get("line")), []).append(ev)
        for (event, op, file, line), evs in groups.items():
            key = (event, op, file, line)
            if key in seen or (event == "spawn" and len(evs) < FORK_BOMB_SPAWNS):
                continue
            seen.add(key)
            first = evs[0]
            paths = sorted({str(e.get("path") or e.get("target")) for e in evs})
            shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            what = {"write_outside": f"tried to write outside its workspace ({shown}); denied",
                    "network": f"tried to use the network ({op} {shown}); denied (and no network in the sandbox)",
                    "spawn": f"spawned {len(evs)}+ processes ({op}): a fork bomb, stopped by the process limit",
                    "signal": f"sent signals to other processes ({shown})"}[event]
            out.append(finding("DYN501", f"sandbox: the script {what} (run '{run.name}')",
                               location=_loc(info, first), origin="dynamic",
                               data={"event": event, "op": op, "count": len(evs), "run": run.name,
                                     "targets": paths[:20], "denied": bool(first.get("denied"))}))
        out += _kernel_findings(run.name, sb.sandbox_events, seen)
        cg = sb.cgroup
        if ("procs", run.name) not in seen and (cg.get("pids_max_hits", 0) > 0 or cg.get("pids_peak", 0) >= max_processes):
            seen.add(("procs", run.name))
            if not any(f.data.get("event") == "spawn" for f in out):
                out.append(finding("DYN501", f"sandbox: run '{run.name}' hit the process limit ({max_processes}); "
                                   "further forks were refused", origin="dynamic",
                                   data={"event": "process_limit", "run": run.name, **cg}))
        if cg.get("oom_kills", 0) > 0 or cg.get("memory_failcnt", 0) > 0 or "MemoryError" in sb.stderr or \
                "Cannot allocate memory" in sb.stderr or "bad_alloc" in sb.stderr:
            # the tiny run needed more than the sandbox allows: a rerun that could not finish, not a
            # violation (what the script would use at its own scale is not known from here)
            out.append(finding("DYN501", f"sandbox: run '{run.name}' ran into the memory limit and was stopped "
                               f"(peak {cg.get('memory_peak', 0) >> 20} MiB)", severity=Severity.WARNING,
                               origin="dynamic", data={"event": "memory_limit", "run": run.name, **cg}))
        if sb.timed_out:
            out.append(finding("DYN501", f"sandbox: run '{run.name}' did not finish within {sb.wall_seconds:.0f} s "
                               "and was killed with its whole process tree", severity=Severity.WARNING,
                               origin="dynamic", data={"event": "timeout", "run": run.name,
                                                       "wall_seconds": sb.wall_seconds}))
    return out


# what the supervisor (syscall filter) and the host check saw, whatever layer the program used
_KERNEL_EVENTS = {
    "write_outside": "tried to open a path outside its workspace for writing ({targets}) through {syscall}; "
                     "refused by the syscall filter",
    "unix_connect": "tried to connect to a Unix socket outside its workspace ({targets}); refused by the "
                    "syscall filter",
    "network": "tried to connect to {targets} through {syscall}; refused by the syscall filter (and no network "
               "in the sandbox)",
    "socket_family": "tried to open sockets of address family {targets}; refused by the syscall filter",
    "forbidden_syscall": "called {targets}, which a training script never needs and an escape would; refused "
                         "by the syscall filter",
    "host_write": "left {targets} on the host, owned by the sandbox uid: a write the sandbox did not contain",
    "disk_limit": "wrote more than {targets} into its workspace (filling the disk); the run was stopped",
}


def _event_target(ev: dict) -> str:
    if ev["event"] == "forbidden_syscall":
        return str(ev.get("syscall"))
    if ev["event"] == "socket_family":
        try:
            return socket.AddressFamily(int(ev.get("family", -1))).name
        except ValueError:
            return str(ev.get("family"))
    return str(ev.get("target"))


def _kernel_findings(run: str, events: list[dict], seen: set) -> list[Finding]:
    groups: dict[tuple, list[dict]] = {}
    for ev in events:
        if ev.get("event") in _KERNEL_EVENTS:
            groups.setdefault((ev["event"], ev.get("syscall")), []).append(ev)
    out = []
    for (event, syscall), evs in groups.items():
        if ("kernel", event, syscall) in seen:
            continue
        seen.add(("kernel", event, syscall))
        targets = sorted({_event_target(e) for e in evs})
        shown = ", ".join(targets[:3]) + (f" and {len(targets) - 3} more" if len(targets) > 3 else "")
        what = _KERNEL_EVENTS[event].format(targets=shown, syscall=syscall)
        out.append(finding("DYN501", f"sandbox (kernel side): the program {what} (run '{run}')", origin="dynamic",
                           data={"event": event, "source": "kernel", "op": syscall, "count": len(evs), "run": run,
                                 "targets": targets[:20], "denied": event != "host_write"}))
    return out


def _gibbs_findings(info: ScriptInfo, checks: list[P.GibbsCheck]) -> list[Finding]:
    out = []
    for c in checks:
        if not c.violated:
            continue
        out.append(finding(
            "DYN001",
            f"Gibbs probe ({c.run}, {c.n_scored} scored tokens): '{c.label}' reports val_loss {c.val_loss:.6f}, "
            f"{-c.margin:.4f} nats below the floor {c.floor:.6f} = ln {c.support} x non-BOS share "
            f"(tolerance {c.tolerance:.2e}); no causal, normalized, score-first, single-pass evaluation can "
            f"do that on i.i.d. tokens (chance < {c.alpha:g})",
            severity=None if c.reported else Severity.WARNING, origin="dynamic", data=c.as_dict(),
            location=Location(file=info.entry, wrapper=info.wrapper)))
    return out


# ---------------------------------------------------------------------------------------------


def rerun_record(folder: Path, options: Any = None) -> RerunResult:
    """Rerun the record folder's script under instrumentation; never raises for bad input."""
    opts = RerunOptions.coerce(options)
    folder = Path(folder)
    started = time.monotonic()
    deadline = started + opts.timeout_s
    summary: dict[str, Any] = {"options": opts.model_dump(mode="json"), "device": opts.device}
    if opts.device == "cpu":
        summary["device_note"] = ("CPU rerun: no GPU was used; CUDA calls ran through the CPU adapter "
                                  "(summary.adapter lists what it substituted)")
    try:
        info = inspect_script(folder, opts.script)
    except WorkspaceError as exc:
        return _failed(folder, f"cannot prepare a rerun: {exc}", summary)
    summary["script"] = {"entry": info.entry, "wrapper": info.wrapper, "env_vars_read": len(info.env_defaults),
                         "caseops": info.caseops, "shimmed": info.missing_modules,
                         "unavailable_modules": info.unavailable_modules}
    summary["script"]["requires_cuda"] = info.requires_cuda
    summary["script"]["kernel_switches"] = info.kernel_switches

    vocab = opts.vocab_size or (TINY_VOCAB if opts.tiny_model and info.reads("VOCAB_SIZE") else None) \
        or info.vocab_size or 1024
    try:
        support = synthetic.default_support(vocab, min(opts.support_size, vocab - 6), seed=opts.seed)
    except ValueError as exc:
        return _failed(folder, f"cannot build synthetic data: {exc}", summary)
    # the submitted configuration (the README command's environment), scaled down by the tiny overrides
    submitted = submitted_env(folder) if opts.readme_env else {}
    overrides = {**submitted, **tiny_overrides(info, iterations=opts.iterations, seq_len=opts.seq_len,
                                               vocab_size=vocab, tiny_model=opts.tiny_model, device=opts.device,
                                               submitted=submitted)}
    summary["readme_env"] = submitted
    if opts.bucket_override:
        for name, default in info.env_defaults.items():
            if "BUCKET" in name and default and default.isdigit() and int(default) > 0:
                overrides[name] = str(opts.bucket_override)
    overrides.update(opts.env)
    summary["overrides"] = overrides
    summary["vocab_size"] = vocab
    summary["support"] = {"size": len(support), "ln_support": math.log(len(support)), "doc_len": opts.doc_len}

    root = Path(tempfile.mkdtemp(prefix="pgolf-rerun-", dir=opts.work_root))
    root.chmod(0o711)
    runner = _Runner(info, opts, root, overrides, vocab, support, deadline)
    runs: list[RunOutcome] = []
    findings: list[Finding] = []
    traced = opts.wants("trace") or opts.wants("causal") or opts.wants("norm")
    try:
        n_small = _val_tokens(opts.val_tokens_small, opts.seq_len)
        stream = synthetic.gibbs_stream(n_small, support, opts.doc_len, seed=opts.seed + 17)
        probe_pos = P.probe_positions(n_small, stream.bos_positions)
        main = runner.run("trace" if traced else "gibbs_small", "trace + Gibbs floor (small validation set)",
                          stream, traced=traced, probes=probe_pos)
        runs.append(main)
        if main.ok or main.finals:
            findings += _analyze_main(info, opts, main, summary)
        if main.ok:
            if opts.wants("causal") and main.trace is not None:
                findings += _causality(info, opts, runner, main, runs, summary)
            if opts.wants("norm") and main.trace is not None:
                findings += _normalization(info, opts, runner, main, runs, summary)
            if opts.wants("gibbs") and opts.val_tokens_large:
                n_large = _val_tokens(opts.val_tokens_large, opts.seq_len)
                big = synthetic.gibbs_stream(n_large, support, opts.doc_len, seed=opts.seed + 29)
                large = runner.run("gibbs_large", "Gibbs floor (large validation set)", big, traced=False)
                runs.append(large)
                checks = _gibbs_checks(opts, large, None)
                summary.setdefault("gibbs", []).extend(c.as_dict() for c in checks)
                findings += _gibbs_findings(info, checks)
                if not large.ok:
                    findings.append(_run_failed(info, large))
        else:
            findings.append(_run_failed(info, main))
        findings += _guard_findings(info, runs, opts.max_processes)
    finally:
        summary["runs"] = [r.summary() for r in runs]
        summary["sandbox"] = runs[0].sandbox.mechanisms if runs and runs[0].sandbox else {}
        summary["duration_s"] = round(time.monotonic() - started, 2)
        if opts.keep_workdir:
            summary["workdir"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    status = "ok" if runs and all(r.ok for r in runs) else ("partial" if runs and runs[0].ok else "failed")
    summary["verdict_hint"] = _verdict_hint(findings)
    return RerunResult(record=str(folder), status=status, findings=findings, summary=summary)


def _failed(folder: Path, reason: str, summary: dict) -> RerunResult:
    f = finding("DYN900", f"rerun not possible: {reason}", origin="dynamic", data={"reason": reason})
    summary["verdict_hint"] = "not run"
    summary.setdefault("runs", [])
    return RerunResult(record=str(folder), status="failed", findings=[f], summary=summary)


def _run_failed(info: ScriptInfo, run: RunOutcome) -> Finding:
    tail = run.sandbox.stderr.strip().splitlines()[-15:] if run.sandbox else []
    return finding("DYN900", f"rerun '{run.name}' did not complete: {run.error}", origin="dynamic",
                   location=Location(file=info.entry, wrapper=info.wrapper),
                   data={"run": run.name, "reason": run.error, "stderr_tail": "\n".join(tail)})


def _gibbs_checks(opts: RerunOptions, run: RunOutcome, trace: TraceReport | None) -> list[P.GibbsCheck]:
    checks = []
    if run.stream is None:
        return checks
    by_label = {}
    if trace is not None:
        by_label = {la.text: la for la in trace.lines}
    for f in run.finals:
        la = by_label.get(f["text"])
        traced = (la.n_scored, la.n_bos_scored) if la is not None and la.n_scored else None
        checks.append(P.gibbs_check(run.name, f["label"], f["reported"], f["val_loss"], len(run.stream.support),
                                    run.stream.bos_positions, len(run.stream.tokens), traced, opts.alpha))
    return checks


def _learned_uniform(checks: list[P.GibbsCheck], vocab: int) -> dict | None:
    """Did the tiny model learn the uniform support? Judged on the reported score (the Gibbs margin
    of a compliant run is what the model failed to learn): a margin near 0 makes the probe sharp."""
    rep = next((c for c in checks if c.reported), checks[-1] if checks else None)
    if rep is None or rep.violated:
        return None
    untrained = math.log(vocab)
    out = {"label": rep.label, "val_loss": rep.val_loss, "floor": round(rep.floor, 6),
           "ln_support": round(math.log(rep.support), 6), "untrained_loss": round(untrained, 6),
           "margin_nats": round(rep.margin, 6), "threshold_nats": LEARNED_MARGIN_NATS,
           "learned": rep.margin <= LEARNED_MARGIN_NATS}
    if out["learned"]:
        out["note"] = (f"the tiny model learned the uniform support ('{rep.label}' {rep.val_loss:.4f} vs floor "
                       f"{rep.floor:.4f}): the Gibbs probe is sharp to {max(rep.margin, 0) + rep.tolerance:.3f} nats")
    else:
        state = ("diverged or did not train" if rep.val_loss > untrained + 0.05 else
                 "has not learned the uniform support")
        out["note"] = (f"Gibbs probe weakened: the tiny model {state} ('{rep.label}' reports {rep.val_loss:.4f}, "
                       f"{rep.margin:.3f} nats above the floor {rep.floor:.4f}; an untrained model scores ln V = "
                       f"{untrained:.4f}), so a leak worth less than {rep.margin:.3f} nats per token would not show; "
                       "a val_loss below the floor is still proof (more steps: --env ITERATIONS=N)")
    return out


def _analyze_main(info: ScriptInfo, opts: RerunOptions, main: RunOutcome, summary: dict) -> list[Finding]:
    findings: list[Finding] = []
    if opts.wants("gibbs"):
        checks = _gibbs_checks(opts, main, main.trace)
        summary.setdefault("gibbs", []).extend(c.as_dict() for c in checks)
        findings += _gibbs_findings(info, checks)
        learned = _learned_uniform(checks, summary["vocab_size"])
        if learned is not None:
            summary["learned_uniform"] = learned
            if not learned["learned"]:
                findings.append(finding("DYN900", learned["note"], severity=Severity.INFO, origin="dynamic",
                                        location=Location(file=info.entry, wrapper=info.wrapper), data=learned))
    if main.trace is not None and opts.wants("trace"):
        summary["trace"] = main.trace.summary()
        for la in main.trace.lines:
            for v in la.violations:
                findings.append(_violation_finding(info, la, v))
        rep = main.trace.reported
        if rep is not None and rep.attribution == "none":
            findings.append(finding("DYN900", f"trace: could not tell which scores make up '{rep.label}' (no score "
                                    "left the tensor world before the line was printed); C3/C4 not decided",
                                    severity=Severity.INFO, origin="dynamic", data={"label": rep.label}))
        if not main.trace.stats.get("scores"):
            findings.append(finding("DYN900", "trace: no scoring of validation positions was seen (validation "
                                    "tokens not read with np.fromfile/np.memmap, or scores computed without "
                                    "cross_entropy/nll_loss/gather/indexing); C3/C4 not decided",
                                    severity=Severity.INFO, origin="dynamic"))
    return findings


def _reported(run: RunOutcome) -> LineAnalysis | None:
    return run.trace.reported if run.trace is not None else None


def _causality(info, opts, runner: _Runner, main: RunOutcome, runs: list, summary: dict) -> list[Finding]:
    stream = main.stream
    n = len(stream.tokens)
    t = n // 2 + 7
    while t in set(stream.bos_positions.tolist()):
        t += 1
    other = synthetic.resample_after(stream, t, seed=opts.seed + 31)
    b = runner.run("causal", f"causality probe (stream differs from position {t} on)", other, traced=True,
                   probes=P.probe_positions(n, stream.bos_positions))
    runs.append(b)
    if not b.ok:
        return [_run_failed(info, b)]
    checks = []
    lines_b = {la.label: la for la in (b.trace.lines if b.trace else [])}
    for la in main.trace.lines:
        lb = lines_b.get(la.label)
        if lb is None or not la.raw_values:
            continue
        checks.append(P.compare_prefix(la.raw_values, lb.raw_values, t, la.label))
    summary["causality"] = [c.as_dict() for c in checks]
    out = []
    rep_label = _reported(main).label if _reported(main) else None
    for c in checks:
        if c.violated:
            out.append(finding(
                "DYN101",
                f"causality probe: '{c.label}' scores {c.differing} of {c.compared} targets before position {c.t} "
                f"differently when only tokens from {c.t} on change (first: position {c.first_position}, "
                f"{c.value_a:.6f} vs {c.value_b:.6f} nats) — its scores depend on later tokens",
                severity=None if c.label == rep_label else Severity.WARNING, origin="dynamic",
                location=Location(file=info.entry, wrapper=info.wrapper), data=c.as_dict()))
    if not checks:
        out.append(finding("DYN900", "causality probe inconclusive: no per-position scores were traced",
                           severity=Severity.INFO, origin="dynamic"))
    return out


def _normalization(info, opts, runner: _Runner, main: RunOutcome, runs: list, summary: dict) -> list[Finding]:
    rep = _reported(main)
    if rep is None or not rep.normalization:
        return []
    pending = [p for p in rep.normalization.get("unverified_positions", []) if p in rep.values]
    summary["normalization"] = {"trace": rep.normalization}
    if not pending:
        return []
    stream = main.stream
    p = max(pending)  # the latest: a cache has seen the most there
    original = int(stream.tokens[p])
    check = P.NormalizationCheck(position=p, tokens=[original], scores=[rep.values[p]])
    for k, tok in enumerate(P.alternative_tokens(stream.support, original, opts.norm_alternatives, opts.seed)):
        run = runner.run(f"norm_{k}", f"normalization probe (position {p} := token {tok})",
                         synthetic.with_token(stream, p, tok), traced=True, probes=[p])
        runs.append(run)
        la = _reported(run)
        if not run.ok or la is None or p not in la.values:
            check.note = f"run norm_{k} gave no committed score at position {p}"
            break
        check.tokens.append(tok)
        check.scores.append(la.values[p])
        if check.violated:
            break
    summary["normalization"]["counterfactual"] = check.as_dict()
    if check.violated:
        return [finding(
            "DYN201",
            f"normalization probe: at position {p}, the scores of '{rep.label}' for {len(check.scores)} different "
            f"tokens (same prefix) add up to probability {check.mass:.3f} > 1 — they are not probabilities of one "
            f"distribution over the vocabulary", origin="dynamic",
            location=Location(file=info.entry, wrapper=info.wrapper), data=check.as_dict())]
    return []


def _verdict_hint(findings: list[Finding]) -> str:
    if any(f.severity == Severity.ERROR and f.rule_id != "DYN900" for f in findings):
        return "violations proven"
    if any(f.rule_id == "DYN900" and f.severity != Severity.INFO for f in findings):
        return "incomplete"
    return "no violation observed"


def compare_with_static(static: list[Finding], dynamic: RerunResult) -> list[Finding]:
    """Info findings (DYN902) wherever the static detectors and the rerun disagree on C1–C4, so a
    reviewer sees both sides. Static errors the rerun did not reproduce are not withdrawn."""
    if dynamic.status == "failed":
        return []
    dyn_by_cond = {f.condition.value for f in dynamic.findings if f.severity == Severity.ERROR}
    stat_by_cond: dict[str, list[Finding]] = {}
    for f in static:
        if f.origin == "static" and f.condition.value in ("C1", "C2", "C3", "C4") and f.severity == Severity.ERROR:
            stat_by_cond.setdefault(f.condition.value, []).append(f)
    notes = []
    for cond in ("C1", "C2", "C3", "C4"):
        s, d = cond in stat_by_cond, cond in dyn_by_cond
        if s and not d:
            ids = sorted({f.rule_id for f in stat_by_cond[cond]})
            notes.append(finding("DYN902", f"{cond}: static analysis flags {', '.join(ids)} but the rerun observed no "
                                 f"{cond} violation (the flagged path may not run at the rerun's settings, or the "
                                 "probes cannot see it)", origin="dynamic", data={"condition": cond, "static": ids}))
        elif d and not s:
            ids = sorted({f.rule_id for f in dynamic.findings if f.condition.value == cond})
            notes.append(finding("DYN902", f"{cond}: the rerun proves a violation ({', '.join(ids)}) that static "
                                 "analysis did not flag", origin="dynamic", data={"condition": cond, "dynamic": ids}))
    return notes
