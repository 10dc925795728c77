"""Decide C3/C4 from a rerun's trace (events written by bootstrap/pgolf_trace.py).

For every final metric line the script printed (``<label> val_loss:… val_bpb:…``), the scores that
make up its number are found in the trace window since the previous such line: the chunk sets
that left the tensor world (``.item()``, ``float()``, formatting) there, narrowed to the one whose
value reproduces the printed val_loss when there is one. From those committed scores:

* C4 (DYN401): every position enters the number exactly once (one score event, no element
  combining several scores), no other complete scoring of the same positions left the tensor
  world in the same window (re-scoring, best-of-k), and (warning) no position is missing;
* C3 (DYN301): no update — optimizer step, gradient-driven parameter change, or a cache write
  whose data later reached a score — used a position before that position's committed score.
  Positions known in advance (position 0, the BOS tokens the harness inserted) are exempt;
* normalization (DYN201): at probe positions, the committed score equals the negative log of an
  observed normalized distribution's entry for the target (proof either way when it matches an
  observed row; "unverified" when the score was computed by ops the trace does not see).

Evidence is kept as event sequence numbers, position ranges and the submission's file:line.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXIT_KINDS = {"item", "float", "int", "index", "tolist", "format"}
MATCH_ABS, MATCH_REL = 1e-4, 1e-4  # committed score vs an observed row entry (float32 compute)
NORM_TOL = 1e-3  # |sum - 1| or |logsumexp| of a row that counts as normalized
ALTERNATIVE_COVERAGE = 0.9  # another exit covering this much of the reported positions = a re-scoring


def _arr(obj) -> np.ndarray | None:
    if not obj:
        return None
    a = np.frombuffer(base64.b64decode(obj["b64"]), dtype=np.dtype(obj["dtype"]))
    return a.reshape(obj.get("shape") or a.shape)


@dataclass
class Chunk:
    id: int
    seq: int
    pos: np.ndarray
    sev: np.ndarray
    mult: np.ndarray | None
    values: dict[int, float]  # position -> value (only where recorded)
    where: dict


@dataclass
class Trace:
    events: int = 0
    scores: dict[int, dict] = field(default_factory=dict)
    chunks: dict[int, Chunk] = field(default_factory=dict)
    uses: list[dict] = field(default_factory=list)
    backwards: dict[int, dict] = field(default_factory=dict)
    updates: list[dict] = field(default_factory=list)
    writes: dict[int, dict] = field(default_factory=dict)
    used_writes: dict[int, int] = field(default_factory=dict)  # write id -> seq of first score reading it
    # update seq -> seq at which nothing in Python held its parameters any more (a scratch optimizer)
    discarded: dict[int, dict] = field(default_factory=dict)
    probes: dict[int, list[dict]] = field(default_factory=dict)  # score id -> probe records
    lines: list[dict] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    torn_lines: int = 0


def load_trace(path: Path, max_events: int = 5_000_000) -> Trace:
    tr = Trace()
    if not Path(path).is_file():
        return tr
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if tr.events >= max_events:
                break
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                tr.torn_lines += 1
                continue
            tr.events += 1
            kind = ev.get("ev")
            if kind == "score":
                tr.scores[ev["id"]] = ev
                for w in ev.get("marks", []):
                    tr.used_writes.setdefault(w, ev["seq"])
            elif kind == "chunk":
                pos = _arr(ev.get("pos"))
                pos = pos.astype(np.int64) if pos is not None else np.zeros(0, np.int64)
                sev = _arr(ev.get("sev"))
                sev = sev.astype(np.int64) if sev is not None else np.full(pos.shape, -1, np.int64)
                mult = _arr(ev.get("mult"))
                values = {}
                vidx, vals = _arr(ev.get("vidx")), _arr(ev.get("vals"))
                if vidx is not None and vals is not None:
                    values = {int(pos[i]): float(v) for i, v in zip(vidx, vals)}
                tr.chunks[ev["id"]] = Chunk(ev["id"], ev["seq"], pos, sev, mult.astype(np.int64) if mult is not None
                                            else None, values, _where(ev))
            elif kind == "use":
                tr.uses.append(ev)
            elif kind == "backward":
                tr.backwards[ev["id"]] = ev
            elif kind == "update":
                tr.updates.append(ev)
            elif kind == "discarded":
                for u in ev.get("updates", []):
                    tr.discarded[u] = ev
            elif kind == "write":
                tr.writes[ev["id"]] = ev
            elif kind == "probe":
                tr.probes.setdefault(ev["score"], []).append(ev)
            elif kind == "line":
                tr.lines.append(ev)
            elif kind == "start":
                tr.started = True
            elif kind == "end":
                tr.ended = True
    return tr


def _where(ev: dict) -> dict:
    return {k: ev[k] for k in ("file", "line", "snippet", "func") if k in ev}


def ranges(positions: np.ndarray, limit: int = 8) -> str:
    """'5-9, 12, 40-47 (+3 more ranges)' for a sorted set of positions."""
    p = np.unique(np.asarray(positions, dtype=np.int64))
    if not p.size:
        return "none"
    breaks = np.nonzero(np.diff(p) != 1)[0]
    starts = np.concatenate([[p[0]], p[breaks + 1]])
    ends = np.concatenate([p[breaks], [p[-1]]])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts[:limit], ends[:limit])]
    more = len(starts) - limit
    return ", ".join(parts) + (f" (+{more} more ranges)" if more > 0 else "")


@dataclass
class Violation:
    kind: str  # c3_update | c3_update_discarded | c3_write | c4_multiple | c4_alternative | c4_missing | norm_unnormalized
    message: str
    seq: int | None = None
    positions: str = ""
    count: int = 0
    where: dict = field(default_factory=dict)  # file/line/snippet of the offending event
    related: list[dict] = field(default_factory=list)  # other events (score that committed, backward ...)


@dataclass
class LineAnalysis:
    label: str
    text: str
    seq: int | None
    val_loss: float | None
    reported: bool = False
    attribution: str = "none"  # value | window | none
    committed_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    commit_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per position (-1 none)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per position
    raw_values: dict[int, float] = field(default_factory=dict)  # as recorded at the reductions
    values: dict[int, float] = field(default_factory=dict)  # committed per-position NLL (nats), when known
    values_kind: str = "unknown"  # nll | log-likelihood | probability | unknown
    n_scored: int = 0
    n_bos_scored: int = 0
    mean_of_values: float | None = None
    violations: list[Violation] = field(default_factory=list)
    normalization: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "label": self.label, "reported": self.reported, "val_loss": self.val_loss, "attribution": self.attribution,
            "n_scored": self.n_scored, "n_bos_scored": self.n_bos_scored, "mean_of_values": self.mean_of_values,
            "values_kind": self.values_kind,
            "violations": [{"kind": v.kind, "message": v.message, "seq": v.seq, "positions": v.positions,
                            "count": v.count, "where": v.where} for v in self.violations],
            "normalization": self.normalization,
        }


# ---------------------------------------------------------------------------------------------


def _chunks_positions(tr: Trace, chunk_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, score event id, multiplicity) of every element of these chunks."""
    pos, sev, mult = [], [], []
    for cid in chunk_ids:
        c = tr.chunks.get(cid)
        if c is None:
            continue
        pos.append(c.pos)
        sev.append(c.sev)
        mult.append(c.mult if c.mult is not None else np.ones(c.pos.shape, np.int64))
    if not pos:
        z = np.zeros(0, np.int64)
        return z, z, z
    return np.concatenate(pos), np.concatenate(sev), np.concatenate(mult)


