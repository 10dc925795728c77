"""Benchmark: audit a whole records tree, beside the parse floor of the same code.

    .venv/bin/python bench/audit_tree.py [RECORDS_TREE] [--out bench/results/audit_tree.json]

RECORDS_TREE defaults to ../shared/corpus/records (logs and JSON only: the corpus carries no
scripts). For the full audit (unwrapping, the C1-C4 detectors) point it at the public repository's
records/ (``git archive`` of openai/parameter-golf main): the README's figures are from that.

Measured in one run, on the default parallel pipeline:

* **parse floor**: stdlib ``ast.parse`` over exactly the sources pgolf analyses (every shipped
  script and every decoded wrapper payload), one process;
* **cold**: the whole tree with empty caches (result cache and code-size cache), and its ratio to
  the parse floor; **warm**: the same tree again, from the result cache, and its ratio to cold;
* **per folder**: each folder audited alone (no result cache) against its own parse floor.

Absolute seconds vary between machines; the ratios are the figures.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor import intake
from auditor.cache import ResultCache
from auditor.pipeline import AuditOptions, audit_paths, audit_record
from auditor.unwrap import unwrap_folder


def analysed_sources(rec: intake.RecordFolder) -> list[str]:
    """The texts pgolf's static stage parses for this folder: scripts and decoded payloads."""
    entry = rec.entry_script
    unwrapped = unwrap_folder(rec.root, [rec.root / f.rel for f in rec.scripts],
                              entry=entry.rel if entry is not None else None)
    return [s.text for s in unwrapped.sources if s.text]


def parse_floor(texts: list[str]) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in texts:
            try:
                ast.parse(text)
            except (SyntaxError, ValueError):
                pass  # 3.12 syntax: the floor still paid for the attempt
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", nargs="?", default=str(ROOT.parent / "shared" / "corpus" / "records"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "audit_tree.json"))
    args = parser.parse_args()
    tree = Path(args.tree)
    if not tree.is_dir():
        sys.exit(f"no records tree at {tree}")
    records = intake.discover_records(tree)
    sources = {rec.rel: analysed_sources(rec) for rec in records}
    floor = parse_floor([t for texts in sources.values() for t in texts])

    options = AuditOptions()
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["PGOLF_CACHE_DIR"] = cache_dir  # cold code-size and result caches
        cache = ResultCache(Path(cache_dir))
        t0 = time.perf_counter()
        report = audit_paths([tree], options, cache=cache)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm_report = audit_paths([tree], options, cache=ResultCache(Path(cache_dir)))
        warm = time.perf_counter() - t0
        same = [a.model_dump_json() for a in report.records] == [a.model_dump_json() for a in warm_report.records]

        per_folder = []
        for rec in records:
            t0 = time.perf_counter()
            audit_record(rec, options)
            wall = time.perf_counter() - t0
            own_floor = parse_floor(sources[rec.rel])
            per_folder.append((rec.rel, wall, own_floor))

    times = [w for _, w, _ in per_folder]
    ratios = [w / f for _, w, f in per_folder if f > 0.005]  # folders with code worth timing
    verdicts: dict[str, int] = {}
    for rec in report.records:
        verdicts[rec.verdict.value] = verdicts.get(rec.verdict.value, 0) + 1
    result = {
        "tree": str(tree),
        "folders": len(report.records),
        "sources_parsed": sum(len(t) for t in sources.values()),
        "source_bytes": sum(len(x) for t in sources.values() for x in t),
        "parse_floor_s": round(floor, 3),
        "cold_s": round(cold, 3),
        "cold_over_parse_floor": round(cold / floor, 2) if floor > 0.01 else None,  # no code: no floor
        "warm_s": round(warm, 3),
        "warm_over_cold": round(warm / cold, 3),
        "warm_report_identical": same,
        "per_folder_median_ms": round(statistics.median(times) * 1000, 1),
        "per_folder_median_over_own_floor": round(statistics.median(ratios), 2) if ratios else None,
        "per_folder_max_ms": round(max(times) * 1000, 1),
        "slowest": [{"folder": rel, "ms": round(w * 1000, 1), "over_own_floor": round(w / f, 1) if f else None}
                    for rel, w, f in sorted(per_folder, key=lambda x: -x[1])[:5]],
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
