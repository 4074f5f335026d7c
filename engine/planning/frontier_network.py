"""The frontier where kind budgets cross limits on whole segments: a parametric flow.

Kind budgets and whole-segment limits are not nested, so merging pieces does not respect
both. The cells under such rows form a small flow network (source -> kind -> cell ->
segment -> sink, the kind budgets and segment limits as arc capacities) whose parametric
optimum :func:`trace_network` follows by successive longest augmenting paths, one breakpoint
of one cell at a time. :func:`build_network` builds it from the hull increments and the
rows' :class:`engine.planning.frontier_pieces.Group` limits; the result is a list of pieces
like the merge's, each moving several cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.options import KINDS
from engine.planning.frontier_pieces import (
    BoolArray,
    FloatArray,
    Group,
    IntArray,
    Pieces,
)
from engine.planning.progress import Progress


@dataclass
class Network:
    cells: IntArray  # global cell ids, local index = position
    bp: FloatArray  # per cell: cumulative cost of its sorted increments, from 0 (flat, CSR)
    bp_off: IntArray
    slope: FloatArray  # per cell: increment ratios, decreasing (flat; cell j at bp_off[j] - j)
    lo: FloatArray  # cell minimum (spend above the cheapest levels)
    hi: FloatArray  # cell maximum: end of its curve or its cap
    kind: IntArray  # local kind node of each cell (0 retention, 1 acquisition)
    seg: IntArray  # local segment node of each cell
    kind_cap: FloatArray
    seg_cap: FloatArray
    seg_min: FloatArray


def paths(net: Network) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Every simple source-sink path: (cells[P, 3], directions[P, 3], first kind, last segment).

    S -> K_k -> cell(k, g) -> G_g -> T, and S -> K_k -> cell(k, g1) -> G_g1 -> cell(k', g1)
    backwards -> K_k' -> cell(k', g2) -> G_g2 -> T: with two kinds no simple path is longer.
    """
    where = {(int(k), int(g)): j for j, (k, g) in enumerate(zip(net.kind, net.seg, strict=True))}
    cells, dirs, kinds, segs = [], [], [], []
    n_seg = net.seg_cap.size
    for (k, g), j in where.items():
        cells.append((j, -1, -1))
        dirs.append((1, 0, 0))
        kinds.append(k)
        segs.append(g)
        other = 1 - k
        back = where.get((other, g))
        if back is None:
            continue
        for g2 in range(n_seg):
            fwd = where.get((other, g2))
            if g2 == g or fwd is None:
                continue
            cells.append((j, back, fwd))
            dirs.append((1, -1, 1))
            kinds.append(k)
            segs.append(g2)
    return (
        np.array(cells, dtype=np.int64).reshape(-1, 3),
        np.array(dirs, dtype=np.int64).reshape(-1, 3),
        np.array(kinds, dtype=np.int64),
        np.array(segs, dtype=np.int64),
    )


