"""How sure a plan is: re-valuing a fixed plan under draws of the fitted curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.pipeline import allocate, build_model
from engine.plan import ResponseCurve
from engine.portfolio import Portfolio
from engine.response.uncertainty import draw_parameters, gain_draws, interval
from engine.synthetic import example

EXPERIMENTS = Path(__file__).parent / "data" / "experiments.csv"


SEGMENTS = ("core", "premium", "value")


def _setup(scale: float = 1.0, ceiling: float = 0.75, ceiling_var: float = 1e-4,
           with_pools: bool = True, segments: tuple[str, ...] = SEGMENTS):  # type: ignore[no-untyped-def]
    customers, prospects, plan = example(2000)
    customers = customers.drop("retention_ceiling", "retention_response")
    if not with_pools:
        prospects = None
        plan = plan.with_overrides(segment_limits=())
    cov = tuple(scale * v for v in (1e-4, 0, 0, 0, ceiling_var, 0, 0, 0, 1e-4))
    curves = tuple(ResponseCurve(s, "retention", 0.6, ceiling, 0.08, covariance=cov)
                   for s in segments)
    curves += (ResponseCurve("new", "acquisition", 0.0, 0.3, 0.2,
                             covariance=tuple(scale * v for v in (1e-4, 0, 0, 1e-4))),)
    plan = plan.with_overrides(response_curves=curves, total_budget=15000.0)
    portfolio = Portfolio(customers, prospects)
    model = build_model(portfolio, plan)
    return model, plan, allocate(portfolio, plan, model=model)


def test_without_estimation_error_every_draw_is_the_plans_gain() -> None:
    model, plan, result = _setup(scale=0.0)
    gains = gain_draws(model.portfolio.customers, model.portfolio.prospects, plan,
                       result.units, 7)
    assert np.allclose(gains, result.summary.equity_gain, rtol=1e-10)


def test_the_interval_is_ordered_centred_and_narrows_with_the_standard_errors() -> None:
    model, plan, result = _setup()
    args = (model.portfolio.customers, model.portfolio.prospects)
    wide = interval(gain_draws(*args, plan, result.units, 400, seed=1))
    assert wide["p5"] < wide["p50"] < wide["p95"]
    point = result.summary.equity_gain
    assert wide["p5"] < point < wide["p95"]
    assert abs(wide["p50"] - point) < 0.15 * (wide["p95"] - wide["p5"])
    _, narrow_plan, _ = _setup(scale=0.25)  # standard errors halved: the same plan
    narrow = interval(gain_draws(*args, narrow_plan, result.units, 400, seed=1))
    ratio = (narrow["p95"] - narrow["p5"]) / (wide["p95"] - wide["p5"])
    assert 0.4 < ratio < 0.6


def test_a_plan_that_may_not_pay_has_a_probability_below_one() -> None:
    everyone = ("core", "premium", "value", "at-risk", "new")
    model, plan, result = _setup(ceiling=0.66, ceiling_var=0.03**2, with_pools=False,
                                 segments=everyone)
    gains = gain_draws(model.portfolio.customers, model.portfolio.prospects, plan,
                       result.units, 400, seed=2)
    share = float((gains > 0).mean())
    assert 0.02 < share < 0.98, share


def test_draws_stay_in_the_curves_domain() -> None:
    curve = ResponseCurve("a", "retention", 0.02, 0.05, 0.01,
                          covariance=(0.01, 0, 0, 0, 0.01, 0, 0, 0, 0.01))
    theta = draw_parameters(curve, 5000, np.random.default_rng(0))
    assert (theta[:, 0] >= 0).all() and (theta[:, 1] >= theta[:, 0]).all()
    assert (theta[:, 1] < 1).all() and (theta[:, 2] > 0).all()


def test_cli_reports_the_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curves = tmp_path / "curves.json"
    assert main(["fit-response", "--experiments", str(EXPERIMENTS), "--output",
                 str(curves)]) == 0
    capsys.readouterr()
    args = ["allocate", "--example", "--example-size", "1500", "--budget", "10000",
            "--response", str(curves), "--uncertainty", "100", "--seed", "3", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    band = first["equity_gain_interval"]
    assert set(band) == {"p5", "p50", "p95"} and band["p5"] < band["p50"] < band["p95"]
    assert first["uncertainty_draws"] == 100
    assert 0 <= first["probability_beats_nothing"] <= 1
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["equity_gain_interval"] == band  # the seed fixes the draws
    assert main(["allocate", "--example", "--example-size", "300", "--uncertainty", "10",
                 "--cost", "segment-spend-table"]) == 2
    assert "--uncertainty: needs a response-curve cost strategy" in capsys.readouterr().err


def test_uncertainty_without_fitted_curves_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["allocate", "--example", "--example-size", "300", "--uncertainty", "20",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    band = summary["equity_gain_interval"]
    assert band["p5"] == pytest.approx(band["p95"]) == pytest.approx(summary["equity_gain"])
    assert any("no response curve was estimated" in n for n in summary["notes"])
