"""Conversions between engine objects and messages: tables, summaries and error statuses."""

from __future__ import annotations

import dataclasses
import io
import math

import grpc
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine.api.equity_engine.v1 import portfolio_pb2
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
from engine.service import wire
from engine.service.status import (
    DeadlineExceededError,
    ServiceError,
    error_from_status,
    status_from_error,
)

TABLE = pl.DataFrame({
    "customer_id": ["a", "b", None, "ü"],
    "margin": [1.5, None, -3.0, 1e300],
    "count": [1, 2, None, -(2**40)],
    "flag": [True, False, None, True],
})


@pytest.mark.parametrize("fmt", [wire.ARROW, wire.COLUMNS])
def test_table_round_trip_with_nulls(fmt: int) -> None:
    msg = wire.encode_table(TABLE, fmt)
    assert msg.WhichOneof("data") == ("columns" if fmt == wire.COLUMNS else "arrow_ipc")
    back = wire.decode_table(portfolio_pb2.Table.FromString(msg.SerializeToString()), "t")
    assert back is not None
    assert_frame_equal(back, TABLE)


def test_arrow_file_format_and_garbage() -> None:
    buf = io.BytesIO()
    TABLE.write_ipc(buf)
    back = wire.decode_table(portfolio_pb2.Table(arrow_ipc=buf.getvalue()), "customers")
    assert back is not None
    assert_frame_equal(back, TABLE)
    with pytest.raises(InvalidInputError) as err:
        wire.decode_table(portfolio_pb2.Table(arrow_ipc=b"not arrow"), "customers")
    assert err.value.violations[0].field == "customers.arrow_ipc"
    assert wire.decode_table(portfolio_pb2.Table(), "customers") is None


def test_bad_packed_columns_are_named() -> None:
    cols = portfolio_pb2.Columns()
    cols.columns.add(name="customer_id").strings.values.extend(["a", "b"])
    cols.columns.add(name="margin").doubles.values.extend([1.0])
    cols.columns.add(name="retention")
    cols.columns.add(name="margin").doubles.values.extend([1.0, 2.0])
    with pytest.raises(InvalidInputError) as err:
        wire.decode_table(portfolio_pb2.Table(columns=cols), "customers")
    problems = {(v.field, v.description) for v in err.value.violations}
    assert ("customers.retention", "column has no values") in problems
    assert ("customers.margin", "column name appears twice") in problems
    cols = portfolio_pb2.Columns()
    cols.columns.add(name="customer_id").strings.values.extend(["a", "b"])
    cols.columns.add(name="margin").doubles.values.extend([1.0])
    with pytest.raises(InvalidInputError, match="has 1 rows"):
        wire.decode_table(portfolio_pb2.Table(columns=cols), "customers")


def test_batch_rows_targets_bytes() -> None:
    table = pl.DataFrame({"x": np.zeros(100_000)})  # 8 bytes a row
    assert wire.batch_rows(table, 80_000) == 10_000


def _round_trip(exc: EquityError, deadline: bool = False) -> EquityError:
    status = status_from_error(exc, deadline_passed=deadline, request_id="r1")
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    return error_from_status(code, status.message, status.details)


def test_every_error_class_round_trips() -> None:
    invalid = InvalidInputError([
        FieldViolation("customers.retention", "must be < 1", 17),
        FieldViolation("plan.segment_limits[0].cap", "must be >= 0"),
        FieldViolation("customers", "is empty"),
    ])
    back = _round_trip(invalid)
    assert isinstance(back, InvalidInputError) and back.violations == invalid.violations

    back = _round_trip(InfeasiblePlanError("minimum too high", ["budget", "minimum:new"]))
    assert isinstance(back, InfeasiblePlanError)
    assert (back.reason, back.constraints) == ("minimum too high", ["budget", "minimum:new"])

    back = _round_trip(LimitExceededError("max_rows", 11, 10))
    assert isinstance(back, LimitExceededError)
    assert (back.limit, back.value, back.maximum) == ("max_rows", 11, 10)

    back = _round_trip(CancelledError("stopped"))
    assert type(back) is CancelledError
    back = _round_trip(CancelledError("stopped"), deadline=True)
    assert isinstance(back, DeadlineExceededError) and isinstance(back, CancelledError)

    back = _round_trip(PluginError("my-plugin", "raised ValueError()"))
    assert isinstance(back, PluginError)
    assert (back.plugin, back.problem) == ("my-plugin", "raised ValueError()")

    back = _round_trip(SolverError("highs stopped", "time limit"))
    assert isinstance(back, SolverError) and back.status == "time limit"


def test_unexpected_errors_hide_their_message() -> None:
    status = status_from_error(KeyError("secret"), request_id="abc123")
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert "secret" not in status.message and "abc123" in status.message
    back = error_from_status(grpc.StatusCode.INTERNAL, status.message, status.details)
    assert isinstance(back, ServiceError) and back.metadata["request_id"] == "abc123"


def test_summary_round_trip_keeps_undefined_as_none() -> None:
    from engine.pipeline import allocate
    from engine.portfolio import Portfolio
    from engine.synthetic import example

    customers, prospects, plan = example(300)
    result = allocate(Portfolio(customers, prospects), plan)
    summary = dataclasses.replace(result.summary, roc=math.nan, bound=None)
    back = wire.summary_from_proto(wire.summary_to_proto(summary))
    assert back["roc"] is None and back["bound"] is None
    assert back["constraints"] == summary["constraints"]
    assert back["shadow_prices"] == summary["shadow_prices"]
    assert list(back["spend_by_kind"]) == ["retention", "acquisition"]
