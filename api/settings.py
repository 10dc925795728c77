"""Service settings: one pydantic model, filled from arguments or PGOLF_* environment variables.

Everything has a zero-setup default: an SQLite file under ``data_dir``, static audits in a local
process pool, no rerun queue. PostgreSQL and Redis are opt-in by URL.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from auditor.cache import disabled_by_env

DEFAULT_UPSTREAM = "https://github.com/openai/parameter-golf.git"


class Settings(BaseModel):
    data_dir: Path = Path("pgolf-data")
    # SQLAlchemy URL; None = sqlite file <data_dir>/pgolf.db (WAL). PostgreSQL: postgresql+psycopg://...
    database_url: str | None = None
    # Static audits run in this many local worker processes (never in the API process).
    workers: int = Field(default=2, ge=1, le=64)
    # Reruns go to an RQ queue on this Redis; None = reruns are refused with a clear 422.
    redis_url: str | None = None
    rerun_queue: str = "pgolf-rerun"
    # Reproductions (`POST /v1/reproductions`): the data folders a request may name live here (a
    # request names one, never a path). With redis_url they go to this queue for `pgolf worker
    # --queue pgolf-reproduce` on GPU hosts (whose own PGOLF_REPRO_DATA_ROOT holds the data);
    # without it they run in this process, one at a time, on this machine's own devices.
    repro_data_root: Path | None = None
    reproduce_queue: str = "pgolf-reproduce"
    repro_timeout_s: float = 6 * 3600.0

    # Where `{"pr": N}` is resolved (refs/pull/N/head) and which hosts a git URL may point at.
    upstream: str = DEFAULT_UPSTREAM
    allowed_git_hosts: tuple[str, ...] = ("github.com",)
    allow_local_repos: bool = False  # file:// and plain paths; for tests and single-user setups

    # API tokens for POST: name -> sha256(token). Reads are open.
    token_hashes: dict[str, str] = Field(default_factory=dict)
    auth_required: bool = True
    rate_limit_per_minute: int = Field(default=60, ge=1)  # per token (per client IP when auth is off)
    rate_limit_burst: int = Field(default=30, ge=1)
    max_inflight_per_caller: int = Field(default=16, ge=1)  # queued + running audits of one token (or IP)

    # Untrusted-input limits.
    max_json_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 32 * 1024 * 1024
    max_extracted_bytes: int = 256 * 1024 * 1024
    max_archive_members: int = 5000
    # Resolving a ref (git ls-remote) happens inside the POST; the clone itself runs in a worker
    # under auditor.intake's own limits (timeout, size, shallow, no submodules, no LFS).
    ls_remote_timeout_s: float = 20.0

    # Job engine.
    audit_timeout_s: float = 600.0  # one static audit, wall clock
    max_attempts: int = 3  # a job interrupted this many times is failed, not retried
    heartbeat_s: float = 5.0
    stale_after_s: float = 60.0  # a running job whose heartbeat is older belongs to a dead node
    worker_memory_mb: int = 4096  # RLIMIT_AS of a static worker process (0 = no limit)
    # Record results by content (auditor/cache.py), shared by the worker processes and kept across
    # restarts; None = <data_dir>/cache. result_cache=False audits everything afresh.
    cache_dir: Path | None = None
    result_cache: bool = True

    @field_validator("allowed_git_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v):
        return tuple(h.strip().lower() for h in v.split(",") if h.strip()) if isinstance(v, str) else v

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pgolf.db').resolve()}"

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def with_tokens(self, tokens: dict[str, str]) -> Settings:
        """A copy that accepts these plain tokens (name -> token); only their hashes are kept."""
        hashes = dict(self.token_hashes)
        hashes.update({name: self.hash_token(tok) for name, tok in tokens.items()})
        return self.model_copy(update={"token_hashes": hashes})

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings from PGOLF_* variables; explicit ``overrides`` (not None) win.

        PGOLF_API_TOKENS="alice:tok1,bob:tok2" or PGOLF_API_TOKENS_FILE (one name:token a line).
        """
        env = os.environ
        values: dict = {}
        simple = {
            "PGOLF_DATA_DIR": "data_dir", "PGOLF_DATABASE_URL": "database_url",
            "PGOLF_WORKERS": "workers", "PGOLF_REDIS_URL": "redis_url", "PGOLF_RERUN_QUEUE": "rerun_queue", "PGOLF_UPSTREAM": "upstream",
            "PGOLF_ALLOWED_GIT_HOSTS": "allowed_git_hosts", "PGOLF_RATE_LIMIT_PER_MINUTE": "rate_limit_per_minute",
            "PGOLF_RATE_LIMIT_BURST": "rate_limit_burst", "PGOLF_MAX_INFLIGHT": "max_inflight_per_caller",
            "PGOLF_MAX_UPLOAD_BYTES": "max_upload_bytes", "PGOLF_AUDIT_TIMEOUT_S": "audit_timeout_s",
            "PGOLF_LS_REMOTE_TIMEOUT_S": "ls_remote_timeout_s", "PGOLF_STALE_AFTER_S": "stale_after_s",
            "PGOLF_HEARTBEAT_S": "heartbeat_s", "PGOLF_MAX_ATTEMPTS": "max_attempts",
            "PGOLF_WORKER_MEMORY_MB": "worker_memory_mb", "PGOLF_CACHE_DIR": "cache_dir",
            "PGOLF_REPRO_DATA_ROOT": "repro_data_root", "PGOLF_REPRODUCE_QUEUE": "reproduce_queue",
            "PGOLF_REPRO_TIMEOUT_S": "repro_timeout_s",
        }
        for var, field in simple.items():
            if env.get(var):
                values[field] = env[var]
        if env.get("PGOLF_ALLOW_LOCAL_REPOS"):
            values["allow_local_repos"] = env["PGOLF_ALLOW_LOCAL_REPOS"].lower() in ("1", "true", "yes")
        if disabled_by_env():
            values["result_cache"] = False
        if env.get("PGOLF_NO_AUTH"):
            values["auth_required"] = env["PGOLF_NO_AUTH"].lower() not in ("1", "true", "yes")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        lines: list[str] = []
        if env.get("PGOLF_API_TOKENS"):
            lines += env["PGOLF_API_TOKENS"].split(",")
        if env.get("PGOLF_API_TOKENS_FILE"):
            lines += Path(env["PGOLF_API_TOKENS_FILE"]).read_text().splitlines()
        return settings.with_tokens(parse_token_lines(lines))


def parse_token_lines(lines: list[str]) -> dict[str, str]:
    """``name:token`` entries (blank lines and # comments ignored) -> {name: token}."""
    tokens: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if not sep or not name.strip() or len(token.strip()) < 16:
            raise ValueError("each API token entry must be name:token with a token of 16+ characters")
        tokens[name.strip()] = token.strip()
    return tokens
