"""Does flagged code actually run? Guards evaluated against the README command and the logs.

Scripts read their switches at import time (``ttt_enabled = bool(int(os.environ.get("TTT_ENABLED",
"0")))`` in ``class Hyperparameters``), and the logs of Family B/C scripts dump the effective values
(``ttt_enabled: True``). A guard on the way to a finding (``if h.ttt_enabled:``, ``if use_slot:``
with ``use_slot = getattr(args, "slot_enabled", False)``, ``if self.smear_gate_enabled:`` set in
``__init__`` from ``h.smear_gate_enabled``) is evaluated statically, with a tiny exec-free
evaluator, in each scenario: the code defaults, the README's environment, and each log's dump.

Code is *unreachable* when in every scenario some guard on its path is certainly false, or when
its function is never called from the entry point; *reachable* when some scenario passes all
guards that can be decided; guards that cannot be decided do not block (they are mentioned).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from auditor.static.events import Event, Guard
from auditor.static.program import FuncInfo, Program

UNKNOWN = object()
# Set by torchrun / the launcher at run time: never decided from the README.
RUNTIME_ENV = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "CUDA_VISIBLE_DEVICES",
    "NODE_RANK",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
}


@dataclass
class Scenario:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, str] = field(default_factory=dict)


@dataclass
class Reach:
    status: str  # reachable | unreachable | unknown
    text: str

    @property
    def reachable(self) -> bool:
        return self.status != "unreachable"


class Reachability:
    def __init__(
        self,
        program: Program,
        readme_env: dict[str, str] | None,
        hyperparameters: list[dict[str, str]] | None,
        referenced: set[str] | None = None,
        log_texts: list[str] | None = None,
    ):
        self.log_texts = [t for t in (log_texts or []) if t]
        self._log_msgs: dict[int, list[str]] = {}
        self.p = program
        self.scenarios = [Scenario("the code defaults")]
        if readme_env:
            self.scenarios.append(Scenario("the README run command", env=dict(readme_env)))
        for i, hp in enumerate(hyperparameters or []):
            if hp:
                name = "the logged hyperparameters" + (
                    f" (log {i + 1})" if len(hyperparameters or []) > 1 else ""
                )
                self.scenarios.append(
                    Scenario(
                        name,
                        env=dict(readme_env or {}),
                        hparams={str(k).lower(): str(v) for k, v in hp.items()},
                    )
                )
        self._cache: dict[tuple, object] = {}
        self._assign_cache: dict[int, dict[str, list[ast.Assign]]] = {}
        self._self_cache: dict[tuple, list] = {}
        self._env_cache: dict[int, list] = {}
        self._config_cache: dict[str, tuple[ast.expr, FuncInfo]] | None = None
        self._referenced = referenced

    @property
    def _config_attrs(self) -> dict[str, tuple[ast.expr, FuncInfo]]:
        if self._config_cache is None:
            self._config_cache = self._collect_config_attrs()
        return self._config_cache

    @property
    def referenced(self) -> set[str]:
        if self._referenced is None:
            self._referenced = _referenced_names(self.p)
        return self._referenced

    # -- public ------------------------------------------------------------------------------------
    def of_events(self, events: list[Event], orphan_funcs: set[int]) -> Reach:
        """Reachability of a site given every path (event) that reaches it; the best path wins."""
        best: Reach | None = None
        for ev in events:
            r = self.of_event(ev, orphan_funcs)
            if best is None or _rank(r) > _rank(best):
                best = r
        return best or Reach("unknown", "reachability unknown")

    def of_event(self, ev: Event, orphan_funcs: set[int]) -> Reach:
        first = ev.frames[0].func
        if first.kind != "module" and first.id in orphan_funcs:
            if first.name in self.referenced or (first.cls is not None and first.cls.name in self.referenced):
                return Reach(
                    "unknown",
                    f"reachability unknown: `{first.name}` is referenced but no call from the "
                    f"entry point could be resolved",
                )
            return Reach(
                "unreachable", f"`{first.qualname.split('.', 1)[-1]}` is never called from the entry point"
            )
        guards = [g for fr in ev.frames for g in fr.guards]
        return self.of_guards(guards)

    def of_guards(self, guards: list[Guard]) -> Reach:
        if not guards:
            return Reach("reachable", "reachable with the default configuration")
        undecided: list[Guard] = []
        blocked: dict[int, Guard] = {}
        passing: list[str] = []
        for si, sc in enumerate(self.scenarios):
            ok = True
            for g in guards:
                val = self.truth(g, sc)
                if val is UNKNOWN:
                    if g not in undecided and self._mentions_config(g):
                        undecided.append(g)
                    continue
                if val != g.polarity:
                    ok = False
                    # describe the guard nearest to the code (the flag that owns the feature)
                    blocked[si] = g
            if ok:
                passing.append(sc.name)
        if passing:
            undecided = [g for g in undecided if not self._runtime_only(g)]
            if passing[0] == "the code defaults":
                text = "reachable with the default configuration"
            else:
                # the guards this scenario switches on (false with the code defaults)
                sc = next(x for x in self.scenarios if x.name == passing[0])
                flipped = [
                    g
                    for g in guards
                    if self.truth(g, self.scenarios[0]) not in (UNKNOWN, g.polarity)
                    and self.truth(g, sc) == g.polarity
                ]
                text = f"enabled by {passing[0]}"
                if flipped:
                    text += " (" + ", ".join(self.describe(g) for g in flipped[:3]) + ")"
            return Reach("reachable", text)
        # the logs may show that a guarded block ran (scripts without a Hyperparameters: dump)
        if self.log_texts:
            for si, sc in enumerate(self.scenarios):
                confirmed = []
                ok = True
                for g in guards:
                    val = self.truth(g, sc)
                    if val is UNKNOWN or val == g.polarity:
                        continue
                    msg = self._log_confirmed(g)
                    if msg is None:
                        ok = False
                        break
                    confirmed.append((g, msg))
                if ok and confirmed:
                    g, msg = confirmed[0]
                    return Reach(
                        "reachable",
                        f"confirmed by the logs: {self.describe(g)} is off by default, but the "
                        f"log contains this block's output `{msg[:60]}`",
                    )
        g = blocked.get(0) or next(iter(blocked.values()))
        return Reach(
            "unreachable",
            f"behind {self.describe(g)}, which neither the README run command nor the "
            f"logged hyperparameters switch on",
        )

    def _log_confirmed(self, g: Guard) -> str | None:
        """A message printed inside the guarded block that appears in a log."""
        node = g.node
        if node is None or not isinstance(node, ast.If):
            return None
        body = node.body if g.polarity else node.orelse
        for msg in self._block_messages(body, g.func, 0):
            if any(msg in text for text in self.log_texts):
                return msg
        return None

    def _block_messages(self, body: list[ast.stmt], func: FuncInfo, depth: int) -> list[str]:
        out: list[str] = []
        for stmt in body:
            for n in ast.walk(stmt):
                if not isinstance(n, ast.Call):
                    continue
                name = _dotted(n.func) or ""
                low = name.lower()
                if any(w in low for w in ("log", "print")) and n.args:
                    msg = _static_prefix(n.args[0])
                    if msg and len(msg.strip()) >= 10:
                        out.append(msg.strip())
                elif depth < 2 and name:
                    callee = func.file.functions.get(name.rsplit(".", 1)[-1])
                    if callee is not None:
                        key = callee.id
                        if key not in self._log_msgs:
                            self._log_msgs[key] = []
                            self._log_msgs[key] = self._block_messages(callee.body, callee, depth + 1)
                        out.extend(self._log_msgs[key])
        return out

    def describe(self, g: Guard) -> str:
        try:
            text = ast.unparse(g.test)
        except Exception:  # noqa: BLE001
            text = "a condition"
        if len(text) > 70:
            text = text[:67] + "..."
        text = f"`{'not ' if not g.polarity else ''}{text}` (line {g.line})"
        envs = self._env_names(g)
        if envs:
            text += " [" + ", ".join(f"{e} default {d!r}" if d is not None else e for e, d in envs[:3]) + "]"
        return text

    # -- evaluation ------------------------------------------------------------------------------
    def truth(self, g: Guard, sc: Scenario):
        key = (id(g.test), sc.name)
        if key in self._cache:
            return self._cache[key]
        self._cache[key] = UNKNOWN  # recursion guard
        try:
            v = self.ev(g.test, g.func, sc, 0, g.line)
        except Exception:  # noqa: BLE001 - the evaluator must never break the audit
            v = UNKNOWN
        out = UNKNOWN if v is UNKNOWN else bool(v)
        self._cache[key] = out
        return out

    def ev(self, node: ast.AST, func: FuncInfo, sc: Scenario, depth: int, line: int):
        if depth > 12:
            return UNKNOWN
        d = depth + 1
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "__name__":
                return "__main__" if func.file.is_entry else func.file.module
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            expr, where = self._local_def(node.id, func, line)
            if expr is not None and self._config_related(expr, where, line, 0):
                return self.ev(expr, where, sc, d, getattr(expr, "lineno", line))
            return UNKNOWN
        if isinstance(node, ast.Attribute):
            return self._attr(node, func, sc, d, line)
        if isinstance(node, ast.UnaryOp):
            v = self.ev(node.operand, func, sc, d, line)
            if v is UNKNOWN:
                return UNKNOWN
            if isinstance(node.op, ast.Not):
                return not v
            if isinstance(node.op, ast.USub) and isinstance(v, (int, float)):
                return -v
            return UNKNOWN
        if isinstance(node, ast.BoolOp):
            vals = []
            for value in node.values:
                v = self.ev(value, func, sc, d, line)
                if isinstance(node.op, ast.And) and v is not UNKNOWN and not v:
                    return v
                if isinstance(node.op, ast.Or) and v is not UNKNOWN and v:
                    return v
                vals.append(v)
            if any(v is UNKNOWN for v in vals):
                return UNKNOWN
            return vals[-1]
        if isinstance(node, ast.Compare):
            left = self.ev(node.left, func, sc, d, line)
            for op, comp in zip(node.ops, node.comparators):
                right = self.ev(comp, func, sc, d, line)
                if left is UNKNOWN or right is UNKNOWN:
                    return UNKNOWN
                try:
                    ok = _compare(op, left, right)
                except Exception:  # noqa: BLE001
                    return UNKNOWN
                if not ok:
                    return False
                left = right
            return True
        if isinstance(node, ast.BinOp):
            a, b = self.ev(node.left, func, sc, d, line), self.ev(node.right, func, sc, d, line)
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            try:
                return _binop(node.op, a, b)
            except Exception:  # noqa: BLE001
                return UNKNOWN
        if isinstance(node, ast.IfExp):
            t = self.ev(node.test, func, sc, d, line)
            if t is UNKNOWN:
                a, b = self.ev(node.body, func, sc, d, line), self.ev(node.orelse, func, sc, d, line)
                return a if a is not UNKNOWN and a == b else UNKNOWN
            return self.ev(node.body if t else node.orelse, func, sc, d, line)
        if isinstance(node, ast.Call):
            return self._call(node, func, sc, d, line)
        if isinstance(node, ast.Subscript):
            if _is_environ(node.value):
                key = self.ev(node.slice, func, sc, d, line)
                return self._env(sc, key, UNKNOWN) if isinstance(key, str) else UNKNOWN
            return UNKNOWN
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            vals = [self.ev(e, func, sc, d, line) for e in node.elts]
            if any(v is UNKNOWN for v in vals):
                return UNKNOWN
            return (
                tuple(vals)
                if isinstance(node, ast.Tuple)
                else (set(vals) if isinstance(node, ast.Set) else vals)
            )
        return UNKNOWN

    def _env(self, sc: Scenario, key: str, default):
        if key in RUNTIME_ENV:
            return UNKNOWN
        if key in sc.env:
            return sc.env[key]
        return default

    def _call(self, node: ast.Call, func, sc, d, line):
        f = node.func
        name = _dotted(f) or ""
        if name.endswith(("environ.get", "getenv")) and node.args:
            key = self.ev(node.args[0], func, sc, d, line)
            default = self.ev(node.args[1], func, sc, d, line) if len(node.args) > 1 else None
            if not isinstance(key, str):
                return UNKNOWN
            return self._env(sc, key, default)
        if name in ("int", "float", "bool", "str") and len(node.args) == 1:
            v = self.ev(node.args[0], func, sc, d, line)
            if v is UNKNOWN:
                return UNKNOWN
            try:
                return {"int": int, "float": float, "bool": bool, "str": str}[name](v)
            except Exception:  # noqa: BLE001
                return UNKNOWN
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            attr = str(node.args[1].value)
            fake = ast.Attribute(value=node.args[0], attr=attr, ctx=ast.Load())
            v = self._attr(fake, func, sc, d, line)
            if v is UNKNOWN and len(node.args) > 2 and not self._attr_defined(attr):
                return self.ev(node.args[2], func, sc, d, line)
            return v
        if isinstance(f, ast.Attribute) and f.attr in ("lower", "upper", "strip") and not node.args:
            v = self.ev(f.value, func, sc, d, line)
            return getattr(v, f.attr)() if isinstance(v, str) else UNKNOWN
        return UNKNOWN

    def _attr(self, node: ast.Attribute, func: FuncInfo, sc: Scenario, d: int, line: int):
        attr = node.attr
        base = node.value
        # self.X inside a method: the field's definition (usually in __init__)
        if isinstance(base, ast.Name) and base.id == "self" and func.cls is not None:
            defs = self._self_defs(func.cls, attr)
            if defs:
                vals = {repr(self.ev(expr, m, sc, d, getattr(expr, "lineno", line))) for expr, m in defs}
                if len(vals) == 1:
                    return self.ev(defs[0][0], defs[0][1], sc, d, getattr(defs[0][0], "lineno", line))
                return UNKNOWN
        # a configuration attribute (class Hyperparameters, args, h, ...)
        if attr in sc.hparams:
            return _parse_logged(sc.hparams[attr])
        entry = self._config_attrs.get(attr)
        if entry is not None:
            expr, where = entry
            return self.ev(expr, where, sc, d, getattr(expr, "lineno", line))
        return UNKNOWN

    def _config_related(self, expr: ast.AST, func: FuncInfo, line: int, depth: int) -> bool:
        """Only names defined from the configuration (environment, config attributes, module-level
        constant aliases) are substituted; a local ``x = []`` later appended to is not a constant."""
        if depth > 6:
            return False
        if isinstance(expr, ast.Constant):
            return func.kind == "module"
        for n in ast.walk(expr):
            if _is_environ(n) or (
                isinstance(n, ast.Attribute) and (n.attr in self._config_attrs or n.attr == "getenv")
            ):
                return True
            if isinstance(n, ast.Call) and _dotted(n.func) == "getattr":
                return True
            if (
                isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "self"
                and func.cls is not None
                and self._self_defs(func.cls, n.attr)
            ):
                return True
            if isinstance(n, ast.Name) and n is not expr:
                sub, where = self._local_def(n.id, func, line)
                if sub is not None and self._config_related(sub, where, line, depth + 1):
                    return True
        if isinstance(expr, ast.Name):
            sub, where = self._local_def(expr.id, func, line)
            return sub is not None and self._config_related(sub, where, line, depth + 1)
        return False

    def _attr_defined(self, attr: str) -> bool:
        return attr in self._config_attrs

    def _self_defs(self, cls, attr: str) -> list[tuple[ast.expr, FuncInfo]]:
        key = (id(cls), attr)
        hit = self._self_cache.get(key)
        if hit is None:
            hit = self._self_defs_uncached(cls, attr)
            self._self_cache[key] = hit
        return hit

    def _self_defs_uncached(self, cls, attr: str) -> list[tuple[ast.expr, FuncInfo]]:
        out = []
        for c in self.p.class_mro(cls):
            for m in c.methods.values():
                for node in m.all_nodes():
                    if isinstance(node, ast.Assign):
                        for t in node.targets:
                            if (
                                isinstance(t, ast.Attribute)
                                and t.attr == attr
                                and isinstance(t.value, ast.Name)
                                and t.value.id == "self"
                            ):
                                out.append((node.value, m))
        return out

    def _assigns(self, f: FuncInfo) -> dict[str, list[ast.Assign]]:
        """Simple ``name = value`` assignments of a function (module: its top level), by name."""
        table = self._assign_cache.get(f.id)
        if table is None:
            table = {}
            nodes = f.node.body if f.kind == "module" else f.all_nodes()
            for node in nodes:
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                ):
                    table.setdefault(node.targets[0].id, []).append(node)
            self._assign_cache[f.id] = table
        return table

    def _local_def(self, name: str, func: FuncInfo, line: int):
        """The last simple assignment to ``name`` before ``line`` in ``func``, its parents, or its module."""
        chain = []
        f = func
        while f is not None:
            chain.append(f)
            f = f.parent
        mod = func.file.module_func
        if mod is not None and mod not in chain:
            chain.append(mod)
        for f in chain:
            nodes = self._assigns(f).get(name)
            if not nodes:
                continue
            if f.kind == "module":
                return nodes[-1].value, f
            before = [n for n in nodes if n.lineno <= line] if f is func else nodes
            if before:
                return before[-1].value, f
        return None, None

    def _collect_config_attrs(self) -> dict[str, tuple[ast.expr, FuncInfo]]:
        """Attributes of configuration classes: class-body assignments that read the environment,
        and the other attributes of those classes."""
        out: dict[str, tuple[ast.expr, FuncInfo]] = {}
        for cls in self.p.classes:
            body = cls.body_func
            reads_env = any(
                _is_environ(n) or (isinstance(n, ast.Attribute) and n.attr == "getenv")
                for n in ast.walk(cls.node)
            )
            if not reads_env or body is None:
                continue
            for node in cls.node.body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else ([node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
                )
                for t in targets:
                    if isinstance(t, ast.Name):
                        out.setdefault(t.id, (node.value, body))
            for m in cls.methods.values():
                for node in m.all_nodes():
                    if isinstance(node, ast.Assign):
                        for t in node.targets:
                            if (
                                isinstance(t, ast.Attribute)
                                and isinstance(t.value, ast.Name)
                                and t.value.id == "self"
                            ):
                                out.setdefault(t.attr, (node.value, m))
        return out

    def _runtime_only(self, g: Guard) -> bool:
        """Guards that depend only on torchrun's environment (rank, world size)."""
        envs = self._env_names(g)
        return bool(envs) and all(e in RUNTIME_ENV for e, _ in envs)

    def _mentions_config(self, g: Guard) -> bool:
        return bool(self._env_names(g)) or any(
            isinstance(n, ast.Attribute) and n.attr in self._config_attrs for n in ast.walk(g.test)
        )

    def _env_names(self, g: Guard) -> list[tuple[str, object]]:
        """Environment variables (with defaults) a guard depends on, through config attributes."""
        hit = self._env_cache.get(id(g.test))
        if hit is None:
            hit = self._env_names_uncached(g)
            self._env_cache[id(g.test)] = hit
        return hit

    def _env_names_uncached(self, g: Guard) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = []
        seen: set[int] = set()

        def visit(node: ast.AST, func: FuncInfo, depth: int) -> None:
            if depth > 6 or id(node) in seen:
                return
            seen.add(id(node))
            for n in ast.walk(node):
                if (
                    isinstance(n, ast.Call)
                    and (_dotted(n.func) or "").endswith(("environ.get", "getenv"))
                    and n.args
                    and isinstance(n.args[0], ast.Constant)
                ):
                    default = (
                        n.args[1].value if len(n.args) > 1 and isinstance(n.args[1], ast.Constant) else None
                    )
                    if (n.args[0].value, default) not in out:
                        out.append((n.args[0].value, default))
                elif (
                    isinstance(n, ast.Call)
                    and _dotted(n.func) == "getattr"
                    and len(n.args) >= 2
                    and isinstance(n.args[1], ast.Constant)
                ):
                    entry = self._config_attrs.get(str(n.args[1].value))
                    if entry is not None:
                        visit(entry[0], entry[1], depth + 1)
                elif isinstance(n, ast.Attribute):
                    if isinstance(n.value, ast.Name) and n.value.id == "self" and func.cls is not None:
                        for expr, m in self._self_defs(func.cls, n.attr)[:2]:
                            visit(expr, m, depth + 1)
                    entry = self._config_attrs.get(n.attr)
                    if entry is not None:
                        visit(entry[0], entry[1], depth + 1)
                elif isinstance(n, ast.Name):
                    expr, where = self._local_def(n.id, func, getattr(n, "lineno", 10**9))
                    if expr is not None:
                        visit(expr, where, depth + 1)

        visit(g.test, g.func, 0)
        return out


