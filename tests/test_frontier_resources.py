"""The frontier, the comparison and the report when the plan limits resources besides spend
(contacts, calls): exact LP solves at budgets, each checked against highspy's LP on the full
per-customer model (tests.reference), which shares no code with the engine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engine.constraints import LE, Constraint, build_constraints
from engine.options import from_table
from engine.plan import Plan, ResourceLimit, SegmentLimit
from engine.planning.frontier import frontier_of
from engine.planning.report import build_report, report_json
from engine.planning.scenarios import compare, plan_usage
from engine.portfolio import Portfolio
from tests.reference import reference_mip
from tests.test_resources import table


def plan_for(n: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    limits = [ResourceLimit("contacts", max=float(n) * rng.uniform(0.3, 0.6)),
              ResourceLimit("calls", segment="s1", max=float(n) * rng.uniform(0.05, 0.2))]
    if seed % 2:
        limits.append(ResourceLimit("contacts", segment="s2", min=float(n) * 0.05))
    caps = (SegmentLimit("s0", cap=float(n) * 2.0),) if seed % 3 == 0 else ()
    return Plan(total_budget=float(n) * 6.0, segment_limits=caps, resource_limits=tuple(limits))


def with_budget(rows: list[Constraint], n_cells: int, budget: float | None) -> list[Constraint]:
    out = [r for r in rows if r.name != "budget"]
    if budget is not None:
        out.append(Constraint("budget", np.ones(n_cells, dtype=bool), LE, float(budget)))
    return out


def highspy_lp(options, rows, budget):  # type: ignore[no-untyped-def]
    found = reference_mip(options, with_budget(rows, options.n_cells, budget), relax=True)
    return None if found is None else found[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_frontier_with_resource_limits_matches_highspy(seed: int) -> None:
    n = 150
    options = from_table(table(n, seed))
    plan = plan_for(n, seed)
    rows = build_constraints(plan, options)
    front = frontier_of(options, rows, plan.total_budget)
    assert front.method == "solves" and not front.summary()["exact"]
    pts = front.points
    budget, equity = pts["budget"].to_numpy(), pts["equity"].to_numpy()
    bound, price = pts["bound"].to_numpy(), pts["shadow_price"].to_numpy()
    assert pts.height >= 7 and bool((np.diff(budget) > 0).all())
    scale = max(1.0, float(np.abs(equity).max()))
    # every solved point is highspy's LP optimum at that budget, with a bound that meets it
    for b, e in zip(budget, equity, strict=True):
        assert highspy_lp(options, rows, b) == pytest.approx(e, rel=1e-9, abs=1e-9 * scale)
    assert np.allclose(bound, equity, rtol=1e-9, atol=1e-9 * scale)
    # the least budget: feasible there, infeasible just below; the optimal one: no gain past it
    assert highspy_lp(options, rows, budget[0] * (1 - 1e-6) - 1e-6) is None
    unlimited = highspy_lp(options, rows, None)
    assert unlimited == pytest.approx(equity[-1], rel=1e-9)
    assert front.optimal_budget == budget[-1] and price[-1] == 0.0
    # concave, and each point's certificate is a line above every other point
    slope = np.diff(equity) / np.diff(budget)
    assert bool((np.diff(slope) <= 1e-9 * max(1.0, float(np.abs(slope).max()))).all())
    for i in range(budget.size):
        above = bound[i] + price[i] * (budget - budget[i])
        assert bool((equity <= above + 1e-9 * scale).all())
    # between solved budgets highspy's optimum lies between the line drawn and max_gap above it
    rng = np.random.default_rng(seed)
    for b in rng.uniform(budget[0], budget[-1], 4):
        exact = highspy_lp(options, rows, b)
        drawn = float(front.equity_at([b])[0])
        assert drawn - 1e-9 * scale <= exact <= drawn + front.max_gap + 1e-9 * scale
    # the budget's price at a solved budget is the solve's; every row priced at every point
    assert front.slope_at(budget[1:2])[0] == price[1]
    assert front.prices is not None
    names = {r.name for r in rows}
    assert set(front.prices["limit"].unique()) == names | {"budget"}
    assert front.prices.group_by("point").len()["len"].to_list() == [len(names)] * pts.height
    # the split adds up to the spend at every solved budget
    split = front.split_at(budget)
    total = split.group_by("budget").agg(pl.col("spend").sum()).sort("budget")
    assert np.allclose(total["spend"].to_numpy(),
                       pts["retention"].to_numpy() + pts["acquisition"].to_numpy())


def test_frontier_refines_where_the_sandwich_is_widest() -> None:
    n = 150
    options = from_table(table(n, 4))
    plan = plan_for(n, 4)
    rows = build_constraints(plan, options)
    few = frontier_of(options, rows, plan.total_budget)
    from engine.planning import frontier_solves

    coarse = frontier_solves.trace_by_solves(options, rows, plan.total_budget,
                                             lambda *_: None, lambda: False, 0.0,
                                             lambda r: frontier_of(options, r).min_budget,
                                             first=3, most=3)
    assert coarse.points.height <= 4 < few.points.height  # 3 evenly spaced and the plan's
    assert coarse.max_gap > few.max_gap  # more solves, tighter sandwich


def contacts_portfolio(n: int) -> tuple[Portfolio, Plan]:
    from engine.plan import StrategyChoice
    from engine.synthetic import example

    cust, pros, plan = example(n)
    plan = plan.with_overrides(
        cost=StrategyChoice(plan.cost.name, {"contacts_per_head": 1.0}),
        resource_limits=(ResourceLimit("contacts", max=0.3 * n),))
    return Portfolio(cust, pros, None), plan


def test_compare_and_report_with_a_contacts_limit() -> None:
    n = 400
    portfolio, plan = contacts_portfolio(n)
    comp = compare(portfolio, plan)
    options = comp.optimum.options
    rows = build_constraints(plan, options)
    contacts = options.extra["contacts"]
    # the optimum's use of contacts is its levels' contacts, not its spend
    best = comp.evaluations[0]
    used = plan_usage(options, rows, best.units["spend"].to_numpy(), best.resources)
    k = [r.name for r in rows].index("max:contacts")
    mine = float(comp.optimum.allocation.mix(contacts).sum())
    assert used[k] == pytest.approx(mine) and mine <= 0.3 * n + 1e-9
    assert used[k] != pytest.approx(best.spend)
    # the baselines run without the contacts limit and say which rows they break
    for ev in comp.evaluations:
        if ev.name in ("uniform", "proportional"):
            ev_used = plan_usage(options, rows, ev.units["spend"].to_numpy(), ev.resources)
            assert ("max:contacts" in ev.broken) == (ev_used[k] > 0.3 * n * (1 + 1e-9))
    assert any("limits on contacts dropped" in note for note in comp.notes)
    # every plan's same-money bound is highspy's LP with the rows relaxed to admit it
    for ev in comp.evaluations[1:]:
        usage = plan_usage(options, rows, ev.units["spend"].to_numpy(), ev.resources)
        relaxed = [replace(r, rhs=max(r.rhs, u) if r.sense == LE else min(r.rhs, u))
                   for r, u in zip(rows, usage, strict=True) if r.name != "budget"]
        expected = highspy_lp(options, relaxed, ev.spend)
        assert ev.bound == pytest.approx(expected, rel=1e-9)
        assert ev.equity_after <= ev.bound + 1e-9 * abs(ev.bound)

    data = build_report(portfolio, plan, response_factors=(1.5,))
    limits = {r["limit"]: r for r in data.limits.to_dicts()}
    row = limits["max:contacts"]
    assert row["used"] == pytest.approx(mine, rel=1e-9)
    assert row["shadow_price"] == pytest.approx(comp.optimum.summary["shadow_prices"]
                                                ["max:contacts"], rel=1e-9)
    assert row["binding"] and row["shadow_price"] > 0
    assert data.frontier.method == "solves"
    assert "contacts" in data.decision["recommendation"]
    doc = report_json(data)
    assert doc["frontier"]["shadow_prices"]
    assert {r["limit"] for r in doc["frontier"]["shadow_prices"]} >= {"max:contacts", "budget"}
    assert doc["scenarios"]


def test_frontier_with_a_contacts_limit_over_grpc_and_the_cli(
    tmp_path, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    """The Frontier RPC over a real loopback channel and `equity frontier --limit` trace the
    same solved points, priced per limit; an unknown resource is INVALID_ARGUMENT naming it."""
    import json

    from engine.cli import main
    from engine.errors import InvalidInputError
    from engine.planning.frontier import frontier
    from engine.service.client import Client
    from engine.service.server import EquityServer, ServerConfig

    portfolio, plan = contacts_portfolio(300)
    local = frontier(portfolio, plan)
    server = EquityServer(ServerConfig(port=0))
    server.start()
    try:
        with Client(server.address, timeout=120.0) as client:
            points, _, summary = client.frontier(portfolio, plan)
            assert summary["method"] == "solves" and summary["exact"] is False
            assert summary["max_gap"] == pytest.approx(local.max_gap, rel=1e-6, abs=1e-9)
            assert np.allclose(points["equity"].to_numpy(), local.points["equity"].to_numpy(),
                               rtol=1e-9)
            assert {"shadow_price", "bound"} <= set(points.columns)
            bad = plan.with_overrides(resource_limits=(ResourceLimit("calls", max=1.0),))
            with pytest.raises(InvalidInputError) as err:
                client.frontier(portfolio, bad)
            assert err.value.violations[0].field == "plan.resource_limits[0].resource"
    finally:
        server.stop(grace=1.0)
    args = ["frontier", "--example", "--example-size", "300", "--param",
            "cost.contacts_per_head=1", "--limit", "contacts<=90", "--quiet"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frontier"]["method"] == "solves" and not out["frontier"]["exact"]
    assert out["frontier"]["optimal_budget"] == pytest.approx(local.optimal_budget, rel=1e-9)
    assert main(args) == 0
    assert "exact LP solves at budgets" in capsys.readouterr().out


def test_a_budget_the_lp_cannot_solve_is_left_out_and_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A solve failing at one budget leaves that point out (the band spans it, said in the
    notes) instead of failing the frontier; the points kept still match highspy."""
    from engine.errors import SolverError
    from engine.planning import frontier_solves

    n = 150
    options = from_table(table(n, 0))
    plan = plan_for(n, 0)
    rows = build_constraints(plan, options)
    full = frontier_of(options, rows, plan.total_budget)
    bad = float(full.points["budget"][3])
    solve = frontier_solves._solve

    def failing(o, r, b, start=None):  # type: ignore[no-untyped-def]
        if b is not None and abs(b - bad) <= 1e-9 * bad:
            raise SolverError("no answer at this budget")
        return solve(o, r, b, start)

    monkeypatch.setattr(frontier_solves, "_solve", failing)
    front = frontier_of(options, rows, plan.total_budget)
    budgets = front.points["budget"].to_numpy()
    assert not np.isclose(budgets, bad, rtol=1e-9).any()
    assert any("could not be solved" in note and "no answer" in note for note in front.notes)
    for b, e in zip(budgets[::4], front.points["equity"].to_numpy()[::4], strict=True):
        assert highspy_lp(options, rows, b) == pytest.approx(e, rel=1e-9)
    exact = highspy_lp(options, rows, bad)
    drawn = float(front.equity_at([bad])[0])
    assert drawn - 1e-9 * abs(drawn) <= exact <= drawn + front.max_gap + 1e-9 * abs(drawn)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_least_budget_without_its_lp(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the least-spend LP fails: the spend rows' least budget if the plan is feasible
    there (exact), else a bisection by solves (feasible, and within its stated width)."""
    from engine.errors import SolverError
    from engine.planning import frontier_solves

    n = 150
    options = from_table(table(n, seed))
    plan = plan_for(n, seed)
    rows = build_constraints(plan, options)
    exact = frontier_of(options, rows, plan.total_budget).min_budget

    def failing(o, r):  # type: ignore[no-untyped-def]
        raise SolverError("no answer")

    monkeypatch.setattr(frontier_solves, "_least_spend", failing)
    front = frontier_of(options, rows, plan.total_budget)
    assert highspy_lp(options, rows, front.min_budget) is not None  # feasible there
    bisected = [note for note in front.notes if "bisection" in note]
    if bisected:
        width = float(bisected[0].split("within ")[1].split(" ")[0].replace(",", ""))
        assert exact - 1e-9 * exact <= front.min_budget <= exact + 2 * width + 1e-9 * exact
    else:
        assert front.min_budget == pytest.approx(exact, rel=1e-9)
