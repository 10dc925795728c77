"""An abstract interpreter over the parsed script: labels flow through assignments, aliases,
containers, helper functions, methods and closures, for numpy and torch alike.

The walk starts at the entry file's module code (as ``python train_gpt.py`` would) and descends
into every call it can resolve, with the labels of the actual arguments (calls are memoized per
function and argument summary). Both branches of every ``if`` are analyzed; the guard is kept so
that reachability can later be decided from the README command and the logged hyperparameters.
Loop bodies are run twice so that loop-carried flows (a table written in one chunk and read in the
next) are seen. Functions that the entry never reaches are analyzed afterwards on their own.

What is tracked (see ``values.py`` for the labels):
- sources: validation shards (``fineweb_val_*`` paths reaching a file read), training shards,
  the realized target tokens (whatever is passed as the cross-entropy target, and reads of the
  validation stream at the next position ``ws + s + 1 + i``), model distributions;
- transformations: hashing the target into a key, reading a table with such a key, comparing
  target-dependent values, blending a target-keyed value with the model probability;
- events (``events.py``): scores committed, backward/optimizer steps, table writes keyed by
  validation data, serialization into the artifact, network access, calibration forwards.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field

from auditor.budget import check as check_budget
from auditor.static import library as lib
from auditor.static.events import Event, Frame, Guard
from auditor.static.program import FileInfo, FuncInfo, Program, depends_on, dotted, names_in, record_import
from auditor.static.values import (
    ATT,
    BLEND,
    CALLRES,
    DIST,
    EMPTY,
    FINE,
    GATE,
    LOCALPARAM,
    NOCONST,
    OPT,
    SEL,
    STATE,
    TARGET_DERIVED,
    TDIST,
    TEQ,
    TGT,
    TKEY,
    TLUT,
    TMIX,
    TOK,
    TPAIR,
    TRAIN,
    TRAINPATH,
    VAL,
    VALPATH,
    Step,
    V,
    combine,
    extend,
    join,
    sig,
)

TABLE_NOTE = "accumulated into an object's table"
MAX_CONTEXTS = 10  # memoized analyses per function; beyond, analyze unmemoized while budget lasts
MAX_TARGETS = 3  # callees considered for one call whose target is ambiguous
DEFAULT_BUDGET = 1_500_000  # evaluated nodes before new call contexts stop being explored
LOOP_ROUNDS = 2  # rounds for loops with loop-carried values (one round otherwise)
SYMBOL = (0, True, False)  # an unknown non-negative position


@dataclass
class Summary:
    ret: V
    events: list[Event]
    target_params: set[int]
    effects: dict[int, V]


@dataclass
class Edge:
    caller: FuncInfo
    node: ast.AST
    guards: tuple[Guard, ...]
    loops: tuple[ast.AST, ...]


class _Terminate(Exception):
    pass


@dataclass
class Act:
    """One activation of a function during the abstract run."""

    func: FuncInfo
    env: dict[str, V]
    bind: dict[str, ast.stmt] = field(default_factory=dict)
    loops: list[ast.AST] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)
    ctrl: list[dict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ret: V | None = None
    nograd: int = 0
    hooks: list[V] = field(default_factory=list)
    stmt: ast.AST | None = None
    pending: list[list[dict]] = field(default_factory=list)  # envs at continue/break, per loop
    params: dict[str, V] = field(default_factory=dict)
    rebound: set[str] = field(default_factory=set)
    globals: set[str] = field(default_factory=set)
    seen: set = field(default_factory=set)


class Interpreter:
    def __init__(self, program: Program, budget: int = DEFAULT_BUDGET):
        self.p = program
        self.fields: dict[tuple[int, str], V] = {}  # (id(ClassInfo), attr) -> value
        self.attr_any: dict[str, V] = {}  # attr -> value written on any object (unknown receivers)
        self.module_env: dict[int, dict[str, V]] = {}
        self.module_running: set[int] = set()
        self.memo: dict[tuple, Summary] = {}
        self.by_func: dict[int, list[Summary]] = defaultdict(list)
        self.active: set[tuple] = set()
        self.edges: dict[int, list[Edge]] = defaultdict(list)
        self.last_act: dict[int, Act] = {}
        self.roots: dict[int, set[str]] = defaultdict(set)
        self.val_uses: dict[int, list[tuple[set[str], tuple]]] = defaultdict(list)
        self.analyzed: set[int] = set()
        self.events: list[Event] = []
        self.orphans: set[int] = set()  # functions analyzed without a caller from the entry
        self.hook_funcs: set[int] = set()
        self.order = 0
        self.steps = 0
        self.budget = budget
        self.truncated = False
        self._result_names: dict[int, tuple[set[str], set[str]]] = {}
        self._escape_cache: dict[tuple[int, str], bool] = {}
        self._round_cache: dict[int, int] = {}
        self._default_cache: dict[int, dict[str, V]] = {}
        self.class_version: dict[int, int] = {}
        self.field_classes: dict[int, dict] = {}
        self.tool_files: set[int] = set()  # stand-alone scripts shipped beside the entry
        self.tool_events: list[Event] = []

    # ==============================================================================================
    # driving
    def run(self) -> None:
        for info in self.p.files:
            if info.is_entry:
                self.run_module(info)
        # shipped stand-alone scripts (``if __name__ == "__main__"``) that the entry does not import:
        # tools run by hand (data prep, blob builders). Their events are kept apart (tool_events).
        n0 = len(self.events)
        for info in self.p.files:
            if not info.is_entry and info.idx not in self.module_env and _has_main_block(info.tree):
                self.tool_files.add(info.idx)
                self.run_module(info)
        self.tool_events = self.events[n0:]
        del self.events[n0:]
        for f in list(self.p.funcs):
            if f.id in self.analyzed or f.kind in ("module", "classbody"):
                continue
            if self.steps > self.budget * 2:
                self.truncated = True
                break
            if not self._file_in_scope(f.file):
                continue
            self.orphans.add(f.id)
            params = {}
            if f.cls is not None and f.kind in ("method", "classmethod") and f.params:
                kind = "inst" if f.kind == "method" else "class"
                params[f.params[0]] = V(objs=frozenset({(kind, f.cls)}))
            summ = self.analyze(f, params)
            act = Act(func=f, env={})
            sink = self.tool_events if f.file.idx in self.tool_files else self.events
            for ev in summ.events:
                ev.order = self._next()
                sink.append(ev)
            del act

    def _file_in_scope(self, info: FileInfo) -> bool:
        return info.is_entry or info.idx in self.module_env

    def _next(self) -> int:
        self.order += 1
        return self.order

    def run_module(self, info: FileInfo) -> dict[str, V]:
        env = self.module_env.get(info.idx)
        if env is not None:
            return env
        env = {}
        self.module_env[info.idx] = env
        self.module_running.add(info.idx)
        act = Act(func=info.module_func, env=env)
        self.last_act[info.module_func.id] = act
        self.analyzed.add(info.module_func.id)
        self.exec_block(act, info.tree.body)
        for ev in act.events:
            self.events.append(ev)
        self.module_running.discard(info.idx)
        return env

    # ==============================================================================================
    # function analysis
    def analyze(self, f: FuncInfo, params: dict[str, V]) -> Summary:
        if f.id not in self.analyzed:
            self._prescan_targets(f)
        self.analyzed.add(f.id)
        summ = None
        for _attempt in range(3):
            roots_before = frozenset(self.roots[f.id])
            act = Act(func=f, env={})
            act.params = dict(params)
            for name, v in params.items():
                act.env[name] = v
            if any(d.endswith(("no_grad", "inference_mode")) for d in f.decorators):
                act.nograd = 1
            for name in roots_before:
                if name in act.env:
                    act.env[name] = self._seed_target(act, name, act.env[name], f.line)
            self.last_act[f.id] = act
            try:
                self.exec_block(act, f.body)
            except RecursionError:
                self.truncated = True
            if frozenset(self.roots[f.id]) == roots_before:
                break
        ret = act.ret if act.ret is not None else EMPTY
        effects = {}
        for i, name in enumerate(f.params):
            if name in act.rebound or name not in params:
                continue
            before, after = params[name], act.env.get(name)
            if after is None or after is before:
                continue
            added = {k: c for k, c in after.labels.items() if k not in before.labels}
            if added:
                effects[i] = V(added)
        tparams = {i for i, name in enumerate(f.params) if name in self.roots[f.id]}
        events, seen = [], set()
        for ev in act.events:
            k = ev.key()
            if k not in seen:
                seen.add(k)
                events.append(ev)
        summ = Summary(ret=ret, events=events, target_params=tparams, effects=effects)
        return summ

    def _prescan_targets(self, f: FuncInfo) -> None:
        """Cross-entropy targets seen in the source, so that most functions need a single pass."""
        for node in f.all_nodes():
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            tail = fn.attr if isinstance(fn, ast.Attribute) else (fn.id if isinstance(fn, ast.Name) else "")
            if tail in lib.CROSS_ENTROPY:
                target = node.args[1] if len(node.args) > 1 else lib.kw(node, "target")
                root = _target_root(target) if target is not None else None
                if root:
                    self.roots[f.id].add(root)

    def call_user(
        self,
        act: Act,
        f: FuncInfo,
        node: ast.Call,
        args: list[V],
        kwargs: dict[str, V],
        self_val: V | None = None,
        arg_nodes: list[ast.expr] | None = None,
    ) -> V:
        params = self._bind_params(f, node, args, kwargs, self_val)
        versions = self._state_versions(params.values())
        key = (f.id, tuple(sorted((k, sig(v)) for k, v in params.items())), len(self.roots[f.id]), versions)
        self.edges[f.id].append(Edge(act.func, node, tuple(act.guards), tuple(act.loops)))
        if key in self.active:
            return combine(list(params.values()))
        summ = self.memo.get(key)
        if summ is None:
            prior = self.by_func.get(f.id, [])
            if self.steps > self.budget and prior:
                # out of budget: data dependence on the arguments only, no events (reported)
                self.truncated = True
                summ = Summary(
                    ret=V(combine(list(params.values())).labels, objs=prior[-1].ret.objs),
                    events=[],
                    target_params=prior[-1].target_params,
                    effects={},
                )
            else:
                self.active.add(key)
                try:
                    summ = self.analyze(f, params)
                finally:
                    self.active.discard(key)
                if len(prior) < MAX_CONTEXTS:
                    self.memo[key] = summ
                    self.by_func[f.id].append(summ)
        self._after_call(act, f, node, summ, arg_nodes, self_val is not None)
        ret = summ.ret
        if ret.labels:
            ret = ret.stepped(Step(act.func.file.idx, node.lineno, "via", f"returned by {f.name}()"))
        return ret

    def _state_versions(self, vals) -> tuple:
        """Versions of the object state a call can read: the classes of the instances it receives and,
        transitively, of the instances stored in their fields (a loader holding a token stream)."""
        todo = [o[1] for v in vals for o in v.objs if o[0] in ("inst", "class")]
        if not todo:
            return ()
        seen: dict[int, int] = {}
        while todo and len(seen) < 32:
            c = todo.pop()
            if id(c) in seen:
                continue
            seen[id(c)] = self.class_version.get(id(c), 0)
            todo.extend(self.field_classes.get(id(c), {}).values())
        return tuple(sorted(seen.items()))

    def _bind_params(self, f, node, args, kwargs, self_val) -> dict[str, V]:
        params: dict[str, V] = {}
        names = list(f.params)
        pos = list(args)
        if self_val is not None and f.kind in ("method", "classmethod") and names:
            params[names[0]] = self_val
            names = names[1:]
        line = getattr(node, "lineno", f.line)
        for name, v in zip(names, pos):
            params[name] = self._into(v, f, name, node, line)
        if len(pos) > len(names) and f.vararg:
            params[f.vararg] = join(*pos[len(names) :]).only_data()
        for k, v in kwargs.items():
            if k is None:
                for name in names:
                    params.setdefault(name, v.only_data())
            elif k in names or k in f.params:
                params[k] = self._into(v, f, k, node, line)
            elif f.kwarg:
                params[f.kwarg] = join(params.get(f.kwarg, EMPTY), v.only_data())
        for name, default in self._defaults(f).items():
            params.setdefault(name, default)
        return params

    def _defaults(self, f: FuncInfo) -> dict[str, V]:
        """Constant default values of parameters (a shard path default is a source too)."""
        hit = self._default_cache.get(f.id)
        if hit is not None:
            return hit
        out: dict[str, V] = {}
        a = getattr(f.node, "args", None)
        if isinstance(a, ast.arguments):
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            tmp = Act(func=f, env={})
            for arg, d in pairs:
                if isinstance(d, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    v = self.eval_quiet(tmp, d)
                    if v.labels or v.const is not NOCONST:
                        out[arg.arg] = v
        self._default_cache[f.id] = out
        return out

    def _into(self, v: V, f: FuncInfo, name: str, node, line: int) -> V:
        if v.labels:
            caller_file = getattr(node, "_pg_file", None)
            v = v.stepped(
                Step(
                    caller_file if caller_file is not None else f.file.idx,
                    line,
                    "via",
                    f"passed as {name} to {f.name}()",
                )
            )
        return v

    def _after_call(
        self,
        act: Act,
        f: FuncInfo,
        node: ast.Call,
        summ: Summary,
        arg_nodes: list[ast.expr] | None,
        bound: bool,
    ) -> None:
        # parameters the callee uses as the cross-entropy target make our arguments targets too
        if summ.target_params and arg_nodes is not None:
            offset = 1 if bound and f.kind in ("method", "classmethod") else 0
            for i in summ.target_params:
                j = i - offset
                expr = None
                if 0 <= j < len(node.args):
                    expr = node.args[j]
                else:
                    pname = f.params[i] if i < len(f.params) else None
                    expr = lib.kw(node, pname) if pname else None
                if expr is not None:
                    self._add_root(act, expr)
        # in-place effects on mutable arguments (an accumulator passed to a helper)
        for i, eff in summ.effects.items():
            offset = 1 if bound and f.kind in ("method", "classmethod") else 0
            j = i - offset
            expr = node.args[j] if 0 <= j < len(node.args) else None
            if expr is None and i < len(f.params):
                expr = lib.kw(node, f.params[i])
            if expr is not None:
                self._mutate(act, expr, eff)
        if summ.events:
            outer = self.frame(act)
            for ev in summ.events:
                act.events.append(ev.rebased(outer, self._next()))

    def frame(self, act: Act) -> Frame:
        return Frame(
            act.func,
            act.stmt if act.stmt is not None else act.func.node,
            tuple(act.loops),
            tuple(act.guards),
            act.nograd > 0,
        )

    def emit(self, act: Act, kind: str, node: ast.AST, labels: dict, **info) -> Event:
        ev = Event(
            kind,
            node,
            act.func.file,
            getattr(node, "lineno", 0),
            labels,
            (self.frame(act),),
            self._next(),
            info,
        )
        act.events.append(ev)
        return ev

    # ==============================================================================================
    # statements
    def exec_block(self, act: Act, stmts: list[ast.stmt]) -> bool:
        """Run statements; True when every path through them ends (return/raise/continue/break)."""
        pushed = 0
        check_budget()  # a record's wall-clock budget (auditor/budget.py), at a safe point
        try:
            for s in stmts:
                self.steps += 1
                act.stmt = s
                end = self.exec_stmt(act, s)
                if end is True:
                    return True
                if isinstance(end, Guard):  # the rest of the block runs only under this guard
                    act.guards.append(end)
                    pushed += 1
            return False
        finally:
            for _ in range(pushed):
                act.guards.pop()

    def exec_stmt(self, act: Act, s: ast.stmt):
        t = type(s)
        if t is ast.Expr:
            self.eval(act, s.value)
        elif t is ast.Assign:
            self.exec_assign(act, s)
        elif t is ast.AugAssign:
            self.exec_augassign(act, s)
        elif t is ast.AnnAssign:
            if s.value is not None:
                v = self.eval(act, s.value)
                self.assign(act, s.target, v, s)
        elif t is ast.If:
            return self.exec_if(act, s)
        elif t in (ast.For, ast.AsyncFor):
            self.exec_for(act, s)
        elif t is ast.While:
            self.exec_while(act, s)
        elif t in (ast.With, ast.AsyncWith):
            return self.exec_with(act, s)
        elif t is ast.Return:
            v = self.eval(act, s.value) if s.value is not None else EMPTY
            if v.labels:
                v = v.stepped(Step(act.func.file.idx, s.lineno, "via", "returned"))
                for item in v.items if v.items is not None else (v,):  # each returned value apart
                    if (item.has(ATT) and not item.agg) or item.has(SEL):
                        self.emit(act, "ret", s, item.labels)
            act.ret = v if act.ret is None else join(act.ret, v)
            return True
        elif t in (ast.FunctionDef, ast.AsyncFunctionDef):
            f = self.p.func_by_node.get(id(s))
            if f is not None:
                for d in s.decorator_list:
                    self.eval(act, d)
                self.store_name(act, s.name, V(objs=frozenset({("func", f)})), s)
        elif t is ast.ClassDef:
            self.exec_class(act, s)
        elif t in (ast.Import, ast.ImportFrom):
            self.exec_import(act, s)
        elif t is ast.Try or t.__name__ == "TryStar":
            return self.exec_try(act, s)
        elif t is ast.Raise:
            if s.exc is not None:
                self.eval(act, s.exc)
            return True
        elif t in (ast.Continue, ast.Break):
            if act.pending:
                act.pending[-1].append(dict(act.env))
            return True
        elif t is ast.Global or t is ast.Nonlocal:
            act.globals.update(s.names)
        elif t is ast.Assert:
            self.eval(act, s.test)
        elif t is ast.Delete:
            pass
        elif t is ast.Match:
            subj = self.eval(act, s.subject)
            envs = []
            base = dict(act.env)
            for case in s.cases:
                act.env = dict(base)
                if isinstance(case.pattern, ast.MatchAs) and case.pattern.name:
                    self.store_name(act, case.pattern.name, subj, s)
                if not self.exec_block(act, case.body):
                    envs.append(act.env)
            act.env = self._join_envs([base] + envs)
        return None

    def exec_assign(self, act: Act, s: ast.Assign) -> None:
        v = self.eval(act, s.value)
        if act.ctrl:
            v = self._with_ctrl(act, v)
        # running best over passes: X = min(X, ...) / X[i] = torch.minimum(X[i], ...)
        if isinstance(s.value, ast.Call) and len(s.targets) == 1:
            self._check_running_best(act, s, s.targets[0], s.value, v)
        # acc = acc + x is an accumulation
        if (
            len(s.targets) == 1
            and isinstance(s.targets[0], ast.Name)
            and isinstance(s.value, ast.BinOp)
            and isinstance(s.value.op, (ast.Add, ast.Sub))
        ):
            name = s.targets[0].id
            for side in (s.value.left, s.value.right):
                if isinstance(side, ast.Name) and side.id == name:
                    other = s.value.right if side is s.value.left else s.value.left
                    self._maybe_score(act, s, s.targets[0], self.eval_quiet(act, other), other)
                    break
        for target in s.targets:
            self.assign(act, target, v, s)

    def exec_augassign(self, act: Act, s: ast.AugAssign) -> None:
        v = self.eval(act, s.value)
        if act.ctrl:
            v = self._with_ctrl(act, v)
        target = s.target
        if isinstance(s.op, (ast.Add, ast.Sub)):
            self._maybe_score(act, s, target, v, s.value)
        if isinstance(target, ast.Subscript):
            idx = self.eval_index(act, target.slice)
            self._table_write(act, s, target.value, idx, v)
            if isinstance(s.op, ast.Mult) and v.has(TEQ):
                v = self._op_result(act, s, self.eval(act, target.value), v, s.op)  # nll[i] *= mask
            self._mutate(act, target.value, combine([v, idx.without(FINE)]) if idx.has_any((VAL, TGT)) else v)
        elif isinstance(target, ast.Name):
            old = self.load_name(act, target.id)
            new = join(old, self._op_result(act, s, old, v, s.op))
            new = new.stepped(Step(act.func.file.idx, s.lineno, "via"))
            if target.id in act.params and target.id not in act.rebound:
                act.env[target.id] = new  # an in-place update of a parameter (tensor +=)
            else:
                self.store_name(act, target.id, new, s, mutate=True)
        elif isinstance(target, ast.Attribute):
            old = self.eval(act, target)
            self.store_attr(act, target, join(old, v), s)

    def exec_if(self, act: Act, s: ast.If):
        test = self.eval(act, s.test)
        base = dict(act.env)
        ctrl = self._ctrl_labels(test)
        g_then = Guard(s.test, True, act.func, s.lineno, s)
        g_else = Guard(s.test, False, act.func, s.lineno, s)
        if ctrl:
            act.ctrl.append(ctrl)
        act.guards.append(g_then)
        t1 = self.exec_block(act, s.body)
        act.guards.pop()
        env_then = act.env
        act.env = dict(base)
        act.guards.append(g_else)
        t2 = self.exec_block(act, s.orelse) if s.orelse else False
        act.guards.pop()
        env_else = act.env
        if ctrl:
            act.ctrl.pop()
        if t1 and t2:
            act.env = self._join_envs([env_then, env_else])
            return True
        if t1:
            act.env = env_else
            return g_else
        if t2:
            act.env = env_then
            return g_then
        act.env = self._join_envs([env_then, env_else])
        return None

    def exec_for(self, act: Act, s) -> None:
        it = self.eval(act, s.iter)
        elt = self.element(act, s.iter, it)
        act.loops.append(s)
        act.pending.append([])
        for _ in range(self._rounds(s)):
            before = dict(act.env)
            act.stmt = s
            self.assign(act, s.target, elt, s)
            self.exec_block(act, s.body)
            act.env = self._join_envs([before, act.env] + act.pending[-1])
            act.pending[-1] = []
        act.pending.pop()
        act.loops.pop()
        if s.orelse:
            self.exec_block(act, s.orelse)

    def _rounds(self, loop: ast.AST) -> int:
        """Two rounds when a value written late in the body is read early in the next iteration."""
        hit = self._round_cache.get(id(loop))
        if hit is None:
            hit = LOOP_ROUNDS if _loop_carried(loop.body) else 1
            self._round_cache[id(loop)] = hit
        return hit

    def exec_while(self, act: Act, s: ast.While) -> None:
        act.loops.append(s)
        act.pending.append([])
        for _ in range(self._rounds(s)):
            before = dict(act.env)
            act.stmt = s
            self.eval(act, s.test)
            self.exec_block(act, s.body)
            act.env = self._join_envs([before, act.env] + act.pending[-1])
            act.pending[-1] = []
        act.pending.pop()
        act.loops.pop()
        if s.orelse:
            self.exec_block(act, s.orelse)

    def exec_with(self, act: Act, s):
        nograd = 0
        for item in s.items:
            v = self.eval(act, item.context_expr)
            ctx_fn = item.context_expr.func if isinstance(item.context_expr, ast.Call) else item.context_expr
            name = self._callee_name(act, ctx_fn)
            if name and name.endswith(("no_grad", "inference_mode")):
                nograd += 1
            if item.optional_vars is not None:
                self.assign(act, item.optional_vars, v, s)
        act.nograd += nograd
        try:
            return True if self.exec_block(act, s.body) else None
        finally:
            act.nograd -= nograd

    def exec_try(self, act: Act, s):
        base = dict(act.env)
        t_body = self.exec_block(act, s.body)
        if not t_body and s.orelse:
            t_body = self.exec_block(act, s.orelse)
        envs = [act.env] if not t_body else []
        for h in s.handlers:
            act.env = self._join_envs([base, act.env])
            if h.name:
                self.store_name(act, h.name, EMPTY, s)
            if not self.exec_block(act, h.body):
                envs.append(act.env)
        act.env = self._join_envs(envs or [base])
        if s.finalbody:
            self.exec_block(act, s.finalbody)
        return True if (t_body and not envs) else None

    def exec_class(self, act: Act, s: ast.ClassDef) -> None:
        cls = next((c for c in self.p.classes if c.node is s), None)
        if cls is None:
            return
        self.store_name(act, s.name, V(objs=frozenset({("class", cls)})), s)
        body = cls.body_func
        if body is None or body.id in self.analyzed:
            return
        self.analyzed.add(body.id)
        cact = Act(func=body, env={})
        self.last_act[body.id] = cact
        self.exec_block(cact, s.body)
        for name, v in cact.env.items():
            if name in cls.methods and all(o[0] == "func" for o in v.objs):
                continue  # methods are looked up through the class, bound to the instance
            self._field_store(cls, name, v)
        for ev in cact.events:
            act.events.append(ev.rebased(self.frame(act), self._next()))

    def exec_import(self, act: Act, s) -> None:
        imports: dict[str, str] = {}
        record_import(imports, s)
        for alias, target in imports.items():
            self.store_name(act, alias, self.import_value(target), s)

    def import_value(self, target: str) -> V:
        mod, _, name = target.rpartition(".")
        f = self.p.module_file(target)
        if f is not None and f.module == target.rsplit(".", 1)[-1] and not name:
            self.run_module(f)
            return V(objs=frozenset({("file", f)}))
        if f is not None and "." not in target:
            self.run_module(f)
            return V(objs=frozenset({("file", f)}))
        fm = self.p.module_file(mod) if mod else None
        if fm is not None:
            env = self.run_module(fm)
            if name in env:
                return env[name]
            if name in fm.functions:
                return V(objs=frozenset({("func", fm.functions[name])}))
            if name in fm.classes:
                return V(objs=frozenset({("class", fm.classes[name])}))
        return V(objs=frozenset({("mod", target)}))

    # ==============================================================================================
    # binding
    def assign(self, act: Act, target: ast.AST, v: V, s: ast.AST) -> None:
        t = type(target)
        if t is ast.Name:
            if v.labels and getattr(s, "lineno", None):
                v = v.stepped(Step(act.func.file.idx, s.lineno, "via"))
            self.store_name(act, target.id, v, s)
        elif t in (ast.Tuple, ast.List):
            elts = target.elts
            items = getattr(v, "items", None)
            for i, elt in enumerate(elts):
                if isinstance(elt, ast.Starred):
                    self.assign(act, elt.value, v.only_data(), s)
                elif items is not None and len(items) == len(elts):
                    self.assign(act, elt, items[i], s)
                else:
                    self.assign(act, elt, self._element_of(v), s)
        elif t is ast.Attribute:
            self.store_attr(act, target, v, s)
        elif t is ast.Subscript:
            idx = self.eval_index(act, target.slice)
            if isinstance(s, ast.Assign):
                self._maybe_score(act, s, target, v, s.value, store=True)
            self._table_write(act, s, target.value, idx, v)
            add = v.without({TOK})
            if idx.has_any((VAL, TGT, TMIX)):
                add = combine([add, idx.without(FINE)])
            self._mutate(act, target.value, add)
        elif t is ast.Starred:
            self.assign(act, target.value, v, s)

    def store_name(self, act: Act, name: str, v: V, s: ast.AST | None, mutate: bool = False) -> None:
        if name in act.globals and act.func.kind != "module":
            env = self.module_env.setdefault(act.func.file.idx, {})
            env[name] = join(env.get(name, EMPTY), v)
            return
        if self.roots[act.func.id] and name in self.roots[act.func.id]:
            v = self._seed_target(act, name, v, getattr(s, "lineno", 0))
        act.env[name] = v
        if s is not None:
            act.bind[name] = s
        if not mutate and name in act.params:
            act.rebound.add(name)

    def store_attr(self, act: Act, target: ast.Attribute, v: V, s: ast.AST) -> None:
        if target.attr == "requires_grad" and v.const is True and self._created_here(act, target.value):
            self._mutate(
                act,
                target.value,
                V(
                    {
                        LOCALPARAM: (
                            Step(
                                act.func.file.idx,
                                getattr(s, "lineno", 0),
                                "source",
                                "per-call trainable tensor",
                            ),
                        )
                    }
                ),
            )
            return
        recv = self.eval(act, target.value)
        if v.labels and getattr(s, "lineno", None):
            v = v.stepped(Step(act.func.file.idx, s.lineno, "via"))
        classes = [o[1] for o in recv.objs if o[0] in ("inst", "class")]
        for cls in classes:
            self._field_store(cls, target.attr, v)
        if not classes:
            for o in recv.objs:
                if o[0] == "file":
                    env = self.module_env.setdefault(o[1].idx, {})
                    env[target.attr] = join(env.get(target.attr, EMPTY), v)
        self.attr_any[target.attr] = join(self.attr_any.get(target.attr, EMPTY), v)
        d = dotted(target)
        if d:
            act.env[d] = v
            act.bind[d] = s

    def _field_store(self, cls, attr: str, v: V) -> None:
        key = (id(cls), attr)
        old = self.fields.get(key)
        new = v if old is None else join(old, v)
        self.fields[key] = new
        inner = [o[1] for o in v.objs if o[0] in ("inst", "class") and o[1] is not cls]
        if inner:
            self.field_classes.setdefault(id(cls), {}).update((id(c), c) for c in inner)
        if old is None or set(new.labels) != set(old.labels) or new.objs != old.objs:
            # methods analyzed before this change may read the field differently now
            self.class_version[id(cls)] = self.class_version.get(id(cls), 0) + 1
        self.attr_any[attr] = join(self.attr_any.get(attr, EMPTY), v)

    def _mutate(self, act: Act, expr: ast.AST, add: V) -> None:
        """Labels flowing into a container or object in place (x[i] = v, x.add_(v), x.append(v))."""
        if not add.labels:
            return
        add = V({k: c for k, c in add.labels.items() if k != TOK}, agg=add.agg)
        base = expr
        while isinstance(base, (ast.Subscript, ast.Starred)):
            base = base.value
        while (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Attribute)
            and base.func.attr in lib.IDENTITY_METHODS
        ):
            base = base.func.value
        if isinstance(base, ast.Name):
            old = self.load_name(act, base.id)
            new = join(old, add)
            if base.id in act.env or base.id in act.params:
                act.env[base.id] = new
            elif base.id in act.globals or base.id in self.module_env.get(act.func.file.idx, {}):
                env = self.module_env.setdefault(act.func.file.idx, {})
                env[base.id] = join(env.get(base.id, EMPTY), add)
            else:
                self._mutate_closure(act, base.id, add)
            if self.roots[act.func.id] and base.id in self.roots[act.func.id]:
                act.env[base.id] = self._seed_target(act, base.id, act.env.get(base.id, new), expr.lineno)
        elif isinstance(base, ast.Attribute):
            if add.has(TRAIN):  # training statistics kept in an object's table, not training batches
                step = Step(act.func.file.idx, getattr(act.stmt or base, "lineno", 0), "via", TABLE_NOTE)
                add = V({**add.labels, TRAIN: extend(add.labels[TRAIN], step)}, agg=add.agg)
            old = self.eval_quiet(act, base)
            self.store_attr(act, base, join(old, add), act.stmt or base)

    def _choice_at_target(
        self, act: Act, node: ast.Call, tail: str, is_method: bool, recv: V | None, args: list[V], kwargs: dict
    ) -> V | None:
        """``losses.argmin(dim=0)`` / ``np.min(nll, axis=0)`` over values *at the target* (per-token
        losses of several predictors or passes): picking, per token, the predictor that scored the
        realized token best. The index (or the minimum) depends on x_t: GATE."""
        base = recv if is_method else (args[0] if args else None)
        rest = list(args) if is_method else list(args[1:])
        if base is None or base.agg or not base.has_any((ATT, TKEY)):
            return None
        axis = kwargs.get("dim", kwargs.get("axis"))
        if axis is None and rest:
            axis = rest[0]
        # min/max: an axis reduction only; min(a, b) of two tensors is element-wise (handled elsewhere)
        reduces_axis = axis is not None and isinstance(axis.const, int) and not isinstance(axis.const, bool)
        if tail in ("min", "max", "amin", "amax") and not reduces_axis:
            return None
        src = base.labels.get(ATT) or base.labels[TKEY]
        step = Step(act.func.file.idx, node.lineno, "via", "comparison of target-dependent values")
        labels = {k: c for k, c in base.labels.items() if k not in (DIST, TOK)}
        labels[GATE] = extend(src, step)
        if tail.startswith(("arg", "nanarg")):
            labels.pop(ATT, None)  # an index into the predictors, not a score itself
            labels.pop(TKEY, None)
        out = V(labels)
        # torch's min/max along a dim return (values, indices)
        return _with_items(out, (out, V({GATE: labels[GATE]}))) if tail in ("min", "max") and is_method else out

    def _append_tuple(self, act: Act, name: str, before: V, item: V) -> None:
        """``name.append(item)``: a list that only ever receives tuples of one size keeps, per
        position, what its tuples hold (``V.elem``); anything else appended ends that structure."""
        carries = item.labels or item.objs or item.items is not None
        if not carries:  # appending None / a constant: nothing to track, the structure stays
            elem = before.elem
        elif item.items is None or len(item.items) > 16:
            return
        elif before.elem is not None and len(before.elem) == len(item.items):
            elem = tuple(join(a, b) for a, b in zip(before.elem, item.items))
        elif before.elem is None and not before.labels and not before.objs:
            elem = tuple(item.items)  # the first tuple into a fresh list
        else:
            return
        if elem is None:
            return
        cur = act.env.get(name)
        if cur is None or (name not in act.env and name not in act.params):
            return
        act.env[name] = V(cur.labels, cur.objs, cur.form, cur.const, cur.agg, cur.items, elem)

    def _mutate_closure(self, act: Act, name: str, add: V) -> None:
        f = act.func.parent
        while f is not None:
            a = self.last_act.get(f.id)
            if a is not None and name in a.env:
                a.env[name] = join(a.env[name], add)
                return
            f = f.parent

    def _seed_target(self, act: Act, name: str, v: V, line: int) -> V:
        if v.has(TGT):
            return v
        chain = (
            Step(
                act.func.file.idx,
                line or act.func.line,
                "source",
                f"`{name}` holds the realized target tokens (used as the cross-entropy target)",
            ),
        )
        return v.with_label(TGT, chain)

    def _add_root(self, act: Act, expr: ast.AST) -> None:
        root = _target_root(expr)
        if root is None:
            return
        fid = act.func.id
        if root not in self.roots[fid]:
            self.roots[fid].add(root)

    # ==============================================================================================
    # events from statements
    def _maybe_score(
        self, act: Act, s: ast.stmt, target: ast.AST, v: V, value_node: ast.AST | None, store: bool = False
    ) -> None:
        """An accumulation of a per-token loss into a persistent variable: a committed score
        (a model value at the target, or a probability looked up for the target)."""
        if v.items is not None:
            # ``stats += stack([nll.sum(), n_tokens, n_bytes])``: only the loss slots are the score;
            # the counts beside them are accounting of the realized text.
            scored = [i for i in v.items if i.has(ATT) or i.has(TKEY) or (i.has(CALLRES) and i.has(VAL))]
            if scored:
                v = join(*scored)
        if not (v.has(ATT) or v.has(TKEY) or (v.has(CALLRES) and v.has(VAL))):
            return
        if store and not isinstance(target, ast.Subscript):
            return
        if not self._persistent(act, target):
            return
        binds = []  # where the accumulated score was computed, when that happened earlier
        if value_node is not None:
            for name in names_in(value_node):
                b = act.bind.get(name)
                held = act.env.get(name)
                if b is not None and b is not s and held is not None and held.has_any((ATT, TKEY)):
                    binds.append(b)
        labels = v.labels
        root = _root_name(target)
        rep = self._reported(act, target, root)
        self.emit(
            act,
            "score",
            s,
            labels,
            acc=root,
            binds=binds,
            strict=v.has(ATT) and v.has(VAL),
            agg=v.agg,
            store=store,
            reported=rep[0],
            returned=rep[1],
            in_module=self._in_module(act.func),
            detached=_detached(s) or any(_detached(b) for b in binds),
        )

    def _in_module(self, func: FuncInfo) -> bool:
        """A method of an ``nn.Module`` subclass: model internals compute losses, they do not
        commit the evaluation's scores."""
        cls = func.cls
        if cls is None:
            return False
        bases = self.p.library_bases(cls)
        return any(b.endswith(("Module", ".Linear", "Embedding")) for b in bases)

    def _reported(self, act: Act, target: ast.AST, root: str | None) -> tuple[bool, bool]:
        """(reported, returned): the accumulator leaves the function as a result - returned
        (directly or through values computed from it), printed/logged, an attribute, a parameter
        the caller passed in, or a global. Returned means the function hands it to its caller."""
        base = target
        while isinstance(base, ast.Subscript):
            base = base.value
        if isinstance(base, ast.Attribute) or root is None:
            return True, True
        if root in act.params or root in act.globals:
            return True, True
        func = act.func
        if func.kind == "module":
            return True, True
        rets, logged = self._result_names.get(func.id, (None, None))
        if rets is None:
            rets, logged = set(), set()
            for node in func.all_nodes():
                if isinstance(node, (ast.Return, ast.Yield)) and node.value is not None:
                    rets |= names_in(node.value)
                elif isinstance(node, ast.Call):
                    fname = (dotted(node.func) or "").lower()
                    if any(w in fname for w in ("log", "print", "write", "info")):
                        for a in list(node.args) + [k.value for k in node.keywords]:
                            logged |= names_in(a)
            self._result_names[func.id] = (rets, logged)
        returned = bool(rets) and depends_on(func, rets, {root})
        reported = returned or (bool(logged) and depends_on(func, logged, {root}))
        return reported, returned

    def _persistent(self, act: Act, target: ast.AST) -> bool:
        base = target
        while isinstance(base, ast.Subscript):
            base = base.value
        if isinstance(base, ast.Attribute):
            return True
        if not isinstance(base, ast.Name):
            return False
        name = base.id
        if name in act.params or name in act.globals:
            return True
        b = act.bind.get(name)
        if b is None:
            return True
        if not act.loops:
            return True
        innermost = act.loops[-1]
        parents = act.func.parents()
        node = b
        while node is not None:
            if node is innermost:
                return False
            node = parents.get(id(node))
        return True

    def _table_write(self, act: Act, s: ast.AST, table: ast.AST, idx: V, v: V) -> None:
        """``table[key] (+)= v`` with a key derived from validation data: state keyed by tokens."""
        if not idx.has_any((VAL, TGT, TMIX)) or idx.agg:
            return
        if idx.form is not None and not idx.has_any((TGT, TMIX, TOK)):
            # Written at positions (which ones may depend on the data), not at token values: a
            # per-position buffer (``best_p[fill_idx] = p``), not state keyed by what was seen.
            return
        if not self._persistent(act, table):
            return
        labels = dict(idx.labels)
        self.emit(act, "update", s, labels, table=_root_name(table) or dotted(table), how="store")
        self._mark_state(act, table, s)

    def _mark_state(self, act: Act, table: ast.AST, s: ast.AST) -> None:
        chain = (
            Step(
                act.func.file.idx,
                getattr(s, "lineno", 0),
                "source",
                "table written with validation-derived keys",
            ),
        )
        self._mutate(act, table, V({STATE: chain}))

    def _check_running_best(self, act: Act, s: ast.Assign, target: ast.AST, call: ast.Call, v: V) -> None:
        name = self._callee_name(act, call.func)
        if not name or lib.last(name) not in ("min", "max", "minimum", "maximum", "fmin", "fmax"):
            return
        troot = _root_name(target)
        if troot is None or not v.has(ATT):
            return
        own = [a for a in call.args if _root_name(a) == troot]
        others = [a for a in call.args if _root_name(a) != troot]
        # a running best needs another score to compare with (a clamp to a constant is not one)
        if own and any(self.eval_quiet(act, a).has(ATT) for a in others):
            self.emit(act, "best", s, v.labels, acc=troot, how=lib.last(name))

    # ==============================================================================================
    # expressions
    def eval_quiet(self, act: Act, node: ast.AST) -> V:
        """Evaluate for labels only: no events (re-evaluating an already evaluated expression)."""
        saved = act.events
        act.events = []
        order = self.order
        try:
            return self.eval(act, node)
        finally:
            act.events = saved
            self.order = order

    def eval(self, act: Act, node: ast.AST | None) -> V:
        if node is None:
            return EMPTY
        self.steps += 1
        meth = _DISPATCH.get(type(node))
        if meth is None:
            for child in ast.iter_child_nodes(node):
                self.eval(act, child)
            return EMPTY
        return meth(self, act, node)

    def e_constant(self, act: Act, node: ast.Constant) -> V:
        value = node.value
        if isinstance(value, str) and len(value) < 4096:
            labels = {}
            if lib.is_val_path(value):
                labels[VALPATH] = (Step(act.func.file.idx, node.lineno, "source", "validation shard path"),)
            elif lib.is_train_path(value):
                labels[TRAINPATH] = (Step(act.func.file.idx, node.lineno, "source", "training shard path"),)
            return V(labels, const=value)
        if isinstance(value, (int, float, bool)) or value is None:
            return V(const=value, form=(value, False, False) if type(value) is int else None)
        return EMPTY

    def e_name(self, act: Act, node: ast.Name) -> V:
        return self.load_name(act, node.id)

    def load_name(self, act: Act, name: str) -> V:
        v = act.env.get(name)
        if v is not None:
            return v
        f = act.func.parent
        while f is not None:
            a = self.last_act.get(f.id)
            if a is not None and name in a.env:
                return a.env[name]
            f = f.parent
        info = act.func.file
        menv = self.module_env.get(info.idx)
        if menv is not None and name in menv:
            return menv[name]
        if name in info.functions:
            return V(objs=frozenset({("func", info.functions[name])}))
        if name in info.classes:
            return V(objs=frozenset({("class", info.classes[name])}))
        if name in info.imports:
            return self.import_value(info.imports[name])
        if name in _BUILTIN_MODS:
            return V(objs=frozenset({("mod", name)}))
        return EMPTY

    def e_attribute(self, act: Act, node: ast.Attribute) -> V:
        d = dotted(node)
        if d is not None and d in act.env:
            return act.env[d]
        recv = self.eval(act, node.value)
        return self.load_attr(act, recv, node.attr, node)

    def load_attr(self, act: Act, recv: V, attr: str, node: ast.AST | None = None) -> V:
        out = []
        for o in recv.objs:
            kind = o[0]
            if kind == "mod":
                out.append(V(objs=frozenset({("mod", f"{o[1]}.{attr}")})))
            elif kind == "file":
                env = (
                    self.run_module(o[1])
                    if o[1].idx not in self.module_running
                    else self.module_env[o[1].idx]
                )
                if attr in env:
                    out.append(env[attr])
                elif attr in o[1].functions:
                    out.append(V(objs=frozenset({("func", o[1].functions[attr])})))
                elif attr in o[1].classes:
                    out.append(V(objs=frozenset({("class", o[1].classes[attr])})))
            elif kind in ("inst", "class", "super"):
                cls = o[1]
                mro = self.p.class_mro(cls)
                if kind == "super":
                    mro = mro[1:]
                    kind = "inst"
                found = False
                for c in mro:
                    fv = self.fields.get((id(c), attr))
                    if fv is not None:
                        out.append(fv)
                        found = True
                        break
                    m = c.methods.get(attr)
                    if m is not None:
                        if m.kind == "staticmethod" or kind == "class" and m.kind != "classmethod":
                            out.append(V(objs=frozenset({("func", m)})))
                        else:
                            selfref = ("inst", o[1]) if o[0] != "class" else ("class", o[1])
                            out.append(V(objs=frozenset({("meth", m, selfref)})))
                        found = True
                        break
                if not found and attr in self.attr_any:
                    out.append(self.attr_any[attr])
        if out:
            return join(*out)
        if attr in lib.META:
            return EMPTY
        if attr in ("T", "mT", "data", "real", "H"):
            return recv.only_data() if not recv.objs else V(recv.labels)
        if not recv.objs and attr in self.attr_any and not recv.labels:
            return self.attr_any[attr]
        return V(recv.labels) if recv.labels else EMPTY

    def e_subscript(self, act: Act, node: ast.Subscript) -> V:
        base = self.eval(act, node.value)
        sl = node.slice
        items = getattr(base, "items", None)
        if (
            items is not None
            and isinstance(sl, ast.Constant)
            and isinstance(sl.value, int)
            and -len(items) <= sl.value < len(items)
        ):
            return items[sl.value]
        if isinstance(sl, ast.Slice) or _all_slices(sl):
            return self._slice_read(act, node, base, sl)
        idx = self.eval_index(act, sl)
        if base.elem is not None and not idx.labels:
            # One tuple of a list of tuples, picked by a plain index (a loop counter).
            return self._tuple_of(base)
        return self._index_read(act, node, base, idx, sl)

    @staticmethod
    def _tuple_of(lst: V) -> V:
        j = join(*lst.elem)
        return V(j.labels, j.objs, agg=j.agg, items=lst.elem)

    def eval_index(self, act: Act, sl: ast.AST) -> V:
        if isinstance(sl, ast.Tuple):
            vals = [self.eval(act, e) for e in sl.elts if not isinstance(e, ast.Slice)]
            for e in sl.elts:
                if isinstance(e, ast.Slice):
                    self.eval(act, e)
            if not vals:
                return EMPTY
            out = combine(vals, drop_fine_if_aggregates=False)
            forms = [v.form for v in vals if v.form is not None]
            if len(vals) == 1 and forms:
                out = V(out.labels, form=forms[0])
            return out
        if isinstance(sl, ast.Slice):
            self.eval(act, sl)
            return EMPTY
        return self.eval(act, sl)

    def e_slice(self, act: Act, node: ast.Slice) -> V:
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                self.eval(act, part)
        return EMPTY

    def _slice_read(self, act: Act, node: ast.Subscript, base: V, sl: ast.AST) -> V:
        if not base.labels:
            return V(form=base.form) if base.form is not None else EMPTY
        if base.has(TOK) or base.has(VAL):
            self.val_uses[act.func.id].append((names_in(sl), tuple(act.loops)))
        if isinstance(sl, ast.Slice):
            lower = self.eval(act, sl.lower) if sl.lower is not None else V(const=0, form=(0, False, False))
            if sl.upper is not None:
                self.eval(act, sl.upper)
            if base.has(TOK) and _aligned(lower, allow_const=True) and not base.has(TGT):
                chain = (
                    Step(
                        act.func.file.idx,
                        node.lineno,
                        "source",
                        "next-token slice of the validation stream (the targets)",
                    ),
                )
                return V(dict(base.labels), form=base.form).with_label(TGT, chain)
        else:
            self.eval(act, sl)
        return V(base.labels, form=base.form)

    def _index_read(self, act: Act, node: ast.Subscript, base: V, idx: V, sl: ast.AST) -> V:
        line = node.lineno
        fidx = act.func.file.idx
        labels = {k: c for k, c in base.labels.items() if k not in (TOK, DIST)}
        if base.has(DIST) and not idx.has_any((TGT, TMIX)):
            labels[DIST] = base.labels[DIST]
        if base.has(TOK) or base.has(VAL):
            self.val_uses[act.func.id].append((names_in(sl), tuple(act.loops)))
        if base.has(STATE) and idx.has(VAL) and not idx.agg:
            table_expr = node.value if isinstance(node, ast.Subscript) else getattr(node.func, "value", node)
            self.emit(act, "tread", node, {}, table=_root_name(table_expr))
        for k, c in idx.labels.items():
            if k in (TGT, TMIX, TEQ, TLUT, GATE, TOK):
                continue
            labels.setdefault(k, c)
        n_idx = len(sl.elts) if isinstance(sl, ast.Tuple) else 1
        target_idx = idx.has_any((TGT, TMIX)) and not idx.agg
        if idx.has(TPAIR) and not idx.has(TMIX) and not idx.agg:
            # an exact (context, target) cell of a flattened table: a distribution read at the target
            labels[ATT] = extend(idx.labels[TPAIR], Step(fidx, line, "via", "table row read at the target"))
            return V({k: c for k, c in labels.items() if k not in (TPAIR,)}, form=base.form, agg=base.agg)
        if base.has(TOK) and not target_idx and _aligned(idx):
            chain = (Step(fidx, line, "source", "validation token read at the next position (the target)"),)
            labels[TGT] = chain
            labels.setdefault(VAL, base.labels.get(VAL, chain))
            return V(labels)
        if target_idx:
            raw = idx.has(TGT) and not idx.has(TMIX)
            last_is_target = (
                isinstance(sl, ast.Tuple)
                and sl.elts
                and not isinstance(sl.elts[-1], ast.Slice)
                and _root_name(sl.elts[-1]) is not None
                and self.eval_quiet(act, sl.elts[-1]).has(TGT)
            )
            if raw and (base.has(DIST) or (n_idx >= 2 and last_is_target) or base.has(STATE)):
                labels[ATT] = extend(idx.labels[TGT], Step(fidx, line, "via", "model value at the target"))
            elif idx.has(TMIX) or (idx.has(TGT) and base.has(STATE) and not raw):
                src = idx.labels.get(TMIX) or idx.labels[TGT]
                labels[TKEY] = extend(
                    src, Step(fidx, line, "via", "table read with a key built from the target")
                )
                labels.pop(DIST, None)
            else:
                labels[TLUT] = extend(
                    idx.labels[TGT], Step(fidx, line, "via", "lookup on the realized token")
                )
        elif idx.has_any((TEQ, TLUT, GATE)) and not idx.agg:
            src = idx.labels.get(GATE) or idx.labels.get(TLUT) or idx.labels.get(TEQ)
            labels[GATE] = extend(src, Step(fidx, line, "via", "selection masked by a target-dependent test"))
        form = base.form if base.form is not None else None
        return V(labels, form=form, agg=base.agg)

    def e_binop(self, act: Act, node: ast.BinOp) -> V:
        left = self.eval(act, node.left)
        right = self.eval(act, node.right)
        return self._op_result(act, node, left, right, node.op)

    def _op_result(self, act: Act, node: ast.AST, left: V, right: V, op: ast.operator) -> V:
        if (
            isinstance(op, ast.Mult)
            and isinstance(node, ast.BinOp)
            and (
                isinstance(node.left, (ast.List, ast.Tuple, ast.ListComp))
                or isinstance(node.right, (ast.List, ast.Tuple, ast.ListComp))
            )
        ):
            return V(combine([left, right]).labels)  # [x] * n repeats a list; it computes nothing
        out = combine([left, right])
        line = getattr(node, "lineno", 0)
        fidx = act.func.file.idx
        # positions: keep an affine offset for +/- so that ``ws + s + 1`` is recognised
        form = None
        if isinstance(op, (ast.Add, ast.Sub)):
            lf, rf = _form_of(left), _form_of(right)
            if (
                lf is not None
                and rf is not None
                and not (left.labels and not left.form)
                and not (right.labels and not right.form)
            ):
                if isinstance(op, ast.Add):
                    form = (lf[0] + rf[0], lf[1] or rf[1], lf[2] or rf[2])
                else:
                    form = (lf[0] - rf[0], lf[1] or rf[2], lf[2] or rf[1])
        # constants (for paths and flags)
        const = NOCONST
        if left.const is not NOCONST and right.const is not NOCONST and isinstance(op, (ast.Add, ast.Mod)):
            try:
                if isinstance(left.const, str) and isinstance(right.const, str) and isinstance(op, ast.Add):
                    const = left.const + right.const
            except Exception:  # noqa: BLE001
                const = NOCONST
        labels = out.labels
        # the target mixed with non-constant data: a key built from the target. ``row * V + target``
        # (the target added with coefficient 1) is an exact (context, target) index into a flattened
        # 2-D table (TPAIR), not a hash; anything that scrambles it (xor, mask, modulo, a multiplier)
        # makes a hashed key (TMIX).
        for a, b in ((left, right), (right, left)):
            if (
                a.has(TPAIR)
                and not a.agg
                and isinstance(
                    op, (ast.Mod, ast.BitAnd, ast.BitXor, ast.Mult, ast.LShift, ast.RShift, ast.FloorDiv)
                )
            ):
                labels = dict(labels)
                labels.setdefault(
                    TMIX, extend(a.labels[TPAIR], Step(fidx, line, "via", "key computed from the target"))
                )
                labels.pop(TPAIR, None)
                break
            if (
                not a.has_any((TGT, TPAIR))
                or a.agg
                or b.const is not NOCONST
                or isinstance(op, (ast.Div, ast.Pow))
            ):
                continue
            labels = dict(labels)
            if isinstance(op, ast.Add) and not b.has_any((TGT, TPAIR, TMIX)) and not a.has(TMIX):
                src = a.labels.get(TPAIR) or a.labels[TGT]
                labels.setdefault(
                    TPAIR, extend(src, Step(fidx, line, "via", "index of the (context, target) pair"))
                )
                labels.pop(TMIX, None)
            elif TMIX not in labels:
                src = a.labels.get(TGT) or a.labels[TPAIR]
                labels[TMIX] = extend(src, Step(fidx, line, "via", "key computed from the target"))
            break
        # a target-keyed value blended with the model's value at the target (probability space)
        if isinstance(op, (ast.Add, ast.Sub, ast.Div)) and not out.agg:
            for a, b in ((left, right), (right, left)):
                if a.has(TKEY) and (b.has(ATT) or (isinstance(op, ast.Div) and a is left and b.has(VAL))):
                    labels = dict(labels)
                    labels.setdefault(
                        BLEND,
                        extend(
                            a.labels[TKEY],
                            Step(
                                fidx,
                                line,
                                "via",
                                "blended with the target probability"
                                if b.has(ATT)
                                else "ratio of table counts",
                            ),
                        ),
                    )
                    break
        # a score multiplied by a comparison of the target with a hint: the loss is switched per token on
        # whether the realized token equals some stored/predicted token (a paid-prefix "free" position)
        if isinstance(op, (ast.Mult, ast.BitAnd)) and not out.agg and GATE not in labels:
            for a, b in ((left, right), (right, left)):
                if a.has(TEQ) and not a.agg and b.has(ATT):
                    labels = dict(labels)
                    labels[GATE] = extend(
                        a.labels[TEQ], Step(fidx, line, "via", "masked by a target-dependent test")
                    )
                    break
        if isinstance(op, ast.Div):
            labels = _without_accounting(labels, left, right)
        # a model distribution shifted by target-dependent values before it is scored
        for a, b in ((left, right), (right, left)):
            if a.has(DIST) and not b.agg and b.has_any(TARGET_DERIVED | {ATT}) and not a.has(ATT):
                src = next(b.labels[k] for k in (TKEY, TLUT, TEQ, TMIX, TGT, ATT) if k in b.labels)
                labels = dict(labels)
                labels.setdefault(
                    TDIST,
                    extend(src, Step(fidx, line, "via", "target-dependent values added to the distribution")),
                )
                break
        return V(labels, form=form, const=const, agg=out.agg, items=self._items_op(act, node, left, right, op))

    def _items_op(self, act: Act, node: ast.AST, left: V, right: V, op: ast.operator) -> tuple[V, ...] | None:
        """Element-wise arithmetic keeps a stacked vector's elements apart (``stats / n``,
        ``acc + stack([...])``), so a byte count in one slot does not leak into the loss slot."""
        if isinstance(op, ast.Mult) and isinstance(node, ast.BinOp):
            return None  # ``[x] * n`` repeats a list: no element-wise meaning
        if left.items is not None and right.items is not None:
            if len(left.items) != len(right.items):
                return None
            return tuple(self._op_result(act, node, a, b, op) for a, b in zip(left.items, right.items))
        if left.items is not None and not right.labels and not right.objs:
            return tuple(self._op_result(act, node, a, right, op) for a in left.items)
        if right.items is not None and not left.labels and not left.objs:
            return tuple(self._op_result(act, node, left, b, op) for b in right.items)
        return None

    def e_unaryop(self, act: Act, node: ast.UnaryOp) -> V:
        v = self.eval(act, node.operand)
        if isinstance(node.op, ast.USub):
            form = (-v.form[0], v.form[2], v.form[1]) if v.form else None
            const = (
                -v.const if isinstance(v.const, (int, float)) and not isinstance(v.const, bool) else NOCONST
            )
            return V(v.labels, form=form, const=const, agg=v.agg)
        if isinstance(node.op, ast.Not):
            return V(v.labels, agg=v.agg)
        return V(v.labels, agg=v.agg)

    def e_boolop(self, act: Act, node: ast.BoolOp) -> V:
        return combine([self.eval(act, v) for v in node.values], drop_fine_if_aggregates=False)

    def e_compare(self, act: Act, node: ast.Compare) -> V:
        vals = [self.eval(act, node.left)] + [self.eval(act, c) for c in node.comparators]
        if all(isinstance(op, (ast.In, ast.NotIn, ast.Is, ast.IsNot)) for op in node.ops):
            return V(combine(vals, drop_fine_if_aggregates=False).without(FINE | {ATT}).labels)
        return self._compare_result(act, node, vals)

    def _compare_result(self, act: Act, node: ast.AST, vals: list[V]) -> V:
        out = combine(vals, drop_fine_if_aggregates=False)
        carriers = [v for v in vals if v.labels]
        line = getattr(node, "lineno", 0)
        fidx = act.func.file.idx
        labels = dict(out.labels)
        per_pos = [v for v in vals if not v.agg]
        gate_src = next(
            (v.labels[k] for v in per_pos for k in (ATT, TKEY, TLUT, GATE, BLEND) if k in v.labels), None
        )
        validity = any(
            isinstance(v.const, float) and (v.const != v.const or abs(v.const) == float("inf")) for v in vals
        )
        if (
            gate_src is not None and not validity
        ):  # `nll < inf` checks that a score exists; it chooses nothing
            labels[GATE] = extend(gate_src, Step(fidx, line, "via", "comparison of target-dependent values"))
        elif any(v.has(TGT) or v.has(TMIX) for v in per_pos):
            tgt = next(v for v in per_pos if v.has(TGT) or v.has(TMIX))
            src = tgt.labels.get(TGT) or tgt.labels[TMIX]
            others = [v for v in vals if v is not tgt]
            if all(o.const is not NOCONST for o in others):
                labels[TLUT] = extend(src, Step(fidx, line, "via", "test on the realized token"))
            else:
                labels[TEQ] = extend(src, Step(fidx, line, "via", "target compared with a hint"))
        elif sum(
            1
            for v in vals
            if v.agg and v.has(ATT) and v.has(VAL) and not v.has(TRAIN) and _whole_evaluation(v)
        ) >= 1 and all(v.agg or v.const is not NOCONST or not v.labels for v in vals):
            src = next(v.labels[ATT] for v in vals if v.has(ATT))
            labels[SEL] = extend(src, Step(fidx, line, "via", "comparison of validation scores"))
        for k in (TGT, TMIX, ATT, TKEY):
            labels.pop(k, None)
        return V(labels, agg=bool(carriers) and all(v.agg for v in carriers))

    def e_ifexp(self, act: Act, node: ast.IfExp) -> V:
        test = self.eval(act, node.test)
        body = self.eval(act, node.body)
        orelse = self.eval(act, node.orelse)
        out = join(body, orelse)
        ctrl = self._ctrl_labels(test)
        if ctrl:
            out = out.with_labels(ctrl)
        return out

    def e_namedexpr(self, act: Act, node: ast.NamedExpr) -> V:
        v = self.eval(act, node.value)
        self.store_name(act, node.target.id, v, act.stmt)
        return v

    def e_container(self, act: Act, node) -> V:
        vals = []
        for e in node.elts:
            if isinstance(e, ast.Starred):
                vals.append(self._element_of(self.eval(act, e.value)))
            else:
                vals.append(self.eval(act, e))
        out = join(*vals) if vals else EMPTY
        res = V(out.labels, objs=out.objs)
        if isinstance(node, (ast.Tuple, ast.List)) and not any(isinstance(e, ast.Starred) for e in node.elts):
            res = _with_items(res, tuple(vals))
        return res

    def e_dict(self, act: Act, node: ast.Dict) -> V:
        vals = [self.eval(act, k) for k in node.keys if k is not None]
        vals += [self.eval(act, v) for v in node.values]
        out = join(*vals) if vals else EMPTY
        return V(out.labels, objs=out.objs)

    def e_joinedstr(self, act: Act, node: ast.JoinedStr) -> V:
        parts = []
        const = ""
        for v in node.values:
            if isinstance(v, ast.Constant):
                pv = self.e_constant(act, v) if isinstance(v.value, str) else EMPTY
                parts.append(pv)
                const = const + v.value if const is not None and isinstance(v.value, str) else None
            else:
                parts.append(self.eval(act, v))
                const = None
        out = combine(parts, drop_fine_if_aggregates=False)
        return V(out.labels, const=const if const is not None else NOCONST)

    def e_formatted(self, act: Act, node: ast.FormattedValue) -> V:
        return V(self.eval(act, node.value).labels)

    def e_lambda(self, act: Act, node: ast.Lambda) -> V:
        f = self.p.func_by_node.get(id(node))
        return V(objs=frozenset({("func", f)})) if f is not None else EMPTY

    def e_comp(self, act: Act, node) -> V:
        per_item = self._comp_per_item(act, node)
        if per_item is not None:
            return per_item
        saved = act.env
        act.env = dict(act.env)
        act.loops.append(node)
        try:
            for gen in node.generators:
                it = self.eval(act, gen.iter)
                self.assign(act, gen.target, self.element(act, gen.iter, it), act.stmt)
                for cond in gen.ifs:
                    self.eval(act, cond)
            if isinstance(node, ast.DictComp):
                v = join(self.eval(act, node.key), self.eval(act, node.value))
            else:
                v = self.eval(act, node.elt)
        finally:
            act.loops.pop()
            act.env = saved
        return V(v.labels, objs=v.objs)

    def e_starred(self, act: Act, node: ast.Starred) -> V:
        return self.eval(act, node.value)

    def e_await(self, act: Act, node) -> V:
        return self.eval(act, node.value)

    # ----------------------------------------------------------------------------------------------
    def element(self, act: Act, iter_node: ast.AST, it: V) -> V:
        """The value of one element when iterating ``iter_node``."""
        if isinstance(iter_node, ast.Call):
            name = self._callee_name(act, iter_node.func)
            tail = lib.last(name) if name else None
            if tail in ("range", "arange") and iter_node.args:
                start = self.eval_quiet(act, iter_node.args[0]) if len(iter_node.args) >= 2 else V(const=0)
                f = _form_of(start)
                form = _range_form(f)
                return V(combine([start]).labels, form=form)
            if tail == "enumerate" and iter_node.args:
                inner = self.element(act, iter_node.args[0], self.eval_quiet(act, iter_node.args[0]))
                return _with_items(V(inner.labels, objs=inner.objs), (V(form=SYMBOL), inner))
            if tail == "zip" and iter_node.args:
                elts = [self.element(act, a, self.eval_quiet(act, a)) for a in iter_node.args]
                j = join(*elts)
                return _with_items(V(j.labels, objs=j.objs), tuple(elts))
            if tail in ("items",) and isinstance(iter_node.func, ast.Attribute):
                v = self.eval_quiet(act, iter_node.func.value)
                return _with_items(V(v.labels, objs=v.objs), (EMPTY, V(v.labels, objs=v.objs)))
        return self._element_of(it)

    def _element_of(self, it: V) -> V:
        if it.elem is not None:
            return self._tuple_of(it)
        items = getattr(it, "items", None)
        if items:
            j = join(*items)
            return V(j.labels, objs=j.objs, form=j.form)
        return V(it.labels, objs=it.objs, form=it.form)

    def _ctrl_labels(self, test: V) -> dict:
        out = {}
        if test.agg:
            if test.has(SEL):
                out[SEL] = test.labels[SEL]
            return out
        for k in (GATE, SEL):
            if k in test.labels:
                out[k] = test.labels[k]
        if TLUT in test.labels and GATE not in out:
            out[GATE] = test.labels[TLUT]
        return out

    def _with_ctrl(self, act: Act, v: V) -> V:
        """Values assigned under a choice made on target-dependent values or validation scores
        carry that choice (implicit flow), element by element for tuples."""
        for ctrl in act.ctrl:
            if v.items is not None:
                v = V(v.labels, v.objs, v.form, v.const, v.agg, tuple(i.with_labels(ctrl) for i in v.items))
            v = v.with_labels(ctrl)
        return v

    def _join_envs(self, envs: list[dict]) -> dict:
        envs = [e for e in envs if e is not None]
        if not envs:
            return {}
        if len(envs) == 1:
            return envs[0]
        out = dict(envs[0])
        for e in envs[1:]:
            for k, v in e.items():
                old = out.get(k)
                if old is None:
                    out[k] = v
                elif old is not v:
                    out[k] = join(old, v)
        return out

    # ==============================================================================================
    # calls
    def _callee_name(self, act: Act, func: ast.AST) -> str | None:
        """The library dotted name of a callee expression, if it names one."""
        base = func
        parts = []
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        if isinstance(base, ast.Call):
            inner = self._callee_name(act, base.func)
            if inner is None:
                return None
            return ".".join([inner + "()"] + list(reversed(parts))) if parts else inner + "()"
        if not isinstance(base, ast.Name):
            return None
        v = act.env.get(base.id)
        if v is None:
            v = self.load_name(act, base.id)
        mods = [o[1] for o in v.objs if o[0] == "mod"]
        if mods:
            return ".".join([mods[0]] + list(reversed(parts)))
        if not v.objs and not v.labels and base.id in _BUILTINS and base.id not in act.env:
            return ".".join([base.id] + list(reversed(parts)))
        return None

    def e_call(self, act: Act, node: ast.Call) -> V:
        node._pg_file = act.func.file.idx  # for evidence steps in callees
        func = node.func
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                args.append(self._element_of(self.eval(act, a.value)))
            else:
                args.append(self.eval(act, a))
        kwargs: dict = {}
        for k in node.keywords:
            v = self.eval(act, k.value)
            if k.arg is None:
                kwargs[None] = join(kwargs.get(None, EMPTY), v)
            else:
                kwargs[k.arg] = v
        recv = None
        if isinstance(func, ast.Attribute):
            recv = self.eval(act, func.value)
            if any(o[0] == "mod" for o in recv.objs) and not any(
                o[0] in ("inst", "class", "file") for o in recv.objs
            ):
                mod = next(o[1] for o in recv.objs if o[0] == "mod")
                return self.library_call(act, node, f"{mod}.{func.attr}", None, args, kwargs)
            targets = self._method_targets(recv, func.attr)
            if targets:
                return self._call_targets(act, node, targets, args, kwargs)
            return self.library_call(act, node, "." + func.attr, recv, args, kwargs)
        fv = self.eval(act, func)
        mods = [o[1] for o in fv.objs if o[0] == "mod"]
        targets = [o for o in fv.objs if o[0] in ("func", "class", "meth", "inst")]
        if targets:
            return self._call_targets(act, node, targets, args, kwargs)
        if mods:
            return self.library_call(act, node, mods[0], None, args, kwargs)
        if isinstance(func, ast.Name) and func.id in _BUILTINS and not fv.objs and not fv.labels:
            return self.library_call(act, node, func.id, None, args, kwargs)
        return self._unknown_call(act, node, fv, args, kwargs)

    def _method_targets(self, recv: V, name: str) -> list:
        out = []
        for o in recv.objs:
            if o[0] in ("inst", "class", "super"):
                mro = self.p.class_mro(o[1])
                if o[0] == "super":
                    mro = mro[1:]
                for c in mro:
                    fv = self.fields.get((id(c), name))
                    if fv is not None and any(x[0] in ("func", "meth", "class", "inst") for x in fv.objs):
                        out.extend(x for x in fv.objs if x[0] in ("func", "meth", "class", "inst"))
                        break
                    m = c.methods.get(name)
                    if m is not None:
                        if m.kind == "staticmethod" or (o[0] == "class" and m.kind == "method"):
                            out.append(("func", m))
                        else:
                            selfref = ("class", o[1]) if o[0] == "class" else ("inst", o[1])
                            out.append(("meth", m, selfref))
                        break
            elif o[0] == "file":
                env = self.module_env.get(o[1].idx, {})
                fv = env.get(name)
                if fv is not None:
                    out.extend(x for x in fv.objs if x[0] in ("func", "class", "meth", "inst"))
                elif name in o[1].functions:
                    out.append(("func", o[1].functions[name]))
                elif name in o[1].classes:
                    out.append(("class", o[1].classes[name]))
        return out[:MAX_TARGETS]

    def _call_targets(self, act: Act, node: ast.Call, targets: list, args: list[V], kwargs: dict) -> V:
        results = []
        for t in targets[:MAX_TARGETS]:
            kind = t[0]
            if kind == "func":
                results.append(self.call_user(act, t[1], node, args, kwargs, arg_nodes=node.args))
            elif kind == "meth":
                m, selfref = t[1], t[2]
                self_val = V(objs=frozenset({selfref}))
                if m.name == "step" and self._is_optimizer_class(selfref[1]):
                    self.emit(
                        act,
                        "step",
                        node,
                        {OPT: ()},
                        optimizer=selfref[1].name,
                        temp=self._temporary_optimizer(act, node),
                    )
                results.append(
                    self.call_user(act, m, node, args, kwargs, self_val=self_val, arg_nodes=node.args)
                )
            elif kind == "class":
                results.append(self.instantiate(act, node, t[1], args, kwargs))
            elif kind == "inst":
                cls = t[1]
                m = self.p.find_method(cls, "__call__") or self.p.find_method(cls, "forward")
                self._run_hooks(act, node, args)
                if m is not None:
                    results.append(
                        self.call_user(
                            act,
                            m,
                            node,
                            args,
                            kwargs,
                            self_val=V(objs=frozenset({("inst", cls)})),
                            arg_nodes=node.args,
                        )
                    )
                else:
                    results.append(self._unknown_call(act, node, EMPTY, args, kwargs))
        return join(*results) if results else EMPTY

    def _is_optimizer_class(self, cls) -> bool:
        return any("optim" in b or b.endswith("Optimizer") for b in self.p.library_bases(cls))

    def instantiate(self, act: Act, node: ast.Call, cls, args, kwargs) -> V:
        inst = V(objs=frozenset({("inst", cls)}))
        if self._is_optimizer_class(cls):
            inst = inst.with_labels({OPT: (Step(act.func.file.idx, node.lineno, "source", "optimizer"),)})
            for a in args:
                inst = inst.with_labels({k: c for k, c in a.labels.items() if k in (LOCALPARAM, VAL)})
        init = self.p.find_method(cls, "__init__")
        if init is not None:
            self.call_user(act, init, node, args, kwargs, self_val=inst, arg_nodes=node.args)
        elif args or kwargs:
            # a dataclass-style constructor: keyword/positional arguments become fields
            names = [
                t.id
                for stmt in cls.node.body
                if isinstance(stmt, ast.AnnAssign)
                for t in [stmt.target]
                if isinstance(t, ast.Name)
            ]
            for name, v in list(zip(names, args)) + [(k, v) for k, v in kwargs.items() if k]:
                self._field_store(cls, name, v)
        post = self.p.find_method(cls, "__post_init__")
        if post is not None:
            self.call_user(act, post, node, [], {}, self_val=inst)
        return inst

    def _unknown_call(self, act: Act, node: ast.Call, fv: V, args: list[V], kwargs: dict) -> V:
        vals = list(args) + list(kwargs.values()) + [fv]
        out = combine(vals)
        # functions passed to something we do not know are probably called by it (closures, hooks)
        for v in vals:
            for o in v.objs:
                if o[0] == "func" and o[1].id not in self.analyzed and o[1].id not in self.hook_funcs:
                    self.call_user(act, o[1], node, [], {})
        labels = dict(out.labels)
        if any(v.has(VAL) for v in vals):
            labels.setdefault(
                CALLRES, (Step(act.func.file.idx, node.lineno, "via", "result of an unresolved call"),)
            )
        return V(labels, agg=out.agg)

    def _run_hooks(self, act: Act, node: ast.Call, args: list[V]) -> None:
        if not act.hooks:
            return
        data = combine(args)
        if data.has(VAL) or data.has(TRAIN):
            if data.has(VAL):
                self.emit(act, "calib", node, data.labels)
            for h in act.hooks:
                for o in h.objs:
                    if o[0] == "func":
                        self.call_user(act, o[1], node, [EMPTY, data, data], {})

    # ----------------------------------------------------------------------------------------------
    def _comp_per_item(self, act: Act, node) -> V | None:
        """``(float(v) for v in totals)`` over a fixed-size container keeps its elements apart, so
        unpacking ``loss, tokens, nbytes = ...`` does not mix a byte count into the loss."""
        if isinstance(node, ast.DictComp) or len(node.generators) != 1:
            return None
        gen = node.generators[0]
        if gen.ifs or gen.is_async or not isinstance(gen.target, ast.Name):
            return None
        it = self.eval(act, gen.iter)
        items = getattr(it, "items", None)
        if not items or len(items) > 16:
            return None
        saved = act.env
        outs = []
        act.loops.append(node)
        try:
            for item in items:
                act.env = dict(saved)
                self.assign(act, gen.target, item, act.stmt)
                outs.append(self.eval(act, node.elt))
        finally:
            act.loops.pop()
            act.env = saved
        out = join(*outs)
        return _with_items(V(out.labels, objs=out.objs), tuple(outs))

    def library_call(
        self, act: Act, node: ast.Call, name: str, recv: V | None, args: list[V], kwargs: dict
    ) -> V:
        """Semantics of a library function (``name`` dotted) or method (``name`` = ``.method``)."""
        result = self._library_call(act, node, name, recv, args, kwargs)
        # Stacking a fixed list of scalars keeps them apart (element-wise), e.g. the
        # [loss_sum, token_count, byte_count] that is all-reduced and unpacked again.
        if (not name.startswith(".") and lib.last(name) in ("stack", "tensor", "as_tensor")
                and args and getattr(args[0], "items", None) and result is not None):
            return _with_items(result, args[0].items)
        return result

    def _library_call(
        self, act: Act, node: ast.Call, name: str, recv: V | None, args: list[V], kwargs: dict
    ) -> V:
        tail = lib.last(name)
        is_method = name.startswith(".")
        fidx = act.func.file.idx
        line = node.lineno
        allv = ([recv] if recv is not None else []) + list(args) + list(kwargs.values())

        # --- network / shell ------------------------------------------------------------------
        if not is_method and (lib.is_network_name(name) or name in lib.SHELL_FUNCS):
            self._network(act, node, name, args)
        # --- data sources -----------------------------------------------------------------------
        if (
            tail in lib.READERS or name in ("builtins.open", "open", "io.open") or tail.startswith("load_")
        ) and tail != "load_state_dict":
            src = combine(
                ([recv] if recv is not None else [])
                + list(args[:1])
                + [v for k, v in kwargs.items() if k in ("file", "filename", "path", "f")]
            )
            out = dict(src.labels)
            if src.has(VALPATH):
                chain = extend(src.labels[VALPATH], Step(fidx, line, "via", "validation shards read"))
                out.setdefault(VAL, chain)
                out.setdefault(TOK, chain)
            if src.has(TRAINPATH):
                out.setdefault(
                    TRAIN, extend(src.labels[TRAINPATH], Step(fidx, line, "via", "training shards read"))
                )
            if is_method and recv is not None and recv.has(TOK):
                out.setdefault(TOK, recv.labels[TOK])
            return V(out)
        # --- scoring primitives ---------------------------------------------------------------------
        if tail in lib.CROSS_ENTROPY and not is_method:
            return self._cross_entropy(act, node, args, kwargs)
        if tail in lib.SOFTMAX:
            base = recv if is_method else (args[0] if args else EMPTY)
            chain = (Step(fidx, line, "source", "model distribution"),)
            return V(dict(base.labels), agg=False).with_label(DIST, chain).without({TOK})
        if tail in lib.GATHER:
            if is_method:
                base, index = recv, (args[1] if len(args) > 1 else kwargs.get("index", EMPTY))
            else:
                base = args[0] if args else kwargs.get("input", kwargs.get("arr", EMPTY))
                index = (
                    args[2]
                    if len(args) > 2 and tail == "gather"
                    else (args[1] if len(args) > 1 else kwargs.get("index", kwargs.get("indices", EMPTY)))
                )
            return self._gather(act, node, base, index)
        # --- gradients and optimizers --------------------------------------------------------------
        if tail == "backward" and is_method and recv is not None:
            self.emit(act, "backward", node, recv.labels, nograd=act.nograd > 0)
            return EMPTY
        if name in ("torch.autograd.grad", "torch.autograd.backward"):
            loss = args[0] if args else kwargs.get("outputs", EMPTY)
            self.emit(act, "backward", node, loss.labels, nograd=act.nograd > 0)
            return V({k: c for k, c in loss.labels.items() if k in (VAL, TRAIN)})
        if tail == "step" and is_method and recv is not None and recv.has(OPT):
            self.emit(act, "step", node, recv.labels, temp=self._temporary_optimizer(act, node))
            for a in args:  # LBFGS closures
                for o in a.objs:
                    if o[0] == "func":
                        self.call_user(act, o[1], node, [], {})
            return EMPTY
        if (
            not is_method
            and name.startswith(lib.OPTIMIZER_PREFIX)
            and "lr_scheduler" not in name
            and tail[:1].isupper()
        ):
            out = {OPT: (Step(fidx, line, "source", f"optimizer {tail}"),)}
            for a in allv:
                for k in (LOCALPARAM, VAL):
                    if k in a.labels:
                        out.setdefault(k, a.labels[k])
            return V(out)
        if tail in ("Parameter",) and not is_method:
            base = args[0] if args else EMPTY
            if act.func.name != "__init__":
                return base.with_label(LOCALPARAM, (Step(fidx, line, "source", "per-call trainable tensor"),))
            return base
        if tail == "requires_grad_" and is_method and recv is not None:
            val = args[0] if args else V(const=True)
            if val.const is not False and self._created_here(act, node.func.value):
                mark = {LOCALPARAM: (Step(fidx, line, "source", "per-call trainable tensor"),)}
                self._mutate(act, node.func.value, V(mark))
                return recv.with_labels(mark)
            return recv
        if tail in ("register_forward_hook", "register_forward_pre_hook", "register_full_forward_hook"):
            for a in args:
                if any(o[0] == "func" for o in a.objs):
                    act.hooks.append(a)
                    for o in a.objs:
                        if o[0] == "func":
                            self.hook_funcs.add(o[1].id)
            return EMPTY
        # --- state writes ------------------------------------------------------------------------------
        if name in (
            "numpy.add.at",
            "numpy.subtract.at",
            "numpy.maximum.at",
            "numpy.put",
            "numpy.put_along_axis",
        ) or (is_method and tail in lib.TABLE_WRITE_METHODS):
            if is_method:
                table_node = node.func.value
                idx = args[1] if len(args) > 1 else (args[0] if args else EMPTY)
                val = args[2] if len(args) > 2 else (args[1] if len(args) > 1 else EMPTY)
            else:
                table_node = node.args[0] if node.args else None
                idx = args[1] if len(args) > 1 else EMPTY
                val = args[2] if len(args) > 2 else EMPTY
            if table_node is not None:
                self._table_write(act, node, table_node, idx, val)
                self._mutate(act, table_node, combine([idx.without(FINE), val]))
            return recv.only_data() if recv is not None else EMPTY
        if tail == "bincount":
            src = recv if is_method else (args[0] if args else EMPTY)
            out = dict(src.labels)
            out.pop(TOK, None)
            if src.has(VAL) and not src.agg:
                self.emit(act, "update", node, dict(src.labels), table=None, how="bincount")
                out[STATE] = (Step(fidx, line, "source", "counts of validation tokens"),)
            return V(out)
        # --- dict/container lookups by key: the same as an index read ----------------------------------
        if (
            is_method
            and tail in ("get", "__getitem__", "setdefault")
            and recv is not None
            and node.args
            and not recv.objs
        ):
            read = self._index_read(act, node, recv, args[0], node.args[0])
            return join(read, args[1]) if len(args) > 1 else read
        # --- in-place mutation / accumulation --------------------------------------------------------
        if is_method and tail in lib.MUTATORS and recv is not None and isinstance(node.func, ast.Attribute):
            val = combine(list(args) + list(kwargs.values()))
            if tail in lib.ACCUMULATORS and args:
                self._maybe_score(
                    act, act.stmt or node, node.func.value, args[0], node.args[0] if node.args else None
                )
            self._mutate(act, node.func.value, val)
            if tail == "append" and args and isinstance(node.func.value, ast.Name):
                self._append_tuple(act, node.func.value.id, recv, args[0])
            if (
                tail in ("append", "extend")
                and args
                and args[0].form is not None
                and isinstance(node.func.value, ast.Name)
                and recv.form in (None, args[0].form)
            ):
                # a list of position arrays keeps their offset (np.concatenate of it too)
                name = node.func.value.id
                cur = act.env.get(name, recv)
                act.env[name] = V(cur.labels, cur.objs, args[0].form, agg=cur.agg)
            return recv.only_data() if tail.endswith("_") else EMPTY
        # --- artifact / network sinks ---------------------------------------------------------------
        if name in lib.ARTIFACT_FUNCS or (
            is_method and tail in ("compress", "write", "save", "dump", "write_bytes", "tofile")
        ):
            data = combine(
                list(args[:1]) + ([recv] if tail == "compress" and recv is not None and not recv.objs else [])
            )
            if data.has(VAL) and not data.has(ATT) and not data.has(SEL):
                self.emit(act, "artifact", node, data.labels, sink=name)
            return V(data.labels)
        # --- a per-token choice among values at the target (oracle gates) -----------------------------
        if tail in ("argmin", "argmax", "nanargmin", "nanargmax", "min", "max", "amin", "amax"):
            chosen = self._choice_at_target(act, node, tail, is_method, recv, args, kwargs)
            if chosen is not None:
                return chosen
        # --- positions selected by a mask -----------------------------------------------------------
        if tail in ("nonzero", "flatnonzero", "argwhere") or (tail == "where" and not is_method and len(args) == 1):
            # The indices where a mask holds are positions (which ones depends on the data): a
            # buffer written at them is per position, not a table keyed by token values.
            sel = combine(allv)
            pos = V({k: c for k, c in sel.labels.items() if k not in (TOK, DIST)}, form=SYMBOL)
            # np.nonzero / np.where(mask) give a tuple of index arrays (``[0]`` is the first axis).
            return _with_items(pos, (pos,)) if tail in ("nonzero", "where") else pos
        # --- reductions -----------------------------------------------------------------------------
        if tail in lib.REDUCTIONS or (
            tail in ("max", "min", "amax", "amin", "logsumexp") and (is_method and not args and not kwargs)
        ):
            base = recv if is_method else (args[0] if args else EMPTY)
            has_dim = bool(args) if is_method else len(args) > 1
            labels = {k: c for k, c in base.labels.items() if k not in (DIST, TOK)}
            if "dim" in kwargs or "axis" in kwargs or has_dim or tail == "logsumexp":
                return V(labels, agg=base.agg)
            return V(labels, agg=True)
        if name == "float" and len(args) == 1 and isinstance(args[0].const, str):
            try:
                return V(const=float(args[0].const))
            except ValueError:
                pass
        if name in ("float", "int", "sum", "bool", "round", "abs", "math.fsum"):
            # sum() reduces over positions; float()/int() of one value does not
            base = combine(args, drop_fine_if_aggregates=False)
            reduces = name in ("sum", "math.fsum")
            return V(
                base.labels,
                agg=bool(base.labels) and (reduces or base.agg),
                form=base.form if name == "int" else None,
            )
        if name in ("len",) or (is_method and tail in lib.META_METHODS):
            return EMPTY
        # --- selections between predictors ------------------------------------------------------------
        if (
            tail in lib.MINMAX
            or (name in ("min", "max") and len(args) >= 2)
            or (not is_method and tail in ("min", "max") and len(args) >= 2)
        ):
            return self._select(act, node, list(args))
        if tail == "where" and len(args) == 3:
            cond, a, b = args
            out = combine([a, b])
            ctrl = self._ctrl_labels(V({k: c for k, c in cond.labels.items()}, agg=cond.agg))
            if not ctrl and cond.has_any((TEQ, TLUT)) and not cond.agg:
                src = cond.labels.get(TEQ) or cond.labels[TLUT]
                ctrl = {GATE: extend(src, Step(fidx, line, "via", "selection by a target-dependent test"))}
            return out.with_labels(ctrl) if ctrl else out
        if tail in ("masked_fill", "masked_fill_") and len(args) >= 1:
            mask = args[0]
            base = recv if recv is not None else EMPTY
            out = combine([base] + list(args[1:]))
            if mask.has_any((TEQ, TLUT, GATE)) and not mask.agg:
                src = mask.labels.get(GATE) or mask.labels.get(TLUT) or mask.labels[TEQ]
                out = out.with_label(
                    GATE, extend(src, Step(fidx, line, "via", "masked by a target-dependent test"))
                )
            return out
        # --- identity-like -------------------------------------------------------------------------
        if is_method and tail in lib.IDENTITY_METHODS and recv is not None:
            keep = recv
            return V(
                keep.labels,
                objs=keep.objs
                if tail in ("to", "cuda", "cpu", "float", "half", "bfloat16", "requires_grad_", "type")
                else frozenset(),
                form=keep.form,
                agg=keep.agg,
            )
        if not is_method and tail in lib.IDENTITY_FUNCS and args:
            if tail in ("cat", "concatenate", "stack", "hstack", "vstack", "concat"):
                parts = [self._element_of(a) for a in args[:1]]
                out = join(*parts) if parts else EMPTY
                form = args[0].form if args and tail in ("cat", "concatenate", "concat", "hstack") else None
                return V(out.labels, form=form, agg=out.agg)
            base = args[0]
            return V(base.labels, form=base.form, agg=base.agg)
        if not is_method and tail in ("arange", "range"):
            start = args[0] if len(args) >= 2 else V(const=0)
            f = _form_of(start)
            return V(
                combine(args[:1] if len(args) >= 2 else []).labels,
                form=_range_form(f),
            )
        if not is_method and tail in (
            "zeros",
            "ones",
            "empty",
            "full",
            "randn",
            "rand",
            "zeros_like",
            "ones_like",
            "empty_like",
            "full_like",
            "randn_like",
            "normal",
            "tensor_like",
        ):
            rg = kwargs.get("requires_grad")
            out = {}
            if tail.endswith("_like") and args:
                out = {k: c for k, c in args[0].labels.items() if k in (STATE,)}
            if rg is not None and rg.const is True and act.func.name != "__init__":
                out[LOCALPARAM] = (Step(fidx, line, "source", "per-call trainable tensor"),)
            if tail == "full" and len(args) > 1:
                out.update({k: c for k, c in args[1].labels.items()})
            return V(out)
        if not is_method and name in lib.WRAPPERS:
            base = args[0] if args else EMPTY
            return V(base.labels, objs=base.objs)
        if name in ("dataclasses.field", "attr.ib", "attrs.field") or (
            tail == "field" and name.startswith("dataclasses")
        ):
            factory = kwargs.get("default_factory")
            if factory is not None and factory.objs:
                targets = [o for o in factory.objs if o[0] in ("func", "class")]
                if targets:
                    return self._call_targets(act, node, targets, [], {})
            return kwargs.get("default", EMPTY)
        if name in ("importlib.import_module", "__import__", "importlib.__import__") and args:
            # A module imported by name is the module itself: its calls (urlopen, get, connect)
            # are the library calls they name, so the network rules see them.
            mod = args[0].const
            if isinstance(mod, str) and re.fullmatch(r"[A-Za-z_][\w.]*", mod):
                if name != "importlib.import_module" and not (len(args) >= 4 and args[3].const):
                    mod = mod.split(".")[0]  # __import__("a.b") is package a, unless a fromlist is given
                return V(objs=frozenset({("mod", mod)}))
        if name in ("getattr",) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            v = self.load_attr(act, args[0], str(node.args[1].value), node)
            return join(v, args[2]) if len(args) > 2 else v
        if name in ("setattr",) and len(node.args) >= 3 and isinstance(node.args[1], ast.Constant):
            t = ast.Attribute(value=node.args[0], attr=str(node.args[1].value), ctx=ast.Store())
            ast.copy_location(t, node)
            self.store_attr(act, t, args[2], act.stmt or node)
            return EMPTY
        if name == "super":
            cls = act.func.cls
            if cls is not None:
                return V(objs=frozenset({("super", cls)}))
            return EMPTY
        if name in ("isinstance", "hasattr", "callable", "print", "id", "type", "repr", "hash"):
            if name == "print":
                self._report(act, node, args)
            return EMPTY
        if name in (
            "list",
            "tuple",
            "sorted",
            "reversed",
            "set",
            "frozenset",
            "iter",
            "next",
            "dict",
            "enumerate",
            "zip",
            "map",
            "filter",
        ):
            vals = list(args)
            for a in vals:
                for o in a.objs:
                    if o[0] == "func" and name in ("map", "filter"):
                        self.call_user(act, o[1], node, [self._element_of(x) for x in vals[1:]], {})
            out = combine(vals, drop_fine_if_aggregates=False)
            objs = frozenset().union(*(a.objs for a in vals)) if vals else frozenset()
            return V(out.labels, objs=objs)
        # default: data dependence on everything
        out = combine(allv)
        objs = frozenset()
        if (
            is_method
            and recv is not None
            and tail
            in (
                "parameters",
                "named_parameters",
                "state_dict",
                "eval",
                "train",
                "modules",
                "children",
                "named_modules",
            )
        ):
            objs = recv.objs
        for v in allv:
            for o in v.objs:
                if o[0] == "func" and o[1].id not in self.analyzed and o[1].id not in self.hook_funcs:
                    self.call_user(act, o[1], node, [], {})
        return V(out.labels, objs=objs, agg=out.agg)

    def _select(self, act: Act, node: ast.Call, args: list[V]) -> V:
        """min/max of values: choosing, per position, the better of two predictors of the target is an
        oracle gate; over aggregated scores it is a best-of-k selection."""
        out = combine(args, drop_fine_if_aggregates=False)
        scored = [a for a in args if a.has(ATT)]
        if len(scored) >= 2:
            fidx = act.func.file.idx
            if all(a.agg for a in scored):
                if not any(a.has(VAL) and not a.has(TRAIN) and _whole_evaluation(a) for a in scored):
                    return out
                return out.with_label(
                    SEL,
                    extend(scored[0].labels[ATT], Step(fidx, node.lineno, "via", "best of several scores")),
                )
            return out.with_label(
                GATE,
                extend(
                    scored[0].labels[ATT],
                    Step(fidx, node.lineno, "via", "per-token choice of the better prediction"),
                ),
            )
        return out

    def _report(self, act: Act, node: ast.Call, args: list[V]) -> None:
        """A printed/logged number that was selected by comparing validation scores."""
        sel = [a for a in args if a.has(SEL)]
        if sel:
            self.emit(act, "report", node, sel[0].labels)

    def _cross_entropy(self, act: Act, node: ast.Call, args: list[V], kwargs: dict) -> V:
        fidx = act.func.file.idx
        line = node.lineno
        inp = args[0] if args else kwargs.get("input", EMPTY)
        target_node = node.args[1] if len(node.args) > 1 else lib.kw(node, "target")
        tgt = args[1] if len(args) > 1 else kwargs.get("target", EMPTY)
        if target_node is not None:
            self._add_root(act, target_node)
        reduction = lib.kw_const(node, "reduction")
        labels = {k: c for k, c in inp.labels.items() if k not in (DIST, TOK)}
        for k, c in tgt.labels.items():
            if k in (VAL, TRAIN, CALLRES, STATE):
                labels.setdefault(k, c)
        src = tgt.labels.get(TGT) or (Step(fidx, line, "source", "realized target tokens"),)
        labels[ATT] = extend(src, Step(fidx, line, "via", "cross-entropy at the target"))
        if inp.has_any(TARGET_DERIVED) and not inp.agg:
            k0 = next(k for k in (TKEY, TLUT, TEQ, TMIX, TGT) if k in inp.labels)
            labels.setdefault(
                TDIST,
                extend(
                    inp.labels[k0], Step(fidx, line, "via", "distribution built from target-dependent values")
                ),
            )
        return V(labels, agg=reduction not in ("none",))

    def _gather(self, act: Act, node: ast.Call, base: V, index: V) -> V:
        fidx = act.func.file.idx
        line = node.lineno
        if base.has(DIST):  # gathering a distribution at an index: the index holds the targets
            idx_node = None
            if isinstance(node.func, ast.Attribute) and len(node.args) > 1:
                idx_node = node.args[1]
            elif len(node.args) > 2:
                idx_node = node.args[2]
            idx_node = idx_node or lib.kw(node, "index") or lib.kw(node, "indices")
            if idx_node is not None and not index.has(TGT):
                self._add_root(act, idx_node)
        labels = {k: c for k, c in base.labels.items() if k not in (DIST, TOK)}
        for k, c in index.labels.items():
            if k in (VAL, TRAIN):
                labels.setdefault(k, c)
        if index.has(TPAIR) and not index.has(TMIX):
            labels[ATT] = extend(
                index.labels[TPAIR], Step(fidx, line, "via", "table row gathered at the target")
            )
        elif index.has(TGT) and not index.has(TMIX):
            labels[ATT] = extend(
                index.labels[TGT], Step(fidx, line, "via", "distribution gathered at the target")
            )
        elif index.has(TMIX):
            labels[TKEY] = extend(
                index.labels[TMIX], Step(fidx, line, "via", "gathered with a key built from the target")
            )
        if index.has(GATE) and not index.agg:  # values picked by a target-dependent choice
            labels.setdefault(GATE, extend(index.labels[GATE], Step(fidx, line, "via", "selection by a target-dependent choice")))
        return V(labels, agg=base.agg)

    def _temporary_optimizer(self, act: Act, node: ast.Call) -> bool:
        """The stepped optimizer updates only objects this function builds itself and never hands
        out (a throw-away adapter: a compile warm-up on a fresh LoRA, a diagnostic probe).

        Parameters of the function, attributes and globals are persistent state; so is a local
        object that is returned, stored, or passed on (``m.state_dict()`` into another call)."""
        if not isinstance(node.func, ast.Attribute):
            return False
        root = _root_name(node.func.value)
        b = act.bind.get(root) if root else None
        ctor = getattr(b, "value", None)
        if not isinstance(ctor, ast.Call):
            return False
        param_expr = ctor.args[0] if ctor.args else lib.kw(ctor, "params")
        if param_expr is None:
            return False
        objects: set[str] = set()
        todo = [n.split(".", 1)[0] for n in names_in(param_expr)]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            nb = act.bind.get(name)
            if nb is None:
                if name in act.params or name in act.globals or self.load_name(act, name).objs:
                    return False  # persistent: a parameter, a global, a module-level object
                continue  # a comprehension variable (p in [p for p in m.parameters()])
            value = getattr(nb, "value", None)
            if isinstance(value, (ast.ListComp, ast.List, ast.GeneratorExp, ast.Tuple)):
                todo.extend(n.split(".", 1)[0] for n in names_in(value))
                continue
            if isinstance(nb, (ast.For, ast.comprehension)):
                continue
            if not isinstance(value, ast.Call):
                return False
            objects.add(name)
        return bool(objects) and not any(self._escapes(act.func, name) for name in objects)

    def _escapes(self, func: FuncInfo, name: str) -> bool:
        """``name`` leaves ``func``: returned, stored in an attribute/container, or passed on."""
        key = (func.id, name)
        hit = self._escape_cache.get(key)
        if hit is None:
            hit = self._escape_cache[key] = self._escapes_uncached(func, name)
        return hit

    def _escapes_uncached(self, func: FuncInfo, name: str) -> bool:
        for node in func.all_nodes():
            if (
                isinstance(node, (ast.Return, ast.Yield))
                and node.value is not None
                and name in names_in(node.value)
            ):
                return True
            if (
                isinstance(node, ast.Assign)
                and name in names_in(node.value)
                and any(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets)
                and (
                    isinstance(node.value, ast.Name)
                    or (_root_name(node.value) == name and not isinstance(node.value, ast.Call))
                )
            ):
                return True
            if isinstance(node, ast.Call):
                for a in list(node.args) + [k.value for k in node.keywords]:
                    if isinstance(a, ast.Name) and a.id == name and _root_name(node.func) != name:
                        callee = (dotted(node.func) or "").rsplit(".", 1)[-1].lower()
                        if any(
                            w in callee
                            for w in (
                                "load_state_dict",
                                "copy",
                                "merge",
                                "append",
                                "extend",
                                "update",
                                "add",
                                "register",
                                "setattr",
                                "save",
                            )
                        ):
                            return True
                    if (
                        isinstance(a, ast.Call)
                        and isinstance(a.func, ast.Attribute)
                        and a.func.attr in ("state_dict", "parameters", "named_parameters")
                        and _root_name(a.func.value) == name
                        and not (
                            isinstance(node.func, ast.Attribute)
                            and node.func.attr in ("AdamW", "Adam", "SGD")
                        )
                    ):
                        callee = (dotted(node.func) or "").lower()
                        if "optim" not in callee and not callee.endswith(_OPTIMIZER_NAMES):
                            return True
        return False

    def _inside(self, func: FuncInfo, node: ast.AST, container: ast.AST) -> bool:
        parents = func.parents()
        cur = node
        while cur is not None:
            if cur is container:
                return True
            cur = parents.get(id(cur))
        return False

    def _created_here(self, act: Act, expr: ast.AST) -> bool:
        """Whether ``expr`` names a tensor this function created (zeros/empty/randn/...), not a weight."""
        if act.func.name == "__init__":
            return False
        root = _root_name(expr)
        b = act.bind.get(root) if root else None
        value = getattr(b, "value", None)
        while (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr in lib.IDENTITY_METHODS
        ):
            value = value.func.value
        if not isinstance(value, ast.Call):
            return False
        name = self._callee_name(act, value.func) or ""
        return lib.last(name) in (
            "zeros",
            "ones",
            "empty",
            "full",
            "randn",
            "rand",
            "zeros_like",
            "ones_like",
            "empty_like",
            "full_like",
            "randn_like",
            "tensor",
            "normal",
        )

    def _network(self, act: Act, node: ast.Call, name: str, args: list[V]) -> None:
        if name in lib.SHELL_FUNCS:
            texts = lib.string_constants(node)
            for a in args:
                if isinstance(a.const, str):
                    texts.append(a.const)
            for n in ast.walk(node):
                if isinstance(n, ast.Name):
                    v = self.load_name(act, n.id)
                    if isinstance(v.const, str):
                        texts.append(v.const)
            hit = next((t for t in texts if lib.NETWORK_COMMAND.search(t)), None)
            if hit is None:
                return
            self.emit(act, "net", node, {}, call=name, detail=hit[:120], strong=True)
            return
        self.emit(act, "net", node, {}, call=name, detail=name, strong=True)


