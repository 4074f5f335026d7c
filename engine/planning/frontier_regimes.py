"""The crossing frontier traced regime by regime: sorted slope arrays, not one step a breakpoint.

The flow network of ``engine.planning.frontier_network`` (source -> kind -> cell -> segment ->
sink) is augmented by successive longest paths. Flow into a kind or a segment never falls
along the way, so once a kind budget or a segment cap is reached it stays reached: the limits
reached form a growing set, and between two of them being reached (a *regime*) the frontier
is a composition of the cells' concave curves that numpy computes at once:

* no kind budget reached: every cell of a segment below its cap moves forward alone, so the
  regime's curve is the merge (by slope) of those cells' remaining curves;
* kind ``k``'s budget reached (the other kind ``o`` free): a unit of budget either goes to an
  ``o`` cell of a segment below its cap (merge ``O``), or moves ``k`` spend out of a segment
  at its cap (its ``o`` cell forward, its ``k`` cell backward: the *sum* of the two curves at
  the same parameter, merged over those segments: ``H``) into a ``k`` cell of a segment below
  its cap (merge ``K``): the regime's curve is ``O`` merged with ``K + H``;
* both kinds' budgets reached: the frontier ends.

The first limit a regime's curve reaches (a kind budget, a segment cap, both linear in the
pieces) cuts it, exactly, inside a piece; the next regime starts there. A sum of two concave
curves has the union of their breakpoints; a merge is one sort. The number of regimes is at
most one more than the number of limits, so the work is ``O(r n log n)`` for ``n`` hull
increments in the network and ``r`` limits reached, whatever the number of breakpoints.

Minimums (cells', whole segments') are met first: each segment's cheapest-to-meet part is the
best prefix of the merge of its cells' curves. Where that would break a kind budget (the
minimums themselves cross), :func:`trace_regimes` returns None and the caller steps the
network (``frontier_network.trace_network``), which handles every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.errors import CancelledError
from engine.planning.frontier_network import Network
from engine.planning.frontier_pieces import BoolArray, FloatArray, IntArray, Pieces
from engine.planning.progress import Progress


@dataclass
class Chain:
    """A concave curve as pieces of decreasing slope; each piece moves up to three cells
    (``cell`` -1 when unused) by ``sign * length``."""

    length: FloatArray
    slope: FloatArray
    cell: IntArray  # [pieces, slots], local cell indices
    sign: FloatArray  # [pieces, slots]
    part: FloatArray  # [pieces, slots]: each slot's share of the slope

    def head(self, count: int) -> Chain:
        return Chain(self.length[:count], self.slope[:count], self.cell[:count],
                     self.sign[:count], self.part[:count])

    @property
    def size(self) -> int:
        return int(self.length.size)


def _empty(slots: int = 1) -> Chain:
    return Chain(np.zeros(0), np.zeros(0), np.zeros((0, slots), dtype=np.int64),
                 np.zeros((0, slots)), np.zeros((0, slots)))


def _pad(c: Chain, slots: int) -> Chain:
    extra = slots - c.cell.shape[1]
    if extra <= 0:
        return c
    return Chain(c.length, c.slope,
                 np.hstack([c.cell, np.full((c.size, extra), -1, dtype=np.int64)]),
                 np.hstack([c.sign, np.zeros((c.size, extra))]),
                 np.hstack([c.part, np.zeros((c.size, extra))]))


def merge(chains: list[Chain]) -> Chain:
    """Sup-convolution: the pieces of every chain, by decreasing slope (each chain's pieces
    keep their order: they are already decreasing)."""
    chains = [c for c in chains if c.size]
    if not chains:
        return _empty()
    slots = max(c.cell.shape[1] for c in chains)
    chains = [_pad(c, slots) for c in chains]
    if len(chains) == 1:
        return chains[0]
    slope = np.concatenate([c.slope for c in chains])
    order = np.argsort(-slope, kind="stable")
    return Chain(np.concatenate([c.length for c in chains])[order], slope[order],
                 np.concatenate([c.cell for c in chains])[order],
                 np.concatenate([c.sign for c in chains])[order],
                 np.concatenate([c.part for c in chains])[order])


def add(a: Chain, b: Chain, tol: float) -> Chain:
    """Both curves moved by the same amount: breakpoints the union of theirs, slopes summed,
    as far as the shorter one goes."""
    if not a.size or not b.size:
        return _empty(a.cell.shape[1] + b.cell.shape[1])
    ca, cb = np.cumsum(a.length), np.cumsum(b.length)
    total = min(float(ca[-1]), float(cb[-1]))
    cuts = np.union1d(ca[ca < total], cb[cb < total])
    ends = np.append(cuts, total)
    starts = np.concatenate(([0.0], ends[:-1]))
    length = ends - starts
    keep = length > tol
    starts, length = starts[keep], length[keep]
    ia = np.minimum(np.searchsorted(ca, starts, side="right"), a.size - 1)
    ib = np.minimum(np.searchsorted(cb, starts, side="right"), b.size - 1)
    return Chain(length, a.slope[ia] + b.slope[ib], np.hstack([a.cell[ia], b.cell[ib]]),
                 np.hstack([a.sign[ia], b.sign[ib]]), np.hstack([a.part[ia], b.part[ib]]))


def _arcs(net: Network, j: int) -> tuple[FloatArray, FloatArray]:
    off = int(net.bp_off[j])
    n = int(net.bp_off[j + 1]) - off - 1
    return net.bp[off: off + n + 1], net.slope[off - j: off - j + n]


def forward(net: Network, j: int, x: float, top: float, tol: float) -> Chain:
    """Cell ``j``'s curve from ``x`` up to ``top`` (at most the end of its curve)."""
    bp, sl = _arcs(net, j)
    top = min(top, float(bp[-1]))
    if sl.size == 0 or x >= top - tol:
        return _empty()
    p = min(max(int(np.searchsorted(bp, x, side="right")) - 1, 0), sl.size - 1)
    q = min(max(int(np.searchsorted(bp, top, side="left")), p + 1), sl.size)
    ends = np.minimum(bp[p + 1: q + 1], top)
    length = ends - np.concatenate(([x], ends[:-1]))
    slope = sl[p:q]
    keep = length > tol
    n = int(keep.sum())
    return Chain(length[keep], slope[keep], np.full((n, 1), j, dtype=np.int64), np.ones((n, 1)),
                 slope[keep][:, None])


