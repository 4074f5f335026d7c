"""A dense bounded dual simplex for the direct path's tiny cores (engine.optimize.small).

The model is the direct path's: ``max value.x`` subject to ``coupling x <= rhs`` (a few
rows), each unit's weights summing to 1 and ``lower <= x <= upper`` (within [0, 1]). The
branch and bound over a core (17-36 customers, 54-92 columns, 5 rows at 100 customers)
solves one LP per node, each one or two pivots from its parent's: HiGHS spends 115-280 us
of fixed cost on each such run, a pivot of this tableau (rows: the coupling rows and the
units, columns: the options and the rows' slacks) costs a few microseconds.

The tableau starts at every unit's first option of highest value, the rows' slacks basic:
each column's reduced cost is then its value minus its unit's best (<= 0), a basis the dual
simplex starts from. A child node starts from its parent's final tableau: the search only
ever fixes columns (a bound moved to the other), which keeps every reduced cost's sign
right, and the dual simplex restores the rows and columns the new bounds break. Each pivot
updates only the rows its column touches.

What it answers is checked where it is used: a plan against the rows at the direct path's
tolerance, a node's bound as the Lagrangian at the node's row prices recomputed from the
model (an upper bound on the node's LP for any prices >= 0, whatever the tableau's
rounding). A solve that does not end within its pivot limit answers ``None``: the caller
then hands the core to HiGHS.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

PRIMAL_TOLERANCE = 1e-9  # a basic value this far outside its bounds (scaled): infeasible
PIVOT_TOLERANCE = 1e-11  # a tableau entry this small (scaled by its row) is no pivot


class Tableau:
    """The tableau ``B^-1 [A | b]`` of the model's standard form (columns: the options, then
    one slack per coupling row), its basis (the column basic in each row), which nonbasic
    columns sit at their upper bound, and the reduced costs of every column."""

    __slots__ = ("at_upper", "basis", "m", "n", "reduced", "t")

    def __init__(self, t: NDArray[np.float64], basis: NDArray[np.int64],
                 at_upper: NDArray[np.bool_], reduced: NDArray[np.float64], n: int,
                 m: int) -> None:
        self.t, self.basis, self.at_upper, self.reduced = t, basis, at_upper, reduced
        self.n, self.m = n, m

    @classmethod
    def start(cls, value: NDArray[np.float64], coupling: NDArray[np.float64],
              rhs: NDArray[np.float64], offsets: NDArray[np.int64]) -> Tableau:
        """Every unit at its first option of highest value, the rows' slacks basic."""
        m, n, units = rhs.size, value.size, offsets.size - 1
        starts = offsets[:-1]
        counts = np.diff(offsets)
        unit = np.repeat(np.arange(units), counts)
        best = np.maximum.reduceat(value, starts)
        key = np.minimum.reduceat(np.where(value == best[unit], np.arange(n), n), starts)
        t = np.zeros((m + units, n + m + 1))
        t[:m, :n] = coupling - coupling[:, key[unit]]
        t[:m, n:n + m] = np.eye(m)
        t[:m, -1] = rhs - coupling[:, key].sum(axis=1)
        t[m + unit, np.arange(n)] = 1.0
        t[m:, -1] = 1.0
        basis = np.concatenate([np.arange(n, n + m), key]).astype(np.int64)
        reduced = np.concatenate([value - best[unit], np.zeros(m)])
        return cls(t, basis, np.zeros(n + m, dtype=bool), reduced, n, m)

    @classmethod
    def at(cls, value: NDArray[np.float64], coupling: NDArray[np.float64],
           rhs: NDArray[np.float64], offsets: NDArray[np.int64],
           x: NDArray[np.float64]) -> Tableau | None:
        """The tableau of the vertex ``x`` (an optimum of this LP, e.g. the whole model's
        LP restricted to a core): basic, the options of positive weight and the slacks of
        the rows with room. ``None`` unless that is a basis (as many columns as rows, not
        singular) whose reduced costs and values are those of an optimum: the caller then
        starts from ``start``."""
        m, n, units = rhs.size, value.size, offsets.size - 1
        slack = rhs - coupling @ x
        room = slack > PRIMAL_TOLERANCE * np.maximum(1.0, np.abs(rhs))
        basis = np.concatenate([np.flatnonzero(x > PRIMAL_TOLERANCE), n + np.flatnonzero(room)])
        if basis.size != m + units:
            return None
        a = np.zeros((m + units, n + m + 1))
        a[:m, :n] = coupling
        a[:m, n:n + m] = np.eye(m)
        a[:m, -1] = rhs
        a[m + np.repeat(np.arange(units), np.diff(offsets)), np.arange(n)] = 1.0
        a[m:, -1] = 1.0
        try:
            t = np.linalg.solve(a[:, basis], a)
        except np.linalg.LinAlgError:
            return None
        cost = np.concatenate([value, np.zeros(m)])
        reduced = cost - cost[basis] @ t[:, :-1]
        reduced[basis] = 0.0
        t[:, basis] = np.eye(m + units)
        scale = max(1.0, float(np.abs(value).max()))
        if (reduced > PRIMAL_TOLERANCE * scale).any() or (t[:, -1] < -PRIMAL_TOLERANCE).any():
            return None  # not the optimum's basis (degenerate, or x not a vertex)
        return cls(t, basis.astype(np.int64), np.zeros(n + m, dtype=bool), reduced, n, m)

    def copy(self) -> Tableau:
        return Tableau(self.t.copy(), self.basis.copy(), self.at_upper.copy(),
                       self.reduced.copy(), self.n, self.m)

    def solve(self, lower: NDArray[np.float64], upper: NDArray[np.float64],
              max_pivots: int) -> tuple[bool, NDArray[np.float64]] | None:
        """The dual simplex from this tableau under the options' bounds ``lower`` and
        ``upper`` (the tableau is updated in place). Returns (True, x) at the LP's optimum
        (``x``: the options' weights), (False, empty) when the LP is infeasible (a row
        whose basic column no column can bring within its bounds), ``None`` past
        ``max_pivots`` pivots."""
        n, m = self.n, self.m
        t, basis, at_upper, reduced = self.t, self.basis, self.at_upper, self.reduced
        width = n + m
        lo = np.concatenate([lower, np.zeros(m)])
        up = np.concatenate([upper, np.full(m, np.inf)])
        free = lo < up
        is_basic = np.zeros(width, dtype=bool)
        is_basic[basis] = True
        for _ in range(max_pivots + 1):
            at = np.where(at_upper, up, lo)
            at[is_basic] = 0.0
            moved = np.flatnonzero(at)
            xb = t[:, -1] - t[:, moved] @ at[moved]
            lb, ub = lo[basis], up[basis]
            below, above = lb - xb, xb - ub
            worst = np.maximum(below, above) / np.maximum(1.0, np.abs(xb))
            r = int(np.argmax(worst))
            if worst[r] <= PRIMAL_TOLERANCE:
                at[basis] = xb
                return True, at[:n]
            sign = 1.0 if below[r] > above[r] else -1.0  # the basic value must rise (+1)
            alpha = t[r, :width]
            signed = sign * alpha
            tiny = PIVOT_TOLERANCE * max(1.0, float(np.abs(alpha).max()))
            eligible = free & ~is_basic & np.where(at_upper, signed > tiny, signed < -tiny)
            if not eligible.any():
                return False, np.zeros(0)
            candidates = np.flatnonzero(eligible)
            ratio = np.abs(reduced[candidates]) / np.abs(alpha[candidates])
            least = ratio.min()
            # among the least ratios (to rounding), the largest entry: the stablest pivot
            near = candidates[ratio <= least + 1e-12 * max(1.0, least)]
            q = int(near[np.argmax(np.abs(alpha[near]))])
            leaving = int(basis[r])
            self._pivot(r, q)
            is_basic[leaving], is_basic[q] = False, True
            at_upper[leaving] = sign < 0
            at_upper[q] = False
        return None

    def _pivot(self, r: int, q: int) -> None:
        t = self.t
        column = t[:, q].copy()
        t[r] /= column[r]
        column[r] = 0.0
        rows = np.flatnonzero(column)
        if rows.size:
            t[rows] -= np.outer(column[rows], t[r])
            t[rows, q] = 0.0
        t[r, q] = 1.0
        self.reduced -= self.reduced[q] * t[r, :-1]
        self.reduced[q] = 0.0
        self.basis[r] = q

    def duals(self) -> NDArray[np.float64]:
        """The coupling rows' prices (d objective / d rhs, >= 0 at an optimum): minus the
        reduced costs of their slacks."""
        return -self.reduced[self.n:]

    def reduced_costs(self) -> NDArray[np.float64]:
        """The options' reduced costs."""
        return self.reduced[: self.n]
