"""README parsing (auditor.parse.readme): launch commands with their env, claims, p-values, seeds."""

from __future__ import annotations

from pathlib import Path

from auditor.models import Severity
from auditor.parse.readme import parse_readme

README = """# Record: Tiny Stack + Score-First TTT

**val_bpb = 1.0811** (3-seed mean, std 0.0004) | 15.99 MB | 8xH100 SXM

| Seed | Steps | val_bpb | Artifact |
|------|-------|---------|----------|
| 42   | 4986  | 1.08079 | 15,991,930 |
| 314  | 4990  | 1.08103 | 15,992,919 |
| **999** | 4984 | 1.08118 | 15,993,232 |

Improvement over SOTA: -0.0050 bpb. One-sided Welch t-test: t = -11.83, p = 0.0031 (p < 0.01).
A z-test on the per-seed means gives z = 2.91. Temperature T=0.90 is a setting, not a statistic.

## Reproducing

```bash
export DATA_DIR=./data
export VOCAB_SIZE=8192
pip install brotli
SEED=42 QK_GAIN_INIT=5.25 TTT_ENABLED=1 \\
  MAX_WALLCLOCK_SECONDS=600 \\
  torchrun --standalone --nproc_per_node=8 train_gpt.py --note "a b"
```

```bash
for SEED in 314 999; do SEED=$SEED TTT_ENABLED=1 torchrun --standalone --nproc_per_node 8 train_gpt.py; done
python3 data/cached_challenge_fineweb.py --variant sp8192
```

Run eval-only with `TTT_EVAL_ONLY=1 SEED=42 torchrun --nproc_per_node=8 train_gpt.py`.

    env SEED=7 python train_gpt.py

Seeds used: 42, 314 and 999.
"""


def _readme(tmp_path: Path, text: str | bytes, name: str = "README.md"):
    folder = tmp_path / "rec"
    folder.mkdir(exist_ok=True)
    p = folder / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return parse_readme(p)


def test_commands_with_inline_env_and_exports(tmp_path):
    info = _readme(tmp_path, README)
    assert info.title == "Record: Tiny Stack + Score-First TTT" and info.problems == []
    first = info.commands[0]
    assert first.launcher == "torchrun" and first.script == "train_gpt.py" and first.nproc_per_node == 8
    assert first.line == 20 and first.in_code_block
    assert first.env == {
        "DATA_DIR": "./data",
        "VOCAB_SIZE": "8192",
        "SEED": "42",
        "QK_GAIN_INIT": "5.25",
        "TTT_ENABLED": "1",
        "MAX_WALLCLOCK_SECONDS": "600",
    }
    assert first.exports == {"DATA_DIR": "./data", "VOCAB_SIZE": "8192"}
    assert first.args == ["--note", "a b"] and first.seed == 42
    loop = info.commands[1]
    assert (
        loop.env == {"SEED": "$SEED", "TTT_ENABLED": "1"} and loop.nproc_per_node == 8 and loop.seed is None
    )
    assert loop.exports == {}  # exports do not leak into the next code block
    assert (
        info.commands[2].launcher == "python"
        and info.commands[2].script == "data/cached_challenge_fineweb.py"
    )
    inline = info.commands[3]
    assert not inline.in_code_block and inline.env == {"TTT_EVAL_ONLY": "1", "SEED": "42"}
    indented = info.commands[4]
    assert indented.launcher == "python" and indented.env == {"SEED": "7"}
    assert [c.script for c in info.training_commands] == ["train_gpt.py"] * 4
    assert info.env_for_seed(42)["QK_GAIN_INIT"] == "5.25"
    assert info.env_for_seed(7) == {"SEED": "7"}
    assert info.env_for_seed(None)["SEED"] == "42"  # the first training command


def test_claims_p_values_tests_and_seeds(tmp_path):
    info = _readme(tmp_path, README)
    assert [m.value for m in info.claimed_bpb][:1] == [1.0811]
    assert 1.0811 in {m.value for m in info.claimed_bpb if m.line == 3}
    assert [(m.relation, m.value, m.line) for m in info.p_values] == [("=", 0.0031, 11), ("<", 0.01, 11)]
    kinds = {(m.kind, m.line) for m in info.stat_tests}
    assert ("welch", 11) in kinds and ("t-test", 11) in kinds and ("z-test", 12) in kinds
    assert info.z_test
    assert not any(m.line == 12 and m.kind == "t-test" for m in info.stat_tests)  # "T=0.90"
    assert info.seeds == [42, 314, 999, 7]


def test_p_value_after_hypothesis_and_no_false_tests(tmp_path):
    info = _readme(tmp_path, "p-value < 1.195: 0.00234486\nZ = 1 + p_hint\n")
    assert [(m.relation, m.value) for m in info.p_values] == [("=", 0.00234486)]
    assert info.stat_tests == [] and not info.z_test


def test_unreadable_readme_is_hyg004(tmp_path):
    info = _readme(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00")
    assert info.problems == ["binary file"] and info.commands == []
    [f] = info.findings
    assert f.rule_id == "HYG004" and f.severity == Severity.WARNING and f.location.file == "README.md"
    info = _readme(tmp_path, "SEED=1 torchrun train_gpt.py caf\u00e9\n".encode("latin-1"), name="R2.md")
    assert info.problems == ["not UTF-8 (decoded with replacement)"] and len(info.findings) == 1


def test_unbalanced_quotes_do_not_break_parsing(tmp_path):
    info = _readme(tmp_path, "```\nSEED=3 torchrun --nproc_per_node=8 train_gpt.py --x 'oops\n```\n")
    [cmd] = info.commands
    assert cmd.env == {"SEED": "3"} and cmd.script == "train_gpt.py"
