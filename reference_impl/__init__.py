"""pgolf reference implementation of the Parameter Golf record stack (#1394 -> #1493 -> #1755).

Small modules, bundled into one self-contained `train_gpt.py` by `bundle.build_script()`:

  hparams        class Hyperparameters (reads the environment, record defaults)
  logging_fmt    Family-B log lines
  data           FineWeb shard I/O and the training loader
  tokenizer_luts bytes per token from the SentencePiece piece table
  model          the GPT
  muon           Muon + AdamW
  gptq           GPTQ with std-based clipping, Hessian collection
  artifact       quantize -> torch.save -> byte shuffle -> brotli/lzma; round trip
  evaluate       validation data, ScoreAccumulator, plain and sliding-window evals
  ttt            legal score-first TTT (chunked, per-document, phased)
  ngram_mix      legal normalized n-gram mixture
  train          the training loop
  pipeline       main(): train -> artifact -> evals
Tooling (not bundled): bundle, presets, record, cli (`pgolf train`), synthetic, testing.
Deliberately broken variants for auditor tests live in `broken/`, reachable only through
`bundle.build_script(variant=...)`. See README.md in this directory.
"""

__version__ = "0.1.0"
