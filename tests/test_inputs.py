"""Bad input gets an error naming the field and row, never a traceback or a silent NaN."""

from __future__ import annotations

import polars as pl
import pytest

from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.synthetic import customers, prospects


def good() -> pl.DataFrame:
    return customers(20, seed=1)


def violation(portfolio: Portfolio, plan: Plan | None = None) -> list[tuple[str, int | None]]:
    with pytest.raises(InvalidInputError) as err:
        allocate(portfolio, plan or Plan(total_budget=100.0))
    return [(v.field, v.row) for v in err.value.violations]


def test_missing_column() -> None:
    assert ("customers.retention", None) in violation(Portfolio(good().drop("retention")))


def test_duplicate_ids_name_the_row() -> None:
    df = good()
    df = pl.concat([df, df[3:4]])
    assert violation(Portfolio(df)) == [("customers.customer_id", 20)]


@pytest.mark.parametrize("value", [1.0, 1.2, -0.1, float("nan"), float("inf")])
def test_retention_outside_unit_interval(value: float) -> None:
    df = good().with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(value)
        .otherwise(pl.col("retention"))
        .alias("retention")
    )
    assert violation(Portfolio(df)) == [("customers.retention", 5)]


def test_nan_margin_and_negative_service_cost_reported_together() -> None:
    df = good().with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(float("nan"))
        .otherwise(pl.col("margin"))
        .alias("margin"),
        pl.when(pl.int_range(pl.len()) == 7)
        .then(-1.0)
        .otherwise(pl.col("service_cost"))
        .alias("service_cost"),
    )
    assert violation(Portfolio(df)) == [("customers.margin", 2), ("customers.service_cost", 7)]


def test_non_numeric_column() -> None:
    df = good().with_columns(pl.col("margin").cast(pl.String))
    assert violation(Portfolio(df)) == [("customers.margin", None)]


def test_empty_portfolio() -> None:
    assert violation(Portfolio(good().head(0))) == [("customers", None)]
    assert violation(Portfolio()) == [("portfolio", None)]


def test_negative_budget_and_bad_levels() -> None:
    plan = Plan(total_budget=-5.0, retention_levels=(0.0, -1.0))
    fields = [f for f, _ in violation(Portfolio(good()), plan)]
    assert fields == ["plan.budget.total", "plan.retention_levels[1]"]


def test_cap_on_unknown_segment() -> None:
    plan = Plan(total_budget=10.0, segment_limits=(SegmentLimit("nope", cap=1.0),))
    assert violation(Portfolio(good()), plan) == [("plan.segment_limits[0].segment", None)]


def test_unknown_strategy_lists_the_known_ones() -> None:
    plan = Plan(allocation=StrategyChoice("magic"))
    with pytest.raises(InvalidInputError, match="available: greedy, lp, proportional, uniform"):
        allocate(Portfolio(good()), plan)


def test_unknown_strategy_parameter() -> None:
    plan = Plan(allocation=StrategyChoice("lp", {"solvr": "cbc"}))
    assert violation(Portfolio(good()), plan) == [("plan.allocation.params.solvr", None)]
    plan = Plan(allocation=StrategyChoice("lp", {"solver": "gurobi"}))
    assert violation(Portfolio(good()), plan) == [("plan.allocation.params.solver", None)]


def test_prospect_pool_checks() -> None:
    pools = prospects().with_columns(pl.lit(1.5).alias("acquisition_ceiling"))
    assert violation(Portfolio(prospects=pools))[0] == ("prospects.acquisition_ceiling", 0)


def test_options_table_checks() -> None:
    table = pl.DataFrame(
        {
            "customer_id": [1, 1, 2, 2],
            "level": [0.0, 1.0, 0.0, 0.0],
            "cost": [0.0, 1.0, 0.0, 2.0],
            "value": [1.0, 2.0, 1.0, 3.0],
        }
    )
    plan = Plan(cost=StrategyChoice("spend-table"))
    assert violation(Portfolio(options=table), plan) == [("options.level", 3)]
    bad_kind = table.with_columns(level=pl.Series([0.0, 1.0, 0.0, 1.0]), kind=pl.lit("upsell"))
    assert violation(Portfolio(options=bad_kind), plan)[0][0] == "options.kind"


def test_retention_ceiling_below_baseline() -> None:
    df = good().with_columns((pl.col("retention") - 0.01).clip(0).alias("retention_ceiling"))
    assert violation(Portfolio(df))[0][0] == "customers.retention_ceiling"


def test_plan_json_wrong_type_names_the_field() -> None:
    with pytest.raises(InvalidInputError) as err:
        Plan.from_json('{"budget": {"total": "lots"}}')
    assert "budget.total" in str(err.value)
    with pytest.raises(InvalidInputError) as err:
        Plan.from_json('{"budget": {"total": 10}, "horizon": 0}')
    assert err.value.violations[0].field == "plan.horizon"


def test_plan_json_round_trip() -> None:
    plan = Plan(
        total_budget=1000.0,
        segment_limits=(SegmentLimit("a", "retention", cap=10.0, minimum=2.0),),
        horizon=12,
        allocation=StrategyChoice("lp", {"solver": "cbc", "time_limit": 5.0}),
    )
    assert Plan.from_json(plan.to_json()) == plan
