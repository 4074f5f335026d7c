"""Pareto/NBD purchase model (Schmittlein, Morrison & Colombo 1987; Fader, Hardie & Lee 2005).

While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha) and lives an
exponential lifetime with rate mu ~ Gamma(s, beta). With x repeat purchases, the last at
t_x, observed for T (Fader & Hardie's implementation note, 2005):

    L = G(r+x) alpha^r beta^s / G(r) [ (alpha+T)^-(r+x) (beta+T)^-s + s/(r+s+x) A0 ]
    A0 = F(t_x) - F(T),  F(y) = 2F1(r+s+x, s+1; r+s+x+1; (alpha-beta)/(alpha+y))
                                 / (alpha+y)^(r+s+x)                       (alpha >= beta)
                         F(y) = 2F1(r+s+x, r+x; r+s+x+1; (beta-alpha)/(beta+y))
                                 / (beta+y)^(r+s+x)                        (alpha < beta)

computed in logs (log-sum-exp; the difference A0 as F(t_x) (1 - e^(ln F(T) - ln F(t_x)))).
s/(r+s+x) A0 equals s int_{t_x}^T (alpha+y)^-(r+x) (beta+y)^-(s+1) dy, the probability of
dying unseen after t_x; the tests check the closed form against that integral.

P(alive) = 1 / (1 + s/(r+s+x) (alpha+T)^(r+x) (beta+T)^s A0), and given alive at T the
posterior is lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T), so

    E[Y(t) | alive] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)]

(log(1 + t/(beta+T)) (r+x)(beta+T)/(alpha+T) at s = 1), and E[X(t)] is that at x = 0, T = 0.

Fit (:class:`_Data`). ln F depends on (x, y) only, so the 2F1 is evaluated once per distinct
(x, t_x) and (x, T) pair (about 37,000 at a million customers, against 736,000 distinct
rows); its derivatives in alpha and beta go through d/dz 2F1(a, b; c; z) = ab/c
2F1(a+1, b+1; c+1; z), those in its parameters by central differences on the pair table.
Per row there remain a few exponentials and logarithms and the chain rule, whose weights
are summed back onto the pairs (bincount) before the product with the pair derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln, hyp2f1

from engine.clv.bgnbd import inner
from engine.clv.models import ModelFit, checked_rfm, codes, distinct_pairs, fit_rows, model_fit

Array = NDArray[np.float64]
PARAM_NAMES = ("r", "alpha", "s", "beta")


def _log_f(r: float, alpha: float, s: float, beta: float, x: Array, y: Array) -> Array:
    """ln F(y) of the module docstring, vectorised over rows."""
    rsx = r + s + x
    if alpha >= beta:
        base = alpha + y
        f = hyp2f1(rsx, s + 1.0, rsx + 1.0, (alpha - beta) / base)
    else:
        base = beta + y
        f = hyp2f1(rsx, r + x, rsx + 1.0, (beta - alpha) / base)
    return np.asarray(np.log(f) - rsx * np.log(base), dtype=np.float64)


def _log_terms(theta: ArrayLike, x: Array, tx: Array, T: Array) -> tuple[Array, Array, Array]:
    """(constant, ln of the 'alive at T' term, ln of the 'died after t_x' term) per row."""
    r, alpha, s, beta = (float(v) for v in np.asarray(theta, dtype=np.float64))
    const = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    f_tx = _log_f(r, alpha, s, beta, x, tx)
    f_t = _log_f(r, alpha, s, beta, x, T)
    with np.errstate(divide="ignore"):  # t_x = T: the customer cannot have died unseen
        dead = np.log(s) - np.log(r + s + x) + f_tx + np.log(-np.expm1(np.minimum(f_t - f_tx, 0.0)))
    return const, alive, dead


def log_likelihood(theta: ArrayLike, x: Array, tx: Array, T: Array, w: Array) -> float:
    """Weighted Pareto/NBD log-likelihood over rows (x, t_x, T) with weights ``w``."""
    const, alive, dead = _log_terms(theta, x, tx, T)
    return float(np.einsum("i,i->", w, const + np.logaddexp(alive, dead)))


_FD = 1e-5  # relative step of the 2F1's parameter derivatives


class _Data:
    """The log-likelihood over distinct rows (x, t_x, T) with weights, and its gradient."""

    def __init__(self, x: Array, tx: Array, T: Array, w: Array) -> None:
        self.n = float(w.sum())
        self.w = w
        self.x = x
        self.xs, self.xi = codes(x)
        self.w_x = np.bincount(self.xi, weights=w, minlength=self.xs.size)
        px, py, inv = distinct_pairs(np.concatenate([x, x]), np.concatenate([tx, T]))
        self.px, self.py = px, py
        self.i1, self.i2 = inv[: x.size], inv[x.size :]

    def pair_terms(self, theta: Array) -> tuple[Array, Array]:
        """ln F at every distinct pair and its gradient in (r, alpha, s, beta), 4 x pairs."""
        r, alpha, s, beta = (float(v) for v in theta)
        x, y = self.px, self.py
        A = r + s + x
        if alpha >= beta:
            b, base, other = np.full(x.shape, s + 1.0), alpha + y, beta + y
        else:
            b, base, other = r + x, beta + y, alpha + y
        z = np.abs(alpha - beta) / base
        f = hyp2f1(A, b, A + 1.0, z)
        ha, hb = _FD * A, _FD * b
        d_a = np.log(hyp2f1(A + ha, b, A + 1.0 + ha, z) / hyp2f1(A - ha, b, A + 1.0 - ha, z)) / (
            2.0 * ha
        )
        d_b = np.log(hyp2f1(A, b + hb, A + 1.0, z) / hyp2f1(A, b - hb, A + 1.0, z)) / (2.0 * hb)
        d_z = A * b / (A + 1.0) * hyp2f1(A + 1.0, b + 1.0, A + 2.0, z) / f
        log_base = np.log(base)
        d_a = d_a - log_base
        d_own = d_z * other / base**2 - A / base  # the parameter in the base: alpha or beta
        d_other = -d_z / base
        if alpha >= beta:
            grad = np.stack([d_a, d_own, d_a + d_b, d_other])
        else:
            grad = np.stack([d_a + d_b, d_other, d_a, d_own])
        return np.log(f) - A * log_base, grad

    def loglik(self, theta: ArrayLike) -> tuple[float, Array]:
        with np.errstate(divide="ignore"):  # t_x = T: ln(0) dead term, no unseen death
            return self._loglik(np.asarray(theta, dtype=np.float64))

    def _loglik(self, th: Array) -> tuple[float, Array]:
        r, alpha, s, beta = (float(v) for v in th)
        lnf, dlnf = self.pair_terms(th)
        xs, n = self.xs, self.n
        ll = inner(self.w_x, gammaln(r + xs)) + n * (
            r * np.log(alpha) + s * np.log(beta) - gammaln(r)
        )
        grad = np.array(
            [
                inner(self.w_x, digamma(r + xs)) + n * (np.log(alpha) - digamma(r)),
                n * r / alpha,
                n * np.log(beta),
                n * s / beta,
            ]
        )
        px, py = self.px, self.py
        log_a, log_b = np.log(alpha + py), np.log(beta + py)
        alive = (-(r + px) * log_a - s * log_b)[self.i2]
        k_x = (np.log(s) - np.log(r + s + xs))[self.xi]
        f1 = lnf[self.i1]
        e = np.exp(np.minimum(lnf[self.i2] - f1, 0.0))  # F(T)/F(t_x) <= 1
        v = k_x + f1 - alive + np.log1p(-e)  # ln(dead / alive); -inf when t_x = T
        ev = np.exp(-np.abs(v))
        ll += inner(self.w, alive + np.maximum(v, 0.0) + np.log1p(ev))
        pi = self.w * np.where(v >= 0.0, 1.0 / (1.0 + ev), ev / (1.0 + ev))  # w P(dead)
        c = np.where(e < 1.0, e / (1.0 - e), 0.0)
        m = px.size
        on_pairs = np.bincount(self.i1, weights=pi * (1.0 + c), minlength=m) - np.bincount(
            self.i2, weights=pi * c, minlength=m
        )
        grad += np.einsum("kp,p->k", dlnf, on_pairs)
        w_alive = np.bincount(self.i2, weights=self.w - pi, minlength=m)
        grad -= np.array(
            [
                inner(w_alive, log_a),
                inner(w_alive, (r + px) / (alpha + py)),
                inner(w_alive, log_b),
                inner(w_alive, s / (beta + py)),
            ]
        )
        q = inner(np.bincount(self.xi, weights=pi, minlength=xs.size), 1.0 / (r + s + xs))
        grad[0] -= q
        grad[2] += float(pi.sum()) / s - q
        return float(ll), grad


@dataclass(frozen=True)
class ParetoNBDFit:
    fit: ModelFit

    @property
    def r(self) -> float:
        return self.fit.params["r"]

    @property
    def alpha(self) -> float:
        return self.fit.params["alpha"]

    @property
    def s(self) -> float:
        return self.fit.params["s"]

    @property
    def beta(self) -> float:
        return self.fit.params["beta"]

    def as_dict(self) -> dict[str, Any]:
        return self.fit.as_dict()

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        return p_alive(tuple(self.fit.params.values()), frequency, recency, T)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        theta = tuple(self.fit.params.values())
        return p_alive(theta, frequency, recency, T) * expected_purchases_alive(
            theta, t, frequency, T
        )

    def expected_purchases(self, t: ArrayLike) -> Array:
        t = np.asarray(t, dtype=np.float64)
        zero = np.zeros_like(t)
        return expected_purchases_alive(tuple(self.fit.params.values()), t, zero, zero)

    def alive_stream(self) -> ParetoNBDStream:
        """Expected purchases of a customer alive now, for CLV (engine.clv.value)."""
        return ParetoNBDStream(tuple(self.fit.params.values()))


@dataclass(frozen=True)
class ParetoNBDStream:
    """E[Y(t) | alive at T] and its rate (r+x)/(alpha+T) ((beta+T)/(beta+T+s))^s."""

    theta: tuple[float, ...]

    def expected(self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array:
        return expected_purchases_alive(self.theta, t, frequency, T)

    def rate(self, s: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> Array:
        r, alpha, shape, beta = self.theta
        t_age = np.asarray(T, dtype=np.float64)
        bt = beta + t_age
        ahead = np.log1p(np.asarray(s, dtype=np.float64) / bt)
        x = np.asarray(frequency, dtype=np.float64)
        return np.asarray((r + x) / (alpha + t_age) * np.exp(-shape * ahead), dtype=np.float64)


def fit_pareto_nbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> ParetoNBDFit:
    """Maximum-likelihood Pareto/NBD on (frequency, recency, T); distinct rows weighted."""
    data = checked_rfm("Pareto/NBD", frequency, recency, T)
    start = (1.0, 1.0 / data.rate, 1.0, float(data.T.sum()) / data.customers)
    res, _ = fit_rows(
        "Pareto/NBD", _Data, data.frequency, data.recency, data.T, start, PARAM_NAMES
    )
    return ParetoNBDFit(model_fit("Pareto/NBD", res, PARAM_NAMES, data.customers))


def fit_pareto_nbd_rfm(rfm: pl.DataFrame) -> ParetoNBDFit:
    return fit_pareto_nbd(rfm["frequency"], rfm["recency"], rfm["T"])


def p_alive(theta: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.broadcast_to(np.asarray(recency, dtype=np.float64), x.shape)
    t_age = np.broadcast_to(np.asarray(T, dtype=np.float64), x.shape)
    _, alive, dead = _log_terms(theta, x, tx, t_age)
    return np.asarray(np.exp(alive - np.logaddexp(alive, dead)), dtype=np.float64)


def expected_purchases_alive(
    theta: ArrayLike, t: ArrayLike, frequency: ArrayLike, T: ArrayLike
) -> Array:
    """E[purchases in (T, T+t] | alive at T, x repeats]; depends on (x, T) only."""
    r, alpha, s, beta = (float(v) for v in np.asarray(theta, dtype=np.float64))
    x = np.asarray(frequency, dtype=np.float64)
    bt = beta + np.asarray(T, dtype=np.float64)
    u = np.log1p(np.asarray(t, dtype=np.float64) / bt)
    shape = u if abs(s - 1.0) < 1e-9 else -np.expm1(-(s - 1.0) * u) / (s - 1.0)
    return np.asarray((r + x) * bt / (alpha + np.asarray(T, dtype=np.float64)) * shape)
