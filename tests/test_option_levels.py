"""Levels stored as the cost's (``engine.options.LevelsAfter``): customers' levels are their
spend, so only the pools' own levels are kept; every reader sees the same levels."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engine.errors import InvalidInputError
from engine.options import LevelsAfter, OptionSet
from engine.pipeline import allocate, build_model, option_set_problem
from engine.portfolio import Portfolio
from engine.synthetic import example


def _parts(rng: np.random.Generator, n: int, m: int) -> tuple[OptionSet, OptionSet]:
    spend = np.array([0.0, 2.0, 5.0, 10.0])
    cost = np.tile(spend, (n, 1))
    customers = OptionSet.uniform(
        pl.Series([f"c{i}" for i in range(n)]), np.zeros(n, dtype=np.int8),
        pl.Series(["a"] * n), np.zeros(n, dtype=bool), np.ones(n), cost, cost,
        rng.random((n, 4)).cumsum(axis=1))
    size = rng.integers(10, 100, m).astype(float)
    a_levels = np.array([0.0, 3.0, 7.0])
    pools = OptionSet.uniform(
        pl.Series([f"p{i}" for i in range(m)]), np.ones(m, dtype=np.int8),
        pl.Series(["b"] * m), np.ones(m, dtype=bool), size, np.tile(a_levels, (m, 1)),
        size[:, None] * a_levels, rng.random((m, 3)).cumsum(axis=1))
    return customers, pools


def test_customers_then_pools_store_only_the_pools_levels() -> None:
    rng = np.random.default_rng(3)
    customers, pools = _parts(rng, 50, 4)
    assert customers.stored_level is customers.cost  # one array serves both
    joined = OptionSet.concat([customers, pools])
    stored = joined.stored_level
    assert isinstance(stored, LevelsAfter) and stored.start == 200 and stored.tail.size == 12
    expected = np.concatenate((np.tile([0.0, 2.0, 5.0, 10.0], 50), np.tile([0.0, 3.0, 7.0], 4)))
    assert np.array_equal(joined.level, expected)
    idx = rng.integers(0, expected.size, 500)
    assert np.array_equal(joined.level_at(idx), expected[idx])
    assert np.array_equal(joined.level_at(np.arange(expected.size)), expected)
    back = pickle.loads(pickle.dumps(joined))  # as a cluster's partitions travel
    assert isinstance(back.stored_level, LevelsAfter)
    assert np.array_equal(back.level, expected)
    assert option_set_problem(joined) is None
    joined.validate()
    # pools first: no prefix shares the cost, so the levels are one array
    other = OptionSet.concat([pools, customers])
    assert isinstance(other.stored_level, np.ndarray)
    assert np.array_equal(other.level, np.concatenate((expected[200:], expected[:200])))


def test_shared_levels_are_checked_like_any_levels() -> None:
    rng = np.random.default_rng(4)
    customers, pools = _parts(rng, 20, 3)
    joined = OptionSet.concat([customers, pools])
    stored = joined.stored_level
    assert isinstance(stored, LevelsAfter)
    stored.tail[4] = np.nan  # the second pool's second level
    with pytest.raises(InvalidInputError) as caught:
        joined.validate()
    assert "options.level" in str(caught.value) and "'p1'" in str(caught.value)
    with pytest.raises(ValueError, match="LevelsAfter covers"):
        replace(joined, level=LevelsAfter(80, stored.tail[:-1]))
    joined.__dict__["_level"] = LevelsAfter(80, stored.tail[:, None])  # a 2-D tail
    assert option_set_problem(joined) == "level has shape (89,), cost has (89,)"


def test_the_plan_takes_the_same_levels_as_a_full_level_array() -> None:
    customers, prospects, plan = example(2_000)
    model = build_model(Portfolio(customers, prospects), plan)
    assert isinstance(model.options.stored_level, LevelsAfter)
    shared = allocate(Portfolio(customers, prospects), plan, model=model)
    model.options.level = model.options.level.copy()  # the same levels, stored in full
    assert isinstance(model.options.stored_level, np.ndarray)
    full = allocate(Portfolio(customers, prospects), plan, model=model)
    assert shared.units.equals(full.units)
    assert shared.summary["equity_after"] == full.summary["equity_after"]
