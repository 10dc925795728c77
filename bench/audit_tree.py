"""Benchmark: audit a whole records tree (the ≈60 public record folders) and time it.

    .venv/bin/python bench/audit_tree.py [RECORDS_TREE] [--out bench/results/audit_tree.json]

RECORDS_TREE defaults to ../shared/corpus/records (logs and JSON only; the corpus carries no
scripts). For the full audit including unwrapping and the C1–C4 detectors, point it at a checkout
of the public repository's records/ (e.g. `git archive` of openai/parameter-golf main).

Measured: wall time of the whole tree with the default parallel pipeline, twice — with a cold and a
warm code-size cache (re-minifying virtual wrappers is the one slow step, and it is cached by
content hash) — and per-folder wall times (sequential, warm cache) with their median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor import intake
from auditor.pipeline import AuditOptions, audit_paths, audit_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", nargs="?", default=str(ROOT.parent / "shared" / "corpus" / "records"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "audit_tree.json"))
    args = parser.parse_args()
    tree = Path(args.tree)
    if not tree.is_dir():
        sys.exit(f"no records tree at {tree}")

    options = AuditOptions()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PGOLF_CACHE_DIR"] = cache  # a cold code-size cache
        t0 = time.perf_counter()
        report = audit_paths([tree], options)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        audit_paths([tree], options)
        warm = time.perf_counter() - t0

        per_folder = []
        for rec in intake.discover_records(tree):
            t0 = time.perf_counter()
            audit_record(rec, options)
            per_folder.append((rec.rel, time.perf_counter() - t0))

    times = [t for _, t in per_folder]
    verdicts: dict[str, int] = {}
    for rec in report.records:
        verdicts[rec.verdict.value] = verdicts.get(rec.verdict.value, 0) + 1
    result = {
        "tree": str(tree),
        "folders": len(report.records),
        "scripts_present": sum(1 for r in report.records if r.sources),
        "wall_s_cold_cache": round(cold, 3),
        "wall_s_warm_cache": round(warm, 3),
        "per_folder_median_ms": round(statistics.median(times) * 1000, 1),
        "per_folder_p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 1),
        "per_folder_max_ms": round(max(times) * 1000, 1),
        "slowest": [{"folder": rel, "ms": round(t * 1000, 1)} for rel, t in sorted(per_folder, key=lambda x: -x[1])[:5]],
        "verdicts": verdicts,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
