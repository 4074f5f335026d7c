"""The transaction path over gRPC: a log in, a plan out, as `equity allocate --transactions`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from engine.clv.transactions import read_transactions
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.service.client import Client

DATA = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[Client]:
    with Client(address, timeout=60.0) as c:
        yield c


def test_allocate_from_transactions_matches_the_engine(client: Client) -> None:
    tx = read_transactions(DATA)
    wire_tx = tx.with_columns(pl.col("date").cast(pl.String))  # dates travel as ISO strings
    plan = Plan(total_budget=1500.0,
                metric=StrategyChoice("bgnbd", {"calibration_end": "1997-09-30"}))
    remote = client.allocate(Portfolio(transactions=wire_tx), plan)
    local = allocate(Portfolio(transactions=tx), plan)
    assert remote.summary["customers"] == 2357
    assert remote.summary["equity_after"] == pytest.approx(local.summary["equity_after"],
                                                           rel=1e-9)
    assert remote.summary["total_spend"] <= 1500 * (1 + 1e-9)


def test_transactions_with_a_customers_metric_is_invalid_argument(client: Client) -> None:
    tx = read_transactions(DATA).head(50).with_columns(pl.col("date").cast(pl.String))
    with pytest.raises(InvalidInputError) as err:
        client.allocate(Portfolio(transactions=tx), Plan(total_budget=10.0))
    assert err.value.violations[0].field == "plan.metric.name"