def _exit_uses(tr: Trace, lo: int, hi: int) -> list[dict]:
    return [u for u in tr.uses if u.get("kind") in EXIT_KINDS and lo < u["seq"] <= hi]


def _attribute(tr: Trace, exits: list[dict], val_loss: float | None, text_value: str | None):
    """The exit whose chunks make the printed number: by the formatted text, then by value."""
    if text_value:
        by_text = [u for u in exits if u.get("kind") == "format" and u.get("text") == text_value]
        if by_text:
            return by_text[-1], "value"
    if val_loss is not None:
        decimals = len(text_value.split(".")[1]) if text_value and "." in text_value else 8
        tol = 0.5 * 10.0 ** (-decimals) + 1e-12
        matches = []
        for u in exits:
            v = u.get("value")
            if v is None or not math.isfinite(v):
                continue
            _, _, mult = _chunks_positions(tr, u["chunks"])
            n = int(mult.sum()) if mult.size else 0
            if abs(v - val_loss) <= tol * max(1.0, abs(val_loss)) or (n and abs(v / n - val_loss) <= tol * 1.01):
                matches.append(u)
        if matches:
            return matches[-1], "value"
    return None, "window"


def analyze_line(tr: Trace, label: str, text: str, seq: int | None, prev_seq: int, val_loss: float | None,
                 text_value: str | None, initial: np.ndarray, n_tokens: int) -> LineAnalysis:
    la = LineAnalysis(label=label, text=text, seq=seq, val_loss=val_loss)
    hi = seq if seq is not None else 1 << 62
    exits = _exit_uses(tr, prev_seq, hi)
    chosen, how = _attribute(tr, exits, val_loss, text_value)
    if chosen is None:
        # a line may print a number that left the tensor world before the previous line did (two
        # lines formatting one val_loss: "final_int8_zlib_roundtrip" then "..._exact"): look back
        # through every earlier exit, by text or value only, never by window
        earlier, how_earlier = _attribute(tr, _exit_uses(tr, -1, prev_seq), val_loss, text_value)
        if earlier is not None:
            chosen, how, exits = earlier, how_earlier, [earlier]
    if chosen is not None:
        chunk_ids = set(chosen["chunks"])
    else:
        chunk_ids = {c for u in exits for c in u["chunks"]}
    la.attribution = how if chunk_ids else "none"
    if not chunk_ids:
        return la
    pos, sev, mult = _chunks_positions(tr, sorted(chunk_ids))
    keep = pos >= 0
    pos, sev, mult = pos[keep], sev[keep], mult[keep]
    size = max(n_tokens, int(pos.max()) + 1 if pos.size else 0)
    # one count per distinct (position, score event); an element combining k scores counts k
    pairs = np.unique(np.stack([pos, sev]), axis=1) if pos.size else np.zeros((2, 0), np.int64)
    counts = np.bincount(pairs[0], minlength=size) if pairs.size else np.zeros(size, np.int64)
    extra = np.zeros(size, np.int64)
    np.add.at(extra, pos, mult - 1)
    counts = counts + extra
    score_seq = np.array([tr.scores.get(int(s), {}).get("seq", -1) for s in sev], dtype=np.int64)
    commit = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(commit, pos, np.where(score_seq >= 0, score_seq, np.iinfo(np.int64).max))
    commit[commit == np.iinfo(np.int64).max] = -1
    la.counts, la.commit_seq = counts, commit
    la.committed_pos = np.nonzero(counts > 0)[0]
    la.n_scored = int(la.committed_pos.size)
    is_initial = np.zeros(size, dtype=bool)
    is_initial[initial[initial < size]] = True
    la.n_bos_scored = int((counts > 0)[is_initial].sum())
    for cid in chunk_ids:
        c = tr.chunks.get(cid)
        if c is not None:
            la.raw_values.update(c.values)
    if la.raw_values and len(la.raw_values) >= la.n_scored > 0:
        la.mean_of_values = float(np.mean([la.raw_values[int(p)] for p in la.committed_pos]))
    la.values_kind, la.values = _calibrate(la.raw_values, la.mean_of_values, val_loss)

    _check_c4(tr, la, exits, chosen, chunk_ids, is_initial, n_tokens)
    _check_c3(tr, la, is_initial)
    events_of: dict[int, set] = {}
    for p_, s_ in zip(pos.tolist(), sev.tolist()):
        events_of.setdefault(p_, set()).add(s_)
    # every score computed in this evaluation's window: an element combining several scores
    # (min(nll_a, nll_b)) keeps only one event id, but its value may come from the other
    line_events = {int(s_) for s_ in np.unique(sev)} | {
        sid for sid, sc in tr.scores.items() if prev_seq < sc["seq"] <= hi}
    _check_normalization(tr, la, events_of, line_events)
    return la


