"""Large unary Allocate calls decoded by the solve worker, not by the server's process: the
server reads only the tables' row counts from their Arrow metadata, admits the solve and
hands the tables over as they came; the worker decodes and checks them as the server's
process does for a small request. The same answers and the same errors (status, message,
BadRequest field paths and rows) as a server that decodes and solves in its own process;
a worker that dies while decoding costs the call, not the server."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from polars.testing import assert_frame_equal
from service_plugins import test_registry

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.plugins import Registry
from engine.service import wire
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.service.servicer import EquityServicer
from engine.synthetic import customers as make_customers
from engine.synthetic import prospects as make_prospects
from tests.servers import running, wait_until

HERE = Path(__file__).parent
CONFIG = ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=1,
                      small_solve_rows=10, max_rows=5_000, max_decoded_bytes=8 << 20,
                      grace=1.0, limits=replace(ServerConfig().limits, max_levels_per_unit=6))
PLAN = Plan(total_budget=900.0)
MARKER = "die_while_decoding"  # a customers column that makes a solve worker's decoder die


def worker_registry() -> Registry:
    """The test strategies; in a solve worker, also a decoder that kills its own process
    when the customers table has a column named ``MARKER``."""
    if mp.current_process().name == "equity-solve":
        read_portfolio = wire.read_portfolio

        def dying(msg: portfolio_pb2.Portfolio, **checks: Any) -> Any:
            if MARKER.encode() in msg.customers.arrow_ipc:
                os.kill(os.getpid(), signal.SIGKILL)
            return read_portfolio(msg, **checks)

        wire.read_portfolio = dying  # type: ignore[assignment]
    return test_registry()


@pytest.fixture(scope="module")
def pooled() -> Iterator[EquityServer]:
    """Large solves in a worker, which decodes every large request (however few bytes)."""
    for server in running(CONFIG, registry_factory=worker_registry):
        server.servicer.worker_decode_bytes = 0
        yield server


@pytest.fixture(scope="module")
def local() -> Iterator[EquityServer]:
    """The same limits; everything decoded and solved in the server's process."""
    yield from running(replace(CONFIG, isolate_solves=False), registry_factory=worker_registry)


@pytest.fixture(scope="module")
def stubs(pooled: EquityServer, local: EquityServer
          ) -> Iterator[dict[str, service_pb2_grpc.EquityServiceStub]]:
    # gRPC's default channels: an error's trailer fits their metadata limit
    with grpc.insecure_channel(pooled.address) as a, \
            grpc.insecure_channel(local.address) as b:
        yield {"pooled": service_pb2_grpc.EquityServiceStub(a),
               "local": service_pb2_grpc.EquityServiceStub(b)}


