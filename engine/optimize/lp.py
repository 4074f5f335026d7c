"""The exact allocation LP, solved through PuLP on the structure of the problem.

Every coupling row is a sum of spend over (segment, kind) cells. Within a cell, customers'
hull increments compete only through value per unit of spend, so the LP optimum inside a
cell is a threshold on that ratio. PuLP therefore sees *blocks* of increments (a cell's
increments whose ratio falls in one interval) instead of one column per customer-level:

1. Bin each cell's increments by ratio; a block's column has the block's summed cost/value.
   Bins are quantiles of a monotone integer key of the ratios' float bits (no binary
   search per increment).
2. Solve the block LP; its duals price every cell (pi_c = sum of the duals of its rows).
3. The Lagrangian L(duals) = duals . b + sum over increments of max(0, dv - pi_c dc) is an
   upper bound on the full LP (weak duality). Per round it comes from block sums plus the
   increments of the few blocks whose interval holds the price (one pass to find them);
   the final certificate recomputes it over all increments.
4. Fill each cell's spend greedily by ratio (exact inside a cell); split only the blocks
   that hold a price or are partly taken, merge the settled ones per cell, and repeat
   until bound and plan meet.

The result is the per-customer LP optimum with a certificate (bound, gap, shadow prices).
Integral units left between two levels (at most one or two per cell) are settled by a
small MIP over all of their levels and those of a few neighbours per cell (a size that
does not grow with the portfolio). ``method="full"`` hands PuLP one column per hull
increment instead; it is the slow reference path.

Millions of increments: no sort of them, no Python loop over them, and elementwise passes
run in cache-sized chunks, since fresh full-size arrays cost more than the arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint, normalized_rhs, row_matrix
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import solvers
from engine.options import OptionSet

EPS = 1e-9
_CHUNK = 1 << 17  # increments per piece of an elementwise pass (fits in cache)
SNAP = 1e-12  # shares this close to 0 or 1 are float noise (a tiny share may be real: keep it)


@dataclass(frozen=True)
class LpSettings:
    method: str = "auto"  # auto | blocks | full
    solver: str = "auto"
    time_limit: float | None = None
    bins: int = 32
    tolerance: float = 1e-12
    max_rounds: int = 30
    repair: bool = True


@dataclass
class _Increments:
    """Hull increments of all units, with the index arithmetic shared by every step.

    Increments are grouped by unit: unit i's are ``start[i]:start[i + 1]``. No per-increment
    unit array is kept (it would be one more full-size array): ``unit_of`` finds the units
    of a few increments, ``unit`` builds the whole array for the rare paths that need it."""

    dc: NDArray[np.float64]
    dv: NDArray[np.float64]
    cell: NDArray[np.integer]  # int16 when cells are few: it is a full-size array
    start: NDArray[np.int64]  # per unit: index of its first increment; then the total

    @property
    def ratio(self) -> NDArray[np.float64]:
        return self.dv / self.dc

    @cached_property
    def unit(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(self.start.size - 1, dtype=np.int64), np.diff(self.start))

    def unit_of(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.searchsorted(self.start, positions, side="right") - 1

    def first_of_unit(self) -> NDArray[np.bool_]:
        """Per increment: whether it is its unit's first."""
        first = np.zeros(self.dc.size, dtype=bool)
        first[self.start[:-1][self.start[:-1] < self.dc.size]] = True
        return first

    def prefix_fill(self, taken: NDArray[np.float64]) -> NDArray[np.float64]:
        """Same spend per unit, taken in order: at least as valuable on a concave hull.

        A block solution already takes each unit's increments in order (they are sorted by
        ratio); that is checked on boolean arrays, and only a solution that is not (the
        full method's, on ties) pays for the refill."""
        np.copyto(taken, 1.0, where=taken > 1 - SNAP)
        np.copyto(taken, 0.0, where=taken < SNAP)
        if taken.size > 1:
            later = taken[1:] > 0
            later &= taken[:-1] < 1
            later &= ~self.first_of_unit()[1:]
            if not later.any():
                return taken
        unit = self.unit
        spend = np.bincount(unit, weights=self.dc * taken, minlength=self.start.size - 1)
        cum = np.cumsum(self.dc)
        before = cum - self.dc - np.concatenate(([0.0], cum))[self.start[unit]]
        with np.errstate(over="ignore"):  # a tiny step overflows to inf, which clips to 1
            filled = np.clip((spend[unit] - before) / self.dc, 0.0, 1.0)
        filled[filled > 1 - SNAP] = 1.0
        filled[filled < SNAP] = 0.0
        return filled


