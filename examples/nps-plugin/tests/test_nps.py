"""Tests of the NPS plugin: the engine's conformance kit, then the model's own behaviour.

Run them with the plugin installed next to the engine (``pip install -e .`` in this
directory, then ``pytest``); the entry-point test needs the installed package.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.testing import (
    check_cost_model,
    check_entry_point,
    check_metric,
    check_plugin,
    sample_portfolio,
)
from engine.valuation import Valuation
from equity_plugins.costs import ExponentialResponse

from equity_nps import cli, nps, nps_by_segment, plugin, portfolio_nps
from equity_nps.strategies import NetPromoterScore, NpsResponse

EXPECT = {"cost": ["nps-response"], "metric": ["nps"]}


def with_scores(n: int = 200, seed: int = 3) -> tuple[Portfolio, Plan]:
    portfolio, plan = sample_portfolio(n)
    assert portfolio.customers is not None
    score = np.random.default_rng(seed).integers(0, 11, portfolio.customers.height)
    customers = portfolio.customers.with_columns(pl.Series("nps_score", score))
    return Portfolio(customers, portfolio.prospects), plan


# --- the engine's conformance kit -----------------------------------------------------------


def test_cost_model_conforms() -> None:
    portfolio, plan = with_scores()
    check_cost_model(NpsResponse, portfolio, plan)
    check_cost_model(NpsResponse, portfolio, plan, params={
        "promoter_retention_shift": 0.1, "detractor_response_factor": 0.0, "missing": "passive"
    })


def test_metric_conforms() -> None:
    portfolio, _ = with_scores()
    assert portfolio.customers is not None
    out = check_metric(NetPromoterScore, portfolio.customers, aggregate=("segment_nps",))
    assert out["nps_category"].dtype == pl.String


def test_plugin_registers() -> None:
    check_plugin(plugin, EXPECT)


def test_entry_point_when_installed() -> None:
    try:
        metadata.version("equity-nps")
    except metadata.PackageNotFoundError:
        pytest.skip("equity-nps is not installed (pip install -e examples/nps-plugin)")
    registry = check_entry_point("nps", EXPECT)
    info = registry.info("cost", "nps-response")
    assert (info.package, info.version) == ("equity-nps", metadata.version("equity-nps"))


# --- NPS --------------------------------------------------------------------------------------


def test_categories_follow_the_standard_bands() -> None:
    codes = nps.categorize(np.arange(11, dtype=np.float64))
    assert [nps.CATEGORIES[c] for c in codes] == ["detractor"] * 7 + ["passive"] * 2 + [
        "promoter"
    ] * 2


def test_nps_per_segment_and_overall() -> None:
    customers = pl.DataFrame({
        "segment": ["a", "a", "a", "a", "b", "b"],
        "nps_score": [10, 9, 7, 0, 6, 8],
    })
    table = nps_by_segment(customers)
    assert table.to_dicts() == [
        {"segment": "a", "customers": 4, "promoters": 2, "passives": 1, "detractors": 1,
         "nps": 25.0},
        {"segment": "b", "customers": 2, "promoters": 0, "passives": 1, "detractors": 1,
         "nps": -50.0},
    ]
    assert portfolio_nps(customers) == pytest.approx(100 * (2 - 2) / 6)
    out = NetPromoterScore().from_params({}).compute(customers, Valuation())
    assert out["nps_category"].to_list() == [
        "promoter", "promoter", "passive", "detractor", "detractor", "passive"
    ]
    assert out["segment_nps"].to_list() == [25.0] * 4 + [-50.0] * 2


def test_bad_scores_are_input_errors_naming_the_column() -> None:
    metric = NetPromoterScore.from_params({})
    for scores, row in (([3, 11], 1), ([-1, 5], 0), ([5, None], 1)):
        with pytest.raises(InvalidInputError) as err:
            metric.compute(pl.DataFrame({"nps_score": scores}), Valuation())
        assert err.value.violations[0].field == "customers.nps_score"
        assert err.value.violations[0].row == row
    with pytest.raises(InvalidInputError, match="nps_score: required column is missing"):
        metric.compute(pl.DataFrame({"x": [1]}), Valuation())
    lenient = NetPromoterScore.from_params({"missing": "passive"})
    out = lenient.compute(pl.DataFrame({"nps_score": [10, None]}), Valuation())
    assert out["nps_category"].to_list() == ["promoter", "passive"]


# --- the cost model ---------------------------------------------------------------------------


def test_retention_and_response_move_by_category() -> None:
    customers = pl.DataFrame({
        "customer_id": ["p", "n", "d", "top"],
        "margin": [100.0] * 4,
        "retention": [0.8, 0.8, 0.8, 0.985],
        "retention_ceiling": [0.9, 0.9, 0.9, 0.995],
        "retention_response": [0.1] * 4,
        "nps_score": [10, 7, 2, 9],
    })
    model = NpsResponse.from_params({})
    out = model.adjusted(customers)
    assert out["retention"].to_list() == pytest.approx([0.83, 0.8, 0.75, 0.99])
    assert out["retention_ceiling"].to_list() == pytest.approx([0.93, 0.9, 0.85, 0.995])
    assert out["retention_response"].to_list() == pytest.approx([0.125, 0.1, 0.075, 0.125])


def test_neutral_settings_reproduce_exponential_response() -> None:
    portfolio, plan = with_scores()
    neutral = {f"{c}_retention_shift": 0.0 for c in ("promoter", "passive", "detractor")} | {
        f"{c}_response_factor": 1.0 for c in ("promoter", "passive", "detractor")
    }
    got = NpsResponse.from_params(neutral).build(portfolio.validated(), plan)
    want = ExponentialResponse.from_params({}).build(portfolio.validated(), plan)
    np.testing.assert_allclose(got.value, want.value, rtol=1e-12)
    np.testing.assert_array_equal(got.cost, want.cost)


def test_promoters_are_worth_more_than_detractors_in_an_allocation() -> None:
    portfolio, plan = with_scores()
    registry = check_plugin(plugin, EXPECT)
    plan = plan.with_overrides(cost=StrategyChoice("nps-response"), metric=StrategyChoice("nps"))
    assert portfolio.customers is not None
    base = portfolio.customers
    equity = {}
    for score in (10, 8, 3):
        customers = base.with_columns(pl.lit(score).alias("nps_score"))
        result = allocate(Portfolio(customers, portfolio.prospects), plan, registry)
        assert result.summary["status"] == "optimal"
        assert result.summary["total_spend"] <= plan.total_budget * (1 + 1e-9)
        equity[score] = result.summary["equity_after"]
    assert equity[10] > equity[8] > equity[3]


def test_missing_scores_reach_the_caller_as_input_errors() -> None:
    portfolio, plan = with_scores()
    assert portfolio.customers is not None
    registry = check_plugin(plugin, EXPECT)
    plan = plan.with_overrides(cost=StrategyChoice("nps-response"))
    bare = Portfolio(portfolio.customers.drop("nps_score"), portfolio.prospects)
    with pytest.raises(InvalidInputError, match=r"customers\.nps_score"):
        allocate(bare, plan, registry)


# --- the command ------------------------------------------------------------------------------


def test_command_prints_nps_per_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "customers.csv"
    pl.DataFrame({"segment": ["a", "a", "b"], "nps_score": [10, 0, 9]}).write_csv(path)
    assert cli.main([str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nps"] == pytest.approx(100 / 3)
    assert [s["nps"] for s in report["segments"]] == [0.0, 100.0]
    assert cli.main([str(path)]) == 0
    assert "all" in capsys.readouterr().out
    pl.DataFrame({"nps_score": [12]}).write_csv(path)
    assert cli.main([str(path)]) == 2
    assert "customers.nps_score[0]" in capsys.readouterr().err
