"""BG/NBD diagnostics (engine.clv.diagnostics): P(X(t) = n) against simulation of the
individual-level process and the closed-form mean, the period-transactions histogram on
simulated customers, the P(alive) matrix, and ``equity clv --diagnostics`` on CDNOW."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli.clv import main
from engine.clv.bgnbd import BGNBDParams, expected_purchases, p_alive
from engine.clv.diagnostics import (
    count_distribution,
    count_probabilities,
    p_alive_matrix,
    period_transactions,
)

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
PARAMS = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # CDNOW, FHL 2005


def simulate_counts(params: BGNBDParams, t: np.ndarray, seed: int) -> np.ndarray:
    """Repeat purchases in (0, t]: Poisson(lambda t) purchases while alive, dropout after
    each purchase with probability p, so X(t) = min(N(t), D) with D ~ Geometric(p)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1.0 / params.alpha, t.size)
    p = rng.beta(params.a, params.b, t.size)
    return np.minimum(rng.poisson(lam * t), rng.geometric(p))


def test_count_distribution_sums_to_one_with_the_closed_form_mean() -> None:
    t = np.array([0.0, 1.0, 39.0, 500.0])
    probs = count_probabilities(PARAMS, t, 5_000)
    assert probs.sum(axis=1) == pytest.approx(1.0, abs=1e-10)
    assert probs @ np.arange(5_001) == pytest.approx(expected_purchases(PARAMS, t), rel=1e-9)
    assert probs[0, 0] == 1.0  # nothing happens in no time


@pytest.mark.parametrize("t", [5.0, 39.0, 150.0])
def test_count_distribution_against_simulation(t: float) -> None:
    n = 400_000
    sims = simulate_counts(PARAMS, np.full(n, t), seed=int(t))
    doc = count_distribution(PARAMS, t, cap=7)
    got = np.array([row["probability"] for row in doc["probabilities"]])
    seen = np.bincount(np.minimum(sims, 7), minlength=8) / n
    sigma = np.sqrt(got * (1 - got) / n)
    assert np.all(np.abs(seen - got) < 4.5 * sigma + 1e-4), (seen, got)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_period_transactions_on_simulated_customers() -> None:
    rng = np.random.default_rng(5)
    T = rng.integers(20, 40, 200_000).astype(np.float64)
    x = simulate_counts(PARAMS, T, seed=6)
    rows = period_transactions(PARAMS, x, T)
    assert [r["frequency"] for r in rows] == list(range(8)) and rows[-1]["and_above"]
    actual = np.array([r["actual"] for r in rows])
    expected = np.array([r["expected"] for r in rows])
    assert actual.tolist() == np.bincount(np.minimum(x, 7), minlength=8).tolist()
    assert expected.sum() == pytest.approx(x.size, rel=1e-12)
    # Each customer's own T: the expected count is the sum of their probabilities.
    some = slice(0, 500)
    per_customer = count_probabilities(PARAMS, T[some], 6)
    sub = period_transactions(PARAMS, x[some], T[some])
    assert [r["expected"] for r in sub[:7]] == pytest.approx(per_customer.sum(axis=0).tolist())
    sigma = np.sqrt(expected * (1 - expected / x.size))
    assert np.all(np.abs(actual - expected) < 4.5 * sigma), (actual, expected)


def test_p_alive_matrix() -> None:
    m = p_alive_matrix(PARAMS, 38.86, 10)
    assert m["frequency"] == list(range(11))
    assert m["recency"][0] == 0 and m["recency"][-1] == 38.86 and len(m["recency"]) == 39
    grid = m["p_alive"]
    assert grid[0][0] == 1.0 and all(v is None for v in grid[0][1:])
    for x in range(1, 11):
        assert grid[x][0] is None
        row = np.array(grid[x][1:], dtype=float)
        want = p_alive(PARAMS, x, np.array(m["recency"][1:]), 38.86)
        assert row == pytest.approx(want, rel=1e-12)
        assert np.all(np.diff(row) > 0)  # the more recent the last purchase, the likelier
        # a purchase just now: only the dropout right after it remains possible
        assert row[-1] == pytest.approx(1 / (1 + PARAMS.a / (PARAMS.b + x - 1)))


def test_equity_clv_diagnostics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--prediction-horizon", "39", "--diagnostics", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    d = doc["diagnostics"]
    actual = [r["actual"] for r in d["period_transactions"]]
    assert actual == [1411, 439, 214, 100, 62, 38, 29, 64]  # FHL 2005's calibration counts
    expected = np.array([r["expected"] for r in d["period_transactions"]])
    assert expected.sum() == pytest.approx(2357)
    assert np.all(np.abs(expected - actual) < 3 * np.sqrt(expected))  # a good fit
    probs = [r["probability"] for r in d["count_distribution"]["probabilities"]]
    assert d["count_distribution"]["t"] == 39 and sum(probs) == pytest.approx(1.0)
    fit = doc["bgnbd"]
    params = BGNBDParams(fit["r"], fit["alpha"], fit["a"], fit["b"])
    assert probs[:7] == pytest.approx(count_probabilities(params, np.array(39.0), 6).tolist())
    assert d["p_alive_matrix"]["T"] == pytest.approx(272 / 7)  # the longest calibration age
