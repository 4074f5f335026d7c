"""PuLP as the engine's one door to LP/MIP solvers (HiGHS through highspy, CBC as fallback).

Models reach PuLP as dense coefficient arrays and are built from (variable, coefficient)
pairs, the fastest way PuLP offers; shadow prices come back in one convention whatever the
solver: the change in the objective per unit increase of the right-hand side.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import pulp
from numpy.typing import NDArray

from engine.errors import InvalidInputError, SolverError
from engine.stdio import native_stdout_silenced

SOLVERS = ("highs", "cbc")


@dataclass(frozen=True)
class LpResult:
    status: str  # "optimal", "infeasible", "unbounded", "time_limit", "error"
    x: NDArray[np.float64]
    objective: float
    shadow_prices: NDArray[np.float64]  # d objective / d b_ub, >= 0 for a maximization
    solver: str
    seconds: float


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


def _make(name: str, time_limit: float | None, mip: bool) -> pulp.LpSolver:
    if name == "highs":
        # HiGHS' MIP feasibility tolerance is absolute (1e-6): tightened so that a small
        # minimum is met, not left short by the tolerance (the LP's 1e-7 is tight enough).
        tolerance = {"mip_feasibility_tolerance": 1e-9} if mip else {}
        return pulp.HiGHS(msg=False, timeLimit=time_limit, mip=mip, **tolerance)
    return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, mip=mip)


SparseRows = list[tuple[NDArray[np.int64], NDArray[np.float64]]]


def _sparse(a: NDArray[np.float64] | SparseRows) -> SparseRows:
    if isinstance(a, np.ndarray):
        return [(np.flatnonzero(row), row[row != 0]) for row in a]
    return a


def maximize(
    c: NDArray[np.float64],
    a_ub: NDArray[np.float64] | SparseRows,
    b_ub: NDArray[np.float64],
    upper: NDArray[np.float64] | float = 1.0,
    *,
    a_eq: NDArray[np.float64] | SparseRows | None = None,
    b_eq: NDArray[np.float64] | None = None,
    integer: bool = False,
    solver: str = "auto",
    time_limit: float | None = None,
) -> LpResult:
    """max c.x s.t. a_ub x <= b_ub, a_eq x = b_eq, 0 <= x <= upper (binary if ``integer``).

    Constraint matrices are dense arrays or, for wide models, per-row (indices, values).
    """
    name = resolve(solver)
    started = time.perf_counter()
    n = c.size
    ub = np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,))
    prob = pulp.LpProblem("equity", pulp.LpMaximize)
    cat = pulp.LpBinary if integer else pulp.LpContinuous
    xs = [
        pulp.LpVariable(f"x{i}", lowBound=0, upBound=None if integer else float(ub[i]), cat=cat)
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
    try:
        # HiGHS prints a banner on stdout whenever PuLP makes a solver object (highspy 1.16).
        with native_stdout_silenced():
            prob.solve(_make(name, time_limit, integer))
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
            (prob.constraints[f"r{k}"].pi or 0.0) * sign if not integer else np.nan
            for k in range(len(ub_rows))
        ],
        dtype=np.float64,
    )
    if status == "optimal":
        # Solvers stopped by a time limit have been seen to report "optimal" through PuLP
        # (HiGHS with a zero plan, CBC with an infeasible one): check the answer ourselves.
        status = _certify(c, ub_rows, b_ub, ub, x, prices, integer, a_eq, b_eq)
        if status != "optimal" and time_limit is not None:
            status = "time_limit" if status == "not_optimal" else status
    objective = float(c @ np.nan_to_num(x)) if status in ("optimal", "feasible") else float("nan")
    return LpResult(status, x, objective, prices, name, seconds)


def _certify(
    c: NDArray[np.float64],
    rows: SparseRows,
    b_ub: NDArray[np.float64],
    ub: NDArray[np.float64],
    x: NDArray[np.float64],
    prices: NDArray[np.float64],
    integer: bool,
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
    if integer:
        return "optimal" if np.allclose(x, np.round(x), atol=1e-6) else "infeasible_answer"
    y = np.maximum(np.nan_to_num(prices), 0.0)
    reduced = c.copy()
    for k, (idx, vals) in enumerate(rows):
        if y[k]:
            np.subtract.at(reduced, idx, y[k] * vals)
    bound = float(y @ b_ub) + float(ub @ np.maximum(reduced, 0.0))
    value = float(c @ x)
    return "optimal" if bound - value <= 1e-7 * max(1.0, abs(bound)) else "not_optimal"
