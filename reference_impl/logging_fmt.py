"""Logging in the Family-B record format (records-format.md §3), to stdout and logs/<RUN_ID>.txt.

Only rank 0 writes. Every line that a log parser reads is built by one function here, so the
format lives in one place.
"""

import os

_LOG = {"logfile": None, "is_main": True}


def configure_logging(logfile: str | None, is_main: bool) -> None:
    _LOG["logfile"] = logfile
    _LOG["is_main"] = is_main
    if logfile and is_main:
        os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)


def log(msg: str, console: bool = True) -> None:
    if not _LOG["is_main"]:
        return
    if console:
        print(msg, flush=True)
    if _LOG["logfile"]:
        with open(_LOG["logfile"], "a", encoding="utf-8") as f:
            print(msg, file=f)


def hparams_dump_lines(h) -> list[str]:
    """`Hyperparameters:` then one sorted, 2-space-indented `key: value` line per attribute."""
    return ["Hyperparameters:"] + [f"  {k}: {v}" for k, v in h.as_dict().items()]


def train_progress_line(step: int, iterations: int, train_loss: float, train_time_ms: float,
                        tokens_seen: int) -> str:
    tok_per_s = tokens_seen / max(train_time_ms / 1000.0, 1e-9)
    return (f"{step}/{iterations} train_loss: {train_loss:.4f} "
            f"train_time: {train_time_ms / 60000.0:.1f}m tok/s: {tok_per_s:.0f}")


def val_progress_line(step: int, iterations: int, val_loss: float, val_bpb: float) -> str:
    return f"{step}/{iterations} val_loss: {val_loss:.4f} val_bpb: {val_bpb:.4f}"


def stop_line(train_time_ms: float, step: int, iterations: int) -> str:
    return f"stopping_early: wallclock_cap train_time: {train_time_ms:.0f}ms step: {step}/{iterations}"


def final_metric_line(label: str, val_loss: float, val_bpb: float, eval_time_ms: float) -> str:
    return f"{label} val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f} eval_time:{eval_time_ms:.0f}ms"


def size_lines(code_bytes: int, model_bytes: int, compressor: str) -> list[str]:
    return [
        f"Serialized model quantized+{compressor}: {model_bytes} bytes",
        f"Total submission size quantized+{compressor}: {model_bytes + code_bytes} bytes",
    ]
