"""Small plans solved directly in HiGHS (engine.optimize.small) against the general path
(block LP, repair, proof through PuLP) and against highspy's full per-customer MIP.

Both paths must give the same plan value, LP objective, bounds and shadow prices within
1e-9 (relative), and both the MIP's optimum.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from engine.allocation import Allocation, violations
from engine.constraints import Constraint, build_constraints
from engine.errors import InfeasiblePlanError
from engine.optimize import lp, small
from engine.options import OptionSet, from_table
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.conftest import random_options
from tests.reference import reference_lp, reference_mip
from tests.test_integer_optimum import random_plan, responses

TOL = 1e-9


def _close(a: float | None, b: float | None, tol: float = TOL) -> bool:
    assert a is not None and b is not None
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _both(options: OptionSet, rows: list[Constraint]) -> tuple[Allocation, Allocation]:
    direct = lp.solve(options, rows, lp.LpSettings())
    general = lp.solve(options, rows, lp.LpSettings(method="blocks"))
    assert direct.method == "direct" and general.method == "blocks"
    return direct, general


def _agree(options: OptionSet, rows: list[Constraint]) -> None:
    direct, general = _both(options, rows)
    reference = reference_mip(options, rows)
    assert reference is not None and reference[2] == "Optimal"
    optimum = reference[0]
    relaxed = reference_lp(options, rows)
    for allocation in (direct, general):
        assert allocation.status == "optimal"
        # the direct MIP keeps every row within 1e-9; the general path's pools within the
        # LP's tolerance (the engine's own check, 1e-7)
        tolerance = 1e-9 if allocation is direct else 1e-7
        assert not violations(options, rows, allocation, tolerance=tolerance)
        value = float(allocation.equity(options).sum())
        assert _close(value, optimum), (allocation.method, value, optimum)
        assert _close(allocation.integer_bound, optimum)
        assert _close(allocation.lp_objective, relaxed)
        assert _close(allocation.bound, relaxed)
    assert _close(float(direct.equity(options).sum()), float(general.equity(options).sum()))
    assert _close(direct.integer_bound, general.integer_bound)
    # the same spend per unit (a random portfolio has no ties)
    np.testing.assert_allclose(direct.spend(options), general.spend(options), rtol=1e-6,
                               atol=1e-6)
    assert direct.shadow_prices.keys() == general.shadow_prices.keys()
    for name, price in direct.shadow_prices.items():
        assert abs(price - general.shadow_prices[name]) <= 1e-6 * max(1.0, abs(price)), name
    assert any("solved directly by HiGHS" in note for note in direct.notes)


@pytest.mark.parametrize("seed", range(8))
def test_random_customers_agree_with_the_general_path_and_the_mip(seed: int) -> None:
    options = responses(60 + 40 * seed, 3 + seed % 5, segments=1 + seed % 4, seed=200 + seed)
    rows = build_constraints(random_plan(options, 200 + seed), options)
    _agree(options, rows)


@pytest.mark.parametrize("seed", range(4))
def test_pools_caps_minimums_and_kind_budgets_agree(seed: int) -> None:
    options = random_options(n=150, levels=5, segments=3, seed=30 + seed, pools=4)
    plan = Plan(
        total_budget=2500.0 + 500 * seed,
        acquisition_budget=900.0 if seed % 2 else None,
        retention_budget=1500.0 if seed == 2 else None,
        segment_limits=(
            SegmentLimit("s1", cap=300.0),
            SegmentLimit("s0", kind="retention", cap=400.0 + 50 * seed),
            SegmentLimit("s2", minimum=200.0),
        ),
    )
    rows = build_constraints(plan, options)
    assert options.fractional.any() and any(r.sense < 0 for r in rows)
    _agree(options, rows)


def test_limits_on_a_resource_besides_spend_match_the_mip() -> None:
    """Contacts limited, no pools: the direct model prices the contacts row."""
    rng = np.random.default_rng(5)
    n, levels = 120, 4
    spend = np.tile([0.0, 2.0, 5.0, 10.0], n)
    table = pl.DataFrame({
        "customer_id": np.repeat(np.arange(n), levels),
        "level": spend,
        "cost": spend,
        "value": np.repeat(rng.uniform(50, 150, n), levels) * (1 + 0.1 * np.sqrt(spend))
        - spend,
        "contacts": np.tile([0.0, 1.0, 1.0, 2.0], n),
        "segment": np.repeat(np.where(rng.random(n) < 0.5, "a", "b"), levels),
    })
    options = from_table(table)
    rows = build_constraints(Plan(total_budget=400.0), options)
    rows.append(Constraint("max:contacts", np.ones(options.n_cells, dtype=bool), 60.0, 1,
                           "contacts"))
    direct = lp.solve(options, rows, lp.LpSettings())
    assert direct.method == "direct" and direct.status == "optimal"
    reference = reference_mip(options, rows)
    assert reference is not None
    assert _close(float(direct.equity(options).sum()), reference[0])
    assert not violations(options, rows, direct, tolerance=1e-9)
    assert direct.shadow_prices["max:contacts"] > 0  # the contacts row binds


def test_an_infeasible_plan_is_explained_by_the_general_path() -> None:
    options = random_options(n=40, levels=4, segments=2, seed=1)
    plan = Plan(total_budget=10.0, segment_limits=(SegmentLimit("s0", minimum=500.0),))
    assert small.solve(options, build_constraints(plan, options)) is None
    with pytest.raises(InfeasiblePlanError, match="minimum:s0"):
        lp.solve(options, build_constraints(plan, options), lp.LpSettings())


def test_only_small_plans_take_the_direct_path() -> None:
    big = responses(small.MAX_OPTIONS // 4 + 10, 5, segments=3, seed=9)
    assert big.cost.size > small.MAX_OPTIONS
    rows = build_constraints(random_plan(big, 9), big)
    assert not small.eligible(big, rows)
    assert lp.solve(big, rows, lp.LpSettings(repair=True)).method == "blocks"
    tiny = responses(30, 4, segments=2, seed=9)
    assert small.eligible(tiny, build_constraints(random_plan(tiny, 9), tiny))
    cbc = lp.solve(tiny, build_constraints(random_plan(tiny, 9), tiny),
                   lp.LpSettings(solver="cbc"))
    assert cbc.method == "blocks"  # a plan that names another solver keeps it


def test_the_example_plan_through_the_pipeline() -> None:
    """100 example customers with pools, caps and a minimum: the summary of the direct path
    is the general path's, figure by figure."""
    customers, pools, plan = example(100, seed=1)
    portfolio = Portfolio(customers, pools)
    fast = allocate(portfolio, plan)
    blocks = dataclasses.replace(plan, allocation=StrategyChoice("lp", {"method": "blocks"}))
    slow = allocate(portfolio, blocks)
    assert fast.summary.method == "direct" and slow.summary.method == "blocks"
    assert fast.summary.status == slow.summary.status == "optimal"
    for name in ("equity_after", "spend", "uplift"):
        assert _close(float(fast.units[name].sum()), float(slow.units[name].sum())), name
    assert _close(fast.summary.integer_bound, slow.summary.integer_bound)
    assert _close(fast.summary.bound, slow.summary.bound)


