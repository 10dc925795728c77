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
    tree = _prepared_tree(script)
    if tree is None:
        runpy.run_path(script, run_name="__main__")
        return
    import types

    main_mod = types.ModuleType("__main__")
    main_mod.__file__ = script
    main_mod.__builtins__ = __builtins__
    sys.modules["__main__"] = main_mod  # pickles of classes defined in the script resolve here
    exec(compile(tree, script, "exec"), main_mod.__dict__)  # noqa: S102 - this is the sandboxed run itself, as runpy


def _prepared_tree(script: str):
    """The script's syntax tree when it cannot simply be run: written for a newer Python (PEP 701
    f-strings; the harness ships the tree pgolf parsed, same lines, as PGOLF_SCRIPT_AST) or with
    Triton switches to turn off on a CPU (PGOLF_CPU_SWITCHES). None: run the file as it is."""
    import ast
    import pickle

    ast_path = os.environ.get("PGOLF_SCRIPT_AST")
    switches = os.environ.get("PGOLF_CPU_SWITCHES") if os.environ.get("PGOLF_CPU_ADAPTER") == "1" else None
    if not ast_path and not switches:
        return None
    if ast_path:
        with open(ast_path, "rb") as fh:
            tree = pickle.load(fh)  # written by the harness on the host, not by the submission
    else:
        with open(script, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=script)
    if switches:
        import pgolf_cpu

        tree = pgolf_cpu.switched_off(tree, script, set(switches.split(",")))
    return tree


if __name__ == "__main__":
    main()
