"""Gamma-Gamma spend model (Fader & Hardie 2013 note; Colombo & Jiang 1999).

Each transaction's value is Gamma(p, nu); nu varies across customers as Gamma(q, gamma). A
customer with x repeat transactions averaging m contributes

    ln f = ln G(px+q) - ln G(px) - ln G(q) + q ln gamma + (px-1) ln m + px ln x
           - (px+q) ln(gamma + m x)

and E[M | x, m] = (gamma + m x) p / (px + q - 1): a credibility-weighted mix of the
population mean p gamma / (q - 1) and the customer's own mean. Only customers with x > 0
enter the fit; one-time buyers get the population mean. The gammaln terms depend on x only,
so they are summed once per distinct x with weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln

from engine.clv.bgnbd import (
    WARM_START_SAMPLE,
    ModelFitError,
    inner,
    maximize_log_likelihood,
    warm_start,
    warm_start_sample,
)
from engine.errors import FieldViolation, InvalidInputError

Array = NDArray[np.float64]
PARAM_NAMES = ("p", "q", "gamma")
MAX_ROWS_NAMED = 20


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class GammaGammaFit:
    p: float
    q: float
    gamma: float
    log_likelihood: float
    standard_errors: dict[str, float]
    n_customers: int
    iterations: int
    converged: bool = True
    covariance: list[list[float]] = field(default_factory=list)

    @property
    def params(self) -> GammaGammaParams:
        return GammaGammaParams(self.p, self.q, self.gamma)

    @property
    def population_mean_spend(self) -> float:
        return population_mean_spend(self.params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "q": self.q,
            "gamma": self.gamma,
            "log_likelihood": self.log_likelihood,
            "standard_errors": dict(self.standard_errors),
            "converged": self.converged,
            "customers": self.n_customers,
            "population_mean_spend": self.population_mean_spend,
            "iterations": self.iterations,
        }

    def conditional_expected_spend(self, frequency: ArrayLike, monetary: ArrayLike) -> Array:
        return conditional_expected_spend(self.params, frequency, monetary)


class _SpendData:
    """Sufficient statistics of the repeaters: per-x counts and per-customer totals."""

    def __init__(self, x: Array, m: Array) -> None:
        xs, counts = np.unique(x, return_counts=True)
        self.xs = xs
        self.counts = counts.astype(np.float64)
        self.x = x
        self.total = m * x  # s_i = m_i x_i
        self.n = float(x.size)
        self.a_term = float(np.sum(x * np.log(self.total)))  # sum x ln(m x), multiplies p
        self.b_term = float(np.sum(np.log(m)))  # sum ln m

    def loglik(self, theta: Array) -> tuple[float, Array]:
        p, q, g = (float(v) for v in theta)
        px = p * self.xs
        log_gs = np.log(g + self.total)
        ll = (
            inner(self.counts, gammaln(px + q) - gammaln(px))
            - self.n * gammaln(q)
            + self.n * q * np.log(g)
            + p * self.a_term
            - self.b_term
            - inner(p * self.x + q, log_gs)
        )
        psi_pxq = digamma(px + q)
        g_p = (
            inner(self.counts, self.xs * (psi_pxq - digamma(px)))
            + self.a_term
            - inner(self.x, log_gs)
        )
        g_q = inner(self.counts, psi_pxq) - self.n * digamma(q) + self.n * np.log(g) - log_gs.sum()
        g_g = self.n * q / g - np.sum((p * self.x + q) / (g + self.total))
        return float(ll), np.array([g_p, g_q, g_g])


def _repeaters(frequency: ArrayLike, monetary: ArrayLike) -> tuple[Array, Array]:
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    if x.shape != m.shape:
        raise InvalidInputError.single("rfm.monetary", "must have one value per customer")
    bad_x = ~np.isfinite(x) | (x < 0) | (x != np.floor(x))
    problems = [
        FieldViolation("rfm.frequency", "must be an integer >= 0", int(i))
        for i in np.flatnonzero(bad_x)[:MAX_ROWS_NAMED]
    ]
    sel = (x > 0) & ~bad_x
    bad_m = np.flatnonzero(sel & ~(np.isfinite(m) & (m > 0)))
    problems += [
        FieldViolation(
            "rfm.monetary", "repeat customers need a finite mean repeat spend > 0", int(i)
        )
        for i in bad_m[:MAX_ROWS_NAMED]
    ]
    if bad_m.size > MAX_ROWS_NAMED:
        problems.append(
            FieldViolation("rfm.monetary", f"and {bad_m.size - MAX_ROWS_NAMED} more rows")
        )
    if problems:
        raise InvalidInputError(problems)
    return x[sel], m[sel]


def fit_gamma_gamma(frequency: ArrayLike, monetary: ArrayLike) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma on customers with ``frequency > 0``.

    ``frequency`` is the number of repeat transactions whose values ``monetary`` averages
    (``spend_frequency`` of :func:`engine.clv.transactions.rfm_statistics`). Rows with
    frequency 0 are ignored; a repeater without a positive mean spend is an error naming
    the row. Raises :class:`~engine.clv.bgnbd.ModelFitError` when the fit does not converge.
    """
    x, m = _repeaters(frequency, monetary)
    if x.size < 3:
        raise InvalidInputError.single(
            "rfm.monetary",
            f"Gamma-Gamma needs at least 3 customers with repeat spend, got {x.size}",
        )
    data = _SpendData(x, m)
    mean, var = float(m.mean()), float(m.var())
    # Start near the moments: q = 3 keeps the population mean finite, gamma matches it.
    p0 = max(mean**2 / max(var, 1e-12 * mean**2), 0.5)
    start = np.array([p0, 3.0, 2.0 * mean / p0])
    hessian = None
    if x.size > 4 * WARM_START_SAMPLE:  # Newton steps from the optimum of a random sample
        sample = warm_start_sample(x.size).to_numpy()
        sub = _SpendData(x[sample], m[sample])
        start, hessian = warm_start("Gamma-Gamma", sub, start, PARAM_NAMES)
    res = maximize_log_likelihood(
        "Gamma-Gamma", data.loglik, start, PARAM_NAMES, data.n, hessian=hessian,
        central=hessian is None,
    )
    p, q, g = (float(v) for v in res.params)
    return GammaGammaFit(
        p=p,
        q=q,
        gamma=g,
        log_likelihood=res.log_likelihood,
        standard_errors=dict(
            zip(PARAM_NAMES, (float(s) for s in res.standard_errors), strict=True)
        ),
        n_customers=int(data.n),
        iterations=res.iterations,
        covariance=res.covariance.tolist(),
    )


def fit_gamma_gamma_rfm(rfm: pl.DataFrame) -> GammaGammaFit:
    """Fit on a table from :func:`engine.clv.transactions.rfm_statistics`."""
    x_col = "spend_frequency" if "spend_frequency" in rfm.columns else "frequency"
    return fit_gamma_gamma(rfm[x_col].to_numpy(), rfm["monetary"].fill_null(0.0).to_numpy())


def population_mean_spend(params: GammaGammaParams) -> float:
    """E[M] for a customer with no repeat spend observed: p gamma / (q - 1)."""
    if params.q <= 1.0:
        raise ModelFitError(
            "Gamma-Gamma",
            f"q = {params.q:.4g} <= 1: mean spend is infinite, the model does not fit",
        )
    return params.p * params.gamma / (params.q - 1.0)


def conditional_expected_spend(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> Array:
    """E[M | x, m]; the population mean where x = 0 (monetary is then ignored)."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.nan_to_num(np.asarray(monetary, dtype=np.float64), nan=0.0)
    pop = population_mean_spend(params)
    pos = x > 0
    own = (params.gamma + np.where(pos, m, 0.0) * x) * params.p / (params.p * x + params.q - 1.0)
    return np.where(pos, own, pop)
