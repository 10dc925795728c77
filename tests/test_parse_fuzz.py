"""Property tests: the parsers never raise on hostile input, and their outputs stay consistent."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.parse.logs import SEPARATOR, parse_log
from auditor.parse.readme import parse_readme
from auditor.parse.submission import normalize, parse_submission

KNOWN_KEYS = [
    "author", "github_id", "name", "run_name", "blurb", "date", "track", "val_bpb", "val_loss",
    "mean_val_bpb", "mean_bpb", "bytes_total", "bytes_code", "code_bytes", "artifact_bytes",
    "bytes_model_int8_zlib", "seeds", "seed", "seed_results", "seed_scores", "p_value",
    "eval_time_seconds", "wallclock_seconds", "compliance", "compliance_rerun", "base_pr",
    "val_bpb_std", "submission_type", "val_bpb_per_seed",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["<0.001", "1.0812", "15,990,000", "1e999", "nan", "-", "42"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KNOWN_KEYS + ["0", "42", "1337"]), st.text(max_size=8)),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)
submissions = st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=12)


@settings(max_examples=300, deadline=None)
@given(submissions)
def test_normalize_never_raises(data):
    sub = normalize(data, "submission.json")
    json.dumps(sub.summary())
    for seed in sub.per_seed:
        assert isinstance(seed, int)
    assert all(isinstance(s, int) for s in sub.seeds)
    if sub.val_bpb is not None:
        assert "val_bpb" in sub.provenance


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | submissions.map(lambda d: json.dumps(d).encode()))
def test_parse_submission_never_raises(blob):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "submission.json"
        p.write_bytes(blob)
        parsed = parse_submission(p, "submission.json")
        assert (parsed.submission is None) == any(f.severity.value == "error" for f in parsed.findings)


FRAGMENTS = [
    SEPARATOR,
    "Source code:",
    "Hyperparameters:",
    "  seed: 42",
    "  key: value",
    "--- Hyperparameters ---",
    "activation=relu2 seed=7",
    "seed:1337",
    "seed:" + "9" * 5000,
    "import os",
    "def f(seed=42):",
    "    return 1",
    "[embedded source removed from this corpus copy: 12 bytes, sha256 " + "0" * 64 + "]",
    "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms",
    "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570",
    "final_int6_sliding_window_exact val_loss:1.89 val_bpb:1.12",
    "quantized_ttt_phased val_loss:2.3 val_bpb:nan eval_time:1ms",
    "legal_ttt val_loss:inf val_bpb:1e-3",
    "diagnostic quantized val_loss:2.8 val_bpb:1.08",
    "ttt_sliding:done val_loss=3.07 val_bpb=1.33 elapsed=405.0s",
    "step:10/20 val_loss:2.0 val_bpb:1.2 train_time:5ms",
    "10/20 train_loss: 2.0 train_time: 0.5m tok/s: 1",
    "stopping_early: wallclock_cap train_time:600000ms step:10/20",
    "Code size: 123 bytes",
    "Code size (compressed): 99 bytes",
    "Serialized model int8+zlib: 15000000 bytes",
    "Total submission size: 67000000 bytes",
    "Total submission size int8+zlib: 15000123 bytes",
    "artifact:15.9MB ternary:1(2B) fp:3(4B) code:5",
    "budget:15000000/16000000 (15.00/16.00MB) FITS",
    "---",
    "val_bpb:          1.12",
    "1776142348.135 seed:3",
    "[rank0]: final_x val_loss:1.0 val_bpb:1.0",
    "W0318 14:37:59.159000 871689 run.py:852] noise",
    "",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=40))
def test_parse_log_never_raises_and_stays_consistent(lines):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "train_seed5.log"
        p.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        log = parse_log(p, p.name)
        if log.reported is not None:
            assert log.reported in log.finals and not log.reported.diagnostic
        for src in log.embedded_sources:
            assert src.n_bytes >= 0 and src.start_line <= src.end_line + 1
        run = log.to_seed_run()
        assert run.log_file == p.name and (run.val_bpb is None) == (log.reported is None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=600))
def test_parse_readme_never_raises(text):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "README.md"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        info = parse_readme(p)
        assert all(0.0 <= m.value <= 1.0 for m in info.p_values)
