"""The grpcurl examples in docs/api.md are valid requests that the service answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from engine.api.equity_engine.v1 import service_pb2, service_pb2_grpc
from engine.service.server import EquityServer, ServerConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
EXAMPLE = re.compile(
    r"grpcurl -plaintext -d @ \S+ equity_engine\.v1\.EquityService/(\w+) <<'EOF'\n(.*?)\nEOF",
    re.DOTALL,
)


def _messages(text: str) -> list[dict[str, Any]]:
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
    return out


EXAMPLES = EXAMPLE.findall(DOC.read_text())


@pytest.fixture(scope="module")
def stub() -> Iterator[service_pb2_grpc.EquityServiceStub]:
    server = EquityServer(ServerConfig(port=0))
    server.start()
    with grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.EquityServiceStub(channel)
    server.stop(0)


def test_every_rpc_has_an_example() -> None:
    methods = service_pb2.DESCRIPTOR.services_by_name["EquityService"].methods_by_name
    assert {m for m, _ in EXAMPLES} == set(methods) == {
        "Allocate", "AllocateStream", "Score", "ListPlugins", "Frontier", "FitResponse",
        "FitClv"}


@pytest.mark.parametrize(("method", "body"), EXAMPLES, ids=[m for m, _ in EXAMPLES])
def test_example_runs(stub: service_pb2_grpc.EquityServiceStub, method: str, body: str) -> None:
    request_type = getattr(service_pb2, f"{method}Request")
    requests = [json_format.ParseDict(m, request_type()) for m in _messages(body)]
    if method == "AllocateStream":
        responses = list(stub.AllocateStream(iter(requests), timeout=30))
        assert [r.WhichOneof("item") for r in responses] == ["units", "units", "summary"]
        assert responses[-1].summary.status == "optimal"
    elif method == "Allocate":
        response = stub.Allocate(requests[0], timeout=30)
        assert response.summary.status == "optimal"
        assert response.units.WhichOneof("data") == "columns"
        assert response.summary.total_spend <= 40 + 1e-6
    elif method == "Score":
        response = stub.Score(requests[0], timeout=30)
        names = [c.name for c in response.scores.columns.columns]
        assert names == ["customer_id", "clv"]
    elif method == "ListPlugins":
        response = stub.ListPlugins(requests[0], timeout=30)
        assert {s.name for s in response.strategies} >= {"clv", "roc"}
    elif method == "FitClv":
        response = stub.FitClv(requests[0], timeout=60)
        assert [f.model for f in response.fits] == ["bgnbd", "gamma_gamma"]
        assert response.fits[0].estimates[0] == pytest.approx(0.267, rel=1e-2)
        assert response.summary["prediction_horizon"]["length"] == 39
        assert response.customers.WhichOneof("data") == "columns"
    elif method == "FitResponse":
        response = stub.FitResponse(requests[0], timeout=30)
        fitted = {(c.curve.segment, c.curve.kind): c for c in response.curves}
        assert len(fitted) == 2
        retention = fitted[("core", 1)]  # KIND_RETENTION
        assert 0 < retention.curve.base < retention.curve.ceiling < 1
        assert len(retention.curve.covariance) == 9
        assert set(retention.standard_errors) == {"base", "ceiling", "k"}
    else:
        response = stub.Frontier(requests[0], timeout=30)
        assert response.points.WhichOneof("data") == "columns"  # as the request's tables
        assert len(response.points.columns.columns[0].doubles.values) > 2
        assert 0 < response.summary["chosen_budget"] <= 40  # at most the plan's budget
