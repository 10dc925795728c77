"""Validation-position provenance tracing, loaded into the sandboxed script before it runs.

Events (JSON lines on the inherited descriptor PGOLF_TRACE_FD; each has a global ``seq`` and,
where it happened in the submission, ``file``/``line``/``snippet``):

* ``score``    a scoring computation: cross_entropy / nll_loss / gather / ``P[..., y]`` whose target
               index carries validation positions, with grad mode;
* ``probe``    at probe positions, what the scored row looked like (log-sum-exp, sum, picked value),
               so the analyzer can check that the scored distribution is normalized;
* ``chunk``    per-position scores reduced together (sum/mean/...): positions, the score event of
               each, how many scores each element combines, and values at value positions;
* ``use``      chunks leaving the tensor world (``.item()``, ``float``, formatting, ``tolist``) or
               entering a backward pass;
* ``backward`` / ``update``  a backward pass, and every optimizer step or gradient-driven in-place
               parameter change with the backward ids (hence positions) whose gradients it used;
* ``write``    validation-derived data written into a table at validation-derived keys (a cache);
               ``score`` events list the writes whose data reached the scored distribution.

How positions travel: validation shards are recognised where they are read (``np.fromfile`` /
``np.memmap`` of a file listed in PGOLF_VAL_LAYOUT). From there a numpy subclass (PosArray) and a
torch subclass (PosTensor, via ``__torch_function__``) carry an element-wise position map through
indexing, reshapes, unfold, cat, dtype and device moves (the op is replayed on an int64 position
tensor, so the semantics are exact) and a coarse "influenced by" set through everything else (the
model forward). Score tensors also carry, per element, the id of the score event that produced
it and how many scores it combines (``min(nll_a, nll_b)`` combines two). Reductions turn them into
chunks; chunk sets ride through arithmetic, ``.item()`` (TaggedFloat) and string formatting into
the printed metric. Nothing here decides legality; auditor/rerun/trace_analysis.py does.
"""

from __future__ import annotations

import atexit
import base64
import json
import linecache
import os
import sys
import threading
import weakref

import numpy as np
import torch
from torch._C import DisableTorchFunctionSubclass as _DISABLE
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

_LOCK = threading.RLock()
_STATE = {"seq": 0, "ids": 0, "in_step": False, "busy": 0}
_WS = os.path.realpath(os.environ.get("PGOLF_WORKSPACE", os.getcwd()))
_BOOT = os.path.dirname(os.path.realpath(__file__))
_FD: int | None = None
_NONE: frozenset = frozenset()
_REPORTED_MARKS: set[int] = set()
# probe-position rows inspected per score event: every occurrence (a position sits in several
# overlapping windows) of up to ~64 probe positions, so the committed occurrence is among them
_PROBE_ROWS = 160

# ---------------------------------------------------------------------------------------------
# output


def _nd(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


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
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if fn.startswith(_WS) and not fn.startswith(_BOOT):
            key = (fn, f.f_lineno)
            hit = _ORIGIN_CACHE.get(key)
            if hit is None:
                hit = {
                    "file": os.path.relpath(fn, _WS),
                    "line": f.f_lineno,
                    "snippet": linecache.getline(fn, f.f_lineno).strip()[:160],
                    "func": f.f_code.co_name,
                }
                _ORIGIN_CACHE[key] = hit
            return hit
        f = f.f_back
    return {}


def _grad_state() -> dict:
    return {"grad": bool(torch.is_grad_enabled()), "inference": bool(torch.is_inference_mode_enabled())}


# ---------------------------------------------------------------------------------------------
# provenance


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
    out, seen, stack = set(), set(), [c] if c is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.chunk is not None:
            out.add(node.chunk)
        stack.extend(node.kids)
    return sorted(out)


def _union(sets) -> frozenset:
    sets = [s for s in sets if s]
    if not sets:
        return _NONE
    if len(sets) == 1:
        return sets[0]
    return frozenset().union(*sets)


class Prov:
    """Provenance of one tensor or array.

    pos     int64 CPU tensor shaped like the data: validation position of each element (-1: none)
    sev     int64 tensor (scores only): the score event that produced each element
    mult    int64 tensor (scores only, None = 1): how many scores each element combines
    contrib chunks (reduced scores) this value contains
    rows    int64 tensor shaped like the data (None: not a row-wise reduction): the chunk id each
            element holds (-1: none), for scores reduced along one dimension (``loss.mean(-1)``
            per document), so that a 0/1 weight on those rows drops exactly the rows it zeroes
    parents Provs this value was mixed from (for the coarse influence set, computed lazily)
    marks   ids of cache writes whose data influenced this value
    bw      backward ids whose gradients this value carries
    """

    __slots__ = ("_coarse", "_contrib", "_mixed", "_row_c", "bw", "marks", "mult", "parents", "pos", "rows", "sev")

    def __init__(self, pos=None, sev=None, mult=None, contrib=None, parents=(), marks=_NONE, bw=_NONE, rows=None):
        self.pos, self.sev, self.mult = pos, sev, mult
        self._contrib, self.parents, self.marks, self.bw = contrib, parents, marks, bw
        self.rows = rows
        self._row_c = None
        self._coarse = None
        self._mixed = None

    @property
    def contrib(self):
        """Chunks this value holds: its own, plus every row a row-wise reduction still holds (so
        whatever reads ``contrib`` - a use, a backward, a float - sees the rows)."""
        if self.rows is None:
            return self._contrib
        if self._row_c is None:
            self._row_c = c_union(self._contrib, _row_contrib(self.rows))
        return self._row_c

    @property
    def is_score(self) -> bool:
        return self.sev is not None

    def mixed(self) -> Prov:
        """Provenance of a value computed from this one by an op that does not keep elements."""
        if self.pos is None and self.sev is None and self.rows is None:
            return self
        if self._mixed is None:
            contrib = self.contrib
            if self.sev is not None:  # scores folded by an op we do not model: keep them as a chunk
                contrib = c_union(contrib, _chunk_from(self, None, "mixed"))
            self._mixed = Prov(contrib=contrib, parents=(self,), marks=self.marks, bw=self.bw)
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
                if p.pos is not None:
                    e = p.pos.reshape(-1).numpy()
                    parts.append(e[e >= 0])
                stack.extend(p.parents)
            self._coarse = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return self._coarse

    @property
    def empty(self) -> bool:
        return (
            self.pos is None
            and self.sev is None
            and self.rows is None
            and self.contrib is None
            and not self.parents
            and not self.marks
            and not self.bw
        )


def _merge(provs) -> Prov | None:
    """Provenance of a value mixed from several inputs (no element alignment kept)."""
    uniq = []
    for p in provs:
        if p is not None and all(p is not q for q in uniq):
            uniq.append(p)
    if not uniq:
        return None
    if len(uniq) == 1:
        return uniq[0].mixed()
    mixed = [p.mixed() for p in uniq]
    contrib = None
    for p in mixed:
        contrib = c_union(contrib, p.contrib)
    return Prov(
        contrib=contrib,
        parents=tuple(mixed),
        marks=_union([p.marks for p in mixed]),
        bw=_union([p.bw for p in mixed]),
    )


# ---------------------------------------------------------------------------------------------
# configuration from the harness

_VAL_SHARDS: dict[str, tuple[int, int]] = {}  # realpath -> (first position, tokens)
_VALUE_MASK: np.ndarray | None = None  # positions whose per-position score values are recorded
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
    _VALUE_MASK = np.zeros(_N_VAL + 1, dtype=bool)
    if cfg.get("values") == "all":
        _VALUE_MASK[:] = True
    else:
        _VALUE_MASK[np.asarray(cfg.get("values") or [], dtype=np.int64)] = True
    _PROBE_MASK = np.zeros(_N_VAL + 1, dtype=bool)
    _PROBE_MASK[np.asarray(cfg.get("probes") or [], dtype=np.int64)] = True
    _VALUE_MASK |= _PROBE_MASK


def _in_mask(mask: np.ndarray | None, pos: np.ndarray) -> np.ndarray:
    out = np.zeros(pos.shape, dtype=bool)
    if mask is None:
        return out
    ok = (pos >= 0) & (pos < len(mask))
    out[ok] = mask[pos[ok]]
    return out


# ---------------------------------------------------------------------------------------------
# chunks: reductions of scores


def _chunk_from(prov: Prov, values, op: str) -> Contrib:
    """Record that the per-position scores in ``prov`` were reduced together; return its leaf."""
    pos = prov.pos.reshape(-1).numpy()
    keep = pos >= 0
    sev = prov.sev.reshape(-1).numpy()[keep]
    p = pos[keep]
    cid = _new_id()
    rec = {
        "ev": "chunk",
        "id": cid,
        "seq": _next_seq(),
        "op": op,
        "pos": _nd(p.astype(np.int32)),
        "sev": _nd(sev.astype(np.int32)),
    }
    if prov.mult is not None:
        mult = prov.mult.reshape(-1).numpy()[keep]
        if (mult != 1).any():
            rec["mult"] = _nd(mult.astype(np.int32))
    if values is not None and p.size:
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if vals.size == keep.size:
            sel = _in_mask(_VALUE_MASK, p)
            if sel.any():
                rec["vidx"] = _nd(np.nonzero(sel)[0].astype(np.int32))
                rec["vals"] = _nd(vals[keep][sel])
    rec.update(_origin())
    _emit(rec)
    return Contrib(chunk=cid)


def _row_contrib(rows) -> Contrib | None:
    """The chunks a row-wise reduction still holds (rows set to -1 were dropped by a 0 weight)."""
    if rows is None:
        return None
    out = None
    for cid in np.unique(rows.reshape(-1).numpy()):
        if cid >= 0:
            out = c_union(out, Contrib(chunk=int(cid)))
    return out


MAX_ROW_CHUNKS = 4096  # more rows than this: one chunk for the whole reduction, as before


def _row_chunks(prov: Prov, values, dim: int, out_shape, op: str):
    """Scores reduced along ``dim``: one chunk per output element (``per_doc = nll.mean(-1)``),
    returned as the ``rows`` map shaped like the output; None when the shapes do not line up."""
    pos = prov.pos
    if pos.dim() == 0:
        return None
    d = dim % pos.dim()
    moved = pos.movedim(d, -1)
    length = moved.shape[-1]
    n_rows = moved.numel() // max(length, 1)
    if n_rows > MAX_ROW_CHUNKS or n_rows != int(np.prod(out_shape, dtype=np.int64)):
        return None
    p_rows = moved.reshape(n_rows, length)
    s_rows = prov.sev.movedim(d, -1).reshape(n_rows, length)
    m_rows = prov.mult.movedim(d, -1).reshape(n_rows, length) if prov.mult is not None else None
    v_rows = None
    if values is not None:
        try:
            v_rows = np.moveaxis(np.asarray(values).reshape(tuple(pos.shape)), d, -1).reshape(n_rows, length)
        except ValueError:
            v_rows = None
    rows = torch.full((n_rows,), -1, dtype=torch.int64)
    for r in range(n_rows):
        if not bool((p_rows[r] >= 0).any()):
            continue
        sub = Prov(pos=p_rows[r], sev=s_rows[r], mult=m_rows[r] if m_rows is not None else None)
        rows[r] = _chunk_from(sub, v_rows[r] if v_rows is not None else None, op).chunk
    return rows.reshape(tuple(out_shape))


def _values_of(data) -> np.ndarray | None:
    try:
        if isinstance(data, torch.Tensor):
            with _DISABLE():
                return data.detach().to("cpu", torch.float64).numpy()
        return np.asarray(data, dtype=np.float64)
    except Exception:  # noqa: BLE001 - odd dtypes: positions are still recorded
        return None


def _use(kind: str, prov: Prov | None, values=None, **extra) -> None:
    if prov is None:
        return
    contrib = prov.contrib
    if prov.is_score:
        contrib = c_union(contrib, _chunk_from(prov, values, kind))
    chunks = c_flat(contrib)
    if not chunks:
        return
    rec = {"ev": "use", "kind": kind, "seq": _next_seq(), "chunks": chunks, **extra}
    rec.update(_origin())
    _emit(rec)


class TaggedFloat(float):
    """A Python float that remembers which chunks it was computed from."""

    __slots__ = ("_c",)

    def __new__(cls, value, contrib):
        obj = super().__new__(cls, value)
        obj._c = contrib
        return obj

    def _w(self, value, other=None):
        if value is NotImplemented or not isinstance(value, float):
            return value
        c = self._c
        if isinstance(other, TaggedFloat):
            c = c_union(c, other._c)
        return TaggedFloat(value, c)

    def __add__(self, o):
        return self._w(float.__add__(self, o), o)

    def __radd__(self, o):
        return self._w(float.__radd__(self, o), o)

    def __sub__(self, o):
        return self._w(float.__sub__(self, o), o)

    def __rsub__(self, o):
        return self._w(float.__rsub__(self, o), o)

    def __mul__(self, o):
        return self._w(float.__mul__(self, o), o)

    def __rmul__(self, o):
        return self._w(float.__rmul__(self, o), o)

    def __truediv__(self, o):
        return self._w(float.__truediv__(self, o), o)

    def __rtruediv__(self, o):
        return self._w(float.__rtruediv__(self, o), o)

    def __pow__(self, o, *a):
        return self._w(float.__pow__(self, o, *a), o)

    def __rpow__(self, o, *a):
        return self._w(float.__rpow__(self, o, *a), o)

    def __neg__(self):
        return self._w(float.__neg__(self))

    def __pos__(self):
        return self

    def __abs__(self):
        return self._w(float.__abs__(self))

    def __float__(self):
        value = float.__float__(self)
        _use("float", Prov(contrib=self._c), value=value)
        return value

    def __round__(self, n=None):
        return self._w(float.__round__(self, n)) if n is not None else float.__round__(self)

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
# replaying an op on the position maps


_FIELDS = ("pos", "sev", "mult")
_FILL = {"pos": -1, "sev": -1, "mult": 0}


def _field(t, name: str):
    p = getattr(t, "_pg", None)
    v = getattr(p, name, None) if p is not None else None
    if v is None and name == "mult" and p is not None and p.sev is not None:
        v = torch.ones(tuple(p.sev.shape), dtype=torch.int64)
    return v


def _cpu_plain(x):
    """An argument as the CPU position tensors need it (indices on CPU, no subclasses)."""
    if isinstance(x, torch.Tensor):
        with _DISABLE():
            y = x.detach()
            return y.to("cpu") if y.device.type != "cpu" else y
    if isinstance(x, PosArray):
        return x.view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_cpu_plain(v) for v in x)
    if isinstance(x, list):
        return [_cpu_plain(v) for v in x]
    return x


