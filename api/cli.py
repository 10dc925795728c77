"""``pgolf serve`` and ``pgolf worker``: plain typer-annotated functions the main CLI mounts.

    app.command("serve")(api.cli.serve)
    app.command("worker")(api.cli.worker)

``python -m api.cli serve|worker`` runs them without the main CLI.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.settings import Settings, parse_token_lines


def serve(
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 to listen on every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="SQLite file and scratch space [PGOLF_DATA_DIR].")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://u@h/db [PGOLF_DATABASE_URL].")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Static-audit worker processes [PGOLF_WORKERS].")] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis for the rerun queue; reruns are refused without it [PGOLF_REDIS_URL].")
    ] = None,
    upstream: Annotated[str | None, typer.Option(help="Repository that PR numbers refer to [PGOLF_UPSTREAM].")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File of name:token lines allowed to POST [PGOLF_API_TOKENS(_FILE)].")
    ] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept POSTs without a token (local use only).")] = False,
    allow_local_repos: Annotated[
        bool, typer.Option("--allow-local-repos", help="Accept file:// and path repositories (single-user setups).")
    ] = False,
    repro_data_root: Annotated[
        Path | None, typer.Option(help="Data folders reproductions may name, run here without a queue [PGOLF_REPRO_DATA_ROOT].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the pgolf HTTP service (API, HTML reports, job engine)."""
    import uvicorn

    from api.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(
            data_dir=data_dir, database_url=database_url, workers=workers, redis_url=redis_url,
            upstream=upstream, auth_required=False if no_auth else None,
            allow_local_repos=True if allow_local_repos else None, repro_data_root=repro_data_root,
        )
        if token_file is not None:
            settings = settings.with_tokens(parse_token_lines(token_file.read_text().splitlines()))
    except (ValueError, OSError) as exc:  # pydantic's ValidationError is a ValueError
        typer.echo(f"error: bad service settings: {exc}", err=True)
        raise typer.Exit(2) from None
    if settings.auth_required and not settings.token_hashes:
        logging.getLogger("pgolf.api").warning(
            "no API tokens configured: reads work, submissions answer 503 (see --token-file / --no-auth)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, proxy_headers=False,
                timeout_graceful_shutdown=15)


def worker(
    redis_url: Annotated[str, typer.Option(envvar="PGOLF_REDIS_URL", help="Redis of the rerun queue.")] = (
        "redis://127.0.0.1:6379/0"
    ),
    queue: Annotated[
        str, typer.Option(envvar="PGOLF_RERUN_QUEUE",
                          help="Queue name(s), comma-separated: pgolf-rerun (tiny reruns), pgolf-reproduce "
                               "(full-scale reproductions; set PGOLF_REPRO_DATA_ROOT on this host).")
    ] = "pgolf-rerun",
    burst: Annotated[bool, typer.Option("--burst", help="Exit when the queue is empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name shown in RQ (default: host+pid).")] = None,
) -> None:
    """Run a worker (on a GPU host): takes rerun / reproduction jobs from the queue(s), runs them sandboxed."""
    from redis import Redis
    from redis.exceptions import RedisError
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connection = Redis.from_url(redis_url)
    try:
        connection.ping()
    except RedisError as exc:
        typer.echo(f"error: cannot reach the queue at {_redact(redis_url)}: {exc}", err=True)
        raise typer.Exit(4) from None
    # The default RQ worker forks a child per job: a crashing rerun cannot take the worker down.
    # JSON serializer, as the service enqueues: nothing on the queue is ever unpickled.
    queues = [Queue(q.strip(), connection=connection, serializer=JSONSerializer) for q in queue.split(",") if q.strip()]
    Worker(queues, connection=connection,
           name=name, serializer=JSONSerializer).work(burst=burst)


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def main() -> None:
    cli = typer.Typer(add_completion=False, no_args_is_help=True)
    cli.command("serve")(serve)
    cli.command("worker")(worker)
    cli()


if __name__ == "__main__":
    sys.exit(main())