def _calibrate(raw: dict[int, float], mean: float | None, val_loss: float | None) -> tuple[str, dict[int, float]]:
    """What the values recorded at the reductions are, judged against the printed val_loss: the
    per-token NLL itself, its negative (a log-likelihood summed and negated later), or a probability.
    Returns (kind, per-position NLL); an empty dict when it cannot be told."""
    if mean is None or val_loss is None or not raw:
        return "unknown", {}
    tol = 1e-3 * max(1.0, abs(val_loss))
    if abs(mean - val_loss) <= tol:
        return "nll", dict(raw)
    if abs(-mean - val_loss) <= tol:
        return "log-likelihood", {p: -v for p, v in raw.items()}
    vals = np.array(list(raw.values()))
    if vals.size and (vals > 0).all() and (vals <= 1 + 1e-6).all():
        nll = -np.log(vals)
        if abs(float(nll.mean()) - val_loss) <= tol:
            return "probability", {p: float(-math.log(v)) for p, v in raw.items()}
    return "unknown", {}


def _check_c4(tr, la, exits, chosen, chunk_ids, is_initial, n_tokens) -> None:
    multi = np.nonzero(la.counts > 1)[0]
    if multi.size:
        p0 = int(multi[0])
        evs = sorted({int(c.sev[i]) for c in (tr.chunks[cid] for cid in chunk_ids if cid in tr.chunks)
                      for i in np.nonzero(c.pos == p0)[0]})
        related = [dict(_where(tr.scores[e]), seq=tr.scores[e]["seq"]) for e in evs if e in tr.scores]
        combined = [int(c.mult[i]) for c in (tr.chunks[cid] for cid in chunk_ids if cid in tr.chunks)
                    if c.mult is not None for i in np.nonzero(c.pos == p0)[0]]
        how = (f"an element combines {max(combined)} scores of it (e.g. an element-wise min over scorings)"
               if combined and max(combined) > 1 else f"score events {evs}")
        la.violations.append(Violation(
            "c4_multiple",
            f"{multi.size} positions enter '{la.label}' more than once (up to {int(la.counts.max())} scores each); "
            f"position {p0}: {how}",
            positions=ranges(multi), count=int(multi.size), related=related,
            where=related[-1] if related else {}))
    # another complete scoring of the same positions left the tensor world in this window
    mine = set(la.committed_pos.tolist())
    my_events = {int(s) for cid in chunk_ids if cid in tr.chunks for s in np.unique(tr.chunks[cid].sev)}
    if mine and chosen is not None:
        for u in exits:
            if u is chosen or set(u["chunks"]) <= chunk_ids:
                continue
            pos, sev, _ = _chunks_positions(tr, u["chunks"])
            other = pos[(pos >= 0) & ~np.isin(sev, list(my_events))]
            overlap = np.intersect1d(np.unique(other), la.committed_pos)
            if overlap.size >= ALTERNATIVE_COVERAGE * len(mine):
                la.violations.append(Violation(
                    "c4_alternative",
                    f"'{la.label}' is one of several complete scorings of the same {overlap.size} positions in one "
                    f"evaluation: another scoring left the tensor world at event {u['seq']} "
                    f"(value {u.get('value')}) — re-scoring or best-of-k selection",
                    seq=u["seq"], positions=ranges(overlap), count=int(overlap.size), where=_where(u),
                    related=[dict(_where(chosen), seq=chosen["seq"], role="reported")]))
                break
    expected = np.nonzero(~is_initial[1:n_tokens])[0] + 1 if n_tokens > 1 else np.zeros(0, np.int64)
    missing = expected[la.counts[expected] == 0] if expected.size else expected
    if missing.size and la.n_scored:
        la.violations.append(Violation(
            "c4_missing", f"'{la.label}' covers {expected.size - missing.size} of {expected.size} scoreable "
            f"positions; {missing.size} never enter it", positions=ranges(missing), count=int(missing.size)))


