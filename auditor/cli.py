"""The `pgolf` command line.

Exit codes (also in the README):
  0 PASS · 1 FAIL · 2 usage error · 3 NEEDS_REVIEW · 4 input error or a record that could not be
  audited (verdict ERROR) · 5 internal error (a bug in pgolf).
"""

from __future__ import annotations

import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from auditor import __version__
from auditor.errors import ExitCode, PgolfError

app = typer.Typer(
    name="pgolf",
    help="Compliance auditor and submission validator for OpenAI's Parameter Golf challenge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

# by the verdict's value: auditor.models (pydantic) loads only on the commands that audit
VERDICT_EXIT = {
    "PASS": ExitCode.PASS,
    "FAIL": ExitCode.FAIL,
    "NEEDS_REVIEW": ExitCode.NEEDS_REVIEW,
    "ERROR": ExitCode.INPUT_ERROR,
}


class Format(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"
    markdown = "markdown"


class PolicyChoice(str, Enum):
    both = "both"
    readme = "readme"
    frontier = "frontier"


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PgolfError(f"cannot write {output}: {exc.strerror or exc}") from exc
    err.print(f"wrote {output}")


@app.command()
def audit(
    paths: Annotated[list[Path] | None, typer.Argument(help="Record folders or records trees.")] = None,
    git: Annotated[str | None, typer.Option("--git", help="Git repository (path or URL) to audit.")] = None,
    ref: Annotated[
        str | None, typer.Option(help="Git ref to audit (branch, tag, SHA, refs/pull/N/head).")
    ] = None,
    pr: Annotated[int | None, typer.Option(help="PR number: shorthand for --ref refs/pull/N/head.")] = None,
    base: Annotated[str | None, typer.Option(help="Base ref: audit only what the ref adds.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Baseline record folder (or leaderboard row) for significance.")
    ] = None,
    policy: Annotated[
        PolicyChoice, typer.Option(help="Significance policy to judge by.")
    ] = PolicyChoice.both,
    static: Annotated[
        bool, typer.Option("--static/--no-static", help="Run the C1-C4 dataflow detectors.")
    ] = True,
    recompute_code_size: Annotated[
        bool, typer.Option(help="Re-minify virtual wrappers to recompute code bytes (cached).")
    ] = True,
    rerun: Annotated[bool, typer.Option(help="Also rerun each record in the sandbox (slow).")] = False,
    jobs: Annotated[int | None, typer.Option(help="Parallel worker processes for trees.")] = None,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse results of unchanged records [PGOLF_CACHE_DIR].")
    ] = True,
    record_timeout: Annotated[
        float, typer.Option(min=0, help="Wall-clock budget of one record's audit in seconds (0: none).")
    ] = 300.0,
    worker_memory_mb: Annotated[
        int, typer.Option(min=0, help="Address-space budget of a worker process auditing a tree, MB (0: none).")
    ] = 4096,
) -> None:
    """Audit record folders, a records tree, or a git ref (a PR head)."""
    for path in paths or []:  # before the heavy imports: a wrong path is answered at once
        if not os.path.lexists(path):
            raise PgolfError(f"path not found: {path}")
    from auditor import pipeline, report
    from auditor.cache import ResultCache, disabled_by_env

    result_cache = ResultCache() if cache and not disabled_by_env() else None
    budget = pipeline.RecordBudget(wall_s=record_timeout, memory_mb=worker_memory_mb)

    options = pipeline.AuditOptions(
        baseline=baseline,
        policy=policy.value,
        static=static,
        recompute_code_size=recompute_code_size,
        rerun=rerun,
    )
    if pr is not None:
        if ref is not None:
            raise typer.BadParameter("give --pr or --ref, not both")
        ref = f"refs/pull/{pr}/head"
    if git is not None:
        if paths:
            raise typer.BadParameter("give record paths or --git, not both")
        if ref is None:
            raise typer.BadParameter("--git needs --ref (or --pr)")
        with tempfile.TemporaryDirectory(prefix="pgolf-git-") as work:
            result = pipeline.audit_git(git, ref, base, options, Path(work), cache=result_cache, budget=budget)
    else:
        if not paths:
            raise typer.BadParameter("give at least one record folder or records tree (or --git)")
        with _progress() as tick:
            result = pipeline.audit_paths(list(paths), options, progress=tick, jobs=jobs, cache=result_cache,
                                          budget=budget)
    render_opts = {"color": False} if fmt is Format.text and output is not None else {}
    _emit(report.render(result, fmt.value, **render_opts), output)
    raise typer.Exit(int(VERDICT_EXIT[result.verdict.value]))


class _progress:
    """A progress bar on stderr for trees, only when a human is watching."""

    def __enter__(self):
        self._bar = None
        if err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("auditing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=err,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=None)
        return self._tick

    def _tick(self, rel: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=rel)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


@app.command("rules")
def rules_cmd(
    rule_id: Annotated[str | None, typer.Argument(help="Show one rule's full doc.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
) -> None:
    """List the rule catalog, or show one rule."""
    import json

    from rich.markdown import Markdown
    from rich.table import Table

    import rules

    out = Console()
    if rule_id is not None:
        try:
            rule = rules.get(rule_id.upper())
        except KeyError:
            raise PgolfError(f"unknown rule {rule_id!r}; `pgolf rules` lists them") from None
        if fmt == "json":
            _emit(json.dumps(_rule_json(rule, full=True), indent=2), None)
            return
        out.print(
            f"[bold]{rule.id}[/bold] {rule.name} — {rule.condition.value}, "
            f"{rule.severity.value}, confidence {rule.confidence.value}"
        )
        out.print(Markdown(rule.doc))
        return
    catalog = rules.catalog()
    if fmt == "json":
        _emit(json.dumps([_rule_json(r) for r in catalog.values()], indent=2), None)
        return
    table = Table("ID", "name", "condition", "severity", "confidence", "summary")
    for rule in catalog.values():
        table.add_row(
            rule.id, rule.name, rule.condition.value, rule.severity.value, rule.confidence.value, rule.summary
        )
    out.print(table)


def _rule_json(rule, full: bool = False) -> dict:
    data = {
        "id": rule.id,
        "name": rule.name,
        "condition": rule.condition.value,
        "severity": rule.severity.value,
        "confidence": rule.confidence.value,
        "summary": rule.summary,
    }
    if full:
        data["doc"] = rule.doc
    return data


@app.command()
def schema() -> None:
    """Print the JSON schema of the audit report (`--format json`)."""
    import json

    from auditor.report import json_schema

    _emit(json.dumps(json_schema(), indent=2), None)


@app.command()
def rerun(
    record: Annotated[Path, typer.Argument(help="Record folder to rerun at tiny scale.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    probes: Annotated[str, typer.Option(help="Comma-separated: trace,gibbs,causal,norm (or all).")] = "all",
    timeout: Annotated[int, typer.Option(help="Wall-clock budget for all runs, seconds.")] = 900,
    env: Annotated[list[str] | None, typer.Option(help="Extra KEY=VALUE for the script (repeatable).")] = None,
    tiny_model: Annotated[bool, typer.Option(help="Shrink the model too (env names the script reads); off for --device cuda.")] = True,
    require_isolation: Annotated[bool, typer.Option(help="Refuse to run without namespaces/uid switch.")] = False,
    keep_workdir: Annotated[bool, typer.Option(help="Keep the sandbox workspace for inspection.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
) -> None:
    """Rerun a record's own script in a sandbox under tracing and probes (dynamic evidence only)."""
    from auditor import intake, report, verdict
    from auditor.models import AuditReport, RecordAudit
    from auditor.rerun import RerunOptions, rerun_record

    records = intake.discover_records(record)
    if len(records) != 1:
        raise PgolfError(f"{record}: expected one record folder, found {len(records)}")
    rec = records[0]
    extra = _env_pairs(env)
    wanted = ("trace", "gibbs", "causal", "norm") if probes == "all" else tuple(p.strip() for p in probes.split(",") if p.strip())
    options = RerunOptions(device=device, probes=wanted, timeout_s=timeout, env=extra,
                           tiny_model=tiny_model and device == "cpu",
                           require_isolation=require_isolation, keep_workdir=keep_workdir)
    result = rerun_record(rec.root, options)
    findings = verdict.sort_findings(result.findings)
    audit = RecordAudit(path=rec.rel, name=rec.name, track=rec.track, verdict=verdict.decide(findings),
                        compliance=verdict.compliance(findings), findings=findings, rerun=result.summary)
    full = AuditReport(tool_version=__version__, generated_at=_now(), verdict=audit.verdict, records=[audit],
                       options={"rerun": options.model_dump(mode="json")})
    render_opts = {"color": False} if fmt is Format.text and output is not None else {}
    _emit(report.render(full, fmt.value, **render_opts), output)
    raise typer.Exit(int(VERDICT_EXIT[full.verdict.value]))


REPRO_EXIT = {"REPRODUCED": 0, "NOT_REPRODUCED": 1, "INCOMPLETE": 3}


@app.command()
def reproduce(
    record: Annotated[Path, typer.Argument(help="Record folder to reproduce at its own configuration.")],
    data: Annotated[Path | None, typer.Option(help="Data folder: datasets/fineweb10B_sp<V>/ shards and tokenizers/.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the seeds of its logs).")] = None,
    nproc: Annotated[int | None, typer.Option(min=1, help="Processes per node (default: its README's).")] = None,
    tolerance: Annotated[str, typer.Option(help="auto (from the claimed seeds' spread) or a BPB value.")] = "auto",
    reference: Annotated[bool, typer.Option(help="Run the reference stack's bundled script instead.")] = False,
    scale_steps: Annotated[float | None, typer.Option(help="Partial: stop at this fraction of the logged steps and compare at a step both logs report.")] = None,
    train_cap: Annotated[float, typer.Option(help="Training cap enforced from outside, seconds.")] = 600.0,
    eval_cap: Annotated[float, typer.Option(help="Evaluation cap enforced from outside, seconds.")] = 600.0,
    setup_allowance: Annotated[float, typer.Option(help="Start-up before training that is not counted, seconds.")] = 300.0,
    env: Annotated[list[str] | None, typer.Option(help="Extra KEY=VALUE for the script (repeatable).")] = None,
    require_isolation: Annotated[bool, typer.Option(help="Refuse to run without namespaces/uid switch.")] = False,
    logs_dir: Annotated[Path | None, typer.Option("--logs-dir", help="Keep the reproduced logs here.")] = None,
    from_logs: Annotated[Path | None, typer.Option("--from-logs", help="Run nothing: compare logs reproduced earlier (a --logs-dir) with the claims.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
) -> None:
    """Run a submission's own train_gpt.py at its real configuration on real data, per seed, and
    compare val_loss/val_bpb, artifact bytes and times with its claims. Exit 0 REPRODUCED,
    1 NOT_REPRODUCED, 3 INCOMPLETE, 2 refused (not enough GPUs), 4 bad input (data, record)."""
    from pydantic import ValidationError

    from auditor import report
    from auditor.options import ReproduceOptions
    from auditor.reproduce import ReproOptions, reproduce_report

    try:
        options = ReproduceOptions(seeds=_int_list(seeds, "--seeds"), nproc=nproc, tolerance=_tolerance(tolerance),
                                   reference=reference, scale_steps=scale_steps, train_cap_s=train_cap,
                                   eval_cap_s=eval_cap, setup_allowance_s=setup_allowance)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    if from_logs is None and data is None:
        raise typer.BadParameter("give --data (the data folder to run on), or --from-logs to compare earlier logs")
    if data is not None and not data.is_dir():
        raise PgolfError(f"data folder not found: {data}")
    opts = ReproOptions.from_options(options, data, extra_env=_env_pairs(env), require_isolation=require_isolation,
                                     out_dir=logs_dir, from_logs=from_logs)
    full = reproduce_report(record, opts, options,
                            progress=lambda what: err.print(f"reproducing {what} ...", highlight=False))
    audit = full.records[0]
    render_opts = {"color": False} if fmt is Format.text and output is not None else {}
    _emit(report.render(full, fmt.value, **render_opts), output)
    raise typer.Exit(REPRO_EXIT[audit.reproduction.verdict.value])


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{flag} expects comma-separated integers, got {text!r}") from None


def _tolerance(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"--tolerance expects auto or a number, got {text!r}") from None
    if not value >= 0:
        raise typer.BadParameter("--tolerance must be >= 0")
    return value


def _env_pairs(items: list[str] | None) -> dict[str, str]:
    extra = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--env expects KEY=VALUE, got {item!r}")
        extra[key] = value
    return extra


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="record-8xh100 | 1xh100 | tiny-cpu")],
    out: Annotated[Path, typer.Option(help="Record folder to create.")],
    seed: Annotated[list[int] | None, typer.Option(help="Seed to run (repeatable).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="DATA_DIR with datasets/ and tokenizers/.")] = None,
    nproc: Annotated[int | None, typer.Option(help="Processes (GPUs) per run.")] = None,
    wrap: Annotated[bool, typer.Option(help="Ship train_gpt.py as an LZMA+base85 wrapper.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="Do not echo the training logs.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the preset's hyperparameters; run nothing.")] = False,
) -> None:
    """Train the reference stack (reference_impl/) and write a complete record folder."""
    # Imported here: torch takes seconds to import and the audit commands never need it.
    from reference_impl.cli import describe_command, train_command

    if dry_run:
        _emit(describe_command(preset), None)
        return
    result = train_command(preset, out, seeds=seed or None, data_dir=data_dir, nproc=nproc,
                           wrap=wrap, overwrite=overwrite, quiet=quiet)
    sub = result.submission
    err.print(f"wrote {result.out}: val_bpb {sub['val_bpb']:.8f} over seeds {sub['seeds']}, "
              f"bytes_total {sub['bytes_total']:,}")


data_app = typer.Typer(help="Check a FineWeb data folder (shards, byte sidecars, tokenizer) before a long run.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    folder: Annotated[Path, typer.Argument(help="The data folder (with datasets/ and tokenizers/).")],
    vocab: Annotated[int | None, typer.Option(help="Vocabulary size (default: the folder's sp<V>).")] = None,
    quick: Annotated[bool, typer.Option(help="Headers and sizes only; do not scan the token ids.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """Validate shard headers (magic 20240520, version 1, token count vs file size), token ids
    against the vocabulary, byte sidecars against their shards, and the tokenizer. Exit 0 when
    fit, 4 when not."""
    import json

    from auditor.datacheck import check_data, render_text

    if not folder.is_dir():
        raise PgolfError(f"not a folder: {folder}")
    report = check_data(folder, vocab_size=vocab, scan_tokens=not quick)
    _emit(json.dumps(report.to_dict(), indent=2) if fmt is Format.json else render_text(report), None)
    raise typer.Exit(0 if report.ok else int(ExitCode.INPUT_ERROR))


SERVICE_COMMANDS = {
    "serve": "Run the HTTP service (needs the service extra; `pgolf serve --help` for its options).",
    "worker": "Run a rerun worker on the queue (needs the service extra; `pgolf worker --help`).",
}


def _mount_service_commands(argv: list[str]) -> None:
    """`pgolf serve` and `pgolf worker` live with the service (api/cli.py) and need its extra. The
    real commands are loaded only when one of them runs (the service's settings cost a tenth of a
    second at start-up); otherwise they are listed by name."""
    if len(argv) > 1 and argv[1] in SERVICE_COMMANDS:
        try:
            from api.cli import serve, worker
        except ImportError:  # installed without the service extra: the audit CLI still works
            raise PgolfError(f"`pgolf {argv[1]}` needs the service extra: pip install 'pgolf[service]'") from None
        app.command("serve")(serve)
        app.command("worker")(worker)
        return
    for name, text in SERVICE_COMMANDS.items():
        app.command(name, help=text, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(
            _unavailable_service_command)


def _unavailable_service_command() -> None:
    raise PgolfError("the service commands are loaded by `pgolf serve` / `pgolf worker` themselves")


@app.command()
def version() -> None:
    """Print pgolf's version."""
    _emit(__version__, None)


def main() -> None:
    """Entry point: no tracebacks for expected errors, a defined exit code for every outcome."""
    try:
        _mount_service_commands(sys.argv)
        # standalone_mode=False: click returns the exit code of typer.Exit instead of exiting.
        rc = app(standalone_mode=False, prog_name="pgolf")
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except PgolfError as exc:
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(int(exc.exit_code))
    except Exception as exc:
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "ClickException" in kinds:  # usage errors (typer ships its own copy of click)
            exc.show(file=sys.stderr)
            sys.exit(exc.exit_code or int(ExitCode.USAGE))
        if "Abort" in kinds:
            sys.exit(130)
        if os.environ.get("PGOLF_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc}\n"
                  "This is a bug in pgolf; rerun with PGOLF_DEBUG=1 for a traceback and report it.",
                  highlight=False)
        sys.exit(int(ExitCode.INTERNAL_ERROR))