_BUILTINS = {
    "__import__",
    "len",
    "range",
    "min",
    "max",
    "sum",
    "float",
    "int",
    "bool",
    "abs",
    "round",
    "list",
    "tuple",
    "dict",
    "set",
    "frozenset",
    "sorted",
    "reversed",
    "enumerate",
    "zip",
    "map",
    "filter",
    "iter",
    "next",
    "getattr",
    "setattr",
    "hasattr",
    "isinstance",
    "print",
    "open",
    "super",
    "type",
    "id",
    "repr",
    "hash",
    "callable",
    "str",
    "divmod",
    "pow",
    "any",
    "all",
}
_BUILTIN_MODS = set()
_OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "lbfgs", "rmsprop", "adagrad", "muon", "lion", "adafactor")


def _root_name(expr: ast.AST) -> str | None:
    """The variable a value expression is rooted at: ``y_batch`` for ``y_batch[:, s:].reshape(-1)``."""
    node = expr
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Subscript):
            node = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in lib.IDENTITY_METHODS | {"unsqueeze", "squeeze"}
        ):
            node = node.func.value
        elif isinstance(node, ast.Attribute) and node.attr in ("T", "data"):
            node = node.value
        elif isinstance(node, ast.Attribute):
            return dotted(node)
        elif isinstance(node, ast.Starred):
            node = node.value
        else:
            return None


