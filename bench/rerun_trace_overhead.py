"""Tracing overhead of `pgolf rerun`: a tiny CPU evaluation traced vs the same run untraced.

Both runs go through the same sandbox and workspace (auditor.rerun.harness), on the reference
stack's bundled script (6 layers x 64 wide, the tiny-cpu preset's shape), 4 training steps and a
16 K-token validation set, with the plain and the sliding-window evaluation. Untraced = probes
("gibbs",), traced = probes ("trace",); repeats alternate the two so a load change on a shared
machine hits both. Reported, medians over the repeats:

  eval_ratio_paired_median  per repeat, traced / untraced evaluation time (summed over the printed
               `eval_time:` of every final line: the script's own timer, the part the tracer
               instruments), then the median over repeats  <- the target figure
  eval_ratio_of_medians / wall_ratio_of_medians  the same from medians of each side; wall is the
               whole sandboxed run (import, training, GPTQ, serialization and evaluation)

Target: eval_ratio_paired_median <= 1.3. Writes bench/results/rerun_trace_overhead.json.

    python bench/rerun_trace_overhead.py [--repeats 5] [--val-tokens 16384]

No GPU was available when the committed figure was taken: CPU only. CPU numbers on a shared
machine depend on its load; the load average is recorded next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.rerun.harness import RerunOptions, rerun_record
from reference_impl.bundle import build_script

MODEL_ENV = {
    "NUM_LAYERS": "6", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "4", "ROPE_DIMS": "8",
    "XSA_LAST_N": "6", "NUM_LOOPS": "0", "PARALLEL_RESIDUAL_START": "4", "WARMUP_STEPS": "0",
    "GPTQ_CALIBRATION_BATCHES": "1", "EVAL_BATCH_SEQS": "16", "TIED_EMBED_INIT_STD": "0.02",
    "QUANT_MIN_NUMEL": "4096", "TRAIN_BATCH_TOKENS": "1024", "TTT_ENABLED": "0", "SLIDING_WINDOW_ENABLED": "1",
}


def one_run(folder: Path, traced: bool, val_tokens: int) -> dict:
    opts = RerunOptions(probes=("trace",) if traced else ("gibbs",), vocab_size=512, support_size=64, seq_len=128,
                        doc_len=256, iterations=4, val_tokens_small=val_tokens, val_tokens_large=0,
                        train_tokens=65_536, env=MODEL_ENV, timeout_s=900, run_timeout_s=600)
    t0 = time.perf_counter()
    result = rerun_record(folder, opts)
    total = time.perf_counter() - t0
    run = result.summary["runs"][0]
    if not run["ok"]:
        raise SystemExit(f"run failed: {run['error']}")
    evals = {f["label"]: f["eval_time_ms"] for f in run["finals"]}
    return {"traced": traced, "sandbox_wall_s": run["wall_seconds"], "harness_s": round(total, 3),
            "eval_ms": evals, "eval_ms_total": sum(v for v in evals.values() if v), "status": result.status,
            "errors": sorted({f.rule_id for f in result.findings if f.severity.value == "error"})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--val-tokens", type=int, default=16_384)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "rerun_trace_overhead.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pgolf-bench-"))
    folder = tmp / "record"
    folder.mkdir()
    (folder / "train_gpt.py").write_text(build_script("record"), encoding="utf-8")
    load_start = os.getloadavg()
    runs = []
    try:
        for i in range(args.repeats):
            for traced in ((False, True) if i % 2 == 0 else (True, False)):
                r = one_run(folder, traced, args.val_tokens)
                runs.append(r)
                print(f"repeat {i} traced={traced}: eval {r['eval_ms_total']:.0f} ms, "
                      f"sandbox wall {r['sandbox_wall_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plain = [r for r in runs if not r["traced"]]
    traced = [r for r in runs if r["traced"]]
    eval_ratio = statistics.median(t["eval_ms_total"] for t in traced) / statistics.median(
        p["eval_ms_total"] for p in plain)
    wall_ratio = statistics.median(t["sandbox_wall_s"] for t in traced) / statistics.median(
        p["sandbox_wall_s"] for p in plain)
    # paired: each repeat's traced run against the untraced run next to it (same load)
    pairs = [runs[i:i + 2] for i in range(0, len(runs), 2)]
    paired = [next(r for r in p if r["traced"])["eval_ms_total"] / next(r for r in p if not r["traced"])["eval_ms_total"]
              for p in pairs]
    per_label = {}
    for label in plain[0]["eval_ms"]:
        per_label[label] = round(statistics.median(t["eval_ms"][label] for t in traced)
                                 / statistics.median(p["eval_ms"][label] for p in plain), 3)
    out = {
        "benchmark": "pgolf rerun: tracing overhead on a tiny CPU evaluation",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python bench/rerun_trace_overhead.py --repeats {args.repeats} --val-tokens {args.val_tokens}",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "threads_per_run": 1, "device": "cpu", "gpu": None,
                    "load_average_start": list(load_start), "load_average_end": list(os.getloadavg())},
        "note": "No GPU was available: CPU figures only. eval_ratio_paired_median is the target figure (<= 1.3).",
        "setup": {"model": MODEL_ENV, "val_tokens": args.val_tokens, "vocab": 512, "evaluations": list(per_label)},
        "result": {"eval_ratio_paired_median": round(statistics.median(paired), 3),
                   "eval_ratio_paired": [round(x, 3) for x in paired],
                   "eval_ratio_of_medians": round(eval_ratio, 3), "wall_ratio_of_medians": round(wall_ratio, 3),
                   "eval_ratio_per_label": per_label, "target": 1.3,
                   "meets_target": statistics.median(paired) <= 1.3},
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["result"], indent=2))


if __name__ == "__main__":
    main()
