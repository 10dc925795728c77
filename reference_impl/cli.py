"""`pgolf train`: build a complete record folder with the reference stack.

Mount `train_command` (a plain function) under the main CLI, or run this module's typer app:
    python -m reference_impl.cli --preset tiny-cpu --out /tmp/rec
"""

from pathlib import Path
from typing import Annotated

import typer

from auditor.errors import InputError

from .presets import PRESETS, describe_preset
from .record import RecordBuildError, RecordResult, build_record


def train_command(preset: str, out: Path, seeds: list[int] | None = None, data_dir: Path | None = None,
                  nproc: int | None = None, work_dir: Path | None = None, wrap: bool = False,
                  overwrite: bool = False, quiet: bool = False) -> RecordResult:
    """Train with `preset` (record-8xh100 | 1xh100 | tiny-cpu) and write the record folder `out`.

    Seeds default to 42, 314, 999 for record-8xh100 and 1337 otherwise; `data_dir` is required for
    the FineWeb presets (tiny-cpu writes synthetic data when it is omitted); `wrap` ships the
    script as a self-extracting LZMA wrapper (fewer counted code bytes). Raises InputError with a
    readable message on bad input or a failed run."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    try:
        return build_record(preset, out, seeds=seeds, data_dir=data_dir, nproc=nproc, work_dir=work_dir,
                            wrap=wrap, overwrite=overwrite, echo=None if quiet else typer.echo)
    except (RecordBuildError, ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from exc


def describe_command(preset: str) -> str:
    """The preset's effective `Hyperparameters:` dump and model parameter count (nothing runs)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return describe_preset(preset)


app = typer.Typer(add_completion=False, help="Train the pgolf reference stack and write a record folder.")


@app.command()
def train(
    preset: Annotated[str, typer.Option(help=f"one of: {', '.join(PRESETS)}")],
    out: Annotated[Path, typer.Option(help="record folder to create")],
    seed: Annotated[list[int] | None, typer.Option(help="seed to run (repeatable)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="DATA_DIR with datasets/ and tokenizers/")] = None,
    nproc: Annotated[int | None, typer.Option(help="processes (GPUs) per run; default from the preset")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="where runs write checkpoints, internal logs")] = None,
    wrap: Annotated[bool, typer.Option(help="ship train_gpt.py as an LZMA+base85 self-extracting wrapper")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty --out")] = False,
    quiet: Annotated[bool, typer.Option(help="do not echo the training logs")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the preset's hyperparameters and size, run nothing")] = False,
) -> None:
    try:
        if dry_run:
            typer.echo(describe_command(preset))
            return
        result = train_command(preset, out, seeds=seed or None, data_dir=data_dir, nproc=nproc,
                               work_dir=work_dir, wrap=wrap, overwrite=overwrite, quiet=quiet)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=int(exc.exit_code)) from None
    sub = result.submission
    typer.echo(f"wrote {result.out}: val_bpb {sub['val_bpb']:.8f} over seeds {sub['seeds']}, "
               f"bytes_total {sub['bytes_total']:,}")


if __name__ == "__main__":
    app()
