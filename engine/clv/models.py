"""What every purchase-model fit shares: the result type and the numerical-gradient driver.

BG/NBD has an analytic gradient (engine.clv.bgnbd). The models added beside it (Pareto/NBD,
MBG/NBD, BG/BB, sBG) maximise their vectorised log-likelihood with a central-difference
gradient in log-parameters: the parameters are four at most, so a gradient costs eight
likelihood evaluations over the distinct rows, and the driver's checks (interior optimum,
zero gradient, positive-definite Hessian) and standard errors are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.clv.bgnbd import MLEResult, maximize_log_likelihood

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
    return ModelFit(
        model=model,
        params=dict(zip(names, (float(v) for v in res.params), strict=True)),
        log_likelihood=res.log_likelihood,
        standard_errors=dict(zip(names, (float(s) for s in res.standard_errors), strict=True)),
        n_customers=int(n_customers),
        iterations=res.iterations,
        covariance=res.covariance.tolist(),
    )
