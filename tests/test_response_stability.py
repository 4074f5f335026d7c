"""Choice stability: the plan re-solved under draws of the estimates (engine.planning.stability)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.pipeline import allocate, build_model
from engine.plan import ResponseCurve
from engine.planning.stability import add_choice_stability
from engine.portfolio import Portfolio
from engine.synthetic import example

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
SEGMENTS = ("core", "premium", "value", "at-risk", "new")


def _stability(scale: float, draws: int = 6, seed: int = 0):  # type: ignore[no-untyped-def]
    customers, prospects, plan = example(800)
    customers = customers.drop("retention_ceiling", "retention_response")
    cov = tuple(scale * v for v in (1e-4, 0, 0, 0, 1e-4, 0, 0, 0, 4e-4))
    curves = tuple(ResponseCurve(s, "retention", 0.6, 0.75, 0.08, covariance=cov)
                   for s in SEGMENTS)
    plan = plan.with_overrides(response_curves=curves, total_budget=4000.0)
    portfolio = Portfolio(customers, prospects)
    model = build_model(portfolio, plan)
    result = allocate(portfolio, plan, model=model)
    add_choice_stability(portfolio, plan, model, result, draws, seed)
    return result


def test_without_estimation_error_every_choice_holds() -> None:
    result = _stability(0.0)
    assert (result.units["choice_stability"] == 1.0).all()
    assert result.summary.choice_stability == {"draws": 6.0, "mean": 1.0,
                                               "share_stable_at_80pct": 1.0}


def test_choices_waver_more_as_the_estimates_get_less_sure() -> None:
    sure, loose = _stability(0.01), _stability(4.0)
    for result in (sure, loose):
        share = result.units["choice_stability"].to_numpy()
        assert ((share >= 0) & (share <= 1)).all()
        assert np.allclose(share * 6, np.round(share * 6))  # a count of draws out of 6
        n = result.summary.customers
        assert result.summary.choice_stability["mean"] == pytest.approx(share[:n].mean())
        assert result.summary.choice_stability["share_stable_at_80pct"] == pytest.approx(
            (share[:n] >= 0.8).mean())
    assert loose.summary.choice_stability["mean"] < sure.summary.choice_stability["mean"]
    assert loose.summary.choice_stability["mean"] < 0.95


def test_cli_writes_the_column_and_the_summary(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    experiments = Path(__file__).parent / "data" / "experiments.csv"
    curves, plan_file = tmp_path / "curves.json", tmp_path / "plan.csv"
    assert main(["fit-response", "--experiments", str(experiments), "--output",
                 str(curves)]) == 0
    capsys.readouterr()
    assert main(["allocate", "--example", "--example-size", "600", "--budget", "4000",
                 "--response", str(curves), "--stability", "5", "--seed", "1", "--output",
                 str(plan_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    stable = summary["choice_stability"]
    assert stable["draws"] == 5 and 0 < stable["mean"] <= 1
    units = pl.read_csv(plan_file)
    people = units.filter(pl.col("pool").is_null())["choice_stability"]
    assert stable["mean"] == pytest.approx(people.mean())
    assert summary["uncertainty_draws"] == 0  # --stability alone does not re-value
    assert main(["allocate", "--example", "--example-size", "300", "--stability", "3",
                 "--cost", "segment-spend-table"]) == 2
    assert "--stability: needs a response-curve cost strategy" in capsys.readouterr().err


def test_values_from_transactions_are_drawn_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["allocate", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--time-unit", "week", "--budget", "1000", "--stability", "4",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the default response is fixed: only the BG/NBD and Gamma-Gamma draws move the choices
    assert 0 < summary["choice_stability"]["mean"] < 1
    assert not any(n.startswith("stability:") for n in summary["notes"])


def test_the_summary_message_carries_the_current_plan_and_stability_figures() -> None:
    from engine.api.equity_engine.v1 import result_pb2
    from engine.service import wire

    result = _stability(1.0, draws=3)
    summary = result.summary
    summary.current_gain_interval = {"p5": 1.0, "p50": 2.0, "p95": 3.5}
    summary.probability_beats_current = 0.75
    msg = wire.summary_to_proto(summary)
    again = result_pb2.PlanSummary.FromString(msg.SerializeToString())
    back = wire.summary_from_proto(again)
    assert back.current_gain_interval == summary.current_gain_interval
    assert back.probability_beats_current == 0.75
    assert back.choice_stability == summary.choice_stability
    assert back.choice_stability["draws"] == 3.0
    empty = wire.summary_from_proto(wire.summary_to_proto(dataclasses.replace(
        summary, probability_beats_current=None, choice_stability={})))
    assert empty.probability_beats_current is None and empty.choice_stability == {}
