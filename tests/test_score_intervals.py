"""Per-customer intervals through ``Score`` over loopback gRPC: the ``bgnbd`` metric with
``interval_draws`` returns the interval columns of ``FitClv`` (and ``equity clv --output``),
drawn by the same code with the same draws, seed and level; a value model without intervals
is INVALID_ARGUMENT naming the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from engine.errors import InvalidInputError
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.service.client import Client

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CAL = "1997-09-30"
FIGURES = ("p_alive", "expected_purchases", "clv")
BOUNDS = tuple(f"{m}_{b}" for m in FIGURES for b in ("lower", "upper"))
PERIOD_DAYS = 365.25  # the metric's default plan period, in days


@pytest.fixture(params=["arrow", "columns"])
def client(address: str, request: pytest.FixtureRequest) -> Iterator[Client]:
    with Client(address, timeout=120.0, table_format=request.param) as c:
        yield c


def _plan(horizon: int | None = None, **params: Any) -> Plan:
    return Plan(discount_rate=0.12, horizon=horizon,
                metric=StrategyChoice("bgnbd", {"calibration_end": CAL, **params}))


def test_score_intervals_are_fit_clvs(client: Client, cdnow: pl.DataFrame) -> None:
    plan = _plan(horizon=3, interval_draws=40, interval_level=0.8)
    scores = client.score(cdnow, plan)
    clv = client.fit_clv(cdnow, CAL, interval_draws=40, interval_level=0.8, horizon=3,
                         discount_rate=0.12, period_length=PERIOD_DAYS / 7, time_unit="week")
    assert scores.height == clv.customers.height == 2357
    assert scores["customer_id"].to_list() == clv.customers["customer_id"].to_list()
    for name in (*FIGURES, *BOUNDS):  # same names, same numbers: one implementation, one seed
        assert np.array_equal(scores[name].to_numpy(), clv.customers[name].to_numpy()), name
    for name in FIGURES:
        lower, point, upper = (scores[f"{name}_lower"].to_numpy(), scores[name].to_numpy(),
                               scores[f"{name}_upper"].to_numpy())
        assert np.all(lower <= upper), name
        assert np.mean(upper - lower) > 0, name  # the estimates' uncertainty shows
        # the point estimate lies within its interval (a 1e-9 relative slack for rounding)
        slack = 1e-9 * np.maximum(np.abs(point), 1.0)
        assert np.all(lower <= point + slack) and np.all(point <= upper + slack), name


def test_seed_level_and_off(address: str, cdnow: pl.DataFrame) -> None:
    with Client(address, timeout=120.0) as client:
        base = client.score(cdnow, _plan(interval_draws=30))
        again = client.score(cdnow, _plan(interval_draws=30))
        other = client.score(cdnow, _plan(interval_draws=30, interval_seed=7))
        wider = client.score(cdnow, _plan(interval_draws=30, interval_level=0.98))
        off = client.score(cdnow, _plan())
    assert base.equals(again)  # seeded: the same request, the same intervals
    assert not np.array_equal(base["clv_upper"].to_numpy(), other["clv_upper"].to_numpy())
    for name in FIGURES:
        assert np.all(wider[f"{name}_upper"].to_numpy() >= base[f"{name}_upper"].to_numpy())
        assert np.all(wider[f"{name}_lower"].to_numpy() <= base[f"{name}_lower"].to_numpy())
    assert not set(BOUNDS) & set(off.columns)  # default: no draws, no columns
    for name in FIGURES:  # the intervals change nothing else
        assert np.array_equal(off[name].to_numpy(), base[name].to_numpy())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "pareto-nbd", "interval_draws": 20}, "BG/NBD"),
        ({"model": "mbg-nbd", "interval_draws": 20}, "BG/NBD"),
        ({"interval_draws": 5}, "10 to"),
        ({"interval_draws": -1}, ">= 0"),
        ({"interval_level": 1.0}, "<="),
    ],
)
def test_a_bad_interval_request_names_the_parameter(
    address: str, cdnow: pl.DataFrame, params: dict[str, Any], message: str
) -> None:
    field = "plan.metric.params." + next(k for k in params if k.startswith("interval"))
    with Client(address, timeout=60.0) as client, pytest.raises(InvalidInputError) as err:
        client.score(cdnow.head(500), _plan(**params))
    assert [v.field for v in err.value.violations] == [field]
    assert message in err.value.violations[0].description


def test_another_model_without_draws_still_scores(address: str, cdnow: pl.DataFrame) -> None:
    with Client(address, timeout=120.0) as client:
        scores = client.score(cdnow, _plan(model="pareto-nbd"))
    assert scores.height == 2357 and not set(BOUNDS) & set(scores.columns)


def test_allocate_carries_the_interval_columns_into_the_plan(
    address: str, cdnow: pl.DataFrame
) -> None:
    plan = Plan(total_budget=1500.0, discount_rate=0.12,
                metric=StrategyChoice("bgnbd", {"calibration_end": CAL, "interval_draws": 40}))
    with Client(address, timeout=120.0) as client:
        result = client.allocate(Portfolio(transactions=cdnow), plan)
        scores = client.score(cdnow, _plan(interval_draws=40))
    units = result.units.filter(pl.col("customer_id").is_not_null()).sort("customer_id")
    assert units.height == 2357
    for name in BOUNDS:  # the plan's per-customer rows keep the metric's columns
        assert np.array_equal(units[name].to_numpy(), scores.sort("customer_id")[name].to_numpy())


def test_a_bad_log_names_column_and_row_and_the_metric_scores_alone(
    address: str, cdnow: pl.DataFrame
) -> None:
    log = cdnow.select("customer_id", pl.col("date").cast(pl.String), "amount").head(300)
    bad = log.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("1997-02-30")).otherwise("date")
        .alias("date")
    )
    cases = [
        (bad, (), [("transactions.date", 3)]),
        (log.drop("amount"), (), [("transactions.amount", None)]),
        (log, ("bgnbd", "clv"), [("metrics", None)]),
    ]
    with Client(address, timeout=60.0) as client:
        for table, metrics, expected in cases:
            with pytest.raises(InvalidInputError) as err:
                client.score(table, _plan(interval_draws=20), metrics=metrics)
            assert [(v.field, v.row) for v in err.value.violations] == expected
