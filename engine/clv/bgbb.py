"""BG/BB purchase model for discrete purchase opportunities (Fader, Hardie & Berger 2010).

At each of n opportunities after the first purchase (a yearly donation appeal, an annual
event) a customer who is alive buys with probability p ~ Beta(alpha, beta); before each
opportunity an alive customer dies with probability theta ~ Beta(gamma, delta). A customer's
history is summarised by x purchases, the opportunity t_x of the last (0 if none) and n:

    L = B(alpha+x, beta+n-x)/B(alpha, beta) B(gamma, delta+n)/B(gamma, delta)
        + sum_{i=0}^{n-t_x-1} B(alpha+x, beta+t_x-x+i)/B(alpha, beta)
                              B(gamma+1, delta+t_x+i)/B(gamma, delta)

(alive through n, or died just after opportunity t_x + i). Evaluated in logs, once per
distinct (x, t_x, n) with the number of customers sharing it as a weight; the sum is a
masked grid of distinct rows x terms, in chunks. Per customer:

    P(alive at n+1) = B(alpha+x, beta+n-x)/B(alpha, beta) B(gamma, delta+n+1)/B(gamma, delta) / L
    E[X(n, n+n*) | x, t_x, n] = 1/L B(alpha+x+1, beta+n-x)/B(alpha, beta) delta/(gamma-1)
        G(gamma+delta)/G(1+delta) [G(1+delta+n)/G(gamma+delta+n)
                                   - G(1+delta+n+n*)/G(gamma+delta+n+n*)]
    E[X(n)] = alpha/(alpha+beta) delta/(gamma-1) [1 - G(gamma+delta) G(1+delta+n)
                                                   / (G(gamma+delta+n) G(1+delta))]
    DERT(d) = B(alpha+x+1, beta+n-x)/B(alpha, beta) B(gamma, delta+n+1)/B(gamma, delta)
              / (1+d) 2F1(1, delta+n+1; gamma+delta+n+1; 1/(1+d)) / L

(the expected purchases in the next n* opportunities, in the first n of a new customer, and
the discounted expected residual purchases, future opportunities discounted by d each).
gamma = 1 is a removable singularity of the expectations; they are evaluated through it
exactly (``_survival_sum``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp, polygamma

from engine.clv.bgnbd import MIN_CUSTOMERS
from engine.clv.models import ModelFit, fit_model
from engine.errors import FieldViolation, InvalidInputError
from engine.io import csv_separator, read_csv

Array = NDArray[np.float64]
PARAM_NAMES = ("alpha", "beta", "gamma", "delta")
_CHUNK = 2_000_000  # grid elements (rows x terms) per block
WEIGHT_COLUMNS = ("weight", "customers", "n_custs")


def _row_log_likelihood(theta: ArrayLike, x: Array, tx: Array, n: Array) -> Array:
    alpha, beta, gamma, delta = (float(v) for v in np.asarray(theta, dtype=np.float64))
    shape = np.broadcast_shapes(np.shape(x), np.shape(tx), np.shape(n))
    x, tx, n = (np.broadcast_to(v, shape).reshape(-1) for v in (x, tx, n))
    b_ab, b_gd = betaln(alpha, beta), betaln(gamma, delta)
    alive = betaln(alpha + x, beta + n - x) - b_ab + betaln(gamma, delta + n) - b_gd
    width = (n - tx).astype(np.int64)
    out = alive.copy()
    order = np.argsort(width, kind="stable")  # similar widths share a block
    step = max(1, _CHUNK // max(int(width.max(initial=1)), 1))
    for start in range(0, order.size, step):  # blocks of rows, not single customers
        rows = order[start:start + step]
        widest = max(int(width[rows].max()), 1)
        i = np.arange(widest, dtype=np.float64)[None, :]
        xr, txr = x[rows, None], tx[rows, None]
        terms = (betaln(alpha + xr, beta + txr - xr + i) - b_ab
                 + betaln(gamma + 1.0, delta + txr + i) - b_gd)
        terms = np.where(i < width[rows, None], terms, -np.inf)
        out[rows] = np.logaddexp(alive[rows], logsumexp(terms, axis=1))
    return np.asarray(out).reshape(shape)


def log_likelihood(theta: ArrayLike, x: Array, tx: Array, n: Array, w: Array) -> float:
    return float(np.einsum("i,i->", w, _row_log_likelihood(theta, x, tx, n)))


@dataclass(frozen=True)
class BGBBFit:
    fit: ModelFit

    @property
    def theta(self) -> tuple[float, float, float, float]:
        p = self.fit.params
        return p["alpha"], p["beta"], p["gamma"], p["delta"]

    def as_dict(self) -> dict[str, Any]:
        return self.fit.as_dict()

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, n: ArrayLike) -> Array:
        """P(alive at opportunity n + 1 | x, t_x, n)."""
        return _per_pattern(self._p_alive, frequency, recency, n)

    def _p_alive(self, x: Array, tx: Array, nn: Array) -> Array:
        alpha, beta, gamma, delta = self.theta
        log_alive = (betaln(alpha + x, beta + nn - x) - betaln(alpha, beta)
                     + betaln(gamma, delta + nn + 1.0) - betaln(gamma, delta))
        return np.asarray(np.exp(log_alive - _row_log_likelihood(self.theta, x, tx, nn)))

    def conditional_expected_purchases(
        self, n_star: ArrayLike, frequency: ArrayLike, recency: ArrayLike, n: ArrayLike
    ) -> Array:
        """E[X(n, n + n*) | x, t_x, n]: purchases expected in the next n* opportunities."""
        ns = np.asarray(n_star, dtype=np.float64)
        if ns.ndim == 0:
            return _per_pattern(lambda *c: self._conditional(ns, *c), frequency, recency, n)
        return self._conditional(ns, *_arrays(frequency, recency, n))

    def _conditional(self, ns: Array, x: Array, tx: Array, nn: Array) -> Array:
        alpha, beta, gamma, delta = self.theta
        head = (betaln(alpha + x + 1.0, beta + nn - x) - betaln(alpha, beta)
                - _row_log_likelihood(self.theta, x, tx, nn))
        return np.asarray(np.exp(head) * _survival_sum(gamma, delta, nn, ns))

    def expected_purchases(self, n: ArrayLike) -> Array:
        """E[X(n)]: purchases of a new customer in their first n opportunities."""
        alpha, beta, gamma, delta = self.theta
        nn = np.asarray(n, dtype=np.float64)
        return np.asarray(alpha / (alpha + beta) * _survival_sum(gamma, delta, 0.0 * nn, nn))

    def dert(
        self, discount_rate: float, frequency: ArrayLike, recency: ArrayLike, n: ArrayLike
    ) -> Array:
        """Discounted expected residual purchases, opportunity n + k discounted (1+d)^-k."""
        if not (np.isfinite(discount_rate) and discount_rate > 0):
            raise InvalidInputError.single("discount_rate", "must be a finite number > 0")
        return _per_pattern(lambda *c: self._dert(discount_rate, *c), frequency, recency, n)

    def _dert(self, discount_rate: float, x: Array, tx: Array, nn: Array) -> Array:
        alpha, beta, gamma, delta = self.theta
        d = 1.0 / (1.0 + discount_rate)
        log_head = (betaln(alpha + x + 1.0, beta + nn - x) - betaln(alpha, beta)
                    + betaln(gamma, delta + nn + 1.0) - betaln(gamma, delta)
                    - _row_log_likelihood(self.theta, x, tx, nn))
        return np.asarray(
            np.exp(log_head) * d * hyp2f1(1.0, delta + nn + 1.0, gamma + delta + nn + 1.0, d)
        )


def _survival_sum(gamma: float, delta: float, n: Array, n_star: Array) -> Array:
    """sum_{k=1..n*} B(gamma, delta+n+k)/B(gamma, delta): the alive opportunities among the
    next n*, in closed form. With h = gamma - 1 every ratio of Gamma functions is a shift
    ln G(z+h) - ln G(z), by its Taylor series when h is small, so the form stays exact
    through gamma = 1 (where it is delta [psi(delta+n+n*+1) - psi(delta+n+1)])."""
    h = gamma - 1.0
    z0 = 1.0 + delta + np.asarray(n, dtype=np.float64)
    z1 = z0 + np.asarray(n_star, dtype=np.float64)
    if h == 0.0:
        return np.asarray(delta * (digamma(z1) - digamma(z0)))
    first = _lgamma_shift(1.0 + delta, h) - _lgamma_shift(z0, h)  # ln of the Gamma ratios
    step = _lgamma_shift(z0, h) - _lgamma_shift(z1, h)  # ln of the later ratio over the first
    return np.asarray(-delta * np.exp(first) * np.expm1(step) / h)


def _lgamma_shift(z: ArrayLike, h: float) -> Array:
    """ln G(z + h) - ln G(z), accurate for small h (four Taylor terms below |h| < 1e-3)."""
    z = np.asarray(z, dtype=np.float64)
    if abs(h) >= 1e-3:
        return np.asarray(gammaln(z + h) - gammaln(z))
    terms = [digamma(z), polygamma(1, z), polygamma(2, z), polygamma(3, z), polygamma(4, z)]
    return np.asarray(sum(t * h ** (k + 1) / factorial(k + 1) for k, t in enumerate(terms)))


def _per_pattern(
    f: Callable[[Array, Array, Array], Array], *columns: ArrayLike
) -> Array:
    """``f`` evaluated once per distinct (x, t_x, n) and given back to every customer."""
    x, tx, n = np.broadcast_arrays(*_arrays(*columns))
    shape = x.shape
    rows = np.stack([x.reshape(-1), tx.reshape(-1), n.reshape(-1)], axis=1)
    top = float(rows.max(initial=0.0)) + 1.0
    whole = bool(np.all((rows >= 0) & (rows == np.round(rows)))) and top**3 < 2.0**52
    if rows.shape[0] <= 64 or not whole:
        return np.asarray(f(x, tx, n))
    code = (rows[:, 0] * top + rows[:, 1]) * top + rows[:, 2]  # one number per pattern
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    distinct = rows[first]
    values = np.asarray(f(distinct[:, 0], distinct[:, 1], distinct[:, 2]))
    return np.asarray(values[inverse.reshape(-1)].reshape(shape))


def _arrays(*columns: ArrayLike) -> tuple[Array, ...]:
    return tuple(np.asarray(c, dtype=np.float64) for c in columns)


def validate_patterns(x: Array, tx: Array, n: Array, w: Array, name: str = "opportunities") -> None:
    """0 <= x <= t_x <= n, whole numbers, x = 0 iff t_x = 0, weights >= 0; rows named."""
    problems: list[FieldViolation] = []

    def bad(mask: NDArray[np.bool_], column: str, message: str) -> None:
        problems.extend(FieldViolation(f"{name}.{column}", message, int(i))
                        for i in np.flatnonzero(mask)[:20])

    for column, v in (("frequency", x), ("recency", tx), ("n", n)):
        bad(~np.isfinite(v) | (v < 0) | (v != np.round(v)), column, "must be a whole number >= 0")
    if problems:
        raise InvalidInputError(problems[:20])
    bad(x > tx, "frequency", "must be <= recency (one purchase per opportunity)")
    bad((x == 0) != (tx == 0), "recency", "must be 0 exactly when frequency is 0")
    bad(tx > n, "recency", "must be <= n")
    bad(~np.isfinite(w) | (w < 0), "weight", "must be a number >= 0")
    if problems:
        raise InvalidInputError(problems[:20])


def fit_bgbb(
    frequency: ArrayLike, recency: ArrayLike, n: ArrayLike, weights: ArrayLike | None = None
) -> BGBBFit:
    """Fit on customers (or patterns with ``weights`` customers each); ``ModelFitError`` if
    the fit fails."""
    x, tx, nn = _arrays(frequency, recency, n)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    validate_patterns(x, tx, nn, w)
    total = float(w.sum())
    if total < MIN_CUSTOMERS:
        raise InvalidInputError.single(
            "opportunities", f"too few customers to fit BG/BB: {total:.0f}, at least "
            f"{MIN_CUSTOMERS} needed",
        )
    table = (
        pl.DataFrame({"x": x, "tx": tx, "n": nn, "w": w})
        .group_by("x", "tx", "n").agg(pl.col("w").sum()).sort("x", "tx", "n")
    )
    xs, txs, ns, ws = (table[c].to_numpy() for c in ("x", "tx", "n", "w"))
    fit = fit_model(
        "BG/BB", lambda th: log_likelihood(th, xs, txs, ns, ws), (1.0, 1.0, 1.0, 1.0),
        PARAM_NAMES, total,
    )
    return BGBBFit(fit)


def read_opportunities(path: str | Path) -> pl.DataFrame:
    """One row per customer (or pattern) with ``frequency``, ``recency``, ``n`` and an
    optional ``weight`` (``customers``, ``n_custs``); or one row per customer and opportunity,
    ``customer_id``, ``opportunity`` (1, 2, ...), ``purchased`` (0/1), summarised here.
    Returns ``frequency, recency, n, weight`` (and ``customer_id`` when given)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError.single("opportunities", f"file not found: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pl.read_parquet(path)
    else:
        df = read_csv(path, separator=csv_separator(path))
    return opportunity_summary(df)


def opportunity_summary(df: pl.DataFrame) -> pl.DataFrame:
    if {"customer_id", "opportunity", "purchased"} <= set(df.columns):
        return _from_sequences(df)
    missing = [c for c in ("frequency", "recency", "n") if c not in df.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"opportunities.{c}", "required column is missing (or give "
                           "customer_id, opportunity, purchased)") for c in missing
        )
    weight = next((c for c in WEIGHT_COLUMNS if c in df.columns), None)
    out = df.select(
        *(["customer_id"] if "customer_id" in df.columns else []),
        *(pl.col(c).cast(pl.Float64, strict=False) for c in ("frequency", "recency", "n")),
        (pl.col(weight).cast(pl.Float64, strict=False) if weight else pl.lit(1.0)).alias("weight"),
    )
    x, tx, n, w = (out[c].fill_null(float("nan")).to_numpy() for c in
                   ("frequency", "recency", "n", "weight"))
    validate_patterns(x, tx, n, w)
    return out


