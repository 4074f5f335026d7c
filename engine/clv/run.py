"""One CLV run on a transaction log: what ``equity clv`` and the ``FitClv`` RPC both do.

:func:`run_clv` fits BG/NBD and Gamma-Gamma (and the other purchase models asked for) on the
calibration period, values every customer, and optionally checks the fit on a holdout
period, adds diagnostics and per-customer intervals. It returns the JSON summary the CLI
prints (``equity clv --json``), the fits and the per-customer table. The options are
checked here, each error naming its field (``models[1]``, ``interval_draws``, ...), so the
command line and the service reject the same requests with the same messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import polars as pl

from engine.clv.choices import MAX_INTERVAL_DRAWS as MAX_INTERVAL_DRAWS
from engine.clv.compare import (
    MODELS,
    FittedPurchaseModel,
    comparison,
    fit_models,
    json_key,
    model_columns,
)
from engine.clv.holdout import HoldoutCheck, holdout_check
from engine.clv.transactions import UNIT_DAYS, RefundPolicy, TimeUnit
from engine.clv.value import CLVResult, clv_from_transactions, default_discount_rate
from engine.errors import FieldViolation, InvalidInputError
from engine.valuation import Valuation

LOG_MODELS = tuple(MODELS)  # fitted on a transaction log: bgnbd, pareto-nbd, mbg-nbd


@dataclass(frozen=True)
class ClvOptions:
    """What to fit and how to value it (docs/clv.md); defaults are the CLI's."""

    calibration_end: str
    holdout_end: str | None = None
    models: tuple[str, ...] = ()  # beside BG/NBD, which values the CLV
    compare: bool = False  # every log model
    value_model: str = "bgnbd"  # the purchase model that values the customers
    time_unit: str = "week"
    horizon: int | None = None  # periods valued; None = infinite
    discount_rate: float | None = None  # per period; None = 10% a year
    margin_growth: float = 0.0
    period_length: float = 1.0
    margin_ratio: float = 1.0
    refunds: str = "drop"
    dedupe: bool = False
    prediction_horizon: float | None = None  # time units; None = valued horizon or a period
    interval_draws: int = 0
    interval_level: float = 0.9
    diagnostics: bool = False
    names: dict[str, str] = field(default_factory=dict)  # option -> field name in errors

    def model_names(self) -> list[str]:
        names = list(LOG_MODELS) if self.compare else ["bgnbd", *self.models]
        return list(dict.fromkeys(names))

    def valuation(self) -> Valuation:
        rate = self.discount_rate
        if rate is None:
            rate = default_discount_rate(self.time_unit, self.period_length)  # type: ignore[arg-type]
        return Valuation(discount_rate=rate, horizon=self.horizon, margin_growth=self.margin_growth)

    def check(self) -> None:
        """Every option a run cannot use, named, before any work."""
        name = self.names.get
        problems: list[FieldViolation] = []
        for i, model in enumerate(self.models):
            if model not in LOG_MODELS:
                problems.append(FieldViolation(
                    f"{name('models', 'models')}[{i}]",
                    f"unknown purchase model {model!r}; one of {', '.join(LOG_MODELS)}",
                ))
        if self.value_model not in LOG_MODELS:
            problems.append(FieldViolation(
                name("value_model", "value_model"),
                f"must be one of {', '.join(LOG_MODELS)}, got {self.value_model!r}",
            ))
        if self.time_unit not in UNIT_DAYS:
            problems.append(FieldViolation(
                name("time_unit", "time_unit"), f"must be day or week, got {self.time_unit!r}"
            ))
        if self.refunds not in ("drop", "net_same_day", "error"):
            problems.append(FieldViolation(
                name("refunds", "refunds"),
                f"must be drop, net_same_day or error, got {self.refunds!r}",
            ))
        ph = self.prediction_horizon
        if ph is not None and not (math.isfinite(ph) and ph > 0):
            problems.append(FieldViolation(
                name("prediction_horizon", "prediction_horizon"), f"must be > 0, got {ph}"
            ))
        if self.interval_draws and not 10 <= self.interval_draws <= MAX_INTERVAL_DRAWS:
            problems.append(FieldViolation(
                name("interval_draws", "interval_draws"),
                f"must be 0 (no intervals) or 10 to {MAX_INTERVAL_DRAWS}, "
                f"got {self.interval_draws}",
            ))
        if self.interval_draws and self.value_model != "bgnbd":
            problems.append(FieldViolation(
                name("interval_draws", "interval_draws"),
                f"intervals are drawn for BG/NBD x Gamma-Gamma only, not {self.value_model}",
            ))
        if not 0.0 < self.interval_level < 1.0:
            problems.append(FieldViolation(
                name("interval_level", "interval_level"),
                f"must be between 0 and 1, got {self.interval_level}",
            ))
        if self.horizon is not None and self.horizon < 1:
            problems.append(FieldViolation(
                name("horizon", "horizon"), f"must be >= 1 period, got {self.horizon}"
            ))
        if problems:
            raise InvalidInputError(problems)


