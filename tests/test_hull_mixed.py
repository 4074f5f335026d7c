"""The hull of many units of one width plus a few others (customers and prospect pools): the
grid path on the former and the sort on the rest, stitched in unit order, equal the sort on
everything."""

from __future__ import annotations

import numpy as np

from engine.hull import _general_hull, upper_hull


def test_mixed_widths_equal_the_general_hull() -> None:
    rng = np.random.default_rng(8)
    n = 70_000
    counts = np.full(n, 5)
    odd = rng.choice(n, 900, replace=False)
    counts[odd] = rng.integers(1, 9, odd.size)  # other widths, single-option units among them
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cost = np.concatenate([np.cumsum(rng.uniform(0.5, 4.0, c)) for c in counts])
    shuffled = rng.choice(n, 300, replace=False)  # some units list their levels out of order
    for u in shuffled:
        a, b = offsets[u], offsets[u + 1]
        cost[a:b] = rng.permutation(cost[a:b])
    value = 10.0 * np.sqrt(cost) + rng.normal(0.0, 1.5, cost.size)  # many off-hull levels
    value[offsets[1:-1][:50]] = value[offsets[1:-1][:50] - 1]  # ties across units' edges
    fast, slow = upper_hull(offsets, cost, value), _general_hull(offsets, cost, value)
    assert np.array_equal(fast.offsets, slow.offsets)
    assert np.array_equal(fast.points, slow.points)
    assert (np.diff(fast.offsets) < counts).any()  # points were dropped: the test has work
