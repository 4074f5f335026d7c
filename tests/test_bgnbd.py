"""BG/NBD: published CDNOW estimates, independent routes for every formula, CLV and bridge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import integrate, stats

from engine.clv.bgnbd import (
    BGNBDParams,
    ModelFitError,
    conditional_expected_purchases,
    expected_purchases,
    expected_purchases_alive,
    fit_bgnbd,
    fit_bgnbd_rfm,
    log_likelihood,
    p_alive,
    purchase_rate_alive,
    sufficient_statistics,
)
from engine.clv.gamma_gamma import fit_gamma_gamma_rfm
from engine.clv.transactions import load_rfm
from engine.clv.value import (
    TAIL_START,
    clv_from_transactions,
    customer_values,
    default_discount_rate,
    stream_alive,
)
from engine.errors import InvalidInputError
from engine.valuation import Valuation, margin_multiplier

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
PUBLISHED = BGNBDParams(r=0.2426, alpha=4.4136, a=0.7929, b=2.4259)


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    rfm, _ = load_rfm(CDNOW, "1997-09-30", "week")
    return rfm


# --------------------------------------------------------------------- published fit


def test_cdnow_reproduces_fader_hardie_lee(cdnow: pl.DataFrame) -> None:
    fit = fit_bgnbd_rfm(cdnow)
    assert fit.converged and fit.n_customers == 2357
    assert (round(fit.r, 3), round(fit.alpha, 3), round(fit.a, 3), round(fit.b, 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert round(fit.log_likelihood, 1) == -9582.4
    assert fit.n_rows < fit.n_customers  # fitted on collapsed rows
    se = fit.standard_errors
    assert all(
        0 < se[k] < v for k, v in [("r", fit.r), ("alpha", fit.alpha), ("a", fit.a), ("b", fit.b)]
    )


def test_standard_errors_match_finite_difference_hessian(cdnow: pl.DataFrame) -> None:
    """Second differences of the log-likelihood *values*: independent of the gradient."""
    fit = fit_bgnbd_rfm(cdnow)
    x, tx, t_age, w = sufficient_statistics(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    theta = np.array([fit.r, fit.alpha, fit.a, fit.b])

    def ll(th: np.ndarray) -> float:
        return log_likelihood(th, x, tx, t_age, w)[0]

    h = 1e-4 * theta
    hess = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h[i], np.eye(4)[j] * h[j]
            hess[i, j] = (
                ll(theta + ei + ej)
                - ll(theta + ei - ej)
                - ll(theta - ei + ej)
                + ll(theta - ei - ej)
            ) / (4 * h[i] * h[j])
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    got = np.array([fit.standard_errors[k] for k in ("r", "alpha", "a", "b")])
    assert got == pytest.approx(se, rel=1e-3)


# ------------------------------------------------------------------- log-likelihood


def naive_loglik(th: BGNBDParams, x: int, tx: float, T: float) -> float:
    """FHL 2005 eq. 6 as printed, one customer at a time, in plain floats."""
    r, alpha, a, b = th.r, th.alpha, th.a, th.b

    def beta(u: float, v: float) -> float:
        return math.exp(math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v))

    head = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha**r
    like = beta(a, b + x) / beta(a, b) * head / (alpha + T) ** (r + x)
    if x > 0:
        like += beta(a + 1, b + x - 1) / beta(a, b) * head / (alpha + tx) ** (r + x)
    return math.log(like)


def test_loglik_matches_paper_formula_and_collapse(cdnow: pl.DataFrame) -> None:
    x = cdnow["frequency"].to_numpy().astype(float)
    tx = cdnow["recency"].to_numpy()
    t_age = cdnow["T"].to_numpy()
    theta = np.array([0.5, 3.0, 1.2, 2.0])
    total, _ = log_likelihood(theta, x, tx, t_age)
    naive = sum(
        naive_loglik(BGNBDParams(*theta), int(a), b, c)
        for a, b, c in zip(x, tx, t_age, strict=True)
    )
    assert total == pytest.approx(naive, rel=1e-12)
    xs, txs, ts, w = sufficient_statistics(x, tx, t_age)
    assert w.sum() == x.size
    assert log_likelihood(theta, xs, txs, ts, w)[0] == pytest.approx(total, rel=1e-12)


def test_gradient_matches_finite_differences(cdnow: pl.DataFrame) -> None:
    x, tx, t_age, w = sufficient_statistics(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for theta in (np.array([0.3, 5.0, 0.8, 2.5]), np.array([2.0, 0.7, 3.0, 0.4])):
        _, grad = log_likelihood(theta, x, tx, t_age, w)
        for j in range(4):
            h = 1e-6 * theta[j]
            e = np.eye(4)[j] * h
            fd = (
                log_likelihood(theta + e, x, tx, t_age, w)[0]
                - log_likelihood(theta - e, x, tx, t_age, w)[0]
            ) / (2 * h)
            assert grad[j] == pytest.approx(fd, rel=1e-6)


def test_loglik_finite_for_extreme_customers() -> None:
    x = np.array([0.0, 1.0, 400.0, 400.0, 3.0])
    tx = np.array([0.0, 1e-6, 0.01, 2000.0, 0.0])
    t_age = np.array([0.0, 5000.0, 2000.0, 2000.0, 0.0])
    for theta in ([1e-6, 1e6, 1e-6, 1e6], [50.0, 1e-3, 50.0, 1e-3], [0.24, 4.4, 0.79, 2.4]):
        ll, grad = log_likelihood(np.array(theta), x, tx, t_age)
        assert np.isfinite(ll) and np.all(np.isfinite(grad))
        pa = p_alive(BGNBDParams(*theta), x, tx, t_age)
        assert np.all((pa >= 0) & (pa <= 1))


# --------------------------------------------------------------- independent routes


def mixture_route(th: BGNBDParams, x: int, tx: float, T: float, t: float) -> tuple[float, float]:
    """P(alive) and E[Y(t)] by integrating the individual-level model over the Gamma x Beta
    heterogeneity with scipy.integrate (no hypergeometric function involved)."""
    log_norm = (
        th.r * math.log(th.alpha)
        - math.lgamma(th.r)
        - (math.lgamma(th.a) + math.lgamma(th.b) - math.lgamma(th.a + th.b))
    )

    def log_prior(lam: float, p: float) -> float:
        return (
            log_norm
            + (th.r - 1) * math.log(lam)
            - th.alpha * lam
            + (th.a - 1) * math.log(p)
            + (th.b - 1) * math.log1p(-p)
        )

    def alive(p: float, lam: float) -> float:  # alive at T after x repeats
        if lam <= 0 or p <= 0 or p >= 1:
            return 0.0
        return math.exp(x * math.log1p(-p) + x * math.log(lam) - lam * T + log_prior(lam, p))

    def dead(p: float, lam: float) -> float:  # left right after the x-th repeat, at t_x
        if x == 0 or lam <= 0 or p <= 0 or p >= 1:
            return 0.0
        return math.exp(
            math.log(p)
            + (x - 1) * math.log1p(-p)
            + x * math.log(lam)
            - lam * tx
            + log_prior(lam, p)
        )

    def future(p: float, lam: float) -> float:  # E[Y(t) | lambda, p, alive] = (1 - e^-lam p t)/p
        return alive(p, lam) * -math.expm1(-lam * p * t) / p if p > 0 else 0.0

    opts = {"epsabs": 0.0, "epsrel": 1e-9}
    top = 60.0 / (th.alpha + min(tx, T)) + 200.0 * (th.r + x) / (th.alpha + tx)
    a_ = integrate.dblquad(alive, 0, top, 0, 1, **opts)[0]
    d_ = integrate.dblquad(dead, 0, top, 0, 1, **opts)[0]
    e_ = integrate.dblquad(future, 0, top, 0, 1, **opts)[0]
    return a_ / (a_ + d_), e_ / (a_ + d_)


@pytest.mark.parametrize(
    "customer",
    [
        (2, 30.43, 38.86, 39.0),
        (26, 30.86, 31.0, 39.0),
        (0, 0.0, 38.86, 39.0),
        (5, 10.0, 38.0, 52.0),
        (1, 2.0, 20.0, 4.0),
    ],
)
def test_p_alive_and_conditional_expectation_by_integration(customer: tuple) -> None:
    x, tx, T, t = customer
    want_alive, want_e = mixture_route(PUBLISHED, x, tx, T, t)
    assert p_alive(PUBLISHED, x, tx, T) == pytest.approx(want_alive, rel=1e-8)
    assert conditional_expected_purchases(PUBLISHED, t, x, tx, T) == pytest.approx(want_e, rel=1e-7)


def test_hand_checked_values() -> None:
    """Fader & Hardie's BG/NBD spreadsheet: E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226 and
    the cohort's expected cumulative repeat purchases E[X(t)] at its full-precision fit."""
    assert round(float(conditional_expected_purchases(PUBLISHED, 39, 2, 30.43, 38.86)), 3) == 1.226
    sheet = BGNBDParams(0.242594150135163, 4.41359212062015, 0.792919156875463, 2.4258950494563)
    t = np.array([0.1429, 1.0, 3.00, 31.8571, 32.00])
    want = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437]
    assert expected_purchases(sheet, t) == pytest.approx(want, abs=5e-5)
    # The sheet's 1.8576 at 78 weeks looks like a truncated 2F1 series (z = 0.95): the
    # Beta-mixture quadrature, which uses no 2F1, agrees with us on 1.85796.
    assert float(expected_purchases(sheet, 78.0)) == pytest.approx(
        beta_route(sheet, 0, 0, 78.0), rel=1e-9
    )
    assert abs(float(expected_purchases(sheet, 78.0)) - 1.8576) < 5e-4
    # P(alive) by hand: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)).
    r, al, a, b = PUBLISHED.r, PUBLISHED.alpha, PUBLISHED.a, PUBLISHED.b
    hand = 1 / (1 + a / (b + 1) * ((al + 38.86) / (al + 30.43)) ** (r + 2))
    assert p_alive(PUBLISHED, 2, 30.43, 38.86) == pytest.approx(hand, rel=1e-14)


