"""The any-resource LP by sifting (engine.optimize.lagrange) against highspy's LP on the full
per-customer model: many binding limits, the warm-start sample, CBC, infeasible limits."""

from __future__ import annotations

import numpy as np
import pytest

from engine.allocation import violations
from engine.constraints import build_constraints
from engine.errors import InfeasiblePlanError
from engine.optimize import lp
from engine.optimize.lagrange import solve_lagrange
from engine.options import OptionSet, from_table
from engine.plan import Plan, ResourceLimit, SegmentLimit
from tests.reference import reference_mip
from tests.test_resources import check, table


def many_limits(n: int, segments: int) -> Plan:
    """A budget, spend caps, contacts and call minutes per segment, all tight: at least one
    limit binds in every segment."""
    names = [f"s{i}" for i in range(segments)]
    per = n / segments
    limits = [ResourceLimit("contacts", max=0.5 * n)]
    limits += [ResourceLimit("contacts", segment=s, max=0.35 * per) for s in names]
    limits += [ResourceLimit("calls", segment=s, max=0.12 * per) for s in names[::2]]
    caps = tuple(SegmentLimit(s, cap=6.0 * per) for s in names[1::2])
    return Plan(total_budget=7.0 * n, segment_limits=caps, resource_limits=tuple(limits))


def fractional_units(options: OptionSet, weights: np.ndarray) -> int:
    split = (weights > 1e-9) & (weights < 1 - 1e-9)
    return int(np.unique(options.unit_of_option[split]).size)


def lp_matches(options: OptionSet, plan: Plan, solver: str = "auto") -> tuple[int, int]:
    """The LP by sifting equals highspy's full LP within 1e-9 and keeps every limit;
    (rows with a positive price, units split)."""
    rows = build_constraints(plan, options)
    reference = reference_mip(options, rows, relax=True)
    assert reference is not None
    result = solve_lagrange(options, rows, solver)
    scale = max(1.0, abs(reference[0]))
    assert abs(result.objective - reference[0]) <= 1e-9 * scale
    assert abs(result.bound - reference[0]) <= 1e-9 * scale
    assert result.bound >= result.objective
    sums = np.bincount(options.unit_of_option, weights=result.weights, minlength=options.n_units)
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    allocation = lp.solve(options, rows, lp.LpSettings(repair=False, solver=solver))
    assert not violations(options, rows, allocation, tolerance=1e-9)
    assert allocation.lp_objective == pytest.approx(reference[0], rel=1e-9)
    # the plan as handed on (each unit's two options of largest weight and the split)
    assert float(allocation.equity(options).sum()) == pytest.approx(reference[0], rel=1e-9)
    binding = int((result.duals > 1e-9).sum())
    return binding, fractional_units(options, result.weights)


@pytest.mark.parametrize("seed", [0, 1])
def test_thirty_and_more_binding_limits(seed: int) -> None:
    options = from_table(table(4000, seed, barred=seed == 1, segments=36))
    binding, split = lp_matches(options, many_limits(4000, 36))
    assert binding >= 30
    assert split <= binding  # a vertex: at most one split customer per binding limit


def test_many_binding_limits_integral_plan() -> None:
    options = from_table(table(600, 5, barred=True, segments=16))
    assert check(options, many_limits(600, 16)) in ("optimal", "feasible")


def test_sample_warm_start_and_sifting_rounds() -> None:
    # 15,000 customers: the first core is 2,000, first prices come from a sample's LP
    options = from_table(table(15_000, 7, barred=True, segments=12))
    binding, split = lp_matches(options, many_limits(15_000, 12))
    assert binding >= 12 and split <= binding


def test_cbc_core_matches() -> None:
    options = from_table(table(300, 3, segments=6))
    lp_matches(options, many_limits(300, 6), solver="cbc")


def test_limits_that_cannot_be_met_are_reported() -> None:
    options = from_table(table(3000, 2, segments=4))
    # at least 2.5 contacts per head in s1: no customer has more than 2
    plan = Plan(resource_limits=(ResourceLimit("contacts", segment="s1", min=2.5 * 3000),
                                 ResourceLimit("contacts", max=0.9 * 3000)))
    rows = build_constraints(plan, options)
    assert reference_mip(options, rows, relax=True) is None
    with pytest.raises(InfeasiblePlanError):
        solve_lagrange(options, rows)


def test_tight_minimums_per_segment() -> None:
    # minimums per segment far from where the first prices put the customers
    options = from_table(table(12_000, 4, segments=6))
    per = 12_000 / 6
    plan = Plan(total_budget=8.0 * 12_000, resource_limits=tuple(
        [ResourceLimit("contacts", segment=f"s{i}", min=1.1 * per) for i in range(6)]
        + [ResourceLimit("calls", max=0.8 * 12_000)]))
    lp_matches(options, plan)
