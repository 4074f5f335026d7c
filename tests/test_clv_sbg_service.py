"""Subscribers over gRPC: Allocate with the sbg metric on a loopback server gives the
engine's plan; Score returns each subscriber's sBG renewal probability and CLV."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from equity_plugins.sbg import SubscriptionCLV
from test_clv_sbg_metric import subscribers

from engine.clv.sbg import fit_sbg_tenure
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.service.client import Client


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[Client]:
    with Client(address, timeout=60.0) as c:
        yield c


def test_allocate_subscribers(client: Client) -> None:
    table = subscribers(2_000, 0.7, 1.2)
    plan = Plan(total_budget=800.0, metric=StrategyChoice("sbg", {"by": "segment"}))
    remote = client.allocate(Portfolio(customers=table), plan)
    local = allocate(Portfolio(customers=table), plan)
    assert remote.summary["customers"] == 2_000
    for key in ("equity_before", "equity_after", "total_spend"):
        assert remote.summary[key] == pytest.approx(local.summary[key], rel=1e-9)


def test_score_subscribers(client: Client) -> None:
    # Score checks the columns a metric requires as numbers: active as 1/0 here.
    table = subscribers(3_000, 0.7, 1.2).with_columns(pl.col("active").cast(pl.Int64))
    plan = Plan(metric=StrategyChoice("sbg"))
    scores = client.score(table, plan)
    assert scores["customer_id"].to_list() == table["customer_id"].to_list()
    local = SubscriptionCLV.from_params({}).compute(table, plan.valuation)
    for name in ("renewal_probability", "clv", "margin", "retention"):
        assert scores[name].to_numpy() == pytest.approx(local[name].to_numpy(), rel=1e-12)
    active = table["active"].to_numpy() == 1
    fit = fit_sbg_tenure(table["renewals"], active)
    n = table["renewals"].to_numpy()[active]
    assert scores["renewal_probability"].to_numpy()[active] == pytest.approx(
        (fit.beta + n) / (fit.alpha + fit.beta + n), rel=1e-9)
    bad = table.with_columns(pl.Series("renewals", np.where(np.arange(3_000) == 9, -1,
                                                            table["renewals"].to_numpy())))
    with pytest.raises(InvalidInputError) as err:
        client.score(bad, plan)
    assert (err.value.violations[0].field, err.value.violations[0].row) == (
        "customers.renewals", 9)