def backward(net: Network, j: int, x: float, floor: float, tol: float) -> Chain:
    """Cell ``j`` moved down from ``x`` to ``floor``: each unit returns minus its slope."""
    bp, sl = _arcs(net, j)
    if sl.size == 0 or x <= floor + tol:
        return _empty()
    q = min(max(int(np.searchsorted(bp, x, side="left")) - 1, 0), sl.size - 1)
    r = min(max(int(np.searchsorted(bp, floor, side="right")) - 1, 0), q)
    inner = bp[r + 1: q + 1][::-1]  # bp[q], ..., bp[r + 1]
    points = np.concatenate(([x], inner, [floor]))
    length = points[:-1] - points[1:]
    slope = -sl[r: q + 1][::-1]
    keep = length > tol
    n = int(keep.sum())
    return Chain(length[keep], slope[keep], np.full((n, 1), j, dtype=np.int64),
                 -np.ones((n, 1)), slope[keep][:, None])


def _integral(net: Network, j: int, upto: float) -> float:
    """Net equity of cell ``j``'s curve from 0 to ``upto``."""
    bp, sl = _arcs(net, j)
    widths = np.clip(np.minimum(bp[1:], upto) - bp[:-1], 0.0, None)
    return float(widths @ sl)


class _Out:
    """Pieces as they are found, in frontier order."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.parts: list[tuple[FloatArray, FloatArray, bool, IntArray, IntArray, FloatArray]] = []
        self.n = 0

    def chain(self, c: Chain, count: int, head: float, forced: bool) -> None:
        """The first ``count`` pieces of ``c``, then ``head`` of the next one."""
        length, slope = c.length[:count], c.slope[:count]
        cell, sign = c.cell[:count], c.sign[:count]
        if head > 0.0:
            length = np.append(length, head)
            slope = np.append(slope, c.slope[count])
            cell = np.vstack([cell, c.cell[count: count + 1]])
            sign = np.vstack([sign, c.sign[count: count + 1]])
        if length.size == 0:
            return
        used = cell >= 0
        piece = np.broadcast_to(np.arange(length.size)[:, None], cell.shape)[used]
        moved, delta = cell[used], (sign * length[:, None])[used]
        if any(((cell[:, a] == cell[:, b]) & (cell[:, a] >= 0)).any()
               for a in range(cell.shape[1]) for b in range(a)):
            # a cell moved both ways by one piece (see ``_regime``): its net move only
            key, inverse = np.unique(piece * self.net.cells.size + moved, return_inverse=True)
            piece, moved = key // self.net.cells.size, key % self.net.cells.size
            delta = np.bincount(inverse, weights=delta, minlength=key.size).astype(np.float64)
        self.parts.append((length, length * slope, forced, self.n + piece,
                           self.net.cells[moved], delta))
        self.n += length.size

    def single(self, j: int, dc: float, dv: float, forced: bool) -> None:
        self.parts.append((np.array([dc]), np.array([dv]), forced, np.array([self.n]),
                           self.net.cells[[j]], np.array([dc])))
        self.n += 1

    def pieces(self) -> Pieces:
        if not self.parts:
            return Pieces(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                          np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        dc = np.concatenate([p[0] for p in self.parts])
        return Pieces(
            dc=dc,
            dv=np.concatenate([p[1] for p in self.parts]),
            forced=np.concatenate([np.full(p[0].size, p[2]) for p in self.parts]),
            cell=np.full(dc.size, -1, dtype=np.int64),
            order=np.arange(dc.size, dtype=np.int64),
            m_piece=np.concatenate([p[3] for p in self.parts]).astype(np.int64),
            m_cell=np.concatenate([p[4] for p in self.parts]).astype(np.int64),
            m_delta=np.concatenate([p[5] for p in self.parts]),
        )


def _minimums(net: Network, x: FloatArray, out: _Out, tol: float) -> bool:
    """Meet every cell's and segment's minimum at the least value lost; False when that is
    not a per-segment matter (a kind budget would be broken, or a minimum cannot be met)."""
    m = x.size
    for j in range(m):  # a loop over cells
        if net.lo[j] > tol:
            if net.lo[j] > net.hi[j] + tol:
                return False
            x[j] = net.lo[j]
            out.single(j, float(net.lo[j]), _integral(net, j, float(net.lo[j])), True)
    for g in np.flatnonzero(net.seg_min > tol):
        mine = np.flatnonzero(net.seg == g)
        need = float(net.seg_min[g] - x[mine].sum())
        if need <= tol:
            continue
        c = merge([forward(net, int(j), float(x[j]), float(net.hi[j]), tol) for j in mine])
        cum = np.cumsum(c.length)
        if c.size == 0 or cum[-1] < need - tol:
            return False
        count = int(np.searchsorted(cum, need - tol, side="left"))
        head = need - (float(cum[count - 1]) if count else 0.0)
        if count < c.size and head >= c.length[count] - tol:
            count, head = count + 1, 0.0
        head = max(head, 0.0) if count < c.size else 0.0
        out.chain(c, count, head, True)
        x += _moved(c, count, head, m)
    y = np.bincount(net.kind, weights=x, minlength=2)
    z = np.bincount(net.seg, weights=x, minlength=net.seg_cap.size)
    return bool((y <= net.kind_cap + tol).all() and (z <= net.seg_cap + tol).all())


def _moved(c: Chain, count: int, head: float, m: int) -> FloatArray:
    length = c.length[:count]
    cell, sign = c.cell[:count], c.sign[:count]
    if head > 0.0:
        length = np.append(length, head)
        cell = np.vstack([cell, c.cell[count: count + 1]])
        sign = np.vstack([sign, c.sign[count: count + 1]])
    used = cell >= 0
    moved: FloatArray = np.bincount(cell[used], weights=(sign * length[:, None])[used],
                                    minlength=m).astype(np.float64)
    return moved


def _regime(net: Network, x: FloatArray, tight_kind: IntArray, capped: BoolArray,
            bound: BoolArray, tol: float) -> tuple[Chain, list[tuple[int, int]]]:
    """The regime's curve, and (segment, its ``o`` cell) for each segment held at its minimum
    whose ``o`` cell only moves by shifting the kind budget's spend out of it.

    A ``k`` cell of such a segment is in ``K`` (forward) and in ``H`` (backward): a piece may
    move it both ways, which by concavity is worth no more than its net move, so the curve
    is still the regime's optimum (never above it)."""
    m = x.size
    grow = ~capped[net.seg]
    if tight_kind.size == 0:
        return merge([forward(net, int(j), float(x[j]), float(net.hi[j]), tol)
                      for j in np.flatnonzero(grow)]), []
    k = int(tight_kind[0])
    o = 1 - k
    where = {(int(net.kind[j]), int(net.seg[j])): j for j in range(m)}
    shifts, held = [], []
    for g in np.flatnonzero(capped | bound):  # k spend out of a segment, o spend in: total kept
        jo, jk = where.get((o, int(g))), where.get((k, int(g)))
        if jo is None or jk is None:
            continue
        shifts.append(add(forward(net, jo, float(x[jo]), float(net.hi[jo]), tol),
                          backward(net, jk, float(x[jk]), float(net.lo[jk]), tol), tol))
        if bound[g]:
            held.append((int(g), jo))
    held_cell = np.zeros(m, dtype=bool)
    held_cell[[jo for _, jo in held]] = True
    other = merge([forward(net, int(j), float(x[j]), float(net.hi[j]), tol)
                   for j in np.flatnonzero(grow & (net.kind == o) & ~held_cell)])
    same = merge([forward(net, int(j), float(x[j]), float(net.hi[j]), tol)
                  for j in np.flatnonzero(grow & (net.kind == k))])
    return merge([other, add(same, merge(shifts), tol)]), held


