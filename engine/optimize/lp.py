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
Small plans (up to ``engine.optimize.small.MAX_OPTIONS`` options, ``method="auto"``, HiGHS)
skip all of this: the full per-customer LP and MIP go to HiGHS directly, the same answer
in milliseconds; whatever that path cannot settle comes back here.
Integral units left between two levels (at most one or two per cell) are settled by a
small MIP over all of their levels and those of a few neighbours per cell (a size that
does not grow with the portfolio). ``method="full"`` hands PuLP one column per hull
increment instead; it is the slow reference path.

Millions of increments: no sort of them, no Python loop over them, and elementwise passes
run in cache-sized chunks, since fresh full-size arrays cost more than the arithmetic.

This module is the driver (``solve``, ``LpSettings``, the refinement rounds, the full
reference model). The pieces: ``engine.optimize.increments`` (options <-> hull increments),
``engine.optimize.blocks`` (the ratio blocks and their float keys) and
``engine.optimize.repair`` (the integer repair MIP and its neighbourhood).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine import memory, parallel
from engine.allocation import Allocation
from engine.constraints import Constraint, normalized_rhs, sparse_row_matrix, spend_only
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import small, solvers
from engine.optimize.blocks import Blocks, expand, fill, shares
from engine.optimize.increments import CHUNK, SNAP, HullIncrements, Increments, Shares
from engine.optimize.lagrange import solve_lagrange, two_largest
from engine.optimize.proof import GAP, prove
from engine.optimize.repair import repair
from engine.options import OptionSet

EPS = 1e-9
MERGE_ABOVE = 4096  # block LP columns past which settled blocks are merged
TRIM_OPTIONS = 1_000_000  # options above which the solve returns its free heap pages


@dataclass(frozen=True)
class LpSettings:
    method: str = "auto"  # auto | blocks | full
    solver: str = "auto"
    time_limit: float | None = None
    bins: int = 32
    tolerance: float = 1e-12
    max_rounds: int = 30
    repair: bool = True
    # Seconds for proving the integer optimum (reduced-cost fixing and the core MIP);
    # None: no limit. Past it the plan is "feasible" with its proven gap.
    mip_time_limit: float | None = 60.0


def solve(
    options: OptionSet,
    rows: list[Constraint],
    settings: LpSettings = LpSettings(),
    should_stop: Callable[[], bool] = lambda: False,
) -> Allocation:
    """The LP optimum of ``options`` under ``rows``, with its certificate, then (unless
    ``settings.repair`` is off) one level for every integral unit."""
    started = time.perf_counter()
    if settings.method == "auto" and settings.repair and small.eligible(options, rows) and (
            solvers.resolve(settings.solver) == "highs"):
        direct = small.solve(options, rows, _tighter(settings.time_limit, settings.mip_time_limit),
                             should_stop)
        if direct is not None:  # the proven optimum; anything else takes the general path
            direct.seconds = time.perf_counter() - started
            return direct
    if rows and not spend_only(rows):  # a limit on contacts, calls...: no ratio blocks
        allocation = _solve_resources(options, rows, settings, should_stop)
        allocation.seconds = time.perf_counter() - started
        return allocation
    hull = HullIncrements(options)
    inc = hull.apply()
    first = inc.first
    n_cells = options.n_cells
    matrix = sparse_row_matrix(rows, n_cells)  # rows x cells, sparse: 10,000 caps fit
    rhs = normalized_rhs(rows)
    base_cost = np.bincount(options.cell, weights=options.cost[first], minlength=n_cells)
    rhs_eff = rhs - matrix @ base_cost
    base_value = float(options.value[first].sum())
    constrained = _per_increment(np.diff(matrix.tocsc().indptr) > 0, inc.cell)
    method = settings.method
    if method == "auto":
        method = "blocks"
    blocks: Blocks | None = None
    taken: NDArray[np.float64] | Shares
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
    lp_objective = base_value + (
        taken.dot(inc.dv) if isinstance(taken, Shares) else float(inc.dv @ taken))
    prices = matrix.T @ duals if rows else np.zeros(n_cells)
    bound = _lagrangian(inc, prices, duals, rhs_eff, base_value)
    allocation = hull.invert(inc, taken)
    del taken  # when dense, one float per increment (320 MB at 10M): not held through repair
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
        _integral(options, rows, allocation, inc, constrained, blocks, prices, duals, settings,
                  should_stop)
    if options.cost.size > TRIM_OPTIONS:  # the increments and blocks are garbage now: their
        del inc, blocks, constrained  # heap pages go back to the system before the plan's
        memory.release()  # table is built (at 10M customers its peak, 0.3 GB lower)
    allocation.seconds = time.perf_counter() - started
    return allocation


