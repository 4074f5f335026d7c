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
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from engine.clv.bgnbd import BGNBDParams, inner
from engine.clv.models import ModelFit, checked_rfm, codes, fit_rows, model_fit
from engine.clv.streams import BGNBDStream

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


class _Data:
    """The log-likelihood over distinct rows with weights and its analytic gradient, as
    engine.clv.bgnbd: terms in x or T alone summed over their distinct values, softplus(d)
    per row (every row: one-time buyers may have dropped out too)."""

    def __init__(self, x: Array, tx: Array, T: Array, w: Array) -> None:
        self.n = float(w.sum())
        self.w = w
        self.x = x
        self.xs, self.xi = codes(x)
        self.w_x = np.bincount(self.xi, weights=w, minlength=self.xs.size)
        self.ts, self.ti = codes(T)
        self.w_t = np.bincount(self.ti, weights=w, minlength=self.ts.size)
        self.wx_t = np.bincount(self.ti, weights=w * x, minlength=self.ts.size)
        self.txs, self.txi = codes(tx)

    def loglik(self, theta: ArrayLike) -> tuple[float, Array]:
        r, alpha, a, b = (float(v) for v in np.asarray(theta, dtype=np.float64))
        xs, n = self.xs, self.n
        log_at, inv_at = np.log(alpha + self.ts), 1.0 / (alpha + self.ts)
        log_atx, inv_atx = np.log(alpha + self.txs), 1.0 / (alpha + self.txs)
        psi_abx = digamma(a + b + xs + 1.0)
        psi_ab = digamma(a + b)
        ll = (
            inner(self.w_x, gammaln(r + xs) + betaln(a, b + xs + 1.0))
            + n * (r * np.log(alpha) - gammaln(r) - betaln(a, b))
            - inner(r * self.w_t + self.wx_t, log_at)
        )
        g = np.array(
            [
                inner(self.w_x, digamma(r + xs))
                + n * (np.log(alpha) - digamma(r))
                - inner(self.w_t, log_at),
                n * r / alpha - inner(r * self.w_t + self.wx_t, inv_at),
                inner(self.w_x, psi_ab - psi_abx),
                inner(self.w_x, digamma(b + xs + 1.0) - psi_abx - digamma(b) + psi_ab),
            ]
        )
        rx = r + self.x
        dlog = log_at[self.ti] - log_atx[self.txi]
        d = (np.log(a) - np.log(b + xs))[self.xi] + rx * dlog
        e = np.exp(-np.abs(d))
        ll += inner(self.w, np.maximum(d, 0.0) + np.log1p(e))
        sig = self.w * np.where(d >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
        g[0] += inner(sig, dlog)
        g[1] += inner(sig * rx, inv_at[self.ti] - inv_atx[self.txi])
        g[2] += float(sig.sum()) / a
        g[3] -= inner(np.bincount(self.xi, weights=sig, minlength=xs.size), 1.0 / (b + xs))
        return float(ll), g


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

    def alive_stream(self) -> BGNBDStream:
        """Expected purchases of a customer alive now, for CLV (engine.clv.value): given
        alive, p ~ Beta(a, b+x+1), which is BG/NBD's posterior with b + 1."""
        r, alpha, a, b = self.theta
        return BGNBDStream(BGNBDParams(r, alpha, a, b + 1.0))


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
    data = checked_rfm("MBG/NBD", frequency, recency, T)
    start = (1.0, 1.0 / data.rate, 1.0, 1.0)
    res, _ = fit_rows("MBG/NBD", _Data, data.frequency, data.recency, data.T, start, PARAM_NAMES)
    return MBGNBDFit(model_fit("MBG/NBD", res, PARAM_NAMES, data.customers))


def fit_mbg_nbd_rfm(rfm: pl.DataFrame) -> MBGNBDFit:
    return fit_mbg_nbd(rfm["frequency"], rfm["recency"], rfm["T"])
