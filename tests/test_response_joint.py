"""Uncertainty with the customers' values drawn too (BG/NBD and Gamma-Gamma from a transaction
log) and against a current plan: at the point estimates every draw gives the plan's own gain;
drawn parameters spread it; a current plan is re-valued under the same draws."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.pipeline import allocate, build_model
from engine.plan import Plan, ResponseCurve, StrategyChoice
from engine.planning.uncertainty import joint_gain_draws
from engine.plugins import default_registry
from engine.portfolio import Portfolio
from engine.synthetic import customers

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
TX_PLAN = Plan(total_budget=1000.0, metric=StrategyChoice(
    "bgnbd", {"calibration_end": "1997-09-30", "time_unit": "week"}))


def _units_as_current(units: pl.DataFrame) -> pl.DataFrame:
    return units.filter(pl.col("customer_id").is_not_null()).select(
        pl.col("customer_id").cast(pl.String), "spend")


def test_point_estimates_reproduce_the_plan_and_a_copy_of_it_never_loses() -> None:
    table = customers(3000, seed=4).with_columns(
        pl.when(pl.col("segment") == "core").then(pl.col("retention") + 0.05)
        .otherwise(None).clip(upper_bound=0.99).alias("retention_ceiling"))
    curve = ResponseCurve("premium", "retention", 0.6, 0.75, 0.09)  # given: not drawn
    plan = Plan(total_budget=4000.0, response_curves=(curve,))
    portfolio = Portfolio(table.with_columns(pl.col("retention_ceiling").fill_null(
        pl.col("retention") + 0.3 * (1 - pl.col("retention")))))
    model = build_model(portfolio, plan)
    result = allocate(portfolio, plan, model=model)
    gains, current = joint_gain_draws(
        model.portfolio.customers, None, plan, result.units, 5, ceiling_share=0.3,
        response=0.05, current=_units_as_current(result.units))
    assert result.summary.equity_gain > 0
    assert gains == pytest.approx(np.full(5, result.summary.equity_gain), rel=1e-9)
    assert current == pytest.approx(gains, rel=1e-12)


@pytest.fixture(scope="module")
def cdnow() -> tuple[Portfolio, object, object]:
    from engine.clv.transactions import read_transactions

    portfolio = Portfolio(None, None, None, transactions=read_transactions(CDNOW))
    model = build_model(portfolio, TX_PLAN)
    return portfolio, model, allocate(portfolio, TX_PLAN, model=model)


def _fit(portfolio: Portfolio):  # type: ignore[no-untyped-def]
    metric = default_registry().create("metric", TX_PLAN.metric)
    return metric.fit(portfolio.transactions, TX_PLAN.valuation)  # type: ignore[attr-defined]


def test_bgnbd_draws_at_zero_covariance_give_the_plan_gain(cdnow) -> None:  # type: ignore[no-untyped-def]
    portfolio, model, result = cdnow
    clv = _fit(portfolio)
    fixed = dataclasses.replace(
        clv, bgnbd=dataclasses.replace(clv.bgnbd, covariance=np.zeros((4, 4)).tolist()),
        gamma_gamma=dataclasses.replace(clv.gamma_gamma, covariance=np.zeros((3, 3)).tolist()))
    gains, current = joint_gain_draws(
        model.portfolio.customers, None, TX_PLAN, result.units, 4, ceiling_share=0.3,
        response=0.05, values=(fixed, 1.0))
    assert current is None
    assert gains == pytest.approx(np.full(4, result.summary.equity_gain), rel=1e-9)


def test_bgnbd_draws_spread_the_gain_and_doing_nothing_is_beaten(cdnow) -> None:  # type: ignore[no-untyped-def]
    portfolio, model, result = cdnow
    nothing = pl.DataFrame({"customer_id": ["none"], "spend": [0.0]})
    gains, current = joint_gain_draws(
        model.portfolio.customers, None, TX_PLAN, result.units, 200, seed=3,
        ceiling_share=0.3, response=0.05, values=(_fit(portfolio), 1.0), current=nothing)
    p5, p50, p95 = np.percentile(gains, [5, 50, 95])
    assert p5 < result.summary.equity_gain < p95
    assert 0.02 < (p95 - p5) / p50 < 0.5  # BG/NBD on 2,357 customers: a few per cent
    assert current is not None and not current.any()
    # a plan that spends the same money on the wrong customers loses in most draws
    spend = result.units["spend"].to_numpy()
    worst = pl.DataFrame({"customer_id": result.units["customer_id"].cast(pl.String),
                          "spend": spend[::-1]})
    _, other = joint_gain_draws(
        model.portfolio.customers, None, TX_PLAN, result.units, 200, seed=3,
        ceiling_share=0.3, response=0.05, values=(_fit(portfolio), 1.0), current=worst)
    assert other is not None and (gains > other).mean() > 0.95


def test_cli_reports_the_current_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "current.csv"
    pl.DataFrame({"customer_id": ["1", "2", "3"], "spend": [100.0, 100.0, 100.0]}).write_csv(
        current)
    args = ["allocate", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
            "--time-unit", "week", "--budget", "1000", "--uncertainty", "40",
            "--current-plan", str(current), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    band, now = summary["equity_gain_interval"], summary["current_gain_interval"]
    assert band["p5"] <= band["p50"] <= band["p95"]
    assert now["p5"] <= now["p50"] <= now["p95"] < band["p5"]
    assert summary["probability_beats_current"] == 1.0
    assert any("BG/NBD and Gamma-Gamma" in n for n in summary["notes"])


def test_current_plan_needs_uncertainty(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "current.csv"
    pl.DataFrame({"customer_id": ["1"], "spend": [1.0]}).write_csv(current)
    code = main(["allocate", "--example", "--example-size", "200", "--current-plan",
                 str(current)])
    assert code != 0
    assert "--current-plan" in capsys.readouterr().err
