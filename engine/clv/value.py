"""Customer lifetime value from fitted BG/NBD + Gamma-Gamma, and the bridge into allocation.

CLV (docs/clv.md). Periods k = 1..H of ``period_length`` time units, cash at the end of each
period, per-period discount rate d (delta = 1/(1+d)):

    CLV_i = margin_ratio * E[M_i] * P(alive_i) * DERT_i,
    DERT_i = sum_k delta^k [E_alive(kL) - E_alive((k-1)L)]

E_alive is the expected purchases of a customer known to be alive now (engine.clv.bgnbd); it
depends on (x, T) only, so it is computed once per distinct (x, T), never per customer. An
infinite horizon sums the first ``TAIL_START`` periods exactly and integrates the rest
(Gauss-Legendre in log time over the purchase rate, corrected to first order within
periods; relative error below 1e-7 against a brute-force sum, see ``_tail``).

Bridge. The engine values an existing customer as margin * sum_t r^t (1+g)^(t-1) / (1+d)^t
(Gupta & Lehmann; r/(1+d-r) for an infinite horizon, g = 0). Two numbers per customer must
reproduce a whole expected cash-flow stream, so the bridge matches two things exactly:

* the next period: margin * retention = margin_ratio * E[M] * P(alive) * E_alive(L);
* the total: margin * multiplier(retention) = CLV, for the plan's discount rate, horizon and
  margin growth.

With rho = DERT / E_alive(L), retention solves delta * sum_{j<H} (r (1+g) delta)^j = rho;
for an infinite horizon and g = 0, r = 1 + d - 1/rho. ``retention`` is thus the effective
per-period retention of an *alive* customer's expected purchase stream (it does not depend
on P(alive), spend or margin ratio); P(alive) sits in ``margin``, because a geometric
survival curve r^t cannot represent "may already be gone". Expected purchases per period
decrease (dropout, and the survivors' posterior rate), so 0 <= r < 1 always.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from engine.clv.bgnbd import (
    BGNBDFit,
    BGNBDParams,
    fit_bgnbd_rfm,
    p_alive,
)
from engine.clv.choices import VALUE_MODELS as VALUE_MODELS  # purchase models that value customers
from engine.clv.gamma_gamma import GammaGammaFit, conditional_expected_spend, fit_gamma_gamma_rfm
from engine.clv.models import distinct_pairs
from engine.clv.streams import AliveStream, BGNBDStream
from engine.clv.transactions import (
    UNIT_DAYS,
    CleaningReport,
    FileFormat,
    RefundPolicy,
    TimeUnit,
    read_transactions,
    rfm_statistics,
)
from engine.errors import FieldViolation, InvalidInputError
from engine.valuation import Valuation

Array = NDArray[np.float64]
TAIL_START = 20  # periods summed exactly before the tail integral (infinite horizon)
_TAIL_NODES = 32
_CHUNK = 2_000_000  # elements of one (rows x periods) block


def check_valuation(valuation: Valuation, period_length: float) -> None:
    """What the engine's Valuation allows but a BG/NBD stream cannot be valued with."""
    problems = []
    if valuation.horizon is None and not valuation.discount_rate > 0:
        problems.append(
            FieldViolation(
                "plan.discount_rate",
                "must be > 0 for an infinite horizon (BG/NBD CLV is unbounded)",
            )
        )
    if not np.isfinite(period_length) or period_length <= 0:
        problems.append(FieldViolation("period_length", "must be a finite number > 0"))
    if problems:
        raise InvalidInputError(problems)


def default_discount_rate(
    time_unit: TimeUnit, period_length: float = 1.0, annual: float = 0.10
) -> float:
    """Per-period rate equivalent to ``annual`` (10%) for periods of ``period_length`` units."""
    return float((1.0 + annual) ** (period_length * UNIT_DAYS[time_unit] / 365.25) - 1.0)


# ------------------------------------------------------------------------ expected streams


def _distinct(frequency: Array, T: Array) -> tuple[Array, Array, NDArray[np.intp]]:
    """Distinct (x, T) pairs and each customer's index into them, via integer codes."""
    return distinct_pairs(frequency, T)


class ValuedModel(Protocol):
    """A fitted purchase model that can value customers (Pareto/NBD, MBG/NBD)."""

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array: ...

    def alive_stream(self) -> AliveStream: ...


def _stream(params: BGNBDParams | AliveStream) -> AliveStream:
    return BGNBDStream(params) if isinstance(params, BGNBDParams) else params