def _replay(func, args, kwargs, name: str, data_idx: int = 0):
    """``func`` with the data argument(s) replaced by their ``name`` map (fill where absent)."""

    def sub(a):
        if isinstance(a, torch.Tensor):
            v = _field(a, name)
            return v if v is not None else torch.full(tuple(a.shape), _FILL[name], dtype=torch.int64)
        return a

    new_args = list(args)
    for i, a in enumerate(new_args):
        if i == data_idx:
            if isinstance(a, (list, tuple)):
                new_args[i] = type(a)(sub(v) for v in a)
            else:
                new_args[i] = sub(a)
        else:
            new_args[i] = _cpu_plain(a)
    new_kwargs = {k: _cpu_plain(v) for k, v in kwargs.items() if k not in ("out", "dtype", "device")}
    with _DISABLE():
        return func(*new_args, **new_kwargs)


def _replay_prov(func, args, kwargs, base: Prov, data_idx: int = 0, extra_parents=()) -> list | Prov:
    """Replay on pos (and sev/mult for scores); returns a Prov or a list mirroring tuple outputs."""
    pos = _replay(func, args, kwargs, "pos", data_idx)
    sev = _replay(func, args, kwargs, "sev", data_idx) if base.is_score else None
    mult = _replay(func, args, kwargs, "mult", data_idx) if base.is_score and base.mult is not None else None

    def mk(p, s, m):
        return Prov(
            pos=p,
            sev=s,
            mult=m,
            contrib=base.contrib,
            parents=base.parents + tuple(extra_parents),
            marks=base.marks,
            bw=base.bw,
        )

    if isinstance(pos, torch.Tensor):
        return mk(pos, sev, mult)
    return [
        mk(p, sev[i] if sev is not None else None, mult[i] if mult is not None else None)
        for i, p in enumerate(pos)
    ]


# ---------------------------------------------------------------------------------------------
# PosTensor


def _wrap(out, prov):
    if prov is None or (isinstance(prov, Prov) and prov.empty):
        return out
    if isinstance(out, torch.Tensor):
        if type(out) is not PosTensor:
            try:
                out = out.as_subclass(PosTensor)
            except Exception:  # noqa: BLE001
                return out
        out._pg = prov
        return out
    if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
        if isinstance(prov, list) and len(prov) == len(out):
            items = [_wrap(o, p) for o, p in zip(out, prov)]
        else:
            items = [_wrap(o, prov if isinstance(prov, Prov) else None) for o in out]
        try:
            return type(out)(items)
        except TypeError:
            return out
    return out


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
        if not _STATE["busy"]:
            handler = _HANDLERS.get(func)
            if handler is not None:
                return handler(func, args, kwargs)
        with _DISABLE():
            out = func(*args, **kwargs)
        if _STATE["busy"] or func in _PASS or not isinstance(out, (torch.Tensor, tuple, list)):
            return out
        return _wrap(out, _merge(_collect(args, kwargs)))

    def __reduce_ex__(self, proto):
        with _DISABLE():
            return torch.Tensor.__reduce_ex__(self.as_subclass(torch.Tensor), proto)


def _attach(t, prov: Prov):
    """Give an existing tensor object (an accumulator, a gradient, a cache) a Prov in place."""
    if type(t) is torch.Tensor:
        try:
            t.__class__ = PosTensor
        except TypeError:
            return t
    if isinstance(t, PosTensor):
        t._pg = prov
    return t


def _plain(t):
    with _DISABLE():
        return t.as_subclass(torch.Tensor) if isinstance(t, PosTensor) else t


# ---------------------------------------------------------------------------------------------
# handlers


def _name(func) -> str:
    return getattr(func, "__name__", "") or ""


def _h_fresh(func, args, kwargs):
    with _DISABLE():
        return func(*args, **kwargs)


def _h_cast(func, args, kwargs):
    """dtype/device moves and copies: same positions."""
    with _DISABLE():
        out = func(*args, **kwargs)
    base = getattr(args[0], "_pg", None) if args else None
    if base is None:
        return _wrap(out, _merge(_collect(args, kwargs)))
    if out is args[0]:
        return out
    return _wrap(out, base)


def _h_view(func, args, kwargs):
    """Indexing and reshaping: replay on the position maps."""
    with _DISABLE():
        out = func(*args, **kwargs)
    base = getattr(args[0], "_pg", None) if args else None
    provs = _collect(args, kwargs)
    name = _name(func)
    if base is None or base.pos is None:
        if name in ("__getitem__", "index_select", "take", "take_along_dim"):
            return _h_lookup(func, args, kwargs, out, base, provs)
        return _wrap(out, _merge(provs))
    if name == "__getitem__" and not base.is_score and _is_score_index(args):
        return _h_score_index(args, kwargs, out)
    others = [p for p in provs if p is not base]
    try:
        prov = _replay_prov(func, args, kwargs, base, extra_parents=[p.mixed() for p in others])
    except Exception:  # noqa: BLE001 - an unusual signature: keep the coarse set
        return _wrap(out, _merge(provs))
    return _wrap(out, prov)


def _is_score_index(args) -> bool:
    """``P[rows..., y]``: a float table indexed on its last axis by a position-carrying index."""
    if len(args) < 2:
        return False
    data, key = args[0], args[1]
    if not isinstance(key, tuple) or len(key) != data.ndim or data.ndim < 2:
        return False
    last = key[-1]
    return (
        isinstance(last, torch.Tensor)
        and _field(last, "pos") is not None
        and data.is_floating_point()
        and data.shape[-1] >= 2
    )


