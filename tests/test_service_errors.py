"""Error details are capped: a request with hundreds of problems gets INVALID_ARGUMENT with
the first ones listed and a count of the rest (never a trailer too large for the client),
and the Python client raises ``InvalidInputError`` for it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from engine.api.equity_engine.v1 import service_pb2, service_pb2_grpc
from engine.errors import FieldViolation, InfeasiblePlanError, InvalidInputError
from engine.plan import Plan, SegmentLimit
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.service.status import (
    MAX_MESSAGE_BYTES,
    MAX_TRAILER_BYTES,
    TruncatedInputError,
    _pack,
    error_from_status,
    grpc_code,
    status_from_error,
    trailer_bytes,
)
from engine.synthetic import customers as make_customers
from tests.servers import running


def test_status_lists_the_first_violations_and_counts_the_rest() -> None:
    exc = InvalidInputError([FieldViolation(f"plan.segment_limits[{i}]", "x" * 2_000)
                             for i in range(500)])
    status = status_from_error(exc, request_id="abc", max_details=50)
    assert status.ByteSize() < 12 << 10
    assert len(status.message) <= 1024
    bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    status.details[0].Unpack(bad)
    status.details[1].Unpack(info)
    assert 0 < len(bad.field_violations) <= 50
    assert info.metadata["violations"] == "500"
    assert int(info.metadata["omitted"]) == 500 - len(bad.field_violations)
    assert info.metadata["request_id"] == "abc"


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(
        port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1,
        isolate_solves=False, max_error_details=20,
    )
    yield from running(config)


def test_hundreds_of_unknown_segments_are_an_invalid_input_error(server: EquityServer) -> None:
    caps = tuple(SegmentLimit(segment=f"no-such-segment-{i:04d}" * 4, cap=1.0)
                 for i in range(300))
    with Client(server.address, timeout=30) as client, \
            pytest.raises(InvalidInputError) as err:
        client.allocate(make_customers(50, seed=1), Plan(total_budget=100.0,
                                                         segment_limits=caps))
    assert isinstance(err.value, TruncatedInputError)
    # at most max_error_details (20), fewer when their text would not fit the trailer
    listed = len(err.value.violations)
    assert 10 <= listed <= 20
    assert err.value.total == 300 and err.value.omitted == 300 - listed
    assert all(v.field.startswith("plan.segment_limits") for v in err.value.violations)


def test_a_status_stays_within_its_trailer_budget_whatever_its_text() -> None:
    """Long fields, long non-ASCII descriptions and a message that percent-encodes to 6x
    its length: the status as gRPC counts its trailer stays within MAX_TRAILER_BYTES."""
    cases = [
        InvalidInputError([FieldViolation(f"plan.segment_limits[{i}].segment",
                                          "é" * 600) for i in range(60)]),
        InvalidInputError([FieldViolation("customers.margin", "ü" * 5_000, row)
                           for row in range(3)]),
        InvalidInputError([FieldViolation("plan", "\n%" * 3_000)]),
    ]
    for exc in cases:
        status = status_from_error(exc, request_id="r" * 64)
        assert trailer_bytes(status) <= MAX_TRAILER_BYTES
        assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
        bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
        status.details[0].Unpack(bad)
        status.details[1].Unpack(info)
        assert len(bad.field_violations) >= 1
        assert int(info.metadata["omitted"]) == len(exc.violations) - len(bad.field_violations)


def test_an_infeasible_plan_names_what_fits_and_counts_the_rest() -> None:
    names = [f"segment:region-{i:05d}>=min" for i in range(2_000)]
    exc = InfeasiblePlanError("the minimums cannot all be met: " + "x" * 3_000, names)
    status = status_from_error(exc, request_id="abc")
    assert trailer_bytes(status) <= MAX_TRAILER_BYTES
    failure, info = error_details_pb2.PreconditionFailure(), error_details_pb2.ErrorInfo()
    status.details[0].Unpack(failure)
    status.details[1].Unpack(info)
    listed = [v.subject for v in failure.violations]
    assert 1 <= len(listed) < len(names) and listed == names[:len(listed)]
    assert int(info.metadata["omitted"]) == len(names) - len(listed)
    back = error_from_status(grpc_code(status.code), status.message, status.details)
    assert isinstance(back, InfeasiblePlanError) and back.constraints == listed
    few = status_from_error(InfeasiblePlanError("cap below minimum", names[:3]))
    few.details[1].Unpack(info)
    assert "omitted" not in info.metadata and info.metadata["constraints"].count(",") == 2


@pytest.fixture(scope="module")
def default_server() -> Iterator[EquityServer]:
    """The default error details (50 at most) and workers deciding on the large path."""
    yield from running(ServerConfig(port=0, isolate_solves=False))


def test_a_default_grpc_client_gets_the_details_of_sixty_long_violations(
        default_server: EquityServer) -> None:
    """A client with gRPC's default metadata limit (a soft 8 KiB: past it, trailers are
    refused at random) gets INVALID_ARGUMENT with its BadRequest on every call, however
    long the listed problems' text."""
    caps = tuple(SegmentLimit(segment=f"région-inconnue-{i:04d}-" + "é" * 40, cap=1.0)
                 for i in range(60))
    with Client(default_server.address) as client:
        request = client.allocate_request(make_customers(50, seed=1),
                                          Plan(total_budget=100.0, segment_limits=caps))
    assert isinstance(request, service_pb2.AllocateRequest)
    with grpc.insecure_channel(default_server.address) as channel:  # gRPC's defaults
        stub = service_pb2_grpc.EquityServiceStub(channel)
        for _ in range(40):
            with pytest.raises(grpc.RpcError) as err:
                stub.Allocate(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(err.value)
            assert status is not None
            bad = error_details_pb2.BadRequest()
            status.details[0].Unpack(bad)
            assert 1 <= len(bad.field_violations) <= 50
            assert all(v.field.startswith("plan.segment_limits[") for v in
                       bad.field_violations)


def test_the_trailer_budget_passes_a_default_grpc_client() -> None:
    """The budget itself, against gRPC: a status of MAX_TRAILER_BYTES (a message of 1 KiB
    as sent, mostly non-ASCII) reaches a default client intact on every call."""
    message = "é" * (MAX_MESSAGE_BYTES // 6)  # 2 UTF-8 bytes, each sent as %XX
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
    violation = error_details_pb2.BadRequest.FieldViolation(field="f" * 40,
                                                            description="d" * 200)
    bad = error_details_pb2.BadRequest()
    while trailer_bytes(status) < MAX_TRAILER_BYTES - 300:
        bad.field_violations.append(violation)
        del status.details[:]
        status.details.extend(_pack(bad))
    assert MAX_TRAILER_BYTES - 300 <= trailer_bytes(status) <= MAX_TRAILER_BYTES

    class Failing(health_pb2_grpc.HealthServicer):
        def Check(self, request: object, context: grpc.ServicerContext) -> None:
            context.set_trailing_metadata((("x-request-id", "r" * 64),))
            context.abort_with_status(rpc_status.to_status(status))

    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(Failing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                got = rpc_status.from_call(err.value)
                assert got is not None and got.message == message
    finally:
        server.stop(0)
