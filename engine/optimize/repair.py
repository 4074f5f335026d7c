"""Integer repair: one level for each customer the LP leaves between two levels.

The LP optimum splits at most one or two integral customers per cell. A small MIP over all
of their levels, and those of a few neighbours per cell (the customers whose increments lie
closest to the cell's price, the cheapest ones to move), settles them with the rest of the
plan fixed. Its size does not grow with the portfolio.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint, normalized_rhs, sparse_row_matrix
from engine.errors import InfeasiblePlanError
from engine.optimize import solvers
from engine.optimize.blocks import Blocks
from engine.optimize.increments import Increments
from engine.options import OptionSet


def repair(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    inc: Increments,
    constrained: NDArray[np.bool_],
    blocks: Blocks | None,
    prices: NDArray[np.float64],
    solver: str,
    time_limit: float | None,
    required: bool = True,
) -> bool:
    """Give each customer ``allocation`` leaves between two levels one level, by a MIP over
    their options (``allocation`` is changed in place; a note says how many moved).

    ``inc`` and ``constrained`` are the LP's increments and which of them the rows constrain,
    ``blocks`` its last ratio blocks (None: one block per cell is built), ``prices`` each
    cell's price (the sum of its rows' duals). The MIP's size does not grow with the
    portfolio: the split customers (at most one or two per cell) plus a fixed number of
    neighbours per cell. Raises ``InfeasiblePlanError`` when no integral plan near the LP's
    meets the minimums (with ``required`` off: returns False, the plan left as it was)."""
    split = np.flatnonzero(~options.fractional & (allocation.theta > 0))
    if split.size == 0:
        return True
    if blocks is None:
        blocks = Blocks.by_cell(inc, constrained)
    # Widest neighbourhood first: more customers free to move gives a better integer plan.
    attempts = [_neighbours(options, rows, inc, blocks, prices, split, 8), split]
    if options.cost.size <= 5_000:  # small enough to let every customer move: exact MIP
        attempts.insert(0, np.flatnonzero(~options.fractional))
    for units in attempts:
        if _repair_units(options, rows, allocation, units, solver, time_limit):
            allocation.notes.append(f"integer repair: MIP over {units.size} customers")
            return True
    if not required:
        return False
    raise InfeasiblePlanError(
        "no plan giving every customer exactly one level meets the minimums "
        f"(the LP relaxation does, with bound {allocation.bound:.6g})",
        [r.name for r in rows if r.sense < 0],
    )


def _neighbours(
    options: OptionSet,
    rows: list[Constraint],
    inc: Increments,
    blocks: Blocks,
    prices: NDArray[np.float64],
    split: NDArray[np.int64],
    per_cell: int,
) -> NDArray[np.int64]:
    """The split customers plus, in every cell sharing a row with them, the customers whose
    increments are closest to the cell's price (the cheapest ones to move).

    A cell's blocks are disjoint ratio intervals, so the ``per_cell`` nearest increments lie
    in the block holding the price and the blocks next to it holding ``per_cell`` increments
    on each side: only those blocks' members are looked at."""
    matrix = sparse_row_matrix(rows, options.n_cells).tocsc()
    touched = np.asarray(abs(matrix[:, np.unique(options.cell[split])]).sum(axis=1)).ravel() > 0
    wanted = np.asarray(abs(matrix.tocsr()[touched]).sum(axis=0)).ravel() > 0
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
    solver: str,
    time_limit: float | None,
) -> bool:
    """Re-choose the levels of ``units`` by a MIP with every other customer fixed; False
    when the MIP finds no plan that keeps every row in exact arithmetic."""
    spend = allocation.spend(options)
    spend[units] = 0.0
    matrix = sparse_row_matrix(rows, options.n_cells)
    fixed = matrix @ np.bincount(options.cell, weights=spend, minlength=options.n_cells)
    residual = normalized_rhs(rows) - fixed
    starts, ends = options.offsets[units], options.offsets[units + 1]
    counts = ends - starts
    opt = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    owner = np.repeat(np.arange(units.size), counts)
    coef = matrix[:, options.cell[units][owner]].multiply(options.cost[opt][None, :]).tocsr()
    bounds = np.concatenate(([0], np.cumsum(counts)))
    one_each = [
        (np.arange(s, e, dtype=np.int64), np.ones(e - s))
        for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
    # Keep the residual a little slack so float noise never breaks a row after rounding.
    slack = 1e-9 * np.maximum(1.0, np.abs(normalized_rhs(rows)))
    result = solvers.maximize(
        options.value[opt],
        coef,
        residual + slack,
        a_eq=one_each,
        b_eq=np.ones(units.size),
        integer=True,
        solver=solver,
        time_limit=time_limit,
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
