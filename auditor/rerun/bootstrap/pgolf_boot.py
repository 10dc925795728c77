"""Entry point of a sandboxed rerun: ``python pgolf_boot.py SCRIPT [ARGS...]``.

Arms the tracer when PGOLF_TRACE_FD is set, turns ``torch.compile`` into a pass-through when
PGOLF_NO_COMPILE=1 (CPU reruns, and always under tracing: compiled graphs would bypass the
tensor subclass), installs the CPU adapter when PGOLF_CPU_ADAPTER=1 (pgolf_cpu.py: CUDA-only
scripts on a CPU host), then runs the script as ``__main__`` with its own directory first on sys.path,
exactly as ``python SCRIPT`` would.
"""

import os
import runpy
import sys


def _no_compile() -> None:
    import torch

    def compile(model=None, *args, **kwargs):
        if model is None:
            return lambda m: m
        return model

    torch.compile = compile


def main() -> None:
    if len(sys.argv) < 2:
        sys.stderr.write("usage: pgolf_boot.py SCRIPT [ARGS...]\n")
        sys.exit(2)
    script = os.path.abspath(sys.argv[1])
    tracing = bool(os.environ.get("PGOLF_TRACE_FD"))
    if tracing or os.environ.get("PGOLF_NO_COMPILE") == "1":
        _no_compile()
    if os.environ.get("PGOLF_CPU_ADAPTER") == "1":
        import pgolf_cpu

        pgolf_cpu.install()
    if tracing:
        import pgolf_trace

        pgolf_trace.install()
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(script))
    switches = os.environ.get("PGOLF_CPU_SWITCHES")
    if switches and os.environ.get("PGOLF_CPU_ADAPTER") == "1":
        import types

        import pgolf_cpu

        code = pgolf_cpu.switched_off_code(script, set(switches.split(",")))
        main_mod = types.ModuleType("__main__")
        main_mod.__file__ = script
        main_mod.__builtins__ = __builtins__
        sys.modules["__main__"] = main_mod  # pickles of classes defined in the script resolve here
        exec(code, main_mod.__dict__)
        return
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
