"""AllocateStream's request side is bounded: an idle timeout (the first message included),
limits on messages, bytes and duration, empty batches counted toward ``max_rows``, and a
place among the uploading streams that is not a solve's: streams that send nothing do not
block Allocate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.plan import Plan
from engine.service import wire
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests import servers
from tests.servers import running

CONFIG = ServerConfig(
    port=0, workers=10, max_concurrent_solves=1, max_queued_solves=1, small_solve_rows=100,
    isolate_solves=False, max_rows=5_000, stream_idle_timeout=0.6, max_stream_messages=40,
    max_stream_bytes=2 << 20, max_stream_seconds=3.0, max_receiving_streams=3,
)
PLAN = Plan(total_budget=200.0).to_proto()


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(CONFIG)


@pytest.fixture(scope="module")
def stub(server: EquityServer) -> Iterator[service_pb2_grpc.EquityServiceStub]:
    yield from servers.stub(server)


def _header() -> service_pb2.AllocateStreamRequest:
    return service_pb2.AllocateStreamRequest(header=service_pb2.AllocateStreamHeader(plan=PLAN))


def _batch(rows: int, seed: int = 1) -> service_pb2.AllocateStreamRequest:
    table = wire.encode_table(make_customers(rows, seed=seed), wire.ARROW)
    return service_pb2.AllocateStreamRequest(batch=portfolio_pb2.Portfolio(customers=table))


def _limit_of(call: Iterator[service_pb2.AllocateStreamResponse]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    return err.value.code(), err.value.details() or ""


def test_a_silent_stream_times_out(stub: service_pb2_grpc.EquityServiceStub) -> None:
    release = threading.Event()

    def nothing() -> Iterator[service_pb2.AllocateStreamRequest]:
        release.wait(20)
        yield from ()

    started = time.monotonic()
    code, details = _limit_of(stub.AllocateStream(nothing(), timeout=20))
    release.set()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "stream_idle_timeout" in details
    assert time.monotonic() - started < 5


def test_a_stalled_stream_times_out_after_its_header(
        stub: service_pb2_grpc.EquityServiceStub) -> None:
    release = threading.Event()

    def stalls() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield _header()
        yield _batch(10)
        release.wait(20)

    code, details = _limit_of(stub.AllocateStream(stalls(), timeout=20))
    release.set()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "stream_idle_timeout" in details


def test_empty_batches_count(stub: service_pb2_grpc.EquityServiceStub) -> None:
    def empties() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield _header()
        for _ in range(10_000):
            yield _batch(0)

    code, details = _limit_of(stub.AllocateStream(empties(), timeout=20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_stream_messages" in details


def test_empty_batches_count_toward_max_rows() -> None:
    messages = [_header()] + [_batch(0)] * 6

    with pytest.raises(Exception, match="max_rows"):
        wire.receive_stream(iter(messages), max_rows=5)


def test_stream_bytes_are_limited(stub: service_pb2_grpc.EquityServiceStub) -> None:
    big = _batch(4_000)
    assert big.ByteSize() > 300 << 10

    def heavy() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield _header()
        for _ in range(20):
            yield big

    code, details = _limit_of(stub.AllocateStream(heavy(), timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_stream_bytes" in details or "max_rows" in details


def test_a_trickling_stream_stops_at_max_stream_seconds(
        stub: service_pb2_grpc.EquityServiceStub) -> None:
    def trickle() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield _header()
        for i in range(30):
            time.sleep(0.4)
            yield _batch(1, seed=i)

    started = time.monotonic()
    code, details = _limit_of(stub.AllocateStream(trickle(), timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_stream_seconds" in details
    assert time.monotonic() - started < CONFIG.max_stream_seconds + 2


def test_idle_streams_do_not_block_allocate_and_are_bounded(
        stub: service_pb2_grpc.EquityServiceStub, server: EquityServer) -> None:
    release = threading.Event()

    def waits() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield _header()
        release.wait(20)

    calls = [stub.AllocateStream(waits(), timeout=20) for _ in range(CONFIG.max_receiving_streams)]
    time.sleep(0.2)
    try:
        # one more is refused at once: the upload places are taken
        code, details = _limit_of(stub.AllocateStream(waits(), timeout=20))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_receiving_streams" in details
        # a large Allocate (more than small_solve_rows) still runs
        request = service_pb2.AllocateRequest(plan=PLAN, portfolio=portfolio_pb2.Portfolio(
            customers=wire.encode_table(make_customers(1_000, seed=2))))
        reply = stub.Allocate(request, timeout=30)
        assert reply.summary.customers == 1_000
    finally:
        release.set()
    for call in calls:
        code, details = _limit_of(call)
        # their idle timeout, or the header alone (no customers) once released
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert server.gate.admitted_count == 0