def _released(net: Network, c: Chain, x: FloatArray, held: list[tuple[int, int]],
              tol: float) -> tuple[int, int]:
    """The first piece before which a segment held at its minimum would rather grow (its ``o``
    cell's next unit beats the piece): (piece, segment), or (c.size, -1)."""
    first, which = c.size, -1
    for g, jo in held:
        rows, slots = np.nonzero((c.cell == jo) & (c.sign > 0))
        moved = float((c.length[rows]).sum())
        tail = forward(net, jo, float(x[jo]) + moved, float(net.hi[jo]), tol)
        after = float(tail.slope[0]) if tail.size else -np.inf
        nxt = np.append(c.part[rows, slots], after)  # o cell's next slope before each piece
        here = nxt[np.searchsorted(rows, np.arange(c.size), side="left")]
        beaten = np.flatnonzero(here > c.slope)
        if beaten.size and int(beaten[0]) < first:
            first, which = int(beaten[0]), g
    return first, which


def _first_limit(net: Network, c: Chain, y: FloatArray, z: FloatArray, tol: float
                 ) -> tuple[int, float, int]:
    """Where ``c`` first reaches a kind budget or a segment cap not yet reached: (whole
    pieces, head of the next, limit id: kind k, or 2 + segment; -1 when none)."""
    used = c.cell >= 0
    piece = np.broadcast_to(np.arange(c.size)[:, None], c.cell.shape)[used]
    cell = c.cell[used]
    delta = (c.sign * c.length[:, None])[used]
    room = np.concatenate([net.kind_cap - y, net.seg_cap - z])
    best = (c.size, 0.0, -1)
    for limit_of in (net.kind[cell], 2 + net.seg[cell]):
        watch = np.isfinite(room[limit_of]) & (room[limit_of] > tol)
        if not watch.any():
            continue
        lid, pc, dl = limit_of[watch], piece[watch], delta[watch]
        order = np.lexsort((pc, lid))
        lid, pc, dl = lid[order], pc[order], dl[order]
        cum = np.cumsum(dl)
        first = np.r_[True, lid[1:] != lid[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(lid.size), 0))
        before = np.concatenate(([0.0], cum))[start]
        run = cum - before
        over = np.flatnonzero(run > room[lid] + tol)
        if over.size == 0:
            continue
        # the first row over its limit within each limit, then the earliest of those
        firsts = over[np.r_[True, lid[over][1:] != lid[over][:-1]]]
        for i in firsts:
            head_frac = (room[lid[i]] - (run[i] - dl[i])) / dl[i]
            head = max(0.0, float(head_frac)) * float(c.length[pc[i]])
            if (int(pc[i]), head) < best[:2]:
                best = (int(pc[i]), head, int(lid[i]))
    return best