@pytest.fixture
def decoded_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables this process decodes (the servers run in it; their workers do not)."""
    calls: list[str] = []
    decode_table = wire.decode_table

    def counting(msg: portfolio_pb2.Table, field: str, **limits: Any) -> Any:
        if field in wire.TABLES:  # not the test's own decoding of answers
            calls.append(field)
        return decode_table(msg, field, **limits)

    monkeypatch.setattr(wire, "decode_table", counting)
    return calls


# --- requests -------------------------------------------------------------------------------


def _stream(table: pa.Table, compression: str | None = None) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema,
                        options=ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table, max_chunksize=64)
    return sink.getvalue()


def _arrow(frame: pl.DataFrame) -> pa.Table:
    return frame.to_arrow()


def _request(customers: bytes | pl.DataFrame | None = None, *, fmt: str = "arrow",
             prospects: bytes | pl.DataFrame | None = None,
             options: pl.DataFrame | None = None, plan: Plan = PLAN
             ) -> service_pb2.AllocateRequest:
    msg = portfolio_pb2.Portfolio()
    for name, table in (("customers", customers), ("prospects", prospects),
                        ("options", options)):
        if isinstance(table, bytes):
            getattr(msg, name).arrow_ipc = table
        elif table is not None:
            getattr(msg, name).CopyFrom(wire.encode_table(table, wire.table_format(fmt)))
    return service_pb2.AllocateRequest(portfolio=msg, plan=plan.to_proto())


CUSTOMERS = make_customers(200, seed=4)


def _bad_dictionary(frame: pl.DataFrame, column: str, row: int) -> bytes:
    """``frame`` as a stream whose ``column`` is dictionary-encoded with an index out of
    range at ``row`` (found only by decoding: the metadata is sound)."""
    table = _arrow(frame)
    values = table[column].combine_chunks().cast(pa.string()).dictionary_encode()
    indices = values.indices.to_pylist()
    indices[row] = len(values.dictionary) + 5
    broken = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), values.dictionary,
                                            safe=False)
    return _stream(table.set_column(table.schema.get_field_index(column), column, broken))


def _truncated() -> service_pb2.AllocateRequest:
    data = _stream(_arrow(CUSTOMERS))
    return _request(data[: len(data) // 2])


def _decimal256() -> service_pb2.AllocateRequest:
    table = _arrow(CUSTOMERS.head(40))
    column = pa.array([Decimal("0.5")] * 40, pa.decimal256(40, 2))
    return _request(_stream(table.set_column(table.schema.get_field_index("retention"),
                                             "retention", column)))


def _options_over_the_levels() -> service_pb2.AllocateRequest:
    ids = CUSTOMERS["customer_id"].head(20)
    options = pl.DataFrame({"customer_id": ids}).join(
        pl.DataFrame({"level": [0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0]}), how="cross"
    ).with_columns(cost=pl.col("level"), value=pl.col("level") * 1.1)
    return _request(CUSTOMERS.head(20), options=options)


def _pool_without_a_name() -> service_pb2.AllocateRequest:
    pools = make_prospects(4).with_columns(
        segment=pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("segment"))
    return _request(CUSTOMERS, prospects=pools)


def _retention_out_of_range() -> service_pb2.AllocateRequest:
    return _request(CUSTOMERS.with_columns(
        retention=pl.when(pl.int_range(pl.len()) == 17).then(1.5).otherwise("retention")))


def _two_tables_broken() -> service_pb2.AllocateRequest:
    return _request(_bad_dictionary(CUSTOMERS, "segment", 7),
                    prospects=_bad_dictionary(make_prospects(4), "segment", 1))


def _mutation(index: int, seed: int) -> Callable[[], service_pb2.AllocateRequest]:
    def build() -> service_pb2.AllocateRequest:
        sys.path.insert(0, str(HERE))
        from arrow_fuzz import mutations

        return _request(mutations(index + 1, seed)[index])

    return build


# name: (request, where its tables are decoded: "worker", "server" (the metadata fails a
# check: decoded in the server's process, as always) or None (either))
CASES: dict[str, tuple[Callable[[], service_pb2.AllocateRequest], str | None]] = {
    "valid, arrow": (lambda: _request(CUSTOMERS), "worker"),
    "valid, columns": (lambda: _request(CUSTOMERS, fmt="columns"), "worker"),
    "valid, compressed, with pools": (lambda: _request(
        _stream(_arrow(CUSTOMERS), "zstd"), prospects=make_prospects(4)), "worker"),
    "truncated stream": (_truncated, "server"),
    "wrong column type (decimal256)": (_decimal256, "server"),
    "too many rows": (lambda: _request(make_customers(5_001, seed=1)), "server"),
    "too many rows, columns": (lambda: _request(make_customers(5_001, seed=1),
                                                fmt="columns"), "server"),
    "malformed dictionary column": (
        lambda: _request(_bad_dictionary(CUSTOMERS, "segment", 5)), "worker"),
    "two tables with malformed columns": (_two_tables_broken, "worker"),
    "more levels per customer than allowed": (_options_over_the_levels, "worker"),
    "a pool without a name": (_pool_without_a_name, "worker"),
    "a retention out of range (row 17)": (_retention_out_of_range, "worker"),
    # more violations than a status lists (max_error_details): the same ones left out
    "60 caps on unknown segments": (lambda: _request(CUSTOMERS, plan=replace(
        PLAN, segment_limits=tuple(SegmentLimit(f"nowhere-{i}", cap=1.0)
                                   for i in range(60)))), "worker"),
    # streams that made polars' own IPC reader abort, hang and panic (tests/arrow_fuzz.py)
    "fuzz seed 1 #92": (_mutation(92, 1), None),
    "fuzz seed 1 #3": (_mutation(3, 1), None),
    "fuzz seed 1 #1": (_mutation(1, 1), None),
}


def _details(err: grpc.RpcError) -> list[dict[str, Any]]:
    """The status's details as dicts, without the request id (each call has its own)."""
    status = rpc_status.from_call(err)
    out = []
    for detail in status.details if status is not None else []:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo,
                     error_details_pb2.QuotaFailure, error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                if isinstance(message, error_details_pb2.ErrorInfo):
                    message.metadata.pop("request_id", None)
                out.append({kind.DESCRIPTOR.name: json_format.MessageToDict(message)})
    return out


