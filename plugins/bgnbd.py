"""Built-in metric: a transaction log becomes the customers table (BG/NBD + Gamma-Gamma).

Unlike row-valuing metrics, ``bgnbd`` reads a *transactions* table (``customer_id``,
``date``, ``amount``; see ``engine.clv.transactions`` for the cleaning policy) and returns one
row per customer with the columns the engine values customers by, ``margin`` and
``retention``, plus the model's own per-customer figures. The bridge (``engine.clv.value``, docs/
clv.md) is exact for the plan's valuation: ``margin * margin_multiplier(retention)`` equals
the BG/NBD/Gamma-Gamma CLV at the plan's discount rate, horizon and margin growth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import polars as pl

from engine.clv.choices import MAX_INTERVAL_DRAWS, VALUE_MODELS
from engine.clv.transactions import UNIT_DAYS, normalize_transactions
from engine.errors import InvalidInputError
from engine.hookspecs import hookimpl
from engine.strategies import Metric, Param
from engine.valuation import Valuation

if TYPE_CHECKING:  # the fits (scipy) load when a log is fitted, not with the plugin
    from engine.clv.value import CLVResult


class TransactionCLV(Metric):
    """Fit BG/NBD and Gamma-Gamma on a transaction log; customers with margin and retention."""

    name = "bgnbd"
    summary = (
        "Transactions -> customers: BG/NBD (or Pareto/NBD, MBG/NBD: purchases, P(alive)) x "
        "Gamma-Gamma (spend) CLV, "
        "with margin and retention that reproduce it in the engine's CLV formula."
    )
    input_table: ClassVar[str] = "transactions"
    requires: ClassVar[tuple[str, ...]] = ("customer_id", "date", "amount")
    produces: ClassVar[tuple[str, ...]] = (
        "customer_id", "margin", "retention", "p_alive", "expected_purchases",
        "expected_spend", "clv", "frequency", "recency", "T", "monetary",
    )  # fmt: skip
    params: ClassVar = {
        "calibration_end": Param(
            "",
            "Last date (YYYY-MM-DD) of the purchases the model learns from; empty: the log's "
            "last date (value customers as of the end of the log).",
            str,
        ),
        "time_unit": Param("week", "Time unit of the model's recency and age.", str,
                           choices=("day", "week")),
        "period_days": Param(
            365.25,
            "Length in days of one plan period: the plan's discount rate and horizon are per "
            "period, and margin and retention are returned per period.",
            minimum=1e-9,
        ),
        "margin_ratio": Param(
            1.0, "Contribution margin per unit of purchase amount (1: margin = revenue).",
            minimum=0.0,
        ),
        "refunds": Param(
            "drop", "Negative amounts: drop them, net them within the day, or reject the log.",
            str, choices=("drop", "net_same_day", "error"),
        ),
        "model": Param(
            "bgnbd", "Purchase model that values the customers with Gamma-Gamma: BG/NBD, "
            "Pareto/NBD or MBG/NBD.", str, choices=VALUE_MODELS,
        ),
        "interval_draws": Param(
            0, "Parameter draws for per-customer intervals of p_alive, expected_purchases and "
            f"clv (columns <name>_lower, <name>_upper; BG/NBD only); 0: none, else 10 to "
            f"{MAX_INTERVAL_DRAWS} (as equity clv --intervals and FitClv).",
            int, minimum=0, maximum=MAX_INTERVAL_DRAWS,
        ),
        "interval_level": Param(
            0.9, "Central probability of the intervals (as equity clv --interval-level).",
            minimum=1e-9, maximum=1.0 - 1e-9,
        ),
        "interval_seed": Param(
            0, "Seed of the parameter draws (0: the draws of equity clv and FitClv).", int,
            minimum=0,
        ),
    }  # fmt: skip
    calibration_end: str
    time_unit: str
    period_days: float
    margin_ratio: float
    refunds: str
    model: str
    interval_draws: int
    interval_level: float
    interval_seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], path: str = "params") -> Self:
        """The declared checks, then the ones across parameters (as ``ClvOptions.check``)."""
        metric = super().from_params(params, path)
        draws = metric.interval_draws
        if 0 < draws < 10:
            raise InvalidInputError.single(
                f"{path}.interval_draws",
                f"must be 0 (no intervals) or 10 to {MAX_INTERVAL_DRAWS}, got {draws}",
            )
        if draws and metric.model != "bgnbd":
            raise InvalidInputError.single(
                f"{path}.interval_draws",
                f"intervals are drawn for BG/NBD x Gamma-Gamma only, not {metric.model}",
            )
        return metric

    def fit(self, transactions: pl.DataFrame, valuation: Valuation) -> CLVResult:
        """Both fits and the per-customer table, with the cleaning report and fit summary."""
        from engine.clv.value import clv_from_transactions

        tx = normalize_transactions(transactions)
        end = self.calibration_end or tx["date"].max()
        if end is None:
            raise InvalidInputError.single("transactions", "is empty")
        return clv_from_transactions(
            tx,
            end,  # type: ignore[arg-type]
            time_unit=self.time_unit,  # type: ignore[arg-type]
            valuation=valuation,
            period_length=self.period_days / UNIT_DAYS[self.time_unit],
            margin_ratio=self.margin_ratio,
            refunds=self.refunds,  # type: ignore[arg-type]
            model=self.model,
        )

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        """The customers table of a transactions table: one row per customer, not per row;
        with ``interval_draws``, the intervals' columns after the model's."""
        from engine.clv.intervals import customer_intervals

        result = self.fit(table, valuation)
        if not self.interval_draws:
            return result.customers
        return result.customers.hstack(
            customer_intervals(
                result.rfm, result.bgnbd, result.gamma_gamma, result.valuation,
                result.period_length, self.margin_ratio, result.prediction_horizon,
                draws=self.interval_draws, level=self.interval_level, seed=self.interval_seed,
            )
        )


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(TransactionCLV)
