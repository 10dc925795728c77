"""One static analysis of a submission: the program, the abstract run, reachability, and the
helpers detectors share (evidence paths as Locations, findings with reachability applied)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from auditor.findings import finding
from auditor.models import Confidence, Finding, Location, Severity
from auditor.static.dataflow import Interpreter
from auditor.static.events import Event, Guard
from auditor.static.program import FuncInfo, Program, SourceLike
from auditor.static.reachability import Reach, Reachability
from auditor.static.values import Chain, Step


@dataclass
class StaticConfig:
    """Effective configuration for reachability.

    ``readme_env``: environment assignments of the README's run command (``TTT_ENABLED=1``).
    ``hyperparameters``: one dict per unique log, from its ``Hyperparameters:`` dump, with the
    scripts' lowercase attribute names (``{"ttt_enabled": "True"}``).
    ``submission_date``: ISO date of the submission (for rulings that apply from a date).
    """

    readme_env: dict[str, str] = field(default_factory=dict)
    hyperparameters: list[dict[str, str]] = field(default_factory=list)
    submission_date: str | None = None
    # Optional: the text of the submission's logs. A guarded block whose own log messages appear
    # in a log did run, whatever the flags say (scripts without a Hyperparameters: dump).
    log_texts: list[str] = field(default_factory=list)


class Analysis:
    def __init__(self, sources: list[SourceLike], config: StaticConfig):
        self.config = config
        self.program = Program(sources)
        self.interp = Interpreter(self.program)
        self.interp.run()
        self.events: list[Event] = self.interp.events
        self.reach = Reachability(
            self.program,
            config.readme_env,
            config.hyperparameters,
            log_texts=getattr(config, "log_texts", None),
        )
        self.orphans = self.interp.orphans

    # -- evidence --------------------------------------------------------------------------------
    def loc(self, step: Step) -> Location:
        info = self.program.files[step.file]
        return Location(
            file=info.path,
            line=step.line,
            snippet=info.snippet(step.line),
            wrapper=info.wrapper,
            role=step.role,
        )

    def node_loc(self, func_or_file, node: ast.AST, role: str = "sink") -> Location:
        info = func_or_file.file if isinstance(func_or_file, FuncInfo) else func_or_file
        line = getattr(node, "lineno", None)
        return Location(
            file=info.path, line=line, snippet=info.snippet(line), wrapper=info.wrapper, role=role
        )

    def event_loc(self, ev: Event, role: str = "sink") -> Location:
        return Location(
            file=ev.file.path,
            line=ev.line,
            snippet=ev.file.snippet(ev.line),
            wrapper=ev.file.wrapper,
            role=role,
        )

    def path(
        self, chain: Chain, sink: Location | None = None, extra: list[Location] | None = None
    ) -> list[Location]:
        out: list[Location] = []
        seen = set()
        for step in chain:
            loc = self.loc(step)
            key = (loc.file, loc.line)
            if key in seen:
                continue
            seen.add(key)
            if step.note:
                loc.snippet = f"{loc.snippet}  # {step.note}" if loc.snippet else step.note
            out.append(loc)
        for loc in extra or []:
            if (loc.file, loc.line) not in seen:
                seen.add((loc.file, loc.line))
                out.append(loc)
        if sink is not None and (sink.file, sink.line) not in seen:
            out.append(sink)
        if out:
            out[0].role = "source"
            for loc in out[1:-1]:
                loc.role = "via"
            if len(out) > 1:
                out[-1].role = "sink"
        return out

    # -- reachability -----------------------------------------------------------------------------
    def reach_events(self, events: list[Event]) -> Reach:
        return self.reach.of_events(events, self.orphans)

    def reach_node(self, func: FuncInfo, node: ast.AST) -> Reach:
        """Reachability of an arbitrary node: its local guards plus the guards of a call path."""
        local = self.local_guards(func, node)
        paths = self.call_paths(func)
        if not paths:
            if func.kind == "module":
                return self.reach.of_guards(local)
            r = self.reach.of_guards(local)
            if not r.reachable:
                return r
            if func.name in self.reach.referenced:
                return Reach(
                    "unknown",
                    f"reachability unknown: no call of `{func.name}` from the entry point could be resolved",
                )
            return Reach("unreachable", f"`{func.name}` is never called from the entry point")
        best = None
        for guards in paths:
            r = self.reach.of_guards(list(guards) + local)
            if (
                best is None
                or {"unreachable": 0, "unknown": 1, "reachable": 2}[r.status]
                > {"unreachable": 0, "unknown": 1, "reachable": 2}[best.status]
            ):
                best = r
        return best

    def call_paths(self, func: FuncInfo, limit: int = 40) -> list[tuple[Guard, ...]]:
        """Guard sets of call paths from an entry module down to ``func`` (bounded search)."""
        out: list[tuple[Guard, ...]] = []
        stack = [(func, (), frozenset({func.id}))]
        while stack and len(out) < limit:
            f, guards, seen = stack.pop()
            if f.kind == "module" and f.file.is_entry:
                out.append(guards)
                continue
            for edge in self.interp.edges.get(f.id, []):
                if edge.caller.id in seen:
                    continue
                stack.append((edge.caller, guards + edge.guards, seen | {edge.caller.id}))
            if f.kind == "classbody" or (f.kind == "module" and not f.file.is_entry):
                out.append(guards)  # class bodies and imported modules run at import
        return out

    def local_guards(self, func: FuncInfo, node: ast.AST) -> list[Guard]:
        parents = func.parents()
        out: list[Guard] = []
        child = node
        cur = parents.get(id(node))
        while cur is not None and child is not func.node:
            if isinstance(cur, ast.If):
                if _contains(cur.body, child):
                    out.append(Guard(cur.test, True, func, cur.lineno, cur))
                elif _contains(cur.orelse, child):
                    out.append(Guard(cur.test, False, func, cur.lineno, cur))
            child = cur
            cur = parents.get(id(cur))
        out.reverse()
        return out

    # -- findings --------------------------------------------------------------------------------
    def make(
        self,
        rule_id: str,
        message: str,
        *,
        location: Location,
        path: list[Location],
        reach: Reach,
        confidence: Confidence,
        data: dict | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        sev = severity or Severity.ERROR
        if not reach.reachable and sev == Severity.ERROR:
            sev = Severity.WARNING
            message = f"{message} Not counted as a violation: {reach.text}."
        return finding(
            rule_id,
            message,
            location=location,
            path=path,
            severity=sev,
            confidence=confidence,
            data={**(data or {}), "reach": reach.status},  # the verdict reads "unreachable"
            reachability=reach.text,
        )

    def submission_date(self) -> str | None:
        return self.config.submission_date


def _contains(stmts: list[ast.stmt], node: ast.AST) -> bool:
    return any(s is node for s in stmts)


def first_step(chain: Chain, note_prefix: str) -> Step | None:
    for step in chain:
        if step.note.startswith(note_prefix):
            return step
    return None


def pos(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
