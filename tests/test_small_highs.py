"""The direct path's solver objects (engine.optimize.small_highs.solver) ask for HiGHS'
thread pool at the size it was made with, whoever made it first in the process: every run
then skips HiGHS' count of the machine's cores, and none fails for asking another size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
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


@pytest.mark.parametrize("first", [-1, 0, 1, 2])
def test_the_solver_objects_take_the_pools_own_size(first: int) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(first)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    size, option = (int(v) for v in out.stdout.split()[-2:])
    assert size >= 1 and option == size
    if first > 0:
        assert size == first


GENERAL = """
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
    out = subprocess.run([sys.executable, "-c", GENERAL, str(first)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    size, option = (int(v) for v in out.stdout.split()[-2:])
    assert size >= 1 and option == size
    if first > 0:
        assert size == first
