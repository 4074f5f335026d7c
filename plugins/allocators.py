"""Built-in allocators: the exact LP, a greedy heuristic and the baselines firms use today."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.allocation import Allocation, row_usage
from engine.constraints import Constraint
from engine.errors import InfeasiblePlanError
from engine.hookspecs import hookimpl
from engine.optimize import lp
from engine.options import OptionSet
from engine.strategies import Allocator, Param, Problem


class LinearProgram(Allocator):
    """The exact LP (PuLP with HiGHS or CBC) with bound, gap and shadow prices."""

    name = "lp"
    summary = "Maximizes total customer equity exactly; certificate: LP bound, gap, shadow prices."
    exact = True
    supports_minimums = True
    supports_resources = True
    params: ClassVar = {
        "solver": Param(
            "auto",
            "LP/MIP solver PuLP drives: auto (HiGHS if installed), highs, cbc.",
            str,
            choices=("auto", "highs", "cbc"),
        ),
        "method": Param(
            "auto",
            "blocks: PuLP sees ratio blocks of each (segment, kind) cell, refined until exact "
            "(fast); full: one PuLP column per customer-level (reference, slow); auto: blocks.",
            str,
            choices=("auto", "blocks", "full"),
        ),
        "time_limit": Param(0.0, "Seconds per solver call; 0 for none.", float, minimum=0.0),
        "tolerance": Param(
            1e-12, "Relative gap at which block refinement stops.", float, minimum=0.0
        ),
        "mip_time_limit": Param(
            60.0,
            "Seconds to prove the integer optimum (reduced-cost fixing and a MIP over the "
            "remaining core); past it the plan is 'feasible' with its proven gap; 0 for none.",
            float,
            minimum=0.0,
        ),
    }
    solver: str
    method: str
    time_limit: float
    tolerance: float
    mip_time_limit: float

    def allocate(self, problem: Problem) -> Allocation:
        settings = lp.LpSettings(
            method=self.method,
            solver=self.solver,
            time_limit=_tighter(self.time_limit or None, problem.time_limit),
            tolerance=self.tolerance,
            mip_time_limit=_tighter(self.mip_time_limit or None, problem.time_limit),
        )
        return lp.solve(problem.options, problem.rows, settings, problem.should_stop)


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Greedy(Allocator):
    """Best value per unit of spend first, while every budget and cap has room."""

    name = "greedy"
    summary = "Takes hull increments by decreasing value per unit of spend; no certificate."

    def allocate(self, problem: Problem) -> Allocation:
        options, rows = problem.options, problem.rows
        hull = options.hull
        unit, dc, dv = hull.increments(options.cost, options.value)
        first = hull.points[hull.offsets[:-1]]
        base = row_usage(options, rows, options.cost[first])
        for row, used in zip(rows, base, strict=True):
            if row.sense > 0 and used > row.rhs * (1 + 1e-12):
                raise InfeasiblePlanError(
                    f"{row.name}: even the cheapest levels spend {used:g} > {row.rhs:g}"
                )
        order = np.argsort(-(dv / dc), kind="stable")
        order = order[dv[order] > 0]
        cell = options.cell[unit[order]]
        accepted = np.ones(order.size, dtype=bool)
        for _ in range(len(rows) + 1):
            changed = False
            for k, row in enumerate(rows):
                member = row.cells[cell]
                cum = np.cumsum(np.where(member & accepted, dc[order], 0.0)) + base[k]
                over = np.flatnonzero(member & accepted & (cum > row.rhs * (1 + 1e-12)))
                if over.size:
                    accepted[over[0] :] &= ~member[over[0] :]
                    changed = True
            if not changed:
                break
        taken = np.bincount(unit[order[accepted]], minlength=options.n_units)
        choice = hull.points[hull.offsets[:-1] + taken]
        return Allocation.single(choice, "feasible", self.name)


class _Within:
    """Each unit's most expensive option costing at most its allowance (else its cheapest);
    the options in order of cost within each unit, so each allowance costs one pass over
    them (``OptionSet.cost_order``: the options' own order in the common layout, else a sort
    made once per option set and shared by every baseline allocated on it)."""

    def __init__(self, options: OptionSet) -> None:
        self.options = options
        self.unit = options.unit_of_option
        order = options.cost_order
        if order is None:
            self.order: NDArray[np.int64] = np.arange(options.cost.size, dtype=np.int64)
            self.sorted_unit, self.sorted_cost = self.unit, options.cost
        else:
            self.order = order
            self.sorted_unit = self.unit[order]
            self.sorted_cost = options.cost[order]

    def __call__(self, allowance: NDArray[np.float64]) -> NDArray[np.int64]:
        options = self.options
        fits = self.sorted_cost <= allowance[self.sorted_unit] * (1 + 1e-12)
        count = np.bincount(self.sorted_unit, weights=fits,
                            minlength=options.n_units).astype(np.int64)
        return self.order[options.offsets[:-1] + np.maximum(count, 1) - 1]


def _largest_feasible(
    options: OptionSet, rows: list[Constraint], weight: NDArray[np.float64], name: str
) -> Allocation:
    """Bisection on a common multiplier t: unit i may spend up to t * weight[i]."""
    if any(r.sense < 0 for r in rows):
        raise InfeasiblePlanError(f"the {name} baseline cannot honour segment minimums; use lp")
    choose_within = _Within(options)

    def fits(t: float) -> tuple[bool, NDArray[np.int64]]:
        choice = choose_within(t * weight)
        used = row_usage(options, rows, options.cost[choice])
        return all(u <= r.rhs * (1 + 1e-12) for u, r in zip(used, rows, strict=True)), choice

    ok, best = fits(0.0)
    if not ok:
        raise InfeasiblePlanError(f"even the cheapest levels break a budget or cap ({name})")
    positive = weight > 0
    if not positive.any():
        return Allocation.single(best, "feasible", name)
    hi = float(np.max(options.cost) / weight[positive].min()) + 1.0
    ok, choice = fits(hi)
    if ok:
        return Allocation.single(choice, "feasible", name)
    # A unit's choice changes only where t * weight reaches one of its options' costs: the
    # bisection runs over those multipliers (about 20 steps), and its answer is the choice
    # at the largest one that fits, as a bisection on t itself would find.
    w = weight[choose_within.unit]
    live = (w > 0) & (options.cost > 0)
    steps = np.unique(options.cost[live] / w[live])
    lo, top = -1, steps.size  # steps[lo] fits (t = 0 when lo = -1), steps[top] does not
    while top - lo > 1:
        mid = (lo + top) // 2
        ok, choice = fits(float(steps[mid]))
        if ok:
            lo, best = mid, choice
        else:
            top = mid
    return Allocation.single(best, "feasible", name)


class Uniform(Allocator):
    """Same spend per head everywhere: the largest that fits every budget and cap."""

    name = "uniform"
    summary = "Baseline: every customer and prospect gets the same spend per head."

    def allocate(self, problem: Problem) -> Allocation:
        return _largest_feasible(problem.options, problem.rows, problem.options.size, self.name)


class Proportional(Allocator):
    """Spend per unit proportional to its baseline equity (CLV), the largest that fits."""

    name = "proportional"
    summary = "Baseline: spend proportional to each customer's CLV (pools: to their value)."

    def allocate(self, problem: Problem) -> Allocation:
        options = problem.options
        clv = np.maximum(options.value[options.baseline], 0.0)
        pools = options.fractional
        if pools.any():  # a pool's do-nothing value is 0: weigh it by its best value instead
            best = np.maximum.reduceat(options.value, options.offsets[:-1])
            clv[pools] = np.maximum(best[pools], 0.0)
        return _largest_feasible(options, problem.rows, clv, self.name)


@hookimpl
def register_allocators(register: Callable[[type[Allocator]], None]) -> None:
    register(LinearProgram)
    register(Greedy)
    register(Uniform)
    register(Proportional)
