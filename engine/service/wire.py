"""Conversions between the engine's objects and the gRPC messages, shared by server and client.

- Tables: polars DataFrame <-> ``equity_engine.v1.Table`` (Arrow IPC or packed columns),
  whole columns at a time (numpy / Arrow), never a Python loop over rows.
- Plan summaries: ``engine.summary.PlanSummary`` <-> the ``PlanSummary`` message.
- Streams: the messages of an ``AllocateStream`` call assembled into one ``Portfolio``.
- Strategies: ``Registry.describe()`` <-> ``ListPluginsResponse``.

Errors and their statuses are in ``engine.service.status``; plans convert themselves
(``Plan.from_proto``, ``Plan.to_proto``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from google.protobuf import json_format, struct_pb2

from engine.api.equity_engine.v1 import portfolio_pb2, result_pb2, service_pb2
from engine.errors import FieldViolation, InvalidInputError, LimitExceededError, PluginError
from engine.options import KINDS
from engine.portfolio import Portfolio
from engine.service.arrow_ipc import arrow_rows, read_arrow
from engine.summary import ConstraintInfo, PlanSummary

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


# rows and decoded bytes of one table when the caller states no limit (the server does)
DEFAULT_MAX_ROWS = 10_000_000
DEFAULT_MAX_DECODED_BYTES = 1 << 30


def decode_table(
    msg: portfolio_pb2.Table, field: str, *, max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> pl.DataFrame | None:
    """A ``Table`` as a DataFrame (``None`` when unset); problems name ``field``. Arrow is
    checked before it is decoded (``engine.service.arrow_ipc``): at most ``max_rows`` rows
    and ``max_bytes`` bytes once decompressed."""
    which = msg.WhichOneof("data")
    if which is None:
        return None
    if which == "arrow_ipc":  # plain columns only (engine.service.arrow_ipc)
        return read_arrow(msg.arrow_ipc, field, max_rows, max_bytes)
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


def decode_portfolio(
    msg: portfolio_pb2.Portfolio, *, max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Portfolio:
    tables: dict[str, pl.DataFrame | None] = {}
    problems: list[FieldViolation] = []
    for name in TABLES:
        try:
            tables[name] = decode_table(getattr(msg, name), name, max_rows=max_rows,
                                        max_bytes=max_bytes)
        except InvalidInputError as exc:
            problems.extend(exc.violations)
    if problems:
        raise InvalidInputError(problems)
    return Portfolio(**tables)


def check_rows(portfolio: Portfolio, max_rows: int, max_levels_per_unit: int) -> None:
    """Row and level limits of a decoded portfolio, before any work: ``max_rows`` per table
    and, for an options table, ``max_levels_per_unit`` rows per customer (a million levels
    for one customer is refused here, not after the options are built); pools without a
    name."""
    for name in TABLES:
        table = getattr(portfolio, name)
        if table is not None and table.height > max_rows:
            raise LimitExceededError("max_rows", table.height, max_rows)
    pools = portfolio.prospects
    if pools is not None and "segment" in pools.columns and pools["segment"].null_count():
        # engine.portfolio lets null segments through (customers may have them) and its
        # uniqueness check then fails on them: name the problem here
        row = int(pools["segment"].is_null().arg_max() or 0)
        raise InvalidInputError.single("prospects.segment", "is null (a pool needs a name)", row)
    options = portfolio.options
    if options is not None and "customer_id" in options.columns \
            and options.height > max_levels_per_unit:
        try:
            most = options.group_by("customer_id").len()["len"].max()
        except pl.exceptions.PolarsError:
            return  # an id column polars cannot group: validation names it later
        if isinstance(most, int) and most > max_levels_per_unit:
            raise LimitExceededError("max_levels_per_unit", most, max_levels_per_unit)


@dataclass(frozen=True)
class RequestTables:
    """A request's tables as they came, for a solve worker to decode, and the rows their
    metadata declares: ``payloads`` maps each table sent to its Arrow IPC bytes
    (``"arrow_ipc"``) or its serialized ``Table`` message (``"columns"``)."""

    payloads: dict[str, tuple[str, bytes]]
    rows: dict[str, int]

    @property
    def size(self) -> int:
        """Rows as ``Portfolio.size`` counts them (customers, prospects, options)."""
        return sum(self.rows.get(name, 0) for name in ("customers", "prospects", "options"))

    def message(self) -> portfolio_pb2.Portfolio:
        """The ``Portfolio`` message again (for ``read_portfolio``)."""
        msg = portfolio_pb2.Portfolio()
        for name, (kind, data) in self.payloads.items():
            if kind == "arrow_ipc":
                getattr(msg, name).arrow_ipc = data
            else:
                getattr(msg, name).ParseFromString(data)
        return msg


def request_tables(msg: portfolio_pb2.Portfolio, *, max_rows: int,
                   max_bytes: int) -> RequestTables | None:
    """A request's tables undecoded, with each one's rows read from its metadata alone (an
    Arrow table's batch headers, checked as ``read_arrow`` checks them before decoding; a
    columns table's first column); ``None`` when a table fails those checks or has more
    than ``max_rows`` rows (decoding it names the problem as it always does)."""
    payloads: dict[str, tuple[str, bytes]] = {}
    rows: dict[str, int] = {}
    for name in TABLES:
        table = getattr(msg, name)
        which = table.WhichOneof("data")
        if which is None:
            continue
        if which == "arrow_ipc":
            data = table.arrow_ipc
            try:
                rows[name] = arrow_rows(data, name, max_rows, max_bytes)
            except (InvalidInputError, LimitExceededError):
                return None
            payloads[name] = ("arrow_ipc", data)
            continue
        columns = table.columns.columns
        first = columns[0] if columns else None
        kind = None if first is None else first.WhichOneof("values")
        rows[name] = 0 if first is None or kind is None else len(getattr(first, kind).values)
        if rows[name] > max_rows:
            return None
        payloads[name] = ("columns", table.SerializeToString())
    return RequestTables(payloads, rows)


def read_portfolio(msg: portfolio_pb2.Portfolio, *, max_rows: int, max_bytes: int,
                   max_levels_per_unit: int) -> Portfolio:
    """A request's portfolio as the server reads it, in its process or in a solve worker:
    decoded within ``max_rows`` and ``max_bytes`` (``decode_portfolio``), then
    ``check_rows``."""
    portfolio = decode_portfolio(msg, max_rows=max_rows, max_bytes=max_bytes)
    check_rows(portfolio, max_rows, max_levels_per_unit)
    return portfolio


def batch_rows(table: pl.DataFrame, target_bytes: int = 2 << 20) -> int:
    """Rows per batch so that one encoded batch is about ``target_bytes``."""
    if table.height == 0:
        return 1
    per_row = max(1.0, table.estimated_size() / table.height)
    return max(1, int(target_bytes / per_row))


@dataclass(frozen=True)
class UnitsEncoding:
    """How the plan's table goes back: ``fmt``, and either one table (``batched`` off) or
    messages of ``batch_rows`` rows (0: as many as fit in about ``target_bytes``)."""

    fmt: int
    batched: bool = False
    batch_rows: int = 0
    target_bytes: int = 2 << 20


def encode_units(units: pl.DataFrame, encoding: UnitsEncoding) -> list[portfolio_pb2.Table]:
    """The plan's table as the response carries it (in a solve worker or in the server)."""
    if not encoding.batched:
        return [encode_table(units, encoding.fmt)]
    rows = encoding.batch_rows or batch_rows(units, encoding.target_bytes)
    return [encode_table(units.slice(start, rows), encoding.fmt)
            for start in range(0, units.height, rows)]


# --- streams --------------------------------------------------------------------------------


def receive_stream(
    requests: Iterator[service_pb2.AllocateStreamRequest], max_rows: int,
    max_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> tuple[service_pb2.AllocateStreamHeader, Portfolio, int]:
    """The header, the portfolio of all batches (each table's rows appended in order, at
    most ``max_rows`` of them; a table sent with no rows counts as one, so empty batches
    cannot be sent without end) and the encoding of the first table sent."""
    first = next(requests, None)
    if first is None or first.WhichOneof("item") != "header":
        raise InvalidInputError.single("header", "the first message of the stream must be "
                                       "the header (plan and response options)")
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in TABLES}
    rows = dict.fromkeys(TABLES, 0)
    fmt = None
    for i, msg in enumerate(requests, start=1):
        if msg.WhichOneof("item") != "batch":
            raise InvalidInputError.single("header", f"message {i} is a second header")
        if fmt is None:
            fmt = first_format(msg.batch.customers, msg.batch.prospects, msg.batch.options)
        for name in TABLES:
            table = decode_table(getattr(msg.batch, name), name,
                                 max_rows=max_rows, max_bytes=max_bytes)
            if table is None:
                continue
            if parts[name] and set(table.columns) != set(parts[name][0].columns):
                raise InvalidInputError.single(
                    name, f"batch in message {i} has columns {sorted(table.columns)}; "
                    f"the first batch had {sorted(parts[name][0].columns)}")
            rows[name] += max(table.height, 1)
            if rows[name] > max_rows:
                raise LimitExceededError("max_rows", rows[name], max_rows)
            parts[name].append(table.select(parts[name][0].columns) if parts[name] else table)
    tables: dict[str, pl.DataFrame | None] = {}
    for name, batches in parts.items():
        if not batches:
            tables[name] = None
            continue
        try:
            tables[name] = pl.concat(batches, how="vertical_relaxed", rechunk=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidInputError.single(
                name, f"batches have incompatible column types: {message}"
            ) from None
    return first.header, Portfolio(**tables), fmt or ARROW


# --- plan summary ---------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# Summary fields that map one to one onto PlanSummary fields of the same name; the others
# (maps of messages, constraints with their prices) are converted below by hand.
_SCALARS = ("status", "allocator", "method", "solver", "customers", "pools", "equity_before",
            "equity_after", "equity_gain", "total_spend", "fractional_pools", "iterations")
_OPTIONAL = ("roc", "roc_do_nothing", "lp_objective", "bound", "gap")
_MAPS = ("spend_by_segment", "seconds")


def summary_to_proto(summary: PlanSummary) -> result_pb2.PlanSummary:
    """``PlanResult.summary`` as a ``PlanSummary`` (undefined figures left absent). The
    messages inside (segments' equity, constraints, responses) are filled in place, not
    built apart and copied in."""
    fields: dict[str, Any] = {name: getattr(summary, name) for name in (*_SCALARS, *_MAPS)}
    fields |= {name: _finite(getattr(summary, name)) for name in _OPTIONAL}
    msg = result_pb2.PlanSummary(
        **fields,
        spend_by_kind=summary.spend_by_kind,
        notes=summary.notes,
        equity_gain_interval=summary.equity_gain_interval,
        probability_beats_nothing=_finite(summary.probability_beats_nothing),
        uncertainty_draws=summary.uncertainty_draws,
        current_gain_interval=summary.current_gain_interval,
        probability_beats_current=_finite(summary.probability_beats_current),
        choice_stability={k: v for k, v in summary.choice_stability.items()
                          if math.isfinite(v)},
        integer_bound=_finite(summary.integer_bound),
        partitions=summary.partitions,
        lp_columns=summary.lp_columns,
    )
    for segment, equity in summary.equity_by_segment.items():
        entry = msg.equity_by_segment[segment]
        entry.before = equity["before"]
        entry.after = equity["after"]
    add = msg.constraints.add
    prices = summary.shadow_prices
    for c in summary.constraints:
        add(name=c.name, sense=result_pb2.CONSTRAINT_SENSE_AT_MOST if c.sense == "<="
            else result_pb2.CONSTRAINT_SENSE_AT_LEAST, rhs=c.rhs,
            shadow_price=_finite(prices.get(c.name)))
    _assumptions_to_proto(summary.assumptions, msg.assumptions)
    return msg


def _assumptions_to_proto(assumptions: dict[str, Any], msg: result_pb2.PlanAssumptions) -> None:
    msg.SetInParent()  # present even when empty, as the summary always states its basis
    basis = assumptions.get("valuation", {})
    if basis:
        msg.valuation.CopyFrom(result_pb2.ValuationBasis(**basis))
    add = msg.responses.add
    for r in assumptions.get("responses", []):
        add(**r)


def _assumptions_from_proto(msg: result_pb2.PlanAssumptions) -> dict[str, Any]:
    if not msg.HasField("valuation") and not msg.responses:
        return {}
    v = msg.valuation
    return {
        "valuation": {
            "period_days": v.period_days if v.HasField("period_days") else None,
            "period": v.period,
            "discount_rate_per_period": v.discount_rate_per_period,
            "horizon_periods": v.horizon_periods if v.HasField("horizon_periods") else None,
            "margin_growth_per_period": v.margin_growth_per_period,
        },
        "responses": [
            {"segment": r.segment, "kind": r.kind, "source": r.source, "model": r.model,
             "defaults": list(r.defaults)}
            for r in msg.responses
        ],
    }


def summary_from_proto(msg: result_pb2.PlanSummary) -> PlanSummary:
    """A ``PlanSummary`` message as the engine's typed summary (None, not NaN)."""
    fields: dict[str, Any] = {name: getattr(msg, name) for name in _SCALARS}
    fields |= {name: getattr(msg, name) if msg.HasField(name) else None for name in _OPTIONAL}
    fields |= {name: dict(sorted(getattr(msg, name).items())) for name in _MAPS}
    return PlanSummary(
        **fields,
        spend_by_kind={k: msg.spend_by_kind.get(k, 0.0) for k in KINDS}
        | {k: v for k, v in sorted(msg.spend_by_kind.items()) if k not in KINDS},
        equity_by_segment={
            s: {"before": e.before, "after": e.after}
            for s, e in sorted(msg.equity_by_segment.items())
        },
        shadow_prices={
            c.name: c.shadow_price for c in msg.constraints if c.HasField("shadow_price")
        },
        constraints=[
            ConstraintInfo(
                c.name, "<=" if c.sense == result_pb2.CONSTRAINT_SENSE_AT_MOST else ">=", c.rhs
            )
            for c in msg.constraints
        ],
        notes=list(msg.notes),
        assumptions=_assumptions_from_proto(msg.assumptions),
        equity_gain_interval=dict(msg.equity_gain_interval),
        probability_beats_nothing=msg.probability_beats_nothing
        if msg.HasField("probability_beats_nothing") else None,
        uncertainty_draws=msg.uncertainty_draws,
        current_gain_interval=dict(msg.current_gain_interval),
        probability_beats_current=msg.probability_beats_current
        if msg.HasField("probability_beats_current") else None,
        choice_stability=dict(msg.choice_stability),
        integer_bound=msg.integer_bound if msg.HasField("integer_bound") else None,
        partitions=msg.partitions or 1,
        lp_columns=list(msg.lp_columns),
    )


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