def _h_lookup(func, args, kwargs, out, base, provs):
    """``table[idx]`` where only the index carries positions: the output follows the index."""
    name = _name(func)
    if name == "__getitem__" and _is_score_index(args):
        return _h_score_index(args, kwargs, out)
    if name == "__getitem__":
        key = args[1]
        idx = key[-1] if isinstance(key, tuple) and key else key
    elif name == "index_select":
        idx = args[2] if len(args) > 2 else kwargs.get("index")
    else:
        idx = args[1] if len(args) > 1 else kwargs.get("index")
    ipos = _field(idx, "pos")
    ip = getattr(idx, "_pg", None)
    others = [p.mixed() for p in provs if p is not ip]
    marks = _union([p.marks for p in others])
    contrib = None
    for p in others:
        contrib = c_union(contrib, p.contrib)
    if ipos is not None and isinstance(out, torch.Tensor):
        if tuple(ipos.shape) == tuple(out.shape):
            return _wrap(out, Prov(pos=ipos, marks=marks, contrib=contrib, parents=tuple(others)))
        if out.ndim > ipos.ndim and tuple(out.shape[: ipos.ndim]) == tuple(ipos.shape):
            # rows gathered by token (an embedding-like lookup): every feature keeps the position
            e = ipos.reshape(tuple(ipos.shape) + (1,) * (out.ndim - ipos.ndim)).expand(tuple(out.shape))
            return _wrap(out, Prov(pos=e, marks=marks, contrib=contrib, parents=tuple(others)))
    return _wrap(out, _merge(provs))


def _h_multi(func, args, kwargs):
    """cat / stack: replay on the list of position maps."""
    with _DISABLE():
        out = func(*args, **kwargs)
    seq = args[0] if args else kwargs.get("tensors")
    provs = [getattr(t, "_pg", None) for t in seq] if isinstance(seq, (list, tuple)) else []
    real = [p for p in provs if p is not None]
    if not any(p.pos is not None for p in real):
        return _wrap(out, _merge(_collect(args, kwargs)))
    all_scores = all(p is not None and p.is_score for p in provs)
    contrib = None
    for p in real:
        contrib = c_union(contrib, p.contrib)
    if not all_scores:  # scores mixed with non-scores: count the scores as used here
        for p in real:
            if p.is_score:
                contrib = c_union(contrib, _chunk_from(p, None, "cat"))
    try:
        pos = _replay(func, args, kwargs, "pos")
        sev = _replay(func, args, kwargs, "sev") if all_scores else None
        mult = (
            _replay(func, args, kwargs, "mult")
            if all_scores and any(p.mult is not None for p in real)
            else None
        )
    except Exception:  # noqa: BLE001
        return _wrap(out, _merge(_collect(args, kwargs)))
    return _wrap(
        out,
        Prov(
            pos=pos,
            sev=sev,
            mult=mult,
            contrib=contrib,
            marks=_union([p.marks for p in real]),
            bw=_union([p.bw for p in real]),
            parents=tuple(q for p in real for q in p.parents),
        ),
    )


def _elem_prov(name: str, args, kwargs, shape) -> Prov | None:
    """Provenance of an element-wise op's output (also used for in-place element-wise ops)."""
    provs = _collect(args, kwargs)
    if not provs:
        return None
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    withpos = [a for a in tensors if _field(a, "pos") is not None]
    rowed = [a for a in tensors if _field(a, "rows") is not None]
    if not withpos and len(rowed) == 1:
        return _rows_elem_prov(name, args, tensors, rowed[0], provs, shape)
    if not withpos:
        return _merge(provs)
    scores = [a for a in withpos if a._pg.is_score]
    try:
        if name == "where" and len(args) >= 3 and isinstance(args[0], torch.Tensor):
            with _DISABLE():
                cond = args[0].detach().cpu().to(torch.bool).broadcast_to(shape)

            def pick(field, fill):
                x = _field(args[1], field) if isinstance(args[1], torch.Tensor) else None
                y = _field(args[2], field) if isinstance(args[2], torch.Tensor) else None
                x = x.broadcast_to(shape) if x is not None else torch.full(shape, fill, dtype=torch.int64)
                y = y.broadcast_to(shape) if y is not None else torch.full(shape, fill, dtype=torch.int64)
                return torch.where(cond, x, y)

            pos = pick("pos", -1)
            sev = pick("sev", -1) if scores else None
            mult = pick("mult", 0) if scores else None
        else:
            pos = None
            for a in scores or withpos:  # a score's element stays the score of its own target
                b = _field(a, "pos").broadcast_to(shape)
                pos = b if pos is None else torch.maximum(pos, b)
            pos = pos.clone()
            sev = mult = None
            for a in scores:
                s = _field(a, "sev").broadcast_to(shape)
                m = _field(a, "mult").broadcast_to(shape)
                sev = s if sev is None else torch.maximum(sev, s)
                mult = m if mult is None else mult + m
            if sev is not None:
                sev, mult = sev.clone(), mult.clone()
    except RuntimeError:
        return _merge(provs)
    if scores and name != "where":  # ``where`` picked its elements above
        dropped = _zero_weight(name, args, tensors, shape,
                               carries=lambda a: getattr(a, "_pg", None) is not None and a._pg.is_score)
        if dropped is not None:
            pos[dropped] = -1
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    side = [p for p in provs if p.pos is None or (scores and not p.is_score)]
    return Prov(
        pos=pos,
        sev=sev,
        mult=mult if scores and bool((mult != 1).any()) else None,
        contrib=contrib,
        marks=_union([p.marks for p in provs]),
        bw=_union([p.bw for p in provs]),
        parents=tuple(p.mixed() for p in side),
    )


def _zero_weight(name: str, args, tensors, shape, carries):
    """Elements a mask zeroes: a 0/1 or bool multiplier tensor that does not carry the values
    (``carries``: the scores, or a row-wise reduction), a masked_fill mask, or the branch of
    ``where`` not taken. None when the op weights nothing away."""
    try:
        if name in ("mul", "__mul__", "__rmul__", "mul_", "__imul__"):
            dropped = None
            for a in tensors:
                if carries(a):
                    continue
                with _DISABLE():
                    m = a.detach().cpu()
                if m.dtype == torch.bool or m.numel() > 1:  # a scalar factor is a scale, not a mask
                    z = (m == 0) if m.dtype != torch.bool else ~m
                    z = z.broadcast_to(shape)
                    dropped = z if dropped is None else dropped | z
            return dropped
        if name in ("masked_fill", "masked_fill_") and len(args) >= 2 and isinstance(args[1], torch.Tensor):
            with _DISABLE():
                return args[1].detach().cpu().to(torch.bool).broadcast_to(shape)
        if name == "where" and len(args) >= 3 and isinstance(args[0], torch.Tensor):
            with _DISABLE():
                cond = args[0].detach().cpu().to(torch.bool).broadcast_to(shape)
            in_true, in_false = carries(args[1]), carries(args[2])
            if in_true and not in_false:
                return ~cond
            if in_false and not in_true:
                return cond
    except RuntimeError:
        return None
    return None


def _rows_elem_prov(name: str, args, tensors, carrier, provs, shape) -> Prov | None:
    """An element-wise op on a row-wise reduction (and on plain values): each element keeps its
    row's chunk; a row an exact 0 weight (or mask) removes is dropped, since no gradient and no
    value of it survives (``(per_doc * active).sum().backward()`` trains on the active rows only)."""
    base = carrier._pg
    try:
        rows = base.rows.broadcast_to(shape).clone()
    except RuntimeError:
        return _merge(provs)
    dropped = _zero_weight(name, args, tensors, shape, carries=lambda a: a is carrier)
    if dropped is not None:
        rows[dropped] = -1
    others = [p for p in provs if p is not base]
    contrib = base._contrib  # the rows travel in ``rows``, minus the dropped ones
    for p in others:
        contrib = c_union(contrib, p.mixed().contrib)
    return Prov(rows=rows, contrib=contrib, marks=_union([p.marks for p in provs]),
                bw=_union([p.bw for p in provs]), parents=base.parents + tuple(p.mixed() for p in others))