def _increments(options: OptionSet) -> tuple[_Increments, NDArray[np.int64]]:
    hull = options.hull
    counts, dc, dv = hull.steps(options.cost, options.value)
    start = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    first = hull.points[hull.offsets[:-1]]
    cell = options.cell
    small = np.int16 if options.n_cells < np.iinfo(np.int16).max else np.int64
    return _Increments(dc, dv, np.repeat(cell.astype(small), counts), start), first


def solve(
    options: OptionSet,
    rows: list[Constraint],
    settings: LpSettings = LpSettings(),
    should_stop: Callable[[], bool] = lambda: False,
) -> Allocation:
    started = time.perf_counter()
    inc, first = _increments(options)
    n_cells = options.n_cells
    matrix = row_matrix(rows, n_cells)
    rhs = normalized_rhs(rows)
    base_cost = np.bincount(options.cell, weights=options.cost[first], minlength=n_cells)
    rhs_eff = rhs - matrix @ base_cost
    base_value = float(options.value[first].sum())
    constrained = (matrix != 0).any(axis=0)[inc.cell]
    method = settings.method
    if method == "auto":
        method = "blocks"
    blocks: _Blocks | None = None
    status = "optimal"
    if not rows or not constrained.any():
        taken = (inc.dv > 0).astype(np.float64)
        duals = np.zeros(len(rows))
        if (rhs_eff < -1e-9 * np.maximum(1, np.abs(rhs))).any():
            _raise_infeasible(options, rows, rhs_eff)
        solver_name, rounds = "none", 0
    elif method == "full":
        taken, duals, solver_name = _solve_full(inc, constrained, matrix, rhs_eff, settings)
        rounds = 1
        if not np.isfinite(duals).all():
            _raise_infeasible(options, rows, rhs_eff)
    elif method == "blocks":
        try:
            taken, duals, solver_name, rounds, blocks = _solve_blocks(
                inc, constrained, matrix, rhs_eff, base_value, settings, should_stop, options, rows
            )
        except _Stopped as stop:
            taken, duals, solver_name, rounds, blocks = stop.result
            status = "time_limit"
    else:
        raise SolverError(f"unknown LP method {method!r}")
    taken = inc.prefix_fill(taken)
    lp_objective = base_value + float(inc.dv @ taken)
    prices = duals @ matrix if rows else np.zeros(n_cells)
    bound = _lagrangian(inc, prices, duals, rhs_eff, base_value)
    allocation = _to_allocation(options, inc, taken)
    allocation.method, allocation.solver, allocation.iterations = method, solver_name, rounds
    allocation.lp_objective, allocation.bound = lp_objective, max(bound, lp_objective)
    allocation.shadow_prices = {
        row.name: float(duals[k] * row.sense) for k, row in enumerate(rows)
    }
    allocation.status = status
    if status != "optimal":
        allocation.notes.append(
            "the solver stopped at its time limit; the plan is the last certified round's, "
            "within the reported gap of the optimum"
        )
    if settings.repair:
        _repair(options, rows, allocation, inc, constrained, blocks, prices, settings)
    allocation.seconds = time.perf_counter() - started
    return allocation


def _lagrangian(
    inc: _Increments,
    prices: NDArray[np.float64],
    duals: NDArray[np.float64],
    rhs_eff: NDArray[np.float64],
    base_value: float,
) -> float:
    total = 0.0
    for lo in range(0, inc.dc.size, _CHUNK):  # cache-sized pieces: no full-size temporary
        hi = lo + _CHUNK
        reduced = prices[inc.cell[lo:hi]]
        reduced *= inc.dc[lo:hi]
        np.subtract(inc.dv[lo:hi], reduced, out=reduced)
        total += float(np.maximum(reduced, 0.0, out=reduced).sum())
    return base_value + float(duals @ rhs_eff) + total


