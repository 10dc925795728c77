"""HYG008 network or download reachable from the scored run.

Calls found by the dataflow walk (so aliases and helpers resolve): urllib/requests/httpx,
huggingface_hub downloads, sockets, torch.hub, ``datasets.load_dataset``, and shell commands
(``subprocess``/``os.system``) whose command line contains curl/wget/git clone/pip install/a URL.
Shipped helper scripts that the entry point never imports (data download scripts) are reported as
info only: they are not part of the run.
"""

from __future__ import annotations

import ast

from auditor.findings import finding
from auditor.models import Confidence, Location, Severity
from auditor.static import library as lib
from auditor.static.analysis import Analysis
from auditor.static.detectors.common import group_by_site


def detect(an: Analysis) -> list:
    out = []
    nets = [ev for ev in an.events if ev.kind == "net"]
    for evs in group_by_site(nets).values():
        ev = evs[0]
        msg = (
            f"Network access from the submission's run at line {ev.line}: `{ev.info.get('detail')}` "
            f"(via {ev.info.get('call')}). Evaluation must not download or call out; the artifact must be "
            f"self-contained."
        )
        out.append(
            an.make(
                "HYG008",
                msg,
                location=an.event_loc(ev),
                path=[an.event_loc(ev)],
                reach=an.reach_events(evs),
                confidence=Confidence.STRONG,
            )
        )
    # shipped files the run never imports: a cheap syntactic look, info only
    analyzed = set(an.interp.module_env) - set(getattr(an.interp, "tool_files", ()))
    for info in an.program.files:
        if info.idx in analyzed:
            continue
        for node in info.all_nodes():
            if not isinstance(node, ast.Call):
                continue
            name = _qualified(info, node.func)
            if not name:
                continue
            hit = None
            if lib.is_network_name(name):
                hit = name
            elif name in lib.SHELL_FUNCS:
                texts = lib.string_constants(node)
                hit = next((t for t in texts if lib.NETWORK_COMMAND.search(t)), None)
            if hit:
                loc = Location(
                    file=info.path,
                    line=node.lineno,
                    snippet=info.snippet(node.lineno),
                    wrapper=info.wrapper,
                    role="sink",
                )
                out.append(
                    finding(
                        "HYG008",
                        f"`{info.path}` uses the network ({hit}) but the entry script never "
                        f"imports it (a helper, e.g. for data preparation); not part of the "
                        f"scored run.",
                        location=loc,
                        path=[loc],
                        severity=Severity.INFO,
                        confidence=Confidence.HEURISTIC,
                        reachability="not imported by the entry script",
                    )
                )
                break
    return out


def _qualified(info, func: ast.AST) -> str | None:
    parts = []
    node = func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    head = info.imports.get(node.id, node.id)
    return ".".join([head] + list(reversed(parts)))
