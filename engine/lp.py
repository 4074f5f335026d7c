"""The exact allocation LP, solved through PuLP on the structure of the problem.

Every coupling row is a sum of spend over (segment, kind) cells. Within a cell, customers'
hull increments compete only through value per unit of spend, so the LP optimum inside a
cell is a threshold on that ratio. PuLP therefore sees *blocks* of increments (a cell's
increments whose ratio falls in one interval) instead of one column per customer-level:

1. Bin each cell's increments by ratio; a block's column has the block's summed cost/value.
2. Solve the block LP; its duals price every cell (pi_c = sum of the duals of its rows).
3. The Lagrangian L(duals) = duals . b + sum over increments of max(0, dv - pi_c dc) is an
   upper bound on the full LP (weak duality), computed in numpy over all increments.
4. Fill each cell's spend greedily by ratio (exact inside a cell); split only the blocks
   whose ratio interval contains the cell's price; repeat until bound and plan meet.

The result is the per-customer LP optimum with a certificate (bound, gap, shadow prices).
Integral units left between two levels (at most one per cell) are settled by a small MIP
over all of their levels. ``method="full"`` hands PuLP one column per hull increment
instead; it is the slow reference path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engine import solvers
from engine.allocation import Allocation
from engine.constraints import Constraint, normalized_rhs, row_matrix
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.options import OptionSet

EPS = 1e-9


@dataclass(frozen=True)
class LpSettings:
    method: str = "auto"  # auto | blocks | full
    solver: str = "auto"
    time_limit: float | None = None
    bins: int = 64
    tolerance: float = 1e-12
    max_rounds: int = 30
    repair: bool = True


@dataclass
class _Increments:
    """Hull increments of all units, with the index arithmetic shared by every step."""

    unit: NDArray[np.int64]
    dc: NDArray[np.float64]
    dv: NDArray[np.float64]
    cell: NDArray[np.int64]
    start: NDArray[np.int64]  # per unit: index of its first increment

    @property
    def ratio(self) -> NDArray[np.float64]:
        return self.dv / self.dc

    def prefix_fill(self, taken: NDArray[np.float64]) -> NDArray[np.float64]:
        """Same spend per unit, taken in order: at least as valuable on a concave hull."""
        spend = np.bincount(self.unit, weights=self.dc * taken, minlength=self.start.size - 1)
        cum = np.cumsum(self.dc)
        before = cum - self.dc - np.concatenate(([0.0], cum))[self.start[self.unit]]
        filled = np.clip((spend[self.unit] - before) / self.dc, 0.0, 1.0)
        filled[filled > 1 - EPS] = 1.0
        filled[filled < EPS] = 0.0
        return filled


def _increments(options: OptionSet) -> tuple[_Increments, NDArray[np.int64]]:
    hull = options.hull
    unit, dc, dv = hull.increments(options.cost, options.value)
    counts = np.diff(hull.offsets) - 1
    start = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    first = hull.points[hull.offsets[:-1]]
    return _Increments(unit, dc, dv, options.cell[unit], start), first


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
        taken, duals, solver_name, rounds = _solve_blocks(
            inc, constrained, matrix, rhs_eff, base_value, settings, should_stop, options, rows
        )
    else:
        raise SolverError(f"unknown LP method {method!r}")
    taken = inc.prefix_fill(taken)
    lp_objective = base_value + float(inc.dv @ taken)
    prices = duals @ matrix if rows else np.zeros(n_cells)
    bound = _lagrangian(inc, prices, duals, rhs_eff, base_value)
    allocation = _to_allocation(options, inc, first, taken)
    allocation.method, allocation.solver, allocation.iterations = method, solver_name, rounds
    allocation.lp_objective, allocation.bound = lp_objective, max(bound, lp_objective)
    allocation.shadow_prices = {
        row.name: float(duals[k] * row.sense) for k, row in enumerate(rows)
    }
    allocation.status = "optimal"
    if settings.repair:
        _repair(options, rows, allocation, inc, prices, settings)
    allocation.seconds = time.perf_counter() - started
    return allocation


def _lagrangian(
    inc: _Increments,
    prices: NDArray[np.float64],
    duals: NDArray[np.float64],
    rhs_eff: NDArray[np.float64],
    base_value: float,
) -> float:
    reduced = inc.dv - prices[inc.cell] * inc.dc
    return base_value + float(duals @ rhs_eff) + float(np.maximum(reduced, 0.0).sum())


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
) -> tuple[NDArray[np.float64], NDArray[np.float64], str, int]:
    idx = np.flatnonzero(constrained)
    ratio = inc.ratio[idx]
    cell = inc.cell[idx]
    dc, dv = inc.dc[idx], inc.dv[idx]
    # Initial blocks: one set of ratio quantiles for all cells, then (cell, bin) pairs.
    step = max(1, idx.size // 200_000)
    edges = np.unique(np.quantile(ratio[::step], np.linspace(0, 1, settings.bins + 1)[1:-1]))
    bins = np.searchsorted(edges, ratio, side="right")
    key = cell * (edges.size + 1) + bins
    present = np.bincount(key) > 0
    relabel = np.cumsum(present) - 1
    block = relabel[key]
    keys = np.flatnonzero(present)
    bounds = np.concatenate(([-np.inf], edges, [np.inf]))
    b_cell = keys // (edges.size + 1)
    b_lo = bounds[keys % (edges.size + 1)]
    b_hi = bounds[keys % (edges.size + 1) + 1]
    splittable = np.ones(keys.size, dtype=bool)

    taken_c = np.zeros(idx.size)
    duals = np.zeros(matrix.shape[0])
    solver_name = "none"
    rounds = 0
    full_taken = (~constrained & (inc.dv > 0)).astype(np.float64)
    for rounds in range(1, settings.max_rounds + 1):  # noqa: B007
        if should_stop():
            raise CancelledError("allocation cancelled")
        n_blocks = b_cell.size
        b_cost = np.bincount(block, weights=dc, minlength=n_blocks)
        b_value = np.bincount(block, weights=dv, minlength=n_blocks)
        b_count = np.bincount(block, minlength=n_blocks)
        coef = matrix[:, b_cell] * b_cost
        result = solvers.maximize(
            b_value, coef, rhs_eff, solver=settings.solver, time_limit=settings.time_limit
        )
        solver_name = result.solver
        if result.status == "infeasible":
            _raise_infeasible(options, rows, rhs_eff)
        if result.status != "optimal":
            raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
        x = np.clip(result.x, 0.0, 1.0)
        duals = np.maximum(result.shadow_prices, 0.0)
        prices = duals @ matrix
        taken_c = _fill(x, block, b_cell, b_cost, ratio, cell, dc)
        full_taken[idx] = taken_c
        primal = base_value + float(inc.dv @ full_taken)
        bound = _lagrangian(inc, prices, duals, rhs_eff, base_value)
        if bound - primal <= settings.tolerance * max(1.0, abs(bound)):
            break
        price = prices[b_cell]
        partial = (x > EPS) & (x < 1 - EPS)
        split = splittable & (b_count > 1) & (((b_lo < price) & (price < b_hi)) | partial)
        if not split.any():
            break
        block, b_cell, b_lo, b_hi, splittable = _split(
            split, block, b_cell, b_lo, b_hi, splittable, ratio, settings.bins
        )
    return full_taken, duals, solver_name, rounds


def _fill(
    x: NDArray[np.float64],
    block: NDArray[np.int64],
    b_cell: NDArray[np.int64],
    b_cost: NDArray[np.float64],
    ratio: NDArray[np.float64],
    cell: NDArray[np.int64],
    dc: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Spend of each cell's partly taken blocks, refilled in decreasing ratio (cell-exact)."""
    full = x >= 1 - EPS
    partial = (x > EPS) & ~full
    taken = full[block].astype(np.float64)
    if partial.any():
        budget = np.bincount(b_cell[partial], weights=(b_cost * x)[partial], minlength=1)
        members = np.flatnonzero(partial[block])
        order = members[np.lexsort((-ratio[members], cell[members]))]
        c_cell, c_dc = cell[order], dc[order]
        cum = np.cumsum(c_dc)
        first_of_cell = np.r_[True, c_cell[1:] != c_cell[:-1]]
        starts = np.maximum.accumulate(np.where(first_of_cell, np.arange(order.size), 0))
        before = cum - c_dc - np.concatenate(([0.0], cum))[starts]
        taken[order] = np.clip((budget[c_cell] - before) / c_dc, 0.0, 1.0)
    return taken