def _solve_full(
    inc: _Increments,
    constrained: NDArray[np.bool_],
    matrix: NDArray[np.float64],
    rhs_eff: NDArray[np.float64],
    settings: LpSettings,
) -> tuple[NDArray[np.float64], NDArray[np.float64], str]:
    """One PuLP column per hull increment of the constrained cells: the reference model."""
    idx = np.flatnonzero(constrained)
    cell = inc.cell[idx]
    sparse = []
    for k in range(matrix.shape[0]):
        coef = matrix[k, cell]
        nz = np.flatnonzero(coef)
        sparse.append((nz, coef[nz] * inc.dc[idx][nz]))
    result = solvers.maximize(
        inc.dv[idx], sparse, rhs_eff, solver=settings.solver, time_limit=settings.time_limit
    )
    taken = (~constrained & (inc.dv > 0)).astype(np.float64)
    if result.status == "infeasible":
        return taken, np.full(matrix.shape[0], np.nan), result.solver
    if result.status != "optimal":
        raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
    taken[idx] = np.clip(result.x, 0.0, 1.0)
    return taken, np.maximum(result.shadow_prices, 0.0), result.solver


@dataclass
class _Blocks:
    """The constrained increments grouped into blocks, each a (cell, ratio interval) pair.

    Per increment (``idx`` into :class:`_Increments`): its ratio, cost, value and block;
    per block: cell, interval ``[lo, hi)`` holding all of its ratios, sums and count.
    """

    idx: NDArray[np.int64] | None  # None: all increments, in order
    dc: NDArray[np.float64]
    dv: NDArray[np.float64]
    block: NDArray[np.int64]
    cell: NDArray[np.int64]
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    cost: NDArray[np.float64]
    value: NDArray[np.float64]
    count: NDArray[np.int64]
    splittable: NDArray[np.bool_]

    @classmethod
    def initial(
        cls, inc: _Increments, constrained: NDArray[np.bool_], n_cells: int, bins: int
    ) -> _Blocks:
        """One set of ratio quantiles for all cells, then (cell, bin) pairs. Ratios are
        binned on a monotone integer key of their bits (exponent and 4 mantissa bits), so
        binning millions of them costs a few integer passes, not a binary search each.
        Arrays are computed in place where possible: fresh memory is what costs most."""
        idx: NDArray[np.int64] | None = None
        if constrained.all():  # every cell constrained (a total budget): no copies
            dc, dv, cell = inc.dc, inc.dv, inc.cell
        else:
            idx = np.flatnonzero(constrained)
            dc, dv, cell = inc.dc[idx], inc.dv[idx], inc.cell[idx]
        coarse = np.empty(dc.size, dtype=np.int64)
        for lo in range(0, dc.size, _CHUNK):  # the ratios' keys, in cache-sized pieces
            ratio = np.divide(dv[lo:lo + _CHUNK], dc[lo:lo + _CHUNK])
            ratio += 0.0  # turns -0.0 into 0.0, which the key orders apart
            np.right_shift(_float_key(ratio), _SHIFT, out=coarse[lo:lo + _CHUNK])
        low, high = int(coarse.min()), int(coarse.max())
        step = max(1, coarse.size // 200_000)
        sample = coarse[::step]
        edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]).astype(np.int64))
        edges = edges[edges > low]
        table = np.searchsorted(edges, np.arange(low, high + 1), side="right")
        n_bins = edges.size + 1
        used = np.zeros(n_cells, dtype=bool)
        used[cell] = True
        offset = (np.cumsum(used) - 1) * n_bins  # first key of each used cell
        key = coarse  # (cell rank, bin) keys, in place and in cache-sized pieces
        for lo in range(0, key.size, _CHUNK):
            piece = key[lo:lo + _CHUNK]
            piece -= low
            np.take(table, piece, out=piece, mode="clip")
            piece += offset[cell[lo:lo + _CHUNK]]
        del coarse
        count = np.bincount(key)
        present = count > 0
        np.take(np.cumsum(present) - 1, key, out=key, mode="clip")  # the block ids, in place
        block = key
        keys = np.flatnonzero(present)
        bounds = np.concatenate(([-np.inf], _key_float(edges << _SHIFT), [np.inf]))
        return cls(
            idx=idx,
            dc=dc,
            dv=dv,
            block=block,
            cell=np.flatnonzero(used)[keys // n_bins],
            lo=bounds[keys % n_bins],
            hi=bounds[keys % n_bins + 1],
            cost=np.bincount(block, weights=dc).astype(np.float64),
            value=np.bincount(block, weights=dv).astype(np.float64),
            count=count[present],
            splittable=np.ones(keys.size, dtype=bool),
        )

    @classmethod
    def by_cell(cls, inc: _Increments, constrained: NDArray[np.bool_]) -> _Blocks:
        """One block per cell (the grouping the full method's repair needs)."""
        idx = np.flatnonzero(constrained)
        cells, block = np.unique(inc.cell[idx], return_inverse=True)
        dc, dv = inc.dc[idx], inc.dv[idx]
        n = cells.size
        return cls(
            idx, dc, dv, block, cells, np.full(n, -np.inf), np.full(n, np.inf),
            np.bincount(block, weights=dc).astype(np.float64),
            np.bincount(block, weights=dv).astype(np.float64),
            np.bincount(block), np.ones(n, dtype=bool),
        )

    def ratio(self, positions: NDArray[np.int64]) -> NDArray[np.float64]:
        """Value per unit of spend of the increments at ``positions`` (no full-size copy)."""
        return self.dv[positions] / self.dc[positions] + 0.0

    def increments(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        """Indices into :class:`_Increments` of positions in these arrays."""
        return positions if self.idx is None else self.idx[positions]

    def members(self, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Positions (into ``idx``) of the increments of the chosen blocks: one pass."""
        return np.flatnonzero(chosen[self.block])

    def split(self, positions: NDArray[np.int64], prices: NDArray[np.float64], bins: int) -> None:
        """Split the blocks holding ``positions`` at quantiles of their own ratios and at
        their cell's price (a Python loop over blocks only, never over increments)."""
        positions = positions[np.argsort(self.block[positions], kind="stable")]
        groups = np.split(positions, np.flatnonzero(np.diff(self.block[positions])) + 1)
        cells, los, his = self.cell.tolist(), self.lo.tolist(), self.hi.tolist()
        flags = self.splittable.tolist()
        for group in groups:
            old = int(self.block[group[0]])
            r = self.ratio(group)
            cut = np.append(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]), prices[cells[old]])
            cut = np.unique(cut)
            cut = cut[(cut > r.min()) & (cut <= r.max())]
            if cut.size == 0:  # all ratios equal: the fill already treats it exactly
                flags[old] = False
                continue
            sub = np.searchsorted(cut, r, side="right")
            bounds = np.concatenate(([los[old]], cut, [his[old]]))
            used = np.flatnonzero(np.bincount(sub, minlength=cut.size + 1))
            ids = np.empty(cut.size + 1, dtype=np.int64)
            ids[used[0]] = old
            ids[used[1:]] = np.arange(len(cells), len(cells) + used.size - 1)
            los[old], his[old] = float(bounds[used[0]]), float(bounds[used[0] + 1])
            for s in used[1:]:
                cells.append(cells[old])
                los.append(float(bounds[s]))
                his.append(float(bounds[s + 1]))
                flags.append(True)
            self.block[group] = ids[sub]
        self.cell = np.array(cells, dtype=np.int64)
        self.lo, self.hi = np.array(los), np.array(his)
        self.splittable = np.array(flags, dtype=bool)
        n = self.cell.size
        changed = np.concatenate(groups)
        touched = np.zeros(n, dtype=bool)
        touched[self.block[changed]] = True
        b = self.block[changed]
        cost, value, count = (np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64))
        old_n = self.cost.size
        cost[:old_n], value[:old_n], count[:old_n] = self.cost, self.value, self.count
        cost[touched], value[touched], count[touched] = 0.0, 0.0, 0
        cost += np.bincount(b, weights=self.dc[changed], minlength=n)
        value += np.bincount(b, weights=self.dv[changed], minlength=n)
        count += np.bincount(b, minlength=n)
        self.cost, self.value, self.count = cost, value, count


    def next_to(self, chosen: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Blocks next to a chosen one in their cell's order of ratio intervals."""
        order = np.lexsort((self.lo, self.cell))
        same = self.cell[order][1:] == self.cell[order][:-1]
        hit = chosen[order]
        near = np.zeros(order.size, dtype=bool)
        near[1:] |= hit[:-1] & same
        near[:-1] |= hit[1:] & same
        out = np.zeros(order.size, dtype=bool)
        out[order] = near
        return out

    def merge(self, group: NDArray[np.int64]) -> None:
        """Merge the blocks sharing a ``group`` label >= 0 into one (-1: keep as it is)."""
        n = group.size
        keep = group < 0
        labels = np.unique(group[~keep])
        if labels.size == n - int(keep.sum()):  # nothing to merge
            return
        new_id = np.empty(n, dtype=np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        merged = np.searchsorted(labels, group[~keep])
        new_id[~keep] = int(keep.sum()) + merged
        m = int(keep.sum()) + labels.size
        self.block = new_id[self.block]
        cell = np.empty(m, dtype=np.int64)
        cell[new_id] = self.cell
        lo, hi = np.full(m, np.inf), np.full(m, -np.inf)
        np.minimum.at(lo, new_id, self.lo)
        np.maximum.at(hi, new_id, self.hi)
        self.cell, self.lo, self.hi = cell, lo, hi
        self.cost = np.bincount(new_id, weights=self.cost, minlength=m).astype(np.float64)
        self.value = np.bincount(new_id, weights=self.value, minlength=m).astype(np.float64)
        self.count = np.bincount(new_id, weights=self.count, minlength=m).astype(np.int64)
        splittable = np.ones(m, dtype=bool)
        splittable[new_id[keep]] = self.splittable[keep]
        self.splittable = splittable


_SHIFT = 48  # keep the sign, 11 exponent bits and 4 mantissa bits of a ratio's key
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)


def _float_key(x: NDArray[np.float64]) -> NDArray[np.int64]:
    """An int64 key ordered as the floats are (bit trick: flip the magnitude of negatives)."""
    bits = x.view(np.int64)
    key = bits >> 63
    key &= _SIGN_OFF
    key ^= bits
    return key


def _key_float(key: NDArray[np.int64]) -> NDArray[np.float64]:
    """Inverse of :func:`_float_key`."""
    return np.asarray(key ^ ((key >> 63) & _SIGN_OFF), dtype=np.int64).view(np.float64)


def _solve_blocks(
    inc: _Increments,
    constrained: NDArray[np.bool_],
    matrix: NDArray[np.float64],
    rhs_eff: NDArray[np.float64],
    base_value: float,
    settings: LpSettings,
    should_stop: Callable[[], bool],
    options: OptionSet,
    rows: list[Constraint],
) -> tuple[NDArray[np.float64], NDArray[np.float64], str, int, _Blocks]:
    """Block LP, then refinement of the blocks next to each cell's price until exact.

    Every round costs one LP over blocks plus one pass over the increments (finding the
    members of the few blocks that straddle a price or are partly taken); the primal value
    and the Lagrangian bound come from block sums plus those members."""
    blocks = _Blocks.initial(inc, constrained, options.n_cells, settings.bins)
    free = inc.dv[~constrained]
    free_value = float(free[free > 0].sum())
    duals = np.zeros(matrix.shape[0])
    solver_name = "none"
    rounds = 0
    # With a time limit, each certified round's plan is kept: a later round cut short
    # returns it (feasible, with its Lagrangian bound) instead of nothing.
    keep = settings.time_limit is not None
    last: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    while True:
        rounds += 1
        if should_stop():
            raise CancelledError("allocation cancelled")
        coef = matrix[:, blocks.cell] * blocks.cost
        result = solvers.maximize(
            blocks.value, coef, rhs_eff, solver=settings.solver, time_limit=settings.time_limit
        )
        solver_name = result.solver
        if result.status == "infeasible":
            _raise_infeasible(options, rows, rhs_eff)
        if result.status != "optimal" and last is None and keep and (rhs_eff >= 0).all():
            # Cut short before any certified round: the cheapest levels keep every row
            # (no minimum is binding there), and zero duals still give a valid bound.
            last = ((~constrained & (inc.dv > 0)).astype(np.float64), np.zeros_like(duals))
        if result.status != "optimal" and last is not None:
            raise _Stopped(last[0], last[1], solver_name, rounds - 1, blocks, result.status)
        if result.status != "optimal":
            raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
        x = np.clip(result.x, 0.0, 1.0)
        duals = np.maximum(result.shadow_prices, 0.0)
        prices = duals @ matrix
        price = prices[blocks.cell]
        full = x >= 1 - SNAP
        partial = (x > SNAP) & ~full
        straddle = (blocks.lo < price) & (price < blocks.hi)
        touched = partial | straddle
        pos = blocks.members(touched)
        taken = _fill(blocks, pos, x, full, partial, options.n_cells)
        primal = (
            base_value
            + free_value
            + float(blocks.value[full & ~touched].sum())
            + float(blocks.dv[pos] @ taken)
        )
        above = (blocks.lo >= price) & ~straddle
        in_straddle = pos[straddle[blocks.block[pos]]]
        reduced = blocks.dv[in_straddle] - prices[blocks.cell[blocks.block[in_straddle]]] * (
            blocks.dc[in_straddle]
        )
        bound = (
            base_value
            + free_value
            + float(duals @ rhs_eff)
            + float((blocks.value - price * blocks.cost)[above].sum())
            + float(np.maximum(reduced, 0.0).sum())
        )
        split = blocks.splittable & (blocks.count > 1) & touched
        done = bound - primal <= settings.tolerance * max(1.0, abs(bound))
        if done or not split.any() or rounds >= settings.max_rounds:
            break
        if keep:
            last = (_expand(blocks, full, pos, taken, inc, constrained), duals)
        # Blocks away from every price are settled (wholly taken or not at all): merge them
        # per cell so the next LP only sees the detail that matters.
        settled = np.where(touched | blocks.next_to(touched), -1, blocks.cell * 2 + full)
        blocks.split(pos[split[blocks.block[pos]]], prices, settings.bins)
        blocks.merge(np.append(settled, np.full(blocks.cell.size - settled.size, -1)))
    return _expand(blocks, full, pos, taken, inc, constrained), duals, solver_name, rounds, blocks


class _Stopped(Exception):
    """A refinement round was cut short; carries the last certified round's plan."""

    def __init__(
        self,
        taken: NDArray[np.float64],
        duals: NDArray[np.float64],
        solver: str,
        rounds: int,
        blocks: _Blocks,
        status: str,
    ) -> None:
        super().__init__(status)
        self.result = (taken, duals, solver, rounds, blocks)
        self.status = status


def _expand(
    blocks: _Blocks,
    full: NDArray[np.bool_],
    pos: NDArray[np.int64],
    taken: NDArray[np.float64],
    inc: _Increments,
    constrained: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Share taken of every increment from a round's block solution."""
    taken_c = full[blocks.block].astype(np.float64)
    taken_c[pos] = taken
    if blocks.idx is None:
        return taken_c
    full_taken = (~constrained & (inc.dv > 0)).astype(np.float64)
    full_taken[blocks.idx] = taken_c
    return full_taken


def _fill(
    blocks: _Blocks,
    pos: NDArray[np.int64],
    x: NDArray[np.float64],
    full: NDArray[np.bool_],
    partial: NDArray[np.bool_],
    n_cells: int,
) -> NDArray[np.float64]:
    """Share taken of each increment at ``pos``: 1 in full blocks; each cell's spend on its
    partly taken blocks refilled in decreasing ratio (exact within a cell)."""
    b = blocks.block[pos]
    taken = full[b].astype(np.float64)
    part = np.flatnonzero(partial[b])
    if part.size:
        budget = np.bincount(
            blocks.cell[partial], weights=(blocks.cost * x)[partial], minlength=n_cells
        )
        p = pos[part]
        c = blocks.cell[blocks.block[p]]
        order = np.lexsort((-blocks.ratio(p), c))
        c, dc = c[order], blocks.dc[p[order]]
        cum = np.cumsum(dc)
        first_of_cell = np.r_[True, c[1:] != c[:-1]]
        starts = np.maximum.accumulate(np.where(first_of_cell, np.arange(order.size), 0))
        before = cum - dc - np.concatenate(([0.0], cum))[starts]
        taken[part[order]] = np.clip((budget[c] - before) / dc, 0.0, 1.0)
    return taken


def _to_allocation(
    options: OptionSet, inc: _Increments, taken: NDArray[np.float64]
) -> Allocation:
    n = options.n_units
    hull = options.hull
    counts = np.diff(inc.start)
    whole = np.zeros(n, dtype=np.int64)
    has_steps = counts > 0
    if has_steps.any():  # whole steps taken per unit: a segment sum over its increments
        full = (taken >= 1.0).view(np.uint8)
        whole[has_steps] = np.add.reduceat(full, inc.start[:-1][has_steps], dtype=np.int64)
    part = np.flatnonzero((taken > 0.0) & (taken < 1.0))
    theta = np.zeros(n)
    theta[inc.unit_of(part)] = taken[part]
    lo = hull.points[hull.offsets[:-1] + whole]
    hi = lo.copy()
    has = theta > 0
    hi[has] = hull.points[hull.offsets[:-1][has] + whole[has] + 1]
    return Allocation(lo, hi, theta, "optimal", "", "")


def _raise_infeasible(
    options: OptionSet, rows: list[Constraint], rhs_eff: NDArray[np.float64]
) -> None:
    """Name the rows that cannot be met on their own, else the conflict as a whole."""
    n = options.n_units
    max_cost = np.maximum.reduceat(options.cost, options.offsets[:-1]) if n else np.zeros(0)
    min_cost = np.minimum.reduceat(options.cost, options.offsets[:-1]) if n else np.zeros(0)
    most = np.bincount(options.cell, weights=max_cost, minlength=options.n_cells)
    least = np.bincount(options.cell, weights=min_cost, minlength=options.n_cells)
    reasons = []
    for row in rows:
        if row.sense < 0 and most[row.cells].sum() < row.rhs:
            reasons.append(
                f"{row.name} of {row.rhs:g} exceeds the most its units can spend "
                f"({most[row.cells].sum():g})"
            )
        if row.sense > 0 and least[row.cells].sum() > row.rhs:
            reasons.append(
                f"{row.name} of {row.rhs:g} is below the least its units must spend "
                f"({least[row.cells].sum():g})"
            )
    if not reasons:
        names = [r.name for r in rows if r.sense < 0]
        reasons.append(f"the minimums {names} cannot be met within the budgets and caps")
    raise InfeasiblePlanError("; ".join(reasons), [r.name for r in rows])


def _repair(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    inc: _Increments,
    constrained: NDArray[np.bool_],
    blocks: _Blocks | None,
    prices: NDArray[np.float64],
    settings: LpSettings,
) -> None:
    """Give each customer left between two levels one level, by a MIP over their options.

    The MIP's size does not grow with the portfolio: the split customers (at most one or two
    per cell) plus a fixed number of neighbours per cell."""
    split = np.flatnonzero(~options.fractional & (allocation.theta > 0))
    if split.size == 0:
        return
    if blocks is None:
        blocks = _Blocks.by_cell(inc, constrained)
    # Widest neighbourhood first: more customers free to move gives a better integer plan.
    attempts = [_neighbours(options, rows, inc, blocks, prices, split, 8), split]
    if options.cost.size <= 5_000:  # small enough to let every customer move: exact MIP
        attempts.insert(0, np.flatnonzero(~options.fractional))
    for units in attempts:
        if _repair_units(options, rows, allocation, units, settings):
            allocation.notes.append(f"integer repair: MIP over {units.size} customers")
            return
    raise InfeasiblePlanError(
        "no plan giving every customer exactly one level meets the minimums "
        f"(the LP relaxation does, with bound {allocation.bound:.6g})",
        [r.name for r in rows if r.sense < 0],
    )


def _neighbours(
    options: OptionSet,
    rows: list[Constraint],
    inc: _Increments,
    blocks: _Blocks,
    prices: NDArray[np.float64],
    split: NDArray[np.int64],
    per_cell: int,
) -> NDArray[np.int64]:
    """The split customers plus, in every cell sharing a row with them, the customers whose
    increments are closest to the cell's price (the cheapest ones to move).

    A cell's blocks are disjoint ratio intervals, so the ``per_cell`` nearest increments lie
    in the block holding the price and the blocks next to it holding ``per_cell`` increments
    on each side: only those blocks' members are looked at."""
    matrix = row_matrix(rows, options.n_cells) != 0
    touched = matrix[:, np.unique(options.cell[split])].any(axis=1)
    wanted = matrix[touched].any(axis=0)
    chosen = np.zeros(blocks.cell.size, dtype=bool)
    cap = 256 * per_cell
    for c in np.flatnonzero(wanted):
        own = np.flatnonzero(blocks.cell == c)
        own = own[np.argsort(blocks.lo[own], kind="stable")]
        counts = blocks.count[own]
        j = int(np.searchsorted(blocks.lo[own], prices[c], side="right")) - 1
        # blocks j-1, j-2, ... (all below the price) and j+1, j+2, ... (all above it), up to
        # per_cell increments on each side; a big settled block ends the walk (reading all
        # of its members would cost a pass over much of the cell for a few neighbours)
        down, up = counts[:max(j, 0)][::-1], counts[j + 1:]
        n_down = int(np.searchsorted(np.cumsum(down), per_cell)) + 1
        n_up = int(np.searchsorted(np.cumsum(up), per_cell)) + 1
        n_down = min(n_down, int(np.argmax(np.append(down, cap + 1) > cap)))
        n_up = min(n_up, int(np.argmax(np.append(up, cap + 1) > cap)))
        chosen[own[max(j - n_down, 0):j + 1 + n_up]] = True
        if j >= 0:
            chosen[own[j]] = True
    pos = blocks.members(chosen)
    cell = blocks.cell[blocks.block[pos]]
    near = np.abs(blocks.ratio(pos) - prices[cell])
    picked = []
    for c in np.flatnonzero(wanted):  # per cell the per_cell nearest: a partition, no sort
        own = np.flatnonzero(cell == c)
        if own.size > per_cell:
            own = own[np.argpartition(near[own], per_cell - 1)[:per_cell]]
        picked.append(pos[own])
    best = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    integral = np.unique(np.concatenate([split, inc.unit_of(blocks.increments(best))]))
    return integral[~options.fractional[integral]]


def _repair_units(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    units: NDArray[np.int64],
    settings: LpSettings,
) -> bool:
    spend = allocation.spend(options)
    spend[units] = 0.0
    matrix = row_matrix(rows, options.n_cells)
    fixed = matrix @ np.bincount(options.cell, weights=spend, minlength=options.n_cells)
    residual = normalized_rhs(rows) - fixed
    starts, ends = options.offsets[units], options.offsets[units + 1]
    counts = ends - starts
    opt = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    owner = np.repeat(np.arange(units.size), counts)
    coef = matrix[:, options.cell[units][owner]] * options.cost[opt]
    one_each = np.zeros((units.size, opt.size))
    one_each[owner, np.arange(opt.size)] = 1.0
    # Keep the residual a little slack so float noise never breaks a row after rounding.
    slack = 1e-9 * np.maximum(1.0, np.abs(normalized_rhs(rows)))
    result = solvers.maximize(
        options.value[opt],
        coef,
        residual + slack,
        a_eq=one_each,
        b_eq=np.ones(units.size),
        integer=True,
        solver=settings.solver,
        time_limit=settings.time_limit,
    )
    if result.status != "optimal":
        return False
    chosen = opt[result.x > 0.5]
    owners = owner[result.x > 0.5]
    if owners.size != units.size:
        return False
    # A MIP solver's feasibility tolerance is absolute: check the rows in exact arithmetic.
    used = matrix @ np.bincount(
        options.cell[units[owners]], weights=options.cost[chosen], minlength=options.n_cells
    )
    if (used > residual + 2 * slack).any():
        return False
    allocation.lo[units[owners]] = chosen
    allocation.hi[units[owners]] = chosen
    allocation.theta[units[owners]] = 0.0
    return True