def test_small_plans_solved_in_threads_at_once_give_the_same_answers() -> None:
    """The server solves small plans in its RPC threads, several at a time."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [example(100, seed=s) for s in range(4)]
    alone = [allocate(Portfolio(c, p), plan).summary.equity_after for c, p, plan in cases]

    def run(i: int) -> tuple[int, float, str, str]:
        c, p, plan = cases[i % 4]
        s = allocate(Portfolio(c, p), plan).summary
        return i % 4, s.equity_after, s.method, s.status

    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(run, range(48)))
    for case, equity, method, status in together:
        assert (method, status) == ("direct", "optimal")
        assert equity == alone[case]


def test_a_plan_whose_lp_is_integral_needs_no_mip() -> None:
    """Budgets that do not bind: every customer takes its best level, the LP's plan is
    integral and is the proven optimum (the MIP is skipped)."""
    options = responses(80, 4, segments=2, seed=41)
    best = float(np.maximum.reduceat(options.value, options.offsets[:-1]).sum())
    for plan in (Plan(), Plan(total_budget=1e9)):
        allocation = lp.solve(options, build_constraints(plan, options), lp.LpSettings())
        assert (allocation.method, allocation.status) == ("direct", "optimal")
        assert _close(float(allocation.equity(options).sum()), best)
        assert _close(allocation.integer_bound, best) and _close(allocation.bound, best)


def test_the_direct_path_runs_whatever_thread_pool_highs_made_first() -> None:
    """HiGHS' thread pool is global to a process: made by another solver object first
    (here one asking for two threads, in a fresh process), the direct path still runs."""
    import subprocess
    import sys

    script = """
import highspy, numpy as np
first = highspy.Highs()
first.setOptionValue("output_flag", False)
first.setOptionValue("threads", 2)
first.addVars(2, np.zeros(2), np.ones(2))
first.changeColsCost(2, np.arange(2, dtype=np.int32), np.ones(2))
assert first.run() == highspy.HighsStatus.kOk
from engine.constraints import build_constraints
from engine.optimize import small
from engine.plan import Plan
from tests.conftest import random_options
options = random_options(n=60, levels=4, segments=2, seed=3, pools=2)
found = small.solve(options, build_constraints(Plan(total_budget=400.0), options))
print("direct" if found is not None else "none")
"""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "direct"


def test_a_level_costing_next_to_nothing_is_planned_on_both_paths() -> None:
    """A level costing 4e-215 (found by the service's generated plans): HiGHS drops such a
    matrix entry with a warning; the direct path and the proof's core MIP take the model
    as HiGHS keeps it, and both plans are the MIP's optimum."""
    rng = np.random.default_rng(5)
    n = 60
    cost = np.tile([0.0, 4e-215, 6.0], n)
    value = (rng.uniform(10, 20, n)[:, None] + np.array([0.0, 1e-3, 0.0])[None, :]
             + rng.uniform(-8, 4, (n, 1)) * np.array([0.0, 0.0, 1.0])[None, :]).ravel()
    table = pl.DataFrame({
        "customer_id": np.repeat(np.arange(n), 3), "level": cost, "cost": cost,
        "value": value, "segment": np.repeat(np.where(np.arange(n) % 2 == 0, "core", "x"), 3),
    })
    options = from_table(table)
    rows = build_constraints(Plan(segment_limits=(SegmentLimit("core", cap=10.0),)), options)
    _agree(options, rows)
