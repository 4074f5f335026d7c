"""Per-customer intervals from parameter uncertainty (BG/NBD x Gamma-Gamma).

The maximum-likelihood estimates are asymptotically normal with the inverse-Hessian
covariance the fits report. Drawing parameter vectors from that distribution (on
log-parameters, so every draw is positive; the two models' estimates are independent, as
their likelihoods share no parameter) and recomputing P(alive), expected purchases and CLV
for each draw gives per-customer intervals that say how much of a customer's figure is
estimation noise: a customer with a long history has a narrow P(alive) interval, a
one-time buyer in a small sample a wide one. Intervals are quantiles over the draws.

Cost: per draw, the per-customer P(alive) and expected spend (vectorised over customers) and
the expected stream per distinct (x, T) (as for the point estimate); quantiles are taken in
chunks of customers so memory stays bounded. A loop over draws, never over customers.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.clv.bgnbd import BGNBDFit, BGNBDParams, expected_purchases_alive, p_alive
from engine.clv.gamma_gamma import GammaGammaFit, GammaGammaParams, conditional_expected_spend
from engine.clv.value import _distinct, stream_alive
from engine.errors import InvalidInputError
from engine.valuation import Valuation

Array = NDArray[np.float64]
_CHUNK = 20_000  # customers per quantile block


def _draws(theta: Array, covariance: list[list[float]], n: int, rng: np.random.Generator) -> Array:
    cov = np.asarray(covariance) / np.outer(theta, theta)
    return np.asarray(theta * np.exp(rng.multivariate_normal(np.zeros(theta.size), cov, size=n)))


def customer_intervals(
    rfm: pl.DataFrame,
    bgnbd: BGNBDFit,
    gamma_gamma: GammaGammaFit,
    valuation: Valuation,
    period_length: float,
    margin_ratio: float,
    prediction_horizon: float,
    draws: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> pl.DataFrame:
    """``p_alive``, ``expected_purchases`` and ``clv`` with ``_lower``/``_upper`` bounds."""
    if draws < 10:
        raise InvalidInputError.single("intervals", f"need at least 10 draws, got {draws}")
    if not 0 < level < 1:
        raise InvalidInputError.single("interval_level", f"must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    bg = _draws(np.array([bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b]), bgnbd.covariance, draws, rng)
    gg = _draws(
        np.array([gamma_gamma.p, gamma_gamma.q, gamma_gamma.gamma]),
        gamma_gamma.covariance,
        draws,
        rng,
    )
    gg[:, 1] = np.maximum(gg[:, 1], 1.0 + 1e-6)  # q > 1: a finite mean spend in every draw
    x = rfm["frequency"].cast(pl.Float64).to_numpy()
    tx = rfm["recency"].cast(pl.Float64).to_numpy()
    t_age = rfm["T"].cast(pl.Float64).to_numpy()
    monetary = rfm["monetary"].cast(pl.Float64).fill_null(0.0).to_numpy()
    spend_col = "spend_frequency" if "spend_frequency" in rfm.columns else "frequency"
    spend_x = rfm[spend_col].cast(pl.Float64).to_numpy()
    xu, tu, inv = _distinct(x, t_age)
    purchases_u = np.empty((draws, xu.size))
    dert_u = np.empty((draws, xu.size))
    for k in range(draws):  # a loop over parameter draws; each step is vectorised
        params = BGNBDParams(*bg[k])
        purchases_u[k] = expected_purchases_alive(
            params, np.full(xu.size, prediction_horizon), xu, tu
        )
        dert_u[k] = stream_alive(params, xu, tu, valuation, period_length)[1]
    q = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    out = {f"{m}_{b}": np.empty(x.size) for m in ("p_alive", "expected_purchases", "clv")
           for b in ("lower", "upper")}  # fmt: skip
    for lo in range(0, x.size, _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        alive = np.stack([p_alive(BGNBDParams(*bg[k]), x[sl], tx[sl], t_age[sl])
                          for k in range(draws)])  # fmt: skip
        spend = np.stack(
            [
                conditional_expected_spend(GammaGammaParams(*gg[k]), spend_x[sl], monetary[sl])
                for k in range(draws)
            ]
        )
        purchases = alive * purchases_u[:, inv[sl]]
        clv = margin_ratio * spend * alive * dert_u[:, inv[sl]]
        for name, values in (("p_alive", alive), ("expected_purchases", purchases), ("clv", clv)):
            bounds = np.quantile(values, q, axis=0)
            out[f"{name}_lower"][sl] = bounds[0]
            out[f"{name}_upper"][sl] = bounds[1]
    return pl.DataFrame(out)
