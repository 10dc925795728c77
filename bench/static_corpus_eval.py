"""Measure the static C1-C4 detectors on real submissions (local use; contains no public code).

Two corpora, both optional (the script says so and exits 0 when one is absent):

* ``--records DIR``: a ``records/`` tree with the submissions' code (e.g. a checkout of
  openai/parameter-golf ``main``). Every legal record folder should produce **zero** error
  findings; the script lists every finding per folder and times the analysis.
* ``--mirror GITDIR``: a bare mirror of openai/parameter-golf with ``refs/pull/N/head``. For the
  known illegal PRs cited in docs/rules.md §2 (the manifest below: PR number -> family), the record
  folders each PR adds are extracted into a temporary directory (never into this repository),
  audited, and counted per family: caught = at least one error finding of the family's rules.

Usage:
    python bench/static_corpus_eval.py --records ../pg-main/records --mirror /path/to/repo.git
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor import intake
from auditor.models import Severity
from auditor.parse.logs import parse_log
from auditor.parse.readme import parse_readme
from auditor.static import StaticConfig, run_static
from auditor.unwrap import unwrap_folder

# Known illegal PRs (docs/rules.md §2) -> family. A family is caught by any error of its rules.
FAMILY_RULES = {
    "ngram-target-in-hash": {"C101", "C201", "C102"},
    "two-pass-rescore": {"C401", "C402", "C101", "C201"},
    "best-of-k": {"C402", "C401", "C102"},
    "slot": {"C302", "C301"},
    "prequant-ttt": {"C301", "C303", "C401"},
    "last-epoch-ttt": {"C401", "C301"},
    "bos-smear": {"C103"},
    "target-gated-hint": {"C102"},
    # (a paid-prefix entry without its blob builder is caught by the score gated on stored == target)
    "val-data-in-training": {"C303", "C102"},
}
MANIFEST = {
    # 2.1 hashed n-gram caches with the target in the key
    779: "ngram-target-in-hash",
    659: "ngram-target-in-hash",
    770: "ngram-target-in-hash",
    797: "ngram-target-in-hash",
    758: "ngram-target-in-hash",
    763: "ngram-target-in-hash",
    788: "ngram-target-in-hash",
    795: "ngram-target-in-hash",
    909: "ngram-target-in-hash",
    968: "ngram-target-in-hash",
    776: "ngram-target-in-hash",
    753: "ngram-target-in-hash",
    982: "ngram-target-in-hash",
    761: "ngram-target-in-hash",
    931: "ngram-target-in-hash",
    962: "ngram-target-in-hash",
    1030: "ngram-target-in-hash",
    # 2.2 two-pass / full rescore
    846: "two-pass-rescore",
    853: "two-pass-rescore",
    868: "two-pass-rescore",
    869: "two-pass-rescore",
    870: "two-pass-rescore",
    881: "two-pass-rescore",
    888: "two-pass-rescore",
    907: "two-pass-rescore",
    933: "two-pass-rescore",
    959: "two-pass-rescore",
    986: "two-pass-rescore",
    573: "best-of-k",
    # 2.3 SLOT
    1172: "slot",
    1176: "slot",
    1209: "slot",
    1229: "slot",
    1236: "slot",
    1249: "slot",
    1263: "slot",
    1278: "slot",
    1291: "slot",
    1321: "slot",
    1324: "slot",
    1329: "slot",
    1430: "slot",
    675: "slot",
    1488: "slot",
    # 2.4 pre-quant TTT and other train-on-val-before-scoring
    1376: "prequant-ttt",
    1364: "prequant-ttt",
    1416: "prequant-ttt",
    1423: "prequant-ttt",
    1482: "prequant-ttt",
    1485: "prequant-ttt",
    1487: "prequant-ttt",
    1517: "prequant-ttt",
    1539: "prequant-ttt",
    1550: "prequant-ttt",
    1735: "prequant-ttt",
    1738: "prequant-ttt",
    1758: "prequant-ttt",
    1911: "prequant-ttt",
    1958: "prequant-ttt",
    1972: "prequant-ttt",
    1992: "prequant-ttt",
    1399: "prequant-ttt",
    525: "last-epoch-ttt",
    713: "last-epoch-ttt",
    568: "last-epoch-ttt",
    # 2.6 SmearGate across BOS (#1797 before its fix; later #1787/#1797-derived rows without the mask)
    # (#1798 and #1837 also ship the unmasked smear but their logs show smear_gate_enabled: False)
    1797: "bos-smear",
    1854: "bos-smear",
    1874: "bos-smear",
    1881: "bos-smear",
    1883: "bos-smear",
    1920: "bos-smear",
    1934: "bos-smear",
    1977: "bos-smear",
    # 2.1 trap: hints gated on the realized token
    1967: "target-gated-hint",
    2018: "target-gated-hint",
    # 2.7 val data on the training path: val-calibrated GPTQ (#728 before its re-filing), paid prefix
    728: "val-data-in-training",
    262: "val-data-in-training",
    275: "val-data-in-training",
}


# PRs whose head was fixed after the ruling: audit the commit that was reviewed.
PINNED = {1797: "8e4bea2e0", 728: "713bb3fcd"}


def audit_folder(root: Path) -> tuple[list, float, int]:
    """Findings of the static detectors for one record folder, the seconds it took, code bytes."""
    record = intake.scan_record(root, root.parent, root.name) if hasattr(intake, "scan_record") else None
    scripts = [p for p in root.rglob("*.py") if p.is_file()]
    entry = None
    if record is not None and record.entry_script is not None:
        entry = record.entry_script.rel
    elif (root / "train_gpt.py").exists():
        entry = "train_gpt.py"
    unwrapped = unwrap_folder(root, scripts, entry=entry)
    env: dict[str, str] = {}
    readme = root / "README.md"
    if readme.exists():
        env = parse_readme(readme, "README.md").env_for_seed(None)
    hps, texts = [], []
    for log in sorted(
        p for p in root.rglob("*") if p.suffix in (".log", ".txt") and "requirements" not in p.name
    ):
        parsed = parse_log(log, str(log.relative_to(root)))
        if parsed.hyperparameters and parsed.hyperparameters not in hps:
            hps.append(parsed.hyperparameters)
        texts.append(log.read_text(encoding="utf-8", errors="replace")[:4_000_000])
    date = root.name[:10] if len(root.name) >= 10 and root.name[4] == "-" else None
    config = StaticConfig(readme_env=env, hyperparameters=hps, submission_date=date, log_texts=texts)
    sources = [s for s in unwrapped.sources if s.tree is not None]
    t0 = time.process_time()  # CPU time: stable on a shared machine
    findings = run_static(sources, config)
    dt = time.process_time() - t0
    return findings, dt, sum(len(s.text) for s in sources)


def _fmt(f) -> str:
    loc = f"{f.location.file}:{f.location.line}" if f.location else "-"
    return f"    {f.severity.value:7s} {f.rule_id:6s} {f.confidence.value:9s} {loc}  {f.message[:150]}"


def eval_records(records: Path, verbose: bool) -> int:
    folders = sorted(
        p for track in records.iterdir() if track.is_dir() for p in track.iterdir() if p.is_dir()
    )
    total_t, errors, by_rule = 0.0, 0, defaultdict(int)
    slowest = []
    for folder in folders:
        findings, dt, size = audit_folder(folder)
        total_t += dt
        slowest.append((dt, size, folder.name))
        errs = [f for f in findings if f.severity == Severity.ERROR]
        errors += len(errs)
        for f in findings:
            by_rule[(f.rule_id, f.severity.value)] += 1
        if findings and (verbose or errs):
            print(f"{folder.parent.name}/{folder.name}  ({dt * 1000:.0f} ms)")
            for f in findings:
                if verbose or f.severity == Severity.ERROR:
                    print(_fmt(f))
    print(
        f"\nrecords: {len(folders)} folders, {errors} error findings, static analysis CPU time {total_t:.2f} s total"
    )
    print("findings by rule/severity:", dict(sorted(by_rule.items())))
    slowest.sort(reverse=True)
    print("slowest:", ", ".join(f"{n[:40]} {t * 1000:.0f} ms ({s // 1000} KB)" for t, s, n in slowest[:5]))
    return errors


def _added_folders(mirror: Path, pr: int) -> tuple[str, list[str]] | None:
    ref = PINNED.get(pr, f"refs/pull/{pr}/head")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(mirror), *args], capture_output=True, text=True, check=False
        ).stdout

    if not git("rev-parse", "--verify", "-q", ref).strip():
        return None
    base = git("merge-base", "HEAD", ref).strip()
    names = git("diff", "--name-only", "--diff-filter=AM", base, ref, "--", "records/").splitlines()
    folders = sorted({"/".join(p.split("/")[:3]) for p in names if p.count("/") >= 3})
    return ref, folders


TEXT_SUFFIXES = (".py", ".md", ".log", ".txt", ".json", ".sh", ".cpp", ".c", ".h", ".cu")


def _extract_text_files(mirror: Path, ref: str, folder: str, dest: Path) -> None:
    """Copy the folder's text files out of git (the mirror may lack large binary blobs)."""
    listing = subprocess.run(
        ["git", "-C", str(mirror), "ls-tree", "-r", "--name-only", ref, "--", folder],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    for path in listing:
        if not path.endswith(TEXT_SUFFIXES):
            continue
        blob = subprocess.run(
            ["git", "-C", str(mirror), "show", f"{ref}:{path}"], capture_output=True, check=False
        )
        if blob.returncode != 0:
            continue
        out = dest / path[len(folder) + 1 :]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob.stdout)