def _static_prefix(node: ast.AST) -> str | None:
    """The constant text a log call starts with (the literal, or an f-string up to its first field)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                parts.append(v.value)
            else:
                break
        return "".join(parts)
    return None


def _rank(r: Reach) -> int:
    return {"unreachable": 0, "unknown": 1, "reachable": 2}[r.status]


def _parse_logged(text: str):
    t = text.strip()
    if t in ("True", "true"):
        return True
    if t in ("False", "false"):
        return False
    if t == "None":
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def _compare(op, a, b) -> bool:
    if isinstance(op, ast.Eq):
        return a == b
    if isinstance(op, ast.NotEq):
        return a != b
    if isinstance(op, ast.Lt):
        return a < b
    if isinstance(op, ast.LtE):
        return a <= b
    if isinstance(op, ast.Gt):
        return a > b
    if isinstance(op, ast.GtE):
        return a >= b
    if isinstance(op, ast.Is):
        return a is b
    if isinstance(op, ast.IsNot):
        return a is not b
    if isinstance(op, ast.In):
        return a in b
    if isinstance(op, ast.NotIn):
        return a not in b
    raise ValueError(op)


def _binop(op, a, b):
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if isinstance(op, ast.Div):
        return a / b
    if isinstance(op, ast.FloorDiv):
        return a // b
    if isinstance(op, ast.Mod):
        return a % b
    raise ValueError(op)


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _is_environ(node) -> bool:
    d = _dotted(node)
    return d is not None and d.endswith("environ")


def _referenced_names(program: Program) -> set[str]:
    """Names loaded anywhere (not at their definition): functions that may be called indirectly."""
    out: set[str] = set()
    for info in program.files:
        for node in info.all_nodes():
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                out.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                out.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                out.add(node.value)
    return out
