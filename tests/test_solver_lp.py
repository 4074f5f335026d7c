"""LPs handed to HiGHS as arrays (``solvers.maximize`` without integer or equality rows): the
optimum, the row prices and the statuses HiGHS reports, checked against scipy's linprog and
against the same model through PuLP (CBC)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog

from engine.optimize import solvers

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _lp(seed: int, n: int = 60, m: int = 6) -> Arrays:
    rng = np.random.default_rng(seed)
    c = rng.normal(1.0, 1.0, n)
    a = rng.uniform(0.0, 2.0, (m, n)) * (rng.random((m, n)) < 0.5)
    ub = rng.uniform(0.5, 2.0, n)
    b = a @ ub * rng.uniform(0.1, 0.6, m)
    return c, a, b, ub


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("form", ["dense", "sparse", "rows"])
def test_optimum_and_prices_as_linprog_finds_them(seed: int, form: str) -> None:
    c, a, b, ub = _lp(seed)
    given = {"dense": a, "sparse": sparse.csr_matrix(a),
             "rows": [(np.flatnonzero(r), r[r != 0]) for r in a]}[form]
    got = solvers.maximize(c, given, b, ub, solver="highs", presolve=seed % 2 == 0)
    ref = linprog(-c, A_ub=a, b_ub=b, bounds=list(zip(np.zeros_like(ub), ub, strict=True)),
                  method="highs")
    assert got.status == "optimal" and got.solver == "highs"
    assert got.objective == pytest.approx(-ref.fun, rel=1e-9, abs=1e-9)
    assert got.objective == pytest.approx(float(c @ got.x), rel=1e-12)
    # d objective / d b_ub: linprog's marginals are those of the minimization of -c
    np.testing.assert_allclose(got.shadow_prices, -ref.ineqlin.marginals, rtol=1e-7, atol=1e-9)
    assert (got.shadow_prices >= -1e-12).all()


def test_the_same_optimum_as_through_pulp() -> None:
    c, a, b, ub = _lp(11, n=40, m=4)
    direct = solvers.maximize(c, a, b, ub, solver="highs")
    pulp_cbc = solvers.maximize(c, a, b, ub, solver="cbc")
    assert pulp_cbc.status == direct.status == "optimal"
    assert direct.objective == pytest.approx(pulp_cbc.objective, rel=1e-7)  # CBC: 1e-7
    np.testing.assert_allclose(direct.shadow_prices, pulp_cbc.shadow_prices, rtol=1e-6,
                               atol=1e-9)


def test_infeasible_and_stopped_models_say_so() -> None:
    c = np.array([1.0, 1.0])
    # x0 + x1 <= -1 with x >= 0: no solution
    assert solvers.maximize(c, np.array([[1.0, 1.0]]), np.array([-1.0]),
                            solver="highs").status == "infeasible"
    c, a, b, ub = _lp(3, n=3000, m=40)
    stopped = solvers.maximize(c, a, b, ub, solver="highs", time_limit=1e-9)
    assert stopped.status == "time_limit" and np.isnan(stopped.objective)
