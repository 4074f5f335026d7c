"""Gamma-Gamma: published CDNOW estimates, the likelihood written out, posterior mean spend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate

from engine.clv.bgnbd import ModelFitError
from engine.clv.gamma_gamma import (
    GammaGammaParams,
    _SpendData,
    conditional_expected_spend,
    fit_gamma_gamma,
    fit_gamma_gamma_rfm,
    population_mean_spend,
)
from engine.clv.transactions import load_rfm
from engine.errors import InvalidInputError

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    rfm, _ = load_rfm(CDNOW, "1997-09-30", "week")
    return rfm


def test_cdnow_reproduces_fader_hardie(cdnow: pl.DataFrame) -> None:
    fit = fit_gamma_gamma_rfm(cdnow)
    assert fit.converged and fit.n_customers == 946
    assert (round(fit.p, 2), round(fit.q, 2), round(fit.gamma, 2)) == (6.25, 3.74, 15.44)
    assert all(0 < fit.standard_errors[k] < getattr(fit, k) for k in ("p", "q", "gamma"))
    # Population mean spend p gamma / (q - 1): about $35 per repeat transaction.
    assert fit.population_mean_spend == pytest.approx(6.25 * 15.44 / 2.74, rel=2e-3)


def naive_loglik(th: GammaGammaParams, x: int, m: float) -> float:
    """Fader & Hardie's density of the mean of x Gamma(p, nu) values, nu ~ Gamma(q, gamma)."""
    p, q, g = th.p, th.q, th.gamma
    return (
        math.lgamma(p * x + q)
        - math.lgamma(p * x)
        - math.lgamma(q)
        + q * math.log(g)
        + (p * x - 1) * math.log(m)
        + p * x * math.log(x)
        - (p * x + q) * math.log(g + m * x)
    )


def test_loglik_and_gradient(cdnow: pl.DataFrame) -> None:
    rep = cdnow.filter(pl.col("frequency") > 0)
    x = rep["spend_frequency"].to_numpy().astype(float)
    m = rep["monetary"].to_numpy()
    data = _SpendData(x, m)
    theta = np.array([4.0, 2.5, 20.0])
    ll, grad = data.loglik(theta)
    naive = sum(
        naive_loglik(GammaGammaParams(*theta), int(a), b) for a, b in zip(x, m, strict=True)
    )
    assert ll == pytest.approx(naive, rel=1e-12)
    for j in range(3):
        h = 1e-6 * theta[j]
        e = np.eye(3)[j] * h
        fd = (data.loglik(theta + e)[0] - data.loglik(theta - e)[0]) / (2 * h)
        assert grad[j] == pytest.approx(fd, rel=1e-6)


def test_density_integrates_to_one() -> None:
    """The density the likelihood uses is a proper density of the mean spend m."""
    th = GammaGammaParams(6.25, 3.74, 15.44)
    for x in (1, 3, 12):
        total = integrate.quad(lambda m, x=x: math.exp(naive_loglik(th, x, m)), 0, np.inf)[0]
        assert total == pytest.approx(1.0, rel=1e-8)


def test_expected_spend_is_the_posterior_mean() -> None:
    """E[M | x, m] = E[p / nu | data], nu | data ~ Gamma(px + q, gamma + m x), by quadrature."""
    th = GammaGammaParams(6.25, 3.74, 15.44)
    for x, m in [(1, 10.0), (2, 22.345), (26, 39.97), (5, 250.0)]:
        shape, rate = th.p * x + th.q, th.gamma + m * x

        def post(nu: float, shape: float = shape, rate: float = rate) -> float:
            return math.exp(
                shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * math.log(nu) - rate * nu
            )

        want = integrate.quad(lambda nu: th.p / nu * post(nu), 0, np.inf, epsrel=1e-11)[0]
        got = float(conditional_expected_spend(th, x, m))
        assert got == pytest.approx(want, rel=1e-9)
        # A credibility-weighted mix of the population mean and the customer's own mean.
        pop = population_mean_spend(th)
        assert min(pop, m) <= got <= max(pop, m)
    assert conditional_expected_spend(th, [0, 0], [np.nan, 55.0]) == pytest.approx(
        [population_mean_spend(th)] * 2
    )


def test_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(3)
    truth = GammaGammaParams(4.0, 5.0, 30.0)
    n = 30_000
    x = rng.integers(1, 15, n)
    nu = rng.gamma(truth.q, 1 / truth.gamma, n)
    m = rng.gamma(truth.p * x, 1 / nu) / x  # mean of x Gamma(p, nu) values
    fit = fit_gamma_gamma(x, m)
    for name in ("p", "q", "gamma"):
        z = (getattr(fit, name) - getattr(truth, name)) / fit.standard_errors[name]
        assert abs(z) < 4, (name, z)


def test_only_repeaters_enter_the_fit(cdnow: pl.DataFrame) -> None:
    x = cdnow["spend_frequency"].to_numpy()
    m = cdnow["monetary"].fill_null(0.0).to_numpy()
    full = fit_gamma_gamma(x, m)
    only = fit_gamma_gamma(x[x > 0], m[x > 0])
    assert full.log_likelihood == pytest.approx(only.log_likelihood, rel=1e-12)
    assert full.p == pytest.approx(only.p, rel=1e-8)


def test_bad_spend_names_the_rows() -> None:
    with pytest.raises(InvalidInputError) as err:
        fit_gamma_gamma([1, 2, 0, 3, 1], [10.0, 0.0, 0.0, -4.0, np.nan])
    assert [(v.field, v.row) for v in err.value.violations] == [
        ("rfm.monetary", 1),
        ("rfm.monetary", 3),
        ("rfm.monetary", 4),
    ]
    with pytest.raises(InvalidInputError, match="at least 3"):
        fit_gamma_gamma([1, 0, 0], [5.0, 0.0, 0.0])


def test_degenerate_fits_raise() -> None:
    # Everybody spends exactly the same: no spread to attribute to p or q.
    with pytest.raises(ModelFitError, match="did not converge"):
        fit_gamma_gamma([1, 2, 3, 4, 5] * 20, [10.0] * 100)
    with pytest.raises(ModelFitError, match=r"q = 0\.9"):
        population_mean_spend(GammaGammaParams(2.0, 0.9, 5.0))
