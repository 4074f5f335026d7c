"""Score over loopback gRPC honours the plan's metric parameters and accepts the Boolean
columns a metric reads (sbg's ``active``), in both table formats."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from equity_plugins.sbg import SubscriptionCLV
from test_clv_sbg_metric import subscribers

from engine.errors import InvalidInputError
from engine.plan import Plan, StrategyChoice
from engine.service.client import Client

COLUMNS = ("renewal_probability", "clv", "margin", "retention")


@pytest.fixture(params=["arrow", "columns"])
def client(address: str, request: pytest.FixtureRequest) -> Iterator[Client]:
    with Client(address, timeout=60.0, table_format=request.param) as c:
        yield c


def _local(table: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    return SubscriptionCLV.from_params(plan.metric.params).compute(table, plan.valuation)


def _same(scores: pl.DataFrame, local: pl.DataFrame) -> None:
    for name in COLUMNS:
        assert scores[name].to_numpy() == pytest.approx(local[name].to_numpy(), rel=1e-12), name


def test_the_plans_metric_parameters_are_used(client: Client) -> None:
    table = subscribers(1_500, 0.7, 1.2, seed=4)
    given = Plan(discount_rate=0.05,
                 metric=StrategyChoice("sbg", {"alpha": 2.0, "beta": 5.0, "bridge": "next"}))
    scores = client.score(table, given)
    assert table["active"].dtype == pl.Boolean  # sent as Booleans, as the table has them
    _same(scores, _local(table, given))
    # the parameters matter: the default (alpha, beta fitted on the table) scores otherwise
    fitted = client.score(table, Plan(discount_rate=0.05, metric=StrategyChoice("sbg")))
    _same(fitted, _local(table, Plan(discount_rate=0.05, metric=StrategyChoice("sbg"))))
    assert not np.allclose(fitted["clv"].to_numpy(), scores["clv"].to_numpy(), rtol=1e-3)
    # one fit per cohort
    by = Plan(metric=StrategyChoice("sbg", {"by": "segment"}))
    _same(client.score(table, by), _local(table, by))


def test_a_metric_named_in_the_request_besides_the_plans_keeps_its_defaults(
    client: Client,
) -> None:
    table = subscribers(800, 0.7, 1.2, seed=5)
    plan = Plan(metric=StrategyChoice("clv"))  # the plan's metric is another one
    scores = client.score(table, plan, metrics=["sbg"])
    _same(scores, _local(table, Plan(metric=StrategyChoice("sbg"))))


def test_boolean_flags_score_as_their_numbers(client: Client) -> None:
    table = subscribers(1_000, 0.7, 1.2, seed=6)
    plan = Plan(metric=StrategyChoice("sbg"))
    as_bool = client.score(table, plan)
    as_int = client.score(table.with_columns(pl.col("active").cast(pl.Int64)), plan)
    for name in COLUMNS:
        assert as_bool[name].to_numpy() == pytest.approx(as_int[name].to_numpy(), rel=1e-12)


def test_a_null_flag_is_named_with_its_row(client: Client) -> None:
    table = subscribers(300, 0.7, 1.2, seed=7)
    active = table["active"].to_list()
    active[17] = None
    bad = table.with_columns(pl.Series("active", active, dtype=pl.Boolean))
    with pytest.raises(InvalidInputError) as err:
        client.score(bad, Plan(metric=StrategyChoice("sbg")))
    assert (err.value.violations[0].field, err.value.violations[0].row) == (
        "customers.active", 17)


def test_a_wrong_metric_parameter_is_named(client: Client) -> None:
    table = subscribers(300, 0.7, 1.2, seed=8)
    with pytest.raises(InvalidInputError) as err:
        client.score(table, Plan(metric=StrategyChoice("sbg", {"alpha": -1.0, "beta": 1.0})))
    assert err.value.violations[0].field == "plan.metric.params.alpha"
    with pytest.raises(InvalidInputError) as err:
        client.score(table, Plan(metric=StrategyChoice("sbg", {"colour": 1.0})))
    assert err.value.violations[0].field.startswith("plan.metric.params")
