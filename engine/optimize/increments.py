"""The allocation problem in hull increments, and back: the reduction every exact solver uses.

A unit takes exactly one of its levels. On the upper concave hull of its (cost, value) levels
that choice becomes a share in ``[0, 1]`` of each of its hull *increments* (the step from one
hull point to the next, with its cost ``dc`` and value ``dv``), taken in order. The LP over
levels is then an LP over independent shares whose optimum inside a cell is a threshold on
``dv / dc``: the form ``engine.optimize.lp`` and ``engine.optimize.distributed`` solve.

:class:`HullIncrements` is that change of variables as a reduction (in the manner of cvxpy's
reductions): ``apply`` maps the options to their :class:`Increments`, ``invert`` maps shares
of those increments back to an :class:`engine.allocation.Allocation` over levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from engine import parallel
from engine.allocation import Allocation
from engine.options import OptionSet

CHUNK = 1 << 17  # increments per piece of an elementwise pass (fits in cache)
_UNITS = 1 << 15  # units per piece of ``invert``
SNAP = 1e-12  # shares this close to 0 or 1 are float noise (a tiny share may be real: keep it)


@dataclass
class Shares:
    """The share taken of every increment, without a float per increment: 1 where the
    increment's ratio block is wholly taken (``full[block[j]]``), else 0, except at the
    sorted positions ``pos``, whose shares are ``values`` (the members of the blocks a
    round's prices touch: a few per cent of the increments). At 10M customers this is the
    320 MB dense array ``engine.optimize.blocks.expand`` would build, not built."""

    block: NDArray[np.integer]  # per increment, its block (the blocks' own array, shared)
    full: NDArray[np.bool_]  # per block
    pos: NDArray[np.int64]
    values: NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.block.size)

    def piece(self, lo: int, hi: int) -> NDArray[np.float64]:
        """The shares of increments ``lo..hi-1`` as a dense array."""
        out = np.empty(hi - lo)
        out[:] = self.full[self.block[lo:hi]]
        a, b = np.searchsorted(self.pos, (lo, hi))
        out[self.pos[a:b] - lo] = self.values[a:b]
        return out

    def at(self, positions: NDArray[np.int64]) -> NDArray[np.float64]:
        """The shares at ``positions`` (a gather)."""
        out = self.full[self.block[positions]].astype(np.float64)
        at = np.minimum(np.searchsorted(self.pos, positions), max(self.pos.size - 1, 0))
        hit = np.flatnonzero(self.pos[at] == positions) if self.pos.size else at[:0]
        out[hit] = self.values[at[hit]]
        return out

    def dense(self) -> NDArray[np.float64]:
        out = np.empty(self.size)

        def fill(lo: int, hi: int) -> None:
            out[lo:hi] = self.piece(lo, hi)

        parallel.each(fill, self.size, CHUNK)
        return out

    def dot(self, x: NDArray[np.float64]) -> float:
        """``x @ shares``, summed piece by piece in order (the same bits on any threads;
        numpy's pairwise sum, not a BLAS call per piece: those wake BLAS's threads each)."""
        def part(lo: int, hi: int) -> float:
            t = self.piece(lo, hi)
            t *= x[lo:hi]
            return float(t.sum())

        total = 0.0
        for value in parallel.results(part, self.size, CHUNK):
            total += value
        return total


@dataclass
class Increments:
    """Hull increments of all units, with the index arithmetic shared by every step.

    Increments are grouped by unit: unit i's are ``start[i]:start[i + 1]``. No per-increment
    unit array is kept (it would be one more full-size array): ``unit_of`` finds the units
    of a few increments, ``unit`` builds the whole array for the rare paths that need it.
    ``first`` is, per unit, the flat option index of its cheapest hull point: the level a
    unit holds when none of its increments is taken."""

    dc: NDArray[np.float64]
    dv: NDArray[np.float64]
    cell: NDArray[np.integer]  # int16 when cells are few: it is a full-size array
    start: NDArray[np.int64]  # per unit: index of its first increment; then the total
    first: NDArray[np.int64]  # per unit: option index of its first hull point

    @property
    def ratio(self) -> NDArray[np.float64]:
        return self.dv / self.dc

    @cached_property
    def unit(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(self.start.size - 1, dtype=np.int64), np.diff(self.start))

    def unit_of(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.searchsorted(self.start, positions, side="right") - 1

    def first_of_unit(self) -> NDArray[np.bool_]:
        """Per increment: whether it is its unit's first."""
        first = np.zeros(self.dc.size, dtype=bool)
        first[self.start[:-1][self.start[:-1] < self.dc.size]] = True
        return first

    def prefix_fill(self, taken: NDArray[np.float64] | Shares) -> NDArray[np.float64] | Shares:
        """Same spend per unit, taken in order: at least as valuable on a concave hull.

        A block solution already takes each unit's increments in order (they are sorted by
        ratio); that is checked on boolean arrays, and only a solution that is not (the
        full method's, on ties) pays for the refill. :class:`Shares` stay sparse when they
        are in order (their whole blocks' shares are exactly 0 or 1: only ``values`` snap)."""
        if isinstance(taken, Shares):
            sparse, values = taken, taken.values
            np.copyto(values, 1.0, where=values > 1 - SNAP)
            np.copyto(values, 0.0, where=values < SNAP)
            start = self.start

            def out_of_order(lo: int, hi: int) -> bool:  # as ``disordered`` below
                a = max(lo, 1)
                if a >= hi:
                    return False
                t = sparse.piece(a - 1, hi)
                later = t[1:] > 0
                later &= t[:-1] < 1
                later[start[np.searchsorted(start, a):np.searchsorted(start, hi)] - a] = False
                return bool(later.any())

            if not any(parallel.results(out_of_order, sparse.size, CHUNK)):
                return sparse
            taken = sparse.dense()
        n, start = taken.size, self.start

        def snap(lo: int, hi: int) -> None:  # cache-sized pieces: no full-size temporary
            piece = taken[lo:hi]
            np.copyto(piece, 1.0, where=piece > 1 - SNAP)
            np.copyto(piece, 0.0, where=piece < SNAP)

        def disordered(lo: int, hi: int) -> bool:
            """An increment taken after one of its unit's not wholly taken."""
            a = max(lo, 1)
            if a >= hi:
                return False
            later = taken[a:hi] > 0
            later &= taken[a - 1:hi - 1] < 1
            later[start[np.searchsorted(start, a):np.searchsorted(start, hi)] - a] = False
            return bool(later.any())

        parallel.each(snap, n, CHUNK)
        if not any(parallel.results(disordered, n, CHUNK)):
            return taken
        unit = self.unit
        spend = np.bincount(unit, weights=self.dc * taken, minlength=self.start.size - 1)
        cum = np.cumsum(self.dc)
        before = cum - self.dc - np.concatenate(([0.0], cum))[self.start[unit]]
        with np.errstate(over="ignore"):  # a tiny step overflows to inf, which clips to 1
            filled = np.clip((spend[unit] - before) / self.dc, 0.0, 1.0)
        filled[filled > 1 - SNAP] = 1.0
        filled[filled < SNAP] = 0.0
        return filled


@dataclass(frozen=True)
class HullIncrements:
    """The reduction from a choice of levels per unit to shares of hull increments.

    ``engine.optimize.distributed`` applies it per partition of a Dask DataFrame: each
    partition reduces its own options, solves nothing itself, and inverts the shares the
    driver hands back, so no per-customer array leaves the partition."""

    options: OptionSet

    def apply(self) -> Increments:
        """The hull increments of every unit of ``options``, grouped by unit (each unit's in
        hull order, so by decreasing ratio), with their (segment, kind) cell."""
        options = self.options
        hull = options.hull
        counts, dc, dv = hull.steps(options.cost, options.value)
        start = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        first = hull.points[hull.offsets[:-1]].astype(np.int64)  # (32-bit points)
        small = np.int16 if options.n_cells < np.iinfo(np.int16).max else np.int64
        cell = np.repeat(options.cell.astype(small), counts)
        return Increments(dc, dv, cell, start, first)

    def invert(self, inc: Increments, taken: NDArray[np.float64] | Shares) -> Allocation:
        """The allocation over levels taking share ``taken[j]`` of increment ``j`` of ``inc``
        (the result of :meth:`apply`; shares taken in order per unit, as ``prefix_fill``
        leaves them): each unit sits at the hull point after its whole increments, or between
        it and the next one by the share of its partly taken increment."""
        options = self.options
        n = options.n_units
        hull = options.hull
        start = inc.start
        whole = np.zeros(n, dtype=np.int32)  # whole steps per unit: a few
        lo = np.empty(n, dtype=np.int64)  # the allocation's indices (the hull's may be 32-bit)

        def units(u0: int, u1: int) -> NDArray[np.int64]:
            """Units u0..u1-1 (their increments are start[u0]:start[u1]): their whole
            steps and lower hull points; returns their partly taken increments."""
            a, b = int(start[u0]), int(start[u1])
            t = taken[a:b] if isinstance(taken, np.ndarray) else taken.piece(a, b)
            stepped = start[u0:u1][np.diff(start[u0:u1 + 1]) > 0] - a
            if stepped.size:  # whole steps taken per unit: a segment sum over its increments
                # uint8 summed in numpy's default unsigned accumulator: no cast pass (an
                # int64 dtype made reduceat cast in buffered pieces, 9x slower), no overflow
                full = (t >= 1.0).view(np.uint8)
                mine = whole[u0:u1]
                mine[np.diff(start[u0:u1 + 1]) > 0] = np.add.reduceat(full, stepped)
            lo[u0:u1] = hull.points[hull.offsets[u0:u1] + whole[u0:u1]]
            return np.flatnonzero((t > 0.0) & (t < 1.0)) + a

        parts = parallel.results(units, n, _UNITS)
        part = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        theta = np.zeros(n)
        theta[inc.unit_of(part)] = taken[part] if isinstance(taken, np.ndarray) else taken.at(part)
        hi = lo.copy()
        has = theta > 0
        hi[has] = hull.points[hull.offsets[:-1][has] + whole[has] + 1]
        return Allocation(lo, hi, theta, "optimal", "", "")
