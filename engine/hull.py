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

from engine import parallel

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Hull:
    """Hull points as flat option indices grouped by unit in increasing cost.

    ``points[offsets[i]:offsets[i + 1]]`` are unit i's hull points; the first is its
    cheapest option (best value among equally cheap ones). Both are 32-bit integers when
    the options number fewer than 2^31 (``index_dtype``: 240 MB less at 10M customers),
    64-bit otherwise.
    """

    points: NDArray[np.integer]
    offsets: NDArray[np.integer]

    def increments(
        self, cost: FloatArray, value: FloatArray
    ) -> tuple[IntArray, FloatArray, FloatArray]:
        """Consecutive hull steps: (unit, extra cost > 0, extra value), slopes decreasing."""
        counts, dc, dv = self.steps(cost, value)
        return np.repeat(np.arange(counts.size, dtype=np.int64), counts), dc, dv

    def steps(self, cost: FloatArray, value: FloatArray) -> tuple[IntArray, FloatArray, FloatArray]:
        """The hull steps without a per-step unit array: (steps per unit, extra cost, extra
        value), the steps of unit i being ``sum(counts[:i])`` onwards. Computed in blocks of
        units so that only the two results are allocated at full size."""
        counts = np.maximum(np.diff(self.offsets), 1) - 1
        start = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        dc, dv = np.empty(int(start[-1])), np.empty(int(start[-1]))

        def block(lo: int, hi: int) -> None:  # each block writes its own steps: on all cores
            a, b = int(self.offsets[lo]), int(self.offsets[hi])
            if b - a < 2:
                return
            points = self.points[a:b].astype(np.intp)  # cast once for both gathers
            step = np.ones(b - a - 1, dtype=bool)  # consecutive points of one unit
            inner = self.offsets[lo + 1:hi] - a
            step[inner[inner > 0] - 1] = False
            kept = np.flatnonzero(step)  # one index for both arrays
            for source, out in ((cost, dc), (value, dv)):
                x = source[points]
                np.take(np.subtract(x[1:], x[:-1]), kept, out=out[start[lo]:start[hi]],
                        mode="clip")

        parallel.each(block, counts.size, _ROWS)
        return counts, dc, dv


def index_dtype(n_options: int) -> type[np.int32] | type[np.int64]:
    """The integer type of hull indices over ``n_options`` options: 32 bits when they fit."""
    return np.int32 if n_options < _INT32_MAX else np.int64


_INT32_MAX = int(np.iinfo(np.int32).max)


def upper_hull(offsets: IntArray, cost: FloatArray, value: FloatArray) -> Hull:
    """Hull of every unit's options; ``offsets`` delimits units in the flat arrays. Points
    and offsets in ``index_dtype`` (asserted to hold every index)."""
    hull = _upper_hull(offsets, cost, value)
    dtype = index_dtype(cost.size)
    if hull.points.dtype != dtype or hull.offsets.dtype != dtype:
        hull = Hull(points=hull.points.astype(dtype), offsets=hull.offsets.astype(dtype))
    assert hull.offsets[-1] == hull.points.size and (
        not hull.points.size or int(hull.points[-1]) < cost.size), "hull indices overflow"
    return hull


def _upper_hull(offsets: IntArray, cost: FloatArray, value: FloatArray) -> Hull:
    counts = offsets[1:] - offsets[:-1]  # np.diff's numbers without its wrapper's cost
    n_units = counts.size
    if n_units > 0 and counts[0] > 1 and bool(np.all(counts == counts[0])):
        width = int(counts[0])
        grid = cost.reshape(n_units, width)
        if bool((grid[:, 1:] > grid[:, :-1]).all()):  # levels listed in increasing cost
            return _grid_hull(n_units, width, cost, value)
    if n_units >= 2 * _ROWS:
        return _mixed_hull(offsets, cost, value)
    return _general_hull(offsets, cost, value)


