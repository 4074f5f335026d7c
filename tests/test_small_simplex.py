"""The direct path's dense dual simplex (engine.optimize.small_simplex) against HiGHS on
the same LPs: from its first basis, from an optimum's (``Tableau.at``) and warm-started
after the search's bound changes; random models with ties, minimums, rows no plan keeps,
units of one option and columns fixed at either bound. And the branch and bound with its
node LPs solved by the dense simplex against the same search with HiGHS' (the path of
cores too large for a dense tableau), on the same cores: the same status and plan."""

from __future__ import annotations

import highspy
import numpy as np
import pytest
from numpy.typing import NDArray

from engine.optimize import small
from engine.optimize.small_simplex import Tableau
from tests.test_small_search import _core

TOL = 1e-9

Model = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]


def _model(seed: int) -> Model:
    """Units of 1-5 options (values rising with their spend, integers when ``seed % 3 == 0``:
    ties), 1-6 rows over random subsets of the options in ``<=`` form, a third of them
    minimums (negated), limits from a share of the most the options could use."""
    rng = np.random.default_rng(seed)
    units = int(rng.integers(3, 25))
    counts = rng.integers(1, 6, size=units)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    spend = np.concatenate([np.sort(rng.uniform(0, 50, size=c)) for c in counts])
    value = spend * rng.uniform(0.5, 2.0, size=n) + rng.normal(0, 5, size=n)
    if seed % 3 == 0:
        value = np.round(value / 10)
        spend = np.round(spend)
    m = int(rng.integers(1, 7))
    cells = rng.random((m, n)) < 0.6
    coupling = np.where(cells, spend, 0.0)
    most = np.maximum.reduceat(coupling, offsets[:-1], axis=1).sum(axis=1)
    rhs = most * rng.uniform(0.1, 0.9, size=m)
    minimum = rng.random(m) < 0.33
    coupling[minimum] *= -1
    rhs[minimum] = -most[minimum] * rng.uniform(0.0, 0.5, size=int(minimum.sum()))
    return value, coupling, rhs, offsets


def _highs(model: Model, lower: NDArray[np.float64], upper: NDArray[np.float64]
           ) -> tuple[highspy.HighsModelStatus, float, highspy.Highs]:
    value, coupling, rhs, offsets = model
    h = small._highs(None)
    assert small._pass(h, value, coupling, rhs, offsets, None)
    h.changeColsBounds(value.size, np.arange(value.size, dtype=np.int32), lower, upper)
    assert h.run() == highspy.HighsStatus.kOk
    return h.getModelStatus(), float(h.getInfo().objective_function_value), h