def _outcome(stub: service_pb2_grpc.EquityServiceStub,
             request: service_pb2.AllocateRequest, timeout: float = 60) -> dict[str, Any]:
    try:
        response = stub.Allocate(request, timeout=timeout)
    except grpc.RpcError as err:
        return {"code": err.code().name, "message": err.details(), "details": _details(err)}
    summary = json_format.MessageToDict(response.summary)
    summary.pop("seconds", None)
    return {"code": "OK", "summary": summary, "units": wire.decode_table(response.units, "units")}


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["code"] == b["code"], (a, b)
    if a["code"] == "OK":
        assert a["summary"] == b["summary"]
        assert_frame_equal(a["units"], b["units"])
    else:
        assert a == b


@pytest.mark.parametrize("name", list(CASES))
def test_the_same_answer_and_errors_as_decoding_in_the_servers_process(
        name: str, stubs: dict[str, service_pb2_grpc.EquityServiceStub],
        decoded_here: list[str]) -> None:
    build, where = CASES[name]
    request = build()
    pooled = _outcome(stubs["pooled"], request)
    if where == "worker":
        assert decoded_here == [], "decoded in the server's process"
    elif where == "server":
        assert "customers" in decoded_here
    decoded_here.clear()
    local = _outcome(stubs["local"], request)
    assert "customers" in decoded_here  # the reference did decode in its own process
    _assert_same(pooled, local)
    if name.startswith("valid"):
        assert pooled["code"] == "OK" and pooled["units"].height > 0
    elif where is not None:
        assert pooled["code"] in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED")


def test_errors_name_the_fields_and_rows(stubs: dict[str, service_pb2_grpc.EquityServiceStub]
                                         ) -> None:
    """What the comparison above compares, for three of the cases (so that it is not two
    servers agreeing on something else)."""
    bad = _outcome(stubs["pooled"], _retention_out_of_range())
    assert bad["code"] == "INVALID_ARGUMENT"
    fields = bad["details"][0]["BadRequest"]["fieldViolations"]
    assert [v["field"] for v in fields] == ["customers.retention[17]"]
    two = _outcome(stubs["pooled"], _two_tables_broken())
    assert [v["field"] for v in two["details"][0]["BadRequest"]["fieldViolations"]] == [
        "customers.segment", "prospects.segment"]
    levels = _outcome(stubs["pooled"], _options_over_the_levels())
    assert levels["code"] == "RESOURCE_EXHAUSTED" and "max_levels_per_unit" in levels["message"]


def test_fuzzed_streams_get_the_same_status_either_way(
        stubs: dict[str, service_pb2_grpc.EquityServiceStub]) -> None:
    sys.path.insert(0, str(HERE))
    from arrow_fuzz import mutations

    for i, data in enumerate(mutations(60, 16)):
        request = _request(data)
        pooled, local = _outcome(stubs["pooled"], request), _outcome(stubs["local"], request)
        assert pooled["code"] == local["code"], (i, pooled, local)
        _assert_same(pooled, local)


