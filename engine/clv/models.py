"""What every purchase-model fit shares: the result type, the drivers and distinct rows.

BG/NBD, Pareto/NBD and MBG/NBD have analytic gradients over distinct (x, t_x, T) rows and
fit large samples as BG/NBD does (:func:`fit_rows`): a fit on a random sample of customers,
then Newton steps on the full data with the sample's Hessian, a Hessian of the full data at
the optimum and the driver's checks (interior optimum, zero gradient, positive-definite
Hessian). Small models (sBG, BG/BB) maximise their vectorised log-likelihood with a
central-difference gradient in log-parameters (:func:`fit_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from engine.clv.bgnbd import (
    MIN_CUSTOMERS,
    WARM_START_SAMPLE,
    MLEResult,
    codes,
    maximize_log_likelihood,
    sufficient_statistics,
    warm_start,
    warm_start_sample,
)
from engine.clv.transactions import validate_rfm
from engine.errors import InvalidInputError

Array = NDArray[np.float64]
_FD_STEP = 1e-6  # relative step of the central differences (in log-parameters)


@dataclass(frozen=True)
class ModelFit:
    """A converged maximum-likelihood fit: parameters, standard errors, covariance."""

    model: str
    params: dict[str, float]
    log_likelihood: float
    standard_errors: dict[str, float]
    n_customers: int
    iterations: int
    converged: bool = True
    covariance: list[list[float]] = field(default_factory=list)

    @property
    def aic(self) -> float:
        return 2.0 * len(self.params) - 2.0 * self.log_likelihood

    @property
    def bic(self) -> float:
        return len(self.params) * float(np.log(max(self.n_customers, 1))) - 2.0 * (
            self.log_likelihood
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.params,
            "log_likelihood": self.log_likelihood,
            "aic": self.aic,
            "standard_errors": dict(self.standard_errors),
            "converged": self.converged,
            "customers": self.n_customers,
            "iterations": self.iterations,
        }

    def draws(self, n: int, seed: int = 0) -> Array:
        """``n`` parameter vectors from the asymptotic normal distribution of the estimate,
        drawn on log-parameters (delta method) so every draw stays positive."""
        theta = np.array(list(self.params.values()))
        cov = np.asarray(self.covariance) / np.outer(theta, theta)
        rng = np.random.default_rng(seed)
        return np.asarray(
            theta * np.exp(rng.multivariate_normal(np.zeros(theta.size), cov, size=n))
        )


def with_numerical_gradient(
    loglik: Callable[[Array], float],
) -> Callable[[Array], tuple[float, Array]]:
    """(log-likelihood, central-difference gradient) from a log-likelihood alone."""

    def both(theta: Array) -> tuple[float, Array]:
        theta = np.asarray(theta, dtype=np.float64)
        ll = loglik(theta)
        grad = np.empty(theta.size)
        for j in range(theta.size):  # over parameters (at most four), not customers
            h = _FD_STEP * theta[j]
            up, down = theta.copy(), theta.copy()
            up[j] += h
            down[j] -= h
            grad[j] = (loglik(up) - loglik(down)) / (2.0 * h)
        return ll, grad

    return both


def fit_model(
    model: str,
    loglik: Callable[[Array], float],
    start: Sequence[float],
    names: Sequence[str],
    n_customers: float,
) -> ModelFit:
    """Maximise ``loglik`` over positive parameters; raises ``ModelFitError`` if it fails."""
    res: MLEResult = maximize_log_likelihood(
        model,
        with_numerical_gradient(loglik),
        np.asarray(start, dtype=np.float64),
        names,
        n_customers,
    )
    return model_fit(model, res, names, n_customers)


class RowLikelihood(Protocol):
    """A log-likelihood over distinct rows with weights: ``n`` customers, ``loglik(theta)``
    returning (value, gradient)."""

    n: float

    def loglik(self, theta: Array) -> tuple[float, Array]: ...


def fit_rows(
    model: str,
    make: Callable[[Array, Array, Array, Array], RowLikelihood],
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    start: Sequence[float],
    names: Sequence[str],
    sample: int = WARM_START_SAMPLE,
) -> tuple[MLEResult, RowLikelihood]:
    """Fit ``make(x, t_x, T, weights)`` on distinct rows; above 4 ``sample`` customers, start
    from a fit on ``sample`` random customers and its Hessian (scaled per customer)."""
    x_all = np.asarray(frequency, dtype=np.float64)
    tx_all = np.asarray(recency, dtype=np.float64)
    t_all = np.asarray(T, dtype=np.float64)
    data = make(*sufficient_statistics(x_all, tx_all, t_all))
    theta0 = np.asarray(start, dtype=np.float64)
    hessian = None
    if data.n > 4 * sample:
        mask = warm_start_sample(x_all.size, sample).to_numpy()
        sub = make(*sufficient_statistics(x_all[mask], tx_all[mask], t_all[mask]))
        theta0, hessian = warm_start(model, sub, theta0, names)
    res = maximize_log_likelihood(
        model, data.loglik, theta0, names, data.n, hessian=hessian, central=hessian is None
    )
    return res, data


def model_fit(model: str, res: MLEResult, names: Sequence[str], n_customers: float) -> ModelFit:
    return ModelFit(
        model=model,
        params=dict(zip(names, (float(v) for v in res.params), strict=True)),
        log_likelihood=res.log_likelihood,
        standard_errors=dict(zip(names, (float(s) for s in res.standard_errors), strict=True)),
        n_customers=int(n_customers),
        iterations=res.iterations,
        covariance=res.covariance.tolist(),
    )


def distinct_pairs(a: Array, b: Array) -> tuple[Array, Array, NDArray[np.intp]]:
    """Distinct (a, b) pairs and each row's index into them."""
    ua, ia = codes(a)
    ub, ib = codes(b)
    code = ia.astype(np.int64) * ub.size + ib
    if ua.size * ub.size <= 4 * code.size + 1_000_000:  # a dense table of the codes
        seen = np.zeros(ua.size * ub.size, dtype=bool)
        seen[code] = True
        present = np.flatnonzero(seen)
        inv = (np.cumsum(seen) - 1)[code]
    else:
        present, inv = np.unique(code, return_inverse=True)
    return ua[present // ub.size], ub[present % ub.size], inv.reshape(-1)


@dataclass(frozen=True)
class RfmData:
    """Validated (frequency, recency, T) arrays of a purchase model's fit, with the
    purchase rate that seeds its starting point."""

    frequency: Array
    recency: Array
    T: Array

    @property
    def customers(self) -> float:
        return float(self.frequency.size)

    @property
    def rate(self) -> float:
        """Repeat purchases per unit of time over the whole base (> 0)."""
        return max(float(self.frequency.sum()) / max(float(self.T.sum()), 1e-12), 1e-12)


def checked_rfm(model: str, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> RfmData:
    """The inputs of a purchase model's fit, validated (rows named), with enough customers
    and at least one repeat purchase to identify the model."""
    rfm = pl.DataFrame(
        {
            "frequency": np.asarray(frequency, dtype=np.float64),
            "recency": np.asarray(recency, dtype=np.float64),
            "T": np.asarray(T, dtype=np.float64),
        }
    )
    validate_rfm(rfm)
    data = RfmData(rfm["frequency"].to_numpy(), rfm["recency"].to_numpy(), rfm["T"].to_numpy())
    if data.customers < MIN_CUSTOMERS or not np.any(data.frequency > 0):
        raise InvalidInputError.single(
            "transactions",
            f"{model} needs at least {MIN_CUSTOMERS} customers and one repeat purchase",
        )
    return data

