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
    """The tableau ``B^-1 A`` of the model's standard form (columns: the options, then one
    slack per coupling row), the basic values, the basis (the column basic in each row),
    which nonbasic columns sit at their upper bound, the reduced costs of every column, and
    the bounds it was last solved under."""

    __slots__ = ("at_upper", "basis", "beta", "is_basic", "lo", "m", "n", "reduced", "row_lo",
                 "row_tolerance", "row_up", "t", "tolerance", "up")

    def __init__(self, t: NDArray[np.float64], beta: NDArray[np.float64],
                 basis: NDArray[np.int64], reduced: NDArray[np.float64], n: int,
                 tolerance: NDArray[np.float64]) -> None:
        self.t, self.beta, self.basis, self.reduced = t, beta, basis, reduced
        self.n, self.m = n, t.shape[1] - n
        self.at_upper = np.zeros(t.shape[1], dtype=bool)
        self.lo = np.zeros(t.shape[1])
        self.up = np.concatenate([np.ones(n), np.full(self.m, np.inf)])
        self.tolerance = tolerance  # each column's primal tolerance (shared, not copied)
        self.is_basic = np.zeros(t.shape[1], dtype=bool)
        self.is_basic[basis] = True
        # each row's basic column's bounds and tolerance, kept as the basis changes
        self.row_lo, self.row_up = self.lo[basis], self.up[basis]
        self.row_tolerance = tolerance[basis]

    @staticmethod
    def _tolerance(n: int, rhs: NDArray[np.float64]) -> NDArray[np.float64]:
        """PRIMAL_TOLERANCE, scaled for a slack by its row's limit."""
        return PRIMAL_TOLERANCE * np.concatenate([np.ones(n), np.maximum(1.0, np.abs(rhs))])

    @classmethod
    def start(cls, value: NDArray[np.float64], coupling: NDArray[np.float64],
              rhs: NDArray[np.float64], offsets: NDArray[np.int64]) -> Tableau:
        """Every unit at its first option of highest value, the rows' slacks basic."""
        m, n, units = rhs.size, value.size, offsets.size - 1
        starts = offsets[:-1]
        unit = np.repeat(np.arange(units), np.diff(offsets))
        best = np.maximum.reduceat(value, starts)
        key = np.minimum.reduceat(np.where(value == best[unit], np.arange(n), n), starts)
        t = np.zeros((m + units, n + m))
        t[:m, :n] = coupling - coupling[:, key[unit]]
        t[:m, n:] = np.eye(m)
        t[m + unit, np.arange(n)] = 1.0
        beta = np.concatenate([rhs - coupling[:, key].sum(axis=1), np.ones(units)])
        basis = np.concatenate([np.arange(n, n + m), key]).astype(np.int64)
        reduced = np.concatenate([value - best[unit], np.zeros(m)])
        return cls(t, beta, basis, reduced, n, cls._tolerance(n, rhs))

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
        try:  # (an inverse and a product: a third of np.linalg.solve's time at this size)
            t = np.asarray(np.linalg.inv(a[:, basis]) @ a, dtype=np.float64)
        except np.linalg.LinAlgError:
            return None
        cost = np.concatenate([value, np.zeros(m)])
        reduced = cost - cost[basis] @ t[:, :-1]
        reduced[basis] = 0.0
        t[:, basis] = np.eye(m + units)
        scale = max(1.0, float(np.abs(value).max()))
        if (reduced > PRIMAL_TOLERANCE * scale).any() or (t[:, -1] < -PRIMAL_TOLERANCE).any():
            return None  # not the optimum's basis (degenerate, or x not a vertex)
        return cls(np.ascontiguousarray(t[:, :-1]), t[:, -1].copy(), basis.astype(np.int64),
                   reduced, n, cls._tolerance(n, rhs))

    def copy(self) -> Tableau:
        out = Tableau.__new__(Tableau)
        out.t, out.beta, out.basis = self.t.copy(), self.beta.copy(), self.basis.copy()
        out.at_upper, out.reduced = self.at_upper.copy(), self.reduced.copy()
        out.lo, out.up, out.is_basic = self.lo.copy(), self.up.copy(), self.is_basic.copy()
        out.row_lo, out.row_up = self.row_lo.copy(), self.row_up.copy()
        out.row_tolerance = self.row_tolerance.copy()
        out.n, out.m, out.tolerance = self.n, self.m, self.tolerance
        return out

    def solve(self, lower: NDArray[np.float64], upper: NDArray[np.float64],
              max_pivots: int) -> tuple[bool, NDArray[np.float64]] | None:
        """The dual simplex from this tableau under the options' bounds ``lower`` and
        ``upper`` (the tableau is updated in place). Returns (True, x) at the LP's optimum
        (``x``: the options' weights), (False, empty) when the LP is infeasible (a row
        whose basic column no column can bring within its bounds), ``None`` past
        ``max_pivots`` pivots."""
        n = self.n
        t, beta, basis, reduced = self.t, self.beta, self.basis, self.reduced
        lo, up, at_upper, is_basic = self.lo, self.up, self.at_upper, self.is_basic
        changed = (lower != lo[:n]) | (upper != up[:n])
        if changed.any():
            # the nonbasic columns whose value the new bounds move: the basic values follow
            moved = (changed & ~is_basic[:n]).nonzero()[0]
            if moved.size:
                before = np.where(at_upper[moved], up[moved], lo[moved])
                after = np.where(at_upper[moved], upper[moved], lower[moved])
                beta -= t[:, moved] @ (after - before)
            lo[:n], up[:n] = lower, upper
            self.row_lo, self.row_up = lo[basis], up[basis]
        row_lo, row_up, row_tolerance = self.row_lo, self.row_up, self.row_tolerance
        movable = flip = None  # made at the first pivot
        # past this many pivots, Bland's rule (the broken row of least basic column, the
        # entering column of least index among the least ratios): no basis comes back,
        # where ties in the ratios (equal values, a degenerate dual) could cycle
        bland = t.shape[0] + 10
        for pivots in range(max_pivots + 1):
            below = row_lo - beta
            worst = np.maximum(below, beta - row_up) - row_tolerance
            r = int(worst.argmax())
            if worst[r] <= 0.0:
                x = np.where(at_upper[:n], up[:n], lo[:n])
                inside = basis < n
                x[basis[inside]] = beta[inside]
                return True, np.minimum(np.maximum(x, lower), upper)  # within the tolerance
            if pivots >= bland:
                broken = (worst > 0.0).nonzero()[0]
                r = int(broken[basis[broken].argmin()])
            if movable is None or flip is None:
                movable = (lo < up) & ~is_basic
                flip = np.where(at_upper, -1.0, 1.0)  # +1: a column rises from its bound
            rise = bool(below[r] > 0.0)  # the basic value must rise to its lower bound
            alpha = t[r]
            # columns whose move (up from a lower bound, down from an upper one) brings the
            # row's basic value toward its bound
            step = alpha * flip
            tiny = PIVOT_TOLERANCE * max(1.0, float(np.abs(alpha).max()))
            candidates = (movable & ((step < -tiny) if rise else (step > tiny))).nonzero()[0]
            if not candidates.size:
                return False, np.zeros(0)
            size = np.abs(alpha[candidates])
            ratio = np.abs(reduced[candidates]) / size
            least = ratio.min()
            # among the least ratios (to rounding), the largest entry: the stablest pivot
            near = ratio <= least + 1e-12 * max(1.0, least)
            q = int(candidates[(near if pivots >= bland else np.where(near, size, 0.0)).argmax()])
            leaving = int(basis[r])
            target = lo[leaving] if rise else up[leaving]
            entering_at = up[q] if at_upper[q] else lo[q]
            delta = (beta[r] - target) / alpha[q]
            beta -= delta * t[:, q]
            beta[r] = entering_at + delta
            self._pivot(r, q)
            row_lo[r], row_up[r], row_tolerance[r] = lo[q], up[q], self.tolerance[q]
            movable[q], is_basic[q], at_upper[q], flip[q] = False, True, False, 1.0
            movable[leaving] = lo[leaving] < up[leaving]
            is_basic[leaving], at_upper[leaving] = False, not rise
            flip[leaving] = 1.0 if rise else -1.0
        return None

    def _pivot(self, r: int, q: int) -> None:
        t = self.t
        column = t[:, q].copy()
        t[r] /= column[r]
        column[r] = 0.0
        # every row at once (a row of zero entry in the column is left as it is): on these
        # few dozen rows one outer product costs less than gathering the rows that move
        t -= np.multiply.outer(column, t[r])
        t[:, q] = 0.0
        t[r, q] = 1.0
        self.reduced -= self.reduced[q] * t[r]
        self.reduced[q] = 0.0
        self.basis[r] = q

    def duals(self) -> NDArray[np.float64]:
        """The coupling rows' prices (d objective / d rhs, >= 0 at an optimum): minus the
        reduced costs of their slacks."""
        return -self.reduced[self.n:]

    def reduced_costs(self) -> NDArray[np.float64]:
        """The options' reduced costs."""
        return self.reduced[: self.n]