def test_small_payloads_are_decoded_in_the_servers_process(
        pooled: EquityServer, stubs: dict[str, service_pb2_grpc.EquityServiceStub],
        decoded_here: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default ``worker_decode_bytes`` a large solve of a small message is decoded
    here (as cheap as reading its metadata), a larger message by the worker."""
    monkeypatch.setattr(pooled.servicer, "worker_decode_bytes",
                        EquityServicer.worker_decode_bytes)
    small = _request(CUSTOMERS)  # 200 rows: a large solve here (small_solve_rows=10)
    assert small.ByteSize() < EquityServicer.worker_decode_bytes
    assert _outcome(stubs["pooled"], small)["code"] == "OK"
    assert decoded_here == ["customers", "prospects", "options", "transactions"]
    decoded_here.clear()
    large = _request(make_customers(4_000, seed=2))
    assert large.ByteSize() >= EquityServicer.worker_decode_bytes
    assert _outcome(stubs["pooled"], large)["code"] == "OK"
    assert decoded_here == []


def test_a_worker_that_dies_while_decoding(
        pooled: EquityServer, stubs: dict[str, service_pb2_grpc.EquityServiceStub]) -> None:
    assert _outcome(stubs["pooled"], _request(CUSTOMERS))["code"] == "OK"
    assert pooled.pool is not None
    before = pooled.pool.pids()
    doomed = _request(CUSTOMERS.with_columns(pl.lit(1).alias(MARKER)))
    failed = _outcome(stubs["pooled"], doomed)
    assert failed["code"] == "INTERNAL"
    assert "the solve worker died during the solve" in failed["message"]
    info = [d["ErrorInfo"] for d in failed["details"] if "ErrorInfo" in d]
    assert info and info[0]["reason"] == "SOLVER_ERROR"
    assert wait_until(lambda: pooled.pool is not None and pooled.pool.pids() != before)
    with Client(pooled.address) as client:
        assert client.health(timeout=5) == "SERVING"
    assert _outcome(stubs["pooled"], _request(CUSTOMERS))["code"] == "OK"


def test_a_deadline_stops_the_worker_and_it_takes_the_next_call(
        pooled: EquityServer, stubs: dict[str, service_pb2_grpc.EquityServiceStub],
        decoded_here: list[str]) -> None:
    """The worker is told to stop, answers, and the next call finds the pipe in step."""
    assert _outcome(stubs["pooled"], _request(CUSTOMERS))["code"] == "OK"
    assert pooled.pool is not None
    before = pooled.pool.pids()
    spin = replace(PLAN, allocation=StrategyChoice("spin", {}))
    stopped = _outcome(stubs["pooled"], _request(CUSTOMERS, plan=spin), timeout=0.5)
    assert stopped["code"] == "DEADLINE_EXCEEDED"
    assert wait_until(lambda: pooled.active_solves == 0, timeout=5)
    again = _outcome(stubs["pooled"], _request(CUSTOMERS))
    assert again["code"] == "OK" and again["units"].height == CUSTOMERS.height
    assert pooled.pool.pids() == before  # stopped cooperatively: the same worker
    assert decoded_here == []


def test_row_counts_from_the_metadata_are_the_decoded_heights() -> None:
    frame = CUSTOMERS.with_columns(pl.col("segment").cast(pl.Categorical))
    table = _arrow(CUSTOMERS)
    file_sink = io.BytesIO()
    with ipc.new_file(file_sink, table.schema,
                      options=ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table, max_chunksize=33)
    payloads = [_stream(table), _stream(table, "zstd"), file_sink.getvalue(),
                wire.encode_table(frame).arrow_ipc, _stream(table.slice(0, 0))]
    for data in payloads:
        msg = portfolio_pb2.Portfolio(customers=portfolio_pb2.Table(arrow_ipc=data))
        tables = wire.request_tables(msg, max_rows=5_000, max_bytes=8 << 20)
        assert tables is not None
        decoded = wire.decode_portfolio(msg)
        assert decoded.customers is not None
        assert tables.rows == {"customers": decoded.customers.height}
    columns = portfolio_pb2.Portfolio(customers=wire.encode_table(CUSTOMERS, wire.COLUMNS),
                                      prospects=wire.encode_table(make_prospects(4)))
    tables = wire.request_tables(columns, max_rows=5_000, max_bytes=8 << 20)
    assert tables is not None and tables.rows == {"customers": 200, "prospects": 5}
    assert tables.size == 205
    again, original = wire.decode_portfolio(tables.message()), wire.decode_portfolio(columns)
    for name in ("customers", "prospects"):
        assert_frame_equal(getattr(again, name), getattr(original, name))
    truncated = _truncated().portfolio
    assert wire.request_tables(truncated, max_rows=5_000, max_bytes=8 << 20) is None
    assert wire.request_tables(columns, max_rows=199, max_bytes=8 << 20) is None


@pytest.mark.parametrize("seed", [1, 16])
def test_row_counts_fail_exactly_where_decoding_fails_on_metadata(seed: int) -> None:
    """Over mutated streams: when ``arrow_rows`` refuses a payload, ``read_arrow`` refuses
    it with the same error; when it passes one that decodes, the rows are the height."""
    sys.path.insert(0, str(HERE))
    from arrow_fuzz import MAX_BYTES, MAX_ROWS, mutations

    from engine.errors import InvalidInputError, LimitExceededError
    from engine.service.arrow_ipc import arrow_rows, read_arrow

    def error(call: Callable[[], Any]) -> tuple[Any, ...] | Any:
        try:
            return call()
        except InvalidInputError as exc:
            return ("invalid", exc.violations)
        except LimitExceededError as exc:
            return ("limit", exc.limit, exc.value, exc.maximum)

    refused = counted = 0
    for data in mutations(400, seed):
        rows = error(lambda d=data: arrow_rows(d, "customers", MAX_ROWS, MAX_BYTES))
        frame = error(lambda d=data: read_arrow(d, "customers", MAX_ROWS, MAX_BYTES))
        if isinstance(rows, tuple):
            assert frame == rows
            refused += 1
        elif isinstance(frame, pl.DataFrame):
            assert rows == frame.height
            counted += 1
    assert refused > 50 and counted > 5  # both sides of the property were exercised
