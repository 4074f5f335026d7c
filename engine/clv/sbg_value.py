"""sBG customers into allocation: per-customer value, margin and retention (docs/clv.md).

A subscriber who has made n renewals (n + 1 payments; tenure n + 1 periods) and is active
has churn probability theta ~ Beta(alpha, beta + n) (the posterior), so

    renewal probability  p_n = S(n+1)/S(n) = (beta + n) / (alpha + beta + n)
    CLV_n = payment * sum_{k=1..H} (1+g)^(k-1) delta^k S(n+k)/S(n)

with payments at the end of each period as in the engine's valuation (delta = 1/(1+d)). For
an infinite horizon, with q = delta (1+g) < 1,

    CLV_n = payment * delta * p_n * 2F1(1, beta+n+1; alpha+beta+n+1; q)

(S(n+1+k)/S(n+1) = (beta+n+1)_k / (alpha+beta+n+1)_k, a Gauss series). The bridge matches
the sBG stream as the BG/NBD bridge does (engine.clv.value): margin * retention = payment *
p_n (the next period) and margin * margin_multiplier(retention) = CLV_n (the total), so
``retention`` is the effective geometric retention of the rising sBG retention curve, at
least p_n. ``bridge="next"`` instead gives retention = p_n and margin = payment (the
geometric approximation, which undervalues long-tenure customers).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import hyp2f1

from engine.clv.value import effective_retention
from engine.valuation import Valuation

Array = NDArray[np.float64]


def renewal_probability(alpha: float, beta: float, renewals: ArrayLike) -> Array:
    """p_n = (beta + n) / (alpha + beta + n): an active customer with n renewals renews."""
    n = np.asarray(renewals, dtype=np.float64)
    return np.asarray((beta + n) / (alpha + beta + n))


def residual_ratio(alpha: float, beta: float, renewals: ArrayLike, valuation: Valuation) -> Array:
    """rho_n = CLV_n / (payment * p_n): the discounted stream per unit of next period's value.

    Computed once per distinct n. Finite horizons sum the H terms by the recursion
    S(n+k+1)/S(n+k) = p_{n+k}, a loop over periods vectorised over distinct n.
    """
    n = np.asarray(renewals, dtype=np.float64)
    distinct, inverse = np.unique(n, return_inverse=True)
    delta = 1.0 / (1.0 + valuation.discount_rate)
    q = delta * (1.0 + valuation.margin_growth)
    if valuation.horizon is None:
        rho = delta * hyp2f1(1.0, beta + distinct + 1.0, alpha + beta + distinct + 1.0, q)
    else:
        term = np.full(distinct.shape, delta)
        rho = term.copy()
        for k in range(1, valuation.horizon):
            term = term * q * (beta + distinct + k) / (alpha + beta + distinct + k)
            rho = rho + term
    return np.asarray(rho, dtype=np.float64)[inverse.reshape(n.shape)]


def customer_values(
    alpha: float,
    beta: float,
    renewals: ArrayLike,
    payment: ArrayLike,
    valuation: Valuation,
    bridge: str = "exact",
) -> dict[str, Array]:
    """Per customer (active ones; the caller zeroes churned ones): ``renewal_probability``,
    ``clv`` (the sBG's, whatever the bridge), ``margin`` and ``retention`` for the engine's
    valuation."""
    pay = np.asarray(payment, dtype=np.float64)
    p = renewal_probability(alpha, beta, renewals)
    rho = residual_ratio(alpha, beta, renewals, valuation)
    clv = pay * p * rho
    if bridge == "next" or valuation.horizon == 1:  # one period: p_n reproduces it exactly
        retention = np.minimum(p, np.nextafter(1.0, 0.0))
        margin = pay.copy()
    else:
        retention = effective_retention(rho, valuation)
        safe = np.where(retention > 0, retention, 1.0)
        margin = np.where(retention > 0, pay * p / safe, 0.0)
    return {"renewal_probability": p, "clv": clv, "margin": margin, "retention": retention}
