"""Abstract values for the dataflow layer: what a Python value may carry, with evidence.

A value is described by *labels* (what it is derived from: validation tokens, the realized target
tokens, a model distribution, a lookup keyed by the target, ...). Every label keeps one evidence
chain: the lines through which that fact flowed (source -> via ... -> here). Values are immutable;
operations build new ones.

Besides labels a value may know:
- ``objs``: user classes / instances / functions / modules it may refer to (for call resolution);
- ``form``: when it is a position (an index into the token stream), its offset relative to the
  window it was built from, as ``(const, has_positive_symbols, has_negative_symbols)``; used to
  recognise reads of the *next* token (``tokens[ws + s + 1 + i]``);
- ``const``: the Python constant it certainly holds (strings, numbers, bools), if known;
- ``agg``: it is a reduction over positions (a sum, a mean, a scalar score).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- Labels -------------------------------------------------------------------------------------
VALPATH = "VALPATH"  # a path/glob naming validation shards (fineweb_val_*)
TRAINPATH = "TRAINPATH"  # a path/glob naming training shards (fineweb_train_*)
VAL = "VAL"  # derived from validation data
TRAIN = "TRAIN"  # derived from training data
TOK = "TOK"  # *is* the validation token stream (or a view of it), not merely derived from it
TGT = "TGT"  # the realized target token(s) of scored positions
TMIX = "TMIX"  # the target mixed with other data (a hash / key built from the target)
TPAIR = "TPAIR"  # an exact (context, target) index into a flattened 2-D table: row * V + target
DIST = "DIST"  # a model distribution over the vocabulary (softmax / log-softmax output)
ATT = "ATT"  # a model value *at* the target: p(x_t), log p(x_t), per-token NLL
TKEY = "TKEY"  # a value read from a table with a key computed from the target
TLUT = "TLUT"  # a property of the realized token (a lookup or comparison on the target alone)
TEQ = "TEQ"  # the indicator target == prefix-only hint (the legal closed-form tilt uses it)
GATE = "GATE"  # a choice made by comparing target-dependent values (oracle gates)
BLEND = "BLEND"  # a target-keyed value blended with the model's probability of the target
TDIST = "TDIST"  # a distribution built with target-dependent values, then scored at the target
STATE = "STATE"  # a table/cache written with validation-derived keys or values
SEL = "SEL"  # a selection made by comparing aggregated validation scores (best-of-k)
LOCALPARAM = "LOCALPARAM"  # a tensor created with requires_grad inside a function (delta, bias)
OPT = "OPT"  # an optimizer
CALLRES = "CALLRES"  # result of a call we could not resolve (used leniently as a score candidate)

# Labels that describe the per-position relation to the target; combining two aggregated values
# (a loss sum with a byte sum, say) drops them, because nothing per-position survives that.
FINE = frozenset({TGT, TMIX, TPAIR, TKEY, TLUT, TEQ, GATE, BLEND, TDIST})
# Target-dependent labels that must not reach a model distribution before it is scored.
TARGET_DERIVED = frozenset({TGT, TMIX, TKEY, TLUT, TEQ})
# Labels that stay with the plain data through views/casts only.
IDENTITY_ONLY = frozenset({TOK})

MAX_CHAIN = 24


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of evidence: a line in one of the program's files."""

    file: int
    line: int
    role: str  # "source" | "via" | "sink"
    note: str = ""


Chain = tuple[Step, ...]


def extend(chain: Chain, step: Step) -> Chain:
    """Append a hop, skipping repeats of the same line and keeping the chain short: when too long,
    plain hops are dropped before annotated ones (the key, the read, the blend), oldest first."""
    if chain and chain[-1].file == step.file and chain[-1].line == step.line:
        # one hop per line; a semantic note (the key, the read, the blend) beats "returned"/"passed"
        if step.note and (not chain[-1].note or not _plumbing(step.note)):
            return chain[:-1] + (step,)
        return chain
    new = chain + (step,)
    if len(new) > MAX_CHAIN:
        plain = [i for i in range(1, len(new) - 1) if not new[i].note]
        drop = plain[0] if plain else len(new) // 2
        new = new[:drop] + new[drop + 1 :]
    return new


