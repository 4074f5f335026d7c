"""``FitClv`` on the wire: the request's fields to :class:`engine.clv.run.ClvOptions`, the run
(:func:`engine.clv.run.run_clv`, the same as ``equity clv``) to a ``FitClvResponse``.

Errors name the request's fields (``calibration_end``, ``models[1]``, ``interval_draws``) or
the transaction table's column and row (``transactions.date``, row 17).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl
from google.protobuf import json_format

from engine.api.equity_engine.v1 import service_pb2
from engine.clv.compare import json_key
from engine.clv.run import ClvOptions, ClvRun, run_clv
from engine.errors import InvalidInputError
from engine.service import wire

# The parameters of each fit, in the model's order.
PARAMETERS = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "gamma_gamma": ("p", "q", "gamma"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
    "mbg_nbd": ("r", "alpha", "a", "b"),
}


def options_from_proto(request: service_pb2.FitClvRequest) -> ClvOptions:
    """The run's options; unset fields take the CLI's defaults."""
    if not request.calibration_end.strip():
        raise InvalidInputError.single("calibration_end", "required, YYYY-MM-DD")

    def optional(name: str) -> float | None:
        return float(getattr(request, name)) if request.HasField(name) else None

    level = optional("interval_level")
    period = optional("period_length")
    margin = optional("margin_ratio")
    if period is not None and not period > 0:
        raise InvalidInputError.single("period_length", f"must be > 0, got {period}")
    return ClvOptions(
        calibration_end=request.calibration_end,
        holdout_end=request.holdout_end or None,
        models=tuple(request.models),
        value_model=request.value_model or "bgnbd",
        time_unit=request.time_unit or "week",
        horizon=request.horizon or None,
        discount_rate=optional("discount_rate"),
        period_length=1.0 if period is None else period,
        margin_ratio=1.0 if margin is None else margin,
        refunds=request.refunds or "drop",
        dedupe=request.dedupe,
        prediction_horizon=optional("prediction_horizon"),
        interval_draws=request.interval_draws,
        interval_level=0.9 if level is None else level,
    )


def fit_clv(
    request: service_pb2.FitClvRequest, transactions: pl.DataFrame | None
) -> ClvRun:
    """One run on the decoded transaction table."""
    if transactions is None:
        raise InvalidInputError.single("transactions", "a table of purchases is required")
    return run_clv(transactions, options_from_proto(request))


def response_from_run(run: ClvRun, customers: Any) -> service_pb2.FitClvResponse:
    """The response: typed fits in order, the encoded per-customer table, the summary."""
    summary = run.summary
    keys = ["bgnbd", "gamma_gamma"] + [json_key(n) for n in run.fits if n != "bgnbd"]
    fits = []
    for key in keys:
        fit = summary[key]
        names = PARAMETERS[key]
        fits.append(service_pb2.ClvModelFit(
            model=key,
            parameters=names,
            estimates=[float(fit[n]) for n in names],
            standard_errors=[float(fit["standard_errors"][n]) for n in names],
            log_likelihood=float(fit["log_likelihood"]),
            customers=int(fit["customers"]),
            converged=bool(fit["converged"]),
        ))
    response = service_pb2.FitClvResponse(fits=fits, customers=customers)
    # a Struct holds JSON values only (no inf or nan): through json first
    response.summary.update(json.loads(json.dumps(summary, default=float)))
    return response


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True)
class ClvResult:
    """What ``Client.fit_clv`` returns: the ``equity clv --json`` summary, each fit as
    ``{"parameters": {name: estimate}, "standard_errors": {...}, "log_likelihood",
    "customers", "converged"}`` by model, and the per-customer table."""

    summary: dict[str, Any]
    fits: dict[str, dict[str, Any]]
    customers: pl.DataFrame


_OPTIONAL = ("prediction_horizon", "interval_level", "discount_rate", "period_length",
             "margin_ratio")


def request_to_proto(
    transactions: Any, calibration_end: str, response_format: int, **options: Any
) -> service_pb2.FitClvRequest:
    """A ``FitClvRequest``; ``options`` are its fields (``None`` leaves one unset)."""
    request = service_pb2.FitClvRequest(
        transactions=transactions, calibration_end=calibration_end,
        response_format=response_format,  # type: ignore[arg-type]
    )
    for name, value in options.items():
        if value is None:
            continue
        if name not in request.DESCRIPTOR.fields_by_name or name in (
            "transactions", "calibration_end", "response_format"
        ):
            raise TypeError(f"fit_clv() got an unexpected option {name!r}")
        if name == "models":
            request.models.extend([value] if isinstance(value, str) else list(value))
        else:
            setattr(request, name, float(value) if name in _OPTIONAL else value)
    return request


def result_from_proto(response: service_pb2.FitClvResponse) -> ClvResult:
    fits = {
        f.model: {
            "parameters": dict(zip(f.parameters, f.estimates, strict=True)),
            "standard_errors": dict(zip(f.parameters, f.standard_errors, strict=True)),
            "log_likelihood": f.log_likelihood,
            "customers": f.customers,
            "converged": f.converged,
        }
        for f in response.fits
    }
    summary = json_format.MessageToDict(response.summary)
    customers = wire.decode_table(response.customers, "customers")
    return ClvResult(summary, fits, customers if customers is not None else pl.DataFrame())
