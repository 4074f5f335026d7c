"""End to end through the pipeline: every strategy, the summary's arithmetic, the baselines."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.errors import InfeasiblePlanError, InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.synthetic import customers, example, prospects
from engine.valuation import Valuation, customer_equity


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    cust, pros, _ = example(1500, seed=3)
    return Portfolio(cust, pros)


def plan_with(allocator: str, **kw) -> Plan:
    return Plan(
        total_budget=6000.0,
        acquisition_budget=2500.0,
        segment_limits=(SegmentLimit("core", cap=1500.0),),
        allocation=StrategyChoice(allocator),
        **kw,
    )


def test_summary_is_consistent_with_the_units(portfolio: Portfolio) -> None:
    result = allocate(portfolio, plan_with("lp"))
    s, units = result.summary, result.units
    assert s["equity_before"] == pytest.approx(units["equity_before"].sum())
    assert s["equity_after"] == pytest.approx(units["equity_after"].sum())
    assert s["equity_gain"] == pytest.approx(s["equity_after"] - s["equity_before"])
    assert s["total_spend"] == pytest.approx(units["spend"].sum())
    assert sum(s["spend_by_kind"].values()) == pytest.approx(s["total_spend"])
    assert sum(s["spend_by_segment"].values()) == pytest.approx(s["total_spend"])
    assert s["total_spend"] <= 6000 * (1 + 1e-9)
    assert s["spend_by_kind"]["acquisition"] <= 2500 * (1 + 1e-9)
    assert s["spend_by_segment"]["core"] <= 1500 * (1 + 1e-9)
    assert s["bound"] >= s["equity_after"] and 0 <= s["gap"] < 1e-4
    assert s["roc_do_nothing"] == pytest.approx(0.10)
    assert s["roc"] > s["roc_do_nothing"]
    # Customers take a single level from the plan's grid; pools a spend per prospect.
    cust = units.filter(pl.col("kind") == "retention")
    assert set(cust["level"].unique().to_list()) <= set(Plan().retention_levels)
    assert cust["share_upper"].is_null().all() and cust["pool"].is_null().all()


def test_equity_before_is_the_clv_formula(portfolio: Portfolio) -> None:
    result = allocate(portfolio, plan_with("lp"))
    customers_only = result.units.filter(pl.col("kind") == "retention")
    # the plan's metric (clv) is carried into the per-customer plan
    assert customers_only["clv"].to_numpy() == pytest.approx(
        customers_only["equity_before"].to_numpy()
    )
    assert result.units.filter(pl.col("kind") == "acquisition")["clv"].is_null().all()
    cust = portfolio.customers
    assert cust is not None
    expected = customer_equity(
        cust["margin"].to_numpy() - cust["service_cost"].to_numpy(),
        cust["retention"].to_numpy(),
        0.0,
        Valuation(0.10),
    )
    got = result.units.filter(pl.col("kind") == "retention")["equity_before"].to_numpy()
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("allocator", ["greedy", "uniform", "proportional"])
def test_baselines_are_feasible_and_never_beat_the_lp(portfolio: Portfolio, allocator: str) -> None:
    best = allocate(portfolio, plan_with("lp")).summary
    other = allocate(portfolio, plan_with(allocator)).summary
    assert other["equity_after"] <= best["bound"] + 1e-6
    assert other["total_spend"] <= 6000 * (1 + 1e-9)
    assert other["spend_by_segment"]["core"] <= 1500 * (1 + 1e-9)
    assert other["gap"] is None and other["bound"] is None


def test_greedy_is_exact_for_customers_under_a_single_budget() -> None:
    """One budget row and no pools: the LP optimum is the ratio greedy, up to one customer."""
    portfolio = Portfolio(customers(2000, seed=5))
    lp = allocate(portfolio, Plan(total_budget=3000.0)).summary
    greedy = allocate(
        portfolio, Plan(total_budget=3000.0, allocation=StrategyChoice("greedy"))
    ).summary
    assert greedy["equity_after"] <= lp["bound"] + 1e-6
    assert lp["bound"] - greedy["equity_after"] < 50.0  # one customer's increment at most


def test_uniform_gives_everyone_the_same_level() -> None:
    portfolio = Portfolio(customers(300, seed=2))
    units = allocate(
        portfolio, Plan(total_budget=1600.0, allocation=StrategyChoice("uniform"))
    ).units
    assert units["level"].n_unique() == 1 and units["level"][0] == 5.0


def test_minimums_are_refused_by_baselines_and_met_by_lp(portfolio: Portfolio) -> None:
    plan = plan_with(
        "uniform",
    ).with_overrides(segment_limits=(SegmentLimit("value", minimum=500.0),))
    with pytest.raises(InvalidInputError, match="does not support segment minimums"):
        allocate(portfolio, plan)
    lp_plan = plan.with_overrides(allocation=StrategyChoice("lp"))
    assert allocate(portfolio, lp_plan).summary["spend_by_segment"]["value"] >= 500 - 1e-6


def test_activity_based_cost_to_serve_lowers_equity(portfolio: Portfolio) -> None:
    cheap = Plan(
        total_budget=1000.0,
        cost=StrategyChoice("activity-based", {"unit_costs": {"calls": 1.0, "orders": 0.1}}),
    )
    dear = Plan(
        total_budget=1000.0,
        cost=StrategyChoice("activity-based", {"unit_costs": {"calls": 30.0, "orders": 5.0}}),
    )
    a = allocate(portfolio, cheap).summary["equity_before"]
    b = allocate(portfolio, dear).summary["equity_before"]
    assert b < a
    cust = portfolio.customers
    assert cust is not None
    extra = (29.0 * cust["activity_calls"] + 4.9 * cust["activity_orders"]).to_numpy()
    multiplier = 0.0 + cust["retention"].to_numpy() / (1.1 - cust["retention"].to_numpy())
    assert a - b == pytest.approx(float((extra * multiplier).sum()), rel=1e-9)


def test_activity_based_needs_its_columns(portfolio: Portfolio) -> None:
    plan = Plan(cost=StrategyChoice("activity-based", {"unit_costs": {"visits": 2.0}}))
    with pytest.raises(InvalidInputError) as err:
        allocate(portfolio, plan)
    assert err.value.violations[0].field == "customers.activity_visits"


def test_segment_spend_table() -> None:
    cust = customers(400, seed=8).select("customer_id", "segment", "margin", "retention")
    table = pl.DataFrame(
        {
            "segment": np.repeat(["premium", "core", "value", "at-risk", "new"], 3),
            "level": np.tile([0.0, 5.0, 15.0], 5),
            "retention": np.tile([0.0, 0.05, 0.08], 5) + np.repeat([0.85, 0.8, 0.7, 0.55, 0.6], 3),
        }
    )
    # baseline retention comes from the table at level 0, so customers' own is replaced
    result = allocate(
        Portfolio(cust, options=table),
        Plan(total_budget=800.0, cost=StrategyChoice("segment-spend-table")),
    )
    assert result.summary["total_spend"] <= 800 + 1e-9
    assert set(result.units["level"].unique().to_list()) <= {0.0, 5.0, 15.0}


def test_infeasible_plan_is_explained(portfolio: Portfolio) -> None:
    plan = Plan(total_budget=100.0, segment_limits=(SegmentLimit("core", minimum=500.0),))
    with pytest.raises(InfeasiblePlanError, match="minimum"):
        allocate(portfolio, plan)


def test_pools_mix_two_levels_at_most(portfolio: Portfolio) -> None:
    units = allocate(portfolio, plan_with("lp")).units
    pools = units.filter(pl.col("kind") == "acquisition")
    assert pools.height == 5
    assert ((pools["share_upper"] >= 0) & (pools["share_upper"] < 1)).all()
    assert pools["customer_id"].is_null().all() and pools["pool"].is_not_null().all()


def test_prospects_only() -> None:
    result = allocate(Portfolio(prospects=prospects()), Plan(total_budget=20_000.0))
    assert result.summary["equity_before"] == 0.0
    assert result.summary["equity_after"] > 0
    assert result.summary["roc"] is None or np.isnan(result.summary["roc"])