def _plumbing(note: str) -> bool:
    return note.startswith(("returned", "passed as"))


class _NoConst:
    def __repr__(self) -> str:
        return "NOCONST"


NOCONST: Any = _NoConst()


class V:
    """An abstract value. Treat as immutable."""

    __slots__ = ("agg", "const", "elem", "form", "items", "labels", "objs")

    def __init__(
        self, labels=None, objs=frozenset(), form=None, const=NOCONST, agg=False, items=None, elem=None
    ):
        self.labels: dict[str, Chain] = labels if labels is not None else {}
        self.objs: frozenset = objs
        self.form: tuple[int, bool, bool] | None = form
        self.const: Any = const
        self.agg: bool = agg
        self.items: tuple[V, ...] | None = items  # element values of a fixed-size tuple/list
        # A list of same-size tuples (``keys.append((pos, ctx_key, full_key))``): per position, what
        # any of its tuples holds there, so ``a, b, c = keys[i]`` keeps a context key apart from a
        # target key stored beside it.
        self.elem: tuple[V, ...] | None = elem

    def __repr__(self) -> str:  # debugging aid
        parts = [",".join(sorted(self.labels))]
        if self.objs:
            parts.append(f"objs={sorted(map(str, self.objs))}")
        if self.form is not None:
            parts.append(f"form={self.form}")
        if self.const is not NOCONST:
            parts.append(f"const={self.const!r}")
        if self.agg:
            parts.append("agg")
        return f"V({' '.join(p for p in parts if p)})"

    def has(self, label: str) -> bool:
        return label in self.labels

    def has_any(self, labels) -> bool:
        return any(label in self.labels for label in labels)

    @property
    def empty(self) -> bool:
        return not self.labels and not self.objs and self.form is None and self.const is NOCONST

    # -- builders --------------------------------------------------------------------------------
    def with_labels(self, add: dict[str, Chain]) -> V:
        if not add:
            return self
        labels = dict(self.labels)
        for k, c in add.items():
            labels.setdefault(k, c)
        return V(labels, self.objs, self.form, self.const, self.agg, self.items, self.elem)

    def with_label(self, label: str, chain: Chain) -> V:
        if label in self.labels:
            return self
        labels = dict(self.labels)
        labels[label] = chain
        return V(labels, self.objs, self.form, self.const, self.agg, self.items, self.elem)

    def without(self, drop) -> V:
        if not any(k in self.labels for k in drop):
            return self
        labels = {k: c for k, c in self.labels.items() if k not in drop}
        return V(labels, self.objs, self.form, self.const, self.agg, self.items, self.elem)

    def only_data(self) -> V:
        """The labels only (no objects, position form or constant)."""
        if (
            not self.objs
            and self.form is None
            and self.const is NOCONST
            and not self.agg
            and self.items is None
        ):
            return self
        return V(self.labels)

    def stepped(self, step: Step) -> V:
        """The same value after flowing through ``step`` (every chain gets the hop)."""
        if not self.labels:
            return self
        labels = {k: extend(c, step) for k, c in self.labels.items()}
        items = None
        if self.items is not None:
            items = tuple(i.stepped(step) for i in self.items)
        elem = tuple(e.stepped(step) for e in self.elem) if self.elem is not None else None
        return V(labels, self.objs, self.form, self.const, self.agg, items, elem)

    def as_agg(self) -> V:
        if self.agg:
            return self
        return V(self.labels, self.objs, None, self.const, True)


EMPTY = V()


def const(value: Any) -> V:
    return V(const=value)


