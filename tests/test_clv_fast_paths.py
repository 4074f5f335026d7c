"""The fast paths of the CLV pipeline give what the general paths give.

Identical rows are found by comparing offsets within short days and by hashing within long
ones; both must count the same rows. Large fits start from a sample's optimum and Hessian:
they must reach the optimum of a fit from scratch, and give the same bits on every run.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import engine.clv.transactions as transactions
from engine.clv.bgnbd import fit_bgnbd, sufficient_statistics
from engine.clv.gamma_gamma import fit_gamma_gamma
from engine.clv.transactions import rfm_statistics


def _log(rows_per_day: int, seed: int) -> pl.DataFrame:
    """Three customers; the first has ``rows_per_day`` rows on one day, amounts from {1, 2, 3}."""
    rng = np.random.default_rng(seed)
    amounts = rng.integers(1, 4, rows_per_day).astype(np.float64)
    day = dt.date(2024, 1, 2)
    rows = [(1, day, float(a)) for a in amounts]
    rows += [(1, dt.date(2024, 1, 9), 5.0), (2, day, 4.0), (2, day, 4.0), (3, day, 7.0)]
    return pl.DataFrame(rows, schema=["customer_id", "date", "amount"], orient="row")


@pytest.mark.parametrize("rows_per_day", [3, 16, 17, 40])
def test_identical_rows_short_and_long_days(
    rows_per_day: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(rows_per_day, seed=rows_per_day)
    amounts = log.filter(pl.col("customer_id") == 1).head(rows_per_day)["amount"].to_numpy()
    expected = rows_per_day - np.unique(amounts).size + 1  # customer 2's pair adds one
    fast, report = rfm_statistics(log, "2024-01-31", "day")
    assert report.identical_rows == expected
    monkeypatch.setattr(transactions, "_SHORT_DAY", 0)  # the hashed path only
    hashed, report_hashed = rfm_statistics(log, "2024-01-31", "day")
    assert report_hashed == report
    assert fast.equals(hashed)
    deduped, report_dedupe = rfm_statistics(log, "2024-01-31", "day", dedupe=True)
    assert report_dedupe.duplicate_rows == expected
    assert deduped["frequency"].to_list() == fast["frequency"].to_list()  # days, not rows


def _bgnbd_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of a BG/NBD population: r 0.8, alpha 4, a 0.7, b 3, ages 30-80 weeks in days."""
    rng = np.random.default_rng(seed)
    t_age = rng.integers(210, 560, n).astype(np.float64) / 7.0
    arrivals = rng.poisson(rng.gamma(0.8, 1.0 / 4.0, n) * t_age)
    x = np.minimum(arrivals, rng.geometric(rng.beta(0.7, 3.0, n)))
    # the x-th of the arrivals' uniform order statistics on (0, T]
    u = rng.beta(np.maximum(x, 1), np.maximum(arrivals - x + 1, 1))
    tx = np.where(x > 0, np.floor(u * t_age * 7.0) / 7.0, 0.0)
    return x.astype(np.float64), tx, t_age


def test_warm_started_fits_reach_the_optimum_and_repeat_bit_for_bit() -> None:
    x, tx, t_age = _bgnbd_sample(260_000, seed=3)  # above 4 x the 50,000 warm-start sample
    warm = fit_bgnbd(x, tx, t_age)
    again = fit_bgnbd(x, tx, t_age)
    assert warm.as_dict() == again.as_dict()
    cold = fit_bgnbd(x, tx, t_age, start=(warm.r * 1.3, warm.alpha * 0.7, 1.0, 1.0))
    for name in ("r", "alpha", "a", "b"):
        assert getattr(warm, name) == pytest.approx(getattr(cold, name), rel=1e-7)
        assert warm.standard_errors[name] == pytest.approx(cold.standard_errors[name], rel=1e-3)
    assert warm.log_likelihood == pytest.approx(cold.log_likelihood, rel=1e-13)
    assert warm.iterations < cold.iterations


def test_gamma_gamma_warm_start_repeats_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    n = 220_000
    x = rng.integers(1, 12, n).astype(np.float64)
    nu = rng.gamma(4.0, 1.0 / 60.0, n)
    m = rng.gamma(5.0 * x, 1.0 / nu) / x
    first, second = fit_gamma_gamma(x, m), fit_gamma_gamma(x, m)
    assert first.as_dict() == second.as_dict()
    assert first.p == pytest.approx(5.0, rel=0.05)
    assert first.gamma == pytest.approx(60.0, rel=0.1)


def test_distinct_rows_are_sorted_and_weighted() -> None:
    x = np.array([2.0, 0.0, 2.0, 1.0, 2.0, 0.0])
    tx = np.array([5.0, 0.0, 5.0, 3.0, 4.0, 0.0])
    t_age = np.array([9.0, 7.0, 9.0, 9.0, 9.0, 8.0])
    xs, txs, ts, w = sufficient_statistics(x, tx, t_age)
    assert list(zip(xs, txs, ts, w, strict=True)) == [
        (0.0, 0.0, 7.0, 1.0),
        (0.0, 0.0, 8.0, 1.0),
        (1.0, 3.0, 9.0, 1.0),
        (2.0, 4.0, 9.0, 1.0),
        (2.0, 5.0, 9.0, 2.0),
    ]