@dataclass(frozen=True)
class ClvRun:
    result: CLVResult
    fits: dict[str, FittedPurchaseModel]
    holdouts: dict[str, HoldoutCheck]
    summary: dict[str, Any]
    customers: pl.DataFrame | None  # None unless asked for


def run_clv(tx: pl.DataFrame, options: ClvOptions, customers: bool = True) -> ClvRun:
    """Fit, value and check one transaction log; ``customers=False`` skips the per-customer
    table's extra columns (intervals, other models) when only the summary is wanted."""
    options.check()
    names = options.model_names()
    valuation = options.valuation()
    time_unit: TimeUnit = options.time_unit  # type: ignore[assignment]
    refunds: RefundPolicy = options.refunds  # type: ignore[assignment]
    result = clv_from_transactions(
        tx,
        options.calibration_end,
        time_unit=time_unit,
        valuation=valuation,
        period_length=options.period_length,
        margin_ratio=options.margin_ratio,
        refunds=refunds,
        prediction_horizon=options.prediction_horizon,
        dedupe=options.dedupe,
        model=options.value_model,
    )
    if options.value_model not in names:
        names.append(options.value_model)
    fits: dict[str, FittedPurchaseModel] = {"bgnbd": result.bgnbd}
    for name in names[1:]:  # the valuing model's fit is not repeated
        valued = result.valued if name == options.value_model else None
        fits[name] = (
            cast(FittedPurchaseModel, valued) if valued is not None
            else fit_models(result.rfm, [name])[name]
        )
    summary = result.summary()
    for name in names[1:]:
        summary[json_key(name)] = fits[name].as_dict()
    holdouts: dict[str, HoldoutCheck] = {}
    if options.holdout_end is not None:
        holdouts = {
            name: holdout_check(
                fit, result.rfm, tx, result.calibration_end, options.holdout_end,
                time_unit, refunds, options.dedupe,
            )
            for name, fit in fits.items()
        }
        summary["holdout"] = holdouts["bgnbd"].as_dict()
        for name in names[1:]:
            summary[json_key(name)]["holdout"] = holdouts[name].as_dict()
    if len(names) > 1:
        summary["comparison"] = comparison(fits, holdouts)
    if options.diagnostics:
        from engine.clv.diagnostics import diagnostics

        summary["diagnostics"] = diagnostics(
            result.bgnbd.params, result.rfm["frequency"].to_numpy(),
            result.rfm["T"].to_numpy(), result.prediction_horizon,
        )
    table = None
    if customers:
        table = result.customers
        if options.interval_draws:
            from engine.clv.intervals import customer_intervals

            table = table.hstack(
                customer_intervals(
                    result.rfm, result.bgnbd, result.gamma_gamma, valuation,
                    options.period_length, options.margin_ratio, result.prediction_horizon,
                    draws=options.interval_draws, level=options.interval_level,
                )
            )
        if len(names) > 1:
            table = table.hstack(model_columns(fits, result.rfm, result.prediction_horizon))
    return ClvRun(result, fits, holdouts, summary, table)