def beta_route(th: BGNBDParams, x: float, T: float, t: float) -> float:
    """E_alive(t) = E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p], p ~ Beta(a, b+x), by quad."""
    at, rx = th.alpha + T, th.r + x
    dens = stats.beta(th.a, th.b + x)

    def f(p: float) -> float:
        return -math.expm1(-rx * math.log1p(p * t / at)) / p * dens.pdf(p)

    mode = min(max((th.a - 1) / (th.a + th.b + x - 2), 1e-6), 0.5) if th.a > 1 else 1e-6
    return float(
        integrate.quad(f, 0, 1, points=[mode, 10 * mode], epsabs=0, epsrel=1e-11, limit=500)[0]
    )


@pytest.mark.parametrize(
    "params", [PUBLISHED, BGNBDParams(1.7, 12.0, 2.5, 6.0), BGNBDParams(0.05, 0.3, 0.2, 40.0)]
)
def test_hypergeometric_numerics_against_quadrature(params: BGNBDParams) -> None:
    """Large x, long horizons and z near 1, where a direct 2F1 would lose digits."""
    for x, T, t in [
        (0, 0, 1),
        (0, 0, 5000),
        (3, 10, 0.01),
        (60, 52, 520),
        (400, 300, 10_000),
        (1500, 700, 52),
    ]:
        got = float(expected_purchases_alive(params, t, x, T))
        assert got == pytest.approx(beta_route(params, x, T, t), rel=1e-8), (x, T, t)


