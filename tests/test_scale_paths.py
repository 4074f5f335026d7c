"""The linear paths large portfolios take (customers in one run before the pools, ids
already sorted, the metric's customers in the plan's order) give what the general paths
give: the same hull, baseline, duplicate errors and plan columns."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.errors import InvalidInputError
from engine.hull import _general_hull, upper_hull
from engine.options import OptionSet
from engine.pipeline import allocate
from engine.portfolio import Portfolio
from engine.result import _with_metric_columns
from engine.synthetic import example


def _customers_then_pools(n: int, pools: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.concatenate([np.full(n, 5), rng.integers(2, 9, pools)])
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def test_one_run_of_customers_before_pools_equals_the_general_hull() -> None:
    rng = np.random.default_rng(3)
    offsets = _customers_then_pools(70_000, 40, rng)
    counts = np.diff(offsets)
    cost = np.concatenate([np.cumsum(rng.uniform(0.5, 4.0, c)) for c in counts])
    value = 10.0 * np.sqrt(cost) + rng.normal(0.0, 1.5, cost.size)
    fast, slow = upper_hull(offsets, cost, value), _general_hull(offsets, cost, value)
    assert np.array_equal(fast.offsets, slow.offsets)
    assert np.array_equal(fast.points, slow.points)
    assert (np.diff(fast.offsets) < counts).any()  # points were dropped: the test has work


def _options(offsets: np.ndarray, cost: np.ndarray, value: np.ndarray) -> OptionSet:
    n = offsets.size - 1
    return OptionSet(
        unit_id=pl.Series([f"U{i}" for i in range(n)]), kind=np.zeros(n, dtype=np.int8),
        segment=np.zeros(n, dtype=np.int32), segments=[""], fractional=np.zeros(n, dtype=bool),
        size=np.ones(n), offsets=offsets, level=cost, cost=cost, value=value,
    )


@pytest.mark.parametrize("layout", ["rising", "one unit out of order", "a tie"])
def test_baseline_of_mixed_widths_equals_the_sort(layout: str) -> None:
    rng = np.random.default_rng(5)
    offsets = _customers_then_pools(3_000, 7, rng)
    counts = np.diff(offsets)
    cost = np.concatenate([np.cumsum(rng.uniform(0.5, 4.0, c)) for c in counts])
    value = rng.normal(0.0, 5.0, cost.size)
    if layout == "one unit out of order":
        a, b = offsets[2_999], offsets[3_000]
        cost[a:b] = cost[a:b][::-1]
    elif layout == "a tie":  # two equally cheap levels: the better value is the baseline
        cost[offsets[3_001] + 1] = cost[offsets[3_001]]
        value[offsets[3_001] + 1] = value[offsets[3_001]] + 1.0
    unit = np.repeat(np.arange(counts.size), counts)
    expected = np.lexsort((-value, cost, unit))[offsets[:-1]]
    assert np.array_equal(_options(offsets, cost, value).baseline, expected)


def test_duplicate_text_ids_in_sorted_order_name_the_row() -> None:
    customers, _, _ = example(50)
    ids = customers["customer_id"].to_list()
    ids[31] = ids[30]  # still sorted
    with pytest.raises(InvalidInputError) as err:
        Portfolio(customers.with_columns(pl.Series("customer_id", ids))).validated()
    (violation,) = err.value.violations
    assert violation.field == "customers.customer_id" and violation.row == 31
    assert "repeats row 30" in violation.description


def test_metric_columns_side_by_side_equal_the_join() -> None:
    customers, prospects, plan = example(2_000)
    result = allocate(Portfolio(customers, prospects), plan)
    units = result.units
    assert units.height == 2_005 and "clv" in units.columns  # the metric's column is there
    metric = units.select("customer_id", "clv").head(2_000)
    base = units.drop("clv")
    joined = base.join(metric, on="customer_id", how="left", maintain_order="left")
    assert _with_metric_columns(base, metric).equals(joined)
    shuffled = metric.sample(fraction=1.0, shuffle=True, seed=1)  # not in the plan's order
    assert _with_metric_columns(base, shuffled).equals(joined)
    assert units["clv"].tail(5).null_count() == 5  # pools get no customer metrics


def test_response_options_share_one_buffer_per_array() -> None:
    """Customers and pools fill one buffer per array, which the options are (no joined
    copy), and the options are the ones built part by part."""
    from equity_plugins.costs import response_options

    from engine.options import LevelsAfter, _joined

    customers, prospects, plan = example(3_000)
    joined: list[int] = []
    concatenate = np.concatenate

    def counted(arrays: list[np.ndarray], *args: object, **kwargs: object) -> np.ndarray:
        joined.append(sum(np.size(a) for a in arrays))
        return concatenate(arrays, *args, **kwargs)  # type: ignore[no-any-return, call-overload]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "concatenate", counted)
        together = response_options(customers, prospects, plan, 0.3, 0.05)
    assert max(joined, default=0) < together.cost.size  # no option-sized array joined
    apart = OptionSet.concat([response_options(customers, None, plan, 0.3, 0.05),
                              response_options(None, prospects, plan, 0.3, 0.05)])
    for name in ("level", "cost", "value"):
        assert np.array_equal(getattr(together, name), getattr(apart, name))
    for name in ("cost", "value"):  # the one buffer as allocated
        array = getattr(together, name)
        assert array.flags.owndata and array.size == together.offsets[-1]
    # the customers' levels are their cost: only the pools' levels are stored apart
    stored = together.stored_level
    assert isinstance(stored, LevelsAfter) and stored.start == 3_000 * 5
    assert stored.tail.size == together.cost.size - stored.start
    assert np.array_equal(together.offsets, apart.offsets)
    buffer = np.arange(10.0)
    assert np.shares_memory(_joined([buffer[:4], buffer[4:]]), buffer)
    gapped = _joined([buffer[:4], buffer[5:]])  # not adjacent: a copy, in order
    assert not np.shares_memory(gapped, buffer) and gapped.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
