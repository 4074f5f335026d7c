"""BG/BB (Fader, Hardie & Berger 2010): the published donation-data fit, the likelihood and
P(alive) against brute-force sums over the latent death times and purchase sequences (Beta
expectations by numerical quadrature, no Beta functions), parameter recovery on simulated
customers, expectations against sums, inputs, and ``equity clv --model bgbb``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.integrate import quad
from scipy.stats import beta as beta_dist

from engine.cli.clv import main
from engine.clv.bgbb import BGBBFit, _row_log_likelihood, fit_bgbb, opportunity_summary
from engine.clv.models import ModelFit
from engine.errors import InvalidInputError

DONATIONS = Path(__file__).parent / "data" / "donations.csv"
THETA = (1.3, 1.7, 1.4, 2.5)  # > 1 each: the Beta densities are bounded for quadrature


def model(theta: tuple[float, ...]) -> BGBBFit:
    params = dict(zip(("alpha", "beta", "gamma", "delta"), theta, strict=True))
    return BGBBFit(ModelFit("BG/BB", params, 0.0, dict.fromkeys(params, 0.0), 1, 0))


def donations() -> tuple[np.ndarray, ...]:
    d = pl.read_csv(DONATIONS)
    return tuple(d[c].to_numpy().astype(float) for c in ("frequency", "recency", "n", "customers"))


def test_published_donation_fit() -> None:
    x, tx, n, w = donations()
    assert w.sum() == 11_104
    fit = fit_bgbb(x, tx, n, w)
    p = fit.fit.params
    assert [round(p[k], 3) for k in ("alpha", "beta", "gamma", "delta")] == [
        1.204, 0.750, 0.657, 2.783]
    assert round(fit.fit.log_likelihood, 1) == -33_225.6
    assert fit.fit.converged and all(0 < s < 0.5 for s in fit.fit.standard_errors.values())
    # One row per customer gives the same fit as the weighted patterns.
    again = fit_bgbb(np.repeat(x, w.astype(int)), np.repeat(tx, w.astype(int)),
                     np.repeat(n, w.astype(int)))
    assert again.fit.log_likelihood == pytest.approx(fit.fit.log_likelihood, rel=1e-10)


def _beta_mean(f, a: float, b: float) -> float:
    return quad(lambda u: f(u) * beta_dist.pdf(u, a, b), 0.0, 1.0, epsabs=1e-13, epsrel=1e-11)[0]


def brute_sequence(seq: tuple[int, ...], theta: tuple[float, ...]) -> float:
    """P(purchase sequence): sum over the opportunity k at which the customer dies (alive
    through k - 1; k = n + 1: alive throughout) of E_theta[P(k)] E_p[P(seq | alive to k-1)]."""
    alpha, beta, gamma, delta = theta
    n = len(seq)
    total = 0.0
    for k in range(1, n + 2):
        if any(seq[k - 1:]):  # a purchase after death is impossible
            continue
        alive, buys = k - 1, sum(seq)
        if k <= n:
            p_death = _beta_mean(lambda t, k=k: (1 - t) ** (k - 1) * t, gamma, delta)
        else:
            p_death = _beta_mean(lambda t: (1 - t) ** n, gamma, delta)
        p_seq = _beta_mean(lambda p, a=alive, b=buys: p**b * (1 - p) ** (a - b), alpha, beta)
        total += p_death * p_seq
    return total


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_likelihood_against_the_latent_paths(n: int) -> None:
    sequences = list(itertools.product((0, 1), repeat=n))
    probs = np.array([brute_sequence(s, THETA) for s in sequences])
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    x = np.array([sum(s) for s in sequences], dtype=float)
    tx = np.array([max((i + 1 for i, v in enumerate(s) if v), default=0) for s in sequences],
                  dtype=float)
    ll = _row_log_likelihood(THETA, x, tx, np.full(x.size, float(n)))
    assert np.exp(ll) == pytest.approx(probs, rel=1e-8)
    # P(alive at n + 1 | sequence) = E[(1-theta)^(n+1)] E[p^x (1-p)^(n-x)] / P(sequence)
    fit = model(THETA)
    for s, prob, xi, ti in zip(sequences, probs, x, tx, strict=True):
        num = (_beta_mean(lambda t: (1 - t) ** (n + 1), THETA[2], THETA[3])
               * _beta_mean(lambda p, b=xi: p**b * (1 - p) ** (n - b), THETA[0], THETA[1]))
        assert float(fit.p_alive(xi, ti, n)) == pytest.approx(num / prob, rel=1e-8), s


def test_conditional_expectation_against_extended_sequences() -> None:
    """E[X(n, n+n*) | history] = sum over futures of (future purchases) P(history, future) /
    P(history), with P from the likelihood of the longer history."""
    fit = model((1.204, 0.750, 0.657, 2.783))
    n, horizon = 3, 3
    for history in itertools.product((0, 1), repeat=n):
        seqs = [history + f for f in itertools.product((0, 1), repeat=horizon)]
        x = np.array([sum(s) for s in seqs], dtype=float)
        tx = np.array([max((i + 1 for i, v in enumerate(s) if v), default=0) for s in seqs],
                      dtype=float)
        joint = np.exp(_row_log_likelihood(fit.theta, x, tx, np.full(x.size, n + horizon)))
        future = x - sum(history)
        want = float(future @ joint / joint.sum())
        hx = float(sum(history))
        htx = float(max((i + 1 for i, v in enumerate(history) if v), default=0))
        got = float(fit.conditional_expected_purchases(horizon, hx, htx, n))
        assert got == pytest.approx(want, rel=1e-10)


def test_unconditional_and_discounted_expectations() -> None:
    for theta in [(1.204, 0.750, 0.657, 2.783), (1.2, 0.7, 1.0, 2.0), (1.2, 0.7, 1.0 + 3e-7, 2.0),
                  (1.2, 0.7, 1.0 - 2e-4, 2.0), (1.2, 0.7, 1.002, 2.0)]:
        fit = model(theta)
        alpha, beta, gamma, delta = theta
        t = np.arange(1, 5001)
        survival = np.cumprod((delta + t - 1) / (gamma + delta + t - 1))  # E[(1-theta)^t]
        want = alpha / (alpha + beta) * np.cumsum(survival)
        got = fit.expected_purchases(np.array([1, 2, 6, 50, 5000]))
        assert got == pytest.approx(want[[0, 1, 5, 49, 4999]], rel=1e-9)
        # DERT = sum_k (1+d)^-k [E(k) - E(k-1)] for a customer's history
        k = np.arange(0, 6001)
        cum = fit.conditional_expected_purchases(k, 3.0, 5.0, 6.0)
        brute = float(np.sum(np.diff(cum) / 1.1 ** k[1:]))
        assert float(fit.dert(0.1, 3.0, 5.0, 6.0)) == pytest.approx(brute, rel=1e-9)


def simulate(n_customers: int, n: int, theta: tuple[float, ...], seed: int) -> tuple:
    alpha, beta, gamma, delta = theta
    rng = np.random.default_rng(seed)
    p = rng.beta(alpha, beta, n_customers)[:, None]
    death = rng.beta(gamma, delta, n_customers)[:, None]
    alive = np.cumprod(rng.random((n_customers, n)) >= death, axis=1).astype(bool)
    buys = alive & (rng.random((n_customers, n)) < p)
    x = buys.sum(axis=1).astype(float)
    tx = np.where(buys.any(axis=1), n - np.argmax(buys[:, ::-1], axis=1), 0).astype(float)
    return x, tx, np.full(n_customers, float(n)), buys


def test_parameter_recovery_on_simulated_customers() -> None:
    truth = (1.2, 0.75, 0.66, 2.8)
    x, tx, n, _ = simulate(40_000, 8, truth, seed=11)
    fit = fit_bgbb(x, tx, n)
    for name, value in zip(("alpha", "beta", "gamma", "delta"), truth, strict=True):
        est, se = fit.fit.params[name], fit.fit.standard_errors[name]
        assert abs(est - value) < 4 * se, (name, est, value, se)
    # Model-implied repeat purchases per customer match the simulated ones.
    assert float(fit.expected_purchases(8.0)) == pytest.approx(x.mean(), rel=0.02)


def test_sequences_and_summaries_agree(tmp_path: Path) -> None:
    x, tx, n, buys = simulate(300, 5, (1.2, 0.75, 0.66, 2.8), seed=3)
    ids, opp = np.nonzero(np.ones_like(buys))
    long = pl.DataFrame({"customer_id": ids, "opportunity": opp + 1,
                         "purchased": buys[ids, opp].astype(int)})
    summary = opportunity_summary(long.sample(fraction=1.0, shuffle=True, seed=1))
    summary = summary.sort("customer_id")
    assert summary["frequency"].to_numpy() == pytest.approx(x)
    assert summary["recency"].to_numpy() == pytest.approx(tx)
    assert summary["n"].to_numpy() == pytest.approx(n)
    bad = long.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(2)
                            .otherwise(pl.col("purchased")).alias("purchased"))
    with pytest.raises(InvalidInputError) as err:
        opportunity_summary(bad)
    assert (err.value.violations[0].field, err.value.violations[0].row) == (
        "opportunities.purchased", 4)
    with pytest.raises(InvalidInputError, match="without gaps"):
        opportunity_summary(long.filter(pl.int_range(pl.len()) != 7))
    table = pl.DataFrame({"frequency": [1, 3, 0], "recency": [2, 2, 1], "n": [6, 6, 6]})
    with pytest.raises(InvalidInputError) as err:
        opportunity_summary(table)
    found = {(v.field, v.row) for v in err.value.violations}
    assert found == {("opportunities.frequency", 1), ("opportunities.recency", 2)}


def test_equity_clv_model_bgbb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bgbb.parquet"
    assert main(["clv", "--model", "bgbb", "--opportunities", str(DONATIONS),
                 "--prediction-horizon", "5", "--output", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["bgbb"]
    assert round(doc["alpha"], 3) == 1.204 and round(doc["log_likelihood"], 1) == -33_225.6
    assert set(doc["standard_errors"]) == {"alpha", "beta", "gamma", "delta"}
    assert doc["prediction_horizon"]["opportunities"] == 5
    rows = pl.read_parquet(out)
    assert rows.height == 22 and {"p_alive", "expected_purchases", "dert"} <= set(rows.columns)
    assert doc["prediction_horizon"]["expected_purchases"] == pytest.approx(
        float((rows["weight"] * rows["expected_purchases"]).sum()))
    fit = fit_bgbb(*donations()[:3], weights=donations()[3])
    assert rows["p_alive"].to_numpy() == pytest.approx(fit.p_alive(*donations()[:3]), rel=1e-6)
    # bgbb needs opportunities, not a transaction log: exit 2 naming the flag.
    assert main(["clv", "--model", "bgbb", "--transactions", str(DONATIONS)]) == 2
    assert "opportunities" in capsys.readouterr().err
    assert main(["clv", "--opportunities", str(DONATIONS), "--prediction-horizon", "2w"]) == 2
    assert "prediction_horizon" in capsys.readouterr().err


def test_per_customer_figures_computed_once_per_pattern() -> None:
    x, tx, n, _ = simulate(5_000, 7, (1.2, 0.75, 0.66, 2.8), seed=8)
    fit = model((1.2, 0.75, 0.66, 2.8))
    assert fit.p_alive(x, tx, n) == pytest.approx(fit._p_alive(x, tx, n), rel=1e-14)
    assert fit.dert(0.1, x, tx, n) == pytest.approx(fit._dert(0.1, x, tx, n), rel=1e-14)
    got = fit.conditional_expected_purchases(4, x, tx, n)
    assert got == pytest.approx(fit._conditional(np.array(4.0), x, tx, n), rel=1e-14)
