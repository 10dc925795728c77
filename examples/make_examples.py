"""Regenerates the two bundled example records with the reference stack (about 2 minutes on CPU).

    .venv/bin/python examples/make_examples.py

* a clean one: `pgolf train --preset tiny-cpu` — the legal stack with score-first TTT;
* a broken one: the same stack built with the deliberately broken SLOT variant
  (reference_impl/broken/), which optimizes a per-window delta on the positions it then scores.

Both sit in the non-record track (a tiny CPU run is not a record), so significance does not apply
and the broken one fails on what its code does, not on its score.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reference_impl.record import build_record

HERE = Path(__file__).parent
TRACK = HERE / "records" / "track_non_record_16mb"
EXAMPLES = {
    "2026-11-01_Reference_TinyCPU_ScoreFirstTTT": ("record", "pgolf example: reference stack, score-first TTT"),
    "2026-11-02_Broken_SLOT": ("slot", "pgolf example: SLOT (per-window delta fit on the scored positions)"),
}


def main() -> None:
    for name, (variant, title) in EXAMPLES.items():
        out = TRACK / name
        if out.exists():
            shutil.rmtree(out)
        build_record("tiny-cpu", out, variant=variant, overwrite=True)
        meta_path = out / "submission.json"
        meta = json.loads(meta_path.read_text())
        meta["name"] = title
        meta["date"] = name[:10]
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
