"""Upper concave hull of each unit's (cost, value) options, for all units at once.

An LP that may mix a unit's levels never needs a level lying on or below the chord of two
others: the mix of those two costs the same and is worth at least as much. Removing such
levels before the solver sees them makes each unit's value-of-spend curve concave, which
is what lets the allocator reason in increments sorted by value per unit of spend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Hull:
    """Hull points as flat option indices grouped by unit in increasing cost.

    ``points[offsets[i]:offsets[i + 1]]`` are unit i's hull points; the first is its
    cheapest option (best value among equally cheap ones).
    """

    points: IntArray
    offsets: IntArray

    def increments(
        self, cost: FloatArray, value: FloatArray
    ) -> tuple[IntArray, FloatArray, FloatArray]:
        """Consecutive hull steps: (unit, extra cost > 0, extra value), slopes decreasing."""
        counts = np.diff(self.offsets)
        unit = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        same = unit[1:] == unit[:-1]
        dc = np.diff(cost[self.points])[same]
        dv = np.diff(value[self.points])[same]
        return unit[1:][same], dc, dv


def upper_hull(offsets: IntArray, cost: FloatArray, value: FloatArray) -> Hull:
    """Hull of every unit's options; ``offsets`` delimits units in the flat arrays."""
    counts = np.diff(offsets)
    n_units = counts.size
    unit = np.repeat(np.arange(n_units, dtype=np.int64), counts)
    flat = np.arange(cost.size, dtype=np.int64)
    uniform = n_units > 0 and bool(np.all(counts == counts[0]))
    if uniform and counts[0] > 1 and bool(np.all(np.diff(cost.reshape(n_units, -1), axis=1) > 0)):
        order = flat  # the common case: levels already listed in increasing cost
    else:
        order = np.lexsort((-value, cost, unit))
        u, c = unit[order], cost[order]
        duplicate = np.zeros(order.size, dtype=bool)
        duplicate[1:] = (u[1:] == u[:-1]) & (c[1:] == c[:-1])
        order = order[~duplicate]

    idx = order
    while True:
        u, c, v = unit[idx], cost[idx], value[idx]
        if idx.size < 3:
            break
        interior = (u[1:-1] == u[:-2]) & (u[1:-1] == u[2:])
        left = (v[1:-1] - v[:-2]) * (c[2:] - c[:-2])
        right = (v[2:] - v[:-2]) * (c[1:-1] - c[:-2])
        scale = np.abs(left) + np.abs(right)
        below = interior & (left <= right + 1e-12 * scale)
        if not below.any():
            break
        keep = np.ones(idx.size, dtype=bool)
        keep[1:-1] = ~below
        idx = idx[keep]
    hull_counts = np.bincount(unit[idx], minlength=n_units)
    hull_offsets = np.zeros(n_units + 1, dtype=np.int64)
    np.cumsum(hull_counts, out=hull_offsets[1:])
    return Hull(points=idx, offsets=hull_offsets)
