"""The scenarios' re-optimizations: ``robustness`` solves each changed assumption once, in
the calling thread, and takes the plan as planned from its caller when given (the report
passes its optimum: not solved again). Solving them ahead in a background thread was
measured and removed (docs/planning.md)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from polars.testing import assert_frame_equal

import engine.pipeline
from engine.pipeline import allocate
from engine.planning.scenarios import compare, robustness, scenario_variants, spend_table
from engine.portfolio import Portfolio
from engine.synthetic import example

CUST, PROS, PLAN = example(1500)
PORTFOLIO = Portfolio(CUST, PROS)
RATES, FACTORS = [PLAN.discount_rate - 0.05, PLAN.discount_rate + 0.05], [0.5, 1.5]


def test_each_assumption_solved_once_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    comparison = compare(PORTFOLIO, PLAN, baselines=())
    optimum = comparison.optimum
    plans: dict[str, Any] = {"optimum": spend_table(comparison.evaluations[0])}
    calls: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        return allocate(*args, **kwargs)

    before = {t.name for t in threading.enumerate()}
    monkeypatch.setattr(engine.pipeline, "allocate", counted)
    given = robustness(PORTFOLIO, PLAN, plans, RATES, FACTORS, planned=optimum)
    assert calls == ["MainThread"] * 4  # the plan as planned was given: not solved again
    assert not {t.name for t in threading.enumerate()} - before
    calls.clear()
    alone = robustness(PORTFOLIO, PLAN, plans, RATES, FACTORS)
    assert len(calls) == 5
    assert_frame_equal(given, alone)
    labels = [label for label, _, _ in scenario_variants(PORTFOLIO, PLAN, RATES, FACTORS)]
    assert given["assumption"].unique(maintain_order=True).to_list() == labels
    assert len(labels) == 5

