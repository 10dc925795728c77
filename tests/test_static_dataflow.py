"""The dataflow layer behind the static detectors: evidence paths, aliases and helpers, wrapped
code, robustness on odd input, and the corpus bench's skip behaviour."""

from __future__ import annotations

import base64
import lzma
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditor.models import Severity
from auditor.static import StaticConfig, analyze, run_static
from auditor.static.detectors import ordering
from auditor.unwrap import unwrap_file

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Src:
    path: str
    text: str
    tree: object = None
    wrapper: str | None = None
    is_entry: bool = True


NGRAM = textwrap.dedent("""
    import glob
    import numpy as np
    import torch
    import torch.nn.functional as F

    def shards(p):
        return torch.cat([torch.from_numpy(np.fromfile(f, dtype=np.uint16).astype(np.int64))
                          for f in sorted(glob.glob(p))])

    def key_of(ctx, tok):
        return (ctx * 31 + tok) % 4096

    class Cache:
        def __init__(self):
            self.ctx = torch.zeros(4096)
            self.full = torch.zeros(4096)

        def lookup(self, x, y):
            hit = self.full[key_of(x, y)]
            return hit / self.ctx[x % 4096].clamp(min=1)

    @torch.no_grad()
    def evaluate(W, val, cache):
        loss_sum = 0.0
        for s in range(0, val.numel() - 65, 64):
            c = val[s:s + 65]
            x, y = c[:-1], c[1:]
            p = torch.exp(-F.cross_entropy(W[x], y, reduction="none"))
            alias = cache
            q = alias.lookup(x, y)
            loss_sum += (-torch.log(0.9 * p + 0.1 * q)).sum().item()
            cache.full.index_add_(0, key_of(x, y), torch.ones(64))
            cache.ctx.index_add_(0, x % 4096, torch.ones(64))
        return loss_sum

    if __name__ == "__main__":
        print(evaluate(torch.randn(1024, 1024), shards("./data/fineweb_val_*.bin"), Cache()))
""")


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_evidence_path_names_source_key_read_and_sink():
    findings = run_static([Src("train_gpt.py", NGRAM)], StaticConfig())
    f = next(f for f in findings if f.rule_id == "C101")
    assert f.severity == Severity.ERROR
    assert f.location.line == _line(NGRAM, "hit = self.full[key_of(x, y)]")
    lines = [loc.line for loc in f.path]
    assert lines[0] == _line(NGRAM, "x, y = c[:-1], c[1:]")  # the targets: next-token slice
    assert _line(NGRAM, "return (ctx * 31 + tok) % 4096") in lines  # the key, inside the helper
    assert _line(NGRAM, "hit = self.full[key_of(x, y)]") in lines  # the read, inside the method
    assert f.path[-1].line == _line(NGRAM, "loss_sum += (-torch.log(")  # the committed score
    assert f.path[0].role == "source" and f.path[-1].role == "sink"
    assert all(loc.snippet for loc in f.path)
    blend = next(f for f in findings if f.rule_id == "C201")
    assert blend.location.line in (_line(NGRAM, "return hit / self.ctx"), _line(NGRAM, "0.9 * p + 0.1 * q"))


def test_cache_updated_after_scoring_is_not_a_c3_problem():
    findings = run_static([Src("train_gpt.py", NGRAM)], StaticConfig())
    assert not [f for f in findings if f.rule_id in ("C301", "C401")]


