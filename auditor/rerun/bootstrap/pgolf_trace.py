"""Validation-position provenance tracing, loaded into the sandboxed script before it runs.

What it records (JSON lines on the inherited descriptor PGOLF_TRACE_FD, one event per line, each
with a global sequence number ``seq`` and the submission's file:line):

* ``score``   a scoring computation: cross_entropy / nll_loss / gather / ``P[..., y]`` whose target
              index carries validation positions; grad mode; at probe positions, what the scored
              row looked like (log-sum-exp, sum) so the analyzer can check normalization;
* ``chunk``   a reduction (sum/mean/...) of per-position scores: which score events, which
              positions, and (at value positions) the per-position values that went in;
* ``use``     a chunk's scores leaving the tensor world (``.item()``, ``float()``, formatting,
              ``tolist``), or entering a ``backward``;
* ``backward``/``update``  a backward pass and every optimizer step or in-place parameter change,
              with the backward ids (hence positions) whose gradients it used;
* ``write``/``state_use``  an in-place write of position-carrying data into a tensor (a cache) and
              a later score that read that tensor.

How positions travel: validation shards are recognised where they are read (``np.fromfile`` /
``np.memmap`` on a file listed in PGOLF_VAL_LAYOUT). From there a numpy subclass (PosArray) and a
torch subclass (PosTensor, via ``__torch_function__``) carry an element-wise position map through
indexing, reshapes, unfold, cat, dtype and device moves (the same op is replayed on an int64
position tensor, so the semantics are exact), and a coarse "influenced by" set through everything
else (model forwards). Scores carry the score-event ids; reductions turn them into chunks; chunk
sets ride along through arithmetic, ``.item()`` (TaggedFloat) and formatting into the log line.

Nothing here decides legality: trace_analysis.py does, outside the sandbox.
"""

from __future__ import annotations

import atexit
import base64
import builtins
import json
import linecache
import math
import os
import sys
import threading

import numpy as np
import torch
from torch._C import DisableTorchFunctionSubclass

_DISABLE = DisableTorchFunctionSubclass
_LOCK = threading.RLock()
_STATE = {"seq": 0, "ids": 0, "in_step": False, "busy": False}
_WS = os.path.realpath(os.environ.get("PGOLF_WORKSPACE", os.getcwd()))
_BOOT = os.path.dirname(os.path.realpath(__file__))
_FD: int | None = None
_NONE = frozenset()

# ---------------------------------------------------------------------------------------------
# output


def _nd(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "b64": base64.b64encode(a.tobytes()).decode()}


def _next_seq() -> int:
    _STATE["seq"] += 1
    return _STATE["seq"]


def _new_id() -> int:
    _STATE["ids"] += 1
    return _STATE["ids"]


def _emit(rec: dict) -> None:
    if _FD is None:
        return
    data = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
    with _LOCK:
        view = memoryview(data)
        while view:
            n = os.write(_FD, view)
            view = view[n:]


_ORIGIN_CACHE: dict = {}


def _origin() -> dict:
    """The innermost frame in a workspace file that is not ours: the submission's file:line."""
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if fn.startswith(_WS) and not fn.startswith(_BOOT):
            key = (fn, f.f_lineno)
            hit = _ORIGIN_CACHE.get(key)
            if hit is None:
                hit = {"file": os.path.relpath(fn, _WS), "line": f.f_lineno,
                       "snippet": linecache.getline(fn, f.f_lineno).strip()[:160],
                       "func": f.f_code.co_name}
                _ORIGIN_CACHE[key] = hit
            return hit
        f = f.f_back
    return {}


def _grad_state() -> dict:
    return {"grad": bool(torch.is_grad_enabled()), "inference": bool(torch.is_inference_mode_enabled())}


# ---------------------------------------------------------------------------------------------
# provenance objects


class Contrib:
    """A DAG of chunk ids: union is O(1); flattening walks it once when a value is used."""

    __slots__ = ("chunk", "kids")

    def __init__(self, chunk=None, kids=()):
        self.chunk = chunk
        self.kids = kids


def c_union(a, b):
    if a is None:
        return b
    if b is None or a is b:
        return a
    return Contrib(None, (a, b))


def c_flat(c) -> list[int]:
    if c is None:
        return []
    out, seen, stack = [], set(), [c]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.chunk is not None:
            out.append(node.chunk)
        stack.extend(node.kids)
    return sorted(set(out))


class Prov:
    """Provenance of one tensor/array.

    elem    int64 CPU tensor, same shape as the data: validation position per element (-1: none)
    nll     score-event ids when the elements are per-position scores (needs elem)
    contrib chunks whose scores this (reduced) value contains
    parents Provs this one was mixed from (for the coarse 'influenced by' set, computed lazily)
    marks   ids of state writes whose data influenced this value
    bw      backward ids whose gradients this value carries (gradients)
    """

    __slots__ = ("elem", "nll", "contrib", "parents", "marks", "bw", "_coarse", "_mixed")

    def __init__(self, elem=None, nll=None, contrib=None, parents=(), marks=_NONE, bw=_NONE):
        self.elem = elem
        self.nll = nll
        self.contrib = contrib
        self.parents = parents
        self.marks = marks
        self.bw = bw
        self._coarse = None
        self._mixed = None

    def mixed(self) -> "Prov":
        """The Prov of a value computed from this one by a non-element-preserving op."""
        if self.elem is None and self.nll is None:
            return self
        if self._mixed is None:
            self._mixed = Prov(parents=(self,), marks=self.marks, bw=self.bw)
        return self._mixed

    def coarse(self) -> np.ndarray:
        """Sorted unique validation positions that influenced this value."""
        if self._coarse is None:
            parts, seen, stack = [], set(), [self]
            while stack:
                p = stack.pop()
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if p._coarse is not None and p is not self:
                    parts.append(p._coarse)
                    continue
                if p.elem is not None:
                    e = p.elem.reshape(-1).numpy()
                    parts.append(e[e >= 0])
                stack.extend(p.parents)
            self._coarse = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return self._coarse

    @property
    def empty(self) -> bool:
        return (self.elem is None and self.nll is None and self.contrib is None and not self.parents
                and not self.marks and not self.bw)


def _merge(provs: list[Prov]) -> Prov | None:
    """Prov of a value mixed from several inputs (no element alignment kept)."""
    uniq = []
    for p in provs:
        if p is not None and all(p is not q for q in uniq):
            uniq.append(p)
    if not uniq:
        return None
    contrib = None
    for p in uniq:
        contrib = c_union(contrib, p.contrib)
        if p.nll is not None:  # a score tensor folded by an op we do not model: keep its chunks
            contrib = c_union(contrib, _chunk_from(p, None, "mixed"))
    if len(uniq) == 1:
        p = uniq[0]
        if contrib is p.contrib and p.nll is None:
            return p.mixed()
        return Prov(contrib=contrib, parents=(p,), marks=p.marks, bw=p.bw)
    marks = _NONE.union(*[p.marks for p in uniq]) if any(p.marks for p in uniq) else _NONE
    bw = _NONE.union(*[p.bw for p in uniq]) if any(p.bw for p in uniq) else _NONE
    return Prov(contrib=contrib, parents=tuple(uniq), marks=marks, bw=bw)


# ---------------------------------------------------------------------------------------------
# configuration from the harness

_VAL_SHARDS: dict[str, tuple[int, int]] = {}  # realpath -> (first position, tokens)
_VALUE_MASK: np.ndarray | None = None  # positions whose per-position values are recorded
_PROBE_MASK: np.ndarray | None = None  # positions where scored rows are inspected
_N_VAL = 0


def _load_config() -> None:
    global _VALUE_MASK, _PROBE_MASK, _N_VAL
    path = os.environ.get("PGOLF_VAL_LAYOUT")
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for s in cfg["shards"]:
        _VAL_SHARDS[os.path.realpath(s["path"])] = (int(s["start"]), int(s["tokens"]))
    _N_VAL = int(cfg["n_tokens"])
    if cfg.get("values") == "all":
        _VALUE_MASK = np.ones(_N_VAL + 1, dtype=bool)
    else:
        _VALUE_MASK = np.zeros(_N_VAL + 1, dtype=bool)
        _VALUE_MASK[np.asarray(cfg.get("values") or [], dtype=np.int64)] = True
    _PROBE_MASK = np.zeros(_N_VAL + 1, dtype=bool)
    _PROBE_MASK[np.asarray(cfg.get("probes") or [], dtype=np.int64)] = True
    _VALUE_MASK |= _PROBE_MASK