def _split(
    split: NDArray[np.bool_],
    block: NDArray[np.int64],
    b_cell: NDArray[np.int64],
    b_lo: NDArray[np.float64],
    b_hi: NDArray[np.float64],
    splittable: NDArray[np.bool_],
    ratio: NDArray[np.float64],
    bins: int,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.bool_],
]:
    """Split the chosen blocks at quantiles of their own ratios (a loop over blocks only)."""
    members = np.flatnonzero(split[block])
    members = members[np.argsort(block[members], kind="stable")]
    groups = np.split(members, np.flatnonzero(np.diff(block[members])) + 1)
    cells, los, his, flags = [list(a) for a in (b_cell, b_lo, b_hi, splittable)]
    for group in groups:
        old = int(block[group[0]])
        r = ratio[group]
        edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = edges[(edges > r.min()) & (edges <= r.max())]
        if edges.size == 0:  # all ratios equal: the fill already treats it exactly
            flags[old] = False
            continue
        sub = np.searchsorted(edges, r, side="right")
        bounds = np.concatenate(([b_lo[old]], edges, [b_hi[old]]))
        used = np.unique(sub)
        new_ids = {}
        for j, s in enumerate(used):
            if j == 0:
                new_ids[s] = old
                los[old], his[old] = bounds[s], bounds[s + 1]
            else:
                new_ids[s] = len(cells)
                cells.append(b_cell[old])
                los.append(bounds[s])
                his.append(bounds[s + 1])
                flags.append(True)
        lookup = np.zeros(used.max() + 1, dtype=np.int64)
        for s, b in new_ids.items():
            lookup[s] = b
        block[group] = lookup[sub]
    return (
        block,
        np.array(cells, dtype=np.int64),
        np.array(los),
        np.array(his),
        np.array(flags, dtype=bool),
    )


