"""Closed forms of customer value: margin multipliers and spend-response curves.

Timing convention (README, "Model"): spend for a period is paid at its start (t = 0, 1, ...)
while the customer is still active; margins net of cost-to-serve arrive at its end
(t = 1, 2, ...), each conditional on the customer having survived to it. With no spend this
is Gupta & Lehmann's CLV, sum_{t=1..H} (m - c) r^t / (1 + d)^t, which for H = infinity is
(m - c) r / (1 + d - r).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.errors import InvalidInputError

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Valuation:
    """How future cash flows are discounted; shared by every strategy of one run.

    ``horizon`` is the number of periods valued, ``None`` for an infinite horizon;
    ``margin_growth`` is the per-period growth of the net margin (not of spend).
    """

    discount_rate: float = 0.10
    horizon: int | None = None
    margin_growth: float = 0.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.discount_rate) or not 0 <= self.discount_rate <= 10:
            raise InvalidInputError.single("plan.discount_rate", "must be a number in [0, 10]")
        if self.horizon is not None and not 1 <= self.horizon <= 10_000:
            raise InvalidInputError.single(
                "plan.horizon", "must be 1 to 10000 periods (omit for infinite)"
            )
        if not np.isfinite(self.margin_growth) or not -1 < self.margin_growth <= 10:
            raise InvalidInputError.single("plan.margin_growth", "must be a number in (-1, 10]")
        if self.horizon is None and self.margin_growth >= self.discount_rate:
            raise InvalidInputError.single(
                "plan.margin_growth",
                "must be below the discount rate when the horizon is infinite "
                "(otherwise customer value is unbounded)",
            )


def _geometric(ratio: Array, periods: int | None) -> Array:
    """sum_{k=0}^{periods-1} ratio^k, elementwise; ``None`` means an infinite sum (ratio < 1)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if periods is None:
        return 1.0 / (1.0 - ratio)
    out = np.empty_like(ratio)
    near_one = np.abs(1.0 - ratio) < 1e-12
    out[near_one] = float(periods)
    r = ratio[~near_one]
    out[~near_one] = (1.0 - r**periods) / (1.0 - r)
    return out


def margin_multiplier(retention: ArrayLike, valuation: Valuation) -> Array:
    """Equity of one unit of per-period net margin from a customer active now.

    sum_{t=1..H} r^t (1+g)^(t-1) / (1+d)^t; with g = 0 and H infinite, r / (1 + d - r).
    """
    q = np.asarray(retention, dtype=np.float64) / (1.0 + valuation.discount_rate)
    return q * _geometric(q * (1.0 + valuation.margin_growth), valuation.horizon)


def spend_multiplier(retention: ArrayLike, valuation: Valuation) -> Array:
    """Present value of paying one unit per period while the customer stays: sum_{t=0..H-1} q^t."""
    q = np.asarray(retention, dtype=np.float64) / (1.0 + valuation.discount_rate)
    return _geometric(q, valuation.horizon)


def customer_equity(
    net_margin: ArrayLike, retention: ArrayLike, spend: ArrayLike, valuation: Valuation
) -> Array:
    """Equity of an existing customer kept at ``spend`` per period, net of that spend."""
    r = np.asarray(retention, dtype=np.float64)
    return np.asarray(net_margin) * margin_multiplier(r, valuation) - np.asarray(
        spend
    ) * spend_multiplier(r, valuation)


def new_customer_equity(net_margin: ArrayLike, retention: ArrayLike, valuation: Valuation) -> Array:
    """Equity of a customer acquired now: first margin at t = 1 for sure, then retention.

    (m - c) sum_{t=1..H} r^(t-1) (1+g)^(t-1) / (1+d)^t; H infinite, g = 0: (m - c) / (1 + d - r).
    """
    q = np.asarray(retention, dtype=np.float64) / (1.0 + valuation.discount_rate)
    growth = _geometric(q * (1.0 + valuation.margin_growth), valuation.horizon)
    return np.asarray(net_margin) * growth / (1.0 + valuation.discount_rate)


def retention_response(
    spend: ArrayLike, baseline: ArrayLike, ceiling: ArrayLike, response: ArrayLike
) -> Array:
    """Blattberg & Deighton: r(s) = r0 + (r_ceil - r0)(1 - exp(-k s)), diminishing returns."""
    s = np.asarray(spend, dtype=np.float64)
    r0 = np.asarray(baseline, dtype=np.float64)
    return r0 + (np.asarray(ceiling) - r0) * -np.expm1(-np.asarray(response) * s)


def acquisition_response(spend: ArrayLike, ceiling: ArrayLike, response: ArrayLike) -> Array:
    """Share of a prospect pool acquired at ``spend`` per prospect: a_ceil (1 - exp(-k A))."""
    s = np.asarray(spend, dtype=np.float64)
    return np.asarray(ceiling) * -np.expm1(-np.asarray(response) * s)


def return_on_customer(
    equity_before: ArrayLike, equity_after: ArrayLike, spend: ArrayLike, discount_rate: float
) -> Array:
    """Peppers & Rogers' ROC over the coming period, from the plan's valuation.

    ROC = (cash flow of the period + change in customer equity) / customer equity at start.
    With spend S paid now and the plan's equity E (net of S, at t = 0), what the period
    returns at t = 1, cash flow plus the customers' remaining equity, is (1 + d)(E + S);
    the period's cash flow also carries the outlay S. Hence
    ROC = ((1 + d)(E + S) - S - E0) / E0, which equals d when nothing changes (E = E0, S = 0):
    a firm that merely keeps its customers earns its cost of capital on them. Rows with
    E0 <= 0 (prospects) have no ROC of their own (NaN); aggregate them before dividing.
    """
    e0 = np.asarray(equity_before, dtype=np.float64)
    e1 = np.asarray(equity_after, dtype=np.float64)
    s = np.asarray(spend, dtype=np.float64)
    numerator = (1.0 + discount_rate) * (e1 + s) - s - e0
    # divided only where E0 > 0 (no warnings to silence), NaN elsewhere
    return np.divide(numerator, e0, out=np.full(numerator.shape, np.nan), where=e0 > 0)
