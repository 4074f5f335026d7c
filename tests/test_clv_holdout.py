"""The calibration/holdout check on CDNOW: Fader, Hardie & Lee's (2005) figures, the
purchase counting against the calibration statistics, tracking, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli.clv import main
from engine.clv.bgnbd import BGNBDFit, fit_bgnbd_rfm
from engine.clv.holdout import HoldoutCheck, holdout_check, purchase_days
from engine.clv.transactions import read_transactions, rfm_statistics
from engine.errors import InvalidInputError

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CAL, HOLD = "1997-09-30", "1998-06-30"
# FHL 2005 (figure 4): conditional expectations by calibration frequency 0..6, 7+.
PREDICTED = (0.225, 0.523, 1.044, 1.520, 2.164, 2.654, 3.504, 6.157)
ACTUAL = (0.237, 0.697, 1.393, 1.560, 2.532, 2.947, 3.862, 6.359)


@pytest.fixture(scope="module")
def check() -> tuple[HoldoutCheck, BGNBDFit, pl.DataFrame, pl.DataFrame]:
    tx = read_transactions(CDNOW)
    rfm, _ = rfm_statistics(tx, CAL, "week")
    fit = fit_bgnbd_rfm(rfm)
    return holdout_check(fit, rfm, tx, CAL, HOLD, "week"), fit, rfm, tx


def test_cdnow_holdout_totals_and_by_frequency(check: tuple) -> None:
    h = check[0]
    assert h.length == 39.0
    assert round(h.predicted, 1) == 1653.4 and h.actual == 1882
    rows = h.by_frequency()
    assert [r["frequency"] for r in rows] == list(range(8)) and rows[-1]["and_above"]
    assert sum(r["customers"] for r in rows) == 2357
    assert tuple(round(r["predicted_mean"], 3) for r in rows) == PREDICTED
    assert tuple(round(r["actual_mean"], 3) for r in rows) == ACTUAL
    assert 0 < h.mean_absolute_error() < 2


def test_tracking_is_cumulative_and_ends_at_the_totals(check: tuple) -> None:
    h, fit, rfm, _ = check
    t = h.tracking
    assert t.height == 78 and t["period_end"][-1] == dt.date(1998, 6, 30)
    actual = t["actual"].to_numpy()
    assert np.all(np.diff(actual) >= 0) and np.all(np.diff(t["predicted"].to_numpy()) > 0)
    at_cal = t.filter(pl.col("period_end") == dt.date(1997, 9, 30))
    assert int(at_cal["actual"].item()) == int(rfm["frequency"].sum())  # 2,457 repeat days
    assert actual[-1] == int(rfm["frequency"].sum()) + h.actual
    # Expected: sum over customers of E[X(age at the end)] from their first purchase.
    ages = rfm["T"].to_numpy() + 39.0
    assert t["predicted"][-1] == pytest.approx(float(fit.expected_purchases(ages).sum()))


@pytest.mark.parametrize("refunds", ["drop", "net_same_day"])
@pytest.mark.parametrize("dedupe", [False, True])
def test_purchase_days_count_like_the_calibration(refunds: str, dedupe: bool) -> None:
    rng = np.random.default_rng(3)
    n = 4000
    log = pl.DataFrame(
        {
            "customer_id": rng.integers(0, 300, n),
            "date": pl.Series(rng.integers(18262, 18322, n)).cast(pl.Date),  # 2020-01-01 on
            "amount": rng.choice([-5.0, 0.0, 5.0, 5.0, 12.5], n),
        }
    )
    end = dt.date(2020, 2, 10)
    rfm, _ = rfm_statistics(log, end, "day", refunds, dedupe)  # type: ignore[arg-type]
    days = purchase_days(log, end, refunds, dedupe)  # type: ignore[arg-type]
    per = days.group_by("customer_id").len().sort("customer_id")
    assert per["customer_id"].equals(rfm["customer_id"])
    assert (per["len"].cast(pl.Int64) - 1).equals(rfm["frequency"], check_names=False)


def test_holdout_end_must_follow_the_calibration(check: tuple) -> None:
    _, fit, rfm, tx = check
    with pytest.raises(InvalidInputError, match="holdout_end"):
        holdout_check(fit, rfm, tx, CAL, "1997-09-01")


def test_cli_holdout_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["clv", "--transactions", str(CDNOW), "--calibration-end", CAL,
                 "--holdout-end", HOLD, "--json"])  # fmt: skip
    assert code == 0
    h = json.loads(capsys.readouterr().out)["holdout"]
    assert round(h["predicted"], 1) == 1653.4 and h["actual"] == 1882
    assert round(h["error"], 3) == -0.121
    assert [round(r["actual_mean"], 3) for r in h["by_frequency"]] == list(ACTUAL)
    assert set(h["by_frequency"][0]) == {
        "frequency", "and_above", "customers", "predicted_mean", "actual_mean",
    }  # fmt: skip
    assert len(h["tracking"]) == 78 and h["tracking"][-1]["actual"] == 2457 + 1882