def _whole_evaluation(v: V) -> bool:
    """An aggregated score returned by an evaluation function (one full pass), as opposed to a
    running statistic of already-scored chunks (entropy-adaptive TTT schedules use those)."""
    return any(step.note.startswith("returned by") for step in v.labels.get(ATT, ()))


def _loop_carried(body: list[ast.stmt]) -> bool:
    """Some name is read in a statement of the loop body and (re)written in the same or a later one."""
    loads_so_far: set[str] = set()
    for stmt in body:
        loads, stores = set(), set()
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name):
                (stores if isinstance(n.ctx, ast.Store) else loads).add(n.id)
            elif isinstance(n, (ast.Subscript, ast.Attribute)) and isinstance(n.ctx, ast.Store):
                root = _root_name(n)
                if root:
                    stores.add(root.split(".", 1)[0])
            elif isinstance(n, ast.AugAssign):
                root = _root_name(n.target)
                if root:
                    stores.add(root.split(".", 1)[0])
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in lib.MUTATORS | lib.TABLE_WRITE_METHODS
            ):
                root = _root_name(n.func.value)
                if root:
                    stores.add(root.split(".", 1)[0])
        loads_so_far |= loads
        if stores & loads_so_far:
            return True
    return False


def _detached(stmt: ast.AST) -> bool:
    """The statement takes a value out of the autograd graph (.detach(), .item(), float(), numpy)."""
    for n in ast.walk(stmt):
        if isinstance(n, ast.Attribute) and n.attr in ("detach", "item", "cpu", "numpy", "tolist"):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("float", "sum"):
            return True
    return False