def test_wrapped_code_reports_payload_lines_and_wrapper(tmp_path):
    payload = base64.b85encode(lzma.compress(NGRAM.encode())).decode()
    wrapper = tmp_path / "train_gpt.py"
    wrapper.write_text(f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{payload}")))\n')
    sources = [s for s in unwrap_file(wrapper, tmp_path).sources if s.tree is not None]
    findings = run_static(sources, StaticConfig())
    f = next(f for f in findings if f.rule_id == "C101")
    assert f.location.wrapper  # the chain that produced the payload
    assert f.location.line == _line(NGRAM, "hit = self.full[key_of(x, y)]")


def test_causal_context_only_slot_is_a_warning():
    text = textwrap.dedent("""
        import glob, numpy as np, torch, torch.nn.functional as F
        def ev(logits_fn, val, L=64, stride=16):
            bias = torch.zeros(1024)
            tot = 0.0
            for ws in range(0, val.numel() - L - 1, stride):
                c = val[ws:ws + L + 1].long(); x, y = c[:-1], c[1:]
                with torch.no_grad():
                    logits = logits_fn(x)
                s = L - stride
                b = bias.clone().detach().requires_grad_(True)
                opt = torch.optim.SGD([b], lr=0.1)
                for _ in range(3):
                    opt.zero_grad(); loss = F.cross_entropy(logits[:s] + b, y[:s]); loss.backward(); opt.step()
                bias = b.detach()
                tot += F.cross_entropy(logits[s:] + bias, y[s:], reduction="sum").item()
            return tot
        W = torch.randn(1024, 1024)
        print(ev(lambda x: W[x], torch.cat([torch.from_numpy(np.fromfile(f, dtype=np.uint16))
                                            for f in sorted(glob.glob("v/fineweb_val_*.bin"))])))
    """)
    findings = [f for f in run_static([Src("t.py", text)], StaticConfig()) if f.rule_id == "C302"]
    assert findings and all(f.severity == Severity.WARNING for f in findings)
    assert "context" in findings[0].message


def test_analysis_exposes_events_for_tools():
    an = analyze([Src("train_gpt.py", NGRAM)])
    kinds = {ev.kind for ev in an.events}
    assert {"score", "update", "tread"} <= kinds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x = 1\n",
        "def f(x):\n    return f(x)\nf(1)\n",  # recursion
        "import torch\nclass A(A): pass\n",  # a class deriving from itself (NameError at runtime)
        "y = " + " + ".join(["x"] * 3000) + "\n",  # a very long expression
        "def g():\n" + "".join(f"    a{i} = a{i - 1} if {i} else 0\n" for i in range(1, 400)) + "g()\n",
        "while True:\n    break\nfor _ in []:\n    continue\nmatch 1:\n    case 1: pass\n",
    ],
)
def test_odd_code_never_crashes(text):
    findings = run_static([Src("train_gpt.py", text)], StaticConfig())
    assert all(f.rule_id != "HYG010" or f.severity == Severity.INFO for f in findings)


def test_unparseable_source_is_skipped():
    assert run_static([Src("train_gpt.py", "def broken(:\n")], StaticConfig()) == []


def test_internal_detector_failure_becomes_hyg010(monkeypatch):
    def boom(_an):
        raise RuntimeError("simulated")

    monkeypatch.setattr(ordering, "detect", boom)
    findings = run_static([Src("train_gpt.py", NGRAM)], StaticConfig())
    assert any(f.rule_id == "HYG010" and "simulated" in f.message for f in findings)
    assert any(f.rule_id == "C101" for f in findings)  # the other detectors still ran


def test_corpus_bench_skips_without_corpora(tmp_path):
    script = ROOT / "bench" / "static_corpus_eval.py"
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--records",
            str(tmp_path / "none"),
            "--mirror",
            str(tmp_path / "nomirror"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0
    assert "skipped" in out.stdout


BUILDER = textwrap.dedent("""
    import argparse, glob, lzma
    from pathlib import Path
    import numpy as np

    def read_split(d):
        parts = []
        for f in sorted(glob.glob(str(Path(d) / "fineweb_val_*.bin"))):
            with open(f, "rb") as fh:
                parts.append(np.frombuffer(fh.read(), dtype="<u2")[512:])
        return np.concatenate(parts)

    def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--dir")
        ap.add_argument("--out")
        a = ap.parse_args()
        blob = lzma.compress(read_split(a.dir)[:4_000_000].tobytes())
        Path(a.out).write_bytes(blob)

    if __name__ == "__main__":
        main()
""")


def test_shipped_tool_script_packing_val_tokens_is_c303():
    entry = Src("train_gpt.py", "import torch\nprint('hello')\n")
    tool = Src("make_blob.py", BUILDER, is_entry=False)
    for s in (entry, tool):
        s.tree = __import__("ast").parse(s.text)
    findings = run_static([entry, tool], StaticConfig())
    hits = [f for f in findings if f.rule_id == "C303"]
    assert hits and hits[0].severity == Severity.ERROR, findings
    assert hits[0].location.file == "make_blob.py"
    assert hits[0].location.line == _line(BUILDER, "lzma.compress")
    # the same tool without a file write is only a warning
    tool.text = BUILDER.replace("Path(a.out).write_bytes(blob)", "print(len(blob))")
    tool.tree = __import__("ast").parse(tool.text)
    hits = [f for f in run_static([entry, tool], StaticConfig()) if f.rule_id == "C303"]
    assert hits and hits[0].severity == Severity.WARNING
