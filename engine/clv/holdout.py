"""The calibration/holdout check: the standard acceptance test of a purchase model.

Fit on purchases up to the calibration end, then compare, for the same customers, the
repeat purchase days the model expects in (calibration end, holdout end] with the ones
that happened (Fader, Hardie & Lee 2005, figures 3 and 4):

* in total (``predicted`` against ``actual``);
* by calibration frequency 0, 1, ..., ``cap``+ (mean per customer, predicted and actual);
* cumulative over time from the cohort's first purchase to the holdout end (``tracking``),
  the expected curve being sum_i E[X(t - first purchase of i)], i.e. what the model expects
  of customers it knows nothing about beyond their first purchase date.

Purchases are counted as in :func:`engine.clv.transactions.rfm_statistics`: one per
customer and day, the same duplicate, zero-amount and refund rules (``purchase_days``
applies them to the whole log; the tests check it reproduces the calibration frequencies).
Any model with ``conditional_expected_purchases(t, x, t_x, T)`` and ``expected_purchases(t)``
can be checked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from engine.clv.transactions import (
    REQUIRED_COLUMNS,
    TRANSACTION_ID,
    UNIT_DAYS,
    RefundPolicy,
    TimeUnit,
    drop_repeated_ids,
    normalize_transactions,
    parse_calibration_end,
)
from engine.errors import InvalidInputError

Array = NDArray[np.float64]
FREQUENCY_CAP = 7  # the papers' last group is "7+"


class PurchaseModel(Protocol):
    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array: ...

    def expected_purchases(self, t: ArrayLike) -> Array: ...


def purchase_days(
    transactions: pl.DataFrame,
    end: dt.date,
    refunds: RefundPolicy = "drop",
    dedupe: bool = False,
) -> pl.DataFrame:
    """One row per customer and purchase day on or before ``end``: ``customer_id``, ``date``.

    The rules of :func:`engine.clv.transactions.rfm_statistics` as one group-by: repeated
    transaction ids dropped, identical rows dropped only with ``dedupe``, refunds dropped
    (``drop``) or netted within the day (``net_same_day``: a day with a refund netting to
    <= 0 is no purchase). ``refunds="error"`` is enforced by the calibration pass.
    """
    cols = (
        [*REQUIRED_COLUMNS, TRANSACTION_ID]
        if TRANSACTION_ID in transactions.columns
        else list(REQUIRED_COLUMNS)
    )
    tx = normalize_transactions(transactions).select(cols)
    if TRANSACTION_ID in cols:
        tx, _ = drop_repeated_ids(tx)
    tx = tx.filter(pl.col("date") <= end)
    if dedupe:
        tx = tx.unique(subset=list(REQUIRED_COLUMNS), keep="first", maintain_order=True)
    keep = pl.lit(True) if refunds == "net_same_day" else pl.col("amount") >= 0
    days = tx.group_by(["customer_id", "date"]).agg(
        kept=keep.sum(),
        net=pl.col("amount").filter(keep).sum(),
        refund=(pl.col("amount") < 0).any(),
    )
    valid = pl.col("kept") > 0
    if refunds == "net_same_day":
        valid = valid & ~(pl.col("refund") & (pl.col("net") <= 0))
    return days.filter(valid).select("customer_id", "date")


@dataclass(frozen=True)
class HoldoutCheck:
    """Predicted and actual repeat purchase days in the holdout period, and the tracking."""

    calibration_end: dt.date
    holdout_end: dt.date
    length: float  # holdout length in time units
    customers: pl.DataFrame  # customer_id, frequency, predicted, actual
    tracking: pl.DataFrame  # period_end, predicted, actual (cumulative repeat purchases)
    cap: int = FREQUENCY_CAP

    @property
    def predicted(self) -> float:
        return float(self.customers["predicted"].sum())

    @property
    def actual(self) -> int:
        return int(self.customers["actual"].sum())

    def by_frequency(self) -> list[dict[str, Any]]:
        g = (
            self.customers.with_columns(
                pl.col("frequency").clip(upper_bound=self.cap).alias("group")
            )
            .group_by("group")
            .agg(
                customers=pl.len(),
                predicted_mean=pl.col("predicted").mean(),
                actual_mean=pl.col("actual").mean(),
            )
            .sort("group")
        )
        return [
            {
                "frequency": int(row["group"]),
                "and_above": int(row["group"]) == self.cap,
                "customers": int(row["customers"]),
                "predicted_mean": float(row["predicted_mean"]),
                "actual_mean": float(row["actual_mean"]),
            }
            for row in g.iter_rows(named=True)
        ]

    def mean_absolute_error(self) -> float:
        """Mean over customers of |predicted - actual| (the per-customer holdout error)."""
        diff = self.customers["predicted"].to_numpy() - self.customers["actual"].to_numpy()
        return float(np.mean(np.abs(diff)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
            "length": self.length,
            "predicted": self.predicted,
            "actual": self.actual,
            "error": (self.predicted - self.actual) / max(self.actual, 1),
            "mean_absolute_error": self.mean_absolute_error(),
            "by_frequency": self.by_frequency(),
            "tracking": [
                {"period_end": d.isoformat(), "predicted": float(p), "actual": int(a)}
                for d, p, a in self.tracking.select("period_end", "predicted", "actual").rows()
            ],
        }


def holdout_check(
    model: PurchaseModel,
    rfm: pl.DataFrame,
    transactions: pl.DataFrame,
    calibration_end: dt.date | str,
    holdout_end: dt.date | str,
    time_unit: TimeUnit = "week",
    refunds: RefundPolicy = "drop",
    dedupe: bool = False,
    cap: int = FREQUENCY_CAP,
) -> HoldoutCheck:
    """Compare ``model`` (fitted on ``rfm``, the calibration statistics) with the holdout.

    ``transactions`` is the whole log (calibration and holdout); customers whose first
    purchase is after the calibration end are not part of the check.
    """
    cal = parse_calibration_end(calibration_end)
    end = parse_calibration_end(holdout_end, "holdout_end")
    if end <= cal:
        raise InvalidInputError.single(
            "holdout_end", f"must be after the calibration end {cal.isoformat()}"
        )
    unit = UNIT_DAYS[time_unit]
    days = purchase_days(transactions, end, refunds, dedupe)
    first = days.group_by("customer_id").agg(pl.col("date").min().alias("first"))
    cohort = first.filter(pl.col("first") <= cal)
    counts = (
        days.filter(pl.col("date") > cal)
        .group_by("customer_id")
        .agg(pl.len().cast(pl.Int64).alias("actual"))
    )
    customers = (
        rfm.select("customer_id", "frequency", "recency", "T")
        .join(counts, on="customer_id", how="left")
        .with_columns(pl.col("actual").fill_null(0))
    )
    length = (end - cal).days / unit
    x = customers["frequency"].cast(pl.Float64).to_numpy()
    predicted = model.conditional_expected_purchases(
        np.full(x.size, length),
        x,
        customers["recency"].cast(pl.Float64).to_numpy(),
        customers["T"].cast(pl.Float64).to_numpy(),
    )
    customers = customers.select(
        "customer_id", "frequency", pl.Series("predicted", predicted), "actual"
    )
    tracking = _tracking(model, days, cohort, end, unit)
    return HoldoutCheck(cal, end, length, customers, tracking, cap)


def _tracking(
    model: PurchaseModel, days: pl.DataFrame, cohort: pl.DataFrame, end: dt.date, unit: float
) -> pl.DataFrame:
    """Cumulative repeat purchases of the cohort at the end of each time unit, and expected."""
    start = cohort["first"].min()
    assert isinstance(start, dt.date)
    step = int(unit)
    n_periods = -(-((end - start).days + 1) // step)
    period_end = [start + dt.timedelta(days=step * (k + 1) - 1) for k in range(n_periods)]
    period_end[-1] = min(period_end[-1], end)
    grid = np.array([(d - start).days + 1 for d in period_end], dtype=np.float64)  # days
    # Repeat purchases: every purchase day of a cohort customer after their first one.
    repeat = days.join(cohort, on="customer_id").filter(pl.col("date") > pl.col("first"))
    epoch = (start - dt.date(1970, 1, 1)).days
    offset = repeat["date"].cast(pl.Int32).to_numpy() - epoch
    per_period = np.bincount(offset // step, minlength=n_periods)[:n_periods]
    firsts = cohort.group_by("first").len()
    f_off = (firsts["first"].cast(pl.Int32).to_numpy() - epoch).astype(np.float64)
    weight = firsts["len"].to_numpy().astype(np.float64)
    age = np.maximum(grid[None, :] - f_off[:, None] - 1.0, 0.0) / unit  # time since first
    expected = np.einsum("i,ij->j", weight, model.expected_purchases(age))
    return pl.DataFrame(
        {"period_end": period_end, "predicted": expected, "actual": np.cumsum(per_period)}
    )