def _has_main_block(tree: ast.Module | None) -> bool:
    for st in getattr(tree, "body", []):
        if isinstance(st, ast.If) and isinstance(st.test, ast.Compare):
            names = [n.value for n in ast.walk(st.test) if isinstance(n, ast.Constant)]
            if "__main__" in names:
                return True
    return False


def _target_root(expr: ast.AST) -> str | None:
    """The variable holding the targets, unless the target is a shifted slice of a token window
    (``chunk[1:]``: the window also holds the inputs; the slice itself is recognised as the target)."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Subscript):
            for part in n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]:
                if isinstance(part, ast.Slice):
                    lo = part.lower
                    up = part.upper
                    if (
                        (isinstance(lo, ast.Constant) and lo.value)
                        or isinstance(up, ast.UnaryOp)
                        or (isinstance(lo, ast.BinOp))
                    ):
                        return None
    return _root_name(expr)


def root_name(expr: ast.AST) -> str | None:
    return _root_name(expr)


def _all_slices(sl: ast.AST) -> bool:
    return isinstance(sl, ast.Tuple) and all(
        isinstance(e, ast.Slice) or (isinstance(e, ast.Constant) and e.value is Ellipsis) for e in sl.elts
    )


def _form_of(v: V):
    if v.form is not None:
        return v.form
    if isinstance(v.const, int) and not isinstance(v.const, bool):
        return (v.const, False, False)
    if v.const is NOCONST and not v.labels and not v.objs:
        return SYMBOL
    return None


def _range_form(f):
    """Positions produced by range/arange from ``f``: a constant start is a bound, not an offset
    from a window (``range(3, n)`` says nothing about alignment), a symbolic one keeps its offset."""
    if f is None or not f[1]:
        return SYMBOL
    return (f[0], True, f[2])


def _aligned(v: V, allow_const: bool = False) -> bool:
    """A position at least one past a window base (``ws + s + 1``): the next token, i.e. the target.

    A bare constant index (``header[2]``) is not a position; a constant slice start (``chunk[1:]``)
    is, relative to the chunk."""
    f = (
        v.form
        if v.form is not None
        else ((v.const, False, False) if isinstance(v.const, int) and not isinstance(v.const, bool) else None)
    )
    if f is None or f[0] < 1 or f[2]:
        return False
    return f[1] or allow_const


def _with_items(v: V, items: tuple) -> V:
    return V(v.labels, v.objs, v.form, v.const, v.agg, items)


_DISPATCH = {
    ast.Constant: Interpreter.e_constant,
    ast.Name: Interpreter.e_name,
    ast.Attribute: Interpreter.e_attribute,
    ast.Subscript: Interpreter.e_subscript,
    ast.BinOp: Interpreter.e_binop,
    ast.UnaryOp: Interpreter.e_unaryop,
    ast.BoolOp: Interpreter.e_boolop,
    ast.Compare: Interpreter.e_compare,
    ast.IfExp: Interpreter.e_ifexp,
    ast.Call: Interpreter.e_call,
    ast.Tuple: Interpreter.e_container,
    ast.List: Interpreter.e_container,
    ast.Set: Interpreter.e_container,
    ast.Dict: Interpreter.e_dict,
    ast.JoinedStr: Interpreter.e_joinedstr,
    ast.FormattedValue: Interpreter.e_formatted,
    ast.Lambda: Interpreter.e_lambda,
    ast.ListComp: Interpreter.e_comp,
    ast.SetComp: Interpreter.e_comp,
    ast.GeneratorExp: Interpreter.e_comp,
    ast.DictComp: Interpreter.e_comp,
    ast.Starred: Interpreter.e_starred,
    ast.Slice: Interpreter.e_slice,
    ast.NamedExpr: Interpreter.e_namedexpr,
    ast.Await: Interpreter.e_await,
}


# Labels a value computed from the realized tokens alone can carry (a LUT read, a test, a mask).
_ACCOUNTING = frozenset({TLUT, TEQ, GATE})
# Labels that say a value involves the model's prediction (or a target-keyed table standing in for it).
_PREDICTIVE = frozenset({DIST, ATT, TKEY, BLEND, TDIST, TMIX})


def _without_accounting(labels: dict, left: V, right: V) -> dict:
    """``loss / bytes``: the divisor counts the realized text (bytes per token from LUTs, masks of
    word starts), which every BPB computes. It scales the reported number; it is not part of the
    predictive distribution, so its target-derived labels do not reach the score (C1/C2 need the
    distribution at t to depend on x_t). A divisor that involves the model's prediction keeps them."""
    if right.has_any(_PREDICTIVE):
        return labels
    return {k: c for k, c in labels.items() if not (k in _ACCOUNTING and right.has(k) and not left.has(k))}