def _integral(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    inc: Increments,
    constrained: NDArray[np.bool_],
    blocks: Blocks | None,
    prices: NDArray[np.float64],
    duals: NDArray[np.float64],
    settings: LpSettings,
    should_stop: Callable[[], bool],
) -> None:
    """One level for every customer: the repair MIP's plan as the incumbent, then the proof
    of the integer optimum (``engine.optimize.proof``) unless the LP plan is already
    integral and within the gap of its bound."""
    split = ~options.fractional & (allocation.theta > 0)
    limit = settings.mip_time_limit
    if allocation.status != "optimal":  # the LP was cut short: its plan, its gap
        if split.any():
            repair(options, rows, allocation, inc, constrained, blocks, prices, settings.solver,
                   settings.time_limit)
        allocation.integer_bound = allocation.bound
        return
    have = True
    if split.any():
        # the incumbent's MIP is small and any answer needs it: only the LP's limit applies
        have = repair(options, rows, allocation, inc, constrained, blocks, prices,
                      settings.solver, settings.time_limit, required=False)
    assert allocation.bound is not None
    value = float(allocation.equity(options).sum())
    if have and allocation.bound - value <= GAP * max(1.0, abs(allocation.bound)):
        allocation.integer_bound = allocation.bound
        return
    prove(options, rows, allocation, inc, duals, settings.solver, limit, have, should_stop)


def _solve_resources(
    options: OptionSet,
    rows: list[Constraint],
    settings: LpSettings,
    should_stop: Callable[[], bool],
) -> Allocation:
    """Limits on resources besides spend: the LP by sifting over a core of customers
    (``engine.optimize.lagrange``), then the integer proof over the same prices."""
    allocation, duals = resource_lp(options, rows, settings.solver, settings.tolerance,
                                    should_stop)
    if not settings.repair:
        return allocation
    inc = HullIncrements(options).apply()
    prove(options, rows, allocation, inc, duals, settings.solver,
          settings.mip_time_limit, False, should_stop)
    return allocation


def resource_lp(
    options: OptionSet,
    rows: list[Constraint],
    solver: str = "auto",
    tolerance: float = 1e-12,
    should_stop: Callable[[], bool] = lambda: False,
    start: NDArray[np.float64] | None = None,
) -> tuple[Allocation, NDArray[np.float64]]:
    """The LP under limits on any resource, with its certificate (bound, shadow prices),
    and its row prices in ``<=`` form (where a neighbouring LP may ``start``: the
    frontier's solves at budgets)."""
    result = solve_lagrange(options, rows, solver, tolerance, should_stop=should_stop,
                            start=start)
    # per unit its two options of largest weight: lo (the larger) and hi, theta = hi's share
    lo, hi, theta = two_largest(options, result.weights)
    allocation = Allocation(lo, hi, theta, "optimal", result.solver, "lagrange")
    allocation.iterations = result.rounds
    allocation.lp_objective, allocation.bound = result.objective, result.bound
    allocation.shadow_prices = {
        row.name: float(result.duals[k] * row.sense) + 0.0 for k, row in enumerate(rows)
    }
    return allocation, result.duals


def _per_increment(per_cell: NDArray[np.bool_], cell: NDArray[np.integer]) -> NDArray[np.bool_]:
    """``per_cell[cell]`` in cache-sized pieces: a gather by the whole 16-bit cell array
    casts it to 64 bits first (320 MB at 10M customers, the LP's peak)."""
    out = np.empty(cell.size, dtype=bool)

    def piece(lo: int, hi: int) -> None:
        np.take(per_cell, cell[lo:hi], out=out[lo:hi])

    parallel.each(piece, cell.size, CHUNK)
    return out


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _lagrangian(
    inc: Increments,
    prices: NDArray[np.float64],
    duals: NDArray[np.float64],
    rhs_eff: NDArray[np.float64],
    base_value: float,
) -> float:
    def piece(lo: int, hi: int) -> float:  # cache-sized pieces: no full-size temporary
        reduced = prices[inc.cell[lo:hi]]
        reduced *= inc.dc[lo:hi]
        np.subtract(inc.dv[lo:hi], reduced, out=reduced)
        return float(np.maximum(reduced, 0.0, out=reduced).sum())

    total = 0.0
    for part in parallel.results(piece, inc.dc.size, CHUNK):  # in order: the same sum
        total += part
    return base_value + float(duals @ rhs_eff) + total


