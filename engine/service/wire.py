"""Conversions between the engine's objects and the gRPC messages, shared by server and client.

- Tables: polars DataFrame <-> ``equity_engine.v1.Table`` (Arrow IPC or packed columns),
  whole columns at a time (numpy / Arrow), never a Python loop over rows.
- Plan summaries: ``PlanResult.summary`` dict <-> ``PlanSummary``.
- Strategies: ``Registry.describe()`` <-> ``ListPluginsResponse``.
- Errors: the one mapping from domain errors to ``google.rpc.Status`` (code, message and
  details) and back, so a Python caller gets the same exception classes locally and remotely.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import polars as pl
from google.protobuf import any_pb2, json_format, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from engine.api.equity_engine.v1 import plan_pb2, portfolio_pb2, result_pb2, service_pb2
from engine.errors import (
    CancelledError,
    EquityError,
    FieldViolation,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
    PluginError,
    SolverError,
)
from engine.options import KINDS
from engine.plan import KIND_NAMES, Plan
from engine.portfolio import Portfolio

DOMAIN = "equity-engine.v1"
TABLES = ("customers", "prospects", "options", "transactions")
ARROW = portfolio_pb2.TABLE_FORMAT_ARROW_IPC
COLUMNS = portfolio_pb2.TABLE_FORMAT_COLUMNS
UNSPECIFIED = portfolio_pb2.TABLE_FORMAT_UNSPECIFIED
_FORMAT_NAMES = {"arrow": ARROW, "columns": COLUMNS}


def check_format(value: int, field: str) -> None:
    """Refuse a ``TableFormat`` value this server does not know (proto3 enums are open)."""
    if value not in (UNSPECIFIED, ARROW, COLUMNS):
        raise InvalidInputError.single(
            field, f"unknown table format {value}; use TABLE_FORMAT_ARROW_IPC or "
            "TABLE_FORMAT_COLUMNS (or leave unset)")


def plan_from_proto(msg: plan_pb2.Plan, field: str = "plan") -> Plan:
    """``Plan.from_proto`` after the checks it leaves to the caller: enum values this
    server does not know (proto3 enums are open) are field violations, not crashes."""
    problems = [
        FieldViolation(f"{field}.segment_limits[{i}].kind",
                       f"unknown kind {lim.kind}; use KIND_RETENTION, KIND_ACQUISITION or "
                       "leave unset")
        for i, lim in enumerate(msg.segment_limits) if lim.kind not in KIND_NAMES
    ]
    if problems:
        raise InvalidInputError(problems)
    return Plan.from_proto(msg)


def table_format(name: str | int) -> portfolio_pb2.TableFormat:
    """``"arrow"`` / ``"columns"`` (or the enum value itself) as a ``TableFormat``."""
    if isinstance(name, int):
        return portfolio_pb2.TableFormat.ValueType(name)
    try:
        return _FORMAT_NAMES[name]
    except KeyError:
        raise ValueError(f"table format must be one of {sorted(_FORMAT_NAMES)}") from None


# --- tables ---------------------------------------------------------------------------------


def encode_table(table: pl.DataFrame, fmt: int = ARROW) -> portfolio_pb2.Table:
    """A DataFrame as a ``Table``: one Arrow IPC stream, or packed columns."""
    if fmt != COLUMNS:
        buf = io.BytesIO()
        table.write_ipc_stream(buf, compat_level=pl.CompatLevel.oldest())
        return portfolio_pb2.Table(arrow_ipc=buf.getvalue())
    columns = portfolio_pb2.Columns()
    for series in table.get_columns():
        col = columns.columns.add(name=series.name)
        dtype = series.dtype
        if dtype.is_float():
            col.doubles.values.extend(series.cast(pl.Float64).fill_null(math.nan).to_numpy().tolist())
        elif dtype.is_integer():
            col.int64s.values.extend(series.cast(pl.Int64).fill_null(0).to_numpy().tolist())
        elif dtype == pl.Boolean:
            col.bools.values.extend(series.fill_null(False).to_list())
        else:
            col.strings.values.extend(series.cast(pl.String).fill_null("").to_list())
        if series.null_count():
            col.nulls.extend(series.is_null().to_list())
    return portfolio_pb2.Table(columns=columns)


def decode_table(msg: portfolio_pb2.Table, field: str) -> pl.DataFrame | None:
    """A ``Table`` as a DataFrame (``None`` when unset); problems name ``field``."""
    which = msg.WhichOneof("data")
    if which is None:
        return None
    if which == "arrow_ipc":
        return _read_arrow(msg.arrow_ipc, field)
    problems: list[FieldViolation] = []
    series: list[pl.Series] = []
    names: set[str] = set()
    for i, col in enumerate(msg.columns.columns):
        path = f"{field}.{col.name}" if col.name else f"{field}.columns"
        kind = col.WhichOneof("values")
        if not col.name:
            problems.append(FieldViolation(path, f"column {i} has no name"))
            continue
        if col.name in names:
            problems.append(FieldViolation(path, "column name appears twice"))
            continue
        if kind is None:
            problems.append(FieldViolation(path, "column has no values"))
            continue
        names.add(col.name)
        values = getattr(col, kind).values
        if kind == "doubles":
            s = pl.Series(col.name, np.array(values, dtype=np.float64))
        elif kind == "int64s":
            s = pl.Series(col.name, np.array(values, dtype=np.int64))
        elif kind == "bools":
            s = pl.Series(col.name, np.array(values, dtype=bool))
        else:
            s = pl.Series(col.name, list(values), dtype=pl.String)
        if len(col.nulls):
            if len(col.nulls) != s.len():
                problems.append(FieldViolation(
                    path, f"null mask has {len(col.nulls)} entries for {s.len()} rows"
                ))
                continue
            mask = pl.Series(np.array(col.nulls, dtype=bool))
            s = pl.select(pl.when(mask).then(None).otherwise(s).alias(col.name)).to_series()
        series.append(s)
    if series and not problems:
        n = series[0].len()
        for s in series[1:]:
            if s.len() != n:
                problems.append(FieldViolation(
                    f"{field}.{s.name}", f"has {s.len()} rows; column {series[0].name!r} has {n}"
                ))
    if problems:
        raise InvalidInputError(problems)
    return pl.DataFrame(series)


def _read_arrow(data: bytes, field: str) -> pl.DataFrame:
    try:
        table = pl.read_ipc(data) if data[:6] == b"ARROW1" else pl.read_ipc_stream(data)
    except Exception as exc:  # polars raises several types for malformed input
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError.single(
            f"{field}.arrow_ipc", f"not a readable Arrow IPC stream or file: {message}"
        ) from None
    return _plain_columns(table, field)


def _plain_columns(table: pl.DataFrame, field: str) -> pl.DataFrame:
    """Only the column types the engine reads: numbers, booleans, strings (categoricals
    become strings), dates and all-null columns; anything else (lists, structs, binary,
    durations...) is a field violation here rather than a surprise deeper in."""
    problems = []
    casts = []
    for name, dtype in table.schema.items():
        if dtype.is_numeric() or dtype in (pl.Boolean, pl.String, pl.Null, pl.Date) \
                or isinstance(dtype, pl.Datetime):  # dates: transaction logs
            continue
        if isinstance(dtype, pl.Categorical | pl.Enum):
            casts.append(pl.col(name).cast(pl.String))
            continue
        problems.append(FieldViolation(
            f"{field}.{name}", f"unsupported column type {dtype}; send numbers, booleans or "
            "strings"))
    if problems:
        raise InvalidInputError(problems)
    return table.with_columns(casts) if casts else table


def first_format(*tables: portfolio_pb2.Table) -> int:
    """The encoding of the first table that is set (Arrow IPC if none is)."""
    for table in tables:
        which = table.WhichOneof("data")
        if which is not None:
            return COLUMNS if which == "columns" else ARROW
    return ARROW


def encode_portfolio(portfolio: Portfolio, fmt: int = ARROW) -> portfolio_pb2.Portfolio:
    msg = portfolio_pb2.Portfolio()
    for name in TABLES:
        table = getattr(portfolio, name)
        if table is not None:
            getattr(msg, name).CopyFrom(encode_table(table, fmt))
    return msg


def decode_portfolio(msg: portfolio_pb2.Portfolio) -> Portfolio:
    tables: dict[str, pl.DataFrame | None] = {}
    problems: list[FieldViolation] = []
    for name in TABLES:
        try:
            tables[name] = decode_table(getattr(msg, name), name)
        except InvalidInputError as exc:
            problems.extend(exc.violations)
    if problems:
        raise InvalidInputError(problems)
    return Portfolio(**tables)


def batch_rows(table: pl.DataFrame, target_bytes: int = 2 << 20) -> int:
    """Rows per batch so that one encoded batch is about ``target_bytes``."""
    if table.height == 0:
        return 1
    per_row = max(1.0, table.estimated_size() / table.height)
    return max(1, int(target_bytes / per_row))


# --- plan summary ---------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def summary_to_proto(summary: Mapping[str, Any]) -> result_pb2.PlanSummary:
    """``PlanResult.summary`` as a ``PlanSummary`` (undefined figures left absent)."""
    prices = summary.get("shadow_prices", {})
    msg = result_pb2.PlanSummary(
        status=summary["status"],
        allocator=summary["allocator"],
        method=summary["method"],
        solver=summary["solver"],
        customers=summary["customers"],
        pools=summary["pools"],
        equity_before=summary["equity_before"],
        equity_after=summary["equity_after"],
        equity_gain=summary["equity_gain"],
        total_spend=summary["total_spend"],
        spend_by_kind=summary["spend_by_kind"],
        spend_by_segment=summary["spend_by_segment"],
        equity_by_segment={
            s: result_pb2.SegmentEquity(before=e["before"], after=e["after"])
            for s, e in summary["equity_by_segment"].items()
        },
        roc=_finite(summary["roc"]),
        roc_do_nothing=_finite(summary["roc_do_nothing"]),
        lp_objective=_finite(summary["lp_objective"]),
        bound=_finite(summary["bound"]),
        gap=_finite(summary["gap"]),
        constraints=[
            result_pb2.ConstraintSummary(
                name=c["name"],
                sense=result_pb2.CONSTRAINT_SENSE_AT_MOST
                if c["sense"] == "<="
                else result_pb2.CONSTRAINT_SENSE_AT_LEAST,
                rhs=c["rhs"],
                shadow_price=_finite(prices.get(c["name"])),
            )
            for c in summary["constraints"]
        ],
        fractional_pools=summary["fractional_pools"],
        iterations=summary["iterations"],
        notes=summary["notes"],
        seconds=summary["seconds"],
    )
    return msg


def summary_from_proto(msg: result_pb2.PlanSummary) -> dict[str, Any]:
    """A ``PlanSummary`` as the dict ``PlanResult.summary`` holds (JSON-ready: None, not NaN)."""

    def opt(name: str) -> float | None:
        return getattr(msg, name) if msg.HasField(name) else None

    segments = sorted(msg.spend_by_segment)
    return {
        "status": msg.status,
        "allocator": msg.allocator,
        "method": msg.method,
        "solver": msg.solver,
        "customers": msg.customers,
        "pools": msg.pools,
        "equity_before": msg.equity_before,
        "equity_after": msg.equity_after,
        "equity_gain": msg.equity_gain,
        "total_spend": msg.total_spend,
        "spend_by_kind": {k: msg.spend_by_kind.get(k, 0.0) for k in KINDS}
        | {k: v for k, v in sorted(msg.spend_by_kind.items()) if k not in KINDS},
        "spend_by_segment": {s: msg.spend_by_segment[s] for s in segments},
        "equity_by_segment": {
            s: {"before": e.before, "after": e.after}
            for s, e in sorted(msg.equity_by_segment.items())
        },
        "roc": opt("roc"),
        "roc_do_nothing": opt("roc_do_nothing"),
        "lp_objective": opt("lp_objective"),
        "bound": opt("bound"),
        "gap": opt("gap"),
        "shadow_prices": {
            c.name: c.shadow_price for c in msg.constraints if c.HasField("shadow_price")
        },
        "constraints": [
            {
                "name": c.name,
                "sense": "<=" if c.sense == result_pb2.CONSTRAINT_SENSE_AT_MOST else ">=",
                "rhs": c.rhs,
            }
            for c in msg.constraints
        ],
        "fractional_pools": msg.fractional_pools,
        "iterations": msg.iterations,
        "notes": list(msg.notes),
        "seconds": dict(msg.seconds),
    }


# --- strategies -----------------------------------------------------------------------------

_KINDS = {
    "metric": service_pb2.STRATEGY_KIND_METRIC,
    "cost": service_pb2.STRATEGY_KIND_COST,
    "allocation": service_pb2.STRATEGY_KIND_ALLOCATION,
}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


def _value(obj: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(obj, value)
    return value


def plugins_to_proto(
    strategies: Iterable[Mapping[str, Any]], failures: Iterable[PluginError]
) -> service_pb2.ListPluginsResponse:
    """``Registry.describe()`` and ``Registry.failures`` as a ``ListPluginsResponse``."""
    msg = service_pb2.ListPluginsResponse()
    for item in strategies:
        s = msg.strategies.add(
            kind=_KINDS.get(item["kind"], service_pb2.STRATEGY_KIND_UNSPECIFIED),
            name=item["name"],
            summary=item["summary"],
            plugin=item["plugin"],
            package=item["package"],
            version=item["version"],
        )
        for key, p in item["parameters"].items():
            s.parameters.add(
                name=key,
                type=p["type"],
                doc=p["doc"],
                default_value=_value(p["default"]),
                choices=[_value(c) for c in p.get("choices", ())],
                minimum=p.get("minimum"),
                maximum=p.get("maximum"),
            )
        if "capabilities" in item:
            s.capabilities.update(item["capabilities"])
    for failure in failures:
        msg.failures.add(plugin=failure.plugin, problem=failure.problem)
    return msg


def plugins_from_proto(msg: service_pb2.ListPluginsResponse) -> list[dict[str, Any]]:
    """Strategies in the shape of ``Registry.describe()``."""
    out = []
    for s in msg.strategies:
        params: dict[str, Any] = {}
        for p in s.parameters:
            param = {
                "default": json_format.MessageToDict(p.default_value),
                "type": p.type,
                "doc": p.doc,
            }
            if p.choices:
                param["choices"] = [json_format.MessageToDict(c) for c in p.choices]
            for bound in ("minimum", "maximum"):
                if p.HasField(bound):
                    param[bound] = getattr(p, bound)
            params[p.name] = param
        out.append({
            "kind": _KIND_NAMES.get(s.kind, "unspecified"),
            "name": s.name,
            "summary": s.summary,
            "plugin": s.plugin,
            "package": s.package,
            "version": s.version,
            "parameters": params,
            "capabilities": json_format.MessageToDict(s.capabilities),
        })
    return out


# --- errors ---------------------------------------------------------------------------------


class ServiceError(EquityError):
    """A gRPC failure that is not one of the engine's domain errors (INTERNAL, UNAVAILABLE...)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        super().__init__(f"{code.name}: {message}")


