"""The parsed program: files, functions, classes and imports, as the dataflow layer sees them.

Everything here is built from ``ast`` trees only; nothing is executed. Names are resolved the way
Python would at import time, approximately: module-level ``def``/``class``, nested functions as
closures, ``import x as y`` / ``from x import y`` aliases (so minified ``import lzma as L`` and
``F.cross_entropy`` resolve to their library names), and sibling modules shipped in the same
folder (``from ngram_tilt import NgramTiltState``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol, runtime_checkable


@runtime_checkable
class SourceLike(Protocol):
    """What the static layer needs from ``auditor.unwrap.SourceFile``."""

    path: str
    text: str
    tree: ast.Module | None
    wrapper: str | None
    is_entry: bool


@dataclass(eq=False)
class ClassInfo:
    name: str
    qualname: str
    node: ast.ClassDef
    file: FileInfo
    bases: list[str]  # dotted names as written (resolved later through imports)
    methods: dict[str, FuncInfo] = field(default_factory=dict)
    body_func: FuncInfo | None = None  # the class body, run once at import

    def __repr__(self) -> str:
        return f"<class {self.qualname}>"


@dataclass(eq=False)
class FuncInfo:
    id: int
    name: str
    qualname: str
    node: ast.AST  # FunctionDef | AsyncFunctionDef | Lambda | Module | ClassDef (class body)
    file: FileInfo
    cls: ClassInfo | None = None  # for methods
    parent: FuncInfo | None = None  # lexical parent (closures)
    params: list[str] = field(default_factory=list)
    vararg: str | None = None
    kwarg: str | None = None
    kind: str = "function"  # function | method | staticmethod | classmethod | module | classbody
    decorators: list[str] = field(default_factory=list)
    _parents: dict[int, ast.AST] | None = None
    _defuse: dict[str, set[str]] | None = None
    _nodes: list[ast.AST] | None = None

    def __repr__(self) -> str:
        return f"<func {self.qualname}>"

    @property
    def body(self) -> list[ast.stmt]:
        node = self.node
        if isinstance(node, ast.Lambda):
            return [ast.Return(value=node.body, lineno=node.lineno, col_offset=node.col_offset)]
        return node.body  # type: ignore[attr-defined]

    @property
    def line(self) -> int:
        return getattr(self.node, "lineno", 1)

    def all_nodes(self) -> list[ast.AST]:
        """The nodes of the function (nested definitions included), in source order: a slice of
        the file's single preorder walk."""
        if self._nodes is None:
            self.file.index()
            span = self.file.span.get(id(self.node))
            self._nodes = self.file.order[span[0] : span[1]] if span else list(ast.walk(self.node))
        return self._nodes

    def parents(self) -> dict[int, ast.AST]:
        """id(node) -> parent node (the file's map; walks up should stop at ``self.node``)."""
        self.file.index()
        return self.file.parent

    def defuse(self) -> dict[str, set[str]]:
        """Flow-insensitive name dependencies: name -> names its assigned values read."""
        if self._defuse is None:
            self._defuse = _defuse_nodes(self.all_nodes())
        return self._defuse


@dataclass(eq=False)
class FileInfo:
    idx: int
    source: SourceLike
    path: str
    module: str  # import name of the file (stem)
    tree: ast.Module
    lines: list[str]
    is_entry: bool
    wrapper: str | None
    module_func: FuncInfo | None = None
    functions: dict[str, FuncInfo] = field(default_factory=dict)  # module-level defs
    classes: dict[str, ClassInfo] = field(default_factory=dict)  # module-level classes
    imports: dict[str, str] = field(default_factory=dict)  # alias -> dotted target

    order: list[ast.AST] = field(default_factory=list)
    span: dict[int, tuple[int, int]] = field(default_factory=dict)
    parent: dict[int, ast.AST] = field(default_factory=dict)

    def index(self) -> None:
        """One preorder walk of the file: node order, each node's subtree span, parents."""
        if self.order:
            return
        order, span, parent = self.order, self.span, self.parent
        AST = ast.AST
        stack: list[tuple[ast.AST, bool]] = [(self.tree, False)]
        pop, push, emit = stack.pop, stack.append, order.append
        while stack:
            node, closing = pop()
            nid = id(node)
            if closing:
                span[nid] = (span[nid][0], len(order))
                continue
            span[nid] = (len(order), len(order))
            emit(node)
            push((node, True))
            children = []
            for name in node._fields:
                v = getattr(node, name, None)
                if isinstance(v, list):
                    children.extend(c for c in v if isinstance(c, AST) and not isinstance(c, _SHARED))
                elif isinstance(v, AST) and not isinstance(v, _SHARED):
                    children.append(v)
            for child in reversed(children):
                parent[id(child)] = node
                push((child, False))

    def all_nodes(self) -> list[ast.AST]:
        self.index()
        return self.order

    def snippet(self, line: int | None) -> str | None:
        if line is None or not (1 <= line <= len(self.lines)):
            return None
        text = self.lines[line - 1].strip()
        return text if len(text) <= 240 else text[:237] + "..."


