"""The exact frontier: concave, non-decreasing to the optimal budget, equal to separate LP
solves at given budgets (value and shadow price), for laminar rows (merge) and crossing rows
(flow network)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.errors import InfeasiblePlanError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.planning.frontier import Frontier, frontier, integer_check
from engine.portfolio import Portfolio
from engine.synthetic import example, options_table

CUST, PROS, EXAMPLE_PLAN = example(1500)
PORTFOLIO = Portfolio(CUST, PROS)
B = float(EXAMPLE_PLAN.total_budget or 0.0)
LEVELS = EXAMPLE_PLAN.retention_levels

PLANS = {
    "total only": Plan(total_budget=B, retention_levels=LEVELS),
    "kind budget and cell limits": Plan(
        total_budget=B, acquisition_budget=0.3 * B, retention_levels=LEVELS,
        segment_limits=(SegmentLimit("premium", kind="acquisition", cap=0.02 * B),
                        SegmentLimit("value", kind="retention", minimum=0.1 * B)),
    ),
    "whole-segment limits": Plan(
        total_budget=B, retention_levels=LEVELS,
        segment_limits=(SegmentLimit("premium", cap=0.1 * B), SegmentLimit("new", minimum=0.05 * B),
                        SegmentLimit("core", kind="retention", cap=0.05 * B)),
    ),
    "example (crossing)": EXAMPLE_PLAN,
    "crossing with minimums": Plan(
        total_budget=B, acquisition_budget=0.2 * B, retention_budget=0.7 * B,
        retention_levels=LEVELS,
        segment_limits=(SegmentLimit("premium", cap=0.1 * B), SegmentLimit("new", minimum=0.1 * B),
                        SegmentLimit("core", minimum=0.1 * B, cap=0.3 * B),
                        SegmentLimit("value", kind="acquisition", minimum=0.02 * B)),
    ),
}
METHOD = {"total only": "merge", "kind budget and cell limits": "merge",
          "whole-segment limits": "merge", "example (crossing)": "network",
          "crossing with minimums": "network"}


@pytest.fixture(scope="module", params=list(PLANS))
def case(request: pytest.FixtureRequest) -> tuple[str, Plan, Frontier]:
    plan = PLANS[request.param]
    return request.param, plan, frontier(PORTFOLIO, plan)


def _mid_budgets(front: Frontier, count: int) -> list[float]:
    """Budgets in the middle of wide linear stretches (where the shadow price is unique)."""
    budget = front.points["budget"].to_numpy()
    width = np.diff(budget)
    wide = np.argsort(-width)[: 4 * count]
    chosen = np.sort(wide)[:: max(1, wide.size // count)][:count]
    return [float(0.5 * (budget[i] + budget[i + 1])) for i in chosen]


def test_method(case: tuple[str, Plan, Frontier]) -> None:
    name, _, front = case
    assert front.method == METHOD[name]


def test_concave_and_non_decreasing(case: tuple[str, Plan, Frontier]) -> None:
    _, _, front = case
    budget = front.points["budget"].to_numpy()
    equity = front.points["equity"].to_numpy()
    slope = front.points["slope"].to_numpy()[1:]
    assert front.n_breakpoints > 100
    assert (np.diff(budget) > 0).all()
    assert (slope > 0).all()  # non-decreasing (strictly) up to the optimal budget
    assert (np.diff(equity) > 0).all()
    assert (np.diff(slope) <= 1e-9 * np.abs(slope[:-1]) + 1e-12).all()  # concave
    assert np.allclose(np.diff(equity) / np.diff(budget), slope, rtol=1e-9)
    # past the optimal budget the LP leaves money unspent
    assert front.equity_at([front.optimal_budget * 1.5])[0] == pytest.approx(front.optimal_equity)
    assert front.slope_at([front.optimal_budget * 1.5])[0] == 0.0


def test_values_equal_separate_lp_solves(case: tuple[str, Plan, Frontier]) -> None:
    _, plan, front = case
    lo, hi = front.min_budget, front.optimal_budget
    budgets = [lo, lo + 0.13 * (hi - lo), lo + 0.5 * (hi - lo), float(B), hi, 1.2 * hi]
    for b in budgets:
        solved = allocate(PORTFOLIO, plan.with_overrides(total_budget=b))
        lp = solved.summary["lp_objective"]
        assert front.equity_at([b])[0] == pytest.approx(lp, rel=1e-9, abs=1e-9), b


def test_slope_equals_shadow_price(case: tuple[str, Plan, Frontier]) -> None:
    _, plan, front = case
    for b in _mid_budgets(front, 4):
        solved = allocate(PORTFOLIO, plan.with_overrides(total_budget=b))
        price = solved.summary["shadow_prices"]["budget"]
        assert front.slope_at([b])[0] == pytest.approx(price, rel=1e-7, abs=1e-9), b


def test_split_adds_up_and_honours_the_limits(case: tuple[str, Plan, Frontier]) -> None:
    _, plan, front = case
    budgets = np.linspace(front.min_budget, front.optimal_budget, 9)
    split = front.split_at(budgets)
    per_budget = split.group_by("budget").agg(pl.col("spend").sum()).sort("budget")
    assert np.allclose(per_budget["spend"].to_numpy(), budgets, rtol=1e-9)
    assert (split["spend"].to_numpy() >= -1e-9).all()
    points = front.points
    assert np.allclose(points["retention"] + points["acquisition"], points["budget"], rtol=1e-9)
    for lim in plan.segment_limits:
        mine = split.filter(pl.col("segment") == lim.segment)
        if lim.kind is not None:
            mine = mine.filter(pl.col("kind") == lim.kind)
        spent = mine.group_by("budget").agg(pl.col("spend").sum())["spend"].to_numpy()
        if lim.cap is not None:
            assert (spent <= lim.cap * (1 + 1e-9)).all()
        if lim.minimum is not None:
            assert (spent >= lim.minimum * (1 - 1e-9)).all()
    if plan.acquisition_budget is not None:
        assert (points["acquisition"].to_numpy() <= plan.acquisition_budget * (1 + 1e-9)).all()


def test_split_matches_lp_at_a_budget() -> None:
    plan = PLANS["example (crossing)"]
    front = frontier(PORTFOLIO, plan)
    b = _mid_budgets(front, 1)[0]
    solved = allocate(PORTFOLIO, plan.with_overrides(total_budget=b))
    spent = solved.units.group_by("kind").agg(pl.col("spend").sum())
    ours = front.split_at([b]).group_by("kind").agg(pl.col("spend").sum())
    joined = spent.join(ours, on="kind", suffix="_frontier")
    # the integral repair moves at most a few customers' spend
    assert np.allclose(joined["spend"], joined["spend_frontier"], atol=0.01 * b)


def test_options_table_with_non_concave_responses() -> None:
    table = options_table(3000, levels=6, segments=6)
    portfolio = Portfolio(options=table)
    plan = Plan(total_budget=40_000.0, cost=StrategyChoice("spend-table"),
                segment_limits=(SegmentLimit("S1", cap=5_000.0),
                                SegmentLimit("S2", minimum=9_000.0)))
    front = frontier(portfolio, plan)
    for b in (front.min_budget + 1.0, 40_000.0, 0.9 * front.optimal_budget):
        solved = allocate(portfolio, plan.with_overrides(total_budget=b))
        assert front.equity_at([b])[0] == pytest.approx(solved.summary["lp_objective"], rel=1e-9)


def test_integer_plans_never_beat_the_frontier() -> None:
    plan = PLANS["example (crossing)"]
    front = frontier(PORTFOLIO, plan)
    lo, hi = front.min_budget, front.optimal_budget
    check = integer_check(PORTFOLIO, plan, front, [lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)])
    assert (check["integrality_cost"].to_numpy() >= -1e-9 * check["frontier"].to_numpy()).all()
    assert np.allclose(check["frontier"], check["lp_objective"], rtol=1e-9)


def test_infeasible_minimum_is_reported() -> None:
    plan = Plan(total_budget=B, retention_levels=LEVELS,
                segment_limits=(SegmentLimit("premium", kind="retention", minimum=1e9),))
    with pytest.raises(InfeasiblePlanError):
        frontier(PORTFOLIO, plan)


def test_summary_and_table() -> None:
    front = frontier(PORTFOLIO, EXAMPLE_PLAN)
    s = front.summary()
    assert s["exact"] and s["plan_budget"] == B and s["chosen_budget"] == B
    assert s["min_budget"] <= s["chosen_budget"] <= s["optimal_budget"]
    table = front.table(8)
    assert {"budget", "equity", "slope", "retention", "acquisition"} <= set(table.columns)
    assert any(c.startswith("segment:") for c in table.columns)
    assert B in table["budget"].to_list()
