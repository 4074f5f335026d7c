"""The warm-started highspy reference (``reference_lp_from``), the check the 1M benchmark
rests on where a cold solve of the full model does not finish: from the engine's point it
must give highspy's cold optimum, and from a wrong point it must still reach it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.constraints import build_constraints
from engine.optimize import lp
from engine.options import from_table
from tests.reference import reference_lp_from, reference_mip
from tests.test_resources import plan_for, table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_started_at_the_engines_plan_it_equals_the_cold_solve(seed: int) -> None:
    options = from_table(table(3000, seed, barred=seed == 2))
    rows = build_constraints(plan_for(3000, seed), options)
    relaxed = lp.solve(options, rows, lp.LpSettings(repair=False))
    cold = reference_mip(options, rows, relax=True)
    assert cold is not None and relaxed.lp_objective is not None
    value, status, _ = reference_lp_from(options, rows, relaxed)
    assert status == "Optimal"
    assert value == pytest.approx(cold[0], rel=1e-9, abs=1e-9)
    assert relaxed.lp_objective == pytest.approx(value, rel=1e-9)


def test_a_wrong_start_still_ends_at_the_optimum() -> None:
    """Prices of zero and every customer at its first level: highspy must pivot on to the
    true optimum, so the reference cannot simply echo the start it was given."""
    options = from_table(table(2000, 5))
    rows = build_constraints(plan_for(2000, 5), options)
    relaxed = lp.solve(options, rows, lp.LpSettings(repair=False))
    cold = reference_mip(options, rows, relax=True)
    assert cold is not None
    first = options.offsets[:-1].astype(np.int64)
    wrong = dataclasses.replace(relaxed, lo=first, hi=first, theta=np.zeros(first.size),
                                shadow_prices={})
    value, status, iterations = reference_lp_from(options, rows, wrong)
    assert status == "Optimal"
    assert iterations > 0
    assert value == pytest.approx(cold[0], rel=1e-9, abs=1e-9)
