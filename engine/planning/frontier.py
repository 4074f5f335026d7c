"""The exact equity-versus-total-budget frontier of the allocation LP, and the optimal budget.

What is computed
----------------
``V(B)`` is the LP optimum (``summary["lp_objective"]`` of ``engine.pipeline.allocate``) when
the plan's total budget is ``B`` and every other row of the plan (kind budgets, segment caps
and minimums) is kept. ``V`` is concave and piecewise linear in ``B``; this module returns all
of its breakpoints, from the least feasible budget ``B_min`` (the cheapest levels plus what
the minimums force) up to the optimal budget ``B_opt``, computed from the structure of the
problem rather than by re-solving at a grid of budgets:

* Values are equity **net of the spend they imply** (see ``engine.options.OptionSet``). The
  slope of ``V`` is therefore the *net* equity one more unit of budget buys, which is the
  budget's shadow price: a slope of ``s`` means that unit returns ``1 + s`` units of equity
  before its own cost is subtracted. The optimal budget is where the slope falls to 0 (one
  more unit returns less than one unit of equity); beyond it ``V`` is flat because the LP
  leaves the extra budget unspent.
* Only a total budget, or limits forming a *laminar* family (kind budgets alone, or segment
  limits alone, per-kind segment limits with either): each cell's hull increments sorted by
  value per unit of spend give that cell's concave curve; a group with a cap keeps the best
  part of the merge of its children's curves up to the cap, a group with a minimum forces the
  best part up to the minimum. The frontier is the merge of everything, sorted by ratio.
  ``O(n log n)`` in the number of hull increments; exact.
* Kind budgets together with limits on whole segments (both kinds) cross each other. The cells
  under such rows form a small flow network (source -> kind -> cell -> segment -> sink, with
  the kind budgets and segment limits as arc capacities) whose parametric optimum is traced by
  successive longest augmenting paths, one breakpoint of one cell at a time (exact; its cost
  grows with the number of hull increments in those cells). The cells under no such row are
  merged as above and the two concave curves are combined by merging their slopes.

Customers take one level each in a plan, but the LP may split a customer between two adjacent
levels; the frontier is the LP's (an upper bound on every integral plan). ``integer_check``
compares it with the integral plans ``allocate`` returns at a few budgets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.constraints import GE, Constraint
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.options import ACQUISITION, KINDS, RETENTION, OptionSet
from engine.plan import Plan
from engine.plugins import Registry
from engine.portfolio import Portfolio

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Progress = Callable[[str, float], None]


def _no_progress(phase: str, done: float) -> None:
    del phase, done


# --------------------------------------------------------------------------------------------
# The model: options and coupling rows, exactly as ``allocate`` builds them.
# --------------------------------------------------------------------------------------------


def build_model(
    portfolio: Portfolio, plan: Plan, registry: Registry | None = None
) -> tuple[OptionSet, list[Constraint]]:
    """Options and constraint rows of ``plan`` on ``portfolio``, exactly as ``allocate``
    builds them (``engine.pipeline.build_model``: the same metric, cost model and errors)."""
    from engine.pipeline import build_model as pipeline_model

    model = pipeline_model(portfolio, plan, registry)
    return model.options, model.rows


# --------------------------------------------------------------------------------------------
# Pieces: linear stretches of the frontier, each moving one cell (merge) or several (network).
# --------------------------------------------------------------------------------------------


@dataclass
class _Pieces:
    dc: FloatArray  # budget the piece consumes (> 0)
    dv: FloatArray  # net equity it adds
    forced: BoolArray  # taken before any budget is free (minimums)
    cell: IntArray  # the one cell it moves, -1 when it moves several (see moves)
    order: IntArray  # live pieces, best ratio first (forced ones are put first on demand)
    m_piece: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    m_cell: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    m_delta: FloatArray = field(default_factory=lambda: np.zeros(0))

    def effective(self) -> IntArray:
        """Frontier order: forced pieces first, then by decreasing ratio."""
        f = self.forced[self.order]
        return np.concatenate([self.order[f], self.order[~f]])

    def split(self, i: int, head: float) -> int:
        """Cut piece ``i`` after ``head`` of its spend; the tail becomes a new piece after it."""
        j = self.dc.size
        share = head / self.dc[i]
        self.dc = np.append(self.dc, self.dc[i] - head)
        self.dv = np.append(self.dv, self.dv[i] * (1.0 - share))
        self.forced = np.append(self.forced, self.forced[i])
        self.cell = np.append(self.cell, self.cell[i])
        self.dc[i] = head
        self.dv[i] *= share
        if self.cell[i] < 0:
            mine = np.flatnonzero(self.m_piece == i)
            self.m_piece = np.append(self.m_piece, np.full(mine.size, j))
            self.m_cell = np.append(self.m_cell, self.m_cell[mine])
            self.m_delta = np.append(self.m_delta, self.m_delta[mine] * (1.0 - share))
            self.m_delta[mine] *= share
        at = int(np.flatnonzero(self.order == i)[0])
        self.order = np.insert(self.order, at + 1, j)
        return j


def _apply_limit(
    p: _Pieces, cells: BoolArray | None, minimum: float, cap: float, name: str, tol: float
) -> None:
    """Impose ``minimum <= spend in cells <= cap`` on a concave list of pieces (``cells``
    None: every piece). The group keeps its best pieces up to the cap; the minimum forces its
    best pieces up to the minimum, splitting one piece at each boundary."""

    def members() -> tuple[IntArray, FloatArray]:
        eff = p.effective()
        if cells is not None:
            eff = eff[(p.cell[eff] >= 0) & cells[np.maximum(p.cell[eff], 0)]]
        return eff, np.cumsum(p.dc[eff])

    if minimum > tol:
        idx, cum = members()
        total = float(cum[-1]) if idx.size else 0.0
        if total < minimum - tol:
            raise InfeasiblePlanError(
                f"{name}: its units can spend at most {total:.6g} more than their cheapest "
                f"levels, below the minimum's {minimum:.6g}",
                [name],
            )
        k = min(int(np.searchsorted(cum, minimum - tol)), idx.size - 1)
        p.forced[idx[:k]] = True
        head = minimum - (float(cum[k]) - float(p.dc[idx[k]]))
        if head >= p.dc[idx[k]] - tol:
            p.forced[idx[k]] = True
        elif head > tol:
            p.split(int(idx[k]), head)
            p.forced[idx[k]] = True
    if math.isfinite(cap):
        idx, cum = members()
        forced_total = float(p.dc[idx][p.forced[idx]].sum())
        if forced_total > cap + tol:
            raise InfeasiblePlanError(
                f"{name}: the minimums inside it need {forced_total:.6g}, above its cap "
                f"{cap:.6g}",
                [name],
            )
        if idx.size and cum[-1] > cap + tol:
            k = int(np.searchsorted(cum, cap + tol, side="right"))
            head = cap - (float(cum[k]) - float(p.dc[idx[k]]))
            if head > tol:
                tail = p.split(int(idx[k]), head)
                drop = np.append(idx[k + 1:], tail)
            else:
                drop = idx[k:]
            p.order = p.order[~np.isin(p.order, drop)]


# --------------------------------------------------------------------------------------------
# The structure of the rows.
# --------------------------------------------------------------------------------------------


@dataclass
class _Group:
    cells: BoolArray
    cap: float
    minimum: float
    names: list[str]

    @property
    def size(self) -> int:
        return int(self.cells.sum())


def _groups(
    rows: list[Constraint], nonempty: BoolArray, base_cell: FloatArray, tol: float
) -> list[_Group]:
    """Rows other than the total budget, on non-empty cells, net of the cheapest levels' cost,
    rows over the same cells merged."""
    found: dict[bytes, _Group] = {}
    for row in rows:
        if row.name == "budget":
            continue
        cells = row.cells & nonempty
        rhs = row.rhs - float(base_cell[cells].sum())
        if row.sense == GE:
            if rhs <= tol:
                continue
            if not cells.any():
                raise InfeasiblePlanError(f"{row.name}: no units can spend in it", [row.name])
        elif rhs < -tol:
            raise InfeasiblePlanError(
                f"{row.name} of {row.rhs:g} is below the least its units must spend "
                f"({row.rhs - rhs:g})",
                [row.name],
            )
        if not cells.any():
            continue
        key = cells.tobytes()
        group = found.setdefault(key, _Group(cells, math.inf, 0.0, []))
        group.names.append(row.name)
        if row.sense == GE:
            group.minimum = max(group.minimum, rhs)
        else:
            group.cap = min(group.cap, max(rhs, 0.0))
    groups = sorted(found.values(), key=lambda g: g.size)
    for g in groups:
        if g.minimum > g.cap + tol:
            raise InfeasiblePlanError(f"{g.names}: minimum above cap", g.names)
    return groups


def _laminar(groups: list[_Group]) -> bool:
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            both = a.cells & b.cells
            if both.any() and not (np.array_equal(both, a.cells) or np.array_equal(both, b.cells)):
                return False
    return True


# --------------------------------------------------------------------------------------------
# The flow network for crossing rows (kind budgets x whole-segment limits).
# --------------------------------------------------------------------------------------------


@dataclass
class _Network:
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


def _paths(net: _Network) -> tuple[IntArray, IntArray, IntArray, IntArray]:
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


def _trace_network(
    net: _Network, tol: float, progress: Progress, should_stop: Callable[[], bool]
) -> _Pieces:
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
        return _Pieces(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                       np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    n_arcs = np.diff(net.bp_off) - 1  # linear stretches of each cell's curve
    x = np.zeros(m)
    p = np.zeros(m, dtype=np.int64)  # bp[off + p] <= x < bp[off + p + 1]
    y = np.zeros(2)  # flow through each kind node
    z = np.zeros(net.seg_cap.size)  # flow into each segment node
    pc, pd, pk, ps = _paths(net)
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
        return _Pieces(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                       np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    dc = np.concatenate([c[0] for c in chunks])
    return _Pieces(
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
    net: _Network,
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


def _build_network(
    cells: IntArray,
    inc_cell: IntArray,
    dc: FloatArray,
    ratio: FloatArray,
    groups: list[_Group],
    n_segments: int,
) -> _Network:
    """Curves of the network cells and the capacities of its arcs."""
    members = np.flatnonzero(np.isin(inc_cell, cells))
    local = np.searchsorted(cells, inc_cell[members])
    order = members[np.lexsort((-ratio[members], local))]
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
    del n_segments
    return _Network(cells, bp, bp_off, slope, lo, hi, kind, seg.astype(np.int64), kind_cap,
                    seg_cap, seg_min)


# --------------------------------------------------------------------------------------------
# The frontier.
# --------------------------------------------------------------------------------------------


@dataclass
class Frontier:
    """The LP's equity as a function of the total budget, at every breakpoint.

    ``points``: one row per breakpoint, in increasing budget: ``budget``, ``equity`` (total
    equity net of spend, the LP objective), ``equity_gain`` (over doing nothing), ``slope``
    (net equity per unit of budget on the stretch ending at this point; null at the start),
    ``retention`` and ``acquisition`` (spend by kind). ``moves``: the spend of each
    (segment, kind) cell at every breakpoint where it changes (``point`` indexes ``points``;
    point 0 lists every cell), so the split by segment is known at every breakpoint;
    ``split_at`` interpolates it (exact: spend moves linearly between breakpoints).
    """

    points: pl.DataFrame
    moves: pl.DataFrame
    segments: list[str]
    equity_before: float
    min_budget: float
    optimal_budget: float
    optimal_equity: float
    plan_budget: float | None
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def n_breakpoints(self) -> int:
        return self.points.height

    @property
    def chosen_budget(self) -> float:
        """What the plan spends on the frontier: its total budget, capped at the optimal one."""
        if self.plan_budget is None:
            return self.optimal_budget
        return float(min(max(self.plan_budget, self.min_budget), self.optimal_budget))

    def _arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return (
            self.points["budget"].to_numpy(),
            self.points["equity"].to_numpy(),
            self.points["slope"].fill_null(math.inf).to_numpy(),
        )

    def equity_at(self, budgets: Sequence[float] | FloatArray) -> FloatArray:
        """LP equity at each budget (NaN below the least feasible budget)."""
        b = np.asarray(budgets, dtype=np.float64)
        budget, equity, _ = self._arrays()
        out = np.interp(b, budget, equity)
        return np.where(b < self.min_budget * (1 - 1e-12) - 1e-9, np.nan, out)

    def slope_at(self, budgets: Sequence[float] | FloatArray) -> FloatArray:
        """Net equity of the next unit of budget at each budget (0 past the optimal budget)."""
        b = np.asarray(budgets, dtype=np.float64)
        budget, _, slope = self._arrays()
        k = np.searchsorted(budget, b, side="right")
        padded = np.append(slope, 0.0)
        return np.where(b < self.min_budget, np.nan, padded[np.minimum(k, padded.size - 1)])

    def split_at(self, budgets: Sequence[float] | FloatArray) -> pl.DataFrame:
        """Spend of every (segment, kind) cell at each budget: columns budget, segment, kind,
        spend (exact: linear between breakpoints)."""
        b = np.clip(np.asarray(budgets, dtype=np.float64), self.min_budget, self.optimal_budget)
        budget = self.points["budget"].to_numpy()
        k = np.clip(np.searchsorted(budget, b, side="right"), 1, max(budget.size - 1, 1))
        if budget.size > 1:
            width = budget[k] - budget[k - 1]
            t = np.where(width > 0, (b - budget[k - 1]) / np.where(width > 0, width, 1.0), 0.0)
            t = np.clip(t, 0.0, 1.0)
        else:
            k, t = np.zeros(b.size, dtype=np.int64), np.zeros(b.size)
        frames = []
        for _, part in self.moves.group_by(["cell"], maintain_order=True):
            cell = int(part["cell"][0])
            pts = part["point"].to_numpy()
            spend = part["spend"].to_numpy()
            i_prev = np.searchsorted(pts, k - 1, side="right") - 1
            i_next = np.searchsorted(pts, k, side="right") - 1
            prev = spend[np.maximum(i_prev, 0)]
            nxt = spend[np.maximum(i_next, 0)]
            frames.append(pl.DataFrame({
                "budget": np.asarray(budgets, dtype=np.float64),
                "cell": np.full(b.size, cell, dtype=np.int64),
                "spend": prev + t * (nxt - prev),
            }))
        out = pl.concat(frames) if frames else pl.DataFrame(
            {"budget": [], "cell": [], "spend": []},
            schema={"budget": pl.Float64, "cell": pl.Int64, "spend": pl.Float64},
        )
        labels = self._cell_labels()
        return (
            out.join(labels, on="cell", how="left")
            .select("budget", "segment", "kind", "spend")
            .sort(["budget", "segment", "kind"])
        )

    def _cell_labels(self) -> pl.DataFrame:
        n = len(self.segments) * len(KINDS)
        return pl.DataFrame({
            "cell": np.arange(n, dtype=np.int64),
            "segment": [self.segments[c // len(KINDS)] for c in range(n)],
            "kind": [KINDS[c % len(KINDS)] for c in range(n)],
        })

    def display_budgets(self, rows: int = 12) -> FloatArray:
        """A readable set of budgets: evenly spaced, plus the start, optimum and plan's."""
        lo, hi = self.min_budget, self.optimal_budget
        grid = np.linspace(lo, hi, max(rows, 2))
        extra = [self.chosen_budget]
        return np.unique(np.concatenate([grid, extra]))

    def table(self, rows: int = 12) -> pl.DataFrame:
        """Budgets (see ``display_budgets``) with equity, slope and spend by kind and segment."""
        b = self.display_budgets(rows)
        split = self.split_at(b)
        by_kind = split.pivot(on="kind", index="budget", values="spend", aggregate_function="sum")
        by_segment = split.group_by(["budget", "segment"]).agg(pl.col("spend").sum()).pivot(
            on="segment", index="budget", values="spend"
        )
        seg_cols = [s for s in self.segments if s in by_segment.columns]
        by_segment = by_segment.select("budget", *[pl.col(s).alias(f"segment:{s}")
                                                   for s in seg_cols])
        head = pl.DataFrame({
            "budget": b,
            "equity": self.equity_at(b),
            "equity_gain": self.equity_at(b) - self.equity_before,
            "slope": self.slope_at(b),
        })
        kinds = [k for k in KINDS if k in by_kind.columns]
        return (
            head.join(by_kind.select("budget", *kinds), on="budget", how="left")
            .join(by_segment, on="budget", how="left")
            .sort("budget")
        )

    def summary(self) -> dict[str, Any]:
        chosen = self.chosen_budget
        return {
            "method": self.method,
            "exact": True,
            "breakpoints": self.n_breakpoints,
            "equity_before": self.equity_before,
            "min_budget": self.min_budget,
            "optimal_budget": self.optimal_budget,
            "optimal_equity": self.optimal_equity,
            "optimal_gain": self.optimal_equity - self.equity_before,
            "plan_budget": self.plan_budget,
            "chosen_budget": chosen,
            "chosen_equity": float(self.equity_at([chosen])[0]),
            "chosen_slope": float(self.slope_at([chosen])[0]),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def frontier(
    portfolio: Portfolio,
    plan: Plan,
    registry: Registry | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Frontier:
    """The exact LP frontier of ``plan`` on ``portfolio`` as its total budget varies."""
    started = time.perf_counter()
    options, rows = build_model(portfolio, plan, registry)
    return frontier_of(options, rows, plan.total_budget, progress, should_stop, started)


def frontier_of(
    options: OptionSet,
    rows: list[Constraint],
    plan_budget: float | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    started: float | None = None,
) -> Frontier:
    """The frontier from options and rows (the total budget row, if any, is the parameter)."""
    started = time.perf_counter() if started is None else started
    progress = progress or _no_progress
    hull = options.hull
    unit, dc, dv = hull.increments(options.cost, options.value)
    first = hull.points[hull.offsets[:-1]]
    n_cells = options.n_cells
    base_cell = np.bincount(options.cell, weights=options.cost[first], minlength=n_cells).astype(
        np.float64
    )
    base_value = float(options.value[first].sum())
    equity_before = float(options.value[options.baseline].sum())
    nonempty = np.bincount(options.cell, minlength=n_cells) > 0
    inc_cell = options.cell[unit]
    ratio = dv / dc
    scale = max(1.0, float(dc.sum()) + float(base_cell.sum()))
    tol = 1e-12 * scale
    groups = _groups(rows, nonempty, base_cell, tol)
    progress("increments", 0.0)

    all_cells = nonempty.copy()
    root = [g for g in groups if np.array_equal(g.cells, all_cells)]
    inner = [g for g in groups if not np.array_equal(g.cells, all_cells)]
    notes: list[str] = []
    if _laminar(inner):
        method = "merge"
        pieces = _merge_pieces(inc_cell, dc, dv, ratio)
        for g in inner:
            _apply_limit(pieces, g.cells, g.minimum, g.cap, ",".join(g.names), tol)
    else:
        method = "network"
        multi = [g for g in inner if g.size > 1]
        net_mask = np.zeros(n_cells, dtype=bool)
        for g in multi:
            net_mask |= g.cells
        free = np.flatnonzero(~net_mask[inc_cell])
        pieces = _merge_pieces(inc_cell[free], dc[free], dv[free], ratio[free])
        for g in inner:
            if g.size == 1 and not (g.cells & net_mask).any():
                _apply_limit(pieces, g.cells, g.minimum, g.cap, ",".join(g.names), tol)
        net = _build_network(np.flatnonzero(net_mask), inc_cell, dc, ratio, inner, len(
            options.segments))
        traced = _trace_network(net, tol, progress, should_stop)
        notes.append(
            f"kind budgets cross whole-segment limits: {net.cells.size} cells traced as a flow "
            f"network ({traced.dc.size} steps)"
        )
        pieces = _combine(pieces, traced)
    for g in root:
        _apply_limit(pieces, None, g.minimum, g.cap, ",".join(g.names), tol)
    progress("assemble", 0.9)
    result = _assemble(options, pieces, base_cell, base_value, equity_before, plan_budget,
                       method, notes, started)
    progress("done", 1.0)
    return result


def _merge_pieces(cell: IntArray, dc: FloatArray, dv: FloatArray, ratio: FloatArray) -> _Pieces:
    order = np.argsort(-ratio, kind="stable").astype(np.int64)
    return _Pieces(dc.copy(), dv.copy(), np.zeros(dc.size, dtype=bool), cell.astype(np.int64),
                   order)


def _combine(a: _Pieces, b: _Pieces) -> _Pieces:
    """Sup-convolution of two concave curves: their pieces merged by ratio, each kept in order."""
    shift = a.dc.size
    ea, eb = a.effective(), b.effective()
    key_a = np.minimum.accumulate(np.where(a.forced[ea], np.inf, a.dv[ea] / a.dc[ea]))
    key_b = np.minimum.accumulate(np.where(b.forced[eb], np.inf, b.dv[eb] / b.dc[eb]))
    ids = np.concatenate([ea, eb + shift])
    keys = np.concatenate([key_a, key_b])
    source = np.concatenate([np.zeros(ea.size, dtype=np.int64), np.ones(eb.size, dtype=np.int64)])
    rank = np.concatenate([np.arange(ea.size), np.arange(eb.size)])
    merged = ids[np.lexsort((rank, source, -keys))]
    return _Pieces(
        dc=np.concatenate([a.dc, b.dc]),
        dv=np.concatenate([a.dv, b.dv]),
        forced=np.concatenate([a.forced, b.forced]),
        cell=np.concatenate([a.cell, b.cell]),
        order=merged,
        m_piece=np.concatenate([a.m_piece, b.m_piece + shift]),
        m_cell=np.concatenate([a.m_cell, b.m_cell]),
        m_delta=np.concatenate([a.m_delta, b.m_delta]),
    )


def _assemble(
    options: OptionSet,
    p: _Pieces,
    base_cell: FloatArray,
    base_value: float,
    equity_before: float,
    plan_budget: float | None,
    method: str,
    notes: list[str],
    started: float,
) -> Frontier:
    n_cells = options.n_cells
    eff = p.effective()
    forced = eff[p.forced[eff]]
    rest = eff[~p.forced[eff]]
    rest = rest[p.dv[rest] > 0]
    # Per-piece moves in long form: single-cell pieces move their cell by dc.
    single = p.cell >= 0
    mv_piece = np.concatenate([np.flatnonzero(single), p.m_piece])
    mv_cell = np.concatenate([p.cell[single], p.m_cell])
    mv_delta = np.concatenate([p.dc[single], p.m_delta])
    rank = np.full(p.dc.size, -1, dtype=np.int64)  # point index of each live piece's end
    rank[forced] = 0
    rank[rest] = np.arange(1, rest.size + 1)
    keep = rank[mv_piece] >= 0
    mv_point, mv_cell, mv_delta = rank[mv_piece][keep], mv_cell[keep], mv_delta[keep]

    start_cell = base_cell + np.bincount(mv_cell[mv_point == 0], weights=mv_delta[mv_point == 0],
                                         minlength=n_cells)
    min_budget = float(base_cell.sum() + p.dc[forced].sum())
    start_equity = base_value + float(p.dv[forced].sum())
    budget = np.concatenate(([min_budget], min_budget + np.cumsum(p.dc[rest])))
    equity = np.concatenate(([start_equity], start_equity + np.cumsum(p.dv[rest])))
    slope = np.concatenate(([np.nan], p.dv[rest] / p.dc[rest]))

    later = mv_point > 0
    lp, lc, ld = mv_point[later], mv_cell[later], mv_delta[later]
    kind_delta = np.zeros((len(KINDS), rest.size + 1))
    for k in (RETENTION, ACQUISITION):
        mine = lc % len(KINDS) == k
        kind_delta[k] = np.bincount(lp[mine], weights=ld[mine], minlength=rest.size + 1)
    kind_start = [float(start_cell[k::len(KINDS)].sum()) for k in range(len(KINDS))]
    spend_kind = np.array(kind_start)[:, None] + np.cumsum(kind_delta, axis=1)

    order = np.lexsort((lp, lc))
    lp, lc, ld = lp[order], lc[order], ld[order]
    cum = np.cumsum(ld)
    first_of_cell = np.r_[True, lc[1:] != lc[:-1]] if lc.size else np.zeros(0, dtype=bool)
    starts = np.maximum.accumulate(np.where(first_of_cell, np.arange(lc.size), 0))
    within = cum - np.concatenate(([0.0], cum))[starts]
    spend_after = start_cell[lc] + within
    nonempty = np.flatnonzero(np.bincount(options.cell, minlength=n_cells) > 0)
    # Every cell at point 0, then each change; pieces touch a cell once, so (cell, point) is
    # unique and one stable sort by cell keeps the points in order.
    all_point = np.concatenate([np.zeros(nonempty.size, dtype=np.int64), lp])
    all_cell = np.concatenate([nonempty, lc]).astype(np.int64)
    all_spend = np.concatenate([start_cell[nonempty], spend_after])
    by_cell = np.argsort(all_cell, kind="stable")
    moves = pl.DataFrame({
        "point": all_point[by_cell],
        "cell": all_cell[by_cell],
        "spend": all_spend[by_cell],
    })
    segment_names = pl.Enum(options.segments)
    kind_names = pl.Enum(list(KINDS))
    cells = moves["cell"].to_numpy()
    moves = moves.with_columns(
        pl.Series("segment", [options.segments[c // len(KINDS)] for c in range(n_cells)],
                  dtype=segment_names).gather(cells),
        pl.Series("kind", [KINDS[c % len(KINDS)] for c in range(n_cells)],
                  dtype=kind_names).gather(cells),
    ).select("point", "cell", "segment", "kind", "spend")
    points = pl.DataFrame({
        "budget": budget,
        "equity": equity,
        "equity_gain": equity - equity_before,
        "slope": slope,
        "retention": spend_kind[RETENTION],
        "acquisition": spend_kind[ACQUISITION],
    }).with_columns(pl.col("slope").fill_nan(None))
    if plan_budget is not None and plan_budget < min_budget * (1 - 1e-12) - 1e-9:
        notes.append(f"the plan's budget {plan_budget:g} is below the least feasible "
                     f"{min_budget:g}")
    return Frontier(
        points=points,
        moves=moves,
        segments=list(options.segments),
        equity_before=equity_before,
        min_budget=min_budget,
        optimal_budget=float(budget[-1]),
        optimal_equity=float(equity[-1]),
        plan_budget=plan_budget,
        method=method,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def integer_check(
    portfolio: Portfolio,
    plan: Plan,
    result: Frontier,
    budgets: Sequence[float],
    registry: Registry | None = None,
) -> pl.DataFrame:
    """At each budget: the frontier's (LP) equity, the LP objective and the integral plan of a
    separate ``allocate``, and what integrality costs."""
    from engine.pipeline import allocate

    rows = []
    for b in budgets:
        solved = allocate(portfolio, plan.with_overrides(total_budget=float(b)), registry)
        s = solved.summary
        frontier_value = float(result.equity_at([b])[0])
        rows.append({
            "budget": float(b),
            "frontier": frontier_value,
            "lp_objective": float(s["lp_objective"]),
            "integer_plan": float(s["equity_after"]),
            "integrality_cost": frontier_value - float(s["equity_after"]),
            "shadow_price": float(s["shadow_prices"].get("budget", math.nan)),
            "frontier_slope": float(result.slope_at([b])[0]),
        })
    return pl.DataFrame(rows)
