"""DELIBERATELY BROKEN evaluation variants — test subjects for the auditor, never records.

Each module here rebinds one name of the bundled script's namespace (a Hyperparameters subclass
with the variant's switches, and the function it corrupts), so it only takes effect inside a
script built with `reference_impl.bundle.build_script(variant=...)`. No legal module imports
this package and no `pgolf train` preset can select it.

  prequant_ttt        fine-tunes on validation tokens before GPTQ, nothing scored first (C3)
  slot                optimizes a per-window delta + logit bias on the positions it scores (C1/C3)
  ngram_target_cache  hashed n-gram cache keyed by the target, context-count denominator (C2/C1)
  two_pass            score-first TTT, then rescores everything with the adapted model (C4)
  best_of_k           runs TTT k times and reports the best run (C4)
  last_epoch_only     multi-epoch TTT that scores a chunk in its last epoch, after training on it (C3)
"""
