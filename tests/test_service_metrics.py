"""The opt-in Prometheus endpoint: request counts by method and status, latency and solve
histograms, gauges of calls in flight and queued solves, scraped over real HTTP."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest

from engine.cli import build_parser
from engine.cli.service import config_from_args
from engine.errors import InvalidInputError
from engine.plan import Plan
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(
        port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1,
        isolate_solves=False, metrics_port=0,
    )
    yield from running(config)


def _scrape(server: EquityServer) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                timeout=10) as reply:
        text = reply.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_calls_and_solves_are_counted_and_timed(server: EquityServer) -> None:
    with Client(server.address, timeout=30) as client:
        client.allocate(make_customers(40, seed=1), Plan(total_budget=50.0))
        client.allocate(make_customers(40, seed=2), Plan(total_budget=50.0))
        with pytest.raises(InvalidInputError):
            client.allocate(make_customers(40, seed=1), Plan(total_budget=-1.0))
        client.list_plugins()
    # a call is counted once gRPC has finished it, just after the client has its answer
    key = 'equity_request_seconds_count{method="ListPlugins"}'
    deadline = time.monotonic() + 10
    while (metrics := _scrape(server)).get(key) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics['equity_requests_total{code="OK",method="Allocate"}'] == 2
    assert metrics['equity_requests_total{code="INVALID_ARGUMENT",method="Allocate"}'] == 1
    assert metrics['equity_requests_total{code="OK",method="ListPlugins"}'] == 1
    assert metrics['equity_request_seconds_count{method="Allocate"}'] == 3
    assert metrics['equity_request_seconds_sum{method="Allocate"}'] > 0
    assert metrics['equity_solve_seconds_count{where="server"}'] == 2
    assert metrics['equity_request_seconds_bucket{le="600.0",method="Allocate"}'] == 3
    for gauge in ("equity_calls_in_flight", "equity_solves_running", "equity_solves_queued",
                  "equity_streams_receiving"):
        assert metrics[gauge] == 0


def test_metrics_are_off_unless_asked_for() -> None:
    args = build_parser().parse_args(["serve"])
    assert config_from_args(args).metrics_port is None
    srv = EquityServer(ServerConfig(port=0, isolate_solves=False))
    assert srv.metrics is None
    args = build_parser().parse_args(["serve", "--metrics-port", "9464"])
    assert config_from_args(args).metrics_port == 9464