def _from_sequences(df: pl.DataFrame) -> pl.DataFrame:
    """customer_id, opportunity (1..n, each once), purchased (0/1) -> x, t_x, n per customer."""
    rows = df.with_row_index("row").with_columns(
        pl.col("opportunity").cast(pl.Int64, strict=False),
        pl.col("purchased").cast(pl.Float64, strict=False),
    )
    problems = [FieldViolation("opportunities.opportunity", "must be a whole number >= 1", r)
                for r in rows.filter(pl.col("opportunity").is_null()
                                     | (pl.col("opportunity") < 1))["row"].head(20)]
    problems += [FieldViolation("opportunities.purchased", "must be 0 or 1", r)
                 for r in rows.filter(~pl.col("purchased").is_in([0.0, 1.0])
                                      | pl.col("purchased").is_null())["row"].head(20)]
    problems += [FieldViolation("opportunities.customer_id", "must not be null", r)
                 for r in rows.filter(pl.col("customer_id").is_null())["row"].head(20)]
    if problems:
        raise InvalidInputError(problems[:20])
    repeated = rows.filter(pl.struct("customer_id", "opportunity").is_duplicated())
    if repeated.height:
        raise InvalidInputError.single(
            "opportunities.opportunity", "repeats an opportunity of the same customer",
            int(repeated["row"][1] if repeated.height > 1 else repeated["row"][0]),
        )
    out = rows.group_by("customer_id", maintain_order=True).agg(
        frequency=pl.col("purchased").sum(),
        recency=(pl.col("opportunity") * pl.col("purchased")).max().cast(pl.Float64),
        n=pl.col("opportunity").max().cast(pl.Float64),
        count=pl.len(),
        first=pl.col("row").min(),
    )
    gaps = out.filter(pl.col("count") != pl.col("n"))
    if gaps.height:
        raise InvalidInputError(
            FieldViolation("opportunities.opportunity", "a customer's opportunities must be "
                           "1, 2, ..., n without gaps", int(r)) for r in gaps["first"].head(20)
        )
    return out.select("customer_id", "frequency", "recency", "n", pl.lit(1.0).alias("weight"))