def _check(model: Model, tableau: Tableau, lower: NDArray[np.float64],
           upper: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """The tableau's answer under these bounds against HiGHS': the same status; at an
    optimum, a plan within the bounds and rows, the same objective, and row prices whose
    Lagrangian is that objective (the LP's certificate). Returns the optimum's weights."""
    value, coupling, rhs, offsets = model
    status, objective, _ = _highs(model, lower, upper)
    solved = tableau.solve(lower, upper, 1000)
    assert solved is not None
    feasible, x = solved
    if status == highspy.HighsModelStatus.kInfeasible:
        assert not feasible
        return None
    assert status == highspy.HighsModelStatus.kOptimal
    assert feasible
    scale = TOL * max(1.0, abs(objective))
    assert abs(float(value @ x) - objective) <= scale
    assert (x >= lower - TOL).all() and (x <= upper + TOL).all()
    assert (coupling @ x <= rhs + TOL * np.maximum(1.0, np.abs(rhs))).all()
    assert np.allclose(np.add.reduceat(x, offsets[:-1]), 1.0, rtol=0.0, atol=TOL)
    y = tableau.duals()
    assert (y >= -TOL).all()
    prices = small._Prices(value, coupling, rhs, offsets[:-1], np.diff(offsets))
    lagrangian = prices.at(y, prices.allowed(lower, upper))
    assert abs(lagrangian - objective) <= 1e-7 * max(1.0, abs(objective))
    return x


@pytest.mark.parametrize("seed", range(60))
def test_the_dense_simplex_matches_highs_from_its_first_basis(seed: int) -> None:
    model = _model(seed)
    n = model[0].size
    _check(model, Tableau.start(*model), np.zeros(n), np.ones(n))


@pytest.mark.parametrize("seed", range(60))
def test_warm_started_after_fixings_it_matches_highs(seed: int) -> None:
    """The search's bound changes, one after another from the same tableau: a fractional
    column fixed at 0 or 1, then columns fixed at random (a unit forced to an option, an
    option ruled out), up to units with none left (infeasible)."""
    model = _model(seed)
    value, _, _, offsets = model
    n = value.size
    rng = np.random.default_rng(1000 + seed)
    tableau = Tableau.start(*model)
    lower, upper = np.zeros(n), np.ones(n)
    x = _check(model, tableau, lower, upper)
    for _ in range(6):
        if x is None:
            break
        lower, upper = lower.copy(), upper.copy()
        fractional = np.flatnonzero(np.abs(x - np.round(x)) > 1e-6)
        col = int(fractional[0]) if fractional.size else int(rng.integers(n))
        if rng.random() < 0.5:
            upper[col] = 0.0
        else:
            unit = int(np.searchsorted(offsets, col, side="right") - 1)
            if lower[offsets[unit]:offsets[unit + 1]].any():
                upper[col] = 0.0
            else:
                lower[col] = 1.0
        if rng.random() < 0.3:
            upper[rng.integers(n)] = 0.0
        upper = np.maximum(upper, lower)
        x = _check(model, tableau.copy() if rng.random() < 0.5 else tableau, lower, upper)


@pytest.mark.parametrize("seed", range(30))
def test_from_an_optimum_basis_it_starts_optimal(seed: int) -> None:
    """``Tableau.at`` from HiGHS' optimum: the same optimum with no pivot, or ``None`` (a
    degenerate vertex) and the first basis then reaches it."""
    model = _model(seed)
    n = model[0].size
    status, _, h = _highs(model, np.zeros(n), np.ones(n))
    if status != highspy.HighsModelStatus.kOptimal:
        return
    x = np.asarray(h.getSolution().col_value)
    tableau = Tableau.at(*model, x)
    if tableau is None:
        tableau = Tableau.start(*model)
    else:
        solved = tableau.copy().solve(np.zeros(n), np.ones(n), 0)
        assert solved is not None and solved[0]
    _check(model, tableau, np.zeros(n), np.ones(n))


def test_units_of_one_option_and_rows_no_plan_keeps() -> None:
    value = np.array([3.0, 2.0, 5.0, 1.0])
    offsets = np.array([0, 1, 3, 4])
    coupling = np.array([[1.0, 2.0, 4.0, 1.0]])
    n = value.size
    x = _check((value, coupling, np.array([5.0]), offsets), Tableau.start(
        value, coupling, np.array([5.0]), offsets), np.zeros(n), np.ones(n))
    assert x is not None and np.allclose(x, [1.0, 0.5, 0.5, 1.0])  # the row binds mid-way
    infeasible = (value, coupling, np.array([3.0]), offsets)  # 1 + 2 + 1 > 3: no plan
    assert _check(infeasible, Tableau.start(*infeasible), np.zeros(n), np.ones(n)) is None


Cores = list[tuple[str, Model, NDArray[np.bool_], bool]]


def _cores() -> Cores:
    """Whole small models as cores (every unit a customer), and random models with a unit
    in six a pool (continuous weights); ``ties``: values with equal ones (integers)."""
    out: Cores = []
    for seed in range(12):
        model = _core(seed, minimum=seed % 2 == 1)
        out.append((f"core-{seed}", model, np.ones(model[0].size, dtype=bool), False))
    for seed in range(24):
        model = _model(500 + seed)
        counts = np.diff(model[3])
        pool = np.random.default_rng(seed).random(counts.size) < 1 / 6
        out.append((f"model-{seed}", model, np.repeat(~pool, counts), (500 + seed) % 3 == 0))
    return out


@pytest.mark.parametrize(("name", "model", "integral", "ties"), _cores(),
                         ids=lambda v: str(v)[:10])
def test_the_search_gives_the_same_plan_with_either_node_solver(
    name: str, model: Model, integral: NDArray[np.bool_], ties: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both branches of ``_branch_and_bound`` (the dense tableau; HiGHS for a core past
    ``DENSE_ENTRIES``) on the same core: the same status, the same plan value and bound to
    1e-9, the same plan (where values have no ties)."""
    value = model[0]
    monkeypatch.setattr(small, "NODE_LIMIT", 100_000)
    dense = small._branch_and_bound(small._highs(None), *model, integral)
    monkeypatch.setattr(small, "DENSE_ENTRIES", 0)
    highs = small._branch_and_bound(small._highs(None), *model, integral)
    assert dense is not None, name
    if highs is None:  # a node's LP HiGHS left at its tolerance (1e-7) past a row: it gave way
        return
    assert dense[0] == highs[0], name
    if dense[0] != highspy.HighsModelStatus.kOptimal:
        return
    found = float(value @ dense[1])
    assert abs(found - float(value @ highs[1])) <= TOL * max(1.0, abs(found)), name
    assert 0.0 <= dense[2] <= TOL * max(1.0, abs(found))
    assert 0.0 <= highs[2] <= TOL * max(1.0, abs(found))
    if not ties:
        assert np.allclose(dense[1], highs[1], rtol=0.0, atol=1e-7), name
