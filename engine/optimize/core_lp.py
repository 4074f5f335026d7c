"""A core LP held in HiGHS directly: limit rows, one convexity row per unit, growing.

The any-resource LP (``engine.optimize.lagrange``) solves a *core* of units again and again,
adding units between solves. Through PuLP every solve would rebuild the model from Python
objects; here columns and rows go to highspy as numpy arrays (compressed sparse columns).

Rows are in ``<=`` form: ``sum_j a_kj x_j - s_k <= residual_k`` (a limit's right-hand side
less what the units outside the core use), then ``sum_{j of unit i} x_j = 1``. The elastic
``s_k >= 0`` costs ``penalty_k`` a unit, so a core LP always has a plan; the caller checks
that no ``s_k`` is left at the end. HiGHS minimizes ``-value + penalty . s``; a limit's
price ``y_k = -row_dual_k`` is the value of one more unit of its right-hand side.

Every unit enters with one *basic* option (the caller's choice: its best at the current
prices) and its convexity row nonbasic. The first solve starts from those options, a limit
they overrun with its elastic column basic and any other with its slack: a primal feasible
basis, for the primal simplex (the dual simplex stops on it: its duals are huge). Later
units enter at their best option at the last solve's prices, which keeps the basis dual
feasible: after new units and new right-hand sides the dual simplex goes on from the last
optimum.

:class:`PulpCore` is the same model rebuilt through PuLP at each solve (the CBC path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine.optimize import solvers
from engine.stdio import native_stdout_silenced

BASIC, LOWER, UPPER = 1, 0, 2  # HiGHS' basis status codes


@dataclass(frozen=True)
class CoreSolution:
    status: str  # "optimal", "infeasible" or HiGHS' own word for anything else
    x: NDArray[np.float64]  # per unit column, in the order added
    prices: NDArray[np.float64]  # per limit row, <= form, >= 0
    slack: NDArray[np.float64]  # per limit row, the elastic overrun (0 in a plan)
    iterations: int


class HighsCore:
    """An LP over ``n_rows`` limit rows to which units (their options as columns) are
    added; ``solve`` re-optimizes from the last basis."""

    def __init__(self, residual: NDArray[np.float64], penalty: NDArray[np.float64],
                 time_limit: float | None = None) -> None:
        import highspy

        from engine.optimize.small_highs import take_pool_size

        self._hs = highspy
        self._lut = [highspy.HighsBasisStatus(i) for i in range(5)]
        with native_stdout_silenced():  # highspy prints a banner when a solver is made
            self._h = highspy.Highs()
        h = self._h
        h.setOptionValue("output_flag", False)
        take_pool_size(h)  # no count of the machine's cores per run (small_highs)
        # tight tolerances: the plan must keep every limit within 1e-9, and the prices are
        # the certificate's
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        h.setOptionValue("dual_feasibility_tolerance", 1e-9)
        h.setOptionValue("presolve", "off")  # the basis given is the start
        if time_limit is not None:
            h.setOptionValue("time_limit", max(float(time_limit), 1e-3))
        k = residual.size
        self.n_rows = k
        self.residual = residual.astype(np.float64)
        inf = highspy.kHighsInf
        h.addRows(k, np.full(k, -inf), self.residual, 0, np.zeros(k, dtype=np.int32),
                  np.zeros(0, dtype=np.int32), np.zeros(0))
        h.addCols(k, penalty.astype(np.float64), np.zeros(k), np.full(k, inf), k,
                  np.arange(k, dtype=np.int32), np.arange(k, dtype=np.int32), -np.ones(k))
        self.n_cols = 0  # unit columns (after the k elastic ones)
        self.n_units = 0
        self._activity = np.zeros(k)  # limit rows' use by the entering options (first solve)
        self._col_status = np.zeros(0, dtype=np.int64)  # the basis to start from
        self._row_status = np.zeros(0, dtype=np.int64)  # convexity rows
        self._solved = False
        self._added = False  # units added since the last solve

    def set_residual(self, residual: NDArray[np.float64]) -> None:
        self.residual = residual.astype(np.float64)
        idx = np.arange(self.n_rows, dtype=np.int32)
        lower = np.full(self.n_rows, -self._hs.kHighsInf)
        # (changeRowsBounds and getBasicVariables are missing from highspy's stubs)
        self._h.changeRowsBounds(self.n_rows, idx, lower,  # type: ignore[attr-defined]
                                 self.residual)

    def set_penalty(self, penalty: NDArray[np.float64]) -> None:
        self._h.changeColsCost(self.n_rows, np.arange(self.n_rows, dtype=np.int32),
                               penalty.astype(np.float64))

    def forbid_elastic(self) -> None:
        """No overrun any more: the LP is then infeasible when the limits cannot be met."""
        k = self.n_rows
        self._h.changeColsBounds(k, np.arange(k, dtype=np.int32), np.zeros(k), np.zeros(k))

    def add_units(
        self,
        value: NDArray[np.float64],
        unit: NDArray[np.int64],
        starts: NDArray[np.int64],
        index: NDArray[np.int64],
        coef: NDArray[np.float64],
        basic: NDArray[np.int64],
    ) -> None:
        """Add columns (value, the unit each belongs to as 0..u-1 among the new units, in
        order) with their limit-row entries in CSC form (``starts`` of length columns + 1,
        row ``index`` < ``n_rows``); every new unit gets its convexity row, and its column
        ``basic`` (one per new unit, among the new columns) starts basic at 1."""
        if value.size == 0:
            return
        if self._solved:
            self._read_basis()
        n_new = int(unit[-1]) + 1
        first = self.n_rows + self.n_units
        h = self._h
        ones = np.ones(n_new)
        h.addRows(n_new, ones, ones, 0, np.zeros(n_new, dtype=np.int32),
                  np.zeros(0, dtype=np.int32), np.zeros(0))
        # each column: its limit entries, then its convexity row
        counts = np.diff(starts) + 1
        col_starts = np.zeros(value.size + 1, dtype=np.int64)
        np.cumsum(counts, out=col_starts[1:])
        nnz = int(col_starts[-1])
        rows = np.empty(nnz, dtype=np.int32)
        vals = np.empty(nnz)
        last = col_starts[1:] - 1
        is_limit = np.ones(nnz, dtype=bool)
        is_limit[last] = False
        rows[is_limit] = index
        vals[is_limit] = coef
        rows[last] = first + unit
        vals[last] = 1.0
        h.addCols(value.size, -value.astype(np.float64), np.zeros(value.size),
                  np.ones(value.size), nnz, col_starts[:-1].astype(np.int32), rows, vals)
        status = np.full(value.size, LOWER, dtype=np.int64)
        status[basic] = BASIC
        self._col_status = np.concatenate([self._col_status, status])
        self._row_status = np.concatenate([self._row_status, np.full(n_new, LOWER)])
        if not self._solved:
            chosen = np.zeros(value.size, dtype=bool)
            chosen[basic] = True
            entry_col = np.repeat(np.arange(value.size), np.diff(starts))
            taken = chosen[entry_col]
            self._activity += np.bincount(index[taken], weights=coef[taken],
                                          minlength=self.n_rows)
        self.n_cols += value.size
        self.n_units += n_new
        self._added = True

    def _read_basis(self) -> None:
        """The last optimum's basis as status codes (basic ones from HiGHS' list, the
        others at the bound their value sits on)."""
        k = self.n_rows
        total_cols = k + self.n_cols
        basic = np.asarray(self._h.getBasicVariables()[1],  # type: ignore[attr-defined]
                           dtype=np.int64)
        col_basic = np.zeros(total_cols, dtype=bool)
        col_basic[basic[basic >= 0]] = True
        row_basic = np.zeros(k + self.n_units, dtype=bool)
        row_basic[-1 - basic[basic < 0]] = True
        x = np.asarray(self._h.getSolution().col_value, dtype=np.float64)
        cols = np.where(col_basic, BASIC, np.where(x > 0.5, UPPER, LOWER))
        rows = np.where(row_basic, BASIC, np.where(np.arange(k + self.n_units) < k, UPPER,
                                                   LOWER))
        self._elastic, self._limit_rows = cols[:k], rows[:k]
        self._col_status, self._row_status = cols[k:], rows[k:]

    def _set_basis(self) -> None:
        k = self.n_rows
        if not self._solved:  # a limit the entering options overrun: its elastic basic
            over = self._activity > self.residual
            self._elastic = np.where(over, BASIC, LOWER)
            self._limit_rows = np.where(over, UPPER, BASIC)
        lut = self._lut
        basis = self._hs.HighsBasis()
        basis.col_status = [lut[v] for v in np.concatenate([self._elastic,
                                                            self._col_status]).tolist()]
        basis.row_status = [lut[v] for v in np.concatenate([self._limit_rows,
                                                            self._row_status]).tolist()]
        basis.valid = True
        self._h.setBasis(basis)
        assert self._col_status.size == self.n_cols and k == self._limit_rows.size

    def solve(self) -> CoreSolution:
        h = self._h
        if self._added:  # else HiGHS holds the last basis
            self._set_basis()
            self._added = False
        # the first basis is primal feasible but not dual feasible (the elastic columns'
        # penalties make its duals huge: HiGHS' dual simplex then stops at once with
        # "excessive dual values"), so the primal simplex starts; later bases are dual
        # feasible, so the dual simplex goes on
        h.setOptionValue("simplex_strategy", 1 if self._solved else 4)
        run = h.run()
        self._solved = True
        hs = self._hs.HighsModelStatus
        status = h.getModelStatus()
        if run == self._hs.HighsStatus.kError or status == hs.kNotset:
            # HiGHS refused to go on from the basis given (after a penalty rose a
            # thousandfold the duals can be too large for its ratio test): solve from no
            # basis, slower but sure
            h.clearSolver()
            h.setOptionValue("simplex_strategy", 1)
            h.run()
            status = h.getModelStatus()
        iterations = int(h.getInfo().simplex_iteration_count)
        k = self.n_rows
        if status != hs.kOptimal:
            word = ("infeasible" if status in (hs.kInfeasible, hs.kUnboundedOrInfeasible)
                    else h.modelStatusToString(status))
            return CoreSolution(word, np.zeros(0), np.zeros(k), np.zeros(k), iterations)
        solution = h.getSolution()
        x = np.asarray(solution.col_value, dtype=np.float64)
        duals = np.asarray(solution.row_dual, dtype=np.float64)[:k]
        return CoreSolution("optimal", np.clip(x[k:], 0.0, 1.0), np.maximum(-duals, 0.0),
                            np.maximum(x[:k], 0.0), iterations)
class PulpCore:
    """The core LP rebuilt through PuLP each solve (the CBC path), with the same elastic
    columns as :class:`HighsCore`."""

    def __init__(self, residual: NDArray[np.float64], penalty: NDArray[np.float64],
                 solver: str, time_limit: float | None) -> None:
        self.residual, self.penalty = residual, penalty
        self.solver, self.time_limit = solver, time_limit
        self.value: list[NDArray[np.float64]] = []
        self.unit: list[NDArray[np.int64]] = []
        self.matrix: list[sparse.csc_matrix] = []
        self.n_units = 0
        self.elastic = True

    def set_residual(self, residual: NDArray[np.float64]) -> None:
        self.residual = residual

    def set_penalty(self, penalty: NDArray[np.float64]) -> None:
        self.penalty = penalty

    def forbid_elastic(self) -> None:
        self.elastic = False

    def add_units(self, value: NDArray[np.float64], unit: NDArray[np.int64],
                  starts: NDArray[np.int64], index: NDArray[np.int64],
                  coef: NDArray[np.float64], basic: NDArray[np.int64]) -> None:
        if value.size == 0:
            return
        self.value.append(value)
        self.unit.append(unit + self.n_units)
        self.matrix.append(sparse.csc_matrix((coef, index, starts),
                                             shape=(self.residual.size, value.size)))
        self.n_units += int(unit[-1]) + 1

    def solve(self) -> CoreSolution:
        k = self.residual.size
        value = np.concatenate([-self.penalty, *self.value])
        unit = np.concatenate(self.unit)
        a = sparse.hstack([-sparse.identity(k, format="csc"), *self.matrix]).tocsr()
        bounds = np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]]) + k
        ends = np.append(bounds[1:], unit.size + k)
        eq = [(np.arange(s, e, dtype=np.int64), np.ones(e - s))
              for s, e in zip(bounds.tolist(), ends.tolist(), strict=True)]
        upper = np.ones(value.size)
        # PuLP wants finite bounds: an overrun is at most what the core can use, plus the
        # right-hand side
        most = np.asarray(abs(a[:, k:]).sum(axis=1)).ravel() + np.abs(self.residual) + 1.0
        upper[:k] = most if self.elastic else 0.0
        result = solvers.maximize(value, a, self.residual, upper, a_eq=eq,
                                  b_eq=np.ones(len(eq)), solver=self.solver,
                                  time_limit=self.time_limit)
        if result.status != "optimal":
            return CoreSolution(result.status, np.zeros(0), np.zeros(k), np.zeros(k), 0)
        x = np.nan_to_num(result.x)
        return CoreSolution("optimal", np.clip(x[k:], 0.0, 1.0),
                            np.maximum(np.nan_to_num(result.shadow_prices), 0.0),
                            np.maximum(x[:k], 0.0), 0)


