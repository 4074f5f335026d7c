"""Every response carries its request id (initial metadata ``x-request-id``), failures
included; a caller's own id is kept; every log line written while serving the call names
it, and domain errors carry it in their ``ErrorInfo``."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.plan import Plan
from engine.service import wire
from engine.service.logs import JsonFormatter
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(
        port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1,
        isolate_solves=False,
    )
    yield from running(config)


@pytest.fixture(scope="module")
def stub(server: EquityServer) -> Iterator[service_pb2_grpc.EquityServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.EquityServiceStub(channel)


def _request(rows: int = 30) -> service_pb2.AllocateRequest:
    return service_pb2.AllocateRequest(
        plan=Plan(total_budget=50.0).to_proto(),
        portfolio=portfolio_pb2.Portfolio(customers=wire.encode_table(make_customers(rows))))


def _id(metadata: Any) -> str:
    return dict(metadata or ())["x-request-id"]


def test_every_response_has_a_request_id(stub: service_pb2_grpc.EquityServiceStub) -> None:
    _, call = stub.Allocate.with_call(_request(), timeout=20)
    first = _id(call.initial_metadata())
    _, call = stub.ListPlugins.with_call(service_pb2.ListPluginsRequest(), timeout=20)
    second = _id(call.initial_metadata())
    assert len(first) == 16 and first != second
    bad = _request()
    bad.plan.budget.total = -1.0
    with pytest.raises(grpc.RpcError) as err:
        stub.Allocate(bad, timeout=20)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request_id = _id(err.value.initial_metadata())
    status = rpc_status.from_call(err.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details if d.Is(info.DESCRIPTOR))
    assert info.metadata["request_id"] == request_id
    header = service_pb2.AllocateStreamRequest(
        header=service_pb2.AllocateStreamHeader(plan=Plan(total_budget=50.0).to_proto()))
    batch = service_pb2.AllocateStreamRequest(batch=_request().portfolio)
    responses = stub.AllocateStream(iter([header, batch]), timeout=20)
    assert len(_id(responses.initial_metadata())) == 16
    assert list(responses)


def test_a_callers_id_is_kept_and_names_every_log_line(
        stub: service_pb2_grpc.EquityServiceStub, server: EquityServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("engine")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    check = server.servicer._check_rows

    def noisy(portfolio: Any) -> None:
        logging.getLogger("engine.pipeline").warning("a line from the engine")
        check(portfolio)

    monkeypatch.setattr(server.servicer, "_check_rows", noisy)
    try:
        _, call = stub.Allocate.with_call(_request(), timeout=20,
                                          metadata=(("x-request-id", "trace-42.a:b"),))
        stub.Allocate(_request(), timeout=20, metadata=(("x-request-id", "no spaces allowed"),))
        # the access line is written once gRPC has finished the call, after the answer (a
        # late access line of an earlier test's call may come in meanwhile: only these
        # two calls' lines are looked for)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = [json.loads(line) for line in lines.getvalue().splitlines()]
            engine_ids = {r["request_id"] for r in records
                          if r["message"] == "a line from the engine"}
            access_ids = {r["request_id"] for r in records if r["logger"].endswith(".access")}
            if len(engine_ids) == 2 and engine_ids <= access_ids:
                break
            time.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert _id(call.initial_metadata()) == "trace-42.a:b"
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    engine_lines = [r for r in records if r["message"] == "a line from the engine"]
    assert engine_lines[0]["request_id"] == "trace-42.a:b"
    assert len(engine_lines[1]["request_id"]) == 16  # a fresh id for an unusable one
    access = [r for r in records if r["logger"].endswith(".access")]
    assert {r["request_id"] for r in engine_lines} <= {r["request_id"] for r in access}


def test_a_refused_call_has_a_request_id_too() -> None:
    srv = EquityServer(ServerConfig(port=0, isolate_solves=False,
                                    tokens=("a-token-of-16-chars",)))
    srv.start()
    try:
        with grpc.insecure_channel(srv.address) as channel:
            stub = service_pb2_grpc.EquityServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.ListPlugins(service_pb2.ListPluginsRequest(), timeout=10,
                                 metadata=(("x-request-id", "refused-1"),))
    finally:
        srv.stop(grace=0.2)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _id(err.value.initial_metadata()) == "refused-1"