def _h_elemwise(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    if not isinstance(out, torch.Tensor):
        return out
    return _wrap(out, _elem_prov(_name(func), args, kwargs, tuple(out.shape)))


def _h_reduce(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    provs = _collect(args, kwargs)
    src = args[0] if args else None
    sp = getattr(src, "_pg", None)
    if sp is None or not sp.is_score:
        return _wrap(out, _merge(provs))
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if isinstance(dim, int) and _name(func) in ("sum", "mean", "nansum", "nanmean") and isinstance(out, torch.Tensor) \
            and out.dim() >= 1:
        rows = _row_chunks(sp, _values_of(src), dim, tuple(out.shape), _name(func))
        if rows is not None:
            others = [p.mixed() for p in provs if p is not sp]
            contrib = sp.contrib
            for p in others:
                contrib = c_union(contrib, p.contrib)
            return _wrap(out, Prov(rows=rows, contrib=contrib, marks=_union([sp.marks] + [p.marks for p in others]),
                                   parents=tuple(q for q in [Prov(parents=sp.parents)] + others)))
    contrib = c_union(sp.contrib, _chunk_from(sp, _values_of(src), _name(func)))
    others = [p.mixed() for p in provs if p is not sp]
    for p in others:
        contrib = c_union(contrib, p.contrib)
    return _wrap(
        out,
        Prov(
            contrib=contrib,
            marks=_union([sp.marks] + [p.marks for p in others]),
            parents=tuple(q for q in [Prov(parents=sp.parents)] + others),
        ),
    )


# --- scoring ops -------------------------------------------------------------------------------


def _score_event(kind: str, target_pos: torch.Tensor, inp, extra: dict | None = None) -> int:
    _check_discarded()
    sid = _new_id()
    flat = target_pos.reshape(-1).numpy()
    valid = flat[flat >= 0]
    rec = {
        "ev": "score",
        "id": sid,
        "seq": _next_seq(),
        "kind": kind,
        "n": int(valid.size),
        "lo": int(valid.min()) if valid.size else -1,
        "hi": int(valid.max()) if valid.size else -1,
        "requires_grad": bool(getattr(inp, "requires_grad", False)),
        **_grad_state(),
    }
    ip = getattr(inp, "_pg", None)
    if ip is not None and ip.marks:
        new = ip.marks - _REPORTED_MARKS
        if new:
            rec["marks"] = sorted(new)
            _REPORTED_MARKS.update(new)
    if extra:
        rec.update(extra)
    rec.update(_origin())
    _emit(rec)
    return sid


def _probe_rows(kind: str, sid: int, rows, picked, pos: np.ndarray, is_logprob: bool = False) -> None:
    """At probe positions: what distribution was indexed. ``rows`` [k, V], ``picked`` [k]."""
    with _DISABLE():
        r = torch.as_tensor(rows).detach().to("cpu", torch.float64)
        v = torch.as_tensor(picked).detach().to("cpu", torch.float64).reshape(-1)
        rec = {
            "ev": "probe",
            "score": sid,
            "kind": kind,
            "pos": pos.astype(int).tolist(),
            "lse": torch.logsumexp(r, dim=-1).tolist(),
            "sum": r.sum(dim=-1).tolist(),
            "min": r.min(dim=-1).values.tolist(),
            "max": r.max(dim=-1).values.tolist(),
            "picked": v.tolist(),
            "vocab": int(r.shape[-1]),
            "rows_are_logprobs": is_logprob,
        }
    _emit(rec)


def _score_prov(sid: int, pos: torch.Tensor, inp) -> Prov:
    ip = getattr(inp, "_pg", None)
    return Prov(
        pos=pos,
        sev=torch.full(tuple(pos.shape), sid, dtype=torch.int64),
        marks=ip.marks if ip is not None else _NONE,
        parents=(ip.mixed(),) if ip is not None else (),
    )


def _h_cross_entropy(func, args, kwargs):
    names = (
        "input",
        "target",
        "weight",
        "size_average",
        "ignore_index",
        "reduce",
        "reduction",
        "label_smoothing",
    )
    bound = dict(zip(names, args))
    bound.update(kwargs)
    inp, target = bound.get("input"), bound.get("target")
    with _DISABLE():
        out = func(*args, **kwargs)
    tpos = _field(target, "pos")
    if tpos is None or not isinstance(target, torch.Tensor) or target.is_floating_point():
        return _wrap(out, _merge(_collect(args, kwargs)))
    kind = "nll_loss" if _name(func) == "nll_loss" else "cross_entropy"
    reduction = bound.get("reduction", "mean")
    if bound.get("reduce") is False:
        reduction = "none"
    elif bound.get("size_average") is False:
        reduction = "sum"
    ignore = bound.get("ignore_index", -100)
    _STATE["busy"] += 1
    try:
        with _DISABLE(), torch.no_grad():
            extra_kw = (
                {"label_smoothing": bound.get("label_smoothing", 0.0) or 0.0}
                if kind == "cross_entropy"
                else {}
            )
            per = (
                out.detach()
                if reduction == "none"
                else func(
                    inp.detach(),
                    target,
                    weight=bound.get("weight"),
                    ignore_index=ignore,
                    reduction="none",
                    **extra_kw,
                )
            )
            tcpu = target.detach().cpu()
        if tpos.numel() != per.numel():
            return _wrap(out, _merge(_collect(args, kwargs)))
        pos = tpos.reshape(tuple(per.shape)).clone()
        pos[tcpu.reshape(tuple(per.shape)) == ignore] = -1
        extra = {
            "norm": "softmax" if kind == "cross_entropy" else "as_given",
            "reduction": reduction,
            "label_smoothing": float(extra_kw.get("label_smoothing", 0.0)),
        }
        sid = _score_event(kind, pos, inp, extra)
        sel = _in_mask(_PROBE_MASK, pos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:_PROBE_ROWS]
            with _DISABLE(), torch.no_grad():
                x = inp.detach()
                if x.ndim > 2:  # [B, V, d...]: classes on dim 1
                    x = x.movedim(1, -1)
                rows = x.reshape(-1, x.shape[-1])[torch.as_tensor(idx, device=x.device)].float()
                if kind == "cross_entropy":
                    rows = torch.log_softmax(rows, dim=-1)
                picked = -per.reshape(-1)[torch.as_tensor(idx, device=per.device)]
            _probe_rows(kind, sid, rows, picked, pos.reshape(-1).numpy()[idx], is_logprob=True)
        sp = _score_prov(sid, pos, inp)
        if reduction == "none":
            return _wrap(out, sp)
        chunk = _chunk_from(sp, _values_of(per), f"{kind}:{reduction}")
        return _wrap(out, Prov(contrib=chunk, marks=sp.marks, parents=sp.parents))
    finally:
        _STATE["busy"] -= 1


def _h_gather(func, args, kwargs):
    bound = dict(zip(("input", "dim", "index"), args))
    bound.update(kwargs)
    inp, dim, index = bound.get("input"), bound.get("dim"), bound.get("index")
    with _DISABLE():
        out = func(*args, **kwargs)
    ipos = _field(index, "pos")
    base = getattr(inp, "_pg", None)
    if (
        ipos is None
        or not isinstance(inp, torch.Tensor)
        or not inp.is_floating_point()
        or tuple(ipos.shape) != tuple(out.shape)
    ):
        if base is not None and base.pos is not None:
            try:
                return _wrap(out, _replay_prov(func, args, kwargs, base))
            except Exception:  # noqa: BLE001, S110 - unusual signature: fall through to the coarse set
                pass
        return _wrap(out, _merge(_collect(args, kwargs)))
    _STATE["busy"] += 1
    try:
        sid = _score_event("gather", ipos, inp, {"vocab": int(inp.shape[dim])})
        sel = _in_mask(_PROBE_MASK, ipos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:_PROBE_ROWS]
            with _DISABLE(), torch.no_grad():
                x = inp.detach().movedim(dim, -1)
                o = out.detach().movedim(dim, -1)
                coords = np.unravel_index(idx, tuple(ipos.movedim(dim, -1).shape))
                lead = tuple(torch.as_tensor(c, device=x.device) for c in coords[:-1])
                rows = x[lead] if lead else x.reshape(1, -1).expand(len(idx), -1)
                picked = (
                    o[lead + (torch.as_tensor(coords[-1], device=o.device),)] if lead else o.reshape(-1)[idx]
                )
            _probe_rows("gather", sid, rows, picked, ipos.movedim(dim, -1).reshape(-1).numpy()[idx])
        return _wrap(out, _score_prov(sid, ipos.clone(), inp))
    finally:
        _STATE["busy"] -= 1


def _h_score_index(args, kwargs, out):
    data, key = args[0], args[1]
    ypos = _field(key[-1], "pos")
    try:
        ypos = ypos.broadcast_to(tuple(out.shape)).clone()
    except RuntimeError:
        return _wrap(out, _merge(_collect(args, kwargs)))
    _STATE["busy"] += 1
    try:
        sid = _score_event("index", ypos, data, {"vocab": int(data.shape[-1])})
        sel = _in_mask(_PROBE_MASK, ypos.reshape(-1).numpy())
        if sel.any():
            idx = np.nonzero(sel)[0][:_PROBE_ROWS]
            with _DISABLE(), torch.no_grad():
                lead = tuple(
                    _cpu_plain(k).to(data.device) if isinstance(k, torch.Tensor) else k for k in key[:-1]
                )
                rows_all = data.detach()[lead]
                rows_all = rows_all.broadcast_to(tuple(out.shape) + (data.shape[-1],)).reshape(
                    -1, data.shape[-1]
                )
                rows = rows_all[torch.as_tensor(idx, device=data.device)]
                picked = out.detach().reshape(-1)[torch.as_tensor(idx, device=out.device)]
            _probe_rows("index", sid, rows, picked, ypos.reshape(-1).numpy()[idx])
        return _wrap(out, _score_prov(sid, ypos, data))
    finally:
        _STATE["busy"] -= 1


# --- leaving the tensor world ----------------------------------------------------------------


def _h_item(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = getattr(args[0], "_pg", None)
    if p is None or (p.contrib is None and not p.is_score) or not isinstance(out, float):
        return out
    contrib = p.contrib
    if p.is_score:
        contrib = c_union(contrib, _chunk_from(p, _values_of(args[0]), "item"))
    _use("item", Prov(contrib=contrib), value=out)
    return TaggedFloat(out, contrib)


def _h_exit(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = getattr(args[0], "_pg", None)
    if p is not None and (p.contrib is not None or p.is_score):
        extra = {"value": float(out)} if isinstance(out, (int, float)) else {}
        _use(_name(func).strip("_"), p, values=_values_of(args[0]) if p.is_score else None, **extra)
    return out


def _h_format(func, args, kwargs):
    t = args[0]
    with _DISABLE():
        out = func(_plain(t), *args[1:], **kwargs)
    p = getattr(t, "_pg", None)
    if p is not None and (p.contrib is not None or p.is_score) and isinstance(out, str):
        extra = {"text": out}
        with _DISABLE():
            if t.numel() == 1:
                extra["value"] = float(t.detach().cpu().double())
        _use("format", p, values=_values_of(t) if p.is_score else None, **extra)
    return out


def _h_numpy(func, args, kwargs):
    with _DISABLE():
        out = func(*args, **kwargs)
    p = getattr(args[0], "_pg", None)
    if p is None or not isinstance(out, np.ndarray):
        return out
    return _as_pos_array(out, p)


# --- in-place writes, backward, parameters ---------------------------------------------------

_PARAM_STORAGE: dict[int, weakref.ref] = {}  # storage pointer -> the parameter that owns it
# Updates whose parameters may be thrown away before scoring (a compile warm-up on a scratch LoRA):
# parameter ids -> (weakrefs, update seqs). At score events they are checked until nothing in
# Python holds them (no module, optimizer, container or frame; only the C++ autograd graph of an
# old loss, which can produce gradients and nothing else): then a ``discarded`` event is written.
_PENDING_UPDATES: dict[tuple, tuple] = {}
_DISCARD_SCANS = [0]
MAX_DISCARD_SCANS = 256  # gc scans per run; past it pending updates stay "held" (the strict verdict)


def _pend_update(params, seq: int) -> None:
    if not params or _DISCARD_SCANS[0] >= MAX_DISCARD_SCANS:
        return
    key = tuple(sorted(id(q) for q in params))
    old = _PENDING_UPDATES.get(key)
    try:
        refs = old[0] if old is not None else [weakref.ref(q) for q in params]
    except TypeError:
        return
    _PENDING_UPDATES[key] = (refs, (old[1] if old is not None else []) + [seq])


def _escaped(tensors) -> None:
    """Values of updated parameters read out whole (``state_dict()``, ``torch.save``): a copy may
    live on after the parameters are dropped, so those updates are never reported as discarded."""
    if not _PENDING_UPDATES:
        return
    keys = {_storage_key(t) for t in tensors if isinstance(t, torch.Tensor)}
    keys.discard(None)
    if not keys:
        return
    for key in list(_PENDING_UPDATES):
        refs, _ = _PENDING_UPDATES[key]
        if any(o is not None and _storage_key(o) in keys for o in (r() for r in refs)):
            del _PENDING_UPDATES[key]


def _tensors_in(obj, depth: int = 0) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 4:
        return []
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v, depth + 1)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v, depth + 1)]
    return []


def _patch_escapes() -> None:
    state_dict = torch.nn.Module.state_dict
    save = torch.save

    def traced_state_dict(self, *args, **kwargs):
        out = state_dict(self, *args, **kwargs)
        if _PENDING_UPDATES:
            _escaped(_tensors_in(out))
        return out

    def traced_save(obj, *args, **kwargs):
        if _PENDING_UPDATES:
            _escaped(_tensors_in(obj))
        return save(obj, *args, **kwargs)

    torch.nn.Module.state_dict = traced_state_dict
    torch.save = traced_save


def _check_discarded() -> None:
    if not _PENDING_UPDATES:
        return
    import gc

    for key in list(_PENDING_UPDATES):
        refs, seqs = _PENDING_UPDATES[key]
        objs = [o for o in (r() for r in refs) if o is not None]
        if objs:
            if _DISCARD_SCANS[0] >= MAX_DISCARD_SCANS:
                _PENDING_UPDATES.clear()
                return
            _DISCARD_SCANS[0] += 1
            frame = sys._getframe()
            if any(h is not objs and h is not frame for h in gc.get_referrers(*objs)):
                continue  # still held: may still compute scores
        del _PENDING_UPDATES[key]
        _emit({"ev": "discarded", "seq": _next_seq(), "updates": seqs, "params": len(refs),
               "numel": int(sum(o.numel() for o in objs))})


def _register_param(t) -> None:
    key = _storage_key(t)
    if key is not None:
        try:
            _PARAM_STORAGE[key] = weakref.ref(t)
        except TypeError:
            pass


def _is_param_storage(t) -> bool:
    """Whether ``t`` shares storage with a live parameter we have seen (freed memory is reused)."""
    key = _storage_key(t)
    ref = _PARAM_STORAGE.get(key) if key is not None else None
    owner = ref() if ref is not None else None
    return owner is not None and _storage_key(owner) == key
_KEYED_WRITES = {
    "index_add_",
    "index_copy_",
    "index_put_",
    "scatter_",
    "scatter_add_",
    "scatter_reduce_",
    "put_",
    "index_fill_",
    "index_reduce_",
}


def _storage_key(t) -> int | None:
    try:
        with _DISABLE():
            return t.untyped_storage().data_ptr()
    except Exception:  # noqa: BLE001
        return None


def _pos_summary(arr: np.ndarray) -> dict:
    return {"pos": _nd(arr.astype(np.int32)) if arr.size else None, "n": int(arr.size)}


def _emit_write(op: str, positions: np.ndarray) -> int:
    wid = _new_id()
    rec = {"ev": "write", "id": wid, "seq": _next_seq(), "op": op, **_pos_summary(positions)}
    rec.update(_origin())
    _emit(rec)
    return wid


def _keyed(name: str, args) -> bool:
    """A write whose destination slots are chosen by validation-derived keys (a table update)."""
    if name in _KEYED_WRITES:
        return True
    if name == "__setitem__" and len(args) > 1:
        key = args[1]
        keys = key if isinstance(key, tuple) else (key,)
        return any(isinstance(k, torch.Tensor) and getattr(k, "_pg", None) is not None for k in keys)
    return False


def _h_inplace(func, args, kwargs):
    dest = args[0]
    before = getattr(dest, "_pg", None)
    with _DISABLE():
        out = func(*args, **kwargs)
    name = _name(func)
    src_provs = _collect(args[1:], kwargs)
    if name in ("zero_", "fill_") and not src_provs:
        if before is not None:
            dest._pg = Prov()
        return out
    if not src_provs and before is None:
        return out
    src = _merge(src_provs) if src_provs else Prov()
    # a gradient-driven change of a parameter outside an optimizer step (manual SGD)
    if src.bw and not _STATE["in_step"] and _is_param_storage(dest):
        rec = {
            "ev": "update",
            "kind": "param_inplace",
            "seq": _next_seq(),
            "bw": sorted(src.bw),
            "op": name,
            **_grad_state(),
        }
        rec.update(_origin())
        _emit(rec)
    base = name[:-1] if name.endswith("_") and not name.startswith("__") else name
    if name.startswith("__i") and name != "__index__":
        base = "__" + name[3:]
    if (
        base in _ELEMWISE_NAMES
        and isinstance(dest, torch.Tensor)
        and (before is not None and before.pos is not None or any(p.pos is not None for p in src_provs))
    ):
        # in-place element-wise op: the same provenance as its out-of-place twin
        prov = _elem_prov(base, args, kwargs, tuple(dest.shape))
        if prov is not None and before is not None and before.pos is None:
            prov = Prov(
                pos=prov.pos,
                sev=prov.sev,
                mult=prov.mult,
                contrib=c_union(before.contrib, prov.contrib),
                marks=before.marks | prov.marks,
                bw=before.bw | prov.bw,
                parents=prov.parents,
            )
        if (
            prov is not None
            and base in ("add", "__add__", "sub", "__sub__")
            and before is not None
            and before.is_score is False
            and any(p.is_score for p in src_provs)
        ):
            prov = None  # accumulating scores into a buffer with a map: handled below
        if prov is not None:
            _attach(out if isinstance(out, torch.Tensor) else dest, prov)
            if out is not dest and isinstance(dest, torch.Tensor):
                _attach(dest, prov)
            return out
    contrib = c_union(before.contrib if before is not None else None, src.contrib)
    pos = before.pos if before is not None else None
    sev = before.sev if before is not None else None
    mult = before.mult if before is not None else None
    scores = [p for p in src_provs if p.is_score]
    keyed = _keyed(name, args)
    if name == "__setitem__" and len(args) > 2 and not keyed:
        # a copy into slots: the destination's map takes the value's map there
        val = args[2]
        vp = getattr(val, "_pg", None) if isinstance(val, torch.Tensor) else None
        if vp is not None and vp.pos is not None or pos is not None:
            try:
                key = _cpu_plain(args[1])
                npos = (
                    pos.clone() if pos is not None else torch.full(tuple(dest.shape), -1, dtype=torch.int64)
                )
                npos[key] = vp.pos if vp is not None and vp.pos is not None else -1
                if vp is not None and vp.is_score or sev is not None:
                    nsev = (
                        sev.clone()
                        if sev is not None
                        else torch.full(tuple(dest.shape), -1, dtype=torch.int64)
                    )
                    nsev[key] = vp.sev if vp is not None and vp.is_score else -1
                    sev = nsev
                pos = npos
                scores = []  # they now live in the destination's map
            except Exception:  # noqa: BLE001, S110 - unusual signature: fall through to the coarse set
                pass
    elif name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        vp = getattr(args[1], "_pg", None)
        if vp is not None and vp.pos is not None and tuple(vp.pos.shape) == tuple(dest.shape):
            pos, sev, mult, scores = vp.pos, vp.sev, vp.mult, []
    for p in scores:  # scores accumulated into a scalar/vector: a reduction
        contrib = c_union(
            contrib, _chunk_from(p, _values_of(args[1]) if getattr(args[1], "_pg", None) is p else None, name)
        )
    marks = _union([before.marks if before is not None else _NONE, src.marks])
    if not scores and not src.bw and src.contrib is None and not _STATE["in_step"] and keyed:
        coarse = src.coarse()
        if coarse.size:
            marks = marks | {_emit_write(name, coarse)}
    bw = _union([before.bw if before is not None else _NONE, src.bw])
    parents = ((before.mixed(),) if before is not None else ()) + tuple(
        p.mixed() for p in src_provs if not p.is_score
    )
    prov = Prov(
        pos=pos,
        sev=sev if pos is not None else None,
        mult=mult if pos is not None else None,
        contrib=contrib,
        marks=marks,
        bw=bw,
        parents=parents,
    )
    target = out if isinstance(out, torch.Tensor) else dest
    _attach(target, prov)
    if target is not dest and isinstance(dest, torch.Tensor):
        _attach(dest, prov)
    return out


def _graph_leaves(roots) -> list:
    leaves, seen = [], set()
    stack = [r.grad_fn for r in roots if getattr(r, "grad_fn", None) is not None]
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
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
        if p.is_score:
            contrib = c_union(contrib, _chunk_from(p, None, "backward"))
    chunks = c_flat(contrib)
    rec = {"ev": "backward", "id": bid, "seq": _next_seq(), "chunks": chunks, **_grad_state()}
    if not chunks:  # a loss not built from scores: everything that influenced it
        rec.update(_pos_summary(_merge(provs).coarse()))
    rec.update(_origin())
    _emit(rec)
    if chunks:
        _emit(
            {
                "ev": "use",
                "kind": "backward",
                "seq": rec["seq"],
                "chunks": chunks,
                "backward": bid,
                **{k: rec[k] for k in ("file", "line", "snippet") if k in rec},
            }
        )
    return bid


def _tag_grads(leaves, bid: int) -> None:
    for leaf in leaves:
        _register_param(leaf)
        g = leaf.grad
        if g is None:
            continue
        old = getattr(g, "_pg", None)
        _attach(g, Prov(bw=(old.bw if old is not None else _NONE) | {bid}))


def _h_backward(func, args, kwargs):
    if func is torch.autograd.grad or _name(func) == "grad":
        return _h_autograd_grad(func, args, kwargs)
    roots = args[0] if args else kwargs.get("tensors")
    roots = [roots] if isinstance(roots, torch.Tensor) else list(roots)
    bid = _record_backward(roots)
    leaves = _graph_leaves(roots) if bid is not None else []
    _STATE["busy"] += 1
    try:
        with _DISABLE():
            out = func(*args, **kwargs)
    finally:
        _STATE["busy"] -= 1
    if bid is not None:
        _tag_grads(leaves, bid)
    return out


def _h_autograd_grad(func, args, kwargs):
    outputs = args[0] if args else kwargs.get("outputs")
    inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
    roots = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    bid = _record_backward(roots)
    _STATE["busy"] += 1
    try:
        with _DISABLE():
            res = func(*args, **kwargs)
    finally:
        _STATE["busy"] -= 1
    if bid is None:
        return res
    ins = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    for t in ins:
        _register_param(t)
    return tuple(_wrap(g, Prov(bw=frozenset({bid}))) if isinstance(g, torch.Tensor) else g for g in res)


def _step_pre_hook(optimizer, args, kwargs):
    bws: set[int] = set()
    stepped = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            _register_param(p)
            g = p.grad
            if g is not None:
                stepped.append(p)
            prov = getattr(g, "_pg", None) if g is not None else None
            if prov is not None and prov.bw:
                bws |= prov.bw
    _STATE["in_step"] = True
    if bws:
        rec = {
            "ev": "update",
            "kind": "optimizer_step",
            "seq": _next_seq(),
            "bw": sorted(bws),
            "optimizer": type(optimizer).__name__,
            "params": len(stepped),
            "numel": int(sum(p.numel() for p in stepped)),
            **_grad_state(),
        }
        rec.update(_origin())
        _emit(rec)
        _pend_update(stepped, rec["seq"])


def _step_post_hook(optimizer, args, kwargs):
    _STATE["in_step"] = False


# ---------------------------------------------------------------------------------------------
# numpy side: PosArray


def _as_pos_array(arr: np.ndarray, prov: Prov):
    out = np.ndarray.view(arr, PosArray)
    out._pg = prov
    return out


def _np_plain(x):
    if isinstance(x, PosArray):
        return np.ndarray.view(x, np.ndarray)
    if isinstance(x, tuple):
        return tuple(_np_plain(v) for v in x)
    if isinstance(x, list):
        return [_np_plain(v) for v in x]
    if isinstance(x, PosTensor):
        return _plain(x)
    return x


def _np_field(x, name: str):
    v = _field(x, name)
    return v.numpy() if v is not None else None


def _np_wrap(out, prov: Prov | None):
    if prov is None or prov.empty:
        return out
    if isinstance(out, np.ndarray):
        return _as_pos_array(out, prov)
    if isinstance(out, (np.floating, float)) and prov.contrib is not None:
        return TaggedFloat(float(out), prov.contrib)
    return out


def _np_from_fields(pos, sev, mult, base: Prov, **over) -> Prov:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) if a is not None else None
    kw = {"contrib": base.contrib, "marks": base.marks, "bw": base.bw, "parents": base.parents}
    kw.update(over)
    return Prov(pos=t(pos), sev=t(sev), mult=t(mult), **kw)