def _update_positions(tr: Trace, u: dict) -> np.ndarray:
    parts = []
    for bid in u.get("bw", []):
        b = tr.backwards.get(bid)
        if b is None:
            continue
        if b.get("chunks"):
            pos, _, _ = _chunks_positions(tr, b["chunks"])
            parts.append(pos[pos >= 0])
        elif b.get("pos"):
            parts.append(_arr(b["pos"]).astype(np.int64))
    if u.get("pos"):
        parts.append(_arr(u["pos"]).astype(np.int64))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _check_c3(tr: Trace, la: LineAnalysis, is_initial: np.ndarray) -> None:
    commit = la.commit_seq
    candidates = [(u, "c3_update") for u in tr.updates]
    for wid, first_read in tr.used_writes.items():
        w = tr.writes.get(wid)
        if w is not None:
            candidates.append((dict(w, kind="cache_write", first_read=first_read), "c3_write"))
    reported_lo = int(commit[commit >= 0].min()) if (commit >= 0).any() else None
    found: dict[str, list] = {"c3_update": [], "c3_update_discarded": [], "c3_write": []}
    for u, kind in candidates:
        if la.seq is not None and u["seq"] > la.seq:
            continue  # after this evaluation finished: cannot have influenced it
        used = _update_positions(tr, u)
        if not used.size:
            continue
        used = used[used < len(commit)] if len(commit) else used
        init = is_initial[used] if used.size and len(is_initial) else np.zeros(used.shape, bool)
        c = commit[used] if len(commit) else np.full(used.shape, -1)
        bad = used[~init & ((c < 0) | (c > u["seq"]))]
        if bad.size:
            gone = tr.discarded.get(u["seq"]) if kind == "c3_update" else None
            if gone is not None and reported_lo is not None and gone["seq"] < reported_lo:
                kind = "c3_update_discarded"  # its parameters were thrown away before this number began
            found[kind].append((u, bad))
    for kind, items in found.items():
        if not items:
            continue
        u, bad = items[0]
        all_bad = np.unique(np.concatenate([b for _, b in items]))
        what = {"optimizer_step": f"optimizer step ({u.get('optimizer', 'optimizer')})",
                "param_inplace": f"in-place parameter change ({u.get('op')})",
                "cache_write": f"write into a table ({u.get('op')}) later read by a score"}.get(u.get("kind"), "update")
        never = int((la.commit_seq[bad] < 0).sum()) if len(la.commit_seq) else bad.size
        related = []
        for bid in u.get("bw", [])[:3]:
            b = tr.backwards.get(bid)
            if b:
                related.append(dict(_where(b), seq=b["seq"], role="backward"))
        p0 = int(bad[0])
        if p0 < len(la.commit_seq) and la.commit_seq[p0] >= 0:
            sc = next((s for s in tr.scores.values() if s["seq"] == la.commit_seq[p0]), None)
            if sc:
                related.append(dict(_where(sc), seq=sc["seq"], role=f"committed score of position {p0}"))
        msg = (f"{len(items)} update(s) used validation positions before '{la.label}' scored them; first: {what} "
               f"at event {u['seq']} used {bad.size} unscored positions ({never} never scored in this number)")
        if reported_lo is not None:
            msg += f"; this evaluation's first committed score is event {reported_lo}"
        if kind == "c3_update_discarded":
            gone = tr.discarded[u["seq"]]
            msg += (f". Its parameters ({gone.get('params', '?')} tensors, {gone.get('numel', '?'):,} values) were "
                    f"discarded at event {gone['seq']}, before that first score: no module, optimizer or variable "
                    f"held them and their values were never read out (no state_dict, no torch.save) - a scratch "
                    f"warm-up optimizer? - so they computed none of its scores; a copy made another way (merged "
                    f"into the model by hand) would not show: a reviewer should check that nothing of them is kept")
        la.violations.append(Violation(kind, msg, seq=u["seq"], positions=ranges(all_bad), count=int(all_bad.size),
                                       where=_where(u), related=related))


