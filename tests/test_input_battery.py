"""Generated bad (and good) input: every case is a clear error or a plan that keeps every
constraint, never a crash, a hang, a NaN or a broken budget. Over 1,000 cases per run;
`HYPOTHESIS_PROFILE=long` runs ten times more."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import (
    EquityError,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
)
from engine.io import read_table
from engine.limits import Limits
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.synthetic import customers as make_customers

settings.register_profile("default", deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("long", deadline=None, suppress_health_check=list(HealthCheck),
                          max_examples=4000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.999999, -1e-9, 1e308, -1e308, 5e-324]),
    st.floats(-5, 5),
)
ids = st.one_of(st.integers(-3, 3), st.text(max_size=4))
segments = st.sampled_from(["a", "b", "ü", "", "seg\u200b"])


@st.composite
def customer_tables(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(0, 6))
    columns = {
        "customer_id": [draw(ids) for _ in range(n)],
        "margin": [draw(floats) for _ in range(n)],
        "retention": [draw(floats) for _ in range(n)],
        "service_cost": [draw(floats) for _ in range(n)],
        "segment": [draw(segments) for _ in range(n)],
    }
    drop: set[str] = draw(st.sets(st.sampled_from(list(columns)), max_size=2))
    try:
        return pl.DataFrame({k: v for k, v in columns.items() if k not in drop},
                            strict=False)
    except Exception:  # mixed id types polars cannot hold: use strings, as a file would
        columns["customer_id"] = [str(x) for x in columns["customer_id"]]
        return pl.DataFrame({k: v for k, v in columns.items() if k not in drop},
                            strict=False)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    maybe = st.one_of(st.none(), floats)
    limits = tuple(
        SegmentLimit(draw(segments), draw(st.sampled_from([None, "retention", "acquisition"])),
                     draw(maybe), draw(maybe))
        for _ in range(draw(st.integers(0, 3)))
    )
    levels = tuple(draw(st.lists(floats, min_size=0, max_size=5)))
    return Plan(
        total_budget=draw(maybe),
        retention_budget=draw(maybe),
        segment_limits=limits,
        discount_rate=draw(st.one_of(st.just(0.1), floats)),
        horizon=draw(st.one_of(st.none(), st.integers(-2, 50))),
        retention_levels=levels,
        allocation=StrategyChoice(draw(st.sampled_from(["lp", "greedy", "uniform", "nope"]))),
    )


def check_outcome(portfolio: Portfolio, plan: Plan, limits: Limits | None = None) -> None:
    try:
        result = allocate(portfolio, plan, limits=limits)
    except InvalidInputError as exc:
        assert exc.violations and all(v.field and v.description for v in exc.violations)
        return
    except (InfeasiblePlanError, LimitExceededError) as exc:
        assert str(exc)
        return
    s = result.summary
    for key in ("equity_before", "equity_after", "total_spend"):
        assert math.isfinite(s[key]), key
    for column in ("spend", "equity_before", "equity_after", "level"):
        assert np.isfinite(result.units[column].to_numpy()).all(), column
    tol = 1e-7
    if plan.total_budget is not None:
        assert s["total_spend"] <= plan.total_budget + tol * max(1, plan.total_budget)
    if plan.retention_budget is not None:
        spent = s["spend_by_kind"]["retention"]
        assert spent <= plan.retention_budget + tol * max(1, plan.retention_budget)
    for lim in plan.segment_limits:
        units = result.units.filter(pl.col("segment") == lim.segment)
        if lim.kind:
            units = units.filter(pl.col("kind") == lim.kind)
        spent = float(units["spend"].sum())
        if lim.cap is not None:
            assert spent <= lim.cap + tol * max(1, lim.cap)
        if lim.minimum is not None:
            assert spent >= lim.minimum - tol * max(1, lim.minimum)


@settings(max_examples=4000 if LONG else 500)
@given(table=customer_tables(), plan=plans())
def test_generated_customers_and_plans(table: pl.DataFrame, plan: Plan) -> None:
    check_outcome(Portfolio(table), plan)


VALID = make_customers(12, seed=4)


@settings(max_examples=4000 if LONG else 400)
@given(plan=plans())
def test_generated_plans_on_a_valid_portfolio(plan: Plan) -> None:
    check_outcome(Portfolio(VALID), plan)


@st.composite
def option_tables(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 12))
    return pl.DataFrame(
        {
            "customer_id": [draw(st.integers(0, 3)) for _ in range(n)],
            "level": [draw(st.sampled_from([0.0, 1.0, 2.0, float("nan")])) for _ in range(n)],
            "cost": [draw(st.one_of(st.floats(0, 10), floats)) for _ in range(n)],
            "value": [draw(st.one_of(st.floats(-10, 10), floats)) for _ in range(n)],
            "segment": [draw(st.sampled_from(["a", "b"])) for _ in range(n)],
            "kind": [draw(st.sampled_from(["retention", "acquisition", "upsell"]))
                     for _ in range(n)],
        }
    )


@settings(max_examples=4000 if LONG else 300)
@given(table=option_tables(), budget=st.one_of(st.none(), st.floats(-1, 30)),
       cap=st.one_of(st.none(), st.floats(0, 10)), minimum=st.one_of(st.none(), st.floats(0, 8)))
def test_generated_option_tables(table, budget, cap, minimum) -> None:
    limits = (SegmentLimit("a", cap=cap, minimum=minimum),) if cap or minimum else ()
    plan = Plan(total_budget=budget, segment_limits=limits, cost=StrategyChoice("spend-table"))
    check_outcome(Portfolio(options=table), plan)


@settings(max_examples=200)
@given(data=st.binary(max_size=300), cut=st.integers(0, 4000))
def test_truncated_or_garbage_files(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                    cut: int) -> None:
    folder = tmp_path_factory.mktemp("files")
    good = folder / "good.parquet"
    VALID.write_parquet(good)
    for name, payload in (("t.parquet", good.read_bytes()[:cut]), ("g.parquet", data),
                          ("g.csv", data), ("g.arrow", data)):
        path = Path(folder) / name
        path.write_bytes(payload)
        try:
            table = read_table(path, "customers")
        except InvalidInputError as exc:
            assert exc.violations[0].field == "customers"
            continue
        try:
            check_outcome(Portfolio(table), Plan(total_budget=10.0))
        except EquityError:  # pragma: no cover - check_outcome handles all expected ones
            raise


def test_millions_of_levels_for_one_customer_hit_the_limit() -> None:
    n = 2_000_000
    table = pl.DataFrame({"customer_id": np.zeros(n, dtype=np.int64),
                          "level": np.arange(n, dtype=np.float64),
                          "cost": np.arange(n, dtype=np.float64), "value": np.zeros(n)})
    with pytest.raises(LimitExceededError, match="max_levels_per_unit"):
        allocate(Portfolio(options=table), Plan(total_budget=5.0,
                                                 cost=StrategyChoice("spend-table")))


def test_too_many_customers_for_the_configured_limit() -> None:
    with pytest.raises(LimitExceededError, match="max_units: 12 exceeds the limit of 10"):
        allocate(Portfolio(VALID), Plan(total_budget=5.0), limits=Limits(max_units=10))


def test_too_many_plan_levels() -> None:
    plan = Plan(total_budget=5.0, retention_levels=tuple(float(i) for i in range(300)))
    with pytest.raises(LimitExceededError, match="max_levels_per_unit"):
        allocate(Portfolio(VALID), plan)
