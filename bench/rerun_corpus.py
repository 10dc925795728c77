"""Rerun real record folders on the CPU (issue 11's coverage table).

    python bench/rerun_corpus.py RECORDS_DIR [--probes trace,gibbs] [--jobs 2] [--timeout 300]
                                 [--out bench/results/rerun_corpus.json] [--only SUBSTRING]
    python bench/rerun_corpus.py --mirror GITDIR [--per-family N] ...   # the known illegal PRs

RECORDS_DIR is a checkout's ``records/`` (or any folder holding record folders; e.g. the public main
tree: ``git --git-dir=<mirror> archive main records | tar -x -C /tmp/pg-main``). Nothing from it
is committed: the bench writes only the table. Each record is one job of a process pool; a row
says whether the rerun ran to completion or stopped (and the DYN reason), the wall-clock split
(the rerun's runs, each with its own setup + train + eval inside the sandbox), the Gibbs margins,
the learned-uniform check, the trace's attribution of the reported score, what the CPU adapter
substituted, and the static verdict beside it (DYN902 agreement).

With ``--mirror`` (a bare mirror of openai/parameter-golf holding refs/pull/N/head) the records
are the folders the known illegal PRs of docs/rules.md §2 add (bench/static_corpus_eval.py's
manifest), extracted into a temporary directory; a row then says whether the rerun caught the
PR's family (any DYN error with proof).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _one(folder: str, probes: tuple[str, ...], timeout: int, large: int | None) -> dict:
    from auditor import intake, verdict
    from auditor.pipeline import AuditOptions, audit_record
    from auditor.rerun import RerunOptions, rerun_record
    from auditor.rerun.harness import compare_with_static

    started = time.monotonic()
    extra = {} if large is None else {"val_tokens_large": large}
    opts = RerunOptions(probes=probes, timeout_s=timeout, run_timeout_s=min(600, timeout), tiny_model=True, **extra)
    result = rerun_record(Path(folder), opts)
    s = result.summary
    rec = intake.discover_records(Path(folder))
    static = audit_record(rec[0], AuditOptions()).findings if rec else []
    agreement = compare_with_static(static, result)
    row = {
        "record": Path(folder).name,
        "status": result.status,
        "wall_s": round(time.monotonic() - started, 1),
        "rerun_s": s.get("duration_s"),
        "runs": [{"name": r["name"], "ok": r["ok"], "wall_s": r["wall_seconds"], "error": r["error"]}
                 for r in s.get("runs", [])],
        "stopped": [{"rule": f.rule_id, "message": f.message[:300]} for f in result.findings
                    if f.rule_id == "DYN900" and f.severity.value != "info"],
        "violations": [{"rule": f.rule_id, "severity": f.severity.value, "message": f.message[:300]}
                       for f in result.findings if f.rule_id not in ("DYN900", "DYN902")],
        "gibbs": [{k: g[k] for k in ("run", "label", "reported", "margin_nats", "tolerance", "violated")}
                  for g in s.get("gibbs", [])],
        "learned_uniform": s.get("learned_uniform"),
        "trace": _trace_row(s.get("trace")),
        "adapter": sorted({a["adaptation"] for r in s.get("runs", []) for a in r.get("adapter", [])}),
        "static_verdict": verdict.decide(static).value,
        "agreement": [f.message[:200] for f in agreement],
        "verdict_hint": s.get("verdict_hint"),
    }
    return row


DYN_CATCH = {"DYN001", "DYN101", "DYN201", "DYN301", "DYN401"}


def _pr_folders(mirror: Path, dest: Path, per_family: int) -> dict[str, tuple[int, str]]:
    """{extracted folder: (PR, family)} for the manifest's PRs, ``per_family`` PRs per family."""
    sys.path.insert(0, str(ROOT / "bench"))
    import static_corpus_eval as sce

    out: dict[str, tuple[int, str]] = {}
    taken: dict[str, int] = {}
    for pr, family in sorted(sce.MANIFEST.items()):
        if per_family and taken.get(family, 0) >= per_family:
            continue
        found = sce._added_folders(mirror, pr)
        if not found:
            continue
        ref, folders = found
        got = False
        for folder in folders:
            target = dest / f"pr{pr}_{folder.rsplit('/', 1)[-1]}"
            sce._extract_text_files(mirror, ref, folder, target)
            if any(target.glob("*.py")):
                out[str(target)] = (pr, family)
                got = True
        taken[family] = taken.get(family, 0) + int(got)
    return out


