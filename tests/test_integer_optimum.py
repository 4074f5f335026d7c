"""The integral plan against the full per-customer MIP solved by highspy at gap 1e-9.

Every plan the engine labels "optimal" must equal the MIP optimum within 1e-9; every other
plan's proven gap must be at least its true shortfall. Portfolios are random: concave and
S-shaped responses, 3 to 8 levels, budgets, caps, minimums, kind budgets and pools.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.allocation import violations
from engine.constraints import build_constraints
from engine.errors import InfeasiblePlanError
from engine.optimize import lp
from engine.options import OptionSet, from_table
from engine.plan import Plan, SegmentLimit
from tests.conftest import random_options
from tests.reference import reference_mip


def responses(
    n: int, levels: int, segments: int, seed: int, s_shaped: float = 1 / 3
) -> OptionSet:
    """Customers whose value rises with spend with diminishing returns or, for a share
    ``s_shaped`` of them, along an S curve (a non-concave value curve), net of the spend."""
    rng = np.random.default_rng(seed)
    grid = np.sort(rng.choice(np.arange(1, 41), size=(n, levels - 1)), axis=1).astype(float)
    spend = np.concatenate([np.zeros((n, 1)), grid], axis=1)
    worth = rng.lognormal(4.0, 0.6, n)[:, None]
    rate = rng.lognormal(np.log(0.06), 0.5, n)[:, None]
    half = rng.lognormal(np.log(15.0), 0.4, n)[:, None]
    lift = np.where(
        rng.random(n)[:, None] < s_shaped,
        spend**3 / (spend**3 + half**3),
        -np.expm1(-rate * spend),
    )
    value = worth * (1.0 + 0.5 * lift) - spend
    table = pl.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n), levels),
            "level": spend.ravel(),
            "cost": spend.ravel(),
            "value": value.ravel(),
            "segment": np.repeat(np.char.add("s", rng.integers(0, segments, n).astype(str)),
                                 levels),
            "kind": np.repeat(np.where(rng.random(n) < 0.3, "acquisition", "retention"), levels),
        }
    ).unique(subset=["customer_id", "level"], keep="first", maintain_order=True)
    return from_table(table)


def random_plan(options: OptionSet, seed: int) -> Plan:
    """A budget for part of what the portfolio could spend, caps on a few segments, at
    times minimums and a kind budget."""
    rng = np.random.default_rng(seed + 1000)
    most = float(np.maximum.reduceat(options.cost, options.offsets[:-1]).sum())
    budget = most * rng.uniform(0.05, 0.4)
    segments = options.segments
    limits = []
    for name in rng.choice(segments, size=min(len(segments), int(rng.integers(0, 4))),
                           replace=False).tolist():
        limits.append(SegmentLimit(name, cap=budget * rng.uniform(0.02, 0.15)))
    if rng.random() < 0.5:
        free = [s for s in segments if s not in {lim.segment for lim in limits}]
        if free:
            limits.append(SegmentLimit(str(rng.choice(free)), minimum=budget * 0.05))
    acquisition = budget * 0.3 if rng.random() < 0.4 else None
    return Plan(total_budget=budget, acquisition_budget=acquisition, segment_limits=tuple(limits))


def check(options: OptionSet, plan: Plan, settings: lp.LpSettings | None = None) -> str:
    rows = build_constraints(plan, options)
    reference = reference_mip(options, rows)
    try:
        allocation = lp.solve(options, rows, settings or lp.LpSettings())
    except InfeasiblePlanError:
        assert reference is None, "refused a plan the MIP found"
        return "infeasible"
    assert reference is not None
    optimum, _, status = reference
    assert status == "Optimal"
    value = float(allocation.equity(options).sum())
    assert not violations(options, rows, allocation, tolerance=1e-9)
    assert allocation.integer_bound is not None and allocation.bound is not None
    scale = max(1.0, abs(optimum))
    assert allocation.integer_bound <= allocation.bound + 1e-9 * scale
    assert allocation.integer_bound >= optimum - 1e-9 * scale  # a valid bound
    if allocation.status == "optimal":
        assert value >= optimum - 1e-9 * scale, (value, optimum)
        assert allocation.integer_bound - value <= 1e-9 * scale
    else:
        assert allocation.status == "feasible"
        assert allocation.integer_bound - value >= optimum - value - 1e-9 * scale
    return allocation.status


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [50, 300])
def test_small_portfolios_are_proven_optimal(n: int, seed: int) -> None:
    levels = 3 + seed % 6
    options = responses(n, levels, segments=1 + seed % 5, seed=seed)
    assert check(options, random_plan(options, seed)) in ("optimal", "infeasible")


@pytest.mark.parametrize("seed", range(3))
def test_thousands_of_customers_are_proven_optimal(seed: int) -> None:
    options = responses(1500 + 750 * seed, 5, segments=8, seed=50 + seed)
    assert check(options, random_plan(options, 50 + seed)) in ("optimal", "infeasible")


def test_pools_and_non_concave_customers() -> None:
    options = random_options(n=400, levels=5, segments=3, seed=3, pools=4)
    plan = Plan(total_budget=2500.0, segment_limits=(SegmentLimit("s1", cap=300.0),
                                                     SegmentLimit("s2", minimum=200.0)))
    assert check(options, plan) == "optimal"


def test_the_issue_portfolio_reaches_the_proven_optimum() -> None:
    """3,000 customers x 5 levels, a third S-shaped, budget 20,000, caps on three of 20
    segments: the neighbourhood repair alone stopped short of the optimum."""
    options = responses(3000, 5, segments=20, seed=13)
    caps = tuple(SegmentLimit(f"s{i}", cap=c) for i, c in ((0, 600.0), (5, 900.0), (11, 400.0)))
    assert check(options, Plan(total_budget=20_000.0, segment_limits=caps)) == "optimal"


def test_a_time_limit_leaves_a_feasible_plan_with_its_proven_gap() -> None:
    options = responses(3000, 6, segments=20, seed=21)
    caps = tuple(SegmentLimit(f"s{i}", cap=500.0) for i in range(0, 20, 2))
    plan = Plan(total_budget=15_000.0, segment_limits=caps)
    status = check(options, plan, lp.LpSettings(mip_time_limit=1e-9))
    assert status == "feasible"
