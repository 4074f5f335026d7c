"""Error details are capped: a request with hundreds of problems gets INVALID_ARGUMENT with
the first ones listed and a count of the rest (never a trailer too large for the client),
and the Python client raises ``InvalidInputError`` for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.errors import FieldViolation, InvalidInputError
from engine.plan import Plan, SegmentLimit
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.service.status import TruncatedInputError, status_from_error
from engine.synthetic import customers as make_customers
from tests.servers import running


def test_status_lists_the_first_violations_and_counts_the_rest() -> None:
    exc = InvalidInputError([FieldViolation(f"plan.segment_limits[{i}]", "x" * 2_000)
                             for i in range(500)])
    status = status_from_error(exc, request_id="abc", max_details=50)
    assert status.ByteSize() < 12 << 10
    assert len(status.message) <= 1024
    from google.rpc import error_details_pb2
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
    assert len(err.value.violations) == 20
    assert err.value.total == 300 and err.value.omitted == 280
    assert all(v.field.startswith("plan.segment_limits") for v in err.value.violations)