def _grid_hull(n_units: int, width: int, cost: FloatArray, value: FloatArray) -> Hull:
    if width <= _FEW:
        return _few_levels_hull(n_units, width, cost, value)
    return _uniform_hull(n_units, width, cost, value)


def _mixed_hull(offsets: IntArray, cost: FloatArray, value: FloatArray) -> Hull:
    """Most units with the same number of levels in increasing cost (customers), a few
    others (prospect pools, options tables' odd units): the grid path on the former, the
    sort on the latter, the two stitched back in unit order."""
    counts = np.diff(offsets)
    width = int(np.argmax(np.bincount(counts)))  # the most common number of levels
    on_grid = counts == width
    if width < 2 or int(on_grid.sum()) < counts.size // 2:
        return _general_hull(offsets, cost, value)
    units = np.flatnonzero(on_grid)
    parts: list[tuple[IntArray, IntArray | int, Hull]] = []
    a = int(offsets[units[0]])
    if int(units[-1]) - int(units[0]) + 1 == units.size:  # one run of units (customers
        # before pools): views of the flat arrays, no copy and no index array
        b = a + units.size * width
        grid = cost[a:b].reshape(units.size, width)
        if bool((grid[:, 1:] > grid[:, :-1]).all()):
            if units[0] == 0 and width <= _FEW:
                return _run_then_rest(offsets, units.size, width, cost, value)
            parts.append((units, a, _grid_hull(units.size, width, cost[a:b], value[a:b])))
    if not parts:
        flat = (offsets[units][:, None] + np.arange(width)).ravel()
        grid = cost[flat].reshape(units.size, width)
        rising = (grid[:, 1:] > grid[:, :-1]).all(axis=1)
        if not rising.all():
            units, flat = units[rising], flat.reshape(-1, width)[rising].ravel()
        parts.append((units, flat, _grid_hull(units.size, width, cost[flat], value[flat])))
    rest = np.ones(counts.size, dtype=bool)
    rest[units] = False
    others = np.flatnonzero(rest)
    if others.size:
        sub_counts = counts[others]
        sub_offsets = np.zeros(others.size + 1, dtype=np.int64)
        np.cumsum(sub_counts, out=sub_offsets[1:])
        sub_flat = np.repeat(offsets[others] - sub_offsets[:-1], sub_counts) + np.arange(
            int(sub_offsets[-1]))
        parts.append((others, sub_flat,
                      _general_hull(sub_offsets, cost[sub_flat], value[sub_flat])))
    hull_counts = np.zeros(counts.size, dtype=np.int64)
    for members, _, h in parts:
        hull_counts[members] = np.diff(h.offsets)
    hull_offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(hull_counts, out=hull_offsets[1:])
    points = np.empty(int(hull_offsets[-1]), dtype=np.int64)
    for members, flat_of, h in parts:
        run = int(members[-1]) - int(members[0]) + 1 == members.size
        if run and isinstance(flat_of, int):  # one run of grid units: shifted in place
            start = int(hull_offsets[members[0]])
            np.add(h.points, flat_of, out=points[start:start + h.points.size])
            continue
        at = h.points + flat_of if isinstance(flat_of, int) else flat_of[h.points]
        if run:
            start = int(hull_offsets[members[0]])  # one run: its points in one slice
            points[start:start + at.size] = at
            continue
        shift = np.repeat(hull_offsets[members] - h.offsets[:-1], np.diff(h.offsets))
        points[shift + np.arange(h.points.size)] = at
    return Hull(points=points, offsets=hull_offsets)


