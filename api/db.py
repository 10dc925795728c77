"""Persistence: the audits table is the source of truth for every job's state.

SQLite (WAL, one file, zero setup) is the default; PostgreSQL works by URL for several API nodes
sharing one queue. A job row is committed before the API answers 202, so a crash never loses it.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

# Job states. "rerunning": the static verdict is stored, reruns are on the GPU queue.
QUEUED, RUNNING, RERUNNING, DONE, FAILED = "queued", "running", "rerunning", "done", "failed"
STATUSES = (QUEUED, RUNNING, RERUNNING, DONE, FAILED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return "a" + uuid.uuid4().hex[:20]


class Base(DeclarativeBase):
    pass


class Audit(Base):
    __tablename__ = "audits"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # sha256 over (source commit/archive, base commit, options JSON): same input -> same audit.
    idem_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # git | pr | upload
    repo: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[str | None] = mapped_column(Text)
    base: Mapped[str | None] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    commit: Mapped[str | None] = mapped_column(String(64))
    base_commit: Mapped[str | None] = mapped_column(String(64))
    upload_name: Mapped[str | None] = mapped_column(Text)
    upload_sha256: Mapped[str | None] = mapped_column(String(64))
    options_json: Mapped[str] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(128))

    status: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    verdict: Mapped[str | None] = mapped_column(String(16))
    report_json: Mapped[str | None] = mapped_column(Text)  # exactly what `pgolf audit -f json` prints

    rerun_status: Mapped[str | None] = mapped_column(String(16))  # None when no rerun was asked for
    rerun_job_id: Mapped[str | None] = mapped_column(String(64))
    rerun_attempts: Mapped[int] = mapped_column(Integer, default=0)
    rerun_records: Mapped[list | None] = mapped_column(JSON)  # [{path, name}] from the static report
    rerun_json: Mapped[str | None] = mapped_column(Text)
    rerun_error: Mapped[str | None] = mapped_column(Text)


class Reproduction(Base):
    """A `pgolf reproduce` job: one record folder of a git commit, on a named data folder."""

    __tablename__ = "reproductions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: "r" + uuid.uuid4().hex[:20])
    # sha256 over (commit, record, data, options): the same request is the same reproduction
    idem_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    repo: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(Text)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    commit: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(Text)  # records/<track>/<folder> in that commit
    data: Mapped[str] = mapped_column(String(200))  # a folder name under the data root
    options_json: Mapped[str] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))  # this node's id, or rq:<job id>
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str | None] = mapped_column(String(16))  # REPRODUCED | NOT_REPRODUCED | INCOMPLETE
    report_json: Mapped[str | None] = mapped_column(Text)  # exactly what `pgolf reproduce -f json` prints


class Upload(Base):
    """An uploaded archive, kept in the database so any node (or a GPU worker's job) can read it."""

    __tablename__ = "uploads"

    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(make_url(url).database)
        # Request threads, the job loop and the reaper share the file; WAL lets reads run during writes.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _private_sqlite_file(path: str | None) -> None:
    """The database holds uploaded submissions: owner-only, before SQLite first opens it (its
    -wal and -shm files take the database file's mode)."""
    if not path or path == ":memory:":
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, 0o600)


def init_db(engine: Engine) -> sessionmaker:
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
