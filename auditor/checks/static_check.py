"""C1-C4 (and network / val-data hygiene) from the unwrapped code, with reachability from the
README's run command and the logs' hyperparameter dumps."""

from __future__ import annotations

from pathlib import Path

from auditor.context import RecordContext
from auditor.findings import finding
from auditor.models import Finding, Location


def check(ctx: RecordContext) -> list[Finding]:
    if not ctx.options.static:
        # Fail closed: compliance was not checked, so the record cannot PASS on it.
        return [
            finding(
                "HYG010",
                "the C1-C4 detectors were switched off (--no-static): the evaluation's compliance "
                "was not checked",
                data={"skipped": "static"},
            )
        ]
    from auditor.static import StaticConfig, run_static

    out: list[Finding] = []
    parsed = []
    for src in ctx.sources:
        if src.tree is None:
            if src.is_entry:
                out.append(
                    finding(
                        "HYG010",
                        f"{src.path}: the C1-C4 detectors could not read this code "
                        f"({src.parse_error or 'not parsed'}).",
                        location=Location(file=src.path, wrapper=src.wrapper),
                    )
                )
            continue
        if src.parse_error:  # a partial tree: the detectors read what parses, the rest is named
            out.append(
                finding(
                    "HYG010",
                    f"{src.path}: the C1-C4 detectors could not read part of this code ({src.parse_error}).",
                    location=Location(file=src.path, wrapper=src.wrapper),
                    data={"partial": True},
                )
            )
        parsed.append(src)
    if not parsed:
        if not out and ctx.sources:  # code shipped, none of it readable: say so, never silence
            out.append(
                finding(
                    "HYG010",
                    "no shipped script could be parsed, so the C1-C4 detectors checked nothing",
                    location=Location(file=ctx.sources[0].path, wrapper=ctx.sources[0].wrapper),
                )
            )
        return out
    config = StaticConfig(
        readme_env=_readme_env(ctx),
        hyperparameters=[log.hyperparameters for log in ctx.unique_logs if log.hyperparameters],
        submission_date=_date(ctx),
        log_texts=_log_texts(ctx),
    )
    return out + run_static(parsed, config)


LOG_TEXT_LIMIT = 8 * 1024 * 1024  # a flagged block is confirmed by its log message; huge logs are cut


def _log_texts(ctx: RecordContext) -> list[str]:
    """Raw log texts (bounded), so a detector can confirm that a flagged block actually ran."""
    from auditor.parse.textio import read_text_bounded

    texts = []
    for log in ctx.unique_logs:
        read = read_text_bounded(Path(log.path), LOG_TEXT_LIMIT)
        if read.text:
            texts.append(read.text)
    return texts


def _readme_env(ctx: RecordContext) -> dict[str, str]:
    """Env assignments of the README's run commands (the scored configuration is often set there)."""
    env: dict[str, str] = {}
    for command in ctx.readme.commands if ctx.readme is not None else []:
        env.update(command.env)
    return env


def _date(ctx: RecordContext) -> str | None:
    if ctx.submission is not None and ctx.submission.date_iso:
        return ctx.submission.date_iso
    name = ctx.record.name
    return name[:10] if len(name) >= 10 and name[4] == "-" and name[7] == "-" else None