def _in_mask(mask: np.ndarray | None, pos: np.ndarray) -> np.ndarray:
    if mask is None:
        return np.zeros(pos.shape, dtype=bool)
    ok = (pos >= 0) & (pos < len(mask))
    out = np.zeros(pos.shape, dtype=bool)
    out[ok] = mask[pos[ok]]
    return out


# ---------------------------------------------------------------------------------------------
# chunks (reductions of scores)


def _chunk_from(prov: Prov, values, op: str) -> Contrib:
    """Record that the per-position scores in ``prov`` were reduced together; return its leaf."""
    elem = prov.elem.reshape(-1).numpy() if prov.elem is not None else np.zeros(0, np.int64)
    keep = elem >= 0
    pos = elem[keep]
    cid = _new_id()
    rec = {"ev": "chunk", "id": cid, "seq": _next_seq(), "op": op, "scores": list(prov.nll or ()),
           "pos": _nd(pos.astype(np.int32))}
    if values is not None and pos.size:
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if vals.size == keep.size:
            vals = vals[keep]
            sel = _in_mask(_VALUE_MASK, pos)
            if sel.any():
                rec["vpos"] = _nd(pos[sel].astype(np.int32))
                rec["vals"] = _nd(vals[sel])
    rec.update(_origin())
    _emit(rec)
    return Contrib(chunk=cid)


def _values_of(data) -> np.ndarray | None:
    try:
        if isinstance(data, torch.Tensor):
            with _DISABLE():
                return data.detach().to("cpu", torch.float64).numpy()
        return np.asarray(data, dtype=np.float64)
    except Exception:  # noqa: BLE001 - complex or odd dtypes: positions are still recorded
        return None


def _use(kind: str, prov: Prov | None, **extra) -> None:
    if prov is None:
        return
    contrib = prov.contrib
    if prov.nll is not None:
        contrib = c_union(contrib, _chunk_from(prov, extra.pop("values", None), kind))
    extra.pop("values", None)
    chunks = c_flat(contrib)
    if not chunks:
        return
    rec = {"ev": "use", "kind": kind, "seq": _next_seq(), "chunks": chunks, **extra}
    rec.update(_origin())
    _emit(rec)


# ---------------------------------------------------------------------------------------------
# TaggedFloat: a Python float that remembers which chunks it was computed from


class TaggedFloat(float):
    __slots__ = ("_c",)

    def __new__(cls, value, contrib):
        obj = super().__new__(cls, value)
        obj._c = contrib
        return obj

    def _wrap(self, value, other=None):
        if value is NotImplemented:
            return value
        c = self._c
        if isinstance(other, TaggedFloat):
            c = c_union(c, other._c)
        if isinstance(value, float):
            return TaggedFloat(value, c)
        return value

    def __add__(self, o): return self._wrap(float.__add__(self, o), o)
    def __radd__(self, o): return self._wrap(float.__radd__(self, o), o)
    def __sub__(self, o): return self._wrap(float.__sub__(self, o), o)
    def __rsub__(self, o): return self._wrap(float.__rsub__(self, o), o)
    def __mul__(self, o): return self._wrap(float.__mul__(self, o), o)
    def __rmul__(self, o): return self._wrap(float.__rmul__(self, o), o)
    def __truediv__(self, o): return self._wrap(float.__truediv__(self, o), o)
    def __rtruediv__(self, o): return self._wrap(float.__rtruediv__(self, o), o)
    def __pow__(self, o, *a): return self._wrap(float.__pow__(self, o, *a), o)
    def __neg__(self): return self._wrap(float.__neg__(self))
    def __pos__(self): return self
    def __abs__(self): return self._wrap(float.__abs__(self))
    def __round__(self, n=None):
        return self._wrap(float.__round__(self, n)) if n is not None else float.__round__(self)

    def __format__(self, spec):
        text = float.__format__(self, spec)
        _use("format", Prov(contrib=self._c), text=text, value=float(self))
        return text

    def __str__(self):
        text = float.__repr__(self)
        _use("format", Prov(contrib=self._c), text=text, value=float(self))
        return text

    __repr__ = __str__

    def __reduce__(self):
        return (float, (float(self),))


# ---------------------------------------------------------------------------------------------
# element-wise replays: the same op on the int64 position tensor


def _pos_of(t) -> torch.Tensor | None:
    p = getattr(t, "_pg", None)
    return p.elem if p is not None else None


def _filled(t) -> torch.Tensor:
    return torch.full(tuple(t.shape), -1, dtype=torch.int64)


def _cpu_plain(x):
    """Index arguments for replay on the CPU position tensor."""
    if isinstance(x, torch.Tensor):
        with _DISABLE():
            return x.detach().to("cpu") if x.device.type != "cpu" else x.detach()
    if isinstance(x, np.ndarray):
        return np.asarray(x).view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_cpu_plain(v) for v in x)
    if isinstance(x, list):
        return [_cpu_plain(v) for v in x]
    return x


def _replay(func, args, kwargs, data_pos: int = 0):
    """Apply ``func`` with every tensor argument replaced by its position tensor."""
    def sub(a):
        if isinstance(a, torch.Tensor):
            p = _pos_of(a)
            if p is None:
                p = _filled(a)
            return p
        if isinstance(a, (list, tuple)) and a and all(isinstance(v, torch.Tensor) for v in a):
            return type(a)(sub(v) for v in a)
        return a

    new_args = list(args)
    new_args[data_pos] = sub(args[data_pos])
    for i, a in enumerate(new_args):
        if i != data_pos:
            new_args[i] = _cpu_plain(a)
    new_kwargs = {k: _cpu_plain(v) for k, v in kwargs.items() if k not in ("out",)}
    with _DISABLE():
        return func(*new_args, **new_kwargs)


# ---------------------------------------------------------------------------------------------
# PosTensor


def _wrap(out, prov: Prov | None):
    if prov is None or prov.empty:
        return out
    if isinstance(out, torch.Tensor):
        if type(out) is not PosTensor:
            try:
                out = out.as_subclass(PosTensor)
            except Exception:  # noqa: BLE001
                return out
        out._pg = prov
        return out
    if isinstance(out, (tuple, list)):
        return type(out)(_wrap(o, prov) for o in out) if not hasattr(out, "_fields") else out
    return out


def _wrap_elems(out, pos, base: Prov):
    """Wrap outputs of a position-preserving op; ``pos`` mirrors ``out``'s structure."""
    if isinstance(out, torch.Tensor):
        return _wrap(out, Prov(elem=pos if isinstance(pos, torch.Tensor) else None, nll=base.nll,
                               contrib=base.contrib, marks=base.marks, bw=base.bw, parents=base.parents))
    if isinstance(out, (tuple, list)) and isinstance(pos, (tuple, list)) and len(out) == len(pos):
        return type(out)(_wrap_elems(o, p, base) for o, p in zip(out, pos))
    return _wrap(out, base.mixed())


def _collect(args, kwargs) -> list[Prov]:
    provs = []
    for a in args:
        p = getattr(a, "_pg", None)
        if p is not None:
            provs.append(p)
        elif isinstance(a, (list, tuple)):
            for v in a:
                q = getattr(v, "_pg", None)
                if q is not None:
                    provs.append(q)
    for v in kwargs.values():
        p = getattr(v, "_pg", None)
        if p is not None:
            provs.append(p)
    return provs


