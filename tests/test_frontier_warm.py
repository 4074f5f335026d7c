"""The frontier's solves at budgets start from a neighbouring budget's row prices
(``solve_lagrange(start=...)``): each point is still the exact LP optimum at its budget (the
engine's own solve from no start agrees), with fewer sifting rounds than from no start."""

from __future__ import annotations

import numpy as np
import pytest

import engine.optimize.core_lp as core_lp
from engine.constraints import LE, Constraint
from engine.optimize import lp
from engine.optimize.lagrange import solve_lagrange
from engine.options import OptionSet
from engine.plan import Plan, ResourceLimit, StrategyChoice
from engine.planning import frontier_solves
from engine.planning.frontier import build_model, frontier_of
from engine.portfolio import Portfolio
from engine.synthetic import example

N = 12_000  # above twice the sifting's sample (5,000): the path the warm start changes


def _model() -> tuple[OptionSet, list[Constraint], Plan]:
    cust, pros, plan = example(N)
    plan = plan.with_overrides(
        cost=StrategyChoice(plan.cost.name, {"contacts_per_head": 1.0}),
        resource_limits=(ResourceLimit("contacts", max=0.3 * N),))
    options, rows = build_model(Portfolio(cust, pros), plan)
    return options, rows, plan


OPTIONS, ROWS, PLAN = _model()
BUDGET = float(PLAN.total_budget or 0.0)


def _at(budget: float) -> list[Constraint]:
    return [r for r in ROWS if r.name != "budget"] + [
        Constraint("budget", np.ones(OPTIONS.n_cells, dtype=bool), LE, budget)]


def _core_solves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    solve = core_lp.HighsCore.solve

    def counted(self: core_lp.HighsCore) -> core_lp.CoreSolution:
        out = solve(self)
        calls.append(out.iterations)
        return out

    monkeypatch.setattr(core_lp.HighsCore, "solve", counted)
    return calls


def test_a_start_gives_the_same_optimum_in_fewer_iterations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low, high = _at(0.5 * BUDGET), _at(0.6 * BUDGET)
    neighbour = solve_lagrange(OPTIONS, low)
    calls = _core_solves(monkeypatch)
    cold = solve_lagrange(OPTIONS, high)
    cold_iterations = sum(calls)
    calls.clear()
    warm = solve_lagrange(OPTIONS, high, start=neighbour.duals)
    warm_iterations = sum(calls)
    scale = max(1.0, abs(cold.objective))
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    assert warm.bound - warm.objective <= 1e-9 * scale  # certified, as from no start
    assert warm_iterations < cold_iterations
    with pytest.raises(ValueError, match=f"start: 1 prices for {len(high)} rows"):
        solve_lagrange(OPTIONS, high, start=np.zeros(1))


def test_each_point_of_the_warm_frontier_is_the_lp_optimum() -> None:
    front = frontier_solves.trace_by_solves(
        OPTIONS, ROWS, PLAN.total_budget, lambda *_: None, lambda: False, 0.0,
        lambda r: frontier_of(OPTIONS, r).min_budget, first=3, most=5)
    budgets = front.points["budget"].to_numpy()
    equity = front.points["equity"].to_numpy()
    assert budgets.size >= 4
    for b, e in zip(budgets[1:-1], equity[1:-1], strict=True):
        cold = lp.solve(OPTIONS, _at(float(b)), lp.LpSettings(repair=False))
        assert cold.lp_objective == pytest.approx(e, rel=1e-9)