class DeadlineExceededError(CancelledError):
    """The call's deadline passed; the server stopped working on it (DEADLINE_EXCEEDED)."""


_TRANSPORT_SIZE = re.compile(r"message larger than max \((\d+) vs\. (\d+)\)")
_ROW = re.compile(r"^((?:customers|prospects|options|transactions)\.[^\[\]]+)\[(\d+)\]$")


def _pack(*messages: Any) -> list[any_pb2.Any]:
    out = []
    for m in messages:
        packed = any_pb2.Any()
        packed.Pack(m)
        out.append(packed)
    return out


def _info(reason: str, **metadata: Any) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={k: str(v) for k, v in metadata.items()}
    )


def status_from_error(
    exc: BaseException, deadline_passed: bool = False, request_id: str = ""
) -> status_pb2.Status:
    """The one mapping from an exception to the ``google.rpc.Status`` a client receives.

    Domain errors keep their message and gain structured details; anything else is
    INTERNAL with only the request id (the traceback stays in the server log).
    """
    if isinstance(exc, InvalidInputError):
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.path(), description=v.description, reason="INVALID_VALUE"
            )
            for v in exc.violations
        ])
        return status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=str(exc),
            details=_pack(bad, _info("INVALID_INPUT", violations=len(exc.violations))),
        )
    if isinstance(exc, InfeasiblePlanError):
        failure = error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="PLAN_INFEASIBLE", subject=name, description=exc.reason
            )
            for name in (exc.constraints or ["plan"])
        ])
        return status_pb2.Status(
            code=code_pb2.FAILED_PRECONDITION, message=str(exc),
            details=_pack(failure, _info("PLAN_INFEASIBLE", constraints=",".join(exc.constraints))),
        )
    if isinstance(exc, LimitExceededError):
        quota = error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=exc.limit, description=str(exc))
        ])
        info = _info("LIMIT_EXCEEDED", limit=exc.limit, value=repr(exc.value),
                     maximum=repr(exc.maximum))
        return status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc), details=_pack(quota, info)
        )
    if isinstance(exc, CancelledError):
        code = code_pb2.DEADLINE_EXCEEDED if deadline_passed else code_pb2.CANCELLED
        reason = "DEADLINE_EXCEEDED" if deadline_passed else "CANCELLED"
        return status_pb2.Status(code=code, message=str(exc), details=_pack(_info(reason)))
    if isinstance(exc, PluginError):
        info = _info("PLUGIN_ERROR", plugin=exc.plugin, request_id=request_id)
        return status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc), details=_pack(info))
    if isinstance(exc, SolverError):
        info = _info("SOLVER_ERROR", status=exc.status, request_id=request_id)
        return status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc), details=_pack(info))
    info = _info("INTERNAL", request_id=request_id)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (request {request_id}; details are in the server log)",
        details=_pack(info),
    )