class PosTensor(torch.Tensor):
    """A tensor that carries a Prov in ``_pg``."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        handler = _HANDLERS.get(func)
        if handler is not None and not _STATE["busy"]:
            return handler(func, args, kwargs)
        with _DISABLE():
            out = func(*args, **kwargs)
        if func in _PASS or _STATE["busy"] or not isinstance(out, (torch.Tensor, tuple, list)):
            return out
        return _wrap(out, _merge(_collect(args, kwargs)))

    def __reduce_ex__(self, proto):
        with _DISABLE():
            return torch.Tensor.__reduce_ex__(self.as_subclass(torch.Tensor), proto)


def _attach(t: torch.Tensor, prov: Prov) -> torch.Tensor:
    """Give an existing tensor object (an accumulator, a gradient, a cache) a Prov in place."""
    if type(t) is torch.Tensor:
        try:
            t.__class__ = PosTensor
        except TypeError:
            return t
    if isinstance(t, PosTensor):
        t._pg = prov
    return t


# ---------------------------------------------------------------------------------------------
# handlers


_VIEW_NAMES = {
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t",
    "expand", "expand_as", "broadcast_to", "repeat", "unfold", "narrow", "select", "split", "chunk",
    "unbind", "flip", "roll", "__getitem__", "index_select", "take", "movedim", "moveaxis", "swapaxes",
    "swapdims", "tile", "repeat_interleave", "contiguous", "clone", "detach", "view_as", "reshape_as",
    "ravel", "hsplit", "vsplit", "tensor_split", "split_with_sizes", "as_strided", "diagonal",
    "take_along_dim", "masked_select", "__deepcopy__",
}
_MULTI_NAMES = {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"}
_CAST_NAMES = {
    "to", "type", "float", "double", "half", "bfloat16", "long", "int", "short", "char", "byte", "bool",
    "cpu", "cuda", "type_as", "pin_memory", "requires_grad_", "retain_grad", "share_memory_", "__copy__",
}
_ELEMWISE_NAMES = {
    "add", "sub", "mul", "div", "true_divide", "neg", "negative", "exp", "log", "log1p", "expm1", "log2",
    "log10", "sigmoid", "tanh", "abs", "clamp", "clip", "clamp_min", "clamp_max", "minimum", "maximum",
    "fmin", "fmax", "pow", "sqrt", "rsqrt", "square", "rsub", "nan_to_num", "softplus", "relu", "reciprocal",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__neg__", "__pow__", "__rpow__", "__abs__", "xlogy", "lerp", "where", "masked_fill", "float_power",
    "exp2", "logaddexp", "sign", "floor", "ceil", "round", "trunc", "frac", "remainder", "fmod",
    "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "floor_divide", "bitwise_xor", "bitwise_and",
    "bitwise_or", "__xor__", "__and__", "__or__", "__rxor__", "__rand__", "__ror__", "__lshift__",
    "__rshift__", "bitwise_left_shift", "bitwise_right_shift", "eq", "ne", "lt", "le", "gt", "ge",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "logical_not", "logical_and", "logical_or",
    "isnan", "isinf", "isfinite", "copysign", "hypot", "addcmul", "addcdiv",
}
_REDUCE_NAMES = {"sum", "mean", "nansum", "nanmean", "dot", "vdot", "inner"}
_INPLACE_EXTRA = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__setitem__", "copy_", "index_put_",
                  "index_add_", "index_copy_", "scatter_", "scatter_add_", "scatter_reduce_", "masked_scatter_",
                  "put_", "index_fill_", "masked_fill_", "__ixor__", "__iand__", "__ior__", "__ifloordiv__"}
_CLEARING = {"zero_", "fill_"}

_PASS: set = set()
_HANDLERS: dict = {}


def _name(func) -> str:
    return getattr(func, "__name__", "") or ""


def _base_prov(args) -> Prov | None:
    return getattr(args[0], "_pg", None) if args else None


def _h_view(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    base = _base_prov(args)
    provs = _collect(args, kwargs)
    if base is None or base.elem is None:
        # the data carries no element map, but an index might (lut[y], val[idx]): follow the index
        idx_provs = [p for p in provs if p is not base and p.elem is not None]
        if idx_provs and _name(func) in ("__getitem__", "index_select", "take", "take_along_dim"):
            return _h_lookup(func, args, kwargs, out, base, provs)
        return _wrap(out, _merge(provs))
    try:
        pos = _replay(func, args, kwargs)
    except Exception:  # noqa: BLE001 - unusual signature: fall back to the coarse set
        return _wrap(out, _merge(provs))
    if len(provs) > 1:  # indexed by another position-carrying tensor: keep the data's map, merge the rest
        others = [p for p in provs if p is not base]
        merged = _merge(others)
        base = Prov(nll=base.nll, contrib=c_union(base.contrib, merged.contrib if merged else None),
                    marks=base.marks | (merged.marks if merged else _NONE), bw=base.bw,
                    parents=base.parents + tuple(others))
    if _name(func) == "__getitem__" and base.nll is None and _is_score_index(args):
        return _h_score_index(func, args, kwargs, out)
    return _wrap_elems(out, pos, base)


def _is_score_index(args) -> bool:
    """``P[..., y]``: a float table indexed on its last axis by a position-carrying index."""
    data, key = args[0], args[1] if len(args) > 1 else None
    if not isinstance(key, tuple) or not key or data.ndim != len(key) or data.ndim < 2:
        return False
    last = key[-1]
    return (isinstance(last, torch.Tensor) and _pos_of(last) is not None and data.is_floating_point()
            and data.shape[-1] >= 2)


def _h_lookup(func, args, kwargs, out, base, provs):
    """``table[idx]`` where only the index has positions: the output follows the index's map."""
    data = args[0]
    key = args[1] if len(args) > 1 else kwargs.get("index")
    if _name(func) == "__getitem__" and isinstance(key, tuple) and _is_score_index(args):
        return _h_score_index(func, args, kwargs, out)
    idx = key[-1] if isinstance(key, tuple) and key else key
    if _name(func) == "index_select":
        idx = args[2] if len(args) > 2 else kwargs.get("index")
    ipos = _pos_of(idx)
    others = [p for p in provs if p is not getattr(idx, "_pg", None)]
    merged = _merge(others)
    marks = merged.marks if merged else _NONE
    if ipos is not None and isinstance(out, torch.Tensor) and tuple(ipos.shape) == tuple(out.shape):
        return _wrap(out, Prov(elem=ipos, marks=marks, parents=tuple(others),
                               contrib=merged.contrib if merged else None))
    if ipos is not None and isinstance(out, torch.Tensor) and out.ndim > ipos.ndim and \
            tuple(out.shape[: ipos.ndim]) == tuple(ipos.shape) and data.ndim >= 1:
        # table rows gathered by token (embedding-like): every feature of a row has the index's position
        e = ipos.reshape(tuple(ipos.shape) + (1,) * (out.ndim - ipos.ndim)).expand(tuple(out.shape))
        return _wrap(out, Prov(elem=e, marks=marks, parents=tuple(others)))
    return _wrap(out, _merge(provs))


