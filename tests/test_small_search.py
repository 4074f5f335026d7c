"""The direct path's small branch and bound (engine.optimize.small._branch_and_bound)
against HiGHS' MIP on the same cores (each path forced by the node limit) and against the
full MIP (tests.reference): the same plan value and a bound within 1e-9, on random
portfolios with caps, minimums, kind budgets and pools; past its node limit the core goes
to HiGHS' MIP unchanged. The first plan (the LP's split customers' best combination)
against every combination tried one by one."""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import pytest
from numpy.typing import NDArray

from engine.allocation import violations
from engine.constraints import Constraint, build_constraints, normalized_rhs
from engine.optimize import small, small_plans
from engine.options import OptionSet
from engine.plan import Plan, SegmentLimit
from tests.conftest import random_options
from tests.reference import reference_mip
from tests.test_integer_optimum import random_plan, responses

TOL = 1e-9


def _close(a: float | None, b: float | None) -> bool:
    assert a is not None and b is not None
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def _cases() -> list[tuple[str, OptionSet, list[Constraint]]]:
    out = []
    for seed in range(10):
        options = responses(40 + 25 * seed, 3 + seed % 4, segments=1 + seed % 3,
                            seed=700 + seed)
        out.append((f"customers-{seed}", options, build_constraints(random_plan(options, seed),
                                                                    options)))
    for seed in range(4):
        options = random_options(n=90, levels=5, segments=3, seed=80 + seed, pools=3)
        plan = Plan(total_budget=1500.0 + 400 * seed,
                    acquisition_budget=600.0 if seed % 2 else None,
                    segment_limits=(SegmentLimit("s1", cap=250.0),
                                    SegmentLimit("s2", minimum=150.0)))
        out.append((f"pools-{seed}", options, build_constraints(plan, options)))
    return out


