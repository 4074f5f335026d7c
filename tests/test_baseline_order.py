"""The uniform and proportional baselines read each unit's options in order of cost: the
options' own order when every unit lists them by rising cost (no sort), else one sort per
option set, shared by both baselines. Either way the same levels are chosen."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from equity_plugins import allocators
from equity_plugins.allocators import Proportional, Uniform, _Within

from engine.constraints import LE, Constraint
from engine.options import OptionSet


def _options(shuffle: bool, seed: int = 3) -> OptionSet:
    rng = np.random.default_rng(seed)
    n, k = 400, 6
    level = np.tile(np.array([0.0, 1.0, 2.0, 5.0, 10.0, 20.0]), (n, 1))
    cost = level * rng.uniform(0.5, 2.0, (n, 1))
    value = rng.uniform(50, 500, (n, 1)) + 30 * np.log1p(level) * rng.uniform(0.2, 3.0, (n, 1))
    value -= cost
    if shuffle:  # each unit lists its levels in its own order
        perm = np.argsort(rng.random((n, k)), axis=1)
        level, cost, value = (np.take_along_axis(a, perm, axis=1) for a in (level, cost, value))
    return OptionSet.uniform(
        pl.Series("customer_id", [f"c{i}" for i in range(n)]),
        np.where(np.arange(n) % 3 == 0, 1, 0).astype(np.int8),
        pl.Series([f"s{i % 4}" for i in range(n)]),
        np.zeros(n, dtype=bool), np.ones(n), level, cost, value)


def _rows(options: OptionSet) -> list[Constraint]:
    cap = np.zeros(options.n_cells, dtype=bool)
    cap[2] = True  # segment s1, retention
    return [Constraint("budget", np.ones(options.n_cells, dtype=bool), LE, 1500.0),
            Constraint("cap s1", cap, LE, 120.0)]


def test_levels_listed_by_cost_need_no_sort() -> None:
    assert _options(shuffle=False).cost_order is None
    shuffled = _options(shuffle=True)
    order = shuffled.cost_order
    assert order is not None
    unit = shuffled.unit_of_option
    assert np.array_equal(order, np.lexsort((shuffled.value, shuffled.cost, unit)))


def test_the_sort_is_made_once_per_option_set(monkeypatch: pytest.MonkeyPatch) -> None:
    options = _options(shuffle=True)
    calls: list[int] = []
    lexsort = np.lexsort

    def counted(keys: Any) -> Any:
        calls.append(1)
        return lexsort(keys)

    monkeypatch.setattr(allocators.np, "lexsort", counted)
    rows = _rows(options)
    for allocator in (Uniform, Proportional):
        allocators._largest_feasible(options, rows, options.size, allocator.name)
    assert len(calls) == 1
    assert _options(shuffle=False).cost_order is None and len(calls) == 1


@pytest.mark.parametrize("weight", ["size", "clv"])
def test_any_listing_order_chooses_the_same_levels(weight: str) -> None:
    chosen = []
    for options in (_options(shuffle=False), _options(shuffle=True)):
        w = options.size if weight == "size" else np.maximum(options.value[options.baseline], 0)
        choice = allocators._largest_feasible(options, _rows(options), w, weight).lo
        within = _Within(options)(np.full(options.n_units, 4.0))
        assert (options.cost[within] <= 4.0 * (1 + 1e-12)).all()
        chosen.append((options.level[choice], options.cost[choice], options.value[choice],
                       options.level[within]))
    for plain, shuffled in zip(*chosen, strict=True):
        assert np.array_equal(plain, shuffled)
    spent = chosen[0][1].sum()
    assert 0 < spent <= 1500.0 * (1 + 1e-12)  # the baseline spends, within the budget
    assert (chosen[0][3] > 0).any()
