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