def _run_then_rest(
    offsets: IntArray, n_run: int, width: int, cost: FloatArray, value: FloatArray
) -> Hull:
    """Units ``0..n_run-1`` with ``width`` (few) levels each in increasing cost (customers),
    then every other unit (pools): the others' hull first, so that the run's points, the
    largest array, are written once straight into the result instead of being copied there
    (the points and offsets ``_mixed_hull``'s general stitching gives, bit for bit)."""
    a, b = int(offsets[0]), int(offsets[n_run])
    dtype = index_dtype(int(offsets[-1]))  # written in it at once: no full-size cast
    keep, run_offsets = _few_levels_keep(n_run, width, cost[a:b], value[a:b], dtype)
    rest = _general_hull(offsets[n_run:] - b, cost[b:int(offsets[-1])],
                         value[b:int(offsets[-1])])
    n = int(run_offsets[-1])
    points = np.empty(n + rest.points.size, dtype=dtype)

    def block(lo: int, hi: int) -> None:  # each block its own slice: on all cores
        np.add(np.flatnonzero(keep[lo:hi]), lo * width + a,
               out=points[run_offsets[lo]:run_offsets[hi]], casting="unsafe")  # fits: dtype

    parallel.each(block, n_run, _ROWS)
    np.add(rest.points, b, out=points[n:], casting="unsafe")
    return Hull(points=points,
                offsets=np.concatenate((run_offsets, (n + rest.offsets[1:]).astype(dtype))))


def _general_hull(offsets: IntArray, cost: FloatArray, value: FloatArray) -> Hull:
    """Any units: options sorted by (unit, cost, -value), points under a chord dropped."""
    counts = offsets[1:] - offsets[:-1]
    n_units = counts.size
    unit = np.repeat(np.arange(n_units, dtype=np.int64), counts)
    idx: IntArray | None = None  # the options kept, in order; None: all, as listed
    if not (n_units and bool((counts > 0).all()) and rising(cost, offsets[:-1])):
        # (options listed by strictly rising cost in each unit, the common layout, are in
        # the sort's order already, with no equal costs to drop)
        order = np.lexsort((-value, cost, unit))
        u, c = unit[order], cost[order]
        duplicate = np.zeros(order.size, dtype=bool)
        duplicate[1:] = (u[1:] == u[:-1]) & (c[1:] == c[:-1])
        idx = order[~duplicate]
    while (cost.size if idx is None else idx.size) >= 3:
        u, c, v = (unit, cost, value) if idx is None else (unit[idx], cost[idx], value[idx])
        interior = (u[1:-1] == u[:-2]) & (u[1:-1] == u[2:])
        below = interior & _below(c[:-2], v[:-2], c[1:-1], v[1:-1], c[2:], v[2:])
        if not below.any():
            break
        keep = np.ones(u.size, dtype=bool)
        keep[1:-1] = ~below
        idx = np.flatnonzero(keep) if idx is None else idx[keep]
    if idx is None:  # every option listed is a hull point
        return Hull(points=np.arange(cost.size, dtype=np.int64),
                    offsets=offsets.astype(np.int64))
    hull_counts = np.bincount(unit[idx], minlength=n_units)
    hull_offsets = np.zeros(n_units + 1, dtype=np.int64)
    np.cumsum(hull_counts, out=hull_offsets[1:])
    return Hull(points=idx, offsets=hull_offsets)


def rising(cost: FloatArray, starts: IntArray) -> bool:
    """Whether every unit lists its options in strictly increasing cost (one linear pass,
    in blocks so that no full-size temporary is made)."""
    block = 1 << 20
    for lo in range(0, max(cost.size - 1, 0), block):
        hi = min(lo + block, cost.size - 1)
        up = cost[lo + 1:hi + 1] > cost[lo:hi]
        # pairs across two units don't count: pair j spans j, j + 1 with j + 1 a start
        first = starts[np.searchsorted(starts, lo, "right"):np.searchsorted(starts, hi, "right")]
        up[first - lo - 1] = True
        if not up.all():
            return False
    return True


def _below(
    ca: FloatArray, va: FloatArray, cb: FloatArray, vb: FloatArray, cc: FloatArray, vc: FloatArray
) -> NDArray[np.bool_]:
    """Whether b lies on or below the chord from a to c (a relative tolerance for noise)."""
    left = (vb - va) * (cc - ca)
    right = (vc - va) * (cb - ca)
    return left <= right + 1e-12 * (np.abs(left) + np.abs(right))


_FEW = 8  # up to this many levels a point is tested against every chord around it
_ROWS = 1 << 15  # units per block: temporaries stay in cache