# singleton leaves (Load/Store contexts, operators) carry no position; the index skips them
_SHARED = (ast.expr_context, ast.operator, ast.boolop, ast.cmpop, ast.unaryop)


class Program:
    def __init__(self, sources: list[SourceLike]):
        self.files: list[FileInfo] = []
        self.funcs: list[FuncInfo] = []
        self.classes: list[ClassInfo] = []
        self.func_by_node: dict[int, FuncInfo] = {}
        self.methods_by_name: dict[str, list[FuncInfo]] = {}
        self._owned: dict[int, list[ast.AST]] = {}
        self.by_module: dict[str, FileInfo] = {}
        for src in sources:
            tree = getattr(src, "tree", None)
            if tree is None:
                continue
            path = str(src.path)
            module = PurePosixPath(path).stem
            info = FileInfo(
                idx=len(self.files),
                source=src,
                path=path,
                module=module,
                tree=tree,
                lines=src.text.splitlines(),
                is_entry=bool(getattr(src, "is_entry", False)),
                wrapper=getattr(src, "wrapper", None),
            )
            self.files.append(info)
            known = self.by_module.get(module)
            # A wrapped module is its decoded payload: that is the code an import of it runs (the
            # shipped file only decodes and execs it), so the deepest layer of that file wins.
            if known is None or (
                known.path == path and getattr(src, "depth", 0) > getattr(known.source, "depth", 0)
            ):
                self.by_module[module] = info
        for info in self.files:
            self._index_file(info)

    # -- indexing ------------------------------------------------------------------------------
    def _new_func(self, **kw) -> FuncInfo:
        f = FuncInfo(id=len(self.funcs), **kw)
        self.funcs.append(f)
        self.func_by_node[id(f.node)] = f
        return f

    def _index_file(self, info: FileInfo) -> None:
        info.module_func = self._new_func(
            name="<module>", qualname=f"{info.module}.<module>", node=info.tree, file=info, kind="module"
        )
        # one preorder walk: for every scope (module, def, class, lambda) the definitions and
        # imports directly inside it, in source order
        info.index()
        owned: dict[int, list[ast.AST]] = {}
        stack: list[tuple[ast.AST, int]] = []
        scope_types = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        for i, node in enumerate(info.order):
            while stack and stack[-1][1] <= i:
                stack.pop()
            if i and isinstance(node, scope_types + (ast.Import, ast.ImportFrom)):
                owner = stack[-1][0] if stack else info.tree
                owned.setdefault(id(owner), []).append(node)
            if isinstance(node, scope_types):
                stack.append((node, info.span[id(node)][1]))
        self._owned = owned
        self._index_body(info, info.tree, info.module_func, None, info.module, top=True)

    def _index_body(
        self,
        info,
        scope: ast.AST,
        parent: FuncInfo | None,
        cls: ClassInfo | None,
        prefix: str,
        top: bool = False,
    ) -> None:
        for node in self._owned.get(id(scope), ()):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and top:
                _record_import(info.imports, node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._index_function(info, node, parent, cls, prefix, top)
            elif isinstance(node, ast.ClassDef):
                self._index_class(info, node, parent, prefix, top)
            elif isinstance(node, ast.Lambda):
                f = self._new_func(
                    name="<lambda>",
                    qualname=f"{prefix}.<lambda@{node.lineno}>",
                    node=node,
                    file=info,
                    parent=parent,
                )
                _fill_params(f, node.args)
                self._index_body(info, node, f, None, f.qualname)

    def _index_function(self, info, node, parent, cls, prefix, top) -> None:
        decorators = [_dotted(d.func if isinstance(d, ast.Call) else d) or "" for d in node.decorator_list]
        kind = "function"
        if cls is not None:
            kind = "method"
            if "staticmethod" in decorators:
                kind = "staticmethod"
            elif "classmethod" in decorators:
                kind = "classmethod"
        f = self._new_func(
            name=node.name,
            qualname=f"{prefix}.{node.name}",
            node=node,
            file=info,
            cls=cls,
            parent=parent if cls is None else (cls.body_func.parent if cls.body_func else parent),
            kind=kind,
            decorators=decorators,
        )
        _fill_params(f, node.args)
        if cls is not None:
            cls.methods.setdefault(node.name, f)
            self.methods_by_name.setdefault(node.name, []).append(f)
        elif top:
            info.functions.setdefault(node.name, f)
        self._index_body(info, node, f, None, f.qualname)

    def _index_class(self, info, node, parent, prefix, top) -> None:
        bases = [_dotted(b) or "" for b in node.bases]
        cls = ClassInfo(name=node.name, qualname=f"{prefix}.{node.name}", node=node, file=info, bases=bases)
        cls.body_func = self._new_func(
            name=f"<class {node.name}>",
            qualname=f"{cls.qualname}.<body>",
            node=node,
            file=info,
            parent=parent,
            kind="classbody",
        )
        self.classes.append(cls)
        if top:
            info.classes.setdefault(node.name, cls)
        self._index_body(info, node, cls.body_func, cls, cls.qualname)

    # -- lookups --------------------------------------------------------------------------------
    def module_file(self, dotted: str) -> FileInfo | None:
        """A shipped sibling module for an import name (``ngram_tilt`` or ``pkg.ngram_tilt``)."""
        if dotted in self.by_module:
            return self.by_module[dotted]
        tail = dotted.rsplit(".", 1)[-1]
        return self.by_module.get(tail) if "." in dotted else None

    def class_mro(self, cls: ClassInfo) -> list[ClassInfo]:
        out, seen, todo = [], set(), [cls]
        while todo:
            c = todo.pop(0)
            if id(c) in seen:
                continue
            seen.add(id(c))
            out.append(c)
            for base in c.bases:
                b = self.resolve_class_name(c.file, base)
                if b is not None:
                    todo.append(b)
        return out

    def resolve_class_name(self, info: FileInfo, dotted: str) -> ClassInfo | None:
        if not dotted:
            return None
        head = dotted.split(".", 1)[0]
        if dotted in info.classes:
            return info.classes[dotted]
        target = info.imports.get(head)
        if target is not None:
            full = target + dotted[len(head) :]
            mod, _, name = full.rpartition(".")
            f = self.module_file(mod) if mod else None
            if f is not None and name in f.classes:
                return f.classes[name]
        return None

    def find_method(self, cls: ClassInfo, name: str) -> FuncInfo | None:
        for c in self.class_mro(cls):
            if name in c.methods:
                return c.methods[name]
        return None

    def library_bases(self, cls: ClassInfo) -> list[str]:
        """Dotted library names of the bases (``torch.nn.Module``, ``torch.optim.Optimizer``)."""
        out = []
        for c in self.class_mro(cls):
            for base in c.bases:
                if self.resolve_class_name(c.file, base) is None:
                    head = base.split(".", 1)[0]
                    target = c.file.imports.get(head)
                    out.append(target + base[len(head) :] if target else base)
        return out


def _fill_params(f: FuncInfo, args: ast.arguments) -> None:
    f.params = [a.arg for a in args.posonlyargs + args.args] + [a.arg for a in args.kwonlyargs]
    f.vararg = args.vararg.arg if args.vararg else None
    f.kwarg = args.kwarg.arg if args.kwarg else None


def _record_import(imports: dict[str, str], node: ast.Import | ast.ImportFrom) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                imports[alias.asname] = alias.name
            else:
                imports[alias.name.split(".", 1)[0]] = alias.name.split(".", 1)[0]
    else:
        mod = ("." * node.level) + (node.module or "")
        mod = mod.lstrip(".")
        for alias in node.names:
            if alias.name == "*":
                continue
            imports[alias.asname or alias.name] = f"{mod}.{alias.name}" if mod else alias.name


def record_import(imports: dict[str, str], node: ast.Import | ast.ImportFrom) -> None:
    _record_import(imports, node)


def _dotted(node: ast.AST | None) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def dotted(node: ast.AST | None) -> str | None:
    return _dotted(node)


def _names_in(node: ast.AST) -> set[str]:
    cached = getattr(node, "_pg_names", None)
    if cached is not None:
        return cached
    out = _names_in_uncached(node)
    try:
        node._pg_names = frozenset(out)
    except AttributeError:  # pragma: no cover - ast nodes accept attributes
        pass
    return out


def _names_in_uncached(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            d = _dotted(n)
            if d:
                out.add(d)
    return out


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        out = []
        for elt in target.elts:
            out += _target_names(elt)
        return out
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, (ast.Attribute, ast.Subscript)):
        base = target
        while isinstance(base, ast.Subscript):
            base = base.value
        d = _dotted(base)
        return [d] if d else []
    return []


def _defuse(body: list[ast.stmt]) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Assign):
            reads = _names_in(node.value)
            for t in node.targets:
                for name in _target_names(t):
                    deps.setdefault(name, set()).update(reads)
                if isinstance(t, ast.Subscript):
                    for name in _target_names(t):
                        deps.setdefault(name, set()).update(_names_in(t.slice))
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            reads = _names_in(node.value)
            for name in _target_names(node.target):
                deps.setdefault(name, set()).update(reads)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            reads = _names_in(node.iter)
            for name in _target_names(node.target):
                deps.setdefault(name, set()).update(reads)
        elif isinstance(node, ast.NamedExpr):
            deps.setdefault(node.target.id, set()).update(_names_in(node.value))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    for name in _target_names(item.optional_vars):
                        deps.setdefault(name, set()).update(_names_in(item.context_expr))
        stack.extend(ast.iter_child_nodes(node))
    return deps


