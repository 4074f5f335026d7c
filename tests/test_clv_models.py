"""Pareto/NBD and MBG/NBD: published CDNOW estimates, likelihoods against their integral or
written-out forms, predictions against quadrature, and the comparison in the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate, special

from engine.cli.clv import main
from engine.clv import mbg_nbd, pareto_nbd
from engine.clv.bgnbd import ModelFitError
from engine.clv.transactions import load_rfm
from engine.errors import InvalidInputError

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CUSTOMERS = [(0, 0.0, 38.0), (2, 30.43, 38.86), (26, 30.86, 31.0), (5, 3.0, 30.0), (1, 20.0, 20.0)]


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    rfm, _ = load_rfm(CDNOW, "1997-09-30", "week")
    return rfm


@pytest.fixture(scope="module")
def pnbd(cdnow: pl.DataFrame) -> pareto_nbd.ParetoNBDFit:
    return pareto_nbd.fit_pareto_nbd_rfm(cdnow)


def sig3(v: float) -> str:
    return f"{v:.3g}"


def test_pareto_nbd_reproduces_fader_hardie_lee(pnbd: pareto_nbd.ParetoNBDFit) -> None:
    # Fader, Hardie & Lee (2005): r 0.553, alpha 10.578, s 0.606, beta 11.672, LL -9595.0.
    got = (pnbd.r, pnbd.alpha, pnbd.s, pnbd.beta)
    assert [sig3(v) for v in got] == [sig3(v) for v in (0.553, 10.578, 0.606, 11.672)]
    assert round(pnbd.fit.log_likelihood, 1) == -9595.0
    assert pnbd.fit.converged and pnbd.fit.n_customers == 2357
    se = pnbd.fit.standard_errors
    assert set(se) == {"r", "alpha", "s", "beta"} and all(se[k] > 0 for k in se)


def pnbd_integral(theta: tuple[float, ...], x: int, tx: float, t_age: float) -> float:
    """L from the individual model mixed over lambda and mu: alive at T, or died unseen in
    (t_x, T), written as a one-dimensional integral over the death time."""
    r, alpha, s, beta = theta
    a = math.exp(math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) + s * math.log(beta))
    died = integrate.quad(
        lambda y: (alpha + y) ** -(r + x) * (beta + y) ** -(s + 1), tx, t_age, epsabs=0,
        epsrel=1e-12,
    )[0]  # fmt: skip
    return a * ((alpha + t_age) ** -(r + x) * (beta + t_age) ** -s + s * died)


@pytest.mark.parametrize("theta", [(0.55, 10.6, 0.61, 11.7), (0.8, 14.0, 1.3, 6.0)])
def test_pareto_nbd_likelihood_against_its_integral(theta: tuple[float, ...]) -> None:
    # alpha < beta and alpha > beta take the two branches of the closed form.
    for x, tx, t_age in CUSTOMERS:
        one = np.array([float(x)]), np.array([tx]), np.array([t_age]), np.ones(1)
        got = pareto_nbd.log_likelihood(theta, *one)
        assert got == pytest.approx(math.log(pnbd_integral(theta, x, tx, t_age)), rel=1e-9)


def test_pareto_nbd_predictions_by_quadrature(pnbd: pareto_nbd.ParetoNBDFit) -> None:
    r, alpha, s, beta = pnbd.r, pnbd.alpha, pnbd.s, pnbd.beta
    # E[X(t)] = E[lambda] E[(1 - e^(-mu t)) / mu], mu ~ Gamma(s, beta).
    for t in (1.0, 39.0, 500.0):
        life = integrate.quad(
            lambda m, t=t: -math.expm1(-m * t) / m
            * math.exp(s * math.log(beta) + (s - 1) * math.log(m) - beta * m - math.lgamma(s)),
            0, np.inf, limit=200,
        )[0]  # fmt: skip
        assert pnbd.expected_purchases(np.array(t)) == pytest.approx(r / alpha * life, rel=1e-7)
    # P(alive) = alive term / L.
    for x, tx, t_age in CUSTOMERS:
        theta = (r, alpha, s, beta)
        lam = math.exp(
            math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) + s * math.log(beta)
        ) * (alpha + t_age) ** -(r + x) * (beta + t_age) ** -s
        want = lam / pnbd_integral(theta, x, tx, t_age)
        assert pnbd.p_alive(np.array([x]), np.array([tx]), np.array([t_age]))[0] == pytest.approx(
            want, rel=1e-9
        )


def test_mbg_nbd_likelihood_written_out(cdnow: pl.DataFrame) -> None:
    theta = (0.52, 6.2, 0.89, 1.6)
    r, alpha, a, b = theta
    for x, tx, t_age in CUSTOMERS:
        head = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
        lb = special.betaln(a, b)
        naive = math.exp(head) * (
            math.exp(special.betaln(a, b + x + 1) - lb) * (alpha + t_age) ** -(r + x)
            + math.exp(special.betaln(a + 1, b + x) - lb) * (alpha + tx) ** -(r + x)
        )
        one = np.array([float(x)]), np.array([tx]), np.array([t_age]), np.ones(1)
        assert mbg_nbd.log_likelihood(theta, *one) == pytest.approx(math.log(naive), rel=1e-11)


def test_mbg_nbd_fit_and_predictions(cdnow: pl.DataFrame) -> None:
    fit = mbg_nbd.fit_mbg_nbd_rfm(cdnow)
    assert fit.fit.converged and fit.fit.log_likelihood > -9583  # as good as BG/NBD
    p = fit.fit.params
    # A new customer: alive with probability b/(a+b), then the alive expectation.
    zero = np.zeros(3)
    t = np.array([1.0, 39.0, 200.0])
    assert fit.conditional_expected_purchases(t, zero, zero, zero) == pytest.approx(
        fit.expected_purchases(t), rel=1e-12
    )
    assert fit.p_alive(zero, zero, zero)[0] == pytest.approx(p["b"] / (p["a"] + p["b"]))
    # E_alive by quadrature over p ~ Beta(a, b+x+1) (dropout after each purchase) and
    # lambda ~ Gamma(r+x, alpha+T): E[#purchases in t] = E[(1 - (1 + p lambda t)... )]
    x, t_age = 3.0, 30.0
    r1, a1 = p["r"] + x, p["alpha"] + t_age

    def alive_given_p(q: float, horizon: float) -> float:
        # purchases of a geometric-lifetime Poisson process, mixed over lambda in closed form:
        # E[(1 - e^(-lambda q t))/q] = (1 - (a1/(a1 + q t))^r1) / q.
        return (1.0 - (a1 / (a1 + q * horizon)) ** r1) / q

    for horizon in (5.0, 52.0):
        want = integrate.quad(
            lambda q, h=horizon: alive_given_p(q, h)
            * math.exp((p["a"] - 1) * math.log(q) + (p["b"] + x) * math.log1p(-q)
                       - special.betaln(p["a"], p["b"] + x + 1)),
            0, 1, limit=200,
        )[0]  # fmt: skip
        got = mbg_nbd.expected_purchases_alive(
            tuple(p.values()), np.array(horizon), np.array(x), np.array(t_age)
        )
        assert float(got) == pytest.approx(want, rel=1e-7)


def test_fits_refuse_data_without_repeat_purchases() -> None:
    x = np.zeros(50)
    with pytest.raises(InvalidInputError):
        pareto_nbd.fit_pareto_nbd(x, x, np.full(50, 10.0))
    with pytest.raises(InvalidInputError):
        mbg_nbd.fit_mbg_nbd(x, x, np.full(50, 10.0))


def test_degenerate_fit_raises_instead_of_returning_numbers() -> None:
    # Everyone buys every week until the end: no dropout is visible, s runs to zero.
    n = 200
    x = np.full(n, 30.0)
    with pytest.raises(ModelFitError):
        pareto_nbd.fit_pareto_nbd(x, np.full(n, 30.0), np.full(n, 30.0))


def test_cli_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "customers.parquet"
    code = main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--holdout-end", "1998-06-30", "--compare", "--json",
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    pn = s["pareto_nbd"]
    assert {"r", "alpha", "s", "beta", "log_likelihood", "standard_errors", "converged"} <= set(pn)
    assert round(pn["log_likelihood"], 1) == -9595.0 and pn["converged"] is True
    rows = {r["model"]: r for r in s["comparison"]}
    assert list(rows) == ["bgnbd", "pareto_nbd", "mbg_nbd"]
    for row in rows.values():
        assert row["aic"] == pytest.approx(8 - 2 * row["log_likelihood"])
        assert row["holdout_actual"] == 1882
    assert round(rows["bgnbd"]["holdout_predicted"], 1) == 1653.4
    assert s["pareto_nbd"]["holdout"]["predicted"] == rows["pareto_nbd"]["holdout_predicted"]
    table = pl.read_parquet(out)
    assert table.height == 2357
    assert {"pareto_nbd_p_alive", "mbg_nbd_expected_purchases", "clv"} <= set(table.columns)
