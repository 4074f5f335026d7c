"""Independent references for the optimizer: brute force and a different LP formulation.

The engine solves an incremental (hull) formulation through PuLP; the reference LP here is
the textbook convex-combination formulation (one weight per customer-level, weights of a
customer sum to 1) solved by scipy's HiGHS bindings, sharing no code with engine/lp.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from engine.allocation import Allocation
from engine.constraints import Constraint
from engine.options import OptionSet


def reference_lp(options: OptionSet, rows: list[Constraint]) -> float | None:
    """LP optimum of the convex-combination formulation, None if infeasible."""
    n, m = options.n_units, options.cost.size
    unit = options.unit_of_option
    a_eq = coo_matrix((np.ones(m), (unit, np.arange(m))), shape=(n, m)).tocsr()
    a_ub, b_ub = None, None
    if rows:
        data, r_idx, c_idx = [], [], []
        for k, row in enumerate(rows):
            member = row.cells[options.cell[unit]]
            cols = np.flatnonzero(member)
            data.append(row.sense * options.cost[cols])
            r_idx.append(np.full(cols.size, k))
            c_idx.append(cols)
        a_ub = coo_matrix(
            (np.concatenate(data), (np.concatenate(r_idx), np.concatenate(c_idx))),
            shape=(len(rows), m),
        ).tocsr()
        b_ub = np.array([row.sense * row.rhs for row in rows])
    res = linprog(
        -options.value,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    return float(-res.fun)


def brute_force(options: OptionSet, rows: list[Constraint]) -> float | None:
    """Best total value over every combination of one level per unit (all units integral)."""
    choices = [range(options.offsets[i], options.offsets[i + 1]) for i in range(options.n_units)]
    combos = np.array(list(itertools.product(*choices)), dtype=np.int64)
    value = options.value[combos].sum(axis=1)
    feasible = np.ones(len(combos), dtype=bool)
    for row in rows:
        member = row.cells[options.cell]
        spend = (options.cost[combos] * member[None, :]).sum(axis=1)
        slack = 1e-9 * max(1.0, abs(row.rhs))
        feasible &= spend <= row.rhs + slack if row.sense > 0 else spend >= row.rhs - slack
    if not feasible.any():
        return None
    return float(value[feasible].max())


def _full_model(options: OptionSet, rows: list[Constraint]) -> tuple[Any, Any]:
    """The textbook per-customer LP as a highspy model, and its CSC matrix: one weight per
    customer-level in [0, 1], each customer's weights summing to 1 (rows ``0..n-1``), then
    one row per limit (``n..``)."""
    import highspy

    n, m = options.n_units, options.cost.size
    unit = options.unit_of_option
    data, r_idx, c_idx = [np.ones(m)], [unit], [np.arange(m)]
    for k, row in enumerate(rows):
        cols = np.flatnonzero(row.cells[options.cell[unit]])
        data.append(_use(options, row)[cols])
        r_idx.append(np.full(cols.size, n + k))
        c_idx.append(cols)
    a = coo_matrix(
        (np.concatenate(data), (np.concatenate(r_idx), np.concatenate(c_idx))),
        shape=(n + len(rows), m),
    ).tocsc()
    inf = highspy.kHighsInf
    lower = [np.ones(n)] + [np.array([row.rhs if row.sense < 0 else -inf]) for row in rows]
    upper = [np.ones(n)] + [np.array([row.rhs if row.sense > 0 else inf]) for row in rows]
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = m, n + len(rows)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = options.value
    lp.col_lower_ = np.zeros(m)
    lp.col_upper_ = np.ones(m)
    lp.row_lower_ = np.concatenate(lower)
    lp.row_upper_ = np.concatenate(upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data
    return lp, a


def _use(options: OptionSet, row: Constraint) -> NDArray[np.float64]:
    return options.cost if row.resource == "cost" else options.extra[row.resource]


def reference_mip(
    options: OptionSet, rows: list[Constraint], time_limit: float = 120.0, relax: bool = False,
    lp_solver: str = "choose",
) -> tuple[float, float, str] | None:
    """The full per-customer MIP (one binary per customer-level, one continuous weight per
    pool-level) by highspy at relative and absolute gap 1e-9: (optimum, dual bound, HiGHS
    status), None if infeasible. Shares no code with the engine's optimizer. ``lp_solver``:
    HiGHS' ``solver`` option for the LP (``ipm``: interior point then crossover)."""
    import highspy

    lp, _ = _full_model(options, rows)
    pool = options.fractional[options.unit_of_option]
    if not relax:  # relax: the LP (every weight continuous)
        lp.integrality_ = [
            highspy.HighsVarType.kContinuous if p else highspy.HighsVarType.kInteger
            for p in pool.tolist()
        ]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("time_limit", float(time_limit))
    if relax:
        h.setOptionValue("solver", lp_solver)
    h.passModel(lp)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
        return None
    info = h.getInfo()
    if relax:
        return float(info.objective_function_value), float("nan"), status
    return float(info.objective_function_value), float(info.mip_dual_bound), status


def reference_lp_from(
    options: OptionSet, rows: list[Constraint], allocation: Allocation,
    time_limit: float = 1800.0,
) -> tuple[float, str, int]:
    """highspy's optimum of the full per-customer LP, started from the engine's point:
    (objective, HiGHS status, simplex iterations after the start).

    Where a cold solve of the full model is out of reach (at a million customers neither
    simplex nor interior point finishes in 15 minutes), highspy's crossover turns the
    engine's primal plan and its dual prices (the limits' shadow prices; each customer's
    best priced value) into a basis of the full model, and highspy's simplex then proves
    that basis optimal or pivots on to the optimum. The objective is highspy's own, over
    every customer-level; a wrong start costs iterations, never a wrong answer."""
    import highspy

    lp, a = _full_model(options, rows)
    x = np.zeros(options.cost.size)
    np.add.at(x, allocation.lo, 1.0 - allocation.theta)
    np.add.at(x, allocation.hi, allocation.theta)
    price = np.array([allocation.shadow_prices.get(row.name, 0.0) for row in rows])
    priced = options.value.copy()
    cell = options.cell[options.unit_of_option]
    for k, row in enumerate(rows):
        if price[k] != 0.0:
            priced -= price[k] * _use(options, row) * row.cells[cell]
    best = np.full(options.n_units, -np.inf)
    np.maximum.at(best, options.unit_of_option, priced)
    y = np.concatenate([best, price])
    start = highspy.HighsSolution()
    start.col_value = x
    start.row_value = a @ x
    start.col_dual = options.value - a.T @ y
    start.row_dual = y
    start.value_valid = start.dual_valid = True
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.passModel(lp)
    h.crossover(start)
    h.setOptionValue("solver", "simplex")
    h.run()
    info = h.getInfo()
    return (float(info.objective_function_value), h.modelStatusToString(h.getModelStatus()),
            int(info.simplex_iteration_count))
