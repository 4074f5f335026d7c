"""The scenarios' re-optimizations solved ahead, in a background thread (``solve_variants``),
give the very table ``robustness`` computes by solving them itself."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from polars.testing import assert_frame_equal

import engine.pipeline
import engine.planning.scenarios as scenarios
from engine.errors import InfeasiblePlanError
from engine.pipeline import allocate
from engine.planning.scenarios import (
    compare,
    robustness,
    scenario_variants,
    solve_variants,
    spend_table,
)
from engine.portfolio import Portfolio
from engine.synthetic import example

CUST, PROS, PLAN = example(1500)
PORTFOLIO = Portfolio(CUST, PROS)
RATES, FACTORS = [PLAN.discount_rate - 0.05, PLAN.discount_rate + 0.05], [0.5, 1.5]


@pytest.fixture
def idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core to spare, whatever the machine's load while the tests run."""
    monkeypatch.setattr(scenarios.os, "getloadavg", lambda: (0.0, 0.0, 0.0))


def test_solved_ahead_in_a_thread_gives_the_same_table(idle: None) -> None:
    comparison = compare(PORTFOLIO, PLAN, baselines=())
    optimum = comparison.optimum
    plans: dict[str, Any] = {"optimum": spend_table(comparison.evaluations[0])}
    alone = robustness(PORTFOLIO, PLAN, plans, RATES, FACTORS, planned=optimum)
    solved = solve_variants(PORTFOLIO, PLAN, RATES, FACTORS)
    labels = [label for label, _, _ in scenario_variants(PORTFOLIO, PLAN, RATES, FACTORS)]
    assert labels == ["as planned", *solved]
    assert len(solved) == 4
    ahead = robustness(PORTFOLIO, PLAN, plans, RATES, FACTORS, planned=optimum, solved=solved)
    assert_frame_equal(ahead, alone)
    assert ahead["assumption"].unique().len() == 5


def test_solved_plans_are_taken_not_solved_again(
    monkeypatch: pytest.MonkeyPatch, idle: None
) -> None:
    solved = solve_variants(PORTFOLIO, PLAN, [], FACTORS)
    for future in solved.values():
        future.result()
    calls: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        return allocate(*args, **kwargs)

    monkeypatch.setattr(engine.pipeline, "allocate", counted)
    robustness(PORTFOLIO, PLAN, {}, [], FACTORS, solved=solved)
    assert calls == ["MainThread"]  # the plan as planned only: no planned result was given
    calls.clear()
    robustness(PORTFOLIO, PLAN, {}, [], FACTORS)
    assert len(calls) == 3


def test_a_failed_solve_surfaces_from_robustness() -> None:
    failed: Future[Any] = Future()
    failed.set_exception(InfeasiblePlanError("budget: even the cheapest levels spend too much"))
    optimum = compare(PORTFOLIO, PLAN, baselines=()).optimum
    with pytest.raises(InfeasiblePlanError, match="cheapest levels"):
        robustness(PORTFOLIO, PLAN, {}, [], [0.5], planned=optimum,
                   solved={"response x0.5": failed})


def test_no_changed_assumption_starts_no_thread(idle: None) -> None:
    before = {t.name for t in threading.enumerate()}
    assert solve_variants(PORTFOLIO, PLAN) == {}
    assert not {t.name for t in threading.enumerate()} - before


def test_busy_cores_leave_the_solves_to_robustness(monkeypatch: pytest.MonkeyPatch) -> None:
    os = scenarios.os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: ((cores or 1) - 0.5, 0.0, 0.0))
    assert not scenarios.idle_core()
    assert solve_variants(PORTFOLIO, PLAN, [], FACTORS) == {}
    monkeypatch.setattr(os, "getloadavg", lambda: ((cores or 1) - 1.0, 0.0, 0.0))
    assert scenarios.idle_core()
    assert sorted(solve_variants(PORTFOLIO, PLAN, [], FACTORS)) == ["response x0.5",
                                                                   "response x1.5"]