def _h_cast(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    base = _base_prov(args)
    if base is None:
        return _wrap(out, _merge(_collect(args, kwargs)))
    if isinstance(out, torch.Tensor) and out is args[0]:
        return out
    return _wrap(out, base)


def _h_multi(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    seq = args[0] if args else kwargs.get("tensors")
    provs = [getattr(t, "_pg", None) for t in seq] if isinstance(seq, (list, tuple)) else []
    if not any(p is not None and p.elem is not None for p in provs):
        return _wrap(out, _merge(_collect(args, kwargs)))
    try:
        pos = _replay(func, args, kwargs)
    except Exception:  # noqa: BLE001
        return _wrap(out, _merge(_collect(args, kwargs)))
    real = [p for p in provs if p is not None]
    nll = tuple(sorted({e for p in real for e in (p.nll or ())})) or None
    if nll is not None and any(p is None or p.nll is None for p in provs):
        nll = None  # scores concatenated with non-scores: positions stay, scores would be mislabeled
        return _wrap(out, Prov(elem=pos, contrib=_merge(real).contrib, parents=tuple(real)))
    contrib = None
    for p in real:
        contrib = c_union(contrib, p.contrib)
    marks = _NONE.union(*[p.marks for p in real])
    return _wrap(out, Prov(elem=pos, nll=nll, contrib=contrib, marks=marks, parents=()))


def _broadcast_max(tensors_pos: list[torch.Tensor], shape) -> torch.Tensor:
    out = None
    for p in tensors_pos:
        b = p.broadcast_to(shape)
        out = b if out is None else torch.maximum(out, b)
    return out


def _zero_mask(x, shape) -> torch.Tensor | None:
    """Where a plain multiplier is exactly zero (a mask), as a broadcast bool tensor."""
    if isinstance(x, torch.Tensor) and getattr(x, "_pg", None) is None:
        with _DISABLE():
            if x.dtype == torch.bool:
                return (~x.detach().cpu()).broadcast_to(shape)
            if x.numel() > 1 or x.ndim > 0:
                return (x.detach().cpu() == 0).broadcast_to(shape)
    return None


def _h_elemwise(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    provs = _collect(args, kwargs)
    if not isinstance(out, torch.Tensor) or not provs:
        return _wrap(out, _merge(provs))
    withpos = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor) and _pos_of(a) is not None]
    if not withpos:
        return _wrap(out, _merge(provs))
    shape = tuple(out.shape)
    try:
        pos = _broadcast_max([_pos_of(a) for a in withpos], shape).clone()
    except RuntimeError:
        return _wrap(out, _merge(provs))
    nll = tuple(sorted({e for p in provs for e in (p.nll or ())})) or None
    name = _name(func)
    if nll is not None:
        # masks drop positions: x * mask, where(cond, x, 0), x.masked_fill(mask, 0)
        if name in ("mul", "__mul__", "__rmul__"):
            for a in args:
                m = _zero_mask(a, shape)
                if m is not None:
                    pos[m] = -1
        elif name == "where" and len(args) >= 2 and isinstance(args[0], torch.Tensor):
            with _DISABLE():
                cond = args[0].detach().cpu().broadcast_to(shape)
            score_in_x = _pos_of(args[1]) is not None if isinstance(args[1], torch.Tensor) else False
            pos[~cond if score_in_x else cond] = -1
        elif name == "masked_fill" and len(args) >= 2 and isinstance(args[1], torch.Tensor):
            with _DISABLE():
                pos[args[1].detach().cpu().broadcast_to(shape)] = -1
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    marks = _NONE.union(*[p.marks for p in provs]) if any(p.marks for p in provs) else _NONE
    bw = _NONE.union(*[p.bw for p in provs]) if any(p.bw for p in provs) else _NONE
    parents = tuple(p for p in provs if p.elem is None)
    return _wrap(out, Prov(elem=pos, nll=nll, contrib=contrib, marks=marks, bw=bw, parents=parents))


def _h_reduce(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    provs = _collect(args, kwargs)
    scored = [p for p in provs if p.nll is not None]
    if not scored:
        return _wrap(out, _merge(provs))
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    src = args[0]
    for p in scored:
        contrib = c_union(contrib, _chunk_from(p, _values_of(src) if p is getattr(src, "_pg", None) else None,
                                               _name(func)))
    marks = _NONE.union(*[p.marks for p in provs]) if any(p.marks for p in provs) else _NONE
    return _wrap(out, Prov(contrib=contrib, marks=marks, parents=tuple(p.mixed() for p in provs)))


# --- scoring ops -------------------------------------------------------------------------------


def _score_event(kind: str, target_pos: torch.Tensor, inp, extra: dict | None = None) -> int:
    sid = _new_id()
    flat = target_pos.reshape(-1).numpy()
    valid = flat[flat >= 0]
    rec = {"ev": "score", "id": sid, "seq": _next_seq(), "kind": kind, "n": int(valid.size),
           "lo": int(valid.min()) if valid.size else -1, "hi": int(valid.max()) if valid.size else -1,
           "requires_grad": bool(getattr(inp, "requires_grad", False)), **_grad_state()}
    ip = getattr(inp, "_pg", None)
    if ip is not None and ip.marks:
        rec["marks"] = sorted(ip.marks)
    if extra:
        rec.update(extra)
    rec.update(_origin())
    _emit(rec)
    return sid


def _probe_rows(kind: str, sid: int, rows: torch.Tensor, picked: torch.Tensor, pos: np.ndarray) -> None:
    """At probe positions: what distribution was indexed. ``rows`` [k, V] float, ``picked`` [k]."""
    with _DISABLE():
        r = rows.detach().to("cpu", torch.float64)
        v = picked.detach().to("cpu", torch.float64).reshape(-1)
        rec = {"ev": "probe", "score": sid, "kind": kind, "pos": pos.astype(int).tolist(),
               "lse": torch.logsumexp(r, dim=-1).tolist(), "sum": r.sum(dim=-1).tolist(),
               "min": r.min(dim=-1).values.tolist(), "max": r.max(dim=-1).values.tolist(),
               "picked": v.tolist(), "vocab": int(r.shape[-1])}
    _emit(rec)


def _h_cross_entropy(func, args, kwargs):
    names = ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction", "label_smoothing")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    inp, target = bound.get("input"), bound.get("target")
    tpos = _pos_of(target)
    with _DISABLE():
        out = func(*args, **kwargs)
    if tpos is None or not isinstance(target, torch.Tensor) or target.is_floating_point():
        return _wrap(out, _merge(_collect(args, kwargs)))
    kind = "nll_loss" if _name(func) == "nll_loss" else "cross_entropy"
    reduction = bound.get("reduction", "mean")
    if bound.get("reduce") is False or bound.get("size_average") is False:
        reduction = "none" if bound.get("reduce") is False else "sum"
    ignore = bound.get("ignore_index", -100)
    _STATE["busy"] = True
    try:
        with _DISABLE(), torch.no_grad():
            per = out.detach() if reduction == "none" else func(
                inp.detach(), target, weight=bound.get("weight"), ignore_index=ignore, reduction="none",
                **({"label_smoothing": bound.get("label_smoothing", 0.0)} if kind == "cross_entropy" else {}))
            tcpu = target.detach().cpu()
        pos = tpos.clone().reshape(tuple(per.shape)) if tpos.numel() == per.numel() else None
        if pos is None:
            return _wrap(out, _merge(_collect(args, kwargs)))
        pos[tcpu.reshape(tuple(per.shape)) == ignore] = -1
        extra = {"norm": "softmax" if kind == "cross_entropy" else "as_given",
                 "label_smoothing": float(bound.get("label_smoothing", 0.0) or 0.0), "reduction": reduction}
        sid = _score_event(kind, pos, inp, extra)
        sel = _in_mask(_PROBE_MASK, pos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:32]
            with _DISABLE(), torch.no_grad():
                x = inp.detach()
                if x.ndim > 2:  # [B, V, d1...] -> rows along dim 1
                    x = x.movedim(1, -1)
                rows = x.reshape(-1, x.shape[-1])[torch.as_tensor(idx, device=x.device)]
                if kind == "cross_entropy":
                    rows = torch.log_softmax(rows.float(), dim=-1)
                picked = -per.reshape(-1)[torch.as_tensor(idx, device=per.device)]
            _probe_rows(kind, sid, rows, picked, pos.reshape(-1).numpy()[idx])
        ip = getattr(inp, "_pg", None)
        parents = (ip.mixed(),) if ip is not None else ()
        marks = ip.marks if ip is not None else _NONE
        score_prov = Prov(elem=pos, nll=(sid,), marks=marks, parents=parents)
        if reduction == "none":
            return _wrap(out, score_prov)
        chunk = _chunk_from(score_prov, _values_of(per), kind + ":" + reduction)
        return _wrap(out, Prov(contrib=chunk, marks=marks, parents=(score_prov.mixed(),)))
    finally:
        _STATE["busy"] = False


def _h_gather(func, args, kwargs):
    names = ("input", "dim", "index")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    inp, dim, index = bound.get("input"), bound.get("dim"), bound.get("index")
    with _DISABLE():
        out = func(*args, **kwargs)
    ipos = _pos_of(index)
    if ipos is None or not isinstance(inp, torch.Tensor) or not inp.is_floating_point() or \
            tuple(ipos.shape) != tuple(out.shape):
        base = _base_prov(args)
        if base is not None and base.elem is not None and ipos is None:
            try:
                return _wrap_elems(out, _replay(func, args, kwargs), base)
            except Exception:  # noqa: BLE001
                pass
        return _wrap(out, _merge(_collect(args, kwargs)))
    _STATE["busy"] = True
    try:
        sid = _score_event("gather", ipos, inp, {"vocab": int(inp.shape[dim])})
        sel = _in_mask(_PROBE_MASK, ipos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:32]
            with _DISABLE(), torch.no_grad():
                x = inp.detach().movedim(dim, -1)
                o = out.detach().movedim(dim, -1)
                coords = np.unravel_index(idx, tuple(o.shape))
                lead = tuple(torch.as_tensor(c[:], device=x.device) for c in coords[:-1])
                rows = x[lead] if lead else x.reshape(1, -1).expand(len(idx), -1)
                picked = o[lead + (torch.as_tensor(coords[-1], device=o.device),)] if lead else o.reshape(-1)[idx]
            _probe_rows("gather", sid, rows, picked, ipos.reshape(-1).numpy()[idx])
        ip = getattr(inp, "_pg", None)
        return _wrap(out, Prov(elem=ipos.clone(), nll=(sid,), marks=ip.marks if ip else _NONE,
                               parents=(ip.mixed(),) if ip else ()))
    finally:
        _STATE["busy"] = False


def _h_score_index(func, args, kwargs, out):
    data, key = args[0], args[1]
    ypos = _pos_of(key[-1])
    if ypos is None or tuple(ypos.shape) != tuple(out.shape):
        try:
            ypos = ypos.broadcast_to(tuple(out.shape)).clone()
        except (RuntimeError, AttributeError):
            return _wrap(out, _merge(_collect(args, kwargs)))
    _STATE["busy"] = True
    try:
        sid = _score_event("index", ypos, data, {"vocab": int(data.shape[-1])})
        sel = _in_mask(_PROBE_MASK, ypos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:32]
            with _DISABLE(), torch.no_grad():
                rows_all = data.detach()[tuple(_cpu_plain(k).to(data.device) if isinstance(k, torch.Tensor) else k
                                               for k in key[:-1])]
                rows_all = rows_all.broadcast_to(tuple(out.shape) + (data.shape[-1],))
                rows = rows_all.reshape(-1, data.shape[-1])[torch.as_tensor(idx, device=data.device)]
                picked = out.detach().reshape(-1)[torch.as_tensor(idx, device=out.device)]
            _probe_rows("index", sid, rows, picked, ypos.reshape(-1).numpy()[idx])
        dp = getattr(data, "_pg", None)
        return _wrap(out, Prov(elem=ypos.clone(), nll=(sid,), marks=dp.marks if dp else _NONE,
                               parents=(dp.mixed(),) if dp else ()))
    finally:
        _STATE["busy"] = False


# --- leaving the tensor world ----------------------------------------------------------------


def _h_item(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = _base_prov(args)
    if p is None or (p.contrib is None and p.nll is None) or not isinstance(out, float):
        return out
    if p.nll is not None:
        contrib = c_union(p.contrib, _chunk_from(p, _values_of(args[0]), "item"))
    else:
        contrib = p.contrib
    _use("item", Prov(contrib=contrib), value=float(out))
    return TaggedFloat(out, contrib)


def _h_exit(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = _base_prov(args)
    if p is not None and (p.contrib is not None or p.nll is not None):
        value = float(out) if isinstance(out, (int, float)) else None
        _use(_name(func).strip("_"), p, values=_values_of(args[0]) if p.nll is not None else None,
             **({"value": value} if value is not None else {}))
    return out


def _h_format(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = _base_prov(args)
    if p is not None and (p.contrib is not None or p.nll is not None) and isinstance(out, str):
        value = None
        try:
            with _DISABLE():
                value = float(args[0]) if args[0].numel() == 1 else None
        except Exception:  # noqa: BLE001
            pass
        _use("format", p, text=out, value=value, values=_values_of(args[0]) if p.nll is not None else None)
    return out


def _h_numpy(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = _base_prov(args)
    if p is None or not isinstance(out, np.ndarray):
        return out
    return _as_pos_array(out, p)


# --- in-place writes, backward, parameters ---------------------------------------------------

_PARAM_STORAGE: set[int] = set()


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        with _DISABLE():
            return t.untyped_storage().data_ptr()
    except Exception:  # noqa: BLE001
        return None


def _positions_summary(arr: np.ndarray) -> dict:
    return {"pos": _nd(arr.astype(np.int32))} if arr.size else {"pos": None}


def _h_inplace(func, args, kwargs):
    dest = args[0]
    dest_prov_before = getattr(dest, "_pg", None)
    with _DISABLE():
        out = func(*args, **kwargs)
    name = _name(func)
    src_provs = [p for p in _collect(args[1:], kwargs)]
    if name in _CLEARING and not src_provs:
        if dest_prov_before is not None:
            dest._pg = Prov()
        return out
    if not src_provs:
        return out
    src = _merge(src_provs)
    # a gradient-driven change of a parameter outside an optimizer step (manual SGD)
    if not _STATE["in_step"] and src.bw and _storage_key(dest) in _PARAM_STORAGE:
        rec = {"ev": "update", "kind": "param_inplace", "seq": _next_seq(), "bw": sorted(src.bw),
               "op": name, **_grad_state()}
        rec.update(_origin())
        _emit(rec)
    # scores written into another tensor keep their element map there (a per-token NLL buffer)
    new_elem = dest_prov_before.elem if dest_prov_before is not None else None
    score_src = [p for p in src_provs if p.nll is not None]
    if name == "__setitem__" and any(p.elem is not None for p in src_provs):
        try:
            pos = new_elem.clone() if new_elem is not None else _filled(dest)
            val = args[2] if len(args) > 2 else None
            vpos = _pos_of(val) if isinstance(val, torch.Tensor) else None
            if vpos is not None:
                pos[_cpu_plain(args[1])] = vpos
                new_elem = pos
        except Exception:  # noqa: BLE001
            pass
    nll = None
    if score_src and new_elem is not None:
        nll = tuple(sorted({e for p in score_src for e in p.nll} | set(getattr(dest_prov_before, "nll", None) or ())))
    contrib = c_union(dest_prov_before.contrib if dest_prov_before is not None else None, src.contrib)
    if score_src and nll is None:  # accumulating scores into a scalar/vector: a reduction
        for p in score_src:
            contrib = c_union(contrib, _chunk_from(p, None, name))
    marks = (dest_prov_before.marks if dest_prov_before is not None else _NONE) | src.marks
    # position-carrying data (not scores, not gradients) written into a tensor: possible model state
    if not score_src and not src.bw and src.contrib is None and not _STATE["in_step"]:
        coarse = src.coarse()
        if coarse.size:
            wid = _new_id()
            rec = {"ev": "write", "id": wid, "seq": _next_seq(), "op": name, **_positions_summary(coarse)}
            rec.update(_origin())
            _emit(rec)
            marks = marks | {wid}
    bw = (dest_prov_before.bw if dest_prov_before is not None else _NONE) | src.bw
    parents = (dest_prov_before.mixed(),) if dest_prov_before is not None else ()
    prov = Prov(elem=new_elem, nll=nll, contrib=contrib, marks=marks, bw=bw,
                parents=parents + tuple(p.mixed() for p in src_provs))
    target = out if isinstance(out, torch.Tensor) else dest
    _attach(target, prov)
    if target is not dest and isinstance(dest, torch.Tensor):
        _attach(dest, prov)
    return out


def _graph_leaves(roots) -> list[torch.Tensor]:
    leaves, seen, stack = [], set(), [r.grad_fn for r in roots if getattr(r, "grad_fn", None) is not None]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        var = getattr(fn, "variable", None)
        if var is not None:
            leaves.append(var)
        for nxt, _ in getattr(fn, "next_functions", ()):
            if nxt is not None:
                stack.append(nxt)
    return leaves


def _record_backward(roots) -> int | None:
    provs = [getattr(r, "_pg", None) for r in roots]
    provs = [p for p in provs if p is not None]
    if not provs:
        return None
    bid = _new_id()
    merged = _merge(provs)
    chunks = []
    contrib = merged.contrib
    for p in provs:
        if p.nll is not None:
            contrib = c_union(contrib, _chunk_from(p, None, "backward"))
    chunks = c_flat(contrib)
    rec = {"ev": "backward", "id": bid, "seq": _next_seq(), "chunks": chunks, **_grad_state()}
    if not chunks:  # a loss that is not built from scores: fall back to everything that influenced it
        rec.update(_positions_summary(merged.coarse()))
    rec.update(_origin())
    _emit(rec)
    if chunks:
        _emit({"ev": "use", "kind": "backward", "seq": rec["seq"], "chunks": chunks, "backward": bid,
               **{k: rec[k] for k in ("file", "line", "snippet") if k in rec}})
    return bid


def _tag_grads(leaves, bid: int) -> None:
    for leaf in leaves:
        key = _storage_key(leaf)
        if key is not None:
            _PARAM_STORAGE.add(key)
        g = leaf.grad
        if g is None:
            continue
        old = getattr(g, "_pg", None)
        prov = Prov(bw=(old.bw if old is not None else _NONE) | {bid})
        _attach(g, prov)


def _h_backward(func, args, kwargs):
    root = args[0]
    bid = _record_backward([root])
    leaves = _graph_leaves([root]) if bid is not None else []
    _STATE["busy"] = True
    try:
        with _DISABLE():
            out = func(*args, **kwargs)
    finally:
        _STATE["busy"] = False
    if bid is not None:
        _tag_grads(leaves, bid)
    return out


def _wrap_autograd_backward(orig):
    def backward(tensors, *a, **k):
        roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        bid = _record_backward(roots)
        leaves = _graph_leaves(roots) if bid is not None else []
        out = orig(tensors, *a, **k)
        if bid is not None:
            _tag_grads(leaves, bid)
        return out
    backward.__wrapped__ = orig
    return backward


def _wrap_autograd_grad(orig):
    def grad(outputs, inputs, *a, **k):
        roots = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        bid = _record_backward(roots)
        res = orig(outputs, inputs, *a, **k)
        if bid is None:
            return res
        ins = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        for t in ins:
            key = _storage_key(t)
            if key is not None:
                _PARAM_STORAGE.add(key)
        return tuple(_wrap(g, Prov(bw=frozenset({bid}))) if isinstance(g, torch.Tensor) else g for g in res)
    grad.__wrapped__ = orig
    return grad


def _step_pre_hook(optimizer, args, kwargs):
    bws = set()
    for group in optimizer.param_groups:
        for p in group["params"]:
            key = _storage_key(p)
            if key is not None:
                _PARAM_STORAGE.add(key)
            g = p.grad
            prov = getattr(g, "_pg", None) if g is not None else None
            if prov is not None and prov.bw:
                bws |= prov.bw
    _STATE["in_step"] = True
    if bws:
        rec = {"ev": "update", "kind": "optimizer_step", "seq": _next_seq(), "bw": sorted(bws),
               "optimizer": type(optimizer).__name__, **_grad_state()}
        rec.update(_origin())
        _emit(rec)


def _step_post_hook(optimizer, args, kwargs):
    _STATE["in_step"] = False


# ---------------------------------------------------------------------------------------------
# numpy side: PosArray


def _as_pos_array(arr: np.ndarray, prov: Prov) -> np.ndarray:
    out = arr.view(PosArray)
    out._pg = prov
    return out


def _np_plain(x):
    if isinstance(x, PosArray):
        return x.view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_np_plain(v) for v in x)
    if isinstance(x, list):
        return [_np_plain(v) for v in x]
    if isinstance(x, torch.Tensor) and _pos_of(x) is not None:
        with _DISABLE():
            return x.as_subclass(torch.Tensor)
    return x


def _np_pos(x) -> np.ndarray | None:
    p = getattr(x, "_pg", None)
    if p is None or p.elem is None:
        return None
    return p.elem.numpy()


def _np_wrap(out, prov: Prov | None):
    if prov is None or prov.empty:
        return out
    if isinstance(out, np.ndarray):
        return _as_pos_array(out, prov)
    if isinstance(out, (np.floating, float)) and prov.contrib is not None:
        return TaggedFloat(float(out), prov.contrib)
    return out


def _np_prov_elem(elem: np.ndarray, base: Prov) -> Prov:
    return Prov(elem=torch.from_numpy(np.ascontiguousarray(elem, dtype=np.int64)), nll=base.nll,
                contrib=base.contrib, marks=base.marks, bw=base.bw, parents=base.parents)


_NP_ELEMWISE_METHODS = ("__call__",)
_NP_REDUCERS = {"sum", "mean", "nansum", "nanmean", "average", "dot", "inner"}
_NP_VIEWS = {"concatenate", "stack", "hstack", "vstack", "reshape", "ravel", "transpose", "squeeze",
             "expand_dims", "atleast_1d", "atleast_2d", "copy", "flip", "roll", "take", "take_along_axis",
             "broadcast_to", "repeat", "tile", "array_split", "split", "swapaxes", "moveaxis"}


class PosArray(np.ndarray):
    """A numpy array that carries a Prov (element map in ``_pg.elem`` as an int64 tensor)."""

    _pg: Prov | None = None

    def __array_finalize__(self, obj):
        # views made by numpy internals are re-wrapped by the methods below; default: no provenance
        if getattr(self, "_pg", None) is None:
            self._pg = None

    def _derive(self, out, key_fn):
        p = self._pg
        if p is None or not isinstance(out, np.ndarray):
            return out if not isinstance(out, PosArray) else out.view(np.ndarray) if p is None else out
        if p.elem is None:
            return _np_wrap(out.view(np.ndarray), p)
        try:
            elem = key_fn(p.elem.numpy())
        except Exception:  # noqa: BLE001
            return _np_wrap(out.view(np.ndarray), p.mixed())
        return _np_wrap(out.view(np.ndarray), _np_prov_elem(elem, p))

    def __getitem__(self, key):
        plain_key = _np_plain(key)
        out = np.ndarray.__getitem__(self.view(np.ndarray), plain_key)
        p = self._pg
        if p is None:
            return _np_lookup(out, key)
        if not isinstance(out, np.ndarray):
            return out
        if p.elem is None:
            return _np_wrap(out, p)
        res = self._derive(out, lambda e: e[plain_key])
        kp = _np_key_prov(key)
        if kp is not None and p.nll is None and self.dtype.kind == "f" and self.ndim >= 2 \
                and isinstance(key, tuple) and len(key) == self.ndim:
            return _np_score(self, key, out)
        return res

    def __setitem__(self, key, value):
        np.ndarray.__setitem__(self.view(np.ndarray), _np_plain(key), _np_plain(value))
        vp = getattr(value, "_pg", None)
        if vp is None:
            return
        p = self._pg or Prov()
        elem = p.elem.numpy().copy() if p.elem is not None else np.full(self.shape, -1, dtype=np.int64)
        if vp.elem is not None:
            try:
                elem[_np_plain(key)] = vp.elem.numpy()
            except Exception:  # noqa: BLE001
                pass
        nll = tuple(sorted(set(p.nll or ()) | set(vp.nll or ()))) if vp.nll is not None else p.nll
        if vp.nll is None and vp.elem is not None and not _STATE["in_step"]:
            wid = _new_id()
            rec = {"ev": "write", "id": wid, "seq": _next_seq(), "op": "ndarray.__setitem__",
                   **_positions_summary(vp.coarse())}
            rec.update(_origin())
            _emit(rec)
            marks = p.marks | vp.marks | {wid}
        else:
            marks = p.marks | vp.marks
        self._pg = Prov(elem=torch.from_numpy(elem), nll=nll, contrib=c_union(p.contrib, vp.contrib),
                        marks=marks, parents=p.parents)

    def astype(self, *a, **k):
        return self._derive(np.ndarray.astype(self.view(np.ndarray), *a, **k), lambda e: e)

    def copy(self, *a, **k):
        return self._derive(np.ndarray.copy(self.view(np.ndarray), *a, **k), lambda e: e.copy())

    def reshape(self, *a, **k):
        return self._derive(np.ndarray.reshape(self.view(np.ndarray), *a, **k), lambda e: e.reshape(*a, **k))

    def ravel(self, *a, **k):
        return self._derive(np.ndarray.ravel(self.view(np.ndarray), *a, **k), lambda e: e.ravel(*a, **k))

    def flatten(self, *a, **k):
        return self._derive(np.ndarray.flatten(self.view(np.ndarray), *a, **k), lambda e: e.flatten(*a, **k))

    def transpose(self, *a, **k):
        return self._derive(np.ndarray.transpose(self.view(np.ndarray), *a, **k), lambda e: e.transpose(*a, **k))

    @property
    def T(self):
        return self.transpose()

    def view(self, *a, **k):
        if not a and not k:
            return np.ndarray.view(self)
        if a and isinstance(a[0], type) and issubclass(a[0], np.ndarray):
            return np.ndarray.view(self, *a, **k)
        out = np.ndarray.view(self.view(np.ndarray), *a, **k)
        if out.shape == self.shape:
            return self._derive(out, lambda e: e)
        return out

    def tolist(self):
        p = self._pg
        out = np.ndarray.tolist(self.view(np.ndarray))
        if p is not None and (p.nll is not None or p.contrib is not None):
            _use("tolist", p, values=np.asarray(self.view(np.ndarray), dtype=np.float64)
                 if p.nll is not None and self.dtype.kind in "fiu" else None)
        return out

    def item(self, *a):
        p = self._pg
        out = np.ndarray.item(self.view(np.ndarray), *a)
        if p is not None and isinstance(out, float) and (p.nll is not None or p.contrib is not None):
            contrib = p.contrib
            if p.nll is not None:
                contrib = c_union(contrib, _chunk_from(p, np.asarray(self.view(np.ndarray), dtype=np.float64), "item"))
            _use("item", Prov(contrib=contrib), value=out)
            return TaggedFloat(out, contrib)
        return out

    def __float__(self):
        p = self._pg
        out = float(self.view(np.ndarray))
        if p is not None and (p.nll is not None or p.contrib is not None):
            _use("float", p, value=out, values=np.asarray(self.view(np.ndarray), dtype=np.float64))
        return out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain_in = [_np_plain(x) for x in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(_np_plain(o) for o in outs)
        result = getattr(ufunc, method)(*plain_in, **kwargs)
        provs = [getattr(x, "_pg", None) for x in inputs]
        provs = [p for p in provs if p is not None]
        if not provs:
            return result if not outs else outs[0] if len(outs) == 1 else outs
        if method == "at":  # np.add.at(table, idx, v): an in-place write into table
            _np_write(inputs[0], provs, ufunc.__name__ + ".at")
            return None
        if method == "__call__" and isinstance(result, np.ndarray):
            prov = _np_elemwise_prov(inputs, result, ufunc)
        elif method == "reduce" and ufunc.__name__ in ("add",):
            prov = _np_reduce_prov(inputs[0], provs)
            if not isinstance(result, np.ndarray):
                return TaggedFloat(float(result), prov.contrib) if prov.contrib is not None else result
        else:
            prov = _merge(provs)
        if outs:
            target = outs[0]
            if isinstance(target, PosArray):
                old = target._pg
                target._pg = prov if old is None else Prov(
                    elem=prov.elem, nll=prov.nll, contrib=c_union(old.contrib, prov.contrib),
                    marks=old.marks | prov.marks, parents=prov.parents)
            return target
        return _np_wrap(result, prov)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        plain_args = _np_plain(args)
        plain_kwargs = {k: _np_plain(v) for k, v in kwargs.items()}
        out = func(*plain_args, **plain_kwargs)
        provs = _np_collect(args, kwargs)
        if not provs:
            return out
        if name in _NP_REDUCERS:
            prov = _np_reduce_prov(args[0], provs)
            if not isinstance(out, np.ndarray):
                return TaggedFloat(float(out), prov.contrib) if prov.contrib is not None and \
                    isinstance(out, (float, np.floating)) else out
            return _np_wrap(out, prov)
        if name in _NP_VIEWS or name == "where":
            try:
                pos_args = _np_pos_replace(args)
                elem = func(*pos_args, **{k: _np_pos_replace(v) if k not in ("out",) else None
                                          for k, v in kwargs.items() if k != "out"})
                if isinstance(elem, np.ndarray) and isinstance(out, np.ndarray) and elem.shape == out.shape:
                    real = [p for p in provs if p.elem is not None] or provs
                    nll = tuple(sorted({e for p in provs for e in (p.nll or ())})) or None
                    if name == "where":
                        cond = np.asarray(plain_args[0], dtype=bool)
                        has_nll_x = getattr(args[1], "_pg", None) is not None and args[1]._pg.nll is not None
                        elem = np.where(cond if has_nll_x else ~cond, elem, -1) if nll else elem
                    contrib = None
                    for p in provs:
                        contrib = c_union(contrib, p.contrib)
                    return _np_wrap(out, Prov(elem=torch.from_numpy(np.ascontiguousarray(elem, dtype=np.int64)),
                                              nll=nll, contrib=contrib, marks=_NONE.union(*[p.marks for p in real])))
            except Exception:  # noqa: BLE001
                pass
        return _np_wrap(out, _merge(provs)) if isinstance(out, np.ndarray) else out


def _np_collect(args, kwargs) -> list[Prov]:
    provs = []

    def visit(x, depth=0):
        p = getattr(x, "_pg", None)
        if p is not None:
            provs.append(p)
        elif isinstance(x, (list, tuple)) and depth < 2:
            for v in x:
                visit(v, depth + 1)

    for a in args:
        visit(a)
    for v in kwargs.values():
        visit(v)
    return provs


def _np_pos_replace(x):
    if isinstance(x, np.ndarray) or isinstance(x, torch.Tensor):
        e = _np_pos(x)
        if e is not None:
            return e
        if isinstance(x, np.ndarray):
            return np.full(x.shape, -1, dtype=np.int64) if x.ndim else x
        return x
    if isinstance(x, tuple):
        return tuple(_np_pos_replace(v) for v in x)
    if isinstance(x, list):
        return [_np_pos_replace(v) for v in x]
    return x


def _np_key_prov(key):
    if isinstance(key, tuple):
        last = key[-1] if key else None
    else:
        last = key
    return getattr(last, "_pg", None)


def _np_lookup(out, key):
    """``table[idx]`` on a plain table with a position-carrying index (or a 1-D LUT)."""
    kp = _np_key_prov(key) if not isinstance(key, tuple) else None
    if kp is None or kp.elem is None or not isinstance(out, np.ndarray):
        return out
    e = kp.elem.numpy()
    if e.shape == out.shape:
        return _as_pos_array(out, Prov(elem=kp.elem, marks=kp.marks))
    return out


def _np_score(data: "PosArray", key, out):
    ypos = _np_pos(key[-1])
    try:
        ypos = np.broadcast_to(ypos, out.shape).copy()
    except ValueError:
        return _np_wrap(out, data._pg.mixed())
    dp = data._pg
    sid = _score_event("np_index", torch.from_numpy(ypos.astype(np.int64)), data)
    sel = _in_mask(_PROBE_MASK, ypos.reshape(-1))
    if sel.any():
        idx = np.nonzero(sel)[0][:32]
        plain = data.view(np.ndarray)
        rows_all = plain[tuple(_np_plain(k) for k in key[:-1])]
        rows_all = np.broadcast_to(rows_all, out.shape + (plain.shape[-1],)).reshape(-1, plain.shape[-1])
        _probe_rows("np_index", sid, torch.from_numpy(np.ascontiguousarray(rows_all[idx], dtype=np.float64)),
                    torch.from_numpy(np.asarray(out, dtype=np.float64).reshape(-1)[idx]), ypos.reshape(-1)[idx])
    return _as_pos_array(out.view(np.ndarray) if isinstance(out, PosArray) else out,
                         Prov(elem=torch.from_numpy(ypos.astype(np.int64)), nll=(sid,), marks=dp.marks,
                              parents=(dp.mixed(),)))


def _np_elemwise_prov(inputs, result, ufunc) -> Prov:
    provs = [getattr(x, "_pg", None) for x in inputs]
    real = [p for p in provs if p is not None]
    elems = [_np_pos(x) for x in inputs if _np_pos(x) is not None]
    contrib = None
    for p in real:
        contrib = c_union(contrib, p.contrib)
    marks = _NONE.union(*[p.marks for p in real]) if any(p.marks for p in real) else _NONE
    if not elems:
        return Prov(contrib=contrib, marks=marks, parents=tuple(p.mixed() for p in real))
    try:
        elem = elems[0]
        elem = np.broadcast_to(elem, result.shape)
        for e in elems[1:]:
            elem = np.maximum(elem, np.broadcast_to(e, result.shape))
        elem = np.array(elem, dtype=np.int64)
    except ValueError:
        return _merge(real)
    nll = tuple(sorted({e for p in real for e in (p.nll or ())})) or None
    if nll is not None and ufunc.__name__ == "multiply":
        for x in inputs:
            if getattr(x, "_pg", None) is None and isinstance(x, np.ndarray) and x.ndim:
                elem[np.broadcast_to(x == 0, result.shape)] = -1
    return Prov(elem=torch.from_numpy(elem), nll=nll, contrib=contrib, marks=marks,
                parents=tuple(p for p in real if p.elem is None))


def _np_reduce_prov(src, provs) -> Prov:
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    for p in provs:
        if p.nll is not None:
            vals = np.asarray(_np_plain(src), dtype=np.float64) if getattr(src, "_pg", None) is p else None
            contrib = c_union(contrib, _chunk_from(p, vals, "np.sum"))
    marks = _NONE.union(*[p.marks for p in provs]) if any(p.marks for p in provs) else _NONE
    return Prov(contrib=contrib, marks=marks, parents=tuple(p.mixed() for p in provs))


def _np_write(table, provs, op: str) -> None:
    merged = _merge(provs)
    coarse = merged.coarse()
    if not coarse.size or _STATE["in_step"]:
        return
    wid = _new_id()
    rec = {"ev": "write", "id": wid, "seq": _next_seq(), "op": op, **_positions_summary(coarse)}
    rec.update(_origin())
    _emit(rec)
    if isinstance(table, PosArray):
        old = table._pg or Prov()
        table._pg = Prov(elem=old.elem, nll=old.nll, contrib=old.contrib, marks=old.marks | {wid},
                         parents=old.parents)


# ---------------------------------------------------------------------------------------------
# entry points: where validation tokens come from


def _val_shard_of(file) -> tuple[int, int] | None:
    if not _VAL_SHARDS:
        return None
    name = getattr(file, "name", file)
    try:
        real = os.path.realpath(os.fsdecode(os.fspath(name)))
    except TypeError:
        return None
    return _VAL_SHARDS.get(real)


def _val_positions(shard, byte_offset: int, count: int) -> np.ndarray | None:
    start, tokens = shard
    first = (byte_offset - 1024) // 2
    if byte_offset < 1024 or (byte_offset - 1024) % 2 or first + count > tokens:
        return None
    return np.arange(start + first, start + first + count, dtype=np.int64)


def _patch_numpy() -> None:
    orig_fromfile = np.fromfile

    def fromfile(file, dtype=float, count=-1, sep="", offset=0, **kw):
        shard = _val_shard_of(file)
        tell = None
        if shard is not None and hasattr(file, "tell"):
            try:
                tell = file.tell()
            except OSError:
                tell = None
        arr = orig_fromfile(file, dtype=dtype, count=count, sep=sep, offset=offset, **kw)
        if shard is None or not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.itemsize != 2:
            return arr
        pos = _val_positions(shard, (tell or 0) + offset, arr.size)
        if pos is None:
            return arr
        return _as_pos_array(arr, Prov(elem=torch.from_numpy(pos)))

    fromfile.__wrapped__ = orig_fromfile
    np.fromfile = fromfile

    orig_memmap = np.memmap

    class memmap(orig_memmap):  # noqa: N801 - keeps the numpy name
        def __new__(cls, filename, dtype=np.uint8, mode="r+", offset=0, shape=None, order="C"):
            mm = orig_memmap.__new__(orig_memmap, filename, dtype=dtype, mode=mode, offset=offset,
                                     shape=shape, order=order)
            shard = _val_shard_of(filename)
            if shard is None or mm.ndim != 1 or mm.dtype.itemsize != 2:
                return mm
            pos = _val_positions(shard, offset, mm.size)
            if pos is None:
                return mm
            return _as_pos_array(mm.view(np.ndarray), Prov(elem=torch.from_numpy(pos)))

    np.memmap = memmap


def _patch_torch_entry() -> None:
    def wrap_from_numpy(orig):
        def from_numpy(arr):
            out = orig(arr.view(np.ndarray) if isinstance(arr, PosArray) else arr)
            p = getattr(arr, "_pg", None)
            return _wrap(out, p) if p is not None else out
        from_numpy.__wrapped__ = orig
        return from_numpy

    def wrap_tensor(orig):
        def tensor_like(data, *a, **k):
            p = getattr(data, "_pg", None)
            if p is None:
                return orig(data, *a, **k)
            out = orig(_np_plain(data), *a, **k)
            return _wrap(out, p) if isinstance(out, torch.Tensor) and p.elem is not None and \
                tuple(p.elem.shape) == tuple(out.shape) else _wrap(out, p.mixed())
        tensor_like.__wrapped__ = orig
        return tensor_like

    torch.from_numpy = wrap_from_numpy(torch.from_numpy)
    torch.tensor = wrap_tensor(torch.tensor)
    torch.as_tensor = wrap_tensor(torch.as_tensor)
    torch.autograd.backward = _wrap_autograd_backward(torch.autograd.backward)
    torch.autograd.grad = _wrap_autograd_grad(torch.autograd.grad)


def _register_handlers() -> None:
    T = torch.Tensor
    F = torch.nn.functional

    def reg(objs, names, handler):
        for obj in objs:
            for n in names:
                f = getattr(obj, n, None)
                if f is not None:
                    _HANDLERS[f] = handler

    reg([T, torch], _VIEW_NAMES, _h_view)
    reg([T], ["T", "mT", "H"], _h_view)
    for n in ("T", "mT"):
        prop = getattr(T, n, None)
        if isinstance(prop, property) or hasattr(prop, "__get__"):
            _HANDLERS[prop.__get__] = _h_view
    reg([torch], _MULTI_NAMES, _h_multi)
    reg([T, torch], _CAST_NAMES, _h_cast)
    reg([T, torch], _ELEMWISE_NAMES, _h_elemwise)
    reg([T, torch], _REDUCE_NAMES, _h_reduce)
    reg([T], [n + "_" for n in _ELEMWISE_NAMES if not n.startswith("__")] + sorted(_INPLACE_EXTRA | _CLEARING),
        _h_inplace)
    _HANDLERS[F.cross_entropy] = _h_cross_entropy
    _HANDLERS[F.nll_loss] = _h_cross_entropy
    _HANDLERS[torch.gather] = _h_gather
    _HANDLERS[T.gather] = _h_gather
    _HANDLERS[T.item] = _h_item
    for n in ("tolist", "__float__", "__int__", "__index__"):
        _HANDLERS[getattr(T, n)] = _h_exit
    _HANDLERS[T.__format__] = _h_format
    _HANDLERS[T.__repr__] = _h_format
    _HANDLERS[T.numpy] = _h_numpy
    _HANDLERS[T.backward] = _h_backward
    for n in ("shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "grad_fn", "is_leaf",
              "data_ptr", "dim", "size", "numel", "element_size", "stride", "storage_offset", "is_contiguous",
              "is_floating_point", "untyped_storage", "nelement", "__len__", "__bool__", "get_device",
              "is_complex", "_version", "names", "layout"):
        f = getattr(T, n, None)
        if f is None:
            continue
        _PASS.add(getattr(f, "__get__", f) if isinstance(f, property) else f)
        if hasattr(f, "__get__") and not callable(getattr(f, "__call__", None)):
            _PASS.add(f.__get__)


# ---------------------------------------------------------------------------------------------
# install


def install() -> None:
    global _FD
    fd = os.environ.get("PGOLF_TRACE_FD")
    if not fd:
        return
    _FD = int(fd)
    _load_config()
    _register_handlers()
    _patch_numpy()
    _patch_torch_entry()
    torch.optim.optimizer.register_optimizer_step_pre_hook(_step_pre_hook)
    torch.optim.optimizer.register_optimizer_step_post_hook(_step_post_hook)
    _emit({"ev": "start", "seq": _next_seq(), "pid": os.getpid(), "n_val": _N_VAL,
           "torch": torch.__version__, "numpy": np.__version__})
    atexit.register(lambda: _emit({"ev": "end", "seq": _next_seq(), "pid": os.getpid()}))


__all__ = ["install", "PosTensor", "PosArray", "TaggedFloat"]
_ = (builtins, math)  # kept importable for debugging sessions inside the sandbox
