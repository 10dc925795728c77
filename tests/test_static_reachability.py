"""Reachability of static findings: flags from class Hyperparameters / os.environ, decided by the
code defaults, the README's run command, the logs' hyperparameter dumps and the log output."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from auditor.models import Severity
from auditor.static import StaticConfig, run_static


@dataclass
class Src:
    path: str
    text: str
    tree: object = None
    wrapper: str | None = None
    is_entry: bool = True


PRE_QUANT_TTT = textwrap.dedent("""
    import glob, os
    import numpy as np
    import torch
    import torch.nn.functional as F

    class Hyperparameters:
        val_files = os.path.join(os.environ.get("DATA_PATH", "./data"), "fineweb_val_*.bin")
        ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
        ttt_epochs = int(os.environ.get("TTT_EPOCHS", 3))

    def load(pattern):
        return torch.cat([torch.from_numpy(np.fromfile(f, dtype=np.uint16).astype(np.int64))
                          for f in sorted(glob.glob(pattern))])

    def ttt_adapt(model, val, epochs):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for ep in range(epochs):
            for s in range(0, val.numel() - 129, 128):
                w = val[s:s + 129]
                loss = F.cross_entropy(model(w[:-1]), w[1:])
                opt.zero_grad()
                loss.backward()
                opt.step()
        print("ttt_adapt:done pre-quant adaptation")

    @torch.no_grad()
    def eval_val(model, val):
        total = 0.0
        for s in range(0, val.numel() - 129, 128):
            w = val[s:s + 129]
            total += F.cross_entropy(model(w[:-1]), w[1:], reduction="sum").item()
        return total

    def main():
        args = Hyperparameters()
        model = torch.nn.Sequential(torch.nn.Embedding(1024, 8), torch.nn.Linear(8, 1024))
        val = load(args.val_files)
        if args.ttt_enabled:
            ttt_adapt(model, val, args.ttt_epochs)
        print("val_loss", eval_val(model, val))

    if __name__ == "__main__":
        main()
""")


def _c301(config: StaticConfig):
    findings = run_static([Src("train_gpt.py", PRE_QUANT_TTT)], config)
    hits = [f for f in findings if f.rule_id == "C301"]
    assert len(hits) == 1, findings
    return hits[0]


def test_flag_off_by_default_is_a_warning_that_says_why():
    f = _c301(StaticConfig())
    assert f.severity == Severity.WARNING
    assert "TTT_ENABLED" in f.reachability and "default" in f.reachability
    assert "Not counted as a violation" in f.message


def test_readme_command_enables_the_flag():
    f = _c301(StaticConfig(readme_env={"TTT_ENABLED": "1"}))
    assert f.severity == Severity.ERROR
    assert "README" in f.reachability


def test_logged_hyperparameters_enable_the_flag():
    f = _c301(StaticConfig(hyperparameters=[{"ttt_enabled": "True", "ttt_epochs": "3"}]))
    assert f.severity == Severity.ERROR
    assert "logged hyperparameters" in f.reachability


def test_logged_hyperparameters_can_keep_it_off():
    f = _c301(StaticConfig(hyperparameters=[{"ttt_enabled": "False"}]))
    assert f.severity == Severity.WARNING


def test_log_output_of_the_guarded_block_confirms_it_ran():
    f = _c301(StaticConfig(log_texts=["step 100 ...\nttt_adapt:done pre-quant adaptation\nval_loss 1.9\n"]))
    assert f.severity == Severity.ERROR
    assert "confirmed by the logs" in f.reachability


def test_function_never_called_is_a_warning():
    # a leftover adaptation helper that loads the validation shards itself but is never called
    text = PRE_QUANT_TTT.replace("ttt_adapt(model, val, args.ttt_epochs)", "pass  # adaptation removed")
    text = text.replace(
        "def ttt_adapt(model, val, epochs):",
        "def ttt_adapt(model, epochs=2):\n    val = load(Hyperparameters.val_files)",
    )
    findings = run_static([Src("train_gpt.py", text)], StaticConfig(readme_env={"TTT_ENABLED": "1"}))
    hits = [f for f in findings if f.rule_id == "C301"]
    assert hits and all(f.severity == Severity.WARNING for f in hits)
    assert "never called" in hits[0].reachability


SLOT_WITH_GETATTR = textwrap.dedent("""
    import glob, os
    import numpy as np, torch, torch.nn.functional as F
    class Hyperparameters:slot_enabled=bool(int(os.environ.get('SLOT_ENABLED','0')));val_files='./d/fineweb_val_*.bin'
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.e = torch.nn.Embedding(64, 8)
            self.o = torch.nn.Linear(8, 64)
        def hidden(self, x):
            return self.e(x)
    def ev(args, model, val):
        use_slot = getattr(args, 'slot_enabled', False)
        tot = 0.0
        for ws in range(0, val.numel() - 33, 32):
            c = val[ws:ws + 33].long(); x, y = c[:-1], c[1:]
            with torch.no_grad(): h = model.hidden(x)
            if use_slot:
                d = torch.zeros(8, requires_grad=True); o = torch.optim.AdamW([d], lr=1e-2)
                for _ in range(4): o.zero_grad(); l = F.cross_entropy(model.o(h + d), y); l.backward(); o.step()
                h = h + d.detach()
            with torch.no_grad(): tot += F.cross_entropy(model.o(h), y, reduction='sum').item()
        return tot
    if __name__ == "__main__":
        a = Hyperparameters()
        print(ev(a, Net(), torch.cat([torch.from_numpy(np.fromfile(f, dtype=np.uint16)) for f in sorted(glob.glob(a.val_files))])))
