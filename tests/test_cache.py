"""The content-addressed result cache: the same reports with and without it, a miss on any change
to what the audit reads (files, options, pgolf's own code), safe under concurrent writers, bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditor import cache as cache_mod
from auditor import intake, report
from auditor.cache import ResultCache, record_key
from auditor.pipeline import AuditOptions, audit_paths

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "rules" / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus" / "records"
FORMATS = ("json", "sarif", "markdown", "text")


def _tree(tmp_path: Path) -> Path:
    """The bundled examples and a record-folder fixture of every kind, as one records tree."""
    tree = tmp_path / "records"
    for track in (ROOT / "examples" / "records").iterdir():
        shutil.copytree(track, tree / track.name, dirs_exist_ok=True)
    for rule in ("CLM001", "LIM001", "HYG003", "SIG001", "C302"):
        for case in sorted(p for p in (FIXTURES / rule).iterdir() if p.is_dir())[:2]:
            shutil.copytree(case, tree / "track_10min_16mb" / f"{rule}_{case.name}")
    return tree


def _rendered(result) -> dict[str, str]:
    result = result.model_copy(update={"generated_at": "2026-01-01T00:00:00+00:00"})  # when, not what
    return {fmt: report.render(result, fmt, **({"color": False} if fmt == "text" else {})) for fmt in FORMATS}


def test_reports_are_the_same_with_and_without_the_cache(tmp_path):
    tree = _tree(tmp_path)
    store = ResultCache(tmp_path / "cache")
    fresh = audit_paths([tree], AuditOptions(), jobs=1)
    first = audit_paths([tree], AuditOptions(), jobs=1, cache=store)  # fills it
    assert store.hits == 0 and store.misses == len(fresh.records)
    again = audit_paths([tree], AuditOptions(), jobs=1, cache=store)  # all from it
    assert store.hits == len(fresh.records)
    want = _rendered(fresh)
    assert _rendered(first) == want
    assert _rendered(again) == want  # byte for byte, every format


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")
def test_the_corpus_reports_are_the_same_from_the_cache(tmp_path):
    store = ResultCache(tmp_path / "cache")
    fresh = audit_paths([CORPUS], AuditOptions(), cache=store)
    cached = audit_paths([CORPUS], AuditOptions(), cache=store)
    assert store.hits == len(fresh.records) > 50
    assert _rendered(cached) == _rendered(fresh)


def test_any_change_to_what_the_audit_reads_is_a_miss(tmp_path, monkeypatch):
    src = FIXTURES / "CLM001" / "pass_mean"
    folder = tmp_path / "records" / "track_10min_16mb" / "rec"
    shutil.copytree(src, folder)

    def key(options: AuditOptions | None = None):
        (rec,) = intake.discover_records(folder)
        return record_key(rec, options or AuditOptions())

    base = key()
    assert base == key()  # deterministic
    log = next(folder.glob("*.log"))
    log.write_text(log.read_text() + "\n")  # one byte more in one file
    changed = key()
    assert changed != base
    (folder / "notes.txt").write_text("x")  # a new file
    assert key() != changed
    (folder / "notes.txt").unlink()
    assert key() == changed
    assert key(AuditOptions(policy="readme")) != changed  # the options
    assert key(AuditOptions(rerun=True)) is None  # a rerun executes code: never cached
    assert key(AuditOptions(baseline=str(folder))) is None  # another folder would be read too
    monkeypatch.setattr(cache_mod, "code_fingerprint", lambda: "another pgolf")  # pgolf's own code
    assert key() != changed


def test_a_damaged_entry_is_a_miss_and_is_replaced(tmp_path):
    folder = tmp_path / "rec"
    shutil.copytree(FIXTURES / "CLM001" / "pass_mean", folder)
    store = ResultCache(tmp_path / "cache")
    audit_paths([folder], AuditOptions(), cache=store)
    (entry,) = list(store.dir.glob("*/*.json"))
    entry.write_bytes(entry.read_bytes()[:100])  # torn
    again = audit_paths([folder], AuditOptions(), cache=store)
    assert store.hits == 0 and again.records[0].verdict.value == "PASS"
    assert json.loads(entry.read_bytes())["verdict"] == "PASS"  # rewritten whole


def test_the_cache_stays_under_its_size_bound_evicting_the_least_recently_used(tmp_path):
    store = ResultCache(tmp_path / "cache", max_bytes=10_000)
    from auditor.models import RecordAudit, Verdict

    for i in range(40):
        store.put(f"{i:064x}", RecordAudit(path=f"r{i}", name="x" * 1000, verdict=Verdict.PASS))
        entry = store._path(f"{i:064x}")
        os.utime(entry, (1_000_000 + i, 1_000_000 + i))  # written in this order
    store.trim()
    kept = sorted(p.stem for p in store.dir.glob("*/*.json"))
    total = sum(p.stat().st_size for p in store.dir.glob("*/*.json"))
    assert total <= 10_000 and kept
    assert kept == [f"{i:064x}" for i in range(40 - len(kept), 40)]  # the newest survive


def test_concurrent_processes_share_one_cache_safely(tmp_path):
    """Four processes audit the same tree into one cache at once: every report is the same, and
    every entry in the cache is whole."""
    tree = _tree(tmp_path)
    code = (
        "import sys, json; from pathlib import Path; from auditor.cache import ResultCache; "
        "from auditor.pipeline import AuditOptions, audit_paths; from auditor import report; "
        "r = audit_paths([Path(sys.argv[1])], AuditOptions(), jobs=1, cache=ResultCache(Path(sys.argv[2]))); "
        "d = json.loads(report.render(r, 'json')); d.pop('generated_at'); print(json.dumps(d, sort_keys=True))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tree), str(tmp_path / "cache")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    from auditor.models import RecordAudit

    entries = list((tmp_path / "cache").glob("results/*/*/*.json"))
    assert entries and not list((tmp_path / "cache").glob("results/*/*/.tmp-*"))
    for entry in entries:
        RecordAudit.model_validate_json(entry.read_bytes())


def test_cli_uses_the_cache_and_no_cache_bypasses_it(tmp_path):
    folder = tmp_path / "rec"
    shutil.copytree(FIXTURES / "CLM001" / "pass_mean", folder)
    env = {**os.environ, "PGOLF_CACHE_DIR": str(tmp_path / "cache"), "NO_COLOR": "1"}
    run = [sys.executable, "-m", "auditor", "audit", str(folder), "-f", "json"]
    bypass = subprocess.run([*run, "--no-cache"], env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    assert bypass.returncode == 0 and not list((tmp_path / "cache").glob("results/*/*/*.json"))
    first = subprocess.run(run, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    assert first.returncode == 0 and len(list((tmp_path / "cache").glob("results/*/*/*.json"))) == 1
    second = subprocess.run(run, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    strip = [json.loads(p.stdout) for p in (bypass, first, second)]
    for d in strip:
        d.pop("generated_at")
    assert strip[0] == strip[1] == strip[2]