def _few_levels_hull(n_units: int, width: int, cost: FloatArray, value: FloatArray) -> Hull:
    """Every unit has ``width`` (few) options in increasing cost. A point is off the upper
    hull exactly when it lies on or below the chord of some pair of points around it, so
    each of the width^3/6 (point, chord) pairs is one vectorised test over a block of
    units: no per-unit loop, no sort, and the same tolerance as the general case."""
    keep, offsets = _few_levels_keep(n_units, width, cost, value)
    return Hull(points=np.flatnonzero(keep), offsets=offsets)


def _few_levels_keep(
    n_units: int, width: int, cost: FloatArray, value: FloatArray,
    dtype: type[np.integer] = np.int64,
) -> tuple[NDArray[np.bool_], NDArray[np.integer]]:
    """``_few_levels_hull``'s test: per (unit, level) whether it is a hull point, and the
    hull's offsets."""
    c2, v2 = cost.reshape(n_units, width), value.reshape(n_units, width)
    keep = np.ones((n_units, width), dtype=bool)
    tests = [(a, j, c) for j in range(1, width - 1) for a in range(j) for c in range(j + 1, width)]
    pairs = sorted({(a, b) for a, j, c in tests for b in (j, c)})

    def block(lo: int, hi: int) -> None:  # each block writes its own rows: on all cores
        # Per block, each level's column made contiguous once, and each pair's differences
        # (the same numbers _below computes for every chord sharing them) computed once:
        # the test is _below's, bit for bit.
        cb, vb = c2[lo:hi].T.copy(), v2[lo:hi].T.copy()
        dc = {(a, b): cb[b] - cb[a] for a, b in pairs}
        dv = {(a, b): vb[b] - vb[a] for a, b in pairs}
        off = np.empty((width, hi - lo), dtype=bool)
        off[:] = False
        left, right, scale = (np.empty(hi - lo) for _ in range(3))
        for a, j, c in tests:
            np.multiply(dv[a, j], dc[a, c], out=left)
            np.multiply(dv[a, c], dc[a, j], out=right)
            np.abs(left, out=scale)
            scale += np.abs(right)
            scale *= 1e-12
            scale += right
            off[j] |= left <= scale
        keep[lo:hi] = ~off.T

    parallel.each(block, n_units, _ROWS)
    offsets = np.zeros(n_units + 1, dtype=dtype)
    kept = offsets[1:]  # points per unit, a column at a time (a sum along rows of a few
    for j in range(width):  # columns is a slow reduction), then their running total
        kept += keep[:, j]
    np.cumsum(kept, out=kept)
    return keep, offsets


def _uniform_hull(n_units: int, width: int, cost: FloatArray, value: FloatArray) -> Hull:
    """Every unit has ``width`` options in increasing cost: Andrew's monotone chain run on all
    units at once, one column at a time (a stack of columns per unit, popped where concavity
    fails), so the work is a few passes over the units whatever the number of units."""
    stack = np.zeros((n_units, width), dtype=np.int64)  # flat option indices
    top = np.ones(n_units, dtype=np.int64)  # stack size per unit
    base = np.arange(n_units, dtype=np.int64) * width
    stack[:, 0] = base
    for j in range(1, width):
        new = base + j
        rows = np.flatnonzero(top >= 2) if j > 1 else np.zeros(0, dtype=np.int64)
        while rows.size:
            t = top[rows]
            a, b, c = stack[rows, t - 2], stack[rows, t - 1], new[rows]
            pop = _below(cost[a], value[a], cost[b], value[b], cost[c], value[c])
            rows = rows[pop]
            top[rows] -= 1
            rows = rows[top[rows] >= 2]
        stack[np.arange(n_units), top] = new
        top += 1
    points = stack[np.arange(width)[None, :] < top[:, None]]
    offsets = np.zeros(n_units + 1, dtype=np.int64)
    np.cumsum(top, out=offsets[1:])
    return Hull(points=points, offsets=offsets)