def eval_prs(mirror: Path, verbose: bool, only: set[str] | None = None) -> None:
    per_family: dict[str, list] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for pr, family in sorted(MANIFEST.items()):
            if only and family not in only and str(pr) not in only:
                continue
            found = _added_folders(mirror, pr)
            if found is None:
                per_family[family].append((pr, None, "PR head not in the mirror"))
                continue
            ref, folders = found
            hits, notes = set(), []
            for folder in folders:
                dest = Path(tmp) / str(pr) / folder.rsplit("/", 1)[-1]
                _extract_text_files(mirror, ref, folder, dest)
                if not any(dest.rglob("*.py")):
                    continue
                findings, dt, _ = audit_folder(dest)
                rules = {f.rule_id for f in findings if f.severity == Severity.ERROR}
                hits |= rules
                notes.append(
                    f"{folder.rsplit('/', 1)[-1][:60]}: errors={sorted(rules)} "
                    f"warnings={sorted({f.rule_id for f in findings if f.severity == Severity.WARNING})} "
                    f"({dt * 1000:.0f} ms)"
                )
                if verbose:
                    for f in findings:
                        notes.append(_fmt(f))
            caught = bool(hits & FAMILY_RULES[family])
            per_family[family].append((pr, caught, "; ".join(notes) or "no code in the added folders"))
    for family, rows in per_family.items():
        n_caught = sum(1 for _, c, _ in rows if c)
        n_total = sum(1 for _, c, _ in rows if c is not None)
        print(f"\n== {family}: caught {n_caught}/{n_total}")
        for pr, caught, note in rows:
            mark = "CAUGHT" if caught else ("n/a" if caught is None else "MISSED")
            print(f"  #{pr:<5} {mark:7s} {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, help="a records/ tree with code (openai/parameter-golf main)")
    ap.add_argument("--mirror", type=Path, help="a bare git mirror with refs/pull/N/head")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every finding")
    ap.add_argument("--only", action="append", help="a family or PR number to evaluate (repeatable)")
    args = ap.parse_args(argv)
    if args.records is None and args.mirror is None:
        ap.print_help()
        return 0
    if args.records is not None:
        if args.records.is_dir():
            eval_records(args.records, args.verbose)
        else:
            print(f"records tree {args.records} not found; skipped")
    if args.mirror is not None:
        if (args.mirror / "HEAD").exists() or (args.mirror / ".git").exists():
            eval_prs(args.mirror, args.verbose, set(args.only or []) or None)
        else:
            print(f"mirror {args.mirror} not found; skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