""")


def test_guard_through_getattr_and_local_alias():
    off = [f for f in run_static([Src("t.py", SLOT_WITH_GETATTR)], StaticConfig()) if f.rule_id == "C302"]
    on = [
        f
        for f in run_static([Src("t.py", SLOT_WITH_GETATTR)], StaticConfig(readme_env={"SLOT_ENABLED": "1"}))
        if f.rule_id == "C302"
    ]
    assert off and off[0].severity == Severity.WARNING and "SLOT_ENABLED" in off[0].reachability
    assert on and on[0].severity == Severity.ERROR


SMEAR_SELF_FLAG = textwrap.dedent("""
    import os, torch
    from torch import nn
    class Hyperparameters:
        smear_gate_enabled = bool(int(os.environ.get("SMEAR_GATE_ENABLED", "0")))
    class GPT(nn.Module):
        def __init__(self, h):
            super().__init__()
            self.smear_gate_enabled = h.smear_gate_enabled
            self.emb = nn.Embedding(64, 8)
            self.lam = nn.Parameter(torch.zeros(1))
        def forward(self, ids):
            x = self.emb(ids)
            if self.smear_gate_enabled:
                x = torch.cat([x[:, :1], x[:, 1:] + self.lam * x[:, :-1]], dim=1)
            return x
    if __name__ == "__main__":
        print(GPT(Hyperparameters())(torch.zeros(1, 4, dtype=torch.long)))
""")


def test_self_attribute_flag_set_in_init_from_hyperparameters():
    base = {"submission_date": "2026-04-28"}
    off = [f for f in run_static([Src("t.py", SMEAR_SELF_FLAG)], StaticConfig(**base)) if f.rule_id == "C103"]
    on = [
        f
        for f in run_static(
            [Src("t.py", SMEAR_SELF_FLAG)],
            StaticConfig(hyperparameters=[{"smear_gate_enabled": "True"}], **base),
        )
        if f.rule_id == "C103"
    ]
    assert off and off[0].severity == Severity.WARNING
    assert on and on[0].severity == Severity.ERROR


def test_bos_smear_severity_follows_the_ruling_date():
    env = {"SMEAR_GATE_ENABLED": "1"}
    before = run_static(
        [Src("t.py", SMEAR_SELF_FLAG)], StaticConfig(readme_env=env, submission_date="2026-04-16")
    )
    unknown = run_static([Src("t.py", SMEAR_SELF_FLAG)], StaticConfig(readme_env=env))
    after = run_static(
        [Src("t.py", SMEAR_SELF_FLAG)], StaticConfig(readme_env=env, submission_date="2026-04-27")
    )
    sev = [next(f.severity for f in r if f.rule_id == "C103") for r in (before, unknown, after)]
    assert sev == [Severity.INFO, Severity.WARNING, Severity.ERROR]
