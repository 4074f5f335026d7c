"""The purchase models side by side: fits, log-likelihood, AIC and holdout error.

Every model here is fitted on the same (frequency, recency, T) and answers P(alive),
E[Y(t) | x, t_x, T] and E[X(t)], so the holdout check (engine.clv.holdout) and the
per-customer columns are model-independent. CLV itself (margin, retention, clv) is valued
with BG/NBD x Gamma-Gamma (engine.clv.value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from engine.clv.bgnbd import fit_bgnbd_rfm
from engine.clv.holdout import HoldoutCheck
from engine.clv.mbg_nbd import fit_mbg_nbd_rfm
from engine.clv.pareto_nbd import fit_pareto_nbd_rfm

Array = NDArray[np.float64]


class FittedPurchaseModel(Protocol):
    def as_dict(self) -> dict[str, Any]: ...

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array: ...

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array: ...

    def expected_purchases(self, t: ArrayLike) -> Array: ...


MODELS: dict[str, Callable[[pl.DataFrame], FittedPurchaseModel]] = {
    "bgnbd": fit_bgnbd_rfm,
    "pareto-nbd": fit_pareto_nbd_rfm,
    "mbg-nbd": fit_mbg_nbd_rfm,
}
N_PARAMS = {"bgnbd": 4, "pareto-nbd": 4, "mbg-nbd": 4}


def json_key(name: str) -> str:
    """``pareto-nbd`` -> ``pareto_nbd``: the model's key in JSON and column prefixes."""
    return name.replace("-", "_")


def fit_models(rfm: pl.DataFrame, names: list[str]) -> dict[str, FittedPurchaseModel]:
    return {name: MODELS[name](rfm) for name in names}


def model_summary(name: str, fit: FittedPurchaseModel) -> dict[str, Any]:
    """The fit's JSON with its AIC (2k - 2 LL)."""
    out = fit.as_dict()
    out["aic"] = 2.0 * N_PARAMS[name] - 2.0 * float(out["log_likelihood"])
    return out


def comparison(
    fits: dict[str, FittedPurchaseModel], holdouts: dict[str, HoldoutCheck] | None = None
) -> list[dict[str, Any]]:
    """One row per model: log-likelihood, parameters, AIC and, with a holdout, its errors."""
    rows = []
    for name, fit in fits.items():
        s = model_summary(name, fit)
        row: dict[str, Any] = {
            "model": json_key(name),
            "log_likelihood": s["log_likelihood"],
            "parameters": N_PARAMS[name],
            "aic": s["aic"],
        }
        if holdouts and name in holdouts:
            h = holdouts[name]
            row |= {
                "holdout_predicted": h.predicted,
                "holdout_actual": h.actual,
                "holdout_error": (h.predicted - h.actual) / max(h.actual, 1),
                "holdout_mean_absolute_error": h.mean_absolute_error(),
            }
        rows.append(row)
    return rows


def model_columns(
    fits: dict[str, FittedPurchaseModel], rfm: pl.DataFrame, horizon: float
) -> pl.DataFrame:
    """Per customer, for each model other than BG/NBD: ``<model>_p_alive`` and
    ``<model>_expected_purchases`` over ``horizon`` time units."""
    x = rfm["frequency"].cast(pl.Float64).to_numpy()
    tx = rfm["recency"].cast(pl.Float64).to_numpy()
    t_age = rfm["T"].cast(pl.Float64).to_numpy()
    cols: dict[str, Array] = {}
    for name, fit in fits.items():
        if name == "bgnbd":
            continue
        key = json_key(name)
        cols[f"{key}_p_alive"] = fit.p_alive(x, tx, t_age)
        cols[f"{key}_expected_purchases"] = fit.conditional_expected_purchases(
            np.full(x.size, horizon), x, tx, t_age
        )
    return pl.DataFrame(cols)