def test_a_near_one_is_continuous() -> None:
    def at(a: float) -> float:
        return float(expected_purchases_alive(BGNBDParams(0.3, 4.0, a, 2.0), 52, 3, 30))

    assert at(1.0) == pytest.approx(0.5 * (at(1 - 1e-3) + at(1 + 1e-3)), rel=1e-6)
    assert at(1 + 1e-9) == pytest.approx(at(1.0), rel=1e-9)
    assert np.isfinite(at(1.0))


def test_rate_is_the_derivative_of_the_expectation() -> None:
    for x, T, s in [(0, 0, 3.0), (4, 30, 100.0), (40, 60, 2000.0)]:
        h = 1e-4 * s
        e = expected_purchases_alive(PUBLISHED, np.array([s - h, s + h]), x, T)
        rate = float(purchase_rate_alive(PUBLISHED, s, x, T))
        assert rate == pytest.approx((e[1] - e[0]) / (2 * h), rel=1e-6)


# ------------------------------------------------------------------- fit behaviour


def simulate(n: int, th: BGNBDParams, T: float, seed: int) -> tuple[np.ndarray, ...]:
    """BG/NBD draws: Poisson purchases, dropout after each repeat purchase with prob. p."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(th.r, 1 / th.alpha, n)
    p = rng.beta(th.a, th.b, n)
    drop_after = rng.geometric(p)  # repeat purchase after which the customer leaves
    n_poisson = rng.poisson(lam * T)
    x = np.minimum(drop_after, n_poisson)
    # The x-th of n_poisson uniform arrival times in (0, T] is T * Beta(x, n - x + 1).
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_poisson - x + 1), 0.0)
    return x, tx, np.full(n, T)


def test_recovers_simulated_parameters() -> None:
    truth = BGNBDParams(r=0.8, alpha=6.0, a=1.3, b=3.5)
    x, tx, T = simulate(40_000, truth, 52.0, seed=7)
    fit = fit_bgnbd(x, tx, T)
    for name in ("r", "alpha", "a", "b"):
        z = (getattr(fit, name) - getattr(truth, name)) / fit.standard_errors[name]
        assert abs(z) < 4, (name, z)


def test_non_convergence_raises_instead_of_returning_numbers() -> None:
    rng = np.random.default_rng(0)
    x = rng.poisson(3, 500)
    T = np.full(500, 30.0)
    with pytest.raises(ModelFitError, match="did not converge"):
        fit_bgnbd(x, np.where(x > 0, T, 0.0), T)  # nobody ever looks gone: a -> 0
    with pytest.raises(InvalidInputError, match="no customer made a repeat purchase"):
        fit_bgnbd([0, 0, 0], [0, 0, 0], [5, 6, 7])
    with pytest.raises(InvalidInputError):
        fit_bgnbd([1, 2], [3.0, 1.0], [2.0, 4.0])  # recency > T


# ------------------------------------------------------------------- CLV and bridge


@pytest.fixture(scope="module")
def fitted(cdnow: pl.DataFrame) -> tuple:
    return cdnow, fit_bgnbd_rfm(cdnow), fit_gamma_gamma_rfm(cdnow)


@pytest.mark.parametrize(
    ("valuation", "period"),
    [
        (Valuation(0.0018), 1.0),
        (Valuation(0.01, 52), 1.0),
        (Valuation(0.10), 365.25 / 7),
        (Valuation(0.10, 5, 0.03), 365.25 / 7),
        (Valuation(0.02, 1), 4.0),
        (Valuation(0.0, 26), 2.0),
    ],
)
def test_bridge_reproduces_clv_through_engine_formula(
    fitted: tuple, valuation: Valuation, period: float
) -> None:
    rfm, bg, gg = fitted
    out = customer_values(rfm, bg, gg, valuation, period_length=period, margin_ratio=0.3)
    r = out["retention"].to_numpy()
    assert np.all((r >= 0) & (r < 1))
    engine_clv = out["margin"].to_numpy() * margin_multiplier(r, valuation)
    assert engine_clv == pytest.approx(out["clv"].to_numpy(), rel=1e-9)
    # margin x retention is the expected contribution of the next period.
    nxt = conditional_expected_purchases(
        bg.params, period, rfm["frequency"], rfm["recency"], rfm["T"]
    )
    want = 0.3 * out["expected_spend"].to_numpy() * nxt
    assert out["margin"].to_numpy() * r == pytest.approx(want, rel=1e-9)
    for column in out.columns[1:]:
        values = out[column].drop_nulls().cast(pl.Float64).to_numpy()
        assert np.all(np.isfinite(values)), column


def test_finite_horizon_clv_is_the_period_sum(fitted: tuple) -> None:
    """Per customer, straight from conditional_expected_purchases (no distinct-row reuse)."""
    rfm, bg, gg = fitted
    d, horizon, period = 0.004, 30, 2.0
    out = customer_values(rfm, bg, gg, Valuation(d, horizon), period_length=period)
    args = (rfm["frequency"].to_numpy(), rfm["recency"].to_numpy(), rfm["T"].to_numpy())
    cum = [np.zeros(rfm.height)] + [
        conditional_expected_purchases(bg.params, k * period, *args) for k in range(1, horizon + 1)
    ]
    dert = sum((cum[k] - cum[k - 1]) / (1 + d) ** k for k in range(1, horizon + 1))
    assert out["clv"].to_numpy() == pytest.approx(
        out["expected_spend"].to_numpy() * dert, rel=1e-10
    )
    assert out["expected_purchases"].to_numpy() == pytest.approx(cum[horizon], rel=1e-12)


def test_infinite_horizon_tail_against_long_sum() -> None:
    x = np.array([0.0, 2, 26, 5, 60])
    T = np.array([38.86, 38.86, 31, 20, 52])
    for d, period in [(0.0005, 1.0), (0.0018, 1.0), (0.10, 52.18), (0.02, 4.0), (0.5, 1.0)]:
        _, dert = stream_alive(PUBLISHED, x, T, Valuation(d), period)
        k = np.arange(0.0, math.ceil(40 / math.log1p(d)) + 1)  # discount below e^-40 after
        for i in range(x.size):
            cum = expected_purchases_alive(PUBLISHED, k * period, x[i], T[i])
            brute = np.diff(cum) @ (1 + d) ** -k[1:]
            assert dert[i] == pytest.approx(brute, rel=1e-7), (d, i)
    assert TAIL_START < 40  # the tail integral really does most of the work


def test_valuation_errors(fitted: tuple) -> None:
    rfm, bg, gg = fitted
    with pytest.raises(InvalidInputError, match="infinite horizon"):
        customer_values(rfm, bg, gg, Valuation(0.0, None, -0.1))
    with pytest.raises(InvalidInputError, match="period_length"):
        customer_values(rfm, bg, gg, Valuation(0.1), period_length=0.0)
    assert default_discount_rate("week", 365.25 / 7) == pytest.approx(0.10)


def test_clv_from_transactions_summary() -> None:
    result = clv_from_transactions(CDNOW, "1997-09-30", "week")
    s = result.summary()
    assert s["customers"] == 2357 and s["cleaning"]["zero_amount_rows"] == 8
    assert s["valuation"]["horizon"] is None
    assert set(result.customers.columns) >= {
        "customer_id",
        "margin",
        "retention",
        "p_alive",
        "expected_purchases",
        "expected_spend",
        "clv",
        "frequency",
        "recency",
        "T",
    }
    json.dumps(s)  # serialisable as is


def test_cli_prints_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli.clv import main

    out = tmp_path / "per_customer.csv"
    code = main(
        [
            "clv",
            "--transactions",
            str(CDNOW),
            "--calibration-end",
            "1997-09-30",
            "--time-unit",
            "week",
            "--horizon",
            "104",
            "--discount-rate",
            "0.002",
            "--json",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    assert round(s["bgnbd"]["r"], 3) == 0.243 and s["bgnbd"]["converged"] is True
    assert round(s["bgnbd"]["log_likelihood"], 1) == -9582.4
    assert set(s["bgnbd"]["standard_errors"]) == {"r", "alpha", "a", "b"}
    assert round(s["gamma_gamma"]["q"], 2) == 3.74
    assert s["customers"] == 2357 and s["valuation"]["horizon"] == 104
    table = pl.read_csv(out)
    assert table.height == 2357 and {"margin", "retention", "clv"} <= set(table.columns)
    bad = main(
        ["clv", "--transactions", str(tmp_path / "none.csv"), "--calibration-end", "1997-09-30"]
    )
    assert bad == 2


# ------------------------------------------------------------ plugin and allocation


def test_bgnbd_plugin_runs_a_transaction_log_through_allocate() -> None:
    from engine.clv.transactions import read_transactions
    from engine.pipeline import allocate
    from engine.plan import Plan, StrategyChoice
    from engine.plugins import build_registry
    from engine.portfolio import Portfolio

    registry = build_registry(entry_points=False)  # bgnbd is a built-in (DEFAULT_PLUGINS)
    assert "bgnbd" in registry.names("metric") and not registry.failures
    assert registry.info("metric", "bgnbd").package == "equity-engine"
    metric = registry.create(
        "metric", StrategyChoice("bgnbd", {"calibration_end": "1997-09-30", "margin_ratio": 0.3})
    )
    plan = Plan(total_budget=2000.0, discount_rate=0.1)
    customers = metric.compute(read_transactions(CDNOW), plan.valuation)  # type: ignore[attr-defined]
    assert customers.height == 2357 and customers["customer_id"].is_unique().all()
    # Yearly periods: margin x multiplier is the model's CLV at 10% a year.
    r = customers["retention"].to_numpy()
    engine_clv = customers["margin"].to_numpy() * margin_multiplier(r, plan.valuation)
    assert engine_clv == pytest.approx(customers["clv"].to_numpy(), rel=1e-9)
    result = allocate(Portfolio(customers), plan, registry)
    summary = json.loads(result.to_json())
    assert summary["status"] == "optimal"
    assert summary["equity_before"] == pytest.approx(customers["clv"].sum(), rel=1e-9)
    assert summary["equity_after"] >= summary["equity_before"]
    with pytest.raises(InvalidInputError):
        registry.create("metric", StrategyChoice("bgnbd", {"time_unit": "month"}))
