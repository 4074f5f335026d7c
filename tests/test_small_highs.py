"""The direct path's solver objects (engine.optimize.small_highs.solver) ask for HiGHS'
thread pool at the size it was made with, whoever made it first in the process: every run
then skips HiGHS' count of the machine's cores, and none fails for asking another size;
the general path's objects too. A thread's direct solves share one object (borrow, give
back), with the results of new ones and each solve's time limit from its borrow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import highspy
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

POOL_FIRST = """
import sys
import highspy, numpy as np
first = int(sys.argv[1])
if first >= 0:  # another solver object makes the pool first (0: at HiGHS' default size)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    if first:
        h.setOptionValue("threads", first)
    h.addVars(2, np.zeros(2), np.ones(2))
    h.changeColsCost(2, np.arange(2, dtype=np.int32), np.ones(2))
    assert h.run() == highspy.HighsStatus.kOk
"""

SCRIPT = POOL_FIRST + """
from engine.constraints import build_constraints
from engine.optimize import small, small_highs
from engine.plan import Plan
from tests.conftest import random_options
options = random_options(n=60, levels=4, segments=2, seed=3, pools=2)
found = small.solve(options, build_constraints(Plan(total_budget=400.0), options))
assert found is not None and found.status == "optimal"
h = small_highs.solver(None)
print(small_highs._threads, h.getOptionValue("threads")[1])
"""


def _pool_size_and_option(script: str, first: int) -> None:
    """Runs ``script`` in a fresh process; the pool's size it found and the size its solver
    object asks for are equal (and the size the first object made, when it set one)."""
    out = subprocess.run([sys.executable, "-c", script, str(first)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    size, option = (int(v) for v in out.stdout.split()[-2:])
    assert size >= 1 and option == size
    if first > 0:
        assert size == first


@pytest.mark.parametrize("first", [-1, 0, 1, 2])
def test_the_solver_objects_take_the_pools_own_size(first: int) -> None:
    _pool_size_and_option(SCRIPT, first)


GENERAL = POOL_FIRST + """
from engine.optimize import small_highs, solvers
from engine.optimize.core_lp import HighsCore
# max x0 + 2 x1 s.t. x0 + x1 <= 1.5, 0 <= x <= 1: 2.5 at (0.5, 1), the row's price 1
found = solvers.maximize(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]), np.array([1.5]),
                         presolve=False)
assert found.status == "optimal" and abs(found.objective - 2.5) < 1e-9, found
core = HighsCore(np.array([1.0]), np.array([10.0]))
print(small_highs._threads, core._h.getOptionValue("threads")[1])
"""


@pytest.mark.parametrize("first", [-1, 0, 2])
def test_the_general_paths_solver_objects_take_the_pools_own_size(first: int) -> None:
    # the block LP's models (solvers.maximize passing arrays) and the core LP's object
    _pool_size_and_option(GENERAL, first)


def _portfolios() -> list[tuple[object, list[object]]]:
    from engine.constraints import build_constraints
    from engine.plan import Plan
    from tests.conftest import random_options

    cases = []
    for seed in range(6):
        options = random_options(n=40 + 10 * seed, levels=4, segments=2, seed=seed,
                                 pools=seed % 3)
        plan = Plan(total_budget=float(options.cost.sum()) / (4 + seed))
        cases.append((options, build_constraints(plan, options)))
    return cases


def _key(found: object, options: object) -> tuple[object, ...]:
    assert found is not None
    return (found.status, float(found.equity(options).sum()), found.bound,  # type: ignore[attr-defined]
            found.integer_bound, found.lp_objective, sorted(found.shadow_prices.items()),  # type: ignore[attr-defined]
            found.lo.tolist(), found.hi.tolist(), found.theta.tolist())  # type: ignore[attr-defined]


def test_a_thread_keeps_its_solver_object_and_solves_as_with_fresh_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path's solves in one thread share one solver object, each with the same
    plan, bounds and prices as from a new object, whatever the thread solved before."""
    from engine.optimize import small, small_highs

    cases = _portfolios()
    kept = []
    reused = []
    for _ in range(2):
        for options, rows in cases:
            reused.append(_key(small.solve(options, rows, 30.0), options))
            kept.append(small_highs._idle.h)
    assert all(h is kept[0] for h in kept)
    h = small_highs.borrow(None)
    assert h is kept[0] and small_highs.borrow(None) is not h  # one user at a time
    small_highs.give_back(h)
    monkeypatch.setattr(small, "_highs", small_highs.solver)  # a new object every solve
    fresh = [_key(small.solve(options, rows, 30.0), options) for options, rows in cases] * 2
    assert reused == fresh


def test_the_time_limit_counts_from_the_borrow() -> None:
    """HiGHS' run clock counts every run of an object since it was made; a kept object's
    time limit starts at its borrow (else a solve after ~limit seconds of earlier runs on it
    would stop at once)."""
    from engine.optimize import small, small_highs

    options, rows = _portfolios()[1]
    h = small_highs.borrow(None)
    h.setOptionValue("output_flag", False)
    h.addVars(2, np.zeros(2), np.ones(2))
    h.changeColsCost(2, np.arange(2, dtype=np.int32), np.ones(2))
    while h.getRunTime() < 0.3:
        h.changeColsBounds(2, np.arange(2, dtype=np.int32), np.zeros(2), np.ones(2))
        assert h.run() == highspy.HighsStatus.kOk
    small_highs.give_back(h)
    found = small.solve(options, rows, 0.25)
    assert small_highs._idle.h is h  # the same object solved it
    assert found is not None and found.status == "optimal"
    # and a limit already spent still stops a run
    h = small_highs.borrow(1e-9)
    small_highs.give_back(h)
    assert small.solve(options, rows, 1e-9) is None


def test_an_object_whose_run_was_replaced_is_not_kept() -> None:
    from engine.optimize import small_highs

    h = small_highs.borrow(None)
    small_highs.give_back(h)
    h = small_highs.borrow(None)
    h.run = lambda: highspy.HighsStatus.kOk  # type: ignore[method-assign]
    small_highs.give_back(h)
    assert getattr(small_highs._idle, "h", None) is None
