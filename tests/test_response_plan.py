"""Response curves in the plan: how a segment's curve applies to each customer's own
baseline, pools, the plan message, and ``equity allocate --response``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.errors import InvalidInputError
from engine.pipeline import build_model
from engine.plan import Plan, ResponseCurve
from engine.portfolio import Portfolio
from engine.response.curves import lift
from engine.response.experiments import simulate
from engine.response.files import curves_from_document
from engine.valuation import customer_equity, new_customer_equity

LEVELS = (0.0, 5.0, 10.0)
CUSTOMERS = pl.DataFrame({
    "customer_id": [1, 2, 3, 4],
    "segment": ["gold", "gold", "silver", "bronze"],
    "margin": [100.0, 60.0, 80.0, 50.0],
    "retention": [0.8, 0.5, 0.7, 0.6],
})
PROSPECTS = pl.DataFrame({
    "segment": ["gold", "bronze"], "prospects": [1000.0, 500.0],
    "acquisition_ceiling": [0.3, 0.3], "acquisition_response": [0.05, 0.05],
    "margin": [40.0, 30.0], "retention": [0.6, 0.5],
})
GOLD = ResponseCurve("gold", "retention", base=0.6, ceiling=0.8, k=0.1)  # closes half the gap
SILVER = ResponseCurve("silver", "retention", base=0.5, ceiling=0.9, k=0.2, model="hill",
                       shape=2.0)
POOL = ResponseCurve("gold", "acquisition", base=0.0, ceiling=0.12, k=0.3)


def _values(plan: Plan) -> np.ndarray:
    model = build_model(Portfolio(CUSTOMERS, PROSPECTS), plan)
    return model.options.value.reshape(-1, len(LEVELS))


def test_a_segment_curve_closes_its_share_of_each_customers_own_gap() -> None:
    plan = Plan(retention_levels=LEVELS, acquisition_levels=LEVELS,
                response_curves=(GOLD, SILVER, POOL))
    values = _values(plan)
    s = np.array(LEVELS)
    valuation = plan.valuation
    for row, r0, margin in ((0, 0.8, 100.0), (1, 0.5, 60.0)):  # gold: share 0.5 of 1 - r0
        r = r0 + 0.5 * (1 - r0) * (1 - np.exp(-0.1 * s))
        assert np.allclose(values[row], customer_equity(margin, r, s, valuation))
    r = 0.7 + 0.8 * 0.3 * lift("hill", s, 0.2, 2.0)  # silver: hill, share 0.4 / 0.5
    assert np.allclose(values[2], customer_equity(80.0, r, s, valuation))
    default = 0.6 + 0.3 * 0.4 * (1 - np.exp(-0.05 * s))  # bronze: the cost defaults
    assert np.allclose(values[3], customer_equity(50.0, default, s, valuation))
    pool = 1000 * (0.12 * (1 - np.exp(-0.3 * s)) * new_customer_equity(40.0, 0.6, valuation) - s)
    assert np.allclose(values[4], pool)
    without = _values(Plan(retention_levels=LEVELS, acquisition_levels=LEVELS))
    assert np.allclose(values[3], without[3]) and np.allclose(values[5], without[5])
    assert not np.allclose(values[:3], without[:3])


def test_curves_travel_in_the_plan_message_and_are_checked() -> None:
    plan = Plan(response_curves=(GOLD, SILVER, POOL))
    assert Plan.from_json(plan.to_json()).response_curves == plan.response_curves
    bad = Plan(response_curves=(GOLD, ResponseCurve("gold", "retention", 0.9, 0.8, -1.0)))
    with pytest.raises(InvalidInputError) as info:
        bad.validate()
    fields = {v.field for v in info.value.violations}
    assert fields == {"plan.response_curves[1].ceiling", "plan.response_curves[1].k",
                      "plan.response_curves[1]"}


def test_the_fit_document_becomes_fitted_curves_and_bad_entries_are_named() -> None:
    curves = curves_from_document({"curves": [
        {"segment": "a", "kind": "retention", "model": "exponential", "base": 0.5,
         "ceiling": 0.7, "k": 0.1, "shape": None, "parameters": ["base", "ceiling", "k"],
         "covariance": [[1e-4, 0, 0], [0, 1e-4, 0], [0, 0, 1e-4]]},
        {"segment": "b", "kind": "acquisition", "ceiling": 0.2, "k": 0.1}]})
    assert [c.source for c in curves] == ["fitted", "file"]
    with pytest.raises(InvalidInputError) as info:
        curves_from_document({"curves": [{"segment": "a", "kind": "retention", "base": 0.5,
                                          "ceiling": "high", "k": 0.1}]})
    assert str(info.value).startswith("curves.curves[0].ceiling: must be a number")


def test_allocate_with_fitted_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers, prospects = tmp_path / "customers.csv", tmp_path / "prospects.csv"
    CUSTOMERS.write_csv(customers)
    PROSPECTS.write_csv(prospects)
    experiments = tmp_path / "experiments.csv"
    simulate({("gold", "retention"): {"base": 0.6, "ceiling": 0.8, "k": 0.1},
              ("gold", "acquisition"): {"ceiling": 0.12, "k": 0.3}},
             {"retention": (0, 5, 10, 20, 40), "acquisition": (0, 1, 2, 5, 10)}, 3000,
             seed=2).write_csv(experiments)
    curves = tmp_path / "curves.json"
    assert main(["fit-response", "--experiments", str(experiments), "--output",
                 str(curves)]) == 0
    capsys.readouterr()
    common = ["allocate", "--customers", str(customers), "--prospects", str(prospects),
              "--budget", "3000", "--json"]
    assert main(common) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*common, "--response", str(curves)]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["equity_before"] == pytest.approx(plain["equity_before"])
    assert fitted["equity_gain"] != pytest.approx(plain["equity_gain"])
    assert main([*common, "--response", str(tmp_path / "missing.json")]) == 2
    assert "--response: cannot read" in capsys.readouterr().err


CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"


def test_every_plan_states_where_its_responses_came_from() -> None:
    from engine.pipeline import allocate

    plan = Plan(retention_levels=LEVELS, acquisition_levels=LEVELS,
                response_curves=(ResponseCurve("gold", "retention", 0.6, 0.8, 0.1,
                                               covariance=(1e-4, 0, 0, 0, 1e-4, 0, 0, 0, 1e-4)),
                                 SILVER))
    summary = allocate(Portfolio(CUSTOMERS, PROSPECTS), plan).summary
    sources = {(r["segment"], r["kind"]): (r["source"], r["model"], r["defaults"])
               for r in summary.assumptions["responses"]}
    assert sources == {
        ("gold", "retention"): ("fitted", "exponential", []),
        ("silver", "retention"): ("file", "hill", []),
        ("bronze", "retention"): ("default", "exponential", ["ceiling_share", "response"]),
        ("gold", "acquisition"): ("file", "exponential", []),
        ("bronze", "acquisition"): ("file", "exponential", [])}
    assert summary.assumptions["valuation"] == {
        "period_days": None, "period": "the period of the input's margin and retention",
        "discount_rate_per_period": 0.1, "horizon_periods": None,
        "margin_growth_per_period": 0.0}
    assert any(n.startswith("response: 1 segment(s) (bronze)") for n in summary.notes)
    with_columns = CUSTOMERS.with_columns(retention_ceiling=pl.col("retention") + 0.1,
                                          retention_response=pl.lit(0.1))
    summary = allocate(Portfolio(with_columns, None), Plan()).summary
    assert {r["source"] for r in summary.assumptions["responses"]} == {"file"}
    assert not any(n.startswith("response:") for n in summary.notes)


def test_transactions_warn_of_default_curves_and_state_the_clv_basis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["allocate", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
            "--budget", "1000", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert captured.err.startswith("warning: response: 1 segment(s) ((all)) use the default")
    assert summary["assumptions"]["valuation"]["period"] == "365.25 days"
    basis = next(n for n in summary["notes"] if n.startswith("valuation:"))
    assert "--period-length 52.1786" in basis
    # the note's claim: `equity clv` on that basis gives the values allocate uses
    assert main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--period-length", "52.1786", "--json"]) == 0
    clv = json.loads(capsys.readouterr().out)
    assert clv["clv"]["mean"] == pytest.approx(summary["equity_before"] / 2357, rel=1e-3)


def test_assumptions_and_uncertainty_cross_the_wire() -> None:
    import dataclasses

    from engine.pipeline import allocate
    from engine.service import wire

    plan = Plan(retention_levels=LEVELS, acquisition_levels=LEVELS, response_curves=(GOLD,))
    summary = allocate(Portfolio(CUSTOMERS, PROSPECTS), plan).summary
    summary = dataclasses.replace(summary, equity_gain_interval={"p5": 1.0, "p50": 2.0,
                                                                 "p95": 3.0},
                                  probability_beats_nothing=0.9, uncertainty_draws=200)
    back = wire.summary_from_proto(wire.summary_to_proto(summary))
    for name in ("assumptions", "equity_gain_interval", "probability_beats_nothing",
                 "uncertainty_draws", "notes"):
        assert back[name] == summary[name], name
    plain = dataclasses.replace(summary, assumptions={}, equity_gain_interval={},
                                probability_beats_nothing=None, uncertainty_draws=0)
    back = wire.summary_from_proto(wire.summary_to_proto(plain))
    assert back["assumptions"] == {} and back["probability_beats_nothing"] is None
