"""Plan.uncertainty_draws over a real loopback server: the Allocate summary carries the
interval, in the server's own process and in a solve worker, equal to the in-process one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from engine.plan import Plan, StrategyChoice
from engine.planning.uncertainty import allocate_with_uncertainty
from engine.portfolio import Portfolio
from engine.response.files import read_curves
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import example
from tests.servers import running

CURVES = Path(__file__).parent / "data" / "experiments.csv"


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(
        ServerConfig(port=0, small_solve_rows=500, small_solve_cells=5_000), grace=1.0
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    from engine.cli import main

    path = tmp_path_factory.mktemp("curves") / "curves.json"
    assert main(["fit-response", "--experiments", str(CURVES), "--output", str(path)]) == 0
    _, _, plan = example(100)
    return plan.with_overrides(response_curves=read_curves(path), total_budget=3000.0,
                               uncertainty_draws=40, uncertainty_seed=9)


@pytest.mark.parametrize("size", [200, 1500])  # in the server; in a solve worker
def test_the_summary_carries_the_interval_of_the_in_process_draws(
        server: EquityServer, fitted: Plan, size: int) -> None:
    customers, prospects, _ = example(size)
    portfolio = Portfolio(customers, prospects)
    local = allocate_with_uncertainty(portfolio, fitted).summary
    with Client(server.address, timeout=120.0) as client:
        remote = client.allocate(portfolio, fitted).summary
    assert remote.uncertainty_draws == 40
    assert remote.equity_gain_interval == pytest.approx(local.equity_gain_interval, rel=1e-9)
    assert remote.probability_beats_nothing == local.probability_beats_nothing
    band = remote.equity_gain_interval
    assert band["p5"] < band["p50"] < band["p95"]
    plain = fitted.with_overrides(uncertainty_draws=0)
    with Client(server.address, timeout=120.0) as client:
        assert client.allocate(portfolio, plain).summary.equity_gain_interval == {}


def _bad_request(exc: grpc.RpcError) -> list[tuple[str, str]]:
    status = status_pb2.Status.FromString(dict(exc.trailing_metadata())["grpc-status-details-bin"])
    detail = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Unpack(detail))
    return [(v.field, v.description) for v in detail.field_violations]


def test_draws_the_plan_cannot_take_are_invalid_arguments(server: EquityServer,
                                                         fitted: Plan) -> None:
    customers, prospects, _ = example(100)
    portfolio = Portfolio(customers, prospects)
    spend_table = fitted.with_overrides(cost=StrategyChoice("segment-spend-table"))
    with Client(server.address, timeout=60.0) as client:
        too_many = client.allocate_request(portfolio, fitted)
        too_many.plan.uncertainty_draws = 20_000  # past the plan's own check
        for request, words in ((too_many, "must be between 0 and 10,000"),
                               (client.allocate_request(portfolio, spend_table),
                                "needs a response-curve cost strategy")):
            with pytest.raises(grpc.RpcError) as info:
                client.stub.Allocate(request, timeout=60.0)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            [(field, description)] = _bad_request(info.value)
            assert field == "plan.uncertainty_draws" and words in description
