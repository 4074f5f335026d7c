"""The exact allocation LP for limits on any resource: Lagrangian dual, then a core LP.

With a row on contacts or calls, a cell's units no longer compete through one ratio, so the
block method does not apply. Instead:

1. Row prices ``y`` (``<=`` form, >= 0) price every option at once in numpy: a unit takes
   its best option for ``v_j - y . a_j`` and the dual function
   ``g(y) = y . b + sum_i max_j (v_j - y . a_j)`` is an upper bound on the LP (weak
   duality, over all customers). A cutting-plane master LP in PuLP (one column per row,
   one cut per round, a box that shrinks around the best point) moves ``y`` towards the
   minimum of ``g``.
2. Primal recovery: the units whose best options lie within ``eps`` of each other at ``y``
   (the only ones an optimum can split) form a core LP (PuLP, one weight per core option),
   every other unit at its best option. Its optimum is a plan meeting every row; its duals
   ``y'`` give the bound ``g(y')``. A vertex splits at most one unit per binding row.
3. When plan and bound meet (relative 1e-12), the plan is the LP optimum; otherwise
   ``eps`` grows and ``y`` moves to ``y'``.

No PuLP column per customer-level is ever built for the whole portfolio.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pulp
from numpy.typing import NDArray

from engine.constraints import Constraint, normalized_rhs, option_matrix, resource_prices
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import solvers
from engine.options import OptionSet
from engine.stdio import native_stdout_silenced


@dataclass
class LagrangeResult:
    weights: NDArray[np.float64]  # per option, its share in the LP plan
    duals: NDArray[np.float64]  # row prices, <= form
    objective: float
    bound: float
    rounds: int
    solver: str


def _best(options: OptionSet, reduced: NDArray[np.float64]) -> tuple[NDArray[np.int64],
                                                                      NDArray[np.float64]]:
    """Per unit: its first option of greatest reduced value, and that value."""
    starts = options.offsets[:-1]
    top = np.maximum.reduceat(reduced, starts)
    hit = np.flatnonzero(reduced == top[options.unit_of_option])
    first = np.ones(hit.size, dtype=bool)
    first[1:] = options.unit_of_option[hit[1:]] != options.unit_of_option[hit[:-1]]
    return hit[first], top


def solve_lagrange(
    options: OptionSet,
    rows: list[Constraint],
    solver: str = "auto",
    tolerance: float = 1e-12,
    max_rounds: int = 60,
    should_stop: Callable[[], bool] = lambda: False,
) -> LagrangeResult:
    """The LP over option weights (one set per unit summing to 1) under ``rows``."""
    b = normalized_rhs(rows)
    a_all = option_matrix(rows, options)
    value = options.value
    k = len(rows)

    def dual(y: NDArray[np.float64]) -> tuple[float, NDArray[np.float64], NDArray[np.int64]]:
        reduced = value - resource_prices(rows, options, y)
        pick, top = _best(options, reduced)
        use = np.asarray(a_all[:, pick].sum(axis=1)).ravel()
        return float(y @ b + top.sum()), b - use, pick

    # 1. cutting planes on g, in a box around the best point that shrinks when a step fails
    scale = max(1.0, float(np.abs(value).max()))
    y = np.zeros(k)
    g, sub, _ = dual(y)
    cuts = [(g, sub, y.copy())]
    best_y, best_g = y.copy(), g
    radius = scale
    for _ in range(max_rounds):
        if should_stop():
            raise CancelledError("allocation cancelled")
        y_next, model_value = _master(cuts, best_y, radius, solver)
        g, sub, _ = dual(y_next)
        cuts.append((g, sub, y_next.copy()))
        if g < best_g:
            best_y, best_g = y_next, g
        else:
            radius /= 2
        if best_g - model_value <= 1e-9 * max(1.0, abs(best_g)):
            break
    # 2. primal recovery on the core of near-ties, widened until plan and bound meet
    y = best_y
    eps = 1e-9 * scale
    started = time.perf_counter()
    rounds = 0
    while True:
        rounds += 1
        if should_stop():
            raise CancelledError("allocation cancelled")
        reduced = value - resource_prices(rows, options, y)
        pick, top = _best(options, reduced)
        near = reduced >= top[options.unit_of_option] - eps
        n_near = np.bincount(options.unit_of_option[near], minlength=options.n_units)
        free = n_near >= 2
        opt = np.flatnonzero(near & free[options.unit_of_option])
        fixed_pick = pick[~free]
        used = np.asarray(a_all[:, fixed_pick].sum(axis=1)).ravel()
        residual = b - used
        weights = np.zeros(value.size)
        weights[fixed_pick] = 1.0
        if opt.size:
            sub_a = a_all[:, opt].tocsr()
            units = options.unit_of_option[opt]
            bounds = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
            ends = np.append(bounds[1:], opt.size)
            eq = [(np.arange(s, e, dtype=np.int64), np.ones(e - s))
                  for s, e in zip(bounds.tolist(), ends.tolist(), strict=True)]
            result = solvers.maximize(value[opt], sub_a, residual, a_eq=eq,
                                      b_eq=np.ones(len(eq)), solver=solver)
            if result.status == "infeasible":
                if eps >= 1e3 * scale:
                    raise InfeasiblePlanError(
                        "the limits cannot all be met", [r.name for r in rows]
                    )
                eps *= 16
                continue
            if result.status != "optimal":
                raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
            weights[opt] = np.clip(result.x, 0.0, 1.0)
            y_new = np.maximum(np.nan_to_num(result.shadow_prices), 0.0)
            solver_name = result.solver
        else:
            if (residual < -1e-9 * np.maximum(1.0, np.abs(b))).any():
                eps *= 16
                continue
            y_new = y
            solver_name = solvers.resolve(solver)
        objective = float(value @ weights)
        bound, _, _ = dual(y_new)
        bound = min(bound, best_g) if np.isfinite(best_g) else bound
        if bound - objective <= tolerance * max(1.0, abs(bound)) or rounds >= 12:
            return LagrangeResult(weights, y_new, objective, max(bound, objective), rounds,
                                  solver_name)
        y = y_new
        eps *= 16
        _ = started


def _master(
    cuts: list[tuple[float, NDArray[np.float64], NDArray[np.float64]]],
    center: NDArray[np.float64],
    radius: float,
    solver: str,
) -> tuple[NDArray[np.float64], float]:
    """min t s.t. t >= g_s + sub_s . (y - y_s) for every cut, 0 <= y, |y - center| <= radius:
    the next point and the model's value there (a lower bound on g in the box)."""
    k = center.size
    prob = pulp.LpProblem("master", pulp.LpMinimize)
    t = pulp.LpVariable("t")
    ys = [pulp.LpVariable(f"y{i}", lowBound=max(0.0, float(center[i]) - radius),
                          upBound=float(center[i]) + radius) for i in range(k)]
    prob.setObjective(pulp.LpAffineExpression([(t, 1.0)]))
    for n, (g, sub, at) in enumerate(cuts):
        expr = pulp.LpAffineExpression([(t, 1.0)] + [(ys[i], -float(sub[i])) for i in range(k)])
        prob.addConstraint(pulp.LpConstraint(expr, pulp.LpConstraintGE, f"c{n}",
                                             float(g - sub @ at)))
    name = solvers.resolve(solver)
    with native_stdout_silenced():
        prob.solve(pulp.HiGHS(msg=False) if name == "highs" else pulp.PULP_CBC_CMD(msg=False))
    y = np.array([v.varValue or 0.0 for v in ys])
    return np.maximum(y, 0.0), float(t.varValue if t.varValue is not None else -np.inf)