@pytest.mark.parametrize(("name", "options", "rows"), _cases(), ids=lambda v: str(v)[:12])
def test_the_search_and_highs_mip_give_the_same_proven_plan(
    name: str, options: OptionSet, rows: list[Constraint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(small, "NODE_LIMIT", 100_000)  # every core to the search
    searched = small.solve(options, rows)
    monkeypatch.setattr(small, "NODE_LIMIT", 0)  # every core to HiGHS' MIP
    mip = small.solve(options, rows)
    reference = reference_mip(options, rows)
    if reference is None:
        assert searched is None and mip is None
        return
    assert searched is not None and mip is not None, name
    optimum = reference[0]
    for allocation in (searched, mip):
        assert allocation.status == "optimal"
        assert not violations(options, rows, allocation, tolerance=1e-9)
        assert _close(float(allocation.equity(options).sum()), optimum), name
        assert allocation.integer_bound is not None
        assert allocation.integer_bound >= optimum - TOL * max(1.0, abs(optimum))
        assert _close(allocation.integer_bound, optimum)
    assert _close(searched.lp_objective, mip.lp_objective)
    assert searched.shadow_prices == mip.shadow_prices


Core = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]


def _core(seed: int, minimum: bool) -> Core:
    """A whole small model as one core: every option a column, the rows as the direct path
    writes them."""
    options = responses(12 + seed, 4, segments=2, seed=900 + seed)
    limits = (SegmentLimit("s0", minimum=60.0 + 10 * seed),) if minimum else ()
    most = float(np.maximum.reduceat(options.cost, options.offsets[:-1]).sum())
    rows = build_constraints(Plan(total_budget=most * 0.3, segment_limits=limits), options)
    coupling = small._coupling(options, rows)
    return options.value, coupling, normalized_rhs(rows), options.offsets


@pytest.mark.parametrize("seed", range(12))
def test_the_search_matches_highs_mip_on_whole_models(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole models are larger than the cores the search meets: room for every node."""
    monkeypatch.setattr(small, "NODE_LIMIT", 100_000)
    value, coupling, rhs, offsets = _core(seed, minimum=seed % 2 == 1)
    integral = np.ones(value.size, dtype=bool)
    h = small._highs(None)
    searched = small._branch_and_bound(h, value, coupling, rhs, offsets, integral)
    assert searched is not None
    status, x, gap = searched
    h = small._highs(None)
    assert small._pass(h, value, coupling, rhs, offsets, integral)
    assert h.run() == highspy.HighsStatus.kOk
    assert status == h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return
    assert status == highspy.HighsModelStatus.kOptimal
    found = float(value @ x)
    assert _close(found, h.getInfo().objective_function_value)
    assert 0.0 <= gap <= TOL * max(1.0, abs(found))
    assert (coupling @ x <= rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))).all()
    assert np.array_equal(np.add.reduceat(np.round(x), offsets[:-1]), np.ones(offsets.size - 1))


def test_an_infeasible_core_is_reported_infeasible() -> None:
    value, coupling, rhs, offsets = _core(0, minimum=False)
    rhs = rhs.copy()
    rhs[:] = -1.0  # every row at most -1 (a minimum no plan reaches)
    searched = small._branch_and_bound(small._highs(None), value, coupling, rhs, offsets,
                                       np.ones(value.size, dtype=bool))
    assert searched is not None
    assert searched[0] == highspy.HighsModelStatus.kInfeasible


def test_past_the_node_limit_the_search_gives_way(monkeypatch: pytest.MonkeyPatch) -> None:
    value, coupling, rhs, offsets = _core(3, minimum=False)
    monkeypatch.setattr(small, "NODE_LIMIT", 1)
    integral = np.ones(value.size, dtype=bool)
    h = small._highs(None)
    assert small._pass(h, value, coupling, rhs, offsets, None)
    assert h.run() == highspy.HighsStatus.kOk
    lp_x = np.asarray(h.getSolution().col_value)
    assert (np.abs(lp_x - np.round(lp_x)) > 1e-9).any()  # the root is fractional
    assert small._branch_and_bound(small._highs(None), value, coupling, rhs, offsets,
                                   integral) is None


def _lp(options: OptionSet, rows: list[Constraint]) -> tuple[NDArray[np.float64], ...]:
    """The model's coupling rows, their limits and its LP's optimum (HiGHS)."""
    coupling, rhs = small._coupling(options, rows), normalized_rhs(rows)
    h = small._highs(None)
    assert small._pass(h, options.value, coupling, rhs, options.offsets, None)
    assert h.run() == highspy.HighsStatus.kOk
    return coupling, rhs, np.asarray(h.getSolution().col_value)


@pytest.mark.parametrize(("name", "options", "rows"), _cases(), ids=lambda v: str(v)[:12])
def test_the_best_rounding_is_the_best_of_the_split_customers_combinations(
    name: str, options: OptionSet, rows: list[Constraint]
) -> None:
    """Every combination of the LP's split customers' options, tried one by one: the best
    that keeps the rows is the one ``_best_rounding`` gives (None when none does), and the
    customers the LP does not split keep their option."""
    import itertools

    coupling, rhs, x = _lp(options, rows)
    integral = ~options.fractional[options.unit_of_option]
    limit = rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))
    found = small_plans.best_rounding(options, coupling, limit, x, integral)
    used = integral & (x > 1e-9)
    unit = options.unit_of_option
    split = [np.flatnonzero(used & (unit == u)) for u in np.unique(unit[used])
             if (used & (unit == u)).sum() > 1]
    base = np.where(integral, np.where(np.isin(np.arange(x.size), np.concatenate(
        [[], *split]).astype(int)), 0.0, np.round(x)), x)
    best, best_plan = -np.inf, None
    for combo in itertools.product(*split):
        plan = base.copy()
        plan[list(combo)] = 1.0
        if (coupling @ plan <= limit).all() and float(options.value @ plan) > best:
            best, best_plan = float(options.value @ plan), plan
    if not split or best_plan is None:
        assert found is None, name
        return
    assert found is not None, name
    assert np.array_equal(found, best_plan), name
    assert not violations(options, rows, small._allocation(options, found, integral),
                          tolerance=1e-9)


def test_past_its_combinations_the_best_rounding_gives_way(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    name, options, rows = _cases()[1]
    coupling, rhs, x = _lp(options, rows)
    integral = ~options.fractional[options.unit_of_option]
    limit = rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))
    assert small_plans.best_rounding(options, coupling, limit, x, integral) is not None, name
    monkeypatch.setattr(small_plans, "ROUNDINGS", 1)
    assert small_plans.best_rounding(options, coupling, limit, x, integral) is None


def test_a_tableau_taken_in_place_gives_what_a_copy_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last child of a node to be solved takes its parent's tableau as it is, an
    earlier one a copy: on each core the same status, plan, gap and node tableaux bit for
    bit as when every node solves a copy (its parent's tableau never changed), with fewer
    copies over the cores."""
    monkeypatch.setattr(small, "NODE_LIMIT", 100_000)
    copies = [0, 0]
    solved: list[list[bytes]] = [[], []]
    copy, solve = small.Tableau.copy, small.Tableau.solve
    run = [0]  # the run under way: 0 in place, 1 copied

    def counted(tableau: small.Tableau) -> small.Tableau:
        copies[run[0]] += 1
        return copy(tableau)

    def recorded(tableau: small.Tableau, *args: Any) -> Any:
        found = solve(tableau, *args)
        solved[run[0]].append(tableau.t.tobytes() + tableau.beta.tobytes())
        return found

    monkeypatch.setattr(small.Tableau, "copy", counted)
    monkeypatch.setattr(small.Tableau, "solve", recorded)
    shared = small._Shared
    for seed in range(12):
        value, coupling, rhs, offsets = _core(seed, minimum=seed % 2 == 1)
        integral = np.ones(value.size, dtype=bool)
        found = []
        for run[0], kind in enumerate((shared, _AlwaysCopied)):
            monkeypatch.setattr(small, "_Shared", kind)
            found.append(small._branch_and_bound(small._highs(None), value, coupling, rhs,
                                                 offsets, integral))
        taken, copied = found
        assert taken is not None and copied is not None, seed
        assert taken[0] == copied[0], seed
        assert taken[1].tobytes() == copied[1].tobytes(), seed
        assert taken[2] == copied[2], seed
        assert solved[0] == solved[1], seed
    assert len(solved[0]) > 24  # searches of several nodes
    assert copies[0] < copies[1]


class _AlwaysCopied(small._Shared):
    """No child is ever the last: each solves a copy of its parent's tableau."""

    def __init__(self, tableau: small.Tableau | None, users: int) -> None:
        super().__init__(tableau, users + 10**9)
