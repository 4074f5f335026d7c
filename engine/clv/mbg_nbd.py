"""MBG/NBD purchase model (Batislam, Denizel & Filiztekin 2007).

BG/NBD with one change: a customer may also drop out right after the first purchase, so a
customer without repeat purchases is not certainly alive. Purchases at rate
lambda ~ Gamma(r, alpha), dropout after each purchase (the first included) with probability
p ~ Beta(a, b):

    L = G(r+x) alpha^r / G(r) B(a, b+x+1) / B(a, b)
        [ (alpha+T)^-(r+x) + a/(b+x) (alpha+t_x)^-(r+x) ]
    P(alive) = 1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))

Given alive at T the posterior is lambda ~ Gamma(r+x, alpha+T), p ~ Beta(a, b+x+1), so

    E_alive(t) = (a+b+x)/(a-1) [1 - (1-z)^(a-1) 2F1(a+b-r, a-1; a+b+x; z)],  z = t/(alpha+T+t)

(the paper's (1-z)^(r+x) 2F1(r+x, b+x+1; a+b+x; z) after Euler's transformation, as in
engine.clv.bgnbd), E[Y(t) | x, t_x, T] = P(alive) E_alive(t) and E[X(t)] = b/(a+b) E_alive(t)
at x = 0, T = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, expit, gammaln, hyp2f1

from engine.clv.bgnbd import MIN_CUSTOMERS, sufficient_statistics
from engine.clv.models import ModelFit, fit_model
from engine.clv.transactions import validate_rfm
from engine.errors import InvalidInputError

Array = NDArray[np.float64]
PARAM_NAMES = ("r", "alpha", "a", "b")
_A_NEAR_ONE = 1e-6


def _log_odds_dead(theta: ArrayLike, x: Array, tx: Array, T: Array) -> Array:
    """ln[a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)]: log-odds of having dropped out."""
    r, alpha, a, b = (float(v) for v in np.asarray(theta, dtype=np.float64))
    return np.asarray(
        np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    )


def log_likelihood(theta: ArrayLike, x: Array, tx: Array, T: Array, w: Array) -> float:
    r, alpha, a, b = (float(v) for v in np.asarray(theta, dtype=np.float64))
    d = _log_odds_dead(theta, x, tx, T)
    ll = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + betaln(a, b + x + 1.0)
        - betaln(a, b)
        - (r + x) * np.log(alpha + T)
        + np.logaddexp(0.0, d)
    )
    return float(np.einsum("i,i->", w, ll))


@dataclass(frozen=True)
class MBGNBDFit:
    fit: ModelFit

    def as_dict(self) -> dict[str, Any]:
        return self.fit.as_dict()

    @property
    def theta(self) -> tuple[float, ...]:
        return tuple(self.fit.params.values())

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        x = np.asarray(frequency, dtype=np.float64)
        return np.asarray(
            expit(
                -_log_odds_dead(
                    self.theta, x, np.asarray(recency, dtype=np.float64), np.asarray(T, float)
                )
            )
        )

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        return self.p_alive(frequency, recency, T) * expected_purchases_alive(
            self.theta, t, frequency, T
        )

    def expected_purchases(self, t: ArrayLike) -> Array:
        t = np.asarray(t, dtype=np.float64)
        a, b = self.fit.params["a"], self.fit.params["b"]
        zero = np.zeros_like(t)
        return b / (a + b) * expected_purchases_alive(self.theta, t, zero, zero)


def expected_purchases_alive(
    theta: ArrayLike, t: ArrayLike, frequency: ArrayLike, T: ArrayLike
) -> Array:
    r, alpha, a, b = (float(v) for v in np.asarray(theta, dtype=np.float64))
    if abs(a - 1.0) < _A_NEAR_ONE:  # removable singularity: interpolate across it
        lo, hi = 1.0 - 2 * _A_NEAR_ONE, 1.0 + 2 * _A_NEAR_ONE
        f_lo = expected_purchases_alive((r, alpha, lo, b), t, frequency, T)
        f_hi = expected_purchases_alive((r, alpha, hi, b), t, frequency, T)
        return f_lo + (a - lo) / (hi - lo) * (f_hi - f_lo)
    x = np.asarray(frequency, dtype=np.float64)
    at = alpha + np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    log1mz = np.log(at) - np.log(at + t)
    f = hyp2f1(a + b - r, a - 1.0, a + b + x, t / (at + t))
    bracket = -np.expm1((a - 1.0) * log1mz + np.log(f))
    return np.asarray((a + b + x) / (a - 1.0) * bracket, dtype=np.float64)


def fit_mbg_nbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> MBGNBDFit:
    """Maximum-likelihood MBG/NBD on (frequency, recency, T); distinct rows weighted."""
    rfm = pl.DataFrame(
        {
            "frequency": np.asarray(frequency, dtype=np.float64),
            "recency": np.asarray(recency, dtype=np.float64),
            "T": np.asarray(T, dtype=np.float64),
        }
    )
    validate_rfm(rfm)
    x, tx, t_age, w = sufficient_statistics(rfm["frequency"], rfm["recency"], rfm["T"])
    n = float(w.sum())
    if n < MIN_CUSTOMERS or not np.any(x > 0):
        raise InvalidInputError.single(
            "transactions",
            f"MBG/NBD needs at least {MIN_CUSTOMERS} customers and one repeat purchase",
        )
    rate = float(np.dot(w, x)) / max(float(np.dot(w, t_age)), 1e-12)
    start = (1.0, 1.0 / max(rate, 1e-12), 1.0, 1.0)
    fit = fit_model(
        "MBG/NBD", lambda th: log_likelihood(th, x, tx, t_age, w), start, PARAM_NAMES, n
    )
    return MBGNBDFit(fit)


def fit_mbg_nbd_rfm(rfm: pl.DataFrame) -> MBGNBDFit:
    return fit_mbg_nbd(rfm["frequency"], rfm["recency"], rfm["T"])