def trace_regimes(
    net: Network, tol: float, progress: Progress, should_stop: Callable[[], bool]
) -> Pieces | None:
    """The network's frontier as pieces (like ``trace_network``'s); None when the minimums
    cross the kind budgets (the caller then steps the network)."""
    m = net.cells.size
    out = _Out(net)
    x = np.zeros(m)
    if not _minimums(net, x, out, tol):
        return None
    y = np.bincount(net.kind, weights=x, minlength=2).astype(np.float64)
    z = np.bincount(net.seg, weights=x, minlength=net.seg_cap.size).astype(np.float64)
    total_room = float(net.hi.sum()) or 1.0
    released = np.zeros(z.size, dtype=bool)
    for _ in range(3 * (2 + z.size) + 2):  # each regime reaches or releases one more limit
        if should_stop():
            raise CancelledError("frontier cancelled")
        progress("network", min(1.0, float(x.sum()) / total_room))
        tight_kind = np.flatnonzero(y >= net.kind_cap - tol)
        if tight_kind.size == 2:
            break
        capped = z >= net.seg_cap - tol
        bound = ~capped & ~released & (net.seg_min > tol) & (z <= net.seg_min + tol)
        c, held = _regime(net, x, tight_kind, capped, bound, tol)
        c = c.head(int(np.searchsorted(-c.slope, 0.0, side="left")))  # slopes > 0
        if c.size == 0:
            break
        count, head, limit = _first_limit(net, c, y, z, tol)
        free_at, segment = _released(net, c, x, held, tol) if held else (c.size, -1)
        if free_at < count or (free_at == count and segment >= 0):
            count, head, limit = free_at, 0.0, -2
            released[segment] = True
        out.chain(c, count, head, False)
        moved = _moved(c, count, head, m)
        x += moved
        y += np.bincount(net.kind, weights=moved, minlength=2)
        z += np.bincount(net.seg, weights=moved, minlength=z.size)
        if limit == -1:
            break
        if limit == 0 or limit == 1:
            y[limit] = net.kind_cap[limit]
        elif limit >= 2:
            z[limit - 2] = net.seg_cap[limit - 2]
    else:
        return None
    progress("network", 1.0)
    return out.pieces()


__all__ = ["Chain", "add", "backward", "forward", "merge", "trace_regimes"]
