"""Per-customer intervals from parameter uncertainty (draws from the asymptotic covariance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.clv.bgnbd import BGNBDParams, p_alive
from engine.clv.intervals import _draws, customer_intervals
from engine.clv.value import CLVResult, clv_from_transactions
from engine.errors import InvalidInputError
from engine.valuation import Valuation

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
VALUATION = Valuation(discount_rate=0.002, horizon=52)


@pytest.fixture(scope="module")
def result() -> CLVResult:
    return clv_from_transactions(CDNOW, "1997-09-30", "week", VALUATION, prediction_horizon=39.0)


def intervals(
    result: CLVResult, draws: int = 40, level: float = 0.9, seed: int = 0
) -> pl.DataFrame:
    return customer_intervals(
        result.rfm, result.bgnbd, result.gamma_gamma, VALUATION, 1.0, 1.0, 39.0,
        draws=draws, level=level, seed=seed,
    )  # fmt: skip


def test_draws_have_the_fitted_covariance(result: CLVResult) -> None:
    bg = result.bgnbd
    theta = np.array([bg.r, bg.alpha, bg.a, bg.b])
    d = _draws(theta, bg.covariance, 40_000, np.random.default_rng(1))
    assert np.all(d > 0)
    # Log-normal draws: the delta-method covariance to first order (relative SEs ~ 5-30%).
    assert np.std(d, axis=0) == pytest.approx(np.sqrt(np.diag(bg.covariance)), rel=0.08)
    assert np.median(d, axis=0) == pytest.approx(theta, rel=0.01)


def test_intervals_bracket_the_estimates(result: CLVResult) -> None:
    iv = intervals(result)
    c = result.customers
    assert iv.height == c.height
    for name in ("p_alive", "expected_purchases", "clv"):
        lower, upper = iv[f"{name}_lower"].to_numpy(), iv[f"{name}_upper"].to_numpy()
        point = c[name].to_numpy()
        assert np.all(lower <= upper)
        inside = (lower <= point * (1 + 1e-9)) & (point <= upper * (1 + 1e-9))
        assert inside.mean() > 0.97  # a 90% interval of a smooth function of the estimate
    # One-time buyers are alive for sure under BG/NBD: no uncertainty in P(alive).
    once = (c["frequency"] == 0).to_numpy()
    assert np.all(iv["p_alive_lower"].to_numpy()[once] == 1.0)
    # Customer 0001 (x = 2): P(alive) varies with the parameters.
    lo, hi = iv.row(0, named=True)["p_alive_lower"], iv.row(0, named=True)["p_alive_upper"]
    assert lo < c["p_alive"][0] < hi
    # By hand for customer 0001: the quantiles of P(alive) over the same draws.
    rng = np.random.default_rng(0)
    bg = result.bgnbd
    d = _draws(np.array([bg.r, bg.alpha, bg.a, bg.b]), bg.covariance, 40, rng)
    by_hand = [p_alive(BGNBDParams(*row), 2.0, 30.428571428571427, 38.857142857142854) for row in d]
    assert np.quantile(by_hand, [0.05, 0.95]) == pytest.approx([lo, hi], rel=1e-9)


def test_level_and_seed(result: CLVResult) -> None:
    narrow = intervals(result, level=0.5)
    wide = intervals(result, level=0.95)
    assert np.all(
        (wide["clv_upper"] - wide["clv_lower"]).to_numpy()
        >= (narrow["clv_upper"] - narrow["clv_lower"]).to_numpy()
    )
    assert intervals(result, seed=3).equals(intervals(result, seed=3))
    with pytest.raises(InvalidInputError, match="interval_level"):
        intervals(result, level=1.0)
    with pytest.raises(InvalidInputError, match="draws"):
        intervals(result, draws=2)


def test_cli_writes_intervals(tmp_path: Path) -> None:
    from engine.cli.clv import main

    out = tmp_path / "customers.csv"
    code = main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--horizon", "52", "--discount-rate", "0.002", "--intervals", "20",
                 "--output", str(out), "--json"])  # fmt: skip
    assert code == 0
    table = pl.read_csv(out, schema_overrides={"customer_id": pl.String})
    assert {"clv_lower", "clv_upper", "p_alive_lower", "expected_purchases_upper"} <= set(
        table.columns
    )
    assert (table["clv_lower"] <= table["clv_upper"]).all()
