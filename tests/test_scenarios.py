"""Scenarios: ROC by hand, supplied plans under the model (never better than the optimum),
baselines, acquisition versus retention, and the same plans under changed assumptions."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from engine.constraints import build_constraints
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.planning.frontier import build_model
from engine.planning.scenarios import (
    compare,
    evaluate_spend,
    kind_split,
    robustness,
    roc_table,
    same_money_bound,
    spend_table,
)
from engine.portfolio import Portfolio
from engine.synthetic import example

# Two customers, explicit options: A gains 30 (net) for 10, B gains 5 for 10.
TINY = Portfolio(options=pl.DataFrame({
    "customer_id": ["A", "A", "B", "B"],
    "level": [0.0, 10.0, 0.0, 10.0],
    "cost": [0.0, 10.0, 0.0, 10.0],
    "value": [100.0, 130.0, 50.0, 55.0],
    "segment": ["s1", "s1", "s2", "s2"],
}))
TINY_PLAN = Plan(total_budget=10.0, discount_rate=0.1, cost=StrategyChoice("spend-table"))

CUST, PROS, PLAN = example(1200)
PORTFOLIO = Portfolio(CUST, PROS)


def test_roc_matches_a_hand_computation() -> None:
    comp = compare(TINY, TINY_PLAN, baselines=())
    roc = comp.roc()

    def value(plan: str, scope: str, group: str) -> float:
        row = roc.filter((pl.col("plan") == plan) & (pl.col("scope") == scope)
                         & (pl.col("group") == group))
        return float(row["roc"][0])

    d = 0.1
    # optimum: A takes the level 10. E0 = 150, E = 130 + 50 = 180, S = 10.
    total = ((1 + d) * (180 + 10) - 10 - 150) / 150
    assert value("optimum", "total", "all") == pytest.approx(total)
    assert value("optimum", "segment", "s1") == pytest.approx(((1 + d) * (130 + 10) - 10 - 100)
                                                              / 100)
    assert value("optimum", "segment", "s2") == pytest.approx(d)
    assert value("do nothing", "total", "all") == pytest.approx(d)
    assert value("optimum", "kind", "retention") == pytest.approx(0.32666666666666666)


def test_supplied_plan_is_valued_on_the_levels() -> None:
    options, rows = build_model(TINY, TINY_PLAN)
    table = pl.DataFrame({"customer_id": ["A", "B"], "spend": [4.0, 25.0]})
    ev = evaluate_spend(options, rows, table, "current", 0.1)
    units = {r["customer_id"]: r for r in ev.units.iter_rows(named=True)}
    assert units["A"]["equity_after"] == pytest.approx(100 + 0.4 * 30)  # mix of the two levels
    assert units["B"]["equity_after"] == pytest.approx(55 - 15)  # 15 above the dearest level
    assert ev.spend == pytest.approx(29.0)
    assert ev.broken == ["budget"]
    assert any("mix" in n for n in ev.notes) and any("no effect" in n for n in ev.notes)
    with pytest.raises(InvalidInputError):
        evaluate_spend(options, rows, pl.DataFrame({"customer_id": ["Z"], "spend": [1.0]}), "x",
                       0.1)
    with pytest.raises(InvalidInputError):
        evaluate_spend(options, rows, pl.DataFrame({"customer_id": ["A"], "spend": [-1.0]}), "x",
                       0.1)


def _random_plan(seed: int, scale: float) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.choice([0.0, 2.0, 3.5, 5.0, 10.0, 20.0, 30.0], CUST.height) * scale
    pools = PROS["prospects"].to_numpy() * rng.uniform(0, 12, PROS.height) * scale
    return pl.concat([
        pl.DataFrame({"customer_id": CUST["customer_id"], "spend": spend}),
        pl.DataFrame({"customer_id": PROS["segment"], "spend": pools}),
    ])


@pytest.mark.parametrize("seed", range(6))
def test_supplied_plan_never_beats_the_optimum(seed: int) -> None:
    options, rows = build_model(PORTFOLIO, PLAN)
    optimum = allocate(PORTFOLIO, PLAN)
    bound = float(optimum.summary["bound"])
    for scale in (0.05, 0.3, 1.0, 3.0):
        ev = evaluate_spend(options, rows, _random_plan(seed, scale), "current", PLAN.discount_rate)
        info = same_money_bound(options, rows, ev)
        assert ev.equity_after <= info["lp_bound"] + 1e-9 * abs(info["lp_bound"])
        assert info["gain_available"] >= -1e-9 * abs(info["lp_bound"])
        if not ev.broken:  # within the plan's rows it is also below the plan's own optimum
            assert ev.equity_after <= bound + 1e-9 * abs(bound)
    # the optimum's own plan, supplied back, is valued exactly as the optimum
    again = evaluate_spend(options, rows, spend_table(compare(PORTFOLIO, PLAN, baselines=())
                                                      .evaluations[0]), "again", 0.1)
    assert again.equity_after == pytest.approx(optimum.summary["equity_after"], rel=1e-12)


def test_compare_with_a_current_plan() -> None:
    current = _random_plan(1, 0.3)
    comp = compare(PORTFOLIO, PLAN, current)
    names = [e.name for e in comp.evaluations]
    assert names == ["optimum", "do nothing", "uniform", "proportional", "current",
                     "optimum, same money"]
    summary = comp.summary()
    assert (summary["gain_available"].drop_nulls().to_numpy() >= -1e-6).all()
    by_name = {r["plan"]: r for r in summary.iter_rows(named=True)}
    assert by_name["do nothing"]["roc"] == pytest.approx(PLAN.discount_rate)
    assert by_name["optimum, same money"]["spend"] == pytest.approx(by_name["current"]["spend"])
    assert by_name["optimum, same money"]["equity_after"] >= by_name["current"]["equity_after"]
    assert comp.moved is not None
    assert comp.moved["moved"].sum() == pytest.approx(by_name["optimum"]["spend"]
                                                      - by_name["current"]["spend"], abs=1e-6)
    assert any("minimums dropped" in n for n in comp.notes)  # the example plan has a minimum
    roc = roc_table(comp.evaluations)
    assert roc.filter((pl.col("scope") == "kind") & (pl.col("group") == "acquisition"))[
        "roc"].null_count() == len(names)  # acquisition starts from no equity


def test_kind_split_separate_budgets() -> None:
    optimum = allocate(PORTFOLIO, PLAN)
    out = kind_split(optimum, build_constraints(PLAN, optimum.options))
    assert out["budgets"] == "separate"
    price = optimum.summary["shadow_prices"]["budget:acquisition"]
    assert out["shadow_price"]["acquisition"] == pytest.approx(price)
    move = out["gain_moving_one_unit"]["retention->acquisition"]
    assert move["first_order"] == pytest.approx(price)
    assert move["exact"] == pytest.approx(move["first_order"], rel=1e-3, abs=1e-6)


def test_kind_split_shared_budget() -> None:
    plan = PLAN.with_overrides(acquisition_budget=None)
    optimum = allocate(PORTFOLIO, plan)
    out = kind_split(optimum, build_constraints(plan, optimum.options))
    assert out["budgets"] == "shared"
    total = optimum.summary["total_spend"]
    assert sum(out["spend"].values()) == pytest.approx(total)
    for kind, m in out["marginal"].items():
        assert m["next_unit"] <= m["last_unit"] + 1e-6, kind  # concave per kind
    # at the optimum no unit is worth moving from one kind to the other
    for gain in out["gain_moving_one_unit"].values():
        assert gain <= 1e-6


def test_robustness_under_changed_assumptions() -> None:
    optimum = compare(PORTFOLIO, PLAN, baselines=()).evaluations[0]
    plans = {"optimum": spend_table(optimum), "current": _random_plan(3, 0.3)}
    table = robustness(PORTFOLIO, PLAN, plans, discount_rates=[0.05], response_factors=[0.5, 2.0])
    assert table["assumption"].unique().len() == 4
    assert (table["below_optimum_bound"].to_numpy() >= -1e-6).all()
    planned = table.filter(pl.col("assumption") == "as planned")
    as_planned = planned.filter(pl.col("plan") == "optimum")
    reopt = planned.filter(pl.col("plan") == "re-optimized")
    assert as_planned["equity_after"][0] == pytest.approx(reopt["equity_after"][0], rel=1e-12)
    # a stronger response makes every fixed plan worth more
    for name in plans:
        rows = table.filter(pl.col("plan") == name).sort("assumption")
        weak = rows.filter(pl.col("assumption") == "response x0.5")["equity_after"][0]
        strong = rows.filter(pl.col("assumption") == "response x2")["equity_after"][0]
        assert strong > weak


def test_segment_minimum_plan_without_baselines_note() -> None:
    plan = PLAN.with_overrides(segment_limits=(SegmentLimit("premium", cap=1_000.0),))
    comp = compare(PORTFOLIO, plan)
    assert not any("minimums dropped" in n for n in comp.notes)
    assert math.isfinite(comp.evaluation("proportional").roc)  # type: ignore[union-attr]


def test_supplied_plan_values_the_same_whatever_order_the_levels_are_listed_in() -> None:
    """Levels in increasing cost skip the sort; listed out of order, or two levels at one cost
    (the better one counts), the sort gives the same valuation."""
    rng = np.random.default_rng(12)
    n, costs = 40, np.array([0.0, 5.0, 10.0, 20.0])
    value = 100.0 + np.sort(rng.uniform(0.0, 30.0, (n, costs.size)), axis=1)
    ids = [f"U{i}" for i in range(n)]
    ordered = pl.DataFrame({
        "customer_id": np.repeat(ids, costs.size), "level": np.tile(costs, n),
        "cost": np.tile(costs, n), "value": value.ravel(),
        "segment": np.repeat([f"s{i % 3}" for i in range(n)], costs.size)})
    shuffled = ordered.sample(fraction=1.0, shuffle=True, seed=3)
    worse_twin = ordered.filter(pl.col("level") == 10.0).with_columns(
        pl.col("value") - 1.0, pl.col("level") + 0.5)  # same cost, less value
    plan = Plan(total_budget=200.0, discount_rate=0.1, cost=StrategyChoice("spend-table"))
    table = pl.DataFrame({"customer_id": ids, "spend": rng.uniform(0.0, 25.0, n)})
    after = []
    for options_table in (ordered, shuffled, pl.concat([worse_twin, shuffled])):
        options, rows = build_model(Portfolio(options=options_table), plan)
        ev = evaluate_spend(options, rows, table, "current", 0.1)
        after.append(ev.units.sort("customer_id")["equity_after"].to_numpy())
    assert np.allclose(after[0], after[1], rtol=1e-12) and np.allclose(after[0], after[2],
                                                                       rtol=1e-12)


def test_units_frame_names_each_unit_by_its_codes() -> None:
    from engine.options import KINDS
    from engine.planning.scenarios import units_frame

    options, _ = build_model(PORTFOLIO, PLAN)
    spend = options.cost[options.baseline]
    frame = units_frame(options, spend, options.value[options.baseline])
    assert frame.schema["kind"] == pl.String and frame.schema["segment"] == pl.String
    assert frame["kind"].to_list() == [KINDS[k] for k in options.kind]
    assert frame["segment"].to_list() == [options.segments[s] for s in options.segment]
    assert frame["customer_id"].to_list() == options.unit_id.cast(pl.String).to_list()
    assert frame["uplift"].abs().max() == 0.0