_NP_REDUCERS = {"sum", "mean", "nansum", "nanmean", "average", "dot", "inner"}
_NP_REPLAY = {
    "concatenate",
    "stack",
    "hstack",
    "vstack",
    "reshape",
    "ravel",
    "transpose",
    "squeeze",
    "expand_dims",
    "atleast_1d",
    "atleast_2d",
    "copy",
    "flip",
    "roll",
    "take",
    "take_along_axis",
    "broadcast_to",
    "repeat",
    "tile",
    "swapaxes",
    "moveaxis",
    "ascontiguousarray",
    "where",
}


class PosArray(np.ndarray):
    """A numpy array that carries a Prov (maps as int64 tensors in ``_pg``)."""

    def __array_finalize__(self, obj):
        if not hasattr(self, "_pg"):
            self._pg = None

    def _derive(self, out, op):
        p = self._pg
        if not isinstance(out, np.ndarray):
            return out
        out = np.ndarray.view(out, np.ndarray)
        if p is None:
            return out
        if p.pos is None:
            return _np_wrap(out, p)
        try:
            pos = op(p.pos.numpy())
            sev = op(p.sev.numpy()) if p.sev is not None else None
            mult = op(p.mult.numpy()) if p.mult is not None else None
        except Exception:  # noqa: BLE001
            return _np_wrap(out, p.mixed())
        if np.shape(pos) != out.shape:
            return _np_wrap(out, p.mixed())
        return _np_wrap(out, _np_from_fields(pos, sev, mult, p))

    def __getitem__(self, key):
        plain_key = _np_plain(key)
        out = np.ndarray.__getitem__(np.ndarray.view(self, np.ndarray), plain_key)
        p = self._pg
        if p is None or p.pos is None:
            if (
                isinstance(key, tuple)
                and len(key) == self.ndim
                and self.ndim >= 2
                and self.dtype.kind == "f"
                and _np_field(key[-1], "pos") is not None
                and isinstance(out, np.ndarray)
            ):
                return _np_score(self, key, out)
            if p is None:
                return _np_lookup(out, key)
            return _np_wrap(out, p.mixed()) if isinstance(out, np.ndarray) else out
        if not isinstance(out, np.ndarray):
            return out
        return self._derive(out, lambda e: e[plain_key])

    def __setitem__(self, key, value):
        np.ndarray.__setitem__(np.ndarray.view(self, np.ndarray), _np_plain(key), _np_plain(value))
        vp = getattr(value, "_pg", None)
        kp = _np_collect((key,), {})
        p = self._pg
        if vp is None and not kp and (p is None or p.pos is None):
            return
        p = p or Prov()
        pos = p.pos.numpy().copy() if p.pos is not None else np.full(self.shape, -1, dtype=np.int64)
        sev = p.sev.numpy().copy() if p.sev is not None else None
        try:
            pos[_np_plain(key)] = vp.pos.numpy() if vp is not None and vp.pos is not None else -1
            if vp is not None and vp.is_score:
                sev = sev if sev is not None else np.full(self.shape, -1, dtype=np.int64)
                sev[_np_plain(key)] = vp.sev.numpy()
            elif sev is not None:
                sev[_np_plain(key)] = -1
        except Exception:  # noqa: BLE001, S110 - keys numpy cannot replay: the map stays as it was
            pass
        marks = _union([p.marks] + ([vp.marks] if vp is not None else []))
        if kp and not (vp is not None and vp.is_score) and not _STATE["in_step"]:
            coarse = _merge(kp + ([vp] if vp is not None else [])).coarse()
            if coarse.size:
                marks = marks | {_emit_write("ndarray.__setitem__", coarse)}
        self._pg = _np_from_fields(
            pos, sev, None, p, marks=marks, contrib=c_union(p.contrib, vp.contrib if vp is not None else None)
        )

    def astype(self, *a, **k):
        return self._derive(np.ndarray.astype(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e)

    def copy(self, *a, **k):
        return self._derive(np.ndarray.copy(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e.copy())

    def reshape(self, *a, **k):
        return self._derive(
            np.ndarray.reshape(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e.reshape(*a, **k)
        )

    def ravel(self, *a, **k):
        return self._derive(
            np.ndarray.ravel(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e.ravel(*a, **k)
        )

    def flatten(self, *a, **k):
        return self._derive(
            np.ndarray.flatten(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e.flatten(*a, **k)
        )

    def transpose(self, *a, **k):
        return self._derive(
            np.ndarray.transpose(np.ndarray.view(self, np.ndarray), *a, **k), lambda e: e.transpose(*a, **k)
        )

    @property
    def T(self):
        return self.transpose()

    def view(self, *a, **k):
        if not a and not k:
            return np.ndarray.view(self)
        first = a[0] if a else k.get("type", k.get("dtype"))
        if isinstance(first, type) and issubclass(first, np.ndarray):
            return np.ndarray.view(self, *a, **k)
        out = np.ndarray.view(np.ndarray.view(self, np.ndarray), *a, **k)
        return self._derive(out, lambda e: e) if out.shape == self.shape else out

    def tolist(self):
        p = self._pg
        out = np.ndarray.tolist(np.ndarray.view(self, np.ndarray))
        if p is not None and (p.is_score or p.contrib is not None):
            _use(
                "tolist",
                p,
                values=np.asarray(np.ndarray.view(self, np.ndarray), dtype=np.float64)
                if p.is_score
                else None,
            )
        return out

    def item(self, *a):
        p = self._pg
        out = np.ndarray.item(np.ndarray.view(self, np.ndarray), *a)
        if p is not None and isinstance(out, float) and (p.is_score or p.contrib is not None):
            contrib = p.contrib
            if p.is_score:
                contrib = c_union(
                    contrib,
                    _chunk_from(p, np.asarray(np.ndarray.view(self, np.ndarray), dtype=np.float64), "item"),
                )
            _use("item", Prov(contrib=contrib), value=out)
            return TaggedFloat(out, contrib)
        return out

    def __float__(self):
        p = self._pg
        out = float(np.ndarray.view(self, np.ndarray))
        if p is not None and (p.is_score or p.contrib is not None):
            _use(
                "float",
                p,
                values=np.asarray(np.ndarray.view(self, np.ndarray), dtype=np.float64)
                if p.is_score
                else None,
                value=out,
            )
        return out

    def __format__(self, spec):
        text = np.ndarray.view(self, np.ndarray).__format__(spec)
        p = self._pg
        if p is not None and (p.is_score or p.contrib is not None):
            _use("format", p, text=text)
        return text

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain_in = [_np_plain(x) for x in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(_np_plain(o) for o in outs)
        result = getattr(ufunc, method)(*plain_in, **kwargs)
        provs = [p for p in (getattr(x, "_pg", None) for x in inputs) if p is not None]
        if not provs:
            return outs[0] if outs and len(outs) == 1 else result
        if method == "at":  # np.add.at(table, keys, v): a keyed write into a table
            _np_write(inputs[0], provs, ufunc.__name__ + ".at")
            return None
        if method == "__call__" and isinstance(result, np.ndarray):
            prov = _np_elem_prov(inputs, result, ufunc.__name__)
        elif method == "reduce" and ufunc.__name__ == "add":
            prov = _np_reduce_prov(inputs[0], provs)
            if not isinstance(result, np.ndarray):
                return TaggedFloat(float(result), prov.contrib) if prov.contrib is not None else result
        else:
            prov = _merge(provs)
        if outs:
            target = outs[0]
            if isinstance(target, PosArray):
                old = target._pg
                target._pg = (
                    prov
                    if old is None
                    else Prov(
                        pos=prov.pos,
                        sev=prov.sev,
                        mult=prov.mult,
                        contrib=c_union(old.contrib, prov.contrib),
                        marks=old.marks | prov.marks,
                        parents=prov.parents,
                    )
                )
            return target
        return _np_wrap(result, prov)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        out = func(*_np_plain(args), **{k: _np_plain(v) for k, v in kwargs.items()})
        provs = _np_collect(args, kwargs)
        if not provs:
            return out
        if name in _NP_REDUCERS:
            src = args[0]
            prov = _np_reduce_prov(src, provs)
            if not isinstance(out, np.ndarray):
                return (
                    TaggedFloat(float(out), prov.contrib)
                    if prov.contrib is not None and isinstance(out, (float, np.floating))
                    else out
                )
            return _np_wrap(out, prov)
        if name in _NP_REPLAY and isinstance(out, np.ndarray):
            try:
                return _np_wrap(out, _np_replay(func, name, args, kwargs, provs, out))
            except Exception:  # noqa: BLE001, S110 - unusual signature: fall through to the coarse set
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


def _np_sub(x, name: str):
    if isinstance(x, (np.ndarray, torch.Tensor)):
        v = _np_field(x, name)
        if v is not None:
            return v
        if isinstance(x, np.ndarray) and x.ndim:
            return np.full(x.shape, _FILL[name], dtype=np.int64)
        return x
    if isinstance(x, tuple):
        return tuple(_np_sub(v, name) for v in x)
    if isinstance(x, list):
        return [_np_sub(v, name) for v in x]
    return x


def _np_replay(func, name, args, kwargs, provs, out) -> Prov:
    if name == "where":
        cond = np.asarray(_np_plain(args[0]), dtype=bool)
        pick = lambda f, fill: np.where(
            cond,
            *(
                np.broadcast_to(
                    _np_field(a, f) if _np_field(a, f) is not None else np.full(np.shape(a), fill), out.shape
                )
                for a in args[1:3]
            ),
        )
        pos = pick("pos", -1)
        scores = any(p.is_score for p in provs)
        sev = pick("sev", -1) if scores else None
        mult = pick("mult", 0) if scores else None
    else:
        rest = (args[0],) if name != "take" else args[:1]
        pos = func(
            *(_np_sub(a, "pos") if i == 0 else _np_plain(a) for i, a in enumerate(args)),
            **{k: _np_plain(v) for k, v in kwargs.items() if k != "out"},
        )
        scores = all(
            getattr(x, "_pg", None) is not None and x._pg.is_score
            for x in (args[0] if isinstance(args[0], (list, tuple)) else rest)
        )
        sev = (
            func(
                *(_np_sub(a, "sev") if i == 0 else _np_plain(a) for i, a in enumerate(args)),
                **{k: _np_plain(v) for k, v in kwargs.items() if k != "out"},
            )
            if scores
            else None
        )
        mult = None
    if np.shape(pos) != out.shape:
        return _merge(provs)
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    return _np_from_fields(pos, sev, mult, Prov(), contrib=contrib, marks=_union([p.marks for p in provs]))


def _np_lookup(out, key):
    """``table[idx]`` on a plain table with a position-carrying index: follow the index."""
    if isinstance(key, tuple) or not isinstance(out, np.ndarray):
        return out
    kp = getattr(key, "_pg", None)
    if kp is None or kp.pos is None or tuple(kp.pos.shape) != out.shape:
        return out
    return _as_pos_array(out, Prov(pos=kp.pos, marks=kp.marks))


def _np_score(data, key, out):
    ypos = np.broadcast_to(_np_field(key[-1], "pos"), out.shape).copy()
    dp = data._pg
    sid = _score_event("np_index", torch.from_numpy(ypos.astype(np.int64)), data)
    sel = _in_mask(_PROBE_MASK, ypos.reshape(-1))
    if sel.any():
        idx = np.nonzero(sel)[0][:_PROBE_ROWS]
        plain = np.ndarray.view(data, np.ndarray)
        rows_all = plain[tuple(_np_plain(k) for k in key[:-1])]
        rows_all = np.broadcast_to(rows_all, out.shape + (plain.shape[-1],)).reshape(-1, plain.shape[-1])
        _probe_rows(
            "np_index",
            sid,
            torch.from_numpy(np.ascontiguousarray(rows_all[idx], dtype=np.float64)),
            torch.from_numpy(np.asarray(out, dtype=np.float64).reshape(-1)[idx]),
            ypos.reshape(-1)[idx],
        )
    sev = np.full(out.shape, sid, dtype=np.int64)
    return _as_pos_array(
        np.ndarray.view(out, np.ndarray),
        _np_from_fields(
            ypos, sev, None, Prov(), marks=dp.marks if dp else _NONE, parents=(dp.mixed(),) if dp else ()
        ),
    )


def _np_elem_prov(inputs, result, ufunc_name: str) -> Prov:
    real = [p for p in (getattr(x, "_pg", None) for x in inputs) if p is not None]
    withpos = [x for x in inputs if _np_field(x, "pos") is not None]
    contrib = None
    for p in real:
        contrib = c_union(contrib, p.contrib)
    marks = _union([p.marks for p in real])
    if not withpos:
        return _merge(real)
    try:
        pos = sev = mult = None
        scored = [x for x in withpos if x._pg.is_score]
        for x in scored or withpos:
            e = np.broadcast_to(_np_field(x, "pos"), result.shape)
            pos = e if pos is None else np.maximum(pos, e)
            if x._pg.is_score:
                s = np.broadcast_to(_np_field(x, "sev"), result.shape)
                m = np.broadcast_to(_np_field(x, "mult"), result.shape)
                sev = s if sev is None else np.maximum(sev, s)
                mult = m if mult is None else mult + m
        pos = np.array(pos, dtype=np.int64)
    except ValueError:
        return _merge(real)
    if sev is not None and ufunc_name == "multiply":
        for x in inputs:
            if getattr(x, "_pg", None) is None and isinstance(x, np.ndarray) and x.ndim:
                pos[np.broadcast_to(x == 0, result.shape)] = -1
    if mult is not None and not (np.asarray(mult) != 1).any():
        mult = None
    return _np_from_fields(
        pos,
        sev,
        mult,
        Prov(),
        contrib=contrib,
        marks=marks,
        parents=tuple(p.mixed() for p in real if p.pos is None),
    )


def _np_reduce_prov(src, provs) -> Prov:
    contrib = None
    for p in provs:
        contrib = c_union(contrib, p.contrib)
    sp = getattr(src, "_pg", None)
    if sp is not None and sp.is_score:
        contrib = c_union(contrib, _chunk_from(sp, np.asarray(_np_plain(src), dtype=np.float64), "np.sum"))
    for p in provs:
        if p.is_score and p is not sp:
            contrib = c_union(contrib, _chunk_from(p, None, "np.sum"))
    return Prov(
        contrib=contrib,
        marks=_union([p.marks for p in provs]),
        parents=tuple(Prov(parents=p.parents, marks=p.marks) for p in provs),
    )


def _np_write(table, provs, op: str) -> None:
    if _STATE["in_step"] or any(p.is_score for p in provs):
        return
    coarse = _merge(provs).coarse()
    if not coarse.size:
        return
    wid = _emit_write(op, coarse)
    if isinstance(table, PosArray):
        old = table._pg or Prov()
        table._pg = Prov(
            pos=old.pos,
            sev=old.sev,
            mult=old.mult,
            contrib=old.contrib,
            marks=old.marks | {wid},
            parents=old.parents,
        )


# ---------------------------------------------------------------------------------------------
# entry points: where validation tokens come from


def _val_shard_of(file):
    if not _VAL_SHARDS:
        return None
    name = file if isinstance(file, (str, bytes, os.PathLike)) else getattr(file, "name", None)
    try:
        real = os.path.realpath(os.fsdecode(os.fspath(name)))
    except TypeError:
        return None
    return _VAL_SHARDS.get(real)


def _val_positions(shard, byte_offset: int, count: int):
    start, tokens = shard
    first = (byte_offset - 1024) // 2
    if byte_offset < 1024 or (byte_offset - 1024) % 2 or first + count > tokens:
        return None
    return np.arange(start + first, start + first + count, dtype=np.int64)


def _patch_numpy() -> None:
    orig_fromfile = np.fromfile

    def fromfile(file, dtype=float, count=-1, sep="", offset=0, **kw):
        shard = _val_shard_of(file)
        tell = 0
        if shard is not None and hasattr(file, "tell"):
            try:
                tell = file.tell()
            except OSError:
                tell = 0
        arr = orig_fromfile(file, dtype=dtype, count=count, sep=sep, offset=offset, **kw)
        if shard is None or not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.itemsize != 2:
            return arr
        pos = _val_positions(shard, tell + offset, arr.size)
        return arr if pos is None else _as_pos_array(arr, Prov(pos=torch.from_numpy(pos)))

    fromfile.__wrapped__ = orig_fromfile
    np.fromfile = fromfile
    orig_memmap = np.memmap

    class memmap(orig_memmap):
        def __new__(cls, filename, dtype=np.uint8, mode="r+", offset=0, shape=None, order="C"):
            mm = orig_memmap.__new__(
                orig_memmap, filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order
            )
            shard = _val_shard_of(filename)
            if shard is None or mm.ndim != 1 or mm.dtype.itemsize != 2:
                return mm
            pos = _val_positions(shard, offset, mm.size)
            return (
                mm
                if pos is None
                else _as_pos_array(np.ndarray.view(mm, np.ndarray), Prov(pos=torch.from_numpy(pos)))
            )

    np.memmap = memmap


def _patch_torch_entry() -> None:
    orig_from_numpy = torch.from_numpy

    def from_numpy(arr):
        p = getattr(arr, "_pg", None)
        out = orig_from_numpy(np.ndarray.view(arr, np.ndarray) if isinstance(arr, PosArray) else arr)
        return _wrap(out, p) if p is not None else out

    from_numpy.__wrapped__ = orig_from_numpy
    torch.from_numpy = from_numpy

    def wrap_tensor(orig):
        def tensor_like(data, *a, **k):
            p = getattr(data, "_pg", None)
            if p is None or isinstance(data, torch.Tensor):
                return orig(data, *a, **k)
            out = orig(_np_plain(data), *a, **k)
            if p.pos is not None and tuple(p.pos.shape) == tuple(out.shape):
                return _wrap(out, p)
            return _wrap(out, p.mixed())

        tensor_like.__wrapped__ = orig
        return tensor_like

    torch.tensor = wrap_tensor(torch.tensor)
    torch.as_tensor = wrap_tensor(torch.as_tensor)


# ---------------------------------------------------------------------------------------------
# handler tables

_VIEW_NAMES = {
    "view",
    "reshape",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "t",
    "expand",
    "expand_as",
    "broadcast_to",
    "repeat",
    "unfold",
    "narrow",
    "select",
    "split",
    "chunk",
    "unbind",
    "flip",
    "roll",
    "__getitem__",
    "index_select",
    "take",
    "movedim",
    "moveaxis",
    "swapaxes",
    "swapdims",
    "tile",
    "repeat_interleave",
    "view_as",
    "reshape_as",
    "ravel",
    "hsplit",
    "vsplit",
    "tensor_split",
    "split_with_sizes",
    "diagonal",
    "take_along_dim",
    "masked_select",
    "atleast_1d",
    "atleast_2d",
    "squeeze_",
    "unsqueeze_",
}
_MULTI_NAMES = {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"}
_CAST_NAMES = {
    "to",
    "type",
    "float",
    "double",
    "half",
    "bfloat16",
    "long",
    "int",
    "short",
    "char",
    "byte",
    "bool",
    "cpu",
    "cuda",
    "type_as",
    "pin_memory",
    "contiguous",
    "clone",
    "detach",
    "__deepcopy__",
    "__copy__",
    "requires_grad_",
    "detach_",
}
_ELEMWISE_NAMES = {
    "add",
    "sub",
    "subtract",
    "mul",
    "multiply",
    "div",
    "divide",
    "true_divide",
    "neg",
    "negative",
    "exp",
    "log",
    "log1p",
    "expm1",
    "log2",
    "log10",
    "sigmoid",
    "tanh",
    "abs",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "minimum",
    "maximum",
    "fmin",
    "fmax",
    "pow",
    "sqrt",
    "rsqrt",
    "square",
    "rsub",
    "nan_to_num",
    "reciprocal",
    "xlogy",
    "lerp",
    "where",
    "masked_fill",
    "float_power",
    "exp2",
    "logaddexp",
    "sign",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "remainder",
    "fmod",
    "floor_divide",
    "bitwise_xor",
    "bitwise_and",
    "bitwise_or",
    "bitwise_not",
    "bitwise_left_shift",
    "bitwise_right_shift",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_not",
    "logical_and",
    "logical_or",
    "isnan",
    "isinf",
    "isfinite",
    "copysign",
    "hypot",
    "addcmul",
    "addcdiv",
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__neg__",
    "__pow__",
    "__rpow__",
    "__abs__",
    "__floordiv__",
    "__rfloordiv__",
    "__mod__",
    "__rmod__",
    "__xor__",
    "__and__",
    "__or__",
    "__rxor__",
    "__rand__",
    "__ror__",
    "__lshift__",
    "__rshift__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__invert__",
    "__div__",
    "__rdiv__",
}
_REDUCE_NAMES = {"sum", "mean", "nansum", "nanmean", "dot", "vdot", "inner"}
_INPLACE_NAMES = {
    "__iadd__",
    "__isub__",
    "__imul__",
    "__itruediv__",
    "__idiv__",
    "__setitem__",
    "copy_",
    "index_put_",
    "index_add_",
    "index_copy_",
    "scatter_",
    "scatter_add_",
    "scatter_reduce_",
    "masked_scatter_",
    "put_",
    "index_fill_",
    "index_reduce_",
    "__ixor__",
    "__iand__",
    "__ior__",
    "__ifloordiv__",
    "__imod__",
    "__ilshift__",
    "__irshift__",
    "zero_",
    "fill_",
}
_FRESH_NAMES = {
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
}

_PASS: set = set()
_HANDLERS: dict = {}


def _register_handlers() -> None:
    T, F = torch.Tensor, torch.nn.functional

    def reg(objs, names, handler):
        for obj in objs:
            for n in names:
                f = getattr(obj, n, None)
                if f is not None and callable(f):
                    _HANDLERS[f] = handler

    reg([T, torch], _ELEMWISE_NAMES, _h_elemwise)
    reg([T, torch], _VIEW_NAMES, _h_view)
    for n in ("T", "mT", "H", "mH"):
        d = getattr(T, n, None)
        if d is not None and hasattr(d, "__get__"):
            _HANDLERS[d.__get__] = _h_view
    reg([torch], _MULTI_NAMES, _h_multi)
    reg([T, torch], _CAST_NAMES, _h_cast)
    reg([T, torch], _REDUCE_NAMES, _h_reduce)
    reg([T, torch], _FRESH_NAMES, _h_fresh)
    reg(
        [T], [n + "_" for n in _ELEMWISE_NAMES if not n.startswith("__")] + sorted(_INPLACE_NAMES), _h_inplace
    )
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
    _HANDLERS[torch.autograd.backward] = _h_backward
    _HANDLERS[torch.autograd.grad] = _h_autograd_grad
    for n in (
        "shape",
        "dtype",
        "device",
        "ndim",
        "is_cuda",
        "requires_grad",
        "grad_fn",
        "is_leaf",
        "data_ptr",
        "dim",
        "size",
        "numel",
        "element_size",
        "stride",
        "storage_offset",
        "is_contiguous",
        "is_floating_point",
        "untyped_storage",
        "nelement",
        "__len__",
        "__bool__",
        "get_device",
        "is_complex",
        "_version",
        "layout",
        "grad",
        "data",
        "is_inference",
        "__hash__",
    ):
        f = getattr(T, n, None)
        if f is None:
            continue
        _PASS.add(f)
        if hasattr(f, "__get__") and not callable(f) or type(f).__name__ == "getset_descriptor":
            _PASS.add(f.__get__)


# --- module-boundary fast path -----------------------------------------------------------------
# A module called only with tensors whose provenance is a coarse "influenced by" set (no element
# map, no scores, no score contributions) cannot do anything the trace distinguishes: every
# output is influenced by exactly that set. Such calls run on plain tensors (no per-op dispatch
# inside: a transformer block costs what it costs untraced) and the set is re-attached to the
# outputs. Calls with position maps (token ids, targets) or scores are traced op by op.

_STRIPPED: list = []  # (module, args tuple handed to forward, provenance) for calls in flight


def _module_pre(module, args):
    if _STATE["busy"] or not args:
        return None
    provs = []
    for a in args:
        p = getattr(a, "_pg", None)
        if p is None:
            if isinstance(a, (list, tuple, dict)):
                return None  # containers may hide tagged tensors: trace op by op
            continue
        if p.pos is not None or p.sev is not None or p.contrib is not None:
            return None
        provs.append(p)
    if not provs:
        return None
    new_args = tuple(_plain(a) if isinstance(a, PosTensor) else a for a in args)
    _STRIPPED.append((module, new_args, _merge(provs)))
    return new_args


def _module_post(module, args, output):
    if not _STRIPPED or _STRIPPED[-1][0] is not module or _STRIPPED[-1][1] is not args:
        return None
    prov = _STRIPPED.pop()[2]

    def tag(o):
        if isinstance(o, torch.Tensor):
            old = getattr(o, "_pg", None)
            return _wrap(o, prov if old is None else _merge([old, prov]))
        if isinstance(o, (tuple, list)) and not hasattr(o, "_fields"):
            return type(o)(tag(v) for v in o)
        return o

    return tag(output)


class _LineTap:
    """Forwards a text stream and records, with a sequence number, every complete line that
    looks like a metric line, so the analyzer knows which events came before which number."""

    def __init__(self, stream):
        self._stream = stream
        self._buf = ""

    def write(self, text):
        n = self._stream.write(text)
        if isinstance(text, str) and ("val_" in text or self._buf):
            self._buf += text
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                if "val_loss" in line or "val_bpb" in line:
                    _emit({"ev": "line", "seq": _next_seq(), "text": line[:1000]})
            if len(self._buf) > 100_000:
                self._buf = ""
        return n

    def __getattr__(self, name):
        return getattr(self._stream, name)


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
    _patch_escapes()
    register_optimizer_step_pre_hook(_step_pre_hook)
    register_optimizer_step_post_hook(_step_post_hook)
    sys.stdout = _LineTap(sys.stdout)
    if os.environ.get("PGOLF_TRACE_MODULE_FASTPATH", "1") == "1":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        register_module_forward_pre_hook(_module_pre)
        register_module_forward_hook(_module_post)
    _emit(
        {
            "ev": "start",
            "seq": _next_seq(),
            "pid": os.getpid(),
            "n_val": _N_VAL,
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
    )
    atexit.register(lambda: _emit({"ev": "end", "seq": _next_seq(), "pid": os.getpid()}))