def stream_alive(
    params: BGNBDParams | AliveStream,
    frequency: ArrayLike,
    T: ArrayLike,
    valuation: Valuation,
    period_length: float = 1.0,
) -> tuple[Array, Array]:
    """(E_alive over the first period, discounted expected residual transactions), alive now.

    Vectorised over rows; call it on distinct (x, T) rows. ``period_length`` is one valuation
    period in the model's time unit.
    """
    check_valuation(valuation, period_length)
    stream = _stream(params)
    x = np.asarray(frequency, dtype=np.float64)
    t_age = np.asarray(T, dtype=np.float64)
    L = period_length
    delta = 1.0 / (1.0 + valuation.discount_rate)
    periods = valuation.horizon if valuation.horizon is not None else TAIL_START
    first = stream.expected(np.full_like(x, L), x, t_age)
    dert = np.zeros_like(x)
    step = max(1, _CHUNK // max(periods, 1))
    k = np.arange(periods + 1, dtype=np.float64)
    disc = delta ** k[1:]
    for lo in range(0, x.size, step):  # chunks of rows bound memory, not a loop per customer
        sl = slice(lo, lo + step)
        e = stream.expected(k[None, :] * L, x[sl, None], t_age[sl, None])
        dert[sl] = np.einsum("ij,j->i", np.diff(e, axis=1), disc)  # no threaded BLAS
    if valuation.horizon is None:
        dert += _tail(stream, x, t_age, valuation.discount_rate, L)
    return first, dert


def _tail(stream: AliveStream, x: Array, t_age: Array, discount_rate: float, L: float) -> Array:
    """sum_{k > K} delta^k (E_alive(kL) - E_alive((k-1)L)), K = TAIL_START, via an integral.

    In period units, with f(s) = L rate(sL) and I = int_K^inf e^(-rho s) f(s) ds
    (rho = ln(1+d)), expanding f to first order within each period gives

        tail = kappa [(1 + beta rho) I - beta e^(-rho K) f(K)],
        kappa = rho / (e^rho - 1),  beta = coth(rho/2)/2 - 1/rho  (~ rho/12);

    the second-order terms cancel, so the error is of the order of f^(4)/f/1920 of the
    tail: the rate decays like a power of s and is smooth by period K. I uses Gauss-Legendre
    after s = K e^v, which turns the power-law decay into a smooth function of v.
    """
    rho = float(np.log1p(discount_rate))
    v_max = float(np.log(max(60.0 / (rho * TAIL_START), 1.0 + 1e-9)))
    if v_max <= 1e-6:
        return np.zeros_like(x)
    nodes, weights = np.polynomial.legendre.leggauss(_TAIL_NODES)
    v = 0.5 * v_max * (nodes + 1.0)
    s = TAIL_START * np.exp(v)  # in periods
    kernel = 0.5 * v_max * weights * np.exp(-rho * s) * s * L  # e^(-rho s) ds, ds = s dv
    s_all = np.append(s, float(TAIL_START)) * L  # nodes, then the tail's start, in time units
    integral = np.empty_like(x)
    start_rate = np.empty_like(x)
    step = max(1, _CHUNK // (_TAIL_NODES + 1))
    for lo in range(0, x.size, step):
        sl = slice(lo, lo + step)
        rate = stream.rate(s_all[None, :], x[sl, None], t_age[sl, None])
        integral[sl] = np.einsum("ij,j->i", rate[:, :-1], kernel)
        start_rate[sl] = rate[:, -1] * L
    kappa = rho / np.expm1(rho)
    beta = rho / 12.0 - rho**3 / 720.0 if rho < 0.001 else 0.5 / np.tanh(0.5 * rho) - 1.0 / rho
    return np.asarray(
        kappa * ((1.0 + beta * rho) * integral - beta * np.exp(-rho * TAIL_START) * start_rate),
        dtype=np.float64,
    )


def effective_retention(rho: Array, valuation: Valuation) -> Array:
    """Solve delta * sum_{j<H} (r (1+g) delta)^j = rho for r, elementwise (0 <= r < 1).

    ``rho`` is DERT over the first period's expected purchases, both for an alive customer.
    """
    d, g, h = valuation.discount_rate, valuation.margin_growth, valuation.horizon
    delta = 1.0 / (1.0 + d)
    rho = np.asarray(rho, dtype=np.float64)
    if h is None:
        q = 1.0 - delta / rho
    elif h == 1:
        raise InvalidInputError.single("plan.horizon", "one period fixes no retention; use >= 2")
    else:
        target = rho / delta  # sum_{j<H} q^j, increasing in q
        lo = np.zeros_like(rho)
        hi = np.full_like(rho, 1.0)
        for _ in range(60):  # bisection over all rows at once
            mid = 0.5 * (lo + hi)
            val = _geometric_sum(mid, h)
            below = val < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        q = 0.5 * (lo + hi)
    r = q / ((1.0 + g) * delta)
    return np.clip(r, 0.0, np.nextafter(1.0, 0.0))


def _geometric_sum(q: Array, n: int) -> Array:
    near = np.abs(1.0 - q) < 1e-12
    safe = np.where(near, 0.5, q)
    return np.where(near, float(n), (1.0 - safe**n) / (1.0 - safe))


# ------------------------------------------------------------------------- per customer


def resolve_prediction_horizon(
    valuation: Valuation, period_length: float, prediction_horizon: float | None
) -> tuple[float, str]:
    """(time units over which ``expected_purchases`` is counted, where that came from).

    Given explicitly: ``"given"``; otherwise the valued horizon (``"valued horizon"``), or
    one period when the valued horizon is infinite (``"one period"``).
    """
    if prediction_horizon is not None:
        if not (np.isfinite(prediction_horizon) and prediction_horizon > 0):
            raise InvalidInputError.single(
                "prediction_horizon", f"must be a finite number > 0, got {prediction_horizon}"
            )
        return float(prediction_horizon), "given"
    if valuation.horizon is not None:
        return float(valuation.horizon * period_length), "valued horizon"
    return float(period_length), "one period"


def customer_values(
    rfm: pl.DataFrame,
    bgnbd: BGNBDFit,
    gamma_gamma: GammaGammaFit,
    valuation: Valuation | None = None,
    period_length: float = 1.0,
    margin_ratio: float = 1.0,
    prediction_horizon: float | None = None,
    model: ValuedModel | None = None,
) -> pl.DataFrame:
    """Per-customer CLV and the engine's ``margin`` and ``retention`` (see module docstring).

    ``model`` (a fitted Pareto/NBD or MBG/NBD) values the purchases instead of ``bgnbd``:
    its P(alive) and its expected purchases of a customer alive now.

    ``valuation`` is the plan's (discount rate and horizon per period, margin growth);
    ``period_length`` is one of its periods in the model's time unit (52.18 for years of
    weeks). ``prediction_horizon`` (time units) sets ``expected_purchases``; by default the
    valued horizon, or one period when it is infinite. Columns: customer_id, margin, retention,
    p_alive, expected_purchases, expected_spend, clv, frequency, recency, T, monetary.
    """
    valuation = valuation or Valuation()
    check_valuation(valuation, period_length)
    if not np.isfinite(margin_ratio) or margin_ratio < 0:
        raise InvalidInputError.single("margin_ratio", "must be a finite number >= 0")
    params = bgnbd.params
    x = rfm["frequency"].cast(pl.Float64).to_numpy()
    tx = rfm["recency"].cast(pl.Float64).to_numpy()
    t_age = rfm["T"].cast(pl.Float64).to_numpy()
    monetary = rfm["monetary"].cast(pl.Float64).fill_null(0.0).to_numpy()
    spend_x = rfm["spend_frequency"] if "spend_frequency" in rfm.columns else rfm["frequency"]
    spend_x_np = spend_x.cast(pl.Float64).to_numpy()

    stream: BGNBDParams | AliveStream = params
    if model is None:
        alive = p_alive(params, x, tx, t_age)
    else:
        alive, stream = model.p_alive(x, tx, t_age), model.alive_stream()
    spend = conditional_expected_spend(gamma_gamma.params, spend_x_np, monetary)
    xu, tu, inv = _distinct(x, t_age)
    first_u, dert_u = stream_alive(stream, xu, tu, valuation, period_length)
    if valuation.horizon == 1:  # any r reproduces one period: use the stream's long-run decay
        forever = Valuation(valuation.discount_rate or 0.10, None, 0.0)
        f_inf, d_inf = stream_alive(stream, xu, tu, forever, period_length)
        retention_u = effective_retention(d_inf / f_inf, forever)
    else:
        retention_u = effective_retention(dert_u / first_u, valuation)
    prediction_horizon, _ = resolve_prediction_horizon(valuation, period_length, prediction_horizon)
    purchases_u = _stream(stream).expected(np.full_like(xu, prediction_horizon), xu, tu)

    value_per_alive = margin_ratio * spend * alive
    clv = value_per_alive * dert_u[inv]
    retention = retention_u[inv]
    next_period = value_per_alive * first_u[inv]
    margin = np.divide(next_period, retention, out=np.zeros_like(next_period), where=retention > 0)
    return pl.DataFrame(
        {
            "customer_id": rfm["customer_id"],
            "margin": margin,
            "retention": retention,
            "p_alive": alive,
            "expected_purchases": alive * purchases_u[inv],
            "expected_spend": spend,
            "clv": clv,
            "frequency": rfm["frequency"],
            "recency": rfm["recency"],
            "T": rfm["T"],
            "monetary": rfm["monetary"],
        }
    )


@dataclass(frozen=True)
class CLVResult:
    rfm: pl.DataFrame
    cleaning: CleaningReport
    bgnbd: BGNBDFit
    gamma_gamma: GammaGammaFit
    customers: pl.DataFrame
    valuation: Valuation
    period_length: float
    time_unit: str
    calibration_end: dt.date
    prediction_horizon: float = 1.0
    prediction_horizon_source: str = "one period"
    value_model: str = "bgnbd"  # the purchase model the customers are valued with
    valued: ValuedModel | None = None  # its fit, when not BG/NBD

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints: fits, cleaning counts, valuation, totals."""
        clv = self.customers["clv"].to_numpy()
        return {
            "bgnbd": self.bgnbd.as_dict(),
            "gamma_gamma": self.gamma_gamma.as_dict(),
            "cleaning": self.cleaning.as_dict(),
            "customers": self.customers.height,
            "calibration_end": self.calibration_end.isoformat(),
            "time_unit": self.time_unit,
            "valuation": {
                "discount_rate": self.valuation.discount_rate,
                "horizon": self.valuation.horizon,
                "margin_growth": self.valuation.margin_growth,
                "period_length": self.period_length,
            },
            "prediction_horizon": {
                "length": self.prediction_horizon,
                "time_unit": self.time_unit,
                "source": self.prediction_horizon_source,
                "expected_purchases": float(self.customers["expected_purchases"].sum()),
            },
            "clv": {
                "model": self.value_model,
                "total": float(clv.sum()),
                "mean": float(clv.mean()),
                "median": float(np.median(clv)),
            },
        }


def clv_from_transactions(
    transactions: pl.DataFrame | str | Path,
    calibration_end: dt.date | dt.datetime | str,
    time_unit: TimeUnit = "week",
    valuation: Valuation | None = None,
    period_length: float = 1.0,
    margin_ratio: float = 1.0,
    refunds: RefundPolicy = "drop",
    fmt: FileFormat = "auto",
    prediction_horizon: float | None = None,
    dedupe: bool = False,
    model: str = "bgnbd",
) -> CLVResult:
    """Transaction log (table or file) to fitted models and the per-customer table.

    Without ``valuation``: infinite horizon at the per-period equivalent of 10% a year.
    ``model`` is the purchase model that values the customers (with Gamma-Gamma):
    ``bgnbd`` (default), ``pareto-nbd`` or ``mbg-nbd``; BG/NBD is fitted in any case.
    """
    from engine.clv.transactions import parse_calibration_end

    end = parse_calibration_end(calibration_end)
    if model not in VALUE_MODELS:
        raise InvalidInputError.single(
            "model", f"must be one of {', '.join(VALUE_MODELS)}, got {model!r}"
        )
    if valuation is None:
        valuation = Valuation(discount_rate=default_discount_rate(time_unit, period_length))
    check_valuation(valuation, period_length)
    tx = (
        transactions
        if isinstance(transactions, pl.DataFrame)
        else read_transactions(transactions, fmt)
    )
    rfm, report = rfm_statistics(tx, end, time_unit, refunds, dedupe)
    bg = fit_bgnbd_rfm(rfm)
    gg = fit_gamma_gamma_rfm(rfm)
    valued: ValuedModel | None = None
    if model == "pareto-nbd":
        from engine.clv.pareto_nbd import fit_pareto_nbd_rfm

        valued = fit_pareto_nbd_rfm(rfm)
    elif model == "mbg-nbd":
        from engine.clv.mbg_nbd import fit_mbg_nbd_rfm

        valued = fit_mbg_nbd_rfm(rfm)
    customers = customer_values(
        rfm, bg, gg, valuation, period_length, margin_ratio, prediction_horizon, valued
    )
    horizon, source = resolve_prediction_horizon(valuation, period_length, prediction_horizon)
    return CLVResult(
        rfm, report, bg, gg, customers, valuation, period_length, time_unit, end, horizon, source,
        model, valued,
    )
