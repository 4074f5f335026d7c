"""The frontier when the plan limits resources besides spend: exact LP solves at budgets.

With a limit on contacts, calls or any other column of the options, the spend-only structure
the parametric walk relies on (every row a sum of spend, customers competing through value
per unit of spend) is gone. The frontier ``V(B)`` (the LP optimum with total budget ``B`` and
every other row kept) is still concave; it is traced here by exact solves of the any-resource
LP (``engine.optimize.lp.solve``) at a set of budgets, each with its certificate:

* ``B_opt``: the LP without the total budget (what it spends is the optimal budget); ``B_min``:
  the least spend meeting every other row (the same LP with value ``-cost``).
* Each solve gives the equity reached by a feasible plan (``equity``, so the chord between two
  solved budgets is below ``V``: their mix is feasible at the mixed budget) and a Lagrangian
  bound ``g(y)`` with the budget's price ``s`` among ``y``; by weak duality
  ``V(B') <= g(y) + s (B' - B)`` for every ``B'``. Between two solved budgets ``V`` therefore
  lies between the chord and the lower of the two tangent lines; the largest distance between
  them is the frontier's ``max_gap``.
* Starting from 7 evenly spaced budgets (and the plan's), the next budget solved is where the two
  tangent lines of the widest interval cross (the sandwich method), until the gap is below
  ``1e-4`` of the equity range or ``most`` budgets (17) are solved.

Every solved point keeps the shadow price of every row (``Frontier.prices``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np
import polars as pl

from engine.constraints import LE, Constraint
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.options import ACQUISITION, KINDS, RETENTION, OptionSet
from engine.planning.frontier_pieces import FloatArray
from engine.planning.frontier_result import Frontier
from engine.planning.progress import Progress

REL_GAP = 1e-4  # stop refining when the sandwich is this close, relative to the equity range


@dataclass
class Solved:
    budget: float  # the budget row's amount (the spend may be below it)
    equity: float  # LP objective: a feasible plan's equity net of spend
    bound: float  # Lagrangian bound at the solve's duals
    price: float  # the budget's shadow price (net equity per unit of budget)
    prices: dict[str, float]  # every row's shadow price
    cell_spend: FloatArray
    # the LP's row prices (``<=`` form; the other rows, then the budget's): where the solve
    # at a neighbouring budget starts
    duals: FloatArray = field(default_factory=lambda: np.zeros(0))


def _solve(options: OptionSet, rows: list[Constraint], budget: float | None,
           start: Solved | None = None) -> Solved:
    """The any-resource LP (as ``engine.optimize.lp.solve`` solves it without the integer
    step: sifting, ``engine.optimize.lagrange``) with the total budget at ``budget`` (None:
    no total budget). ``start``: a solved neighbouring budget, whose row prices start the
    sifting (its sample's LP): the same LP optimum, fewer rounds."""
    from engine.optimize.lp import resource_lp

    others = [r for r in rows if r.name != "budget"]
    if budget is not None:
        others.append(Constraint("budget", np.ones(options.n_cells, dtype=bool), LE,
                                 float(budget)))
    y0 = None
    if start is not None and start.duals.size >= len(others) - 1:
        y0 = np.zeros(len(others))
        k = min(start.duals.size, len(others))
        y0[:k] = start.duals[:k]
    allocation, duals = resource_lp(options, others, start=y0)
    spend = np.bincount(options.cell, weights=allocation.spend(options),
                        minlength=options.n_cells).astype(np.float64)
    assert allocation.lp_objective is not None and allocation.bound is not None
    equity = float(allocation.lp_objective)
    bound = max(float(allocation.bound), equity)
    prices = dict(allocation.shadow_prices)
    return Solved(float(spend.sum()) if budget is None else float(budget), equity, bound,
                  max(prices.get("budget", 0.0), 0.0), prices, spend, duals.copy())


def _least_spend(options: OptionSet, rows: list[Constraint]) -> float:
    """The least total spend meeting every row but the total budget: every unit at its
    cheapest level when that meets them (no unit can spend less), else the LP with value
    ``-cost``."""
    from engine.optimize import lp

    others = [r for r in rows if r.name != "budget"]
    first = options.hull.points[options.hull.offsets[:-1]]
    cheapest = float(options.cost[first].sum())
    for row in others:
        use = options.resource(row.resource)
        assert use is not None  # build_constraints checked the resource exists
        used = float(np.bincount(options.cell[row.cells[options.cell]],
                                 weights=use[first][row.cells[options.cell]],
                                 minlength=options.n_cells).sum())
        slack = 1e-9 * max(1.0, abs(row.rhs))
        if (used > row.rhs + slack) if row.sense == LE else (used < row.rhs - slack):
            break
    else:
        return cheapest
    thrifty = replace(options, value=-options.cost)
    allocation = lp.solve(thrifty, others, lp.LpSettings(repair=False))
    return float(allocation.spend(thrifty).sum())


def _least_by_bisection(
    options: OptionSet, rows: list[Constraint], high: float, should_stop: Callable[[], bool],
    spend_floor: Callable[[list[Constraint]], float], steps: int = 12,
) -> tuple[float, str | None]:
    """The least feasible budget when its own LP could not be solved: the least spend the
    spend rows alone allow (``spend_floor``: the spend-only frontier's least budget, exact)
    when the plan is feasible there, else bisection between it and ``high`` by solves at
    budgets (within ``(high - low) / 2^steps``, said in the note)."""
    low = spend_floor([r for r in rows if r.resource == "cost" and r.name != "budget"])

    def feasible(b: float) -> bool:
        if should_stop():
            raise CancelledError("frontier cancelled")
        try:
            _solve(options, rows, b)
        except InfeasiblePlanError:
            return False
        return True

    if feasible(low):
        return low, None
    for _ in range(steps):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if feasible(mid) else (mid, high)
    return high, (f"the least budget was found by bisection, within {high - low:,.6g} (the LP "
                  "for the least spend could not be solved)")


def _gaps(points: list[Solved]) -> FloatArray:
    """Per interval between solved budgets: the largest distance between the chord (below V)
    and the lower of the two tangent lines (above V)."""
    out = np.zeros(max(len(points) - 1, 0))
    for i, (a, b) in enumerate(pairwise(points)):
        out[i] = _gap(a, b)[0]
    return out


def _gap(a: Solved, b: Solved) -> tuple[float, float]:
    """(gap, budget where the tangents cross) on the interval from ``a`` to ``b``."""
    width = b.budget - a.budget
    if width <= 0:
        return 0.0, a.budget
    chord = (b.equity - a.equity) / width
    # tangent of a: a.bound + a.price (x - a); tangent of b: b.bound + b.price (x - b)
    if a.price - b.price > 1e-15:
        x = (b.bound - a.bound + a.price * a.budget - b.price * b.budget) / (a.price - b.price)
        x = min(max(x, a.budget), b.budget)
    else:
        x = 0.5 * (a.budget + b.budget)
    upper = min(a.bound + a.price * (x - a.budget), b.bound + b.price * (x - b.budget))
    lower = a.equity + chord * (x - a.budget)
    return max(upper - lower, 0.0, a.bound - a.equity, b.bound - b.equity), x


def trace_by_solves(
    options: OptionSet,
    rows: list[Constraint],
    plan_budget: float | None,
    progress: Progress,
    should_stop: Callable[[], bool],
    started: float,
    spend_floor: Callable[[list[Constraint]], float],
    first: int = 7,
    most: int = 17,
) -> Frontier:
    """The frontier of a plan with limits on resources besides spend (see the module);
    ``spend_floor(rows)``: the least budget of spend-only rows (the parametric frontier's)."""
    top = _solve(options, rows, None)
    progress("solves: optimal budget", 0.1)
    try:
        b_min, how = _least_spend(options, rows), None
    except SolverError:
        b_min, how = _least_by_bisection(options, rows, top.budget, should_stop, spend_floor)
    b_opt = max(top.budget, b_min)
    progress("solves: least budget", 0.2)
    budgets = set(np.linspace(b_min, b_opt, first).tolist()) if b_opt > b_min else {b_min}
    if plan_budget is not None and b_min < plan_budget < b_opt:
        budgets.add(float(plan_budget))
    solved: dict[float, Solved] = {b_opt: replace(top, budget=b_opt)}

    failed: dict[float, str] = {}

    def run(b: float) -> None:
        if should_stop():
            raise CancelledError("frontier cancelled")
        near = solved[min(solved, key=lambda s: abs(s - b))]  # its prices start the solve
        try:
            try:
                solved[b] = _solve(options, rows, b, near)
            except InfeasiblePlanError:  # at the least budget, within the solver's tolerance
                solved[b] = _solve(options, rows, b * (1 + 1e-9) + 1e-9, near)
                solved[b].budget = b
        except SolverError as exc:  # a point the LP could not solve: left out, said
            failed[b] = str(exc)

    for i, b in enumerate(sorted(budgets - set(solved))):
        run(b)
        progress("solves", 0.2 + 0.5 * (i + 1) / len(budgets))
    equity_range = max(abs(top.equity - solved[min(solved)].equity), 1.0)
    while len(solved) < most:
        points = [solved[b] for b in sorted(solved)]
        gaps = _gaps(points)
        for f in failed:  # an interval whose budget the LP failed on is not split again
            gaps[max(int(np.searchsorted([p.budget for p in points], f)) - 1, 0)] = 0.0
        if not gaps.size or gaps.max() <= REL_GAP * equity_range:
            break
        i = int(np.argmax(gaps))
        x = _gap(points[i], points[i + 1])[1]
        lo, hi = points[i].budget, points[i + 1].budget
        if not lo < x < hi:
            x = 0.5 * (lo + hi)
        if x in solved or (hi - lo) <= 1e-9 * max(1.0, hi):
            break
        run(x)
        progress("solves: refining", 0.7 + 0.2 * len(solved) / most)
    out = _frontier(options, [solved[b] for b in sorted(solved)], plan_budget, started)
    if how is not None:
        out.notes.append(how)
    if failed:
        out.notes.append(f"the LP could not be solved at {len(failed)} budget(s) "
                         f"({', '.join(f'{b:,.6g}' for b in sorted(failed))}: "
                         f"{next(iter(failed.values()))}); the band spans them")
    return out


def _frontier(options: OptionSet, points: list[Solved], plan_budget: float | None,
              started: float) -> Frontier:
    base = options.value[options.baseline]
    equity_before = float(base.sum())
    budget = np.array([p.budget for p in points])
    equity = np.array([p.equity for p in points])
    width = np.diff(budget)
    slope = np.concatenate(([np.nan], np.diff(equity) / np.where(width > 0, width, 1.0)))
    spend = np.stack([p.cell_spend for p in points])  # points x cells
    kinds = np.arange(options.n_cells) % len(KINDS)
    gaps = _gaps(points)
    frame = pl.DataFrame({
        "budget": budget,
        "equity": equity,
        "equity_gain": equity - equity_before,
        "slope": slope,
        "retention": spend[:, kinds == RETENTION].sum(axis=1),
        "acquisition": spend[:, kinds == ACQUISITION].sum(axis=1),
        "shadow_price": np.array([p.price for p in points]),
        "bound": np.array([p.bound for p in points]),
    }).with_columns(pl.col("slope").fill_nan(None))
    nonempty = np.flatnonzero(np.bincount(options.cell, minlength=options.n_cells) > 0)
    n_pts = len(points)
    cells = np.tile(nonempty, n_pts)
    moves = pl.DataFrame({
        "point": np.repeat(np.arange(n_pts, dtype=np.int64), nonempty.size),
        "cell": cells.astype(np.int64),
        "segment": pl.Series([options.segments[c // len(KINDS)] for c in cells.tolist()],
                             dtype=pl.Enum(options.segments)),
        "kind": pl.Series([KINDS[c % len(KINDS)] for c in cells.tolist()],
                          dtype=pl.Enum(list(KINDS))),
        "spend": spend[:, nonempty].ravel(),
    })
    names = list(points[0].prices)
    prices = pl.DataFrame({
        "point": np.repeat(np.arange(n_pts, dtype=np.int64), len(names)),
        "budget": np.repeat(budget, len(names)),
        "limit": names * n_pts,
        "shadow_price": [p.prices.get(n, 0.0) for p in points for n in names],
    })
    max_gap = float(gaps.max()) if gaps.size else 0.0
    limited = sorted({n for n in names if n.startswith(("max:", "min:"))})
    notes = [
        f"limits on resources besides spend ({', '.join(limited)}): the frontier is traced by "
        f"{n_pts} exact LP solves, each with its bound; between two of them equity is at most "
        f"{max_gap:,.6g} above the line drawn (the chord and the tangents of the bounds)"
    ]
    if plan_budget is not None and plan_budget < budget[0] * (1 - 1e-12) - 1e-9:
        notes.append(f"the plan's budget {plan_budget:g} is below the least feasible "
                     f"{budget[0]:g}")
    out = Frontier(
        points=frame, moves=moves, segments=list(options.segments),
        equity_before=equity_before, min_budget=float(budget[0]),
        optimal_budget=float(budget[-1]), optimal_equity=float(equity[-1]),
        plan_budget=plan_budget, method="solves", seconds=time.perf_counter() - started,
        notes=notes, prices=prices, max_gap=max_gap,
    )
    return out
