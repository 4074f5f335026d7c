"""Independent references for the allocation LP: highspy called directly, and naive PuLP.

Both solve the textbook *full per-customer* LP straight from the options table, sharing no
code with ``engine.optimize.lp`` (no hull, no increments, no blocks):

    max  sum_j value_j x_j
    s.t. sum_{j of customer i} x_j = 1                    for every customer i
         sum_j cost_j x_j <= budget
         sum_{j in segment s} cost_j x_j <= cap_s           for every capped segment s
         sum_{j in segment s} cost_j x_j >= minimum_s       for every segment with a minimum
         0 <= x_j <= 1

``highs_direct`` hands HiGHS the matrix as numpy arrays (interior point, presolve off, as
issue 4 measured; crossover on so the objective is a vertex's, exact to HiGHS'
tolerances). ``pulp_naive`` is how the model is usually written in PuLP: one LpVariable per
customer-level and ``lpSum`` of products per row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass
class Model:
    """The options table as arrays: customer index (0..n-1, grouped), cost, value, segment."""

    unit: NDArray[np.int64]
    cost: Array
    value: Array
    segment: NDArray[np.int64]
    segment_names: list[str]
    budget: float | None
    caps: dict[str, float] = field(default_factory=dict)
    minimums: dict[str, float] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.unit[-1]) + 1 if self.unit.size else 0


def model_from_table(
    table: pl.DataFrame,
    budget: float | None,
    caps: dict[str, float],
    minimums: dict[str, float] | None = None,
) -> Model:
    """From a polars options table (customer_id, cost, value, segment), sorted by customer."""
    ids = table["customer_id"].to_numpy()
    boundary = np.ones(ids.size, dtype=bool)
    boundary[1:] = ids[1:] != ids[:-1]
    seg = table["segment"].cast(pl.String)
    names = seg.unique().sort().to_list()
    codes = seg.cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int64)
    return Model(
        unit=np.cumsum(boundary) - 1,
        cost=table["cost"].cast(pl.Float64).to_numpy(),
        value=table["value"].cast(pl.Float64).to_numpy(),
        segment=codes,
        segment_names=names,
        budget=budget,
        caps=caps,
        minimums=dict(minimums or {}),
    )


def _coupling(model: Model) -> tuple[list[NDArray[np.int64]], list[float], list[float]]:
    """Columns, sign and right-hand side of each coupling row in ``sign * spend <= rhs``
    form: the budget, one row per cap, one per minimum (sign -1)."""
    cols, sign, rhs = [], [], []
    if model.budget is not None:
        cols.append(np.arange(model.cost.size))
        sign.append(1.0)
        rhs.append(model.budget)
    index = {s: i for i, s in enumerate(model.segment_names)}
    for limits, s in ((model.caps, 1.0), (model.minimums, -1.0)):
        for name, amount in limits.items():
            cols.append(np.flatnonzero(model.segment == index[name]))
            sign.append(s)
            rhs.append(s * amount)
    return cols, sign, rhs


@dataclass
class Solved:
    objective: float
    seconds: float
    build_seconds: float
    status: str


def highs_direct(model: Model, time_limit: float = 3600.0, crossover: bool = True) -> Solved:
    """The full LP through highspy's C++ model, built from numpy arrays (no Python loop)."""
    import highspy
    from scipy.sparse import coo_matrix

    started = time.perf_counter()
    m, n = model.cost.size, model.n_units
    cols, sign, rhs = _coupling(model)
    k = len(cols)
    r = [np.full(c.size, i, dtype=np.int64) for i, c in enumerate(cols)]
    r.append(k + model.unit)
    c = [*cols, np.arange(m)]
    v = [s * model.cost[cc] for s, cc in zip(sign, cols, strict=True)] + [np.ones(m)]
    a = coo_matrix(
        (np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(k + n, m)
    ).tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = m, k + n
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = model.value
    lp.col_lower_ = np.zeros(m)
    lp.col_upper_ = np.ones(m)
    lp.row_lower_ = np.concatenate([np.full(k, -highspy.kHighsInf), np.ones(n)])
    lp.row_upper_ = np.concatenate([np.asarray(rhs, dtype=np.float64), np.ones(n)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("presolve", "off")
    h.setOptionValue("run_crossover", "on" if crossover else "off")
    h.setOptionValue("time_limit", float(time_limit))
    h.passModel(lp)
    built = time.perf_counter()
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    objective = float(h.getInfo().objective_function_value)
    done = time.perf_counter()
    return Solved(objective, done - started, built - started, status)


def pulp_naive(model: Model, time_limit: float = 3600.0) -> Solved:
    """The same LP written the usual PuLP way, solved by HiGHS (IPM, presolve off) through
    PuLP: one LpVariable per customer-level, lpSum of products per row."""
    import pulp

    started = time.perf_counter()
    prob = pulp.LpProblem("naive", pulp.LpMaximize)
    x = [pulp.LpVariable(f"x_{j}", lowBound=0, upBound=1) for j in range(model.cost.size)]
    cost, value = model.cost.tolist(), model.value.tolist()
    prob += pulp.lpSum(value[j] * x[j] for j in range(len(x)))
    starts = np.flatnonzero(np.r_[True, model.unit[1:] != model.unit[:-1]]).tolist()
    starts.append(len(x))
    for i in range(len(starts) - 1):
        prob += pulp.lpSum(x[starts[i]:starts[i + 1]]) == 1, f"one_{i}"
    for r, (cols, sign, b) in enumerate(zip(*_coupling(model), strict=True)):
        prob += pulp.lpSum(sign * cost[j] * x[j] for j in cols.tolist()) <= b, f"row_{r}"
    built = time.perf_counter()
    solver = pulp.HiGHS(
        msg=False, timeLimit=time_limit, solver="ipm", presolve="off", run_crossover="on"
    )
    prob.solve(solver)
    status = pulp.LpStatus[prob.status]
    objective = float(pulp.value(prob.objective))
    done = time.perf_counter()
    return Solved(objective, done - started, built - started, status)
