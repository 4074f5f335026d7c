"""The fast paths of the purchase-model fits: analytic gradients against finite differences of
the likelihoods they replace, the sample-then-Newton route against a direct fit, and the
hypergeometric function near z = 1 against scipy and its Euler integral."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate, special

from engine.clv import mbg_nbd, pareto_nbd
from engine.clv.bgnbd import maximize_log_likelihood, sufficient_statistics
from engine.clv.models import distinct_pairs, fit_rows
from engine.clv.special import hyp2f1_fast
from engine.clv.transactions import load_rfm

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, ...]:
    rfm, _ = load_rfm(CDNOW, "1997-09-30", "week")
    x, tx, t_age, w = sufficient_statistics(rfm["frequency"], rfm["recency"], rfm["T"])
    # a customer whose last purchase is the calibration end: no unseen death possible
    return (np.append(x, 3.0), np.append(tx, 20.0), np.append(t_age, 20.0), np.append(w, 2.0))


def central_differences(f, theta: tuple[float, ...]) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for j in range(len(theta)):
        h = 1e-6 * theta[j]
        up, down = list(theta), list(theta)
        up[j] += h
        down[j] -= h
        out.append((f(up) - f(down)) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("theta", [(0.55, 10.6, 0.61, 11.7), (0.8, 14.0, 1.3, 6.0)])
def test_pareto_nbd_gradient(rows: tuple[np.ndarray, ...], theta: tuple[float, ...]) -> None:
    # alpha < beta and alpha > beta: the two branches of the closed form
    data = pareto_nbd._Data(*rows)
    ll, grad = data.loglik(np.array(theta))
    assert ll == pytest.approx(pareto_nbd.log_likelihood(theta, *rows), rel=1e-12)
    want = central_differences(lambda th: pareto_nbd.log_likelihood(th, *rows), theta)
    assert grad == pytest.approx(want, rel=2e-6, abs=1e-4)


@pytest.mark.parametrize("theta", [(0.52, 6.2, 0.89, 1.6), (1.5, 3.0, 2.5, 0.4)])
def test_mbg_nbd_gradient(rows: tuple[np.ndarray, ...], theta: tuple[float, ...]) -> None:
    data = mbg_nbd._Data(*rows)
    ll, grad = data.loglik(np.array(theta))
    assert ll == pytest.approx(mbg_nbd.log_likelihood(theta, *rows), rel=1e-12)
    want = central_differences(lambda th: mbg_nbd.log_likelihood(th, *rows), theta)
    assert grad == pytest.approx(want, rel=2e-6, abs=1e-4)


def simulate_pareto_nbd(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.8, 1 / 8.0, n)
    mu = rng.gamma(0.7, 1 / 12.0, n)
    t_age = np.round(rng.uniform(10.0, 40.0, n) * 7) / 7
    alive_until = np.minimum(rng.exponential(1 / mu), t_age)
    x = rng.poisson(lam * alive_until).astype(np.float64)
    tx = np.where(x > 0, np.round(alive_until * rng.random(n) ** (1 / np.maximum(x, 1)) * 7) / 7, 0)
    return x, tx, t_age


@pytest.mark.parametrize("model", [pareto_nbd, mbg_nbd])
def test_sample_then_newton_equals_the_direct_fit(model: object) -> None:
    x, tx, t_age = simulate_pareto_nbd(6000, 7)
    names = ("r", "alpha", "s", "beta") if model is pareto_nbd else ("r", "alpha", "a", "b")
    make = model._Data  # type: ignore[attr-defined]
    start = (1.0, 10.0, 1.0, 10.0)
    warm, _ = fit_rows("m", make, x, tx, t_age, start, names, sample=1000)
    direct, _ = fit_rows("m", make, x, tx, t_age, start, names, sample=10**9)
    # both stop at a gradient below 1e-9 per customer: equal to a flat direction's tolerance
    assert warm.params == pytest.approx(direct.params, rel=1e-5)
    assert warm.log_likelihood == pytest.approx(direct.log_likelihood, abs=1e-6)
    # forward-difference Hessian on the warm path, central on the direct one
    assert warm.standard_errors == pytest.approx(direct.standard_errors, rel=1e-3)


def test_newton_with_a_useless_hessian_falls_back_to_lbfgs(rows: tuple[np.ndarray, ...]) -> None:
    data = mbg_nbd._Data(*rows)
    start = np.array([1.0, 5.0, 1.0, 1.0])
    names = ("r", "alpha", "a", "b")
    plain = maximize_log_likelihood("MBG/NBD", data.loglik, start, names, data.n)
    stiff = maximize_log_likelihood(
        "MBG/NBD", data.loglik, start, names, data.n, hessian=np.eye(4) * 1e6
    )
    assert stiff.params == pytest.approx(plain.params, rel=1e-6)
    assert stiff.log_likelihood == pytest.approx(plain.log_likelihood, abs=1e-8)


def test_distinct_pairs() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 30, 5000).astype(np.float64)
    b = np.round(rng.uniform(0, 50, 5000) * 7) / 7
    ua, ub, inv = distinct_pairs(a, b)
    assert np.array_equal(ua[inv], a) and np.array_equal(ub[inv], b)
    assert ua.size == pl.DataFrame({"a": a, "b": b}).unique().height


def euler_integral(a: float, b: float, c: float, z: float) -> float:
    f = lambda t: math.exp(  # noqa: E731
        (b - 1) * math.log(t) + (c - b - 1) * math.log1p(-t) - a * math.log1p(-z * t)
    )
    value = integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-13, limit=500, points=[0.9, 0.99, 0.999])
    return value[0] * math.exp(special.gammaln(c) - special.gammaln(b) - special.gammaln(c - b))


def test_hyp2f1_near_one() -> None:
    # the BG/NBD rate's parameters: a, a + b - r - 1, a + b + x; z up to 1 - 1e-6
    rng = np.random.default_rng(11)
    n = 20_000
    a = rng.uniform(0.2, 3.0, n)
    bb = rng.uniform(0.5, 20.0, n) + rng.integers(0, 30, n)
    r1 = rng.uniform(0.1, 3.0, n) + rng.integers(0, 30, n)
    z = 1.0 - 10.0 ** rng.uniform(-6.0, -0.5, n)
    got = hyp2f1_fast(a, a + bb - r1 - 1.0, a + bb, z)
    assert got == pytest.approx(special.hyp2f1(a, a + bb - r1 - 1.0, a + bb, z), rel=1e-9)
    for args in [(0.79, 1.97, 3.22, 0.9999), (0.79, 1.2, 8.22, 0.995), (2.5, 0.7, 4.0, 0.93)]:
        assert hyp2f1_fast(*args) == pytest.approx(euler_integral(*args), rel=1e-10)
    # c - a - b at an integer: the poles of the connection formula; scipy answers there
    assert hyp2f1_fast(0.5, 1.5, 4.0, 0.999) == pytest.approx(
        euler_integral(0.5, 1.5, 4.0, 0.999), rel=1e-10
    )
