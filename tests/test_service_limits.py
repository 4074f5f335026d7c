"""Each limit of the service: passing it is RESOURCE_EXHAUSTED with a QuotaFailure naming
it (the Python client raises ``LimitExceededError`` with ``.limit``), and every limit is a
``ServerConfig`` field and an ``equity serve`` flag with a finite default."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import numpy as np
import polars as pl
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from service_plugins import Record, SpinState, test_registry

from engine.cli import build_parser
from engine.cli.service import config_from_args
from engine.errors import LimitExceededError
from engine.limits import Limits
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.plugins import Registry
from engine.portfolio import Portfolio
from engine.service import wire
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.service.status import error_from_status, status_from_error
from engine.synthetic import customers as make_customers
from tests.servers import connected, running, wait_until

CONFIG = ServerConfig(
    port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1, small_solve_rows=500,
    max_rows=3_000, max_solve_seconds=30.0,
    limits=Limits(max_units=2_500, max_levels_per_unit=32, max_segment_limits=5,
                  solver_seconds=7.0),
    queue_timeout=0.6, max_metrics=3,
)
CUSTOMERS = make_customers(1_000, seed=3)  # > small_solve_rows: takes a solve slot
PLAN = Plan(total_budget=500.0)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return test_registry()


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[EquityServer]:
    yield from running(CONFIG, registry)


@pytest.fixture(scope="module")
def client(server: EquityServer) -> Iterator[Client]:
    yield from connected(server, timeout=20.0)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SpinState.reset()


def _spin(plan: Plan = PLAN) -> Plan:
    return replace(plan, allocation=StrategyChoice("spin"))


def quota_subject(err: grpc.RpcError) -> str:
    """RESOURCE_EXHAUSTED with a QuotaFailure detail: the limit it names."""
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        quota = error_details_pb2.QuotaFailure()
        if detail.Is(quota.DESCRIPTOR):
            detail.Unpack(quota)
            return str(quota.violations[0].subject)
    raise AssertionError("no QuotaFailure detail")


# --- size limits ----------------------------------------------------------------------------


def test_customers_per_request(client: Client) -> None:
    with pytest.raises(LimitExceededError) as err:
        client.allocate(make_customers(3_001), PLAN)
    assert (err.value.limit, err.value.value, err.value.maximum) == ("max_rows", 3_001, 3_000)
    with pytest.raises(LimitExceededError) as err:  # counted across the batches of a stream
        client.stream(make_customers(3_001), PLAN, batch_rows=1_000)
    assert err.value.limit == "max_rows"
    request = client.allocate_request(make_customers(3_001), PLAN)
    with pytest.raises(grpc.RpcError) as raw:
        client.stub.Allocate(request)
    assert quota_subject(raw.value) == "max_rows"
    assert "max_rows: 3001 exceeds the limit of 3000" in (raw.value.details() or "")


def test_units_per_allocation(client: Client) -> None:
    pools = pl.DataFrame({"segment": [f"p{i}" for i in range(600)], "prospects": 10.0,
                          "acquisition_ceiling": 0.2, "acquisition_response": 0.1,
                          "margin": 30.0, "retention": 0.6})
    with pytest.raises(LimitExceededError) as err:  # 2,000 customers + 600 pools > 2,500
        client.allocate(Portfolio(make_customers(2_000), pools), PLAN)
    assert (err.value.limit, err.value.value) == ("max_units", 2_600)


def test_levels_per_customer_in_the_plan(client: Client) -> None:
    plan = replace(PLAN, retention_levels=tuple(float(i) for i in range(33)))
    with pytest.raises(LimitExceededError) as err:
        client.allocate(CUSTOMERS.head(50), plan)
    assert (err.value.limit, err.value.value, err.value.maximum) == (
        "max_levels_per_unit", 33, 32)


def test_a_million_levels_for_one_customer_are_refused_before_any_work(
    registry: Registry,
) -> None:
    n = 1_000_000
    options = pl.DataFrame({"customer_id": np.zeros(n, dtype=np.int64).astype(str),
                            "level": np.arange(n, dtype=np.float64),
                            "cost": np.arange(n, dtype=np.float64), "value": np.zeros(n)})
    config = replace(CONFIG, max_rows=2_000_000, max_message_bytes=64 << 20)
    with EquityServer(config, registry) as srv, Client(srv.address, timeout=30) as client:
        plan = replace(PLAN, cost=StrategyChoice("spend-table"))
        started = time.perf_counter()
        with pytest.raises(LimitExceededError) as err:
            client.stream(Portfolio(options=options), plan, batch_rows=250_000)
        assert (err.value.limit, err.value.value) == ("max_levels_per_unit", n)
        assert time.perf_counter() - started < 10


def test_segment_limits_per_plan(client: Client) -> None:
    plan = replace(PLAN, segment_limits=tuple(SegmentLimit("core", cap=float(i))
                                              for i in range(6)))
    with pytest.raises(LimitExceededError) as err:
        client.allocate(CUSTOMERS.head(50), plan)
    assert err.value.limit == "max_segment_limits"


def test_metrics_per_score_call(client: Client) -> None:
    assert client.score(CUSTOMERS.head(5), metrics=["clv"] * 3).height == 5
    with pytest.raises(LimitExceededError) as err:
        client.score(CUSTOMERS.head(5), metrics=["clv"] * 4)
    assert (err.value.limit, err.value.value, err.value.maximum) == ("max_metrics", 4, 3)


def test_message_size_both_ways(registry: Registry) -> None:
    customers = CUSTOMERS.select("customer_id", "segment", "margin", "retention")
    plan = Plan(total_budget=100.0)
    request_bytes = Client("unused").allocate_request(customers, plan).ByteSize()
    config = replace(CONFIG, max_message_bytes=request_bytes + 2_000)  # the answer is larger
    with EquityServer(config, registry) as srv, Client(srv.address, timeout=20) as client:
        with pytest.raises(grpc.RpcError) as raw:  # the response would not fit
            client.stub.Allocate(client.allocate_request(customers, plan))
        assert quota_subject(raw.value) == "max_message_bytes"
        bigger = CUSTOMERS.head(1_000)
        with pytest.raises(LimitExceededError) as err:  # the request does not fit: gRPC's
            client.allocate(bigger, plan)              # transport refuses it, named by us
        assert err.value.limit == "max_message_bytes"
        assert err.value.maximum == config.max_message_bytes
        assert client.health() == "SERVING"
        streamed = client.stream(customers, plan, batch_rows=200)  # streams are not bounded
        assert streamed.units.height == customers.height


# --- concurrency and time -------------------------------------------------------------------


def test_concurrent_solves_and_the_queue(client: Client, server: EquityServer) -> None:
    """One solve runs (max_concurrent_solves=1), one waits (max_queued_solves=1), the third
    is refused; a solve that waits longer than queue_timeout is refused too."""
    running = client.submit(CUSTOMERS, _spin(), timeout=20)
    try:
        assert SpinState.started.wait(5)
        queued = client.submit(CUSTOMERS, _spin(), timeout=20)
        time.sleep(0.1)
        with pytest.raises(LimitExceededError) as err:
            client.allocate(CUSTOMERS, PLAN, timeout=5)
        assert err.value.limit == "max_queued_solves"
        with pytest.raises(LimitExceededError) as err:  # waited 0.6 s for the slot
            queued.result()
        assert err.value.limit == "queue_timeout"
        assert SpinState.most_running == 1 and server.active_solves == 1
        assert client.allocate(CUSTOMERS.head(100), PLAN).summary["customers"] == 100  # small
    finally:
        running.cancel()
    assert SpinState.stopped.wait(5)
    assert wait_until(lambda: server.active_solves == 0)


def test_solve_time_per_request(registry: Registry) -> None:
    config = replace(CONFIG, max_solve_seconds=0.4)
    with EquityServer(config, registry) as srv, Client(srv.address, timeout=20) as client:
        started = time.monotonic()
        with pytest.raises(LimitExceededError) as err:
            client.allocate(CUSTOMERS, _spin())
        took = time.monotonic() - started
        assert err.value.limit == "max_solve_seconds" and err.value.maximum == 0.4
        assert 0.4 <= err.value.value < 2 and took < 3
        assert SpinState.stopped.wait(5), "the solve was not stopped"
        assert wait_until(lambda: srv.active_solves == 0)
        # Each solver call gets the tighter of solver_seconds and the request's budget.
        Record.time_limits.clear()
        client.allocate(CUSTOMERS.head(50), replace(PLAN, allocation=StrategyChoice("record")))
        assert Record.time_limits == [0.4]


def test_solver_seconds_reach_the_allocator(client: Client) -> None:
    Record.time_limits.clear()
    client.allocate(CUSTOMERS.head(50), replace(PLAN, allocation=StrategyChoice("record")))
    assert Record.time_limits == [7.0]


def test_calls_in_flight(registry: Registry) -> None:
    """Past max_concurrent_rpcs gRPC itself refuses the call (RESOURCE_EXHAUSTED)."""
    config = replace(CONFIG, workers=4, max_concurrent_rpcs=4, small_solve_rows=10_000)
    with EquityServer(config, registry) as srv, Client(srv.address, timeout=20) as client:
        calls = [client.submit(CUSTOMERS.head(20), _spin()) for _ in range(4)]
        try:
            assert wait_until(lambda: srv.active_solves == 4)
            with pytest.raises(grpc.RpcError) as raw:
                client.stub.ListPlugins(wire.service_pb2.ListPluginsRequest(), timeout=5)
            assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            for call in calls:
                call.cancel()
        assert wait_until(lambda: srv.active_solves == 0)
        assert client.list_plugins()["strategies"]


# --- configuration --------------------------------------------------------------------------


def _serve_config(*flags: str) -> ServerConfig:
    args = build_parser().parse_args(["serve", *flags])
    return config_from_args(args)


def test_every_limit_is_a_serve_flag() -> None:
    config = _serve_config(
        "--max-message-mb", "8", "--max-rows", "1000", "--max-units", "900", "--max-levels",
        "12", "--max-concurrent-solves", "3", "--max-queued-solves", "4", "--queue-timeout",
        "5", "--solver-seconds", "9", "--max-solve-seconds", "20", "--max-concurrent-rpcs",
        "99", "--max-metrics", "2", "--small-solve-rows", "50",
    )
    assert config.max_message_bytes == 8 << 20
    assert (config.max_rows, config.limits.max_units, config.limits.max_levels_per_unit) == (
        1000, 900, 12)
    assert (config.max_concurrent_solves, config.max_queued_solves, config.queue_timeout) == (
        3, 4, 5.0)
    assert (config.limits.solver_seconds, config.max_solve_seconds) == (9.0, 20.0)
    assert (config.max_concurrent_rpcs, config.max_metrics, config.small_solve_rows) == (
        99, 2, 50)
    assert config.workers == 3 + 4 + 6
    assert _serve_config("--max-solve-seconds", "0").max_solve_seconds is None
    assert _serve_config().isolate_solves
    assert not _serve_config("--in-process-solves").isolate_solves


def test_defaults_are_finite() -> None:
    config = _serve_config()
    assert config == replace(ServerConfig(), workers=config.workers)
    for value in (config.max_message_bytes, config.max_rows, config.max_solve_seconds,
                  config.max_concurrent_rpcs, config.limits.solver_seconds,
                  config.limits.max_units, config.limits.max_levels_per_unit,
                  config.max_concurrent_solves, config.max_queued_solves, config.queue_timeout):
        assert value is not None and math.isfinite(value) and value > 0
    assert config.host == "127.0.0.1" and config.tls is None and not config.insecure


def test_bad_limit_values_are_refused() -> None:
    with pytest.raises(SystemExit, match="max_solve_seconds"):
        _serve_config("--max-solve-seconds", "-1")
    with pytest.raises(SystemExit, match="max_concurrent_rpcs"):
        _serve_config("--max-concurrent-rpcs", "3")
    with pytest.raises(SystemExit, match="max_metrics"):
        _serve_config("--max-metrics", "0")


def test_limit_errors_travel_with_their_numbers() -> None:
    status = status_from_error(LimitExceededError("max_rows", 11, 10))
    back = error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message,
                             status.details)
    assert isinstance(back, LimitExceededError)
    assert (back.limit, back.value, back.maximum) == ("max_rows", 11, 10)
    transport = error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  "Received message larger than max (200 vs. 100)")
    assert isinstance(transport, LimitExceededError)
    assert (transport.limit, transport.value, transport.maximum) == (
        "max_message_bytes", 200, 100)
