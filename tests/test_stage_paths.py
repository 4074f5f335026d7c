"""The validate, metric and options stages' shortcuts against the general way on the same
inputs: response options assembled at once against ``OptionSet.concat`` of per-kind
``OptionSet.uniform`` parts; the hull of levels listed by rising cost against the sort;
a numeric column passed by its extremes against its masks; the cost model's unit ids
checked in kind runs against the masked check."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from equity_plugins.costs import _levels, response_options
from numpy.typing import NDArray

from engine.hull import upper_hull
from engine.options import LevelsAfter, OptionSet, merge_codes
from engine.pipeline import option_set_problem
from engine.plan import Plan, ResponseCurve
from engine.portfolio import CUSTOMERS, PROSPECTS, Portfolio, _value_problems, _within
from engine.synthetic import example


def _by_parts(customers: pl.DataFrame | None, prospects: pl.DataFrame | None,
              options: OptionSet, plan: Plan) -> OptionSet:
    """The same options as ``OptionSet.concat`` of one ``OptionSet.uniform`` per kind (the
    arrays taken from ``options``: what is compared is how they are put together)."""
    parts, at = [], 0
    n = customers.height if customers is not None else 0
    if customers is not None and n:
        width = int(options.offsets[1] - options.offsets[0])
        cost = options.cost[:n * width].reshape(n, width)
        assert (cost == _levels(plan.retention_levels)).all()  # a customer's cost: its level
        labels = (customers["segment"].cast(pl.String).fill_null("")
                  if "segment" in customers.columns else pl.Series([""] * n))
        parts.append(OptionSet.uniform(
            customers["customer_id"], np.zeros(n, dtype=np.int8), labels,
            np.zeros(n, dtype=bool), np.ones(n), cost, cost,
            options.value[:n * width].reshape(n, width)))
        at = n * width
    if prospects is not None and prospects.height:
        m = prospects.height
        width = (options.cost.size - at) // m
        levels = options.level[at:].reshape(m, width)
        assert (levels == _levels(plan.acquisition_levels)).all()  # the plan's, every pool
        parts.append(OptionSet.uniform(
            prospects["segment"].cast(pl.String), np.ones(m, dtype=np.int8),
            prospects["segment"], np.ones(m, dtype=bool),
            prospects["prospects"].to_numpy().astype(np.float64), levels,
            options.cost[at:].reshape(m, width), options.value[at:].reshape(m, width)))
    return OptionSet.concat(parts)


def _same_options(a: OptionSet, b: OptionSet) -> None:
    assert a.unit_id.name == b.unit_id.name and a.unit_id.dtype == b.unit_id.dtype
    assert a.unit_id.equals(b.unit_id, null_equal=True)
    assert a.segments == b.segments and a.extra.keys() == b.extra.keys()
    for name in ("kind", "segment", "fractional", "size", "offsets", "level", "cost", "value"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    sa, sb = a.stored_level, b.stored_level
    assert type(sa) is type(sb)
    if isinstance(sa, LevelsAfter):
        assert isinstance(sb, LevelsAfter) and sa.start == sb.start
    else:
        assert (sa is a.cost) == (sb is b.cost)  # levels shared with the cost, or their own


Case = tuple[str, pl.DataFrame | None, pl.DataFrame | None, Plan]


def _variants() -> list[Case]:
    out: list[Case] = []
    for n in (1, 7, 100):
        customers, pools, plan = example(n, seed=n)
        out.append((f"both{n}", customers, pools, plan))
        out.append((f"customers{n}", customers, None, plan))
        out.append((f"pools{n}", None, pools, plan))
    customers, pools, plan = example(60, seed=4)
    odd = customers.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("customer_id"),  # ids as numbers
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(None)  # customers without a segment
        .otherwise(pl.col("segment")).alias("segment"),
    )
    out.append(("odd-ids", odd, pools, plan))
    out.append(("odd-ids-alone", odd, None, plan))
    out.append(("no-segment", customers.drop("segment"), pools, plan))
    out.append(("categorical-pools", customers,
                pools.with_columns(pl.col("segment").cast(pl.Categorical)), plan))
    out.append(("empty-pools", customers, pools.head(0), plan))
    out.append(("empty-customers", customers.head(0), pools, plan))
    curves = (ResponseCurve("premium", "retention", 0.8, 0.9, 0.1, "hill", 2.0),
              ResponseCurve("new", "acquisition", 0.0, 0.4, 0.1))
    out.append(("curves", customers, pools, dataclasses.replace(plan, response_curves=curves)))
    return out


@pytest.mark.parametrize("case", _variants(), ids=lambda case: case[0])
def test_response_options_are_the_uniform_parts_concatenated(case: Case) -> None:
    _, customers, pools, plan = case
    options = response_options(customers, pools, plan, 0.3, 0.05)
    _same_options(options, _by_parts(customers, pools, options, plan))
    assert option_set_problem(options) is None


def test_response_options_of_nothing_is_the_concatenations_error() -> None:
    customers, pools, plan = example(5, seed=1)
    with pytest.raises(Exception) as assembled:
        response_options(customers.head(0), pools.head(0), plan, 0.3, 0.05)
    with pytest.raises(Exception) as concatenated:
        OptionSet.concat([])
    assert str(assembled.value) == str(concatenated.value)


def test_the_plans_levels_are_sorted_distinct_and_kept_apart_by_sign() -> None:
    levels = _levels((5.0, 0.0, 2.0, 5.0))
    assert levels.tolist() == [0.0, 2.0, 5.0] and not levels.flags.writeable
    assert np.signbit(_levels((-0.0, 1.0))[0]) and not np.signbit(_levels((0.0, 1.0))[0])
    assert _levels((5.0, 0.0, 2.0, 5.0)) is levels  # one array per level list


def _units(rng: np.random.Generator, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cost = np.concatenate([np.cumsum(rng.uniform(0.5, 4.0, c)) for c in counts])
    value = 10.0 * np.sqrt(cost) + rng.normal(0.0, 1.5, cost.size)  # many off-hull levels
    value[::7] = np.round(value[::7])  # some exact ties and collinear points
    return offsets, cost, value


@pytest.mark.parametrize("n", [1, 3, 105, 5_000])
def test_levels_by_rising_cost_give_the_sorts_hull(n: int) -> None:
    rng = np.random.default_rng(n)
    counts = rng.integers(1, 9, n)  # widths differ: the general hull
    offsets, cost, value = _units(rng, counts)
    # the same options, each unit's listed backwards: the sort puts them back in order
    back = np.concatenate([np.arange(offsets[u + 1] - 1, offsets[u] - 1, -1)
                           for u in range(n)]).astype(np.int64)
    rising, sorted_ = upper_hull(offsets, cost, value), upper_hull(offsets, cost[back],
                                                                   value[back])
    assert np.array_equal(rising.offsets, sorted_.offsets)
    assert np.array_equal(rising.points, back[sorted_.points])
    assert rising.points.dtype == sorted_.points.dtype
    if n > 100:
        assert (np.diff(rising.offsets) < counts).any()  # points were dropped


def _column_values(rng: np.random.Generator) -> list[np.ndarray]:
    edges = [np.nan, np.inf, -np.inf, 1e12, -1e12, np.nextafter(1e12, np.inf), -2e12,
             0.0, -0.0, -1e-300, 1.0, np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0), 0.5]
    out = [np.array([e]) for e in edges]
    for _ in range(200):
        values = rng.uniform(0.0, 0.99, int(rng.integers(1, 6)))
        values[rng.integers(values.size)] = rng.choice(edges)
        out.append(values)
    return out


def test_a_column_passes_by_its_extremes_exactly_when_its_masks_find_nothing() -> None:
    rng = np.random.default_rng(3)
    columns = [c for c in (*CUSTOMERS, *PROSPECTS) if c.numeric]
    for values in _column_values(rng):
        for col in columns:
            assert _within(values, col) == (not _value_problems("t.x", values, col)), (
                col.name, values)


def test_a_bad_value_is_named_with_its_row_as_before() -> None:
    customers, pools, _ = example(20, seed=2)
    bad = customers.with_columns(
        pl.when(pl.int_range(pl.len()) == 13).then(1.0).otherwise(pl.col("retention"))
        .alias("retention"),
        pl.when(pl.int_range(pl.len()) == 4).then(float("nan")).otherwise(pl.col("margin"))
        .alias("margin"),
    )
    with pytest.raises(Exception) as caught:
        Portfolio(bad, pools).validated()
    text = str(caught.value)
    assert "customers.margin[4]: must be finite" in text
    assert "customers.retention[13]: must be < 1" in text


def _pools_first(options: OptionSet) -> OptionSet:
    """The same units with the pools listed before the customers (kinds not in two runs)."""
    order = np.argsort(np.where(options.kind == 1, 0, 1), kind="stable")
    flat = np.concatenate([np.arange(options.offsets[u], options.offsets[u + 1])
                           for u in order])
    offsets = np.zeros(order.size + 1, dtype=np.int64)
    np.cumsum(np.diff(options.offsets)[order], out=offsets[1:])
    return OptionSet(
        options.unit_id.gather(order), options.kind[order], options.segment[order],
        options.segments, options.fractional[order], options.size[order], offsets,
        options.level[flat], options.cost[flat], options.value[flat])


@pytest.mark.parametrize("repeat", ["pools", "customers", "none"])
def test_repeated_unit_ids_are_named_alike_in_kind_runs_and_mixed(repeat: str) -> None:
    customers, pools, plan = example(30, seed=5)
    if repeat == "pools":
        pools = pl.concat([pools, pools.head(2)])
    if repeat == "customers":
        customers = pl.concat([customers, customers.slice(3, 4)])
    runs = response_options(customers, pools, plan, 0.3, 0.05)  # customers, then pools
    mixed = _pools_first(runs)
    assert not (mixed.kind[1:] >= mixed.kind[:-1]).all()  # the masked check
    found = option_set_problem(runs)
    assert found == option_set_problem(mixed)
    if repeat == "none":
        assert found is None
    else:
        label, count = ("acquisition", 2) if repeat == "pools" else ("retention", 4)
        assert found is not None
        assert found.startswith(f"duplicate unit_id among {label} units ({count} repeat")


def test_a_concave_unit_keeps_every_level_on_both_paths() -> None:
    counts = np.array([1, 2, 5, 3, 6])
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cost = np.concatenate([np.arange(c, dtype=np.float64) * 2.0 for c in counts])
    value = np.sqrt(cost) * 10.0  # strictly concave: every level is a hull point
    back = np.concatenate([np.arange(offsets[u + 1] - 1, offsets[u] - 1, -1)
                           for u in range(counts.size)]).astype(np.int64)
    rising, sorted_ = upper_hull(offsets, cost, value), upper_hull(offsets, cost[back],
                                                                   value[back])
    assert np.array_equal(rising.points, np.arange(cost.size))
    assert np.array_equal(rising.offsets, offsets)
    assert np.array_equal(back[sorted_.points], rising.points)
    assert np.array_equal(sorted_.offsets, rising.offsets)
    assert rising.offsets.dtype == sorted_.offsets.dtype == np.int32


@pytest.mark.parametrize("names", [(["a", "b", "c"], ["a", "b", "c"]),  # the codes as they are
                                   (["a", "c"], ["a", "b", "c"]), (["b"], ["a"])])
def test_merged_codes_are_each_name_at_its_place_in_the_union(
    names: tuple[list[str], list[str]],
) -> None:
    rng = np.random.default_rng(len(names[0]))
    first = rng.integers(0, len(names[0]), 50).astype(np.int64)  # codes of either width
    second = rng.integers(0, len(names[1]), 50).astype(np.int32)
    coded: list[tuple[NDArray[np.integer], list[str]]] = [(first, names[0]),
                                                           (second, names[1])]
    segment, union = merge_codes(coded)
    assert union == sorted(set(names[0]) | set(names[1]))
    expected = [union.index(own[c]) for codes, own in coded for c in codes]
    assert segment.dtype == np.int32 and segment.tolist() == expected


@pytest.mark.parametrize("size", [np.nan, np.inf, -np.inf, -1.0, -0.0, 0.0, 1e300])
def test_a_pool_size_is_refused_exactly_when_not_finite_or_negative(size: float) -> None:
    customers, pools, plan = example(10, seed=6)
    options = response_options(customers, pools, plan, 0.3, 0.05)
    options.size[-1] = size
    found = option_set_problem(options)
    refused = not (np.isfinite(size) and size >= 0)
    assert found == ("size must be finite and >= 0" if refused else None)
