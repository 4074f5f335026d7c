"""The fast block LP against an independent solve of the full per-customer LP.

A small, fast subset of ``benchmarks/run.py``: a few thousand customers from the benchmark
generator (S-shaped responses for some, so the hull removes levels), a total budget, segment
caps and a segment minimum. The reference is highspy called directly on the textbook model
(one column per customer-level, one row per customer), sharing no code with engine.optimize.lp.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from benchmarks import generate, reference
from engine.allocation import violations
from engine.constraints import build_constraints
from engine.optimize import lp
from engine.options import from_table
from engine.plan import Plan, SegmentLimit


def _case(seed: int, n: int = 3000) -> tuple[pl.DataFrame, Plan]:
    spec = generate.Spec(n, seed=seed, segments=6, cap_share=0.25)
    _, table, plan = generate.portfolio(spec)
    budget = plan.total_budget
    assert budget is not None
    caps = (
        SegmentLimit("S00", cap=0.12 * budget),
        SegmentLimit("S02", cap=0.10 * budget),
        SegmentLimit("S03", cap=0.30 * budget),
    )
    # a minimum that binds: half as much again as S05 gets under the budget and caps alone
    options = from_table(table)
    free = lp.solve(options, build_constraints(replace(plan, segment_limits=caps), options))
    spent = float(free.spend(options)[options.segment == options.segments.index("S05")].sum())
    minimum = SegmentLimit("S05", minimum=1.5 * spent)
    return table, replace(plan, segment_limits=(*caps, minimum))


def _reference(table: pl.DataFrame, plan: Plan) -> float:
    caps = {s.segment: s.cap for s in plan.segment_limits if s.cap is not None}
    mins = {s.segment: s.minimum for s in plan.segment_limits if s.minimum is not None}
    solved = reference.highs_direct(
        reference.model_from_table(table, plan.total_budget, caps, mins)
    )
    assert solved.status == "Optimal"
    return solved.objective


@pytest.mark.parametrize("seed", [3, 17])
def test_block_lp_matches_independent_full_lp(seed: int) -> None:
    table, plan = _case(seed)
    options = from_table(table)
    assert options.hull.points.size < options.cost.size  # non-concave curves were reduced
    rows = build_constraints(plan, options)
    allocation = lp.solve(options, rows)
    expected = _reference(table, plan)

    assert allocation.lp_objective == pytest.approx(expected, rel=1e-9)
    assert allocation.bound is not None
    assert allocation.bound >= expected * (1 - 1e-12)  # a valid upper bound ...
    assert allocation.bound == pytest.approx(expected, rel=1e-9)  # ... and a tight one
    # the constraints that make this test meaningful really bind
    binding = {name for name, price in allocation.shadow_prices.items() if abs(price) > 1e-9}
    assert {"budget", "minimum:S05"} <= binding
    assert any(name.startswith("cap:") for name in binding)
    # the integral plan: feasible, below the bound, within the gap the summary reports
    assert not violations(options, rows, allocation)
    equity = float(allocation.equity(options).sum())
    assert equity <= allocation.bound * (1 + 1e-12)
    assert (allocation.bound - equity) / allocation.bound < 1e-4
    assert np.array_equal(allocation.lo, allocation.hi)  # one level per customer


def test_blocks_method_matches_full_method() -> None:
    table, plan = _case(5, n=2000)
    options = from_table(table)
    rows = build_constraints(plan, options)
    blocks = lp.solve(options, rows, lp.LpSettings(method="blocks", repair=False))
    full = lp.solve(options, rows, lp.LpSettings(method="full", repair=False))
    assert blocks.method == "blocks" and full.method == "full"
    assert blocks.lp_objective == pytest.approx(full.lp_objective, rel=1e-9)
    assert blocks.bound == pytest.approx(full.bound, rel=1e-9)
    # (shadow prices need not agree: with finitely many customers the optimal duals form an
    # interval between two customers' ratios; the bounds they give do agree, checked above)
    # the same spend in every segment (the per-customer optimum may differ only on ties)
    spend_blocks = np.bincount(options.segment, weights=blocks.spend(options))
    spend_full = np.bincount(options.segment, weights=full.spend(options))
    np.testing.assert_allclose(spend_blocks, spend_full, rtol=1e-7, atol=1e-6)


def test_block_refinement_closes_the_gap_from_coarse_blocks() -> None:
    """With only 2 initial bins the first block LP is far from the optimum: refinement
    must still reach the independent optimum and stop only once bound and plan meet."""
    table, plan = _case(11, n=2000)
    options = from_table(table)
    rows = build_constraints(plan, options)
    coarse = lp.solve(options, rows, lp.LpSettings(bins=2, repair=False))
    assert coarse.iterations > 1
    assert coarse.lp_objective == pytest.approx(_reference(table, plan), rel=1e-9)
    assert coarse.bound is not None and coarse.lp_objective is not None
    assert coarse.bound - coarse.lp_objective <= 1e-9 * abs(coarse.bound)