def _check_normalization(tr: Trace, la: LineAnalysis, events_of: dict[int, set], line_events: set[int]) -> None:
    verified, unverified, broken = [], [], []
    probe_rows: dict[int, list] = {}
    for sid in line_events:
        for rec in tr.probes.get(sid, []):
            for i, q in enumerate(rec["pos"]):
                probe_rows.setdefault(q, []).append((rec, i))
    for p, v in la.values.items():
        rows = probe_rows.get(p, [])
        if not rows:
            continue
        # rows of the score events that produced this element first, then the line's others
        mine = events_of.get(p, set())
        rows.sort(key=lambda r: r[0]["score"] not in mine)
        status, detail = "unverified", None
        for rec, i in rows:
            x, lse, s, mn = rec["picked"][i], rec["lse"][i], rec["sum"][i], rec["min"][i]
            tol = MATCH_ABS + MATCH_REL * abs(v)
            interps = [("log-probabilities", -x, abs(lse) <= NORM_TOL, f"logsumexp {lse:.4g}")]
            if not rec.get("rows_are_logprobs"):
                if x > 0:
                    interps.append(("probabilities", -math.log(x), mn >= 0 and abs(s - 1) <= NORM_TOL, f"sum {s:.4g}"))
                interps.append(("logits", lse - x, True, "softmax"))
            matching = [t for t in interps if abs(t[1] - v) <= tol]
            if any(t[2] for t in matching):
                status = "verified"
                break
            if matching and detail is None:
                status, detail = "unnormalized", (rec, matching[0])
        if status == "verified":
            verified.append(p)
        elif status == "unnormalized":
            broken.append((p, v, detail))
        else:
            unverified.append(p)
    la.normalization = {"verified": len(verified), "unverified": len(unverified), "unnormalized": len(broken),
                        "unverified_positions": sorted(unverified)[:64], "values_kind": la.values_kind}
    if broken:
        p, v, (rec, (name, _, _, stat)) = broken[0]
        sc = tr.scores.get(rec["score"], {})
        la.violations.append(Violation(
            "norm_unnormalized",
            f"at {len(broken)} probe positions the committed score of '{la.label}' is -log of an entry of a row "
            f"that is not normalized over the vocabulary (position {p}: score {v:.4f} nats read as {name}, {stat})",
            seq=sc.get("seq"), positions=ranges(np.array([b[0] for b in broken])), count=len(broken),
            where=_where(sc)))


