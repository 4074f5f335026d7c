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
* Limits on resources besides spend (contacts, calls...): no spend-only structure; the
  frontier is traced by exact LP solves at budgets, each with its certificate
  (``engine.planning.frontier_solves``).

The pieces and limits live in ``engine.planning.frontier_pieces``, the flow network in
``engine.planning.frontier_network``, the result type in ``engine.planning.frontier_result``;
this module walks the breakpoints and checks them against integral plans.

Customers take one level each in a plan, but the LP may split a customer between two adjacent
levels; the frontier is the LP's (an upper bound on every integral plan). ``integer_check``
compares it with the integral plans ``allocate`` returns at a few budgets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from engine.constraints import Constraint, spend_only
from engine.options import OptionSet
from engine.plan import Plan
from engine.planning.frontier_network import build_network, trace_network
from engine.planning.frontier_pieces import (
    apply_limit,
    combine,
    groups_of,
    laminar,
    merge_pieces,
)
from engine.planning.frontier_regimes import trace_regimes
from engine.planning.frontier_result import Frontier, assemble
from engine.planning.frontier_solves import trace_by_solves
from engine.planning.progress import Progress, no_progress
from engine.plugins import Registry
from engine.portfolio import Portfolio

__all__ = ["Frontier", "Progress", "build_model", "frontier", "frontier_of", "integer_check"]


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
# The frontier: the breakpoint walk over the hull increments.
# --------------------------------------------------------------------------------------------


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
    model_seconds = time.perf_counter() - started
    result = frontier_of(options, rows, plan.total_budget, progress, should_stop, started)
    result.model_seconds = model_seconds
    return result


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
    progress = progress or no_progress
    if not spend_only(rows):  # limits on contacts, calls...: exact solves at budgets
        return trace_by_solves(options, rows, plan_budget, progress, should_stop, started,
                               lambda spend_rows: frontier_of(options, spend_rows).min_budget)
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
    scale = max(1.0, float(dc.sum()) + float(base_cell.sum()))
    tol = 1e-12 * scale
    groups = groups_of(rows, nonempty, base_cell, tol)
    # An increment adding no net equity in a cell under no minimum is never taken (dropping it
    # from a plan frees every limit and loses nothing; within a unit such increments are the
    # last ones, so each cell keeps a prefix): only the rest are sorted, merged and assembled.
    under_minimum = np.zeros(n_cells, dtype=bool)
    for g in groups:
        if g.minimum > tol:
            under_minimum |= g.cells
    # (filtered first: the cells and ratios are computed for the kept increments only)
    keep = dv > 0
    if under_minimum.any():
        keep |= under_minimum[options.cell[unit]]
    if not keep.all():
        unit, dc, dv = unit[keep], dc[keep], dv[keep]
    inc_cell = options.cell[unit]
    ratio = dv / dc
    progress("increments", 0.0)

    all_cells = nonempty.copy()
    root = [g for g in groups if np.array_equal(g.cells, all_cells)]
    inner = [g for g in groups if not np.array_equal(g.cells, all_cells)]
    notes: list[str] = []
    by_ratio = np.argsort(-ratio)  # one sort of every increment, shared below
    if laminar(inner):
        method = "merge"
        pieces = merge_pieces(inc_cell, dc, dv, by_ratio)
        for g in inner:
            apply_limit(pieces, g.cells, g.minimum, g.cap, ",".join(g.names), tol)
    else:
        method = "network"
        multi = [g for g in inner if g.size > 1]
        net_mask = np.zeros(n_cells, dtype=bool)
        for g in multi:
            net_mask |= g.cells
        in_net = net_mask[inc_cell[by_ratio]]
        free = by_ratio[~in_net]  # in ratio order
        pieces = merge_pieces(inc_cell[free], dc[free], dv[free], np.arange(free.size))
        for g in inner:
            if g.size == 1 and not (g.cells & net_mask).any():
                apply_limit(pieces, g.cells, g.minimum, g.cap, ",".join(g.names), tol)
        net = build_network(np.flatnonzero(net_mask), inc_cell, dc, ratio, inner,
                            by_ratio[in_net])
        traced = trace_regimes(net, tol, progress, should_stop)
        if traced is None:  # the minimums themselves cross the kind budgets: step the network
            traced = trace_network(net, tol, progress, should_stop)
        notes.append(
            f"kind budgets cross whole-segment limits: {net.cells.size} cells traced as a flow "
            f"network ({traced.dc.size} steps)"
        )
        pieces = combine(pieces, traced)
    for g in root:
        apply_limit(pieces, None, g.minimum, g.cap, ",".join(g.names), tol)
    progress("assemble", 0.9)
    result = assemble(options, pieces, base_cell, base_value, equity_before, plan_budget,
                       method, notes, started)
    progress("done", 1.0)
    return result


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