def _defuse_nodes(nodes: list[ast.AST]) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    for node in nodes:
        if isinstance(node, ast.Assign):
            reads = _names_in(node.value)
            for t in node.targets:
                for name in _target_names(t):
                    deps.setdefault(name, set()).update(reads)
                if isinstance(t, ast.Subscript):
                    for name in _target_names(t):
                        deps.setdefault(name, set()).update(_names_in(t.slice))
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            reads = _names_in(node.value)
            for name in _target_names(node.target):
                deps.setdefault(name, set()).update(reads)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            reads = _names_in(node.iter)
            for name in _target_names(node.target):
                deps.setdefault(name, set()).update(reads)
        elif isinstance(node, ast.NamedExpr):
            deps.setdefault(node.target.id, set()).update(_names_in(node.value))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    for name in _target_names(item.optional_vars):
                        deps.setdefault(name, set()).update(_names_in(item.context_expr))
    return deps


def depends_on(func: FuncInfo, names: set[str], sources: set[str], limit: int = 400) -> bool:
    """Whether any of ``names`` (transitively, through assignments in ``func``) reads ``sources``."""
    deps = func.defuse()
    seen: set[str] = set()
    todo = list(names)
    while todo and len(seen) < limit:
        n = todo.pop()
        if n in sources:
            return True
        if n in seen:
            continue
        seen.add(n)
        todo.extend(deps.get(n, ()))
        head = n.split(".", 1)[0]
        if head != n:
            todo.append(head)
    return False


def names_in(node: ast.AST) -> set[str]:
    return _names_in(node)


def target_names(node: ast.AST) -> list[str]:
    return _target_names(node)
