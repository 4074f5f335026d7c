"""Shifted-beta-geometric (sBG) model of contractual churn (Fader & Hardie 2007, 2010).

At each renewal a customer churns with probability theta, theta ~ Beta(alpha, beta) across
customers. With T the period in which a customer churns:

    P(T = t) = B(alpha+1, beta+t-1) / B(alpha, beta),   S(t) = B(alpha, beta+t) / B(alpha, beta)
    retention r_t = S(t) / S(t-1) = (beta+t-1) / (alpha+beta+t-1)   (rises with t: sorting)

Fitted on a cohort's survival counts n_0 >= n_1 >= ... >= n_k (customers still active at
the start of periods 0..k): the n_{t-1} - n_t customers lost in period t contribute
ln P(T = t), the n_k still active ln S(k). Customer-level data (renewals made, active or
not) is the same likelihood with counts per tenure (:func:`fit_sbg_tenure`).

Discounted expected residual lifetime of a customer who has made n renewals, counting the
payment at the next renewal as the first (undiscounted, as in Fader & Hardie 2010) and each
later one discounted by d per period:

    DERL(d | n) = sum_{k>=0} (1+d)^-k S(n+1+k)/S(n)
                = (beta+n)/(alpha+beta+n) 2F1(1, beta+n+1; alpha+beta+n+1; 1/(1+d)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, hyp2f1

from engine.clv.models import ModelFit, fit_model
from engine.errors import FieldViolation, InvalidInputError
from engine.io import csv_separator, read_csv

Array = NDArray[np.float64]
PARAM_NAMES = ("alpha", "beta")
SURVIVAL_COLUMNS = ("cohort", "period", "alive")


def log_likelihood(theta: ArrayLike, lost: Array, active: Array) -> float:
    """``lost[t-1]`` customers churned in period t = 1..k, ``active[t]`` still active at t."""
    alpha, beta = (float(v) for v in np.asarray(theta, dtype=np.float64))
    t = np.arange(1, lost.size + 1, dtype=np.float64)
    base = betaln(alpha, beta)
    ll = np.einsum("i,i->", lost, betaln(alpha + 1.0, beta + t - 1.0) - base)
    tt = np.arange(active.size, dtype=np.float64)
    ll += np.einsum("i,i->", active, betaln(alpha, beta + tt) - base)
    return float(ll)


@dataclass(frozen=True)
class SBGFit:
    fit: ModelFit
    cohort: str = ""

    @property
    def alpha(self) -> float:
        return self.fit.params["alpha"]

    @property
    def beta(self) -> float:
        return self.fit.params["beta"]

    def survival(self, t: ArrayLike) -> Array:
        t = np.asarray(t, dtype=np.float64)
        return np.asarray(np.exp(betaln(self.alpha, self.beta + t) - betaln(self.alpha, self.beta)))

    def retention(self, t: ArrayLike) -> Array:
        """r_t: probability that a customer active in period t-1 renews for period t (t >= 1)."""
        t = np.asarray(t, dtype=np.float64)
        return np.asarray((self.beta + t - 1.0) / (self.alpha + self.beta + t - 1.0))

    def derl(self, discount_rate: float, renewals: ArrayLike) -> Array:
        """Discounted expected residual lifetime (periods) after ``renewals`` renewals."""
        return derl(self.alpha, self.beta, discount_rate, renewals)

    def del_(self, discount_rate: float) -> float:
        """Discounted expected lifetime (periods) of a new customer, first payment now:
        sum_{k>=0} (1+d)^-k S(k) = 2F1(1, beta; alpha+beta; 1/(1+d))."""
        _check_rate(discount_rate)
        delta = 1.0 / (1.0 + discount_rate)
        return float(hyp2f1(1.0, self.beta, self.alpha + self.beta, delta))

    def as_dict(self, discount_rate: float = 0.1, periods: int = 12) -> dict[str, Any]:
        t = np.arange(1, periods + 1)
        return {
            "cohort": self.cohort,
            **self.fit.as_dict(),
            "retention": [float(v) for v in self.retention(t)],
            "survival": [float(v) for v in self.survival(np.arange(periods + 1))],
            "discount_rate": discount_rate,
            "del": float(self.del_(discount_rate)),
            "derl": [float(v) for v in self.derl(discount_rate, np.arange(periods))],
        }


def derl(alpha: float, beta: float, discount_rate: float, renewals: ArrayLike) -> Array:
    """DERL(d | n) of the module docstring, vectorised over n."""
    _check_rate(discount_rate)
    n = np.asarray(renewals, dtype=np.float64)
    delta = 1.0 / (1.0 + discount_rate)
    return np.asarray(
        (beta + n) / (alpha + beta + n) * hyp2f1(1.0, beta + n + 1.0, alpha + beta + n + 1.0, delta)
    )


def _check_rate(discount_rate: float) -> None:
    if not (np.isfinite(discount_rate) and discount_rate > 0):
        raise InvalidInputError.single(
            "discount_rate", "must be a finite number > 0 (with a <= 1, lifetimes are unbounded)"
        )


def fit_sbg(alive: ArrayLike, cohort: str = "") -> SBGFit:
    """Fit one cohort's survival counts (active customers at the start of periods 0..k)."""
    counts = np.asarray(alive, dtype=np.float64)
    if counts.size < 3:
        raise InvalidInputError.single(
            "survival.alive", f"cohort {cohort!r}: need periods 0, 1 and 2 at least"
        )
    lost = counts[:-1] - counts[1:]
    active = np.zeros(counts.size)
    active[-1] = counts[-1]
    return _fit(lost, active, float(counts[0]), cohort)