def _solve_full(
    inc: Increments,
    constrained: NDArray[np.bool_],
    matrix: sparse.csr_matrix,
    rhs_eff: NDArray[np.float64],
    settings: LpSettings,
) -> tuple[NDArray[np.float64], NDArray[np.float64], str]:
    """One PuLP column per hull increment of the constrained cells: the reference model."""
    idx = np.flatnonzero(constrained)
    cell = inc.cell[idx]
    coef = matrix[:, cell].multiply(inc.dc[idx][None, :]).tocsr()
    result = solvers.maximize(
        inc.dv[idx], coef, rhs_eff, solver=settings.solver, time_limit=settings.time_limit
    )
    taken = (~constrained & (inc.dv > 0)).astype(np.float64)
    if result.status == "infeasible":
        return taken, np.full(matrix.shape[0], np.nan), result.solver
    if result.status != "optimal":
        raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
    taken[idx] = np.clip(result.x, 0.0, 1.0)
    return taken, np.maximum(result.shadow_prices, 0.0), result.solver



def _solve_blocks(
    inc: Increments,
    constrained: NDArray[np.bool_],
    matrix: sparse.csr_matrix,
    rhs_eff: NDArray[np.float64],
    base_value: float,
    settings: LpSettings,
    should_stop: Callable[[], bool],
    options: OptionSet,
    rows: list[Constraint],
) -> tuple[NDArray[np.float64] | Shares, NDArray[np.float64], str, int, Blocks]:
    """Block LP, then refinement of the blocks next to each cell's price until exact.

    Every round costs one LP over blocks plus one pass over the increments (finding the
    members of the few blocks that straddle a price or are partly taken); the primal value
    and the Lagrangian bound come from block sums plus those members."""
    blocks = Blocks.initial(inc, constrained, options.n_cells, settings.bins)
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
        coef = matrix[:, blocks.cell].multiply(blocks.cost[None, :]).tocsr()
        result = solvers.maximize(
            blocks.value, coef, rhs_eff, solver=settings.solver, time_limit=settings.time_limit,
            presolve=False,  # a few hundred columns: presolve costs more than the solve
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
        prices = matrix.T @ duals
        price = prices[blocks.cell]
        full = x >= 1 - SNAP
        partial = (x > SNAP) & ~full
        straddle = (blocks.lo < price) & (price < blocks.hi)
        touched = partial | straddle
        pos = blocks.members(touched)
        owner = blocks.block[pos]  # the block of each member, gathered once per round
        taken = fill(blocks, pos, x, full, partial, options.n_cells, owner)
        primal = (
            base_value
            + free_value
            + float(blocks.value[full & ~touched].sum())
            + float(blocks.dv[pos] @ taken)
        )
        above = (blocks.lo >= price) & ~straddle
        at_price = straddle[owner]
        in_straddle = pos[at_price]
        reduced = blocks.dv[in_straddle] - price[owner[at_price]] * blocks.dc[in_straddle]
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
            last = (expand(blocks, full, pos, taken, inc, constrained), duals)
        # Blocks away from every price are settled (wholly taken or not at all): once the LP
        # has more than MERGE_ABOVE columns, merge them per cell so that it only sees the
        # detail that matters. Not before: a later price may fall inside a merged block, and
        # splitting it again costs a pass over millions of increments (at 10M customers,
        # merging each round took 7 rounds and 2.4 s of splits, this 5 rounds and 0.2 s).
        merge = blocks.cell.size > MERGE_ABOVE
        if merge:
            settled = np.where(touched | blocks.next_to(touched), -1, blocks.cell * 2 + full)
        cut = split[owner]
        blocks.split(pos[cut], prices, settings.bins, owner[cut])
        if merge:
            blocks.merge(np.append(settled, np.full(blocks.cell.size - settled.size, -1)))
    return shares(blocks, full, pos, taken, inc, constrained), duals, solver_name, rounds, blocks


class _Stopped(Exception):
    """A refinement round was cut short; carries the last certified round's plan."""

    def __init__(
        self,
        taken: NDArray[np.float64],
        duals: NDArray[np.float64],
        solver: str,
        rounds: int,
        blocks: Blocks,
        status: str,
    ) -> None:
        super().__init__(status)
        self.result = (taken, duals, solver, rounds, blocks)
        self.status = status



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