def trace_network(
    net: Network, tol: float, progress: Progress, should_stop: Callable[[], bool]
) -> Pieces:
    """Successive longest augmenting paths; gains are (priority, value) compared in that order,
    priority counting the minimums a unit of flow helps meet (a big-M made exact).

    Each step moves the best path to the next breakpoint of one of its cells or to a limit.
    Steps are batched when the best path is a single cell: every single-cell path admissible
    at the same priority is merged by slope (what successive steps would do) for as long as
    no other path beats the merged slope: paths avoiding those cells keep a constant gain,
    the others are re-evaluated at every merged breakpoint, and the kind and segment limits
    cut the batch. Batching changes the speed only, not the result."""
    m = net.cells.size
    if net.slope.size == 0:
        return Pieces(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                       np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    n_arcs = np.diff(net.bp_off) - 1  # linear stretches of each cell's curve
    x = np.zeros(m)
    p = np.zeros(m, dtype=np.int64)  # bp[off + p] <= x < bp[off + p + 1]
    y = np.zeros(2)  # flow through each kind node
    z = np.zeros(net.seg_cap.size)  # flow into each segment node
    pc, pd, pk, ps = paths(net)
    pad = pc < 0
    pcs = np.where(pad, 0, pc)
    fwd = pd > 0
    single = pad[:, 1]
    type1 = np.full(m, -1, dtype=np.int64)
    type1[pc[single, 0]] = np.flatnonzero(single)
    bp, off, slope, lo, hi = net.bp, net.bp_off[:-1], net.slope, net.lo, net.hi
    sl_off = off - np.arange(m)
    last = slope.size - 1
    chunks: list[tuple[FloatArray, FloatArray, bool, IntArray, IntArray, FloatArray]] = []
    n_pieces = 0
    total_room = float(hi.sum()) or 1.0
    batch = 64
    steps = 0
    inf = math.inf
    while True:
        steps += 1
        if steps % 500 == 0:
            if should_stop():
                raise CancelledError("frontier cancelled")
            progress("network", min(1.0, float(x.sum()) / total_room))
        has_right = p < n_arcs
        at_bp = x <= bp[off + p] + tol
        left = np.where(at_bp, p - 1, p)
        rs = np.where(has_right, slope[np.clip(sl_off + p, 0, last)], -inf)
        ls = np.where(left >= 0, slope[np.clip(sl_off + left, 0, last)], inf)
        below = x < lo - tol
        fwd_room = np.where(has_right, hi - x, 0.0)
        nxt = bp[off + np.minimum(p + 1, n_arcs)]
        fwd_step = np.minimum(np.where(has_right, nxt - x, 0.0), fwd_room)
        fwd_step = np.where(below, np.minimum(fwd_step, lo - x), fwd_step)
        fwd_prio = below.astype(np.int64)
        bwd_room = np.where(x > tol, x, 0.0)
        prv = bp[off + np.maximum(left, 0)]
        above = x > lo + tol
        bwd_step = np.minimum(x - prv, np.where(above & (lo > 0), x - lo, inf))
        bwd_prio = -((~above) & (lo > 0)).astype(np.int64)

        e_prio = np.where(pad, 0, np.where(fwd, fwd_prio[pcs], bwd_prio[pcs]))
        e_val = np.where(pad, 0.0, np.where(fwd, rs[pcs], -ls[pcs]))
        e_room = np.where(pad, inf, np.where(fwd, fwd_room[pcs], bwd_room[pcs]))
        e_step = np.where(pad, inf, np.where(fwd, fwd_step[pcs], bwd_step[pcs]))
        seg_below = z < net.seg_min - tol
        seg_room = net.seg_cap - z
        seg_step = np.where(seg_below, np.minimum(seg_room, net.seg_min - z), seg_room)
        kind_room = net.kind_cap - y
        prio = e_prio.sum(axis=1) + seg_below[ps].astype(np.int64)
        with np.errstate(invalid="ignore"):
            val = e_val.sum(axis=1)
        room = np.minimum(np.minimum(e_room.min(axis=1), kind_room[pk]), seg_room[ps])
        ok = (room > tol) & np.isfinite(val)
        if not ok.any():
            break
        cand = np.flatnonzero(ok)
        best_prio = int(prio[cand].max())
        cand = cand[prio[cand] == best_prio]
        b = int(cand[np.argmax(val[cand])])
        gain = float(val[b])
        if best_prio < 0 or (best_prio == 0 and gain <= 0.0):
            break
        if single[b]:
            done = _batch(
                net, x, p, y, z, n_arcs, sl_off, at_bp, below, seg_below, kind_room, seg_room,
                ok & (prio == best_prio), val, pc, pd, pad, type1, single, e_val, batch, tol,
            )
            if done is not None:
                cells, lengths, slopes = done
                chunks.append((lengths, lengths * slopes, best_prio > 0,
                               n_pieces + np.arange(lengths.size), net.cells[cells], lengths))
                n_pieces += lengths.size
                batch = min(max(16, 2 * lengths.size), 1 << 16)
                continue
            batch = 16
        step = float(min(e_step[b].min(), kind_room[pk[b]], seg_step[ps[b]], room[b]))
        if step <= tol:  # float noise at a mark: cross it
            step = float(min(room[b], 2 * tol))
        moved_cells, moved = [], []
        for c, d in zip(pc[b], pd[b], strict=True):
            if c < 0:
                continue
            ci = int(c)
            if d > 0:
                target = x[ci] + step
                end = bp[off[ci] + p[ci] + 1] if p[ci] < n_arcs[ci] else target
                if target >= end - tol:
                    target = end
                    p[ci] += 1
            else:
                if x[ci] <= bp[off[ci] + p[ci]] + tol:
                    p[ci] -= 1
                target = x[ci] - step
                start = bp[off[ci] + p[ci]]
                if target <= start + tol:
                    target = start
            for mark in (lo[ci], hi[ci]):
                if abs(target - mark) <= tol:
                    target = mark
            moved_cells.append(int(net.cells[ci]))
            moved.append(float(target - x[ci]))
            x[ci] = target
        y[pk[b]] += step
        z[ps[b]] += step
        chunks.append((np.array([step]), np.array([gain * step]), best_prio > 0,
                       np.full(len(moved), n_pieces), np.array(moved_cells, dtype=np.int64),
                       np.array(moved)))
        n_pieces += 1
    if (x < lo - 1e3 * tol).any() or (z < net.seg_min - 1e3 * tol).any():
        raise InfeasiblePlanError("the minimums cannot be met within the budgets and caps")
    progress("network", 1.0)
    if not chunks:
        return Pieces(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                       np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    dc = np.concatenate([c[0] for c in chunks])
    return Pieces(
        dc=dc,
        dv=np.concatenate([c[1] for c in chunks]),
        forced=np.concatenate([np.full(c[0].size, c[2]) for c in chunks]),
        cell=np.full(dc.size, -1, dtype=np.int64),
        order=np.arange(dc.size, dtype=np.int64),
        m_piece=np.concatenate([c[3] for c in chunks]).astype(np.int64),
        m_cell=np.concatenate([c[4] for c in chunks]).astype(np.int64),
        m_delta=np.concatenate([c[5] for c in chunks]),
    )


def _batch(
    net: Network,
    x: FloatArray,
    p: IntArray,
    y: FloatArray,
    z: FloatArray,
    n_arcs: IntArray,
    sl_off: IntArray,
    at_bp: BoolArray,
    below: BoolArray,
    seg_below: BoolArray,
    kind_room: FloatArray,
    seg_room: FloatArray,
    live: BoolArray,
    val: FloatArray,
    pc: IntArray,
    pd: IntArray,
    pad: BoolArray,
    type1: IntArray,
    single: BoolArray,
    e_val: FloatArray,
    limit: int,
    tol: float,
) -> tuple[IntArray, FloatArray, FloatArray] | None:
    """Merge the live single-cell paths' breakpoints while that is what the steps would do;
    updates the state and returns (local cell, length, slope) of each merged piece."""
    bp, off, slope, lo, hi = net.bp, net.bp_off[:-1], net.slope, net.lo, net.hi
    group = np.flatnonzero((type1 >= 0) & live[np.maximum(type1, 0)])
    if group.size == 0:
        return None
    in_group = np.zeros(x.size, dtype=bool)
    in_group[group] = True
    touches = ~pad & in_group[np.where(pad, 0, pc)]
    others = live & ~touches.any(axis=1)
    g_a = float(val[others].max()) if others.any() else -math.inf
    varying = np.flatnonzero(live & touches.any(axis=1) & ~single)

    # Whole stretches of each group cell up to its limit (hi, or lo while below it).
    parts_cell, parts_len, parts_slope, parts_k = [], [], [], []
    for j in group:  # a loop over (segment, kind) cells
        k0 = int(p[j])
        k1 = int(min(n_arcs[j], k0 + limit))
        ends = bp[off[j] + k0 + 1: off[j] + k1 + 1]
        cap = hi[j] if not below[j] else min(hi[j], lo[j])
        whole = int(np.searchsorted(ends, cap + tol, side="right"))
        if whole == 0:
            continue
        starts = np.concatenate(([x[j]], ends[:whole - 1]))
        parts_cell.append(np.full(whole, j))
        parts_len.append(ends[:whole] - starts)
        parts_slope.append(slope[sl_off[j] + k0: sl_off[j] + k0 + whole])
        parts_k.append(np.arange(whole))
    if not parts_cell:
        return None
    cell = np.concatenate(parts_cell)
    length = np.concatenate(parts_len)
    slp = np.concatenate(parts_slope)
    order = np.argsort(-slp, kind="stable")[:limit]
    cell, length, slp = cell[order], length[order], slp[order]
    count = int(np.searchsorted(-slp, -g_a, side="right"))  # slopes >= the best constant path
    seg_need = np.where(seg_below, net.seg_min - z, seg_room)  # a minimum met changes priorities
    for arc_of, room in ((net.kind, kind_room), (net.seg, seg_need)):
        arc = arc_of[cell]
        for a in np.flatnonzero(np.isfinite(room)):
            mine = arc == a
            if mine.any():
                over = np.cumsum(np.where(mine, length, 0.0)) > room[a] + tol
                if over.any():
                    count = min(count, int(np.argmax(over)))
    if count > 0 and varying.size:
        count = min(count, max(1, (1 << 22) // varying.size))
        cell_c, slp_c = cell[:count], slp[:count]
        onehot = np.zeros((count, x.size))
        onehot[np.arange(count), cell_c] = 1.0
        pos = (np.cumsum(onehot, axis=0) - onehot).astype(np.int64)  # stretches taken before
        k = p[None, :] + pos
        rs = np.where(k < n_arcs[None, :], slope[np.clip(sl_off + k, 0, slope.size - 1)], -np.inf)
        left = np.where((pos > 0) | at_bp[None, :], k - 1, k)
        ls = np.where(left >= 0, slope[np.clip(sl_off + left, 0, slope.size - 1)], np.inf)
        vc, vd = pc[varying], pd[varying]
        grp = ~pad[varying] & in_group[np.where(pad[varying], 0, vc)]
        const = np.where(grp, 0.0, e_val[varying]).sum(axis=1)
        gains = np.tile(const, (count, 1))
        for e in range(3):
            cols = np.where(grp[:, e], vc[:, e], 0)
            term = np.where(vd[:, e] > 0, rs[:, cols], -ls[:, cols])
            gains += np.where(grp[:, e][None, :], term, 0.0)
        beaten = gains.max(axis=1) > slp_c
        if beaten.any():
            count = int(np.argmax(beaten))
    if count == 0:
        return None
    cell, length, slp = cell[:count], length[:count], slp[:count]
    taken = np.bincount(cell, minlength=x.size)
    for j in np.flatnonzero(taken):
        p[j] += taken[j]
        x[j] = bp[off[j] + p[j]]
        for mark in (lo[j], hi[j]):
            if abs(x[j] - mark) <= tol:
                x[j] = mark
    y += np.bincount(net.kind[cell], weights=length, minlength=2)
    z += np.bincount(net.seg[cell], weights=length, minlength=z.size)
    return cell, length, slp


def build_network(
    cells: IntArray,
    inc_cell: IntArray,
    dc: FloatArray,
    ratio: FloatArray,
    groups: list[Group],
    members: IntArray,
) -> Network:
    """Curves of the network cells and the capacities of its arcs; ``members``: the
    increments of those cells by decreasing ratio (a stable sort by cell keeps that order)."""
    narrow = np.int16 if cells.size < (1 << 15) else np.int32  # 16 bits: a radix sort
    local = np.searchsorted(cells, inc_cell[members]).astype(narrow)
    order = members[np.argsort(local, kind="stable")]
    local_sorted = np.searchsorted(cells, inc_cell[order])
    counts = np.bincount(local_sorted, minlength=cells.size)
    cum = np.cumsum(dc[order])
    starts = np.concatenate(([0], np.cumsum(counts)))
    first_cum = np.concatenate(([0.0], cum))[starts[:-1]]
    bp_parts = []
    for j in range(cells.size):  # a loop over cells, not customers
        seg_cum = cum[starts[j]:starts[j + 1]] - first_cum[j]
        bp_parts.append(np.concatenate(([0.0], seg_cum)))
    bp = np.concatenate(bp_parts) if bp_parts else np.zeros(0)
    bp_off = np.concatenate(([0], np.cumsum(counts + 1))).astype(np.int64)
    slope = ratio[order]
    kind = (cells % len(KINDS)).astype(np.int64)
    seg_global = cells // len(KINDS)
    segs, seg = np.unique(seg_global, return_inverse=True)
    ends = bp[bp_off[1:] - 1]
    lo = np.zeros(cells.size)
    hi = ends.copy()
    kind_cap = np.full(2, math.inf)
    seg_cap = np.full(segs.size, math.inf)
    seg_min = np.zeros(segs.size)
    for g in groups:
        on = np.flatnonzero(g.cells)
        if not np.isin(on, cells).all():
            continue
        if on.size == 1:
            j = int(np.searchsorted(cells, on[0]))
            hi[j] = min(hi[j], g.cap)
            lo[j] = max(lo[j], g.minimum)
        elif np.unique(on % len(KINDS)).size == 1:
            if g.minimum > 0:
                raise SolverError(f"{g.names}: a minimum on a whole kind is not supported here")
            kind_cap[int(on[0] % len(KINDS))] = g.cap
        elif np.unique(on // len(KINDS)).size == 1:
            s = int(np.searchsorted(segs, on[0] // len(KINDS)))
            seg_cap[s] = g.cap
            seg_min[s] = g.minimum
        else:
            raise SolverError(f"{g.names}: rows over such cells are not supported by the frontier")
    return Network(cells, bp, bp_off, slope, lo, hi, kind, seg.astype(np.int64), kind_cap,
                    seg_cap, seg_min)