def error_from_status(
    code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any] = ()
) -> EquityError:
    """The exception a client raises for a failed call: the engine's own classes for domain
    errors (with their field violations, constraints, limit), ``ServiceError`` otherwise."""
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    failure = error_details_pb2.PreconditionFailure()
    quota = error_details_pb2.QuotaFailure()
    found = set()
    for detail in details:
        for name, target in (("info", info), ("bad", bad), ("failure", failure), ("quota", quota)):
            if detail.Is(target.DESCRIPTOR):
                detail.Unpack(target)
                found.add(name)
    reason = info.reason if "info" in found else ""
    meta = dict(info.metadata)
    if code == grpc.StatusCode.INVALID_ARGUMENT and bad.field_violations:
        violations = []
        for v in bad.field_violations:
            m = _ROW.match(v.field)
            if m:
                violations.append(FieldViolation(m.group(1), v.description, int(m.group(2))))
            else:
                violations.append(FieldViolation(v.field, v.description))
        return InvalidInputError(violations)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "PLAN_INFEASIBLE":
        constraints = [c for c in meta.get("constraints", "").split(",") if c]
        text = failure.violations[0].description if failure.violations else message
        return InfeasiblePlanError(text, constraints)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason == "LIMIT_EXCEEDED":
        return LimitExceededError(
            meta.get("limit", "limit"),
            float(meta.get("value", "nan")),
            float(meta.get("maximum", "nan")),
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (m := _TRANSPORT_SIZE.search(message)):
        # gRPC's transport refuses an oversized message before the service sees it.
        return LimitExceededError("max_message_bytes", int(m.group(1)), int(m.group(2)))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(message or "deadline exceeded")
    if code == grpc.StatusCode.CANCELLED:
        return CancelledError(message or "cancelled")
    if code == grpc.StatusCode.INTERNAL and reason == "PLUGIN_ERROR":
        plugin = meta.get("plugin", "")
        prefix = f"plugin {plugin!r}: "
        return PluginError(plugin, message.removeprefix(prefix))
    if code == grpc.StatusCode.INTERNAL and reason == "SOLVER_ERROR":
        return SolverError(message, meta.get("status", "error"))
    return ServiceError(code, message, reason, meta)