def _trace_row(trace: dict | None) -> dict | None:
    """The reported line's trace: how its number was attributed, positions scored, violations."""
    if not trace:
        return None
    rep = next((la for la in trace.get("lines", []) if la.get("reported")), None)
    if rep is None:
        return {"reported": None, "scores_seen": bool((trace.get("stats") or {}).get("scores"))}
    return {"label": rep.get("label"), "attribution": rep.get("attribution"), "n_scored": rep.get("n_scored"),
            "violations": [v.get("kind") for v in rep.get("violations", [])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", type=Path, nargs="?")
    ap.add_argument("--mirror", type=Path, help="bare openai/parameter-golf mirror: rerun the known illegal PRs")
    ap.add_argument("--per-family", type=int, default=0, help="with --mirror: at most N PRs per family (0 = all)")
    ap.add_argument("--probes", default="trace,gibbs")
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--timeout", type=int, default=300, help="budget of one record's rerun, seconds")
    ap.add_argument("--val-tokens-large", type=int, default=None,
                    help="tokens of the large Gibbs run (0 skips it: one traced run per record)")
    ap.add_argument("--only", default="", help="only folders whose name contains one of these (comma-separated)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rerun_corpus.json")
    args = ap.parse_args()

    import tempfile

    from auditor import intake

    prs: dict[str, tuple[int, str]] = {}
    tmp = tempfile.TemporaryDirectory(prefix="pgolf-rerun-prs-")
    if args.mirror:
        prs = _pr_folders(args.mirror, Path(tmp.name), args.per_family)
        folders = sorted(f for f in prs if _wanted(Path(f).name, args.only))
    else:
        folders = sorted(str(r.root) for r in intake.discover_records(args.records) if _wanted(r.root.name, args.only))
    if args.limit:
        folders = folders[: args.limit]
    probes = tuple(p.strip() for p in args.probes.split(",") if p.strip())
    started = time.monotonic()
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(_one, f, probes, args.timeout, args.val_tokens_large): f for f in folders}
        for i, fut in enumerate(as_completed(futs), 1):
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a crash of pgolf itself: the row says so, the bench goes on
                row = {"record": Path(futs[fut]).name, "status": "crashed", "error": repr(exc)[:500]}
            if futs[fut] in prs:
                row["pr"], row["family"] = prs[futs[fut]]
                row["caught"] = any(v["rule"] in DYN_CATCH and v["severity"] == "error" for v in row.get("violations", []))
            rows.append(row)
            why = row["stopped"][0]["message"][:110] if row.get("stopped") else ""
            print(f"[{i}/{len(folders)}] {row['status']:8} {row.get('wall_s', 0):6.1f}s {row['record'][:60]}  {why}",
                  flush=True)
    rows.sort(key=lambda r: r["record"])
    ok = sum(r["status"] == "ok" for r in rows)
    summary = {
        "command": " ".join(["python", "bench/rerun_corpus.py", *sys.argv[1:]]),
        "records": len(rows), "completed": ok, "completed_share": round(ok / max(len(rows), 1), 3),
        "wall_s": round(time.monotonic() - started, 1), "jobs": args.jobs, "probes": list(probes),
        "violations_on": sorted(r["record"] for r in rows if r.get("violations")),
        "median_record_s": sorted(r.get("wall_s", 0) for r in rows)[len(rows) // 2] if rows else None,
        "stopped_by": _reasons(rows),
    }
    if prs:
        fams: dict[str, dict] = {}
        for r in rows:
            f = fams.setdefault(r["family"], {"prs": 0, "ran": 0, "caught": 0})
            f["prs"] += 1
            f["ran"] += r["status"] == "ok"
            f["caught"] += bool(r.get("caught"))
        summary["families"] = fams
    tmp.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


def _wanted(name: str, only: str) -> bool:
    """--only: comma-separated substrings of folder names (empty: every folder)."""
    return not only or any(part and part in name for part in only.split(","))


def _reasons(rows: list[dict]) -> dict[str, int]:
    """Why the stopped reruns stopped, by the last error's kind (the exception name or the cause)."""
    import re

    out: dict[str, int] = {}
    for r in rows:
        for st in r.get("stopped") or []:
            m = re.search(r"([A-Za-z_.]*(?:Error|Exception))\b", st["message"])
            key = m.group(1) if m else st["message"][:60]
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    main()