def join(*vals: V) -> V:
    """Least upper bound (used at control-flow merges and for unknown operations)."""
    vals = tuple(v for v in vals if v is not None)
    if not vals:
        return EMPTY
    if len(vals) == 1:
        return vals[0]
    first = vals[0]
    if all(v is first for v in vals):
        return first
    labels: dict[str, Chain] = {}
    objs: frozenset = frozenset()
    for v in vals:
        for k, c in v.labels.items():
            if k not in labels or len(c) < len(labels[k]):
                labels[k] = c
        if v.objs:
            objs = objs | v.objs
    # a form survives a merge with values that carry nothing (a fresh empty list, a None default)
    formed = [v for v in vals if v.form is not None or v.labels or v.objs or v.items is not None]
    form = formed[0].form if formed and all(v.form == formed[0].form for v in formed) else None
    c0 = first.const
    same_const = c0 is not NOCONST and all(_same_const(v.const, c0) for v in vals)
    # Element structure survives a merge with values that carry nothing (``stats = zeros(3)`` before
    # a loop of ``stats += stack([...])``), but only while the elements still account for every label
    # of their value: a container mutated as a whole (labels beyond its items) merges as a whole.
    shaped = [
        v for v in vals if v.items is not None or v.labels or v.objs or v.form is not None or v.const is not NOCONST
    ]
    items = _join_parts(shaped, lambda v: v.items)
    # The same for a list of tuples: its element structure survives a merge with a fresh list.
    lists = [v for v in shaped if v.elem is not None or v.items != () or v.labels or v.objs]  # [] is fresh
    elem = _join_parts(lists, lambda v: v.elem)
    return V(labels, objs, form, c0 if same_const else NOCONST, any(v.agg for v in vals), items, elem)


def _join_parts(vals: list[V], parts) -> tuple[V, ...] | None:
    """Position by position, the join of the parts (``items`` or ``elem``) of ``vals``, when every
    value has parts of one size that account for all of its labels; else None."""
    if not vals or not parts(vals[0]):
        return None
    size = len(parts(vals[0]))
    for v in vals:
        own = parts(v)
        if own is None or len(own) != size or not _covered(v, own):
            return None
    return tuple(join(*(parts(v)[i] for v in vals)) for i in range(size))


def _covered(v: V, parts: tuple[V, ...]) -> bool:
    covered: set[str] = set()
    for part in parts:
        covered.update(part.labels)
    return covered >= set(v.labels)


def _same_const(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - exotic constants compare as different
        return False


def combine(vals: list[V], *, drop_fine_if_aggregates: bool = True) -> V:
    """Data dependence of an arithmetic/library result on its operands (objects not carried)."""
    carriers = [v for v in vals if v.labels]
    if not carriers:
        return EMPTY
    labels: dict[str, Chain] = {}
    agg_with_labels = sum(1 for v in carriers if v.agg)
    drop_fine = drop_fine_if_aggregates and agg_with_labels >= 2
    for v in carriers:
        for k, c in v.labels.items():
            if drop_fine and k in FINE:
                continue
            if k in IDENTITY_ONLY:
                continue
            if k not in labels:
                labels[k] = c
    return V(labels, agg=any(v.agg for v in carriers))


SIG_LABELS = frozenset(
    {
        VALPATH,
        TRAINPATH,
        VAL,
        TRAIN,
        TOK,
        TGT,
        TMIX,
        DIST,
        ATT,
        TKEY,
        TLUT,
        TEQ,
        GATE,
        STATE,
        SEL,
        LOCALPARAM,
        OPT,
        BLEND,
        TDIST,
    }
)


def sig(v: V) -> tuple:
    """A coarse hashable summary of a value, for memoizing call contexts."""
    c = v.const if (v.const is True or v.const is False or v.const is None) else "?"
    f = v.form
    form = None if f is None else ("next" if (f[0] >= 1 and f[1] and not f[2]) else "pos")
    labels = frozenset(k for k in v.labels if k in SIG_LABELS)
    items = tuple(sig(i) for i in v.items) if v.items is not None and len(v.items) <= 4 else None
    return (labels, v.objs, form, c, v.agg, items)
