"""``FitResponse`` on the wire: the experiments table in, ``FittedCurve`` messages out.

``fit_response`` aggregates and fits the experiments exactly as ``equity fit-response`` does
(``engine.response``); ``fits_to_proto`` and ``document_from_proto`` convert between the
fits and the messages, so that the client hands back the same ``{"curves": [...]}`` document
as ``equity fit-response --json`` (and ``engine.response.files.curves_from_document`` reads it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl
from google.protobuf import json_format

from engine.api.equity_engine.v1 import plan_pb2, service_pb2
from engine.errors import InvalidInputError
from engine.response.experiments import aggregate
from engine.response.fit import CurveFit, fit_experiments

_KIND = {"retention": plan_pb2.KIND_RETENTION, "acquisition": plan_pb2.KIND_ACQUISITION}
_KIND_NAME = {v: k for k, v in _KIND.items()}


def fit_response(table: pl.DataFrame | None) -> list[CurveFit]:
    """The curves of one request's experiments table (errors name ``experiments``)."""
    if table is None:
        raise InvalidInputError.single("experiments", "a table of spend experiments is required")
    return fit_experiments(aggregate(table))


def fits_to_proto(fits: Sequence[CurveFit]) -> service_pb2.FitResponseResponse:
    return service_pb2.FitResponseResponse(curves=[_fitted(fit.to_dict()) for fit in fits])


def _fitted(item: dict[str, Any]) -> service_pb2.FittedCurve:
    names = item["parameters"]
    curve = plan_pb2.ResponseCurve(
        segment=item["segment"], kind=_KIND[item["kind"]], model=item["model"],
        base=item["base"], ceiling=item["ceiling"], k=item["k"], shape=item["shape"],
        parameters=names, covariance=[v for row in item["covariance"] for v in row],
    )
    gof = item["goodness_of_fit"]
    message = service_pb2.FittedCurve(
        curve=curve,
        standard_errors=item["standard_errors"],
        log_likelihood=item["log_likelihood"],
        aic=item["aic"],
        units=item["units"],
        successes=item["successes"],
        goodness_of_fit=service_pb2.GoodnessOfFit(
            test=gof["test"], statistic=gof["statistic"], df=gof["df"], p_value=gof["p_value"]),
        fit_by_level=[service_pb2.LevelFit(**row) for row in item["fit_by_level"]],
    )
    # a Struct holds JSON values only (inf and nan are not JSON): through json first
    message.model_choice.update(json.loads(json.dumps(item["model_choice"])))
    return message


def document_from_proto(response: service_pb2.FitResponseResponse) -> dict[str, Any]:
    """The ``{"curves": [...]}`` document of ``equity fit-response --json``."""
    return {"curves": [_item(c) for c in response.curves]}


def _item(message: service_pb2.FittedCurve) -> dict[str, Any]:
    curve = message.curve
    names = list(curve.parameters)
    size = len(names)
    flat = list(curve.covariance)
    gof = message.goodness_of_fit
    return {
        "segment": curve.segment,
        "kind": _KIND_NAME.get(curve.kind, "unspecified"),
        "model": curve.model,
        "base": curve.base,
        "ceiling": curve.ceiling,
        "k": curve.k,
        "shape": curve.shape if curve.HasField("shape") else None,
        "parameters": names,
        "standard_errors": {name: message.standard_errors[name] for name in names},
        "covariance": [flat[i * size:(i + 1) * size] for i in range(size)],
        "log_likelihood": message.log_likelihood,
        "aic": message.aic,
        "units": message.units,
        "successes": message.successes,
        "model_choice": json_format.MessageToDict(message.model_choice),
        "goodness_of_fit": {"test": gof.test, "statistic": gof.statistic, "df": gof.df,
                            "p_value": gof.p_value if gof.HasField("p_value") else None},
        "fit_by_level": [
            {"spend": r.spend, "units": r.units, "successes": r.successes,
             "observed": r.observed, "predicted": r.predicted,
             "pearson_residual": r.pearson_residual, "p_value": r.p_value}
            for r in message.fit_by_level
        ],
    }


__all__ = ["document_from_proto", "fit_response", "fits_to_proto"]
