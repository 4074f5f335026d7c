"""The ``sbg`` metric: subscribers (renewals, active, payment) valued by the sBG model flow
into allocation; fits recovered from simulated subscribers, the bridge against brute-force
sums of the sBG cash flows, input errors naming rows, and ``equity allocate --metric sbg``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from equity_plugins.sbg import SubscriptionCLV
from scipy.special import betaln

from engine.cli import main
from engine.clv.sbg import derl, fit_sbg_tenure
from engine.clv.sbg_value import customer_values
from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.valuation import Valuation, margin_multiplier


def subscribers(n: int, alpha: float, beta: float, seed: int = 1) -> pl.DataFrame:
    """Customers who joined 0..11 periods ago; each churns at each renewal with theta."""
    rng = np.random.default_rng(seed)
    theta = rng.beta(alpha, beta, n)
    observed = rng.integers(0, 12, n)  # renewal opportunities so far
    churn_period = rng.geometric(theta)  # the period in which the customer leaves (>= 1)
    return pl.DataFrame({
        "customer_id": [f"S{i:05d}" for i in range(n)],
        "renewals": np.minimum(churn_period - 1, observed),
        "active": churn_period > observed,
        "payment": rng.uniform(5.0, 20.0, n).round(2),
        "segment": np.where(rng.random(n) < 0.5, "monthly", "annual"),
    })


def brute_clv(alpha: float, beta: float, n: np.ndarray, pay: np.ndarray,
              valuation: Valuation) -> np.ndarray:
    """payment * sum_k (1+g)^(k-1) (1+d)^-k S(n+k)/S(n), summed over 20,000 periods."""
    k = np.arange(1, (valuation.horizon or 20_000) + 1, dtype=np.float64)
    d, g = valuation.discount_rate, valuation.margin_growth
    disc = np.exp((k - 1) * np.log1p(g) - k * np.log1p(d))
    ratio = np.exp(betaln(alpha, beta + n[:, None] + k) - betaln(alpha, beta + n[:, None]))
    return pay * (disc * ratio).sum(axis=1)


VALUATIONS = [Valuation(0.1), Valuation(0.1, horizon=7), Valuation(0.02, margin_growth=0.01),
              Valuation(0.1, horizon=40, margin_growth=0.05), Valuation(0.1, horizon=1)]


@pytest.mark.parametrize("valuation", VALUATIONS)
def test_bridge_reproduces_the_sbg_stream(valuation: Valuation) -> None:
    alpha, beta = 0.704, 1.182  # Fader & Hardie's regular cohort
    n = np.array([0, 1, 2, 5, 12, 40, 300], dtype=np.float64)
    pay = np.array([10.0, 10.0, 20.0, 5.0, 7.5, 12.0, 3.0])
    out = customer_values(alpha, beta, n, pay, valuation)
    want = brute_clv(alpha, beta, n, pay, valuation)
    assert out["clv"] == pytest.approx(want, rel=1e-9)
    # The engine's formula on margin and retention gives the sBG value back ...
    assert out["margin"] * margin_multiplier(out["retention"], valuation) == pytest.approx(
        want, rel=1e-9)
    # ... and the next period's expected payment.
    p = (beta + n) / (alpha + beta + n)
    assert out["renewal_probability"] == pytest.approx(p, rel=1e-12)
    assert out["margin"] * out["retention"] == pytest.approx(pay * p, rel=1e-9)
    # Retention rises with tenure; the effective rate is at least the next renewal's.
    assert np.all(np.diff(out["retention"]) > 0)
    assert np.all(out["retention"] >= p - 1e-12) and np.all(out["retention"] < 1)
    if valuation.horizon is None and valuation.margin_growth == 0:  # Fader & Hardie's DERL
        delta = 1 / (1 + valuation.discount_rate)
        assert out["clv"] == pytest.approx(
            pay * delta * derl(alpha, beta, valuation.discount_rate, n), rel=1e-12)


def test_next_bridge_is_the_geometric_approximation() -> None:
    n, pay = np.array([0.0, 4.0]), np.array([10.0, 10.0])
    out = customer_values(0.704, 1.182, n, pay, Valuation(0.1), bridge="next")
    assert out["retention"] == pytest.approx((1.182 + n) / (1.886 + n))
    assert out["margin"] == pytest.approx(pay)
    exact = customer_values(0.704, 1.182, n, pay, Valuation(0.1))
    assert out["clv"] == pytest.approx(exact["clv"])  # the sBG's CLV either way
    # A geometric curve at the next renewal's rate undervalues (retention keeps rising).
    assert np.all(out["margin"] * margin_multiplier(out["retention"], Valuation(0.1))
                  < exact["clv"])


def test_the_metric_fits_the_table_and_recovers_the_truth() -> None:
    table = subscribers(40_000, 0.7, 1.2)
    out = SubscriptionCLV.from_params({}).compute(table, Valuation(0.1))
    fit = fit_sbg_tenure(table["renewals"], table["active"])
    assert fit.alpha == pytest.approx(0.7, rel=0.1) and fit.beta == pytest.approx(1.2, rel=0.1)
    active = table["active"].to_numpy()
    n = table["renewals"].to_numpy().astype(float)
    p = (fit.beta + n) / (fit.alpha + fit.beta + n)
    assert out["renewal_probability"].to_numpy()[active] == pytest.approx(p[active], rel=1e-9)
    for name in ("margin", "retention", "renewal_probability", "clv"):  # churned: nothing
        assert (out[name].to_numpy()[~active] == 0).all()
    want = brute_clv(fit.alpha, fit.beta, n[active][:50], table["payment"].to_numpy()[active][:50],
                     Valuation(0.1))
    assert out["clv"].to_numpy()[active][:50] == pytest.approx(want, rel=1e-8)


def test_one_fit_per_group() -> None:
    a = subscribers(20_000, 0.7, 1.2, seed=2).with_columns(pl.lit("regular").alias("plan"))
    b = subscribers(20_000, 0.67, 3.8, seed=3).with_columns(pl.lit("high end").alias("plan"))
    table = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=4)
    out = SubscriptionCLV.from_params({"by": "plan"}).compute(table, Valuation(0.1))
    for name, truth in (("regular", (0.7, 1.2)), ("high end", (0.67, 3.8))):
        rows = (table["plan"] == name).to_numpy()
        fit = fit_sbg_tenure(table["renewals"].filter(rows), table["active"].filter(rows))
        assert fit.alpha == pytest.approx(truth[0], rel=0.15)
        assert fit.beta == pytest.approx(truth[1], rel=0.15)
        first = rows & table["active"].to_numpy() & (table["renewals"] == 0).to_numpy()
        want = fit.beta / (fit.alpha + fit.beta)
        assert out["renewal_probability"].to_numpy()[first] == pytest.approx(want, rel=1e-9)


def test_given_parameters_need_no_churned_subscribers() -> None:
    table = subscribers(500, 0.7, 1.2).filter(pl.col("active"))
    with pytest.raises(InvalidInputError, match="no churned subscriber") as err:
        SubscriptionCLV.from_params({}).compute(table, Valuation(0.1))
    assert err.value.violations[0].field == "customers.active"
    out = SubscriptionCLV.from_params({"alpha": 0.704, "beta": 1.182}).compute(
        table, Valuation(0.1))
    n = table["renewals"].to_numpy()
    assert out["renewal_probability"].to_numpy() == pytest.approx((1.182 + n) / (1.886 + n))
    with pytest.raises(InvalidInputError, match="both alpha and beta") as err:
        SubscriptionCLV.from_params({"alpha": 0.7}).compute(table, Valuation(0.1))
    assert err.value.violations[0].field == "plan.metric.params.alpha"


def test_bad_rows_are_named() -> None:
    table = subscribers(50, 0.7, 1.2).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1).otherwise(pl.col("renewals"))
        .alias("renewals"),
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(2.5)).otherwise(
            pl.col("active").cast(pl.Float64)).alias("active"),
        pl.when(pl.int_range(pl.len()) == 9).then(float("nan")).otherwise(pl.col("payment"))
        .alias("payment"),
    )
    with pytest.raises(InvalidInputError) as err:
        SubscriptionCLV.from_params({}).compute(table, Valuation(0.1))
    found = {(v.field, v.row) for v in err.value.violations}
    assert found == {("customers.renewals", 3), ("customers.active", 7), ("customers.payment", 9)}
    with pytest.raises(InvalidInputError, match="no column 'tier'"):
        SubscriptionCLV.from_params({"by": "tier"}).compute(subscribers(50, 0.7, 1.2),
                                                            Valuation(0.1))


def test_allocation_values_subscribers_at_their_sbg_clv() -> None:
    table = subscribers(3_000, 0.7, 1.2)
    plan = Plan(metric=StrategyChoice("sbg"), total_budget=2_000.0)
    result = allocate(Portfolio(customers=table), plan)
    units = result.units
    assert units.height == table.height
    assert units["equity_before"].sum() == pytest.approx(units["clv"].sum(), rel=1e-9)
    assert result.summary.equity_before == pytest.approx(units["clv"].sum(), rel=1e-9)
    churned = units.filter(pl.col("customer_id").is_in(
        table.filter(~pl.col("active"))["customer_id"].implode()))
    assert (churned["equity_after"] == 0).all() and (churned["spend"] == 0).all()
    # A customers table without the sbg columns is an error naming them.
    with pytest.raises(InvalidInputError, match=r"customers\.renewals"):
        allocate(Portfolio(customers=table.drop("renewals")), plan)


def test_equity_allocate_metric_sbg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "subscribers.csv"
    table = subscribers(2_000, 0.7, 1.2)
    table.write_csv(path)
    out = tmp_path / "plan.parquet"
    code = main(["allocate", "--customers", str(path), "--metric", "sbg", "--budget", "1000",
                 "--param", "metric.by=segment", "--output", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    plan = pl.read_parquet(out)
    assert plan["customer_id"].to_list() == table["customer_id"].to_list()
    assert summary["equity_before"] == pytest.approx(plan["clv"].sum(), rel=1e-9)
    assert set(plan.columns) >= {"renewal_probability", "clv"}
    # Given parameters (a cohort fit of `equity clv --survival`) instead of a fit.
    code = main(["allocate", "--customers", str(path), "--metric", "sbg", "--budget", "1000",
                 "--param", "metric.alpha=0.704", "--param", "metric.beta=1.182",
                 "--output", str(out), "--json"])
    assert code == 0
    capsys.readouterr()
    plan = pl.read_parquet(out).join(table, on="customer_id")
    active = plan.filter(pl.col("active"))
    n = active["renewals"].to_numpy()
    assert active["renewal_probability"].to_numpy() == pytest.approx((1.182 + n) / (1.886 + n))
    # A bad row names the column and the row; exit 2.
    table.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(-2)
                       .otherwise(pl.col("renewals")).alias("renewals")).write_csv(path)
    code = main(["allocate", "--customers", str(path), "--metric", "sbg", "--budget", "1000"])
    assert code == 2
    assert "customers.renewals" in capsys.readouterr().err
