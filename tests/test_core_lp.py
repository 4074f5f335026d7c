"""The core LP held in HiGHS (engine.optimize.core_lp) on the starts that used to stop it.

Its first basis is primal feasible with the elastic columns' large penalties basic; HiGHS'
dual simplex refused that start ("excessive dual values") and the any-resource LP failed
with "highs stopped on the core LP: Not Set". The example portfolio with a contacts limit
reached it in the report's acquisition/retention re-solves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.optimize.core_lp import HighsCore


def _core_lp_reference(value: np.ndarray, use: np.ndarray, rhs: float) -> float:
    """max value.x s.t. use.x <= rhs, each unit's weights sum to 1, by highspy from no
    basis (units of three options each)."""
    import highspy

    n = value.size // 3
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(value.size, np.zeros(value.size), np.ones(value.size))
    h.changeColsCost(value.size, np.arange(value.size, dtype=np.int32), -value)
    h.addRow(-highspy.kHighsInf, rhs, value.size, np.arange(value.size, dtype=np.int32), use)
    for i in range(n):
        h.addRow(1.0, 1.0, 3, np.arange(3 * i, 3 * i + 3, dtype=np.int32), np.ones(3))
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return -float(h.getInfo().objective_function_value)


@pytest.mark.parametrize("penalty", [1e7, 1e9, 1e11])
def test_first_start_overrunning_a_limit_with_a_large_penalty(penalty: float) -> None:
    rng = np.random.default_rng(3)
    n = 400
    value = np.column_stack([np.zeros(n), rng.uniform(1, 5, n), rng.uniform(4, 9, n)])
    value = (value * rng.lognormal(8.0, 1.0, n)[:, None]).ravel()
    use = np.tile([0.0, 1.0, 2.0], n)
    rhs = 0.3 * n
    core = HighsCore(np.array([rhs]), np.array([penalty]))
    starts = np.r_[0, np.cumsum(use > 0)].astype(np.int64)
    index = np.zeros(int((use > 0).sum()), dtype=np.int64)
    unit = np.repeat(np.arange(n), 3)
    basic = np.arange(n) * 3 + 2  # every unit at its best (and largest) option: overrun
    core.add_units(value, unit, starts, index, use[use > 0], basic)
    solution = core.solve()
    assert solution.status == "optimal"
    # the penalty beats every option's gain per unit of contacts: no overrun is left
    assert solution.slack[0] <= 1e-9 * rhs
    objective = float(value @ solution.x)
    assert objective == pytest.approx(_core_lp_reference(value, use, rhs), rel=1e-9)


def test_example_report_with_a_contacts_limit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "report", "--example", "--example-size", "300",
         "--param", "cost.contacts_per_head=1", "--limit", "contacts<=60", "--format", "json",
         "--quiet"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "core LP" not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report