@dataclass
class TraceReport:
    lines: list[LineAnalysis]
    reported: LineAnalysis | None
    stats: dict

    def summary(self) -> dict:
        return {"lines": [la.summary() for la in self.lines],
                "reported": self.reported.label if self.reported else None, "stats": self.stats}


def analyze(tr: Trace, metric_lines: list[dict], initial: np.ndarray, n_tokens: int) -> TraceReport:
    """``metric_lines``: the script's metric lines in stdout order, each {label, text, val_loss,
    val_loss_text, reported, final}. Every one ends an evaluation window; the final ones are
    analyzed. Lines are matched to the trace's record of stdout by their text."""
    line_events = list(tr.lines)
    analyses: list[LineAnalysis] = []
    cursor, prev = 0, 0
    for fl in metric_lines:
        seq = None
        for j in range(cursor, len(line_events)):
            if line_events[j].get("text", "").strip() == fl["text"].strip():
                seq, cursor = line_events[j]["seq"], j + 1
                break
        if fl.get("final", True):
            la = analyze_line(tr, fl["label"], fl["text"], seq, prev, fl.get("val_loss"), fl.get("val_loss_text"),
                              initial, n_tokens)
            la.reported = bool(fl.get("reported"))
            analyses.append(la)
        if seq is not None:
            prev = seq
    reported = next((la for la in analyses if la.reported), analyses[-1] if analyses else None)
    stats = {"events": tr.events, "scores": len(tr.scores), "chunks": len(tr.chunks), "uses": len(tr.uses),
             "backwards": len(tr.backwards), "updates": len(tr.updates), "writes": len(tr.writes),
             "writes_read_by_scores": len(tr.used_writes), "complete": tr.started and tr.ended,
             "torn_lines": tr.torn_lines}
    return TraceReport(lines=analyses, reported=reported, stats=stats)
