"""Customers valued with Pareto/NBD or MBG/NBD x Gamma-Gamma (item: "CLV valued with the other
purchase models"): the discounted stream equals a brute-force sum over 40,000 periods, the
bridge reproduces the CLV, BG/NBD stays bit for bit what it was, and the metric plugin, the
CLI and FitClv choose the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli.clv import main
from engine.clv.value import clv_from_transactions, stream_alive
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.valuation import Valuation

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CAL = "1997-09-30"


@pytest.mark.parametrize("model", ["pareto-nbd", "mbg-nbd"])
def test_stream_is_the_brute_force_sum(cdnow: pl.DataFrame, model: str) -> None:
    result = clv_from_transactions(cdnow, CAL, "week", model=model)
    assert result.valued is not None
    stream = result.valued.alive_stream()
    x = np.array([0.0, 1.0, 5.0, 20.0])
    t_age = np.array([30.0, 38.0, 25.0, 35.0])
    for valuation in (result.valuation, Valuation(0.01, 30)):
        first, dert = stream_alive(stream, x, t_age, valuation, 2.0)
        k = np.arange(0, (valuation.horizon or 40_000) + 1, dtype=np.float64)
        disc = (1.0 / (1.0 + valuation.discount_rate)) ** k[1:]
        brute = [float(np.diff(stream.expected(2.0 * k, xi, ti)) @ disc)
                 for xi, ti in zip(x, t_age, strict=True)]
        assert dert == pytest.approx(brute, rel=1e-9)
        assert first == pytest.approx(stream.expected(np.full(4, 2.0), x, t_age), rel=1e-15)
    # the rate is the derivative of the expected purchases
    s, h = np.array([0.5, 3.0, 40.0, 900.0]), 1e-4
    slope = (stream.expected(s + h, x, t_age) - stream.expected(s - h, x, t_age)) / (2 * h)
    assert stream.rate(s, x, t_age) == pytest.approx(slope, rel=1e-6)


@pytest.mark.parametrize("model", ["pareto-nbd", "mbg-nbd"])
def test_customers_valued_with_the_model(cdnow: pl.DataFrame, model: str) -> None:
    bg = clv_from_transactions(cdnow, CAL, "week")
    other = clv_from_transactions(cdnow, CAL, "week", model=model)
    assert other.valued is not None
    c, rfm = other.customers, other.rfm
    x, tx, t_age = (rfm[k].cast(pl.Float64).to_numpy() for k in ("frequency", "recency", "T"))
    assert np.array_equal(c["p_alive"].to_numpy(), other.valued.p_alive(x, tx, t_age))
    # the bridge: margin * r / (1 + d - r) is the CLV (infinite horizon, no growth)
    d = other.valuation.discount_rate
    r = c["retention"].to_numpy()
    assert c["margin"].to_numpy() * r / (1.0 + d - r) == pytest.approx(
        c["clv"].to_numpy(), rel=1e-9)
    assert np.all((r >= 0) & (r < 1))
    # spend is the same Gamma-Gamma; the purchase model changes the values
    assert np.array_equal(c["expected_spend"].to_numpy(), bg.customers["expected_spend"].to_numpy())
    ratio = c["clv"].sum() / bg.customers["clv"].sum()
    assert 0.6 < ratio < 1.4 and ratio != 1.0
    assert other.summary()["clv"]["model"] == model
    assert bg.summary()["clv"]["model"] == "bgnbd"


def test_bgnbd_values_are_unchanged_by_the_default(cdnow: pl.DataFrame) -> None:
    explicit = clv_from_transactions(cdnow, CAL, "week", model="bgnbd").customers
    assert explicit.equals(clv_from_transactions(cdnow, CAL, "week").customers)
    with pytest.raises(InvalidInputError) as err:
        clv_from_transactions(cdnow, CAL, "week", model="pareto")
    assert err.value.violations[0].field == "model"


def test_metric_plugin_values_with_the_model(cdnow: pl.DataFrame) -> None:
    def clv(model: str) -> pl.DataFrame:
        plan = Plan(total_budget=2000.0, metric=StrategyChoice(
            "bgnbd", {"calibration_end": CAL, "model": model}))
        units = allocate(Portfolio(transactions=cdnow), plan).units
        return units.select("customer_id", "clv").sort("customer_id")

    pareto = clv("pareto-nbd")
    direct = clv_from_transactions(cdnow, CAL, "week", Valuation(0.10), 365.25 / 7,
                                   model="pareto-nbd").customers.sort("customer_id")
    assert pareto["clv"].to_numpy() == pytest.approx(direct["clv"].to_numpy(), rel=1e-12)
    assert not np.allclose(pareto["clv"].to_numpy(), clv("bgnbd")["clv"].to_numpy(), rtol=1e-3)


def test_cli_value_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "customers.csv"
    code = main(["clv", "--transactions", str(CDNOW), "--calibration-end", CAL,
                 "--value-model", "mbg-nbd", "--json", "--output", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["clv"]["model"] == "mbg-nbd"
    assert doc["mbg_nbd"]["r"] == pytest.approx(0.525, rel=2e-3)
    assert [row["model"] for row in doc["comparison"]] == ["bgnbd", "mbg_nbd"]
    table = pl.read_csv(out)
    assert table["p_alive"].to_list() == pytest.approx(table["mbg_nbd_p_alive"].to_list())
