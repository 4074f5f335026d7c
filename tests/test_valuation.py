"""Closed forms of the model (README, "Model") checked against direct sums."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.valuation import (
    Valuation,
    acquisition_response,
    customer_equity,
    margin_multiplier,
    new_customer_equity,
    retention_response,
    return_on_customer,
)


def direct_equity(m: float, r: float, s: float, d: float, horizon: int, g: float = 0.0) -> float:
    """Sum the cash flows period by period: spend at t = 0..H-1, margins at t = 1..H."""
    total = 0.0
    for t in range(horizon):
        total -= s * r**t / (1 + d) ** t
        total += m * (1 + g) ** t * r ** (t + 1) / (1 + d) ** (t + 1)
    return total


def test_gupta_lehmann_margin_multiplier() -> None:
    assert margin_multiplier(0.8, Valuation(0.12)) == pytest.approx(2.5)
    assert margin_multiplier(0.0, Valuation(0.12)) == pytest.approx(0.0)


@pytest.mark.parametrize("horizon", [1, 3, 10, 40])
def test_finite_horizon_equals_direct_sum(horizon: int) -> None:
    v = Valuation(0.1, horizon, 0.03)
    for m, r, s in [(100.0, 0.8, 0.0), (50.0, 0.6, 5.0), (-20.0, 0.9, 1.0)]:
        assert customer_equity(m, r, s, v) == pytest.approx(
            direct_equity(m, r, s, 0.1, horizon, 0.03)
        )


def test_infinite_horizon_is_the_limit_of_long_horizons() -> None:
    long = customer_equity(80.0, 0.85, 4.0, Valuation(0.1, 2000))
    assert customer_equity(80.0, 0.85, 4.0, Valuation(0.1)) == pytest.approx(long)
    # closed form: (m r - s(1+d)) / (1 + d - r)
    assert float(customer_equity(80.0, 0.85, 4.0, Valuation(0.1))) == pytest.approx(
        (80 * 0.85 - 4 * 1.1) / (1.1 - 0.85)
    )


def test_new_customer_pays_first_margin_for_sure() -> None:
    v = Valuation(0.1)
    # (m - c) / (1 + d - r) for an infinite horizon
    assert float(new_customer_equity(30.0, 0.7, v)) == pytest.approx(30 / 0.4)
    # one period: only the first margin, discounted once
    assert float(new_customer_equity(30.0, 0.7, Valuation(0.1, 1))) == pytest.approx(30 / 1.1)


def test_response_curves() -> None:
    s = np.array([0.0, 10.0, 1e6])
    r = retention_response(s, 0.6, 0.8, 0.1)
    assert r[0] == pytest.approx(0.6)
    assert r[1] == pytest.approx(0.6 + 0.2 * (1 - np.exp(-1.0)))
    assert r[2] == pytest.approx(0.8)
    assert np.all(np.diff(np.diff(retention_response(np.arange(0, 50, 5.0), 0.5, 0.9, 0.05))) < 0)
    a = acquisition_response(s, 0.3, 0.2)
    assert a[0] == 0.0 and a[2] == pytest.approx(0.3)
    assert a[1] == pytest.approx(0.3 * (1 - np.exp(-2.0)))


def test_roc_of_doing_nothing_is_the_discount_rate() -> None:
    v = Valuation(0.12)
    e0 = customer_equity(np.array([50.0, 80.0]), np.array([0.7, 0.9]), 0.0, v)
    assert return_on_customer(e0, e0, 0.0, 0.12) == pytest.approx([0.12, 0.12])


def test_roc_matches_a_one_period_cash_flow_computation() -> None:
    """ROC = (cash flow of the period + change in equity) / equity at start, by hand."""
    m, r0, r1, s, d = 100.0, 0.7, 0.8, 10.0, 0.1
    v = Valuation(d)
    e0 = float(customer_equity(m, r0, 0.0, v))
    e1 = float(customer_equity(m, r1, s, v))
    # The period: spend s now, margin m at t = 1 if the customer stayed (probability r1).
    # At t = 1 a survivor is worth e1 again (stationary infinite horizon, spend continuing).
    cash = r1 * m - s
    equity_end = r1 * e1
    by_hand = (cash + equity_end - e0) / e0
    assert float(return_on_customer(e0, e1, s, d)) == pytest.approx(by_hand)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"discount_rate": -0.1}, "plan.discount_rate"),
        ({"discount_rate": float("nan")}, "plan.discount_rate"),
        ({"horizon": 0}, "plan.horizon"),
        ({"margin_growth": 0.2, "discount_rate": 0.1}, "plan.margin_growth"),
    ],
)
def test_bad_valuation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        Valuation(**kwargs)
    assert err.value.violations[0].field == field
