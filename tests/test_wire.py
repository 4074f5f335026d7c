"""Conversions between engine objects and messages: tables, summaries and error statuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import math
from decimal import Decimal

import grpc
import numpy as np
import polars as pl
import pyarrow as pa
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


# --- Arrow: each column type the decoder allows, as the engine reads it -----------------------

_N = 6
_ARROW_SAMPLES = {  # one column of each type engine.service.arrow_ipc allows
    "null": pa.nulls(_N),
    "bool": pa.array([True, False, None, True, False, True]),
    **{str(t): pa.array([0, 1, None, 3, 4, 5], t) for t in (
        pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
        pa.uint64())},
    "float": pa.array([0.5, None, -1.0, 2.0, 3.0, 4.0], pa.float32()),
    "double": pa.array([0.5, None, math.nan, 2.0, 1e300, -0.0], pa.float64()),
    "decimal": pa.array([Decimal("1.25"), None, Decimal("-2"), Decimal(0), Decimal(1),
                         Decimal(2)], pa.decimal128(10, 2)),
    "string": pa.array(["a", None, "ü", "", "b", "c"], pa.string()),
    "large_string": pa.array(["a", None, "ü", "", "b", "c"], pa.large_string()),
    "string_view": pa.array(["a", None, "a string longer than twelve bytes", "", "b", "c"],
                            pa.string_view()),
    "date32": pa.array([dt.date(2024, 1, d) for d in range(1, 7)], pa.date32()),
    "timestamp": pa.array([dt.datetime(2024, 1, d) for d in range(1, 7)], pa.timestamp("ms")),
    "timestamp_tz": pa.array([dt.datetime(2024, 1, d) for d in range(1, 7)],
                             pa.timestamp("us", tz="UTC")),
    "dictionary": pa.array(["x", "y", None, "x", "y", "x"]).dictionary_encode(),
}


def _ipc(table: pa.Table, compression: str | None = None, chunk: int | None = None,
         file: bool = False) -> bytes:
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with (pa.ipc.new_file if file else pa.ipc.new_stream)(sink, table.schema,
                                                          options=options) as writer:
        writer.write_table(table, max_chunksize=chunk)
    return sink.getvalue()


def test_every_allowed_arrow_type_decodes_to_a_column_type_the_engine_reads() -> None:
    # the decoder checks types on the Arrow schema only: each allowed type must come out as
    # a number, boolean, string, date, datetime or null column (what the engine reads)
    from engine.service.arrow_ipc import _PLAIN

    assert {a.type.id for a in _ARROW_SAMPLES.values()} - {_ARROW_SAMPLES["dictionary"].type.id} \
        == set(_PLAIN), "a type allowed by the decoder has no sample here"
    table = pa.table(_ARROW_SAMPLES)
    for file in (False, True):
        for compression in (None, "zstd"):
            frame = wire.decode_table(portfolio_pb2.Table(
                arrow_ipc=_ipc(table, compression, chunk=4, file=file)), "customers")
            assert frame is not None and frame.columns == list(_ARROW_SAMPLES)
            for name, dtype in frame.schema.items():
                assert dtype.is_numeric() or dtype in (pl.Boolean, pl.String, pl.Null, pl.Date) \
                    or isinstance(dtype, pl.Datetime), (name, dtype)
            assert frame["dictionary"].dtype == pl.String
            assert frame["dictionary"].to_list() == ["x", "y", None, "x", "y", "x"]
            plain = table.drop_columns("dictionary")
            reference = pl.from_arrow(plain)
            assert isinstance(reference, pl.DataFrame)
            assert_frame_equal(frame.drop("dictionary"), reference)


def test_arrow_metadata_of_the_sender_does_not_reach_polars() -> None:
    # polars reads types from field metadata: a categorical or an enum written by polars, or
    # a column marked as an extension type, arrives as the plain column it encodes
    frame = pl.DataFrame({"c": ["a", "b", None], "e": ["x", "y", "x"], "n": [3, 1, 2]})
    typed = frame.with_columns(pl.col("c").cast(pl.Categorical),
                               pl.col("e").cast(pl.Enum(["x", "y"])))
    buf = io.BytesIO()
    typed.write_ipc_stream(buf, compat_level=pl.CompatLevel.oldest())
    back = wire.decode_table(portfolio_pb2.Table(arrow_ipc=buf.getvalue()), "customers")
    assert back is not None
    assert_frame_equal(back, frame)
    # polars would read this column as its extension type: the metadata must not reach it
    extension = {b"ARROW:extension:name": b"polars.object"}
    fields = [pa.field("n", pa.int64(), nullable=False, metadata=extension),
              pa.field("s", pa.large_string(), metadata={b"_PL_CATEGORICAL2": b"0;0;u32;"})]
    table = pa.Table.from_arrays([pa.array([3, 1]), pa.array(["a", "b"], pa.large_string())],
                                 schema=pa.schema(fields, metadata={b"x": b"y"}))
    back = wire.decode_table(portfolio_pb2.Table(arrow_ipc=_ipc(table)), "customers")
    assert back is not None
    assert_frame_equal(back, pl.DataFrame({"n": [3, 1], "s": ["a", "b"]}))


def test_a_streams_checked_schema_is_kept_and_a_refused_one_is_not() -> None:
    from engine.service import arrow_ipc

    arrow_ipc._SCHEMAS.clear()
    data = _ipc(pa.table({"customer_id": ["a", "b"], "margin": [1.0, 2.0]}))
    first = wire.decode_table(portfolio_pb2.Table(arrow_ipc=data), "customers")
    again = wire.decode_table(portfolio_pb2.Table(arrow_ipc=data), "prospects")
    assert first is not None and again is not None
    assert_frame_equal(first, again)
    assert len(arrow_ipc._SCHEMAS) == 1
    bad = _ipc(pa.table({"customer_id": ["a"], "tags": [["x"]]}))
    for field in ("customers", "prospects"):  # refused each time, naming its own table
        with pytest.raises(InvalidInputError) as err:
            wire.decode_table(portfolio_pb2.Table(arrow_ipc=bad), field)
        assert [v.field for v in err.value.violations] == [f"{field}.tags"]
    assert len(arrow_ipc._SCHEMAS) == 1
    big = pa.table({f"c{i}": [1] for i in range(arrow_ipc._SCHEMAS_KEPT + 1)})
    for i in range(arrow_ipc._SCHEMAS_KEPT + 1):  # as many schemas as are kept, and one more
        wire.decode_table(portfolio_pb2.Table(arrow_ipc=_ipc(big.select(range(i + 1)))), "c")
    assert 1 <= len(arrow_ipc._SCHEMAS) <= arrow_ipc._SCHEMAS_KEPT