def fit_sbg_tenure(renewals: ArrayLike, active: ArrayLike, cohort: str = "") -> SBGFit:
    """Fit customer-level data: renewals made so far and whether still active.

    A churned customer with n renewals churned in period n+1 (P(T = n+1)); an active one
    with n renewals has survived n periods (S(n)). Counts per tenure, no loop over customers.
    """
    n = np.asarray(renewals, dtype=np.int64)
    on = np.asarray(active, dtype=bool)
    if n.size == 0 or np.any(n < 0):
        raise InvalidInputError.single("renewals", "must be integers >= 0, one per customer")
    size = int(n.max()) + 2
    lost = np.bincount(n[~on], minlength=size)[: size - 1].astype(np.float64)
    still = np.bincount(n[on], minlength=size).astype(np.float64)
    return _fit(lost, still, float(n.size), cohort)


def _fit(lost: Array, active: Array, n: float, cohort: str) -> SBGFit:
    if lost.sum() == 0:
        raise InvalidInputError.single(
            "survival.alive", f"cohort {cohort!r}: nobody churned; sBG is not identified"
        )
    fit = fit_model("sBG", lambda th: log_likelihood(th, lost, active), (1.0, 1.0), PARAM_NAMES, n)
    return SBGFit(fit, cohort)


def read_survival(path: str | Path) -> pl.DataFrame:
    """Read ``cohort, period, alive`` (CSV or Parquet) and check it, naming the rows."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError.single("survival", f"file not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pl.read_parquet(path)
    else:
        df = read_csv(path, separator=csv_separator(path), schema_overrides={"cohort": pl.String})
    return validate_survival(df)


def validate_survival(df: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in SURVIVAL_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"survival.{c}", "required column is missing") for c in missing
        )
    out = df.with_row_index("row").with_columns(
        pl.col("cohort").cast(pl.String),
        pl.col("period").cast(pl.Int64, strict=False),
        pl.col("alive").cast(pl.Float64, strict=False),
    )
    problems: list[FieldViolation] = []
    bad = out.filter(pl.col("period").is_null() | (pl.col("period") < 0))
    problems += [
        FieldViolation("survival.period", "must be an integer >= 0", r) for r in bad["row"]
    ]
    bad = out.filter(
        pl.col("alive").is_null() | ~pl.col("alive").is_finite() | (pl.col("alive") < 0)
    )
    problems += [FieldViolation("survival.alive", "must be a number >= 0", r) for r in bad["row"]]
    if problems:
        raise InvalidInputError(problems[:20])
    first_row = pl.col("row").min().over("cohort")
    out = out.with_columns(first_row.alias("order")).sort(["order", "period"])
    checks = out.with_columns(
        expected=pl.int_range(pl.len()).over("cohort"),
        previous=pl.col("alive").shift(1).over("cohort"),
    )
    for row in checks.filter(pl.col("period") != pl.col("expected"))["row"]:
        problems.append(
            FieldViolation("survival.period", "periods of a cohort must be 0, 1, 2, ...", row)
        )
    for row in checks.filter(pl.col("alive") > pl.col("previous"))["row"]:
        problems.append(
            FieldViolation("survival.alive", "more customers than in the period before", row)
        )
    if problems:
        raise InvalidInputError(problems[:20])
    return out.select(SURVIVAL_COLUMNS)


def fit_survival_table(df: pl.DataFrame) -> list[SBGFit]:
    """One sBG fit per cohort of a ``cohort, period, alive`` table, in cohort order."""
    df = validate_survival(df)
    return [
        fit_sbg(group["alive"].to_numpy(), str(name[0]))
        for name, group in df.group_by("cohort", maintain_order=True)
    ]
