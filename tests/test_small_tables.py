"""Small tables built without polars' fixed cost per call (``engine.small_tables``) are
exactly what the columnar path builds: random small plans (caps, minimums, kind budgets,
pools, limits on other resources, barred customers) go through ``allocate`` with the small
paths on and off, and their plan rows and summaries must be equal bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engine import small_tables
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, ResourceLimit, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.result import PlanResult
from engine.synthetic import example
from tests.test_resources import table


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(small_tables, "SMALL_ROWS", -1)  # every table takes the general path


def _both(portfolio: Portfolio, plan: Plan,
          monkeypatch: pytest.MonkeyPatch) -> tuple[PlanResult, PlanResult]:
    small = allocate(portfolio, plan)
    with monkeypatch.context() as patch:
        _general(patch)
        general = allocate(portfolio, plan)
    return small, general


def _identical(small: PlanResult, general: PlanResult) -> None:
    assert small.units.schema == general.units.schema
    assert small.units.equals(general.units, null_equal=True)
    for name in small.units.columns:  # equal values, and equal bits (-0.0 is not 0.0 here)
        a, b = small.units[name], general.units[name]
        if a.dtype == pl.Float64:
            bits = (a.to_numpy().view(np.int64), b.to_numpy().view(np.int64))
            assert np.array_equal(*bits) or a.null_count(), name
    left, right = small.summary.to_dict(), general.summary.to_dict()
    left.pop("seconds")
    right.pop("seconds")
    assert left == right
    assert small.summary.status == "optimal"


def _random_plan(rng: np.random.Generator, plan: Plan, n: int) -> Plan:
    budget = float(n) * rng.uniform(2.0, 9.0)
    limits = [SegmentLimit("premium", cap=budget * rng.uniform(0.1, 0.4))]
    if rng.random() < 0.5:
        cap = budget * rng.uniform(0.05, 0.2)
        limits.append(SegmentLimit("at-risk", kind="retention", cap=cap))
    if rng.random() < 0.7:
        limits.append(SegmentLimit("new", minimum=budget * rng.uniform(0.01, 0.08)))
    return replace(
        plan,
        total_budget=budget,
        acquisition_budget=budget * rng.uniform(0.2, 0.6) if rng.random() < 0.7 else None,
        retention_budget=budget * rng.uniform(0.4, 0.9) if rng.random() < 0.3 else None,
        segment_limits=tuple(limits),
    )


@pytest.mark.parametrize("seed", range(12))
def test_customers_and_pools_with_caps_minimums_and_kind_budgets(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1600 + seed)
    n = int(rng.integers(10, 400))
    customers, pools, plan = example(n, seed=seed + 1)
    if seed % 3 == 1:  # text ids, unsorted
        customers = customers.with_columns(
            pl.format("c{}", pl.col("customer_id")).alias("customer_id")).reverse()
    if seed % 4 == 2:  # customers alone, no pools
        pools = None
    if seed % 4 == 3:  # customers without a segment (null: the segment named "")
        rows = pl.Series(rng.random(customers.height) < 0.2)
        customers = customers.with_columns(
            pl.when(rows).then(None).otherwise(pl.col("segment")).alias("segment"))
    small, general = _both(Portfolio(customers, pools), _random_plan(rng, plan, n), monkeypatch)
    _identical(small, general)
    assert small.units.height == n + (0 if pools is None else pools.height)


@pytest.mark.parametrize("seed", range(6))
def test_limits_on_other_resources_and_barred_customers(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1700 + seed)
    n = int(rng.integers(20, 200))
    options = table(n, seed, barred=True)
    limits = [ResourceLimit("contacts", max=float(n) * rng.uniform(0.3, 0.6)),
              ResourceLimit("calls", segment="s1", max=float(n) * rng.uniform(0.05, 0.2))]
    if seed % 2:
        limits.append(ResourceLimit("contacts", segment="s2", min=float(n) * 0.05))
    plan = Plan(total_budget=float(n) * 6.0, resource_limits=tuple(limits),
                segment_limits=(SegmentLimit("s0", cap=float(n) * 2.0),),
                cost=StrategyChoice("spend-table"))
    small, general = _both(Portfolio(options=options), plan, monkeypatch)
    _identical(small, general)


def test_a_repeated_pool_is_named_alike_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    customers, pools, plan = example(50, seed=3)
    twice = pl.concat([pools, pools.head(1)])
    with pytest.raises(InvalidInputError) as small:
        allocate(Portfolio(customers, twice), plan)
    _general(monkeypatch)
    with pytest.raises(InvalidInputError) as general:
        allocate(Portfolio(customers, twice), plan)
    assert str(small.value) == str(general.value)
    assert small.value.violations == general.value.violations
    assert "repeats row 0" in str(small.value)


@pytest.mark.parametrize("n", [0, 1, 7, 4096, 4097])
def test_each_helper_matches_its_general_path(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(n)
    names = ["retention", "acquisition", "x"]
    codes = rng.integers(0, 3, n).astype(np.int8)
    frame = pl.DataFrame({"a": pl.Series([1.5], dtype=pl.Float64),
                          "b": pl.Series(["z"], dtype=pl.String),
                          "c": pl.Series([3], dtype=pl.Int32)})
    rows = np.flatnonzero(rng.random(n) < 0.3)
    values = rng.normal(size=rows.size)
    special = min(3, rows.size)
    values[:special] = [np.nan, -0.0, np.inf][:special]  # kept as they are
    small = (small_tables.labels(names, codes), small_tables.nulls(n, pl.Int64),
             small_tables.nulls(n, pl.String), small_tables.scattered(n, rows, values),
             small_tables.null_rows(frame, n))
    _general(monkeypatch)
    general = (small_tables.labels(names, codes), small_tables.nulls(n, pl.Int64),
               small_tables.nulls(n, pl.String), small_tables.scattered(n, rows, values),
               small_tables.null_rows(frame, n))
    for a, b in zip(small[:4], general[:4], strict=True):
        assert a.name == b.name and a.dtype == b.dtype
        assert a.equals(b, null_equal=True)
    assert small[4].schema == general[4].schema and small[4].equals(general[4])
    assert small[0].to_list() == [names[c] for c in codes]
    expected = [None] * n
    for row, value in zip(rows.tolist(), values.tolist(), strict=True):
        expected[row] = value
    assert small[3].to_list() == expected or np.isnan(values).any()
    assert np.array_equal(small[3].to_numpy()[rows], values, equal_nan=True)
    assert small[3].null_count() == n - rows.size
    values_bytes = [c.to_arrow().buffers()[1].to_pybytes() for c in (small[3], general[3])]
    assert values_bytes[0] == values_bytes[1]  # the same bytes, 0.0 under the nulls too


def test_distinct_rows_decides_only_what_it_can() -> None:
    ids = pl.DataFrame({"id": [3, 1, 2], "name": ["a", "b", "a"]})
    assert small_tables.distinct_rows(ids, ["id"])
    assert not small_tables.distinct_rows(ids, ["name"])
    assert small_tables.distinct_rows(ids, ["id", "name"])
    # floats (NaN, -0.0) and nulls are left to the general check
    assert not small_tables.distinct_rows(pl.DataFrame({"x": [1.0, 2.0]}), ["x"])
    assert not small_tables.distinct_rows(pl.DataFrame({"x": [1, None]}), ["x"])


@pytest.mark.parametrize("seed", range(4))
def test_segment_codes_match_the_columnar_encoding(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.options import _codes

    rng = np.random.default_rng(seed)
    names = ["b", "a", "", "Zeta", "é", "ä", "a b", "10", "9", "\u4e2d"]
    values = [None if rng.random() < 0.1 else names[i] for i in rng.integers(0, 10, 300)]
    columns = [pl.Series("segment", values, dtype=pl.String),
               pl.Series("segment", values[:1], dtype=pl.String),
               pl.Series("segment", [], dtype=pl.String)]
    small = [_codes(c, c.len()) for c in columns]
    found = [small_tables.names(c) for c in columns]  # the names alone, as the codes name them
    _general(monkeypatch)
    general = [_codes(c, c.len()) for c in columns]
    assert found == [names for _, names in general]
    assert small_tables.names(columns[0]) is None  # past SMALL_ROWS: the caller's own path
    for (a_codes, a_names), (b_codes, b_names) in zip(small, general, strict=True):
        assert a_names == b_names
        assert a_codes.dtype == b_codes.dtype and np.array_equal(a_codes, b_codes)
    assert small_tables.codes(pl.Series([1, 2])) is None  # numbers: the columnar path


def test_padding_keeps_values_types_and_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pl.DataFrame({"a": [1.5, float("nan"), None], "b": ["x", None, "y"],
                          "c": pl.Series([1, 2, 3], dtype=pl.Int16),
                          "d": [[1.0], [], None]})
    small = pl.DataFrame(small_tables.padded(frame.get_columns(), 4))
    _general(monkeypatch)
    general = pl.DataFrame(small_tables.padded(frame.get_columns(), 4))
    assert small.schema == general.schema and small.height == 7
    assert small.equals(general, null_equal=True)
    assert np.isnan(small["a"][1]) and small["a"].null_count() == 5
