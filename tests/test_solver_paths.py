"""CBC plans as HiGHS does, and a plan no integral choice can meet is refused by name."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from engine.constraints import build_constraints
from engine.errors import InfeasiblePlanError
from engine.optimize import lp
from engine.options import from_table
from engine.plan import Plan, SegmentLimit
from tests.test_cli import run


@pytest.mark.parametrize("budget", ["29500", "30000"])
def test_cbc_plans_the_example_as_highs_does(budget: str) -> None:
    summaries = {}
    for solver in ("cbc", "highs"):
        proc = run("allocate", "--example", "--solver", solver, "--budget", budget, "--json")
        assert proc.returncode == 0, proc.stderr
        summaries[solver] = json.loads(proc.stdout)
    cbc, highs = summaries["cbc"], summaries["highs"]
    assert cbc["solver"] == "cbc" and highs["solver"] == "highs"
    assert cbc["status"] in ("optimal", "feasible") and highs["status"] == "optimal"
    assert cbc["bound"] == pytest.approx(highs["bound"], rel=1e-8)
    # each plan is within its own reported gap of the other's
    for a, b in ((cbc, highs), (highs, cbc)):
        assert b["equity_after"] <= a["equity_after"] * (1 + a["gap"]) + 1e-6


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_limits_no_integral_plan_meets_are_refused_with_a_message(solver: str) -> None:
    """Spend comes in steps of 2: a minimum of 1 with a cap of 1.5 on one segment is met by
    the LP (half a step) but by no plan giving every customer one level."""
    n = 40
    cost = np.tile([0.0, 2.0, 4.0], n)
    table = pl.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n), 3),
            "level": cost,
            "cost": cost,
            "value": np.tile([10.0, 11.0, 11.5], n) + np.repeat(np.arange(n) * 0.01, 3),
            "segment": np.repeat(np.where(np.arange(n) % 2 == 0, "a", "b"), 3),
        }
    )
    options = from_table(table)
    plan = Plan(total_budget=30.0, segment_limits=(SegmentLimit("a", cap=1.5, minimum=1.0),))
    rows = build_constraints(plan, options)
    with pytest.raises(InfeasiblePlanError, match="no plan giving every customer exactly one"):
        lp.solve(options, rows, lp.LpSettings(solver=solver))
    # without the minimum it plans, and the cap holds
    rows = build_constraints(
        Plan(total_budget=30.0, segment_limits=(SegmentLimit("a", cap=1.5),)), options
    )
    allocation = lp.solve(options, rows, lp.LpSettings(solver=solver))
    assert allocation.status == "optimal"


def test_running_out_of_memory_is_a_resource_error(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A MemoryError inside the allocator is exit 4 (a limit), not exit 5 (plugin error)."""
    from engine.cli import main

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(lp, "solve", exhausted)
    assert main(["allocate", "--example", "--example-size", "200"]) == 4
    assert "ran out of memory" in capsys.readouterr().err


TEN_THOUSAND_CAPS = """
import resource, numpy as np, polars as pl
from engine.allocation import violations
from engine.constraints import build_constraints
from engine.optimize import lp
from engine.options import from_table
from engine.plan import Plan, SegmentLimit
n, k = 20_000, 10_000
rng = np.random.default_rng(0)
spend = np.array([0.0, 5.0, 10.0])
value = 50 + rng.lognormal(2.0, 0.5, n)[:, None] * -np.expm1(-0.08 * spend) - 0.3 * spend
table = pl.DataFrame({
    "customer_id": np.repeat(np.arange(n), 3), "level": np.tile(spend, n),
    "cost": np.tile(spend, n), "value": value.ravel(),
    "segment": np.repeat(np.char.add("s", (np.arange(n) % k).astype(str)), 3),
})
options = from_table(table)
caps = tuple(SegmentLimit(f"s{i}", cap=7.5) for i in range(k))
rows = build_constraints(Plan(total_budget=3.0 * n, segment_limits=caps), options)
allocation = lp.solve(options, rows, lp.LpSettings(mip_time_limit=30.0))
assert len(rows) == k + 1 and not violations(options, rows, allocation), allocation.notes
print(allocation.status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_ten_thousand_capped_segments_fit_in_two_gib() -> None:
    """The LP and MIP rows are sparse: no rows x blocks (or rows x cells) dense matrix."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", TEN_THOUSAND_CAPS], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    status, rss_kib = proc.stdout.split()
    assert status in ("optimal", "feasible")
    assert int(rss_kib) < 2 * 2**20  # KiB
