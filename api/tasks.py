"""The work itself, run outside the API process: static audits in the local process pool, reruns in
`pgolf worker` (an RQ worker, usually on a GPU host).

Both take and return plain dicts so they cross process (and machine) boundaries as pickles/JSON.
Nothing here touches the database: the API process owns job state and stores what comes back.
"""

from __future__ import annotations

import base64
import ctypes
import os
import resource
import signal
import tempfile
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def init_worker(memory_mb: int) -> None:
    """Process-pool initializer: die with the API process, and cap memory (bombs, runaway parsing)."""
    # One audit per process: BLAS thread pools would only multiply memory reservations.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:  # Linux: SIGKILL us when the parent dies, so a kill -9 of the server leaves no orphan audits.
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def warm() -> None:
    """Import the audit pipeline once per worker process, so the first real job does not pay for it."""
    import auditor.pipeline
    import auditor.report  # noqa: F401


class AuditTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise AuditTimeout()


def _memory_limit_reached() -> int | None:
    """The address-space limit in MB when this process's peak virtual size came within 10 % of it.

    Under RLIMIT_AS an allocation can fail anywhere, in C code as well, so the exception that
    surfaces is not always MemoryError (a half-imported module, a failed frame allocation...):
    the peak size is the evidence that the limit, not pgolf, ended the audit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmPeak:"):
            peak = int(line.split()[1]) * 1024
            return soft // (1024 * 1024) if peak >= 0.9 * soft else None
    return None


def _failure(message: str, exit_code: int = 4) -> dict[str, Any]:
    return {"ok": False, "error": message, "exit_code": exit_code}


def run_static(spec: dict[str, Any]) -> dict[str, Any]:
    """One static audit. ``spec``: kind (git|pr|upload), repo, ref, base, commit, base_commit,
    upload (bytes), options_json, timeout_s, limits (archive limits), workroot."""
    try:
        return _run_static(spec)
    except Exception as exc:  # noqa: BLE001 - whatever escaped (even the imports), as a job failure
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> dict[str, Any]:
    limit_mb = _memory_limit_reached()
    if limit_mb is not None:
        return _failure(f"the audit ran out of memory (limit {limit_mb} MB per worker process "
                        f"reached; it surfaced as {type(exc).__name__}: {exc})", 5)
    return _failure(f"internal error: {type(exc).__name__}: {exc}", 5)


def _run_static(spec: dict[str, Any]) -> dict[str, Any]:
    from api.archive import ArchiveError, Limits, extract
    from auditor.errors import PgolfError

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(spec["timeout_s"])))
    try:
        # Imported under the alarm and the memory limit: a worker too small to import fails the job.
        from auditor import report as report_mod
        from auditor.cache import ResultCache
        from auditor.pipeline import AuditOptions, audit_git, audit_paths

        # The static part never reruns: reruns go to the GPU queue (and never into this process).
        options = AuditOptions.model_validate_json(spec["options_json"]).model_copy(update={"rerun": False})
        cache = ResultCache(Path(spec["cache_dir"])) if spec.get("cache_dir") else None
        with tempfile.TemporaryDirectory(prefix="pgolf-audit-", dir=spec.get("workroot")) as tmp:
            work = Path(tmp)
            if spec["kind"] == "upload":
                root = extract(spec["upload"], work / "upload", Limits(**spec["limits"]))
                result = audit_paths([root], options, jobs=1, cache=cache)
                # where this worker unpacked it is the server's business, not the report's
                result.options.pop("root", None)
            else:
                # The ref is audited by name and must still be at the commit the key was made from.
                result = audit_git(spec["repo"], spec["ref"], spec.get("base"), options, work / "git", cache=cache)
                seen = result.pr.commit if result.pr else None
                if seen and spec.get("commit") and seen != spec["commit"]:
                    return _failure(
                        f"{spec['ref']} moved from {spec['commit'][:12]} to {seen[:12]} while queued; "
                        "submit again to audit the new head"
                    )
            return {
                "ok": True,
                "verdict": result.verdict.value,
                "report_json": report_mod.render(result, "json"),
                "records": [{"path": r.path, "name": r.name} for r in result.records],
            }
    except AuditTimeout:
        return _failure(f"the audit took longer than {int(spec['timeout_s'])} s and was stopped")
    except ArchiveError as exc:
        return _failure(f"archive rejected: {exc}")
    except PgolfError as exc:
        return _failure(str(exc), int(exc.exit_code))
    except MemoryError:
        return _failure("the audit ran out of memory (limit per worker process reached)", 5)
    except Exception as exc:  # noqa: BLE001 - a bug in pgolf: keep the job's message useful
        return _unexpected(exc)
    finally:
        signal.alarm(0)


def _record_folder(root: Path, rel: str, name: str) -> Path | None:
    """Where the audited record ``rel`` lives in a fresh checkout/extraction rooted at ``root``."""
    if rel not in ("", ".") and (root / rel).is_dir():
        return root / rel
    if rel in ("", ".") or root.name == name:
        return root
    return next((p for p in root.rglob(name) if p.is_dir()), None)


def run_rerun(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """An RQ job (``pgolf worker``): rerun each audited record folder and return the results.

    ``payload`` (JSON): kind, repo, ref, commit, upload_b64, options_json, records [{path, name}], limits.
    Runs submission code, so it belongs on a sandboxed worker host, never in the API.
    """
    from api.archive import Limits, extract
    from auditor import intake
    from auditor.options import AuditOptions

    options = AuditOptions.model_validate_json(payload["options_json"])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pgolf-rerun-") as tmp:
        work = Path(tmp)
        if payload["kind"] == "upload":
            data = base64.b64decode(payload["upload_b64"] or "")
            root = extract(data, work / "upload", Limits(**payload["limits"]))
        else:
            root = intake.checkout_git(payload["repo"], payload["ref"], None, work / "git").path
        folders = [(rec["path"], _record_folder(root, rec["path"], rec["name"])) for rec in payload["records"]]
        missing = [rel for rel, folder in folders if folder is None]
        if missing:
            raise FileNotFoundError(f"record folders not found in the fetched source: {', '.join(missing)}")
        from auditor.rerun.harness import rerun_record  # the source is in place; now the heavy part

        for rel, folder in folders:
            outcome = rerun_record(folder, options)
            dumped = outcome.model_dump(mode="json") if hasattr(outcome, "model_dump") else dict(vars(outcome))
            results.append({"record": rel, "result": dumped})
    return results


def run_reproduction(payload: dict[str, Any]) -> dict[str, Any]:
    """A reproduction job (``pgolf worker --queue pgolf-reproduce`` on a GPU host, or the service's
    own reproduction process without a queue): fetch the commit, find the record folder, run
    `pgolf reproduce` on the named data folder, and return the JSON report (what the CLI prints).

    ``payload`` (JSON): repo, commit, record, data, options_json, and data_root (the service's, for
    local runs; a queue worker uses its own PGOLF_REPRO_DATA_ROOT). Runs submission code (sandboxed).
    """
    from auditor import intake
    from auditor.options import ReproduceOptions
    from auditor.reproduce import ReproOptions, reproduce_report

    root_dir = payload.get("data_root") or os.environ.get("PGOLF_REPRO_DATA_ROOT")
    if not root_dir:
        raise RuntimeError("this worker has no data root for reproductions (set PGOLF_REPRO_DATA_ROOT)")
    data = Path(root_dir) / payload["data"]
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {payload['data']!r} not found under this worker's data root")
    options = ReproduceOptions.model_validate_json(payload["options_json"])
    with tempfile.TemporaryDirectory(prefix="pgolf-repro-src-") as tmp:
        root = intake.checkout_git(payload["repo"], payload["commit"], None, Path(tmp) / "git").path
        folder = _record_folder(root, payload["record"], Path(payload["record"]).name)
        if folder is None or not (root / payload["record"]).is_dir():
            raise FileNotFoundError(f"record folder {payload['record']} not found in {payload['commit'][:12]}")
        report = reproduce_report(folder, ReproOptions.from_options(options, data), options)
    return report.model_dump(mode="json")
