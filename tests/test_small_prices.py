"""The direct path's branch and bound closing nodes by their Lagrangian at earlier nodes'
prices (engine.optimize.small._Prices) before any LP run: every such bound is an upper
bound on the node's LP (checked against HiGHS on random nodes), and the plans found with
and without it are the same (status, plan value, bound, shadow prices), each the optimum
of highspy's full MIP, on random portfolios with caps, minimums, kind budgets and pools
and on the 100-customer example the latency benchmark sends."""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import pytest

from engine.constraints import Constraint, build_constraints, normalized_rhs
from engine.limits import Limits
from engine.optimize import small
from engine.optimize.small_simplex import Tableau
from engine.options import OptionSet
from engine.pipeline import build_model
from engine.plan import Plan, SegmentLimit
from engine.plugins import default_registry
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.conftest import random_options
from tests.reference import reference_mip
from tests.test_integer_optimum import random_plan, responses
from tests.test_resources import against_mip

TOL = 1e-9


def _close(a: float | None, b: float | None) -> bool:
    assert a is not None and b is not None
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def _example(seed: int) -> tuple[OptionSet, list[Constraint]]:
    customers, pools, plan = example(100, seed=seed)
    model = build_model(Portfolio(customers, pools), plan, default_registry(), Limits())
    return model.options, model.rows


def _cases() -> list[tuple[str, OptionSet, list[Constraint]]]:
    out = []
    for seed in range(12):
        options = responses(30 + 15 * seed, 3 + seed % 4, segments=1 + seed % 3,
                            seed=1300 + seed)
        out.append((f"customers-{seed}", options,
                    build_constraints(random_plan(options, seed), options)))
    for seed in range(6):
        options = random_options(n=80, levels=5, segments=3, seed=180 + seed, pools=3)
        plan = Plan(total_budget=1200.0 + 300 * seed,
                    acquisition_budget=500.0 if seed % 2 else None,
                    segment_limits=(SegmentLimit("s1", cap=200.0 + 20 * seed),
                                    SegmentLimit("s2", minimum=120.0)))
        out.append((f"pools-{seed}", options, build_constraints(plan, options)))
    for seed in (1, 2, 4, 6):
        out.append((f"example-{seed}", *_example(seed)))
    return out


class _Counted:
    """The solver objects the direct path makes, their LP runs counted."""

    def __init__(self) -> None:
        self.runs = 0
        self.make = small._highs

    def __call__(self, time_limit: float | None) -> highspy.Highs:
        h = self.make(time_limit)
        run = h.run

        def counted() -> highspy.HighsStatus:
            self.runs += 1
            return run()

        h.run = counted  # type: ignore[method-assign]
        return h


@pytest.mark.parametrize(("name", "options", "rows"), _cases(), ids=lambda v: str(v)[:12])
def test_closing_nodes_by_earlier_prices_finds_the_same_proven_plan(
    name: str, options: OptionSet, rows: list[Constraint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(small, "NODE_LIMIT", 100_000)  # every core to the search
    priced = small.solve(options, rows)
    monkeypatch.setattr(small, "PRICES", 0)
    plain = small.solve(options, rows)
    if reference_mip(options, rows) is None:
        assert priced is None and plain is None
        return
    assert priced is not None and plain is not None, name
    value, optimum = against_mip(options, rows, priced)
    assert priced.status == plain.status == "optimal"
    assert _close(value, optimum), name
    assert _close(value, float(plain.equity(options).sum())), name
    assert priced.bound == plain.bound and priced.lp_objective == plain.lp_objective
    assert priced.shadow_prices == plain.shadow_prices
    assert _close(priced.integer_bound, plain.integer_bound)


def test_the_example_needs_fewer_lp_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's portfolio: nodes the earlier prices close are not solved (20 -> 12
    LP runs when written, node LPs then in HiGHS; 19 -> 11 node LPs in the dense simplex)."""
    options, rows = _example(1)
    runs = {}
    keeps = (small.PRICES, 0)
    solve = Tableau.solve
    for keep in keeps:
        counted = _Counted()
        monkeypatch.setattr(small, "_highs", counted)
        monkeypatch.setattr(small, "PRICES", keep)
        nodes = [0]

        def solved(self: Tableau, *args: Any, nodes: list[int] = nodes) -> Any:
            nodes[0] += 1
            return solve(self, *args)

        monkeypatch.setattr(Tableau, "solve", solved)
        assert small.solve(options, rows) is not None
        runs[keep] = counted.runs + nodes[0]
    assert runs[keeps[0]] < runs[0], runs


@pytest.mark.parametrize("seed", range(6))
def test_a_priced_bound_is_never_below_the_nodes_lp(seed: int) -> None:
    """Random nodes (customers fixed at an option or barred from some) of a whole model:
    the least Lagrangian at random prices and at the root LP's duals is at least the
    node's LP optimum (HiGHS), and -inf exactly where a customer has no option left."""
    rng = np.random.default_rng(400 + seed)
    options = random_options(n=30, levels=4, segments=2, seed=40 + seed, pools=2)
    rows = build_constraints(Plan(total_budget=500.0, segment_limits=(
        SegmentLimit("s1", cap=150.0), SegmentLimit("s0", minimum=40.0))), options)
    value, offsets = options.value, options.offsets
    coupling, rhs = small._coupling(options, rows), normalized_rhs(rows)
    starts, counts = offsets[:-1], np.diff(offsets)
    integral = ~options.fractional[options.unit_of_option]
    n = value.size
    h = small._highs(None)
    assert small._pass(h, value, coupling, rhs, offsets, None)
    assert h.run() == highspy.HighsStatus.kOk
    prices = small._Prices(value, coupling, rhs, starts, counts)
    prices.add(np.asarray(h.getSolution().row_dual)[: rhs.size])
    for _ in range(small.PRICES - 1):
        prices.add(rng.exponential(0.5, rhs.size) * (rng.random(rhs.size) < 0.7))
    for _ in range(25):
        lower, upper = np.zeros(n), np.ones(n)
        barred = integral & (rng.random(n) < 0.25)
        upper[barred] = 0.0
        for u in rng.choice(options.n_units, 3, replace=False):
            cols = np.arange(offsets[u], offsets[u + 1])
            if integral[cols[0]] and rng.random() < 0.5:
                lower[rng.choice(cols)] = 1.0
        h.changeColsBounds(n, np.arange(n, dtype=np.int32), lower, np.maximum(lower, upper))
        bound = prices.bound(lower, np.maximum(lower, upper))
        assert h.run() == highspy.HighsStatus.kOk
        if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
            continue
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        lp = h.getInfo().objective_function_value
        assert bound >= lp - 1e-7 * max(1.0, abs(lp)), (bound, lp)
    # a customer with every option barred: no plan, and the bound says so
    upper = np.ones(n)
    upper[offsets[0]:offsets[1]] = 0.0
    assert prices.bound(np.zeros(n), upper) == -np.inf
