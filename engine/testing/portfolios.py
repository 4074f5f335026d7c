"""Inputs for the checks: the sample portfolio and plan, and the problem an allocator gets.
"""

from __future__ import annotations

from engine.constraints import build_constraints
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.plugins import Registry, default_registry
from engine.portfolio import Portfolio
from engine.strategies import CostModel, Problem


def sample_portfolio(
    n: int = 200, seed: int = 7, prospects: bool = True, minimums: bool = True
) -> tuple[Portfolio, Plan]:
    """The built-in example (customers with segments, margins, retention, cost-to-serve,
    activity counts, response columns; prospect pools; a plan with budgets and caps)."""
    from engine.synthetic import example

    customers, pools, plan = example(n, seed)
    if not minimums:
        limits = tuple(lim for lim in plan.segment_limits if lim.cap is not None)
        plan = plan.with_overrides(segment_limits=tuple(
            SegmentLimit(lim.segment, lim.kind, lim.cap, None) for lim in limits
        ))
    return Portfolio(customers, pools if prospects else None), plan


def make_problem(
    portfolio: Portfolio,
    plan: Plan,
    cost: type[CostModel] | str | None = None,
    registry: Registry | None = None,
) -> Problem:
    """The problem the engine would hand an allocator: options from ``cost`` (a class, a
    registered name, or the plan's cost strategy) and the plan's constraint rows."""
    portfolio = portfolio.validated()
    if cost is None or isinstance(cost, str):
        registry = registry or default_registry()
        model = registry.create("cost", plan.cost if cost is None else StrategyChoice(cost))
    else:
        model = cost.from_params({})
    assert isinstance(model, CostModel)
    options = model.build(portfolio, plan)
    return Problem(options, build_constraints(plan, options), plan)


def sample_problem(n: int = 200, seed: int = 7, minimums: bool = False) -> Problem:
    """``make_problem`` on ``sample_portfolio`` with the exponential-response cost model."""
    portfolio, plan = sample_portfolio(n, seed, minimums=minimums)
    return make_problem(portfolio, plan, "exponential-response")
