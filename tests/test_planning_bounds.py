"""Same-money bounds known without an LP (the frontier at a plan's spend, an LP already solved
on the same rows, a plan at its cheapest levels) equal the LP ``same_money_bound`` solves, and
scenarios keep a plan's very levels when the layout allows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engine.constraints import build_constraints
from engine.planning.frontier import frontier_of
from engine.planning.scenarios import (
    Evaluation,
    FixedLevels,
    compare,
    known_bound,
    robustness,
    same_money_bound,
    spend_table,
)
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.test_frontier_resources import contacts_portfolio


def _copy(ev: Evaluation) -> Evaluation:
    return replace(ev, bound=None)


@pytest.mark.parametrize("minimums", [True, False])
def test_known_bounds_equal_the_lp(minimums: bool) -> None:
    cust, pros, plan = example(1500)
    if not minimums:
        plan = plan.with_overrides(segment_limits=tuple(
            lim for lim in plan.segment_limits if lim.minimum is None))
    comp = compare(Portfolio(cust, pros), plan)
    options = comp.optimum.options
    rows = build_constraints(plan, options)
    assert comp.frontier is not None
    front = frontier_of(options, rows, plan.total_budget)
    used = 0
    for ev in comp.evaluations:
        known = known_bound(options, rows, _copy(ev), front)
        lp = same_money_bound(options, rows, _copy(ev))["lp_bound"]
        if known is not None:
            used += 1
            assert known == pytest.approx(lp, rel=1e-9), ev.name
        assert ev.bound == pytest.approx(lp, rel=1e-9), ev.name  # what compare stored
    assert used >= 2
    # a plan spending less than the budget, breaking nothing: the frontier there
    half = comp.evaluations[0].units.with_columns(pl.col("spend") * 0.5)
    from engine.planning.scenarios import evaluate_spend

    ev = evaluate_spend(options, rows, half.select("customer_id", "spend"), "half",
                        plan.discount_rate)
    if not ev.broken:
        assert known_bound(options, rows, _copy(ev), front) == pytest.approx(
            same_money_bound(options, rows, _copy(ev))["lp_bound"], rel=1e-9)
    # an LP solved on the same rows at the plan's budget
    opt = comp.evaluations[0]
    solved = (float(plan.total_budget), float(comp.optimum.summary["bound"]))
    assert known_bound(options, rows, _copy(opt), None, solved) == pytest.approx(
        same_money_bound(options, rows, _copy(opt))["lp_bound"], rel=1e-9)


def test_a_plan_breaking_a_row_is_left_to_the_lp() -> None:
    cust, pros, plan = example(1500)
    comp = compare(Portfolio(cust, pros), plan)
    options = comp.optimum.options
    rows = build_constraints(plan, options)
    opt = comp.evaluations[0]
    over = opt.units.with_columns(
        pl.when(pl.col("segment") == "premium").then(pl.col("spend") * 3.0)
        .otherwise(pl.col("spend")).alias("spend"))
    from engine.planning.scenarios import evaluate_spend

    ev = evaluate_spend(options, rows, over.select("customer_id", "spend"), "over",
                        plan.discount_rate)
    assert "cap:premium" in ev.broken
    assert known_bound(options, rows, ev, comp.frontier) is None


def test_scenarios_keep_the_optimum_s_levels_under_a_contacts_limit() -> None:
    portfolio, plan = contacts_portfolio(400)
    comp = compare(portfolio, plan, baselines=())
    optimum = comp.evaluations[0]
    table = robustness(portfolio, plan, {
        "levels": FixedLevels.of(comp.optimum, optimum),
        "spend": spend_table(optimum),
    }, discount_rates=[0.05], planned=comp.optimum)
    planned = table.filter(pl.col("assumption") == "as planned")
    by_plan = {r["plan"]: r for r in planned.iter_rows(named=True)}
    # its very levels: the re-optimized plan itself, within the contacts limit
    assert by_plan["levels"]["equity_after"] == pytest.approx(
        by_plan["re-optimized"]["equity_after"], rel=1e-12)
    # its spend alone buys other levels, which use more contacts than the limit allows
    options = comp.optimum.options
    rows = build_constraints(plan, options)
    from engine.planning.scenarios import evaluate_spend

    by_spend = evaluate_spend(options, rows, spend_table(optimum), "spend", plan.discount_rate)
    if by_spend.equity_after > optimum.equity_after * (1 + 1e-12):
        assert "max:contacts" in by_spend.broken
    assert np.isfinite(table["below_optimum_bound"].to_numpy()).all()
    assert (table["below_optimum_bound"].to_numpy() >= -1e-6).all()