def _to_allocation(
    options: OptionSet, inc: _Increments, first: NDArray[np.int64], taken: NDArray[np.float64]
) -> Allocation:
    n = options.n_units
    hull = options.hull
    whole = np.bincount(inc.unit, weights=(taken >= 1.0).astype(np.float64), minlength=n)
    whole = whole.astype(np.int64)
    part = (taken > 0.0) & (taken < 1.0)
    theta = np.zeros(n)
    theta[inc.unit[part]] = taken[part]
    lo = hull.points[hull.offsets[:-1] + whole]
    hi = lo.copy()
    has = theta > 0
    hi[has] = hull.points[hull.offsets[:-1][has] + whole[has] + 1]
    del first
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
    prices: NDArray[np.float64],
    settings: LpSettings,
) -> None:
    """Give each customer left between two levels one level, by a MIP over their options."""
    split = np.flatnonzero(~options.fractional & (allocation.theta > 0))
    if split.size == 0:
        return
    # Widest neighbourhood first: more customers free to move gives a better integer plan.
    attempts = [_neighbours(options, rows, inc, prices, split, 24), split]
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
    prices: NDArray[np.float64],
    split: NDArray[np.int64],
    per_cell: int,
) -> NDArray[np.int64]:
    """The split customers plus, in every cell sharing a row with them, the customers whose
    increments are closest to the cell's price (the cheapest ones to move)."""
    matrix = row_matrix(rows, options.n_cells) != 0
    touched = matrix[:, np.unique(options.cell[split])].any(axis=1)
    cells = np.flatnonzero(matrix[touched].any(axis=0))
    near = np.abs(inc.ratio - prices[inc.cell])
    chosen = [split]
    for c in cells:
        members = np.flatnonzero(inc.cell == c)
        k = min(per_cell, members.size)
        best = members[np.argpartition(near[members], k - 1)[:k]] if k else members
        chosen.append(inc.unit[best])
    integral = np.unique(np.concatenate(chosen))
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
    allocation.lo[units[owners]] = chosen
    allocation.hi[units[owners]] = chosen
    allocation.theta[units[owners]] = 0.0
    return True
