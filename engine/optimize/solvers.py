"""The engine's one door to LP/MIP solvers (HiGHS through highspy, CBC as fallback).

An LP with only ``<=`` rows and bounds goes to HiGHS as arrays (``_highs_lp``); MIPs, models
with equality rows and CBC go through PuLP, built from (variable, coefficient) pairs, the
fastest way PuLP offers. Shadow prices come back in one convention whatever the path: the
change in the objective per unit increase of the right-hand side.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import pulp
from numpy.typing import NDArray
from scipy import sparse

from engine.errors import InvalidInputError, SolverError
from engine.stdio import native_stdout_silenced

SOLVERS = ("highs", "cbc")
MIP_GAP = 1e-9  # relative and absolute gap at which a MIP counts as solved


@dataclass(frozen=True)
class LpResult:
    status: str  # "optimal", "infeasible", "unbounded", "time_limit", "error"
    x: NDArray[np.float64]
    objective: float
    shadow_prices: NDArray[np.float64]  # d objective / d b_ub, >= 0 for a maximization
    solver: str
    seconds: float
    # A MIP's proven upper bound on its optimum (the solver's dual bound; nan when the
    # solver does not report one). Equal to ``objective`` within MIP_GAP when "optimal".
    bound: float = float("nan")


@functools.cache
def _installed() -> tuple[str, ...]:
    found = set(pulp.listSolvers(onlyAvailable=True))
    return tuple(s for s, cls in (("highs", "HiGHS"), ("cbc", "PULP_CBC_CMD")) if cls in found)


def available() -> list[str]:
    """Solvers PuLP can drive here (probed once per process: the probe costs ~5 ms)."""
    return list(_installed())


def resolve(name: str) -> str:
    """``auto`` picks HiGHS when installed, CBC otherwise; unknown names are an input error."""
    name = (name or "auto").lower()
    have = available()
    if name == "auto":
        if not have:
            raise SolverError("no LP solver available (install highspy)")
        return have[0]
    if name not in SOLVERS:
        raise InvalidInputError.single(
            "plan.allocation.params.solver",
            f"unknown solver {name!r}; choose from auto, highs, cbc",
        )
    if name not in have:
        raise InvalidInputError.single(
            "plan.allocation.params.solver", f"solver {name!r} is not available here; have {have}"
        )
    return name


def _make(name: str, time_limit: float | None, mip: bool, presolve: bool = True
          ) -> pulp.LpSolver:
    # MIPs stop at a relative and absolute gap of 1e-9, not the solvers' default 1e-4:
    # a plan is called optimal only when it is proven so within 1e-9.
    gaps = {"gapRel": MIP_GAP, "gapAbs": MIP_GAP} if mip else {}
    if name == "highs":
        # HiGHS' MIP feasibility tolerance is absolute (1e-6): tightened so that a small
        # minimum is met, not left short by the tolerance (the LP's 1e-7 is tight enough).
        tolerance: dict[str, object] = {"mip_feasibility_tolerance": 1e-9} if mip else {}
        if not presolve:
            tolerance["presolve"] = "off"
        return pulp.HiGHS(msg=False, timeLimit=time_limit, mip=mip, **gaps, **tolerance)
    return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, mip=mip, **gaps)


SparseRows = list[tuple[NDArray[np.int64], NDArray[np.float64]]]


def _sparse(a: NDArray[np.float64] | SparseRows | sparse.spmatrix) -> SparseRows:
    if sparse.issparse(a):
        csr = sparse.csr_matrix(a)
        return [
            (csr.indices[csr.indptr[k]:csr.indptr[k + 1]].astype(np.int64),
             np.asarray(csr.data[csr.indptr[k]:csr.indptr[k + 1]], dtype=np.float64))
            for k in range(csr.shape[0])
        ]
    if isinstance(a, np.ndarray):
        return [(np.flatnonzero(row), row[row != 0]) for row in a]
    return a


def maximize(
    c: NDArray[np.float64],
    a_ub: NDArray[np.float64] | SparseRows | sparse.spmatrix,
    b_ub: NDArray[np.float64],
    upper: NDArray[np.float64] | float = 1.0,
    *,
    a_eq: NDArray[np.float64] | SparseRows | None = None,
    b_eq: NDArray[np.float64] | None = None,
    integer: bool | NDArray[np.bool_] = False,
    solver: str = "auto",
    time_limit: float | None = None,
    presolve: bool = True,
) -> LpResult:
    """max c.x s.t. a_ub x <= b_ub, a_eq x = b_eq, 0 <= x <= upper (binary if ``integer``,
    which may also say per variable which ones are binary).

    Constraint matrices are dense arrays or, for wide models, scipy sparse matrices or
    per-row (indices, values). ``presolve=False``: HiGHS solves the model as given (its
    presolve costs ~12 ms even on a model of a few hundred columns and rows that
    a handful of simplex iterations solve in under 1 ms: the block LP's rounds).
    """
    name = resolve(solver)
    started = time.perf_counter()
    n = c.size
    ub = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
    binary = np.broadcast_to(np.asarray(integer, dtype=bool), (n,))
    mip = bool(binary.any())
    if name == "highs" and not mip and a_eq is None and n and len(b_ub):
        return _highs_lp(c, a_ub, b_ub, ub, time_limit, presolve, started)
    prob = pulp.LpProblem("equity", pulp.LpMaximize)
    xs = [
        pulp.LpVariable(f"x{i}", lowBound=0, upBound=None, cat=pulp.LpBinary)
        if binary[i]
        else pulp.LpVariable(f"x{i}", lowBound=0, upBound=float(ub[i]))
        for i in range(n)
    ]
    prob.setObjective(pulp.LpAffineExpression(zip(xs, c.tolist(), strict=True)))
    ub_rows = _sparse(a_ub)
    for k, (idx, vals) in enumerate(ub_rows):
        expr = pulp.LpAffineExpression(zip([xs[j] for j in idx], vals.tolist(), strict=True))
        prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{k}", float(b_ub[k])))
    if a_eq is not None and b_eq is not None:
        for k, (idx, vals) in enumerate(_sparse(a_eq)):
            expr = pulp.LpAffineExpression(zip([xs[j] for j in idx], vals.tolist(), strict=True))
            prob.addConstraint(
                pulp.LpConstraint(expr, pulp.LpConstraintEQ, f"e{k}", float(b_eq[k]))
            )
    if time_limit is not None:  # building the model counts against the limit (the solver
        # keeps up to a second to find a first answer)
        time_limit = max(time_limit - (time.perf_counter() - started), min(time_limit, 1.0))
    try:
        # HiGHS prints a banner on stdout whenever PuLP makes a solver object (highspy 1.16).
        with native_stdout_silenced():
            prob.solve(_make(name, time_limit, mip, presolve))
    except pulp.PulpSolverError as exc:
        raise SolverError(f"{name} failed: {exc}") from None
    seconds = time.perf_counter() - started
    status = {
        pulp.LpStatusOptimal: "optimal",
        pulp.LpStatusInfeasible: "infeasible",
        pulp.LpStatusUnbounded: "unbounded",
        pulp.LpStatusNotSolved: "time_limit",
    }.get(prob.status, "error")
    if status == "optimal" and prob.sol_status not in (
        pulp.LpSolutionOptimal,
        pulp.LpSolutionIntegerFeasible,
    ):
        status = "time_limit" if prob.sol_status == pulp.LpSolutionIntegerFeasible else "error"
    x = np.array([v.varValue if v.varValue is not None else np.nan for v in xs], dtype=np.float64)
    sign = -1.0 if name == "highs" else 1.0  # PuLP's HiGHS reports -d(obj)/d(rhs) when maximizing
    prices = np.array(
        [
            (prob.constraints[f"r{k}"].pi or 0.0) * sign if not mip else np.nan
            for k in range(len(ub_rows))
        ],
        dtype=np.float64,
    )
    if status == "optimal":
        # Solvers stopped by a time limit have been seen to report "optimal" through PuLP
        # (HiGHS with a zero plan, CBC with an infeasible one): check the answer ourselves.
        status = _certify(c, ub_rows, b_ub, ub, x, prices, binary if mip else None, a_eq, b_eq)
        if status != "optimal" and time_limit is not None:
            status = "time_limit" if status == "not_optimal" else status
    objective = float(c @ np.nan_to_num(x)) if status in ("optimal", "feasible") else float("nan")
    bound = _mip_bound(prob, name) if mip else float("nan")
    if mip and status == "optimal" and not _proven(prob, name):
        status = "time_limit"  # stopped early (PuLP maps HiGHS' time limit to optimal)
    return LpResult(status, x, objective, prices, name, seconds, bound)


_HIGHS_STATUS = {"kOptimal": "optimal", "kInfeasible": "infeasible",
                 "kUnboundedOrInfeasible": "infeasible", "kUnbounded": "unbounded",
                 "kTimeLimit": "time_limit", "kIterationLimit": "time_limit",
                 "kInterrupt": "time_limit"}
_banner_silenced = False


def _highs_lp(
    c: NDArray[np.float64],
    a_ub: NDArray[np.float64] | SparseRows | sparse.spmatrix,
    b_ub: NDArray[np.float64],
    ub: NDArray[np.float64],
    time_limit: float | None,
    presolve: bool,
    started: float,
) -> LpResult:
    """An LP with ``<=`` rows and bounds handed to HiGHS as arrays (what PuLP would hand it
    one variable and one term at a time: ~8 ms of Python per model of a few hundred
    columns, the block LP's rounds, against well under 1 ms to solve it); the same answer,
    prices and checks as through PuLP."""
    import highspy

    from engine.optimize.small_highs import take_pool_size

    global _banner_silenced
    if _banner_silenced:
        h = highspy.Highs()
    else:  # highspy prints its banner when the first solver object of a process is made
        with native_stdout_silenced():
            h = highspy.Highs()
        _banner_silenced = True
    h.setOptionValue("output_flag", False)
    take_pool_size(h)  # no count of the machine's cores per run (engine.optimize.small_highs)
    if not presolve:
        h.setOptionValue("presolve", "off")
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if sparse.issparse(a_ub):
        csr = sparse.csr_matrix(a_ub)
    elif isinstance(a_ub, np.ndarray):
        csr = sparse.csr_matrix(np.asarray(a_ub, dtype=np.float64))
    else:
        rows = list(a_ub)
        csr = sparse.csr_matrix(
            (np.concatenate([v for _, v in rows]), np.concatenate([i for i, _ in rows]),
             np.concatenate(([0], np.cumsum([i.size for i, _ in rows])))),
            shape=(len(rows), c.size))
    n, m = c.size, len(b_ub)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.ascontiguousarray(c, dtype=np.float64)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ascontiguousarray(ub, dtype=np.float64)
    lp.row_lower_ = np.full(m, -highspy.kHighsInf)
    lp.row_upper_ = np.ascontiguousarray(b_ub, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = csr.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csr.indices.astype(np.int32)
    lp.a_matrix_.value_ = np.asarray(csr.data, dtype=np.float64)
    if h.passModel(lp) != highspy.HighsStatus.kError:
        h.run()
    status = _HIGHS_STATUS.get(h.getModelStatus().name, "error")
    solution = h.getSolution()
    if solution.value_valid:
        x = np.asarray(solution.col_value, dtype=np.float64)
    else:
        x = np.full(n, np.nan)
    # a maximization's row duals: d objective / d b_ub, >= 0 on a binding row
    prices = (np.asarray(solution.row_dual, dtype=np.float64) if solution.dual_valid
              else np.zeros(m))
    ub_rows = [(csr.indices[csr.indptr[k]:csr.indptr[k + 1]].astype(np.int64),
                np.asarray(csr.data[csr.indptr[k]:csr.indptr[k + 1]], dtype=np.float64))
               for k in range(m)]
    if status == "optimal":
        status = _certify(c, ub_rows, b_ub, ub, x, prices, None, None, None)
        if status != "optimal" and time_limit is not None:
            status = "time_limit" if status == "not_optimal" else status
    objective = float(c @ np.nan_to_num(x)) if status == "optimal" else float("nan")
    return LpResult(status, x, objective, prices, "highs", time.perf_counter() - started)


def _proven(prob: pulp.LpProblem, name: str) -> bool:
    """Whether HiGHS says it proved its MIP optimal (CBC: PuLP's status is all we have)."""
    model = getattr(prob, "solverModel", None)
    if name != "highs" or model is None:
        return True
    import highspy

    return bool(model.getModelStatus() == highspy.HighsModelStatus.kOptimal)


def _mip_bound(prob: pulp.LpProblem, name: str) -> float:
    """HiGHS' proven dual bound of a maximization (PuLP hands it the negated objective);
    nan for CBC, whose bound PuLP does not read back."""
    model = getattr(prob, "solverModel", None)
    if name != "highs" or model is None:
        return float("nan")
    bound = float(model.getInfo().mip_dual_bound)
    return -bound if np.isfinite(bound) else float("nan")


def _certify(
    c: NDArray[np.float64],
    rows: SparseRows,
    b_ub: NDArray[np.float64],
    ub: NDArray[np.float64],
    x: NDArray[np.float64],
    prices: NDArray[np.float64],
    integer: NDArray[np.bool_] | None,
    a_eq: NDArray[np.float64] | SparseRows | None,
    b_eq: NDArray[np.float64] | None,
) -> str:
    """"optimal" when x is feasible and (for an LP) weak duality with the solver's prices
    closes the gap; "feasible" for a feasible MIP answer; else "infeasible_answer" or
    "not_optimal"."""
    tol = 1e-7
    if not np.isfinite(x).all() or (x < -tol).any() or (x > ub + tol).any():
        return "infeasible_answer"
    for (idx, vals), rhs in zip(rows, b_ub, strict=True):
        if float(vals @ x[idx]) > rhs + tol * max(1.0, abs(rhs)):
            return "infeasible_answer"
    if a_eq is not None and b_eq is not None:
        for (idx, vals), rhs in zip(_sparse(a_eq), b_eq, strict=True):
            if abs(float(vals @ x[idx]) - rhs) > tol * max(1.0, abs(rhs)):
                return "infeasible_answer"
    if integer is not None:
        xi = x[integer]
        return "optimal" if np.allclose(xi, np.round(xi), atol=1e-6) else "infeasible_answer"
    if a_eq is not None:  # the caller certifies LPs with equality rows (their duals differ)
        return "optimal"
    y = np.maximum(np.nan_to_num(prices), 0.0)
    reduced = c.copy()
    for k, (idx, vals) in enumerate(rows):
        if y[k]:
            np.subtract.at(reduced, idx, y[k] * vals)
    bound = float(y @ b_ub) + float(ub @ np.maximum(reduced, 0.0))
    value = float(c @ x)
    return "optimal" if bound - value <= 1e-7 * max(1.0, abs(bound)) else "not_optimal"
