"""The gRPC service end to end: a real server on a free loopback port, a real channel.

Long solves come from a test-only allocator (``spin``) that works until ``should_stop()``
says so, which is how the tests see the server stop working on a cancelled call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import polars as pl
import pytest
from equity_plugins.metrics import CustomerLifetimeValue
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from polars.testing import assert_frame_equal, assert_series_equal
from service_plugins import Slow, SpinState, test_registry

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2
from engine.errors import (
    CancelledError,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
    PluginError,
    SolverError,
)
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.plugins import Registry
from engine.portfolio import Portfolio
from engine.service import wire
from engine.service.client import Client, DeadlineExceededError, ServiceError
from engine.service.server import SERVICE_NAME, EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from engine.synthetic import example
from tests.servers import connected, running, wait_until

# --- fixtures -------------------------------------------------------------------------------

CONFIG = ServerConfig(
    port=0,
    workers=6,
    max_concurrent_solves=1,
    max_queued_solves=1,
    small_solve_rows=1_000,
    max_rows=20_000,
    grace=2.0,
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return test_registry()


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[EquityServer]:
    yield from running(CONFIG, registry, grace=1.0)


@pytest.fixture(scope="module")
def client(server: EquityServer) -> Iterator[Client]:
    yield from connected(server, timeout=20.0)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame, Plan]:
    return example(2_000)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SpinState.reset()


def _plan(plan: Plan, allocator: str) -> Plan:
    return replace(plan, allocation=StrategyChoice(allocator), segment_limits=())


def _approx(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative, recursively through dicts and lists."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_approx(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_approx(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-9, abs=1e-9))
    return bool(a == b)


# --- every RPC ------------------------------------------------------------------------------


def test_allocate_matches_the_engine(client: Client, data: Any, registry: Registry) -> None:
    customers, prospects, plan = data
    local = allocate(Portfolio(customers, prospects), plan, registry)
    remote = client.allocate(Portfolio(customers, prospects), plan)
    assert_frame_equal(remote.units, local.units)
    expected = json.loads(local.to_json())  # JSON-ready: undefined figures are None
    assert remote.summary.keys() == expected.keys()
    for key in expected.keys() - {"seconds"}:  # group sums may differ in the last bits
        assert _approx(remote.summary[key], expected[key]), key
    assert remote.summary["seconds"].keys() == expected["seconds"].keys()
    assert remote.summary["status"] == "optimal"


def test_allocate_with_packed_columns(server: EquityServer, data: Any) -> None:
    customers, prospects, plan = data
    with Client(server.address, table_format="columns") as columns_client:
        request = columns_client.allocate_request(Portfolio(customers, prospects), plan)
        assert request.portfolio.customers.WhichOneof("data") == "columns"
        result = columns_client.allocate(Portfolio(customers, prospects), plan)
    arrow = Client(server.address).allocate(Portfolio(customers, prospects), plan)
    assert_frame_equal(result.units, arrow.units)
    assert result.summary["equity_after"] == arrow.summary["equity_after"]


def test_stream_in_several_batches(client: Client, data: Any, registry: Registry) -> None:
    customers, prospects, plan = data
    requests = list(client.stream_requests(Portfolio(customers, prospects), plan, batch_rows=300))
    assert requests[0].WhichOneof("item") == "header"
    assert len(requests) == 1 + 7  # 2,000 customers in batches of 300
    seen: list[int] = []
    result = client.stream(Portfolio(customers, prospects), plan, batch_rows=300,
                           response_batch_rows=500, on_batch=lambda b: seen.append(b.height))
    assert seen == [500, 500, 500, 500, 5]  # 2,000 customers and 5 pools, then the summary
    full = client.stream(Portfolio(customers, prospects), plan, batch_rows=300)
    local = allocate(Portfolio(customers, prospects), plan, registry)
    assert_frame_equal(full.units, local.units)
    assert result.summary["equity_after"] == pytest.approx(local.summary["equity_after"])


def test_score_clv_and_roc(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    scores = client.score(customers, plan)
    assert scores.columns == ["customer_id", "clv"]
    expected = CustomerLifetimeValue().compute(customers, plan.valuation)["clv"]
    assert_series_equal(scores["clv"], expected)
    units = client.allocate(Portfolio(customers, prospects), plan).units
    roc = client.score(units, plan, metrics=["roc"])
    assert roc.columns == ["customer_id", "pool", "roc"] and roc.height == units.height


def test_list_plugins(client: Client, registry: Registry) -> None:
    listed = client.list_plugins()
    assert listed["strategies"] == registry.describe()
    names = {(s["kind"], s["name"]) for s in listed["strategies"]}
    assert {("allocation", "lp"), ("metric", "clv"), ("allocation", "spin")} <= names
    lp = next(s for s in listed["strategies"] if s["name"] == "lp")
    assert lp["parameters"]["solver"]["choices"] == ["auto", "highs", "cbc"]


def test_reflection_lists_the_service(server: EquityServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        methods = {m.name for m in pool.FindServiceByName(SERVICE_NAME).methods}
    assert methods == {"Allocate", "AllocateStream", "Score", "ListPlugins", "Frontier",
                       "FitResponse", "FitClv"}


def test_health_serving(client: Client) -> None:
    assert client.health() == "SERVING"
    assert client.health(SERVICE_NAME) == "SERVING"


# --- errors: each class decoded by the client -----------------------------------------------


def test_invalid_input_names_field_and_row(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    bad = customers.with_columns(
        retention=pl.when(pl.int_range(pl.len()) == 17).then(1.5).otherwise(pl.col("retention"))
    )
    with pytest.raises(InvalidInputError) as err:
        client.allocate(Portfolio(bad, prospects), plan)
    assert err.value.violations[0].field == "customers.retention"
    assert err.value.violations[0].row == 17
    assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_invalid_plan_lists_every_field(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    request = client.allocate_request(Portfolio(customers, prospects), plan)
    request.plan.budget.total = -1.0
    request.plan.discount_rate = float("nan")
    with pytest.raises(grpc.RpcError) as raw:
        client.stub.Allocate(request)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from engine.service.client import _error

    exc = _error(raw.value)
    assert isinstance(exc, InvalidInputError)
    fields = {v.field for v in exc.violations}
    assert {"plan.budget.total", "plan.discount_rate"} <= fields
    assert all(v.row is None for v in exc.violations)


def test_stream_error_rows_count_across_batches(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    bad = customers.with_columns(
        margin=pl.when(pl.int_range(pl.len()) == 1_234).then(float("inf")).otherwise("margin")
    )
    with pytest.raises(InvalidInputError) as err:
        client.stream(Portfolio(bad, prospects), plan, batch_rows=500)
    first = err.value.violations[0]
    assert (first.field, first.row) == ("customers.margin", 1234)


def test_stream_must_start_with_header(client: Client, data: Any) -> None:
    customers, _, _ = data
    batch = service_pb2.AllocateStreamRequest(
        batch=portfolio_pb2.Portfolio(customers=wire.encode_table(customers.head(5)))
    )
    with pytest.raises(grpc.RpcError) as err:
        list(client.stub.AllocateStream(iter([batch])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_score_unknown_metric(client: Client, data: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        client.score(data[0], metrics=["clv", "nope"])
    assert err.value.violations[0].field == "metrics[1]"


def test_infeasible_plan(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    impossible = replace(plan, total_budget=100.0, acquisition_budget=None,
                         segment_limits=(SegmentLimit("new", minimum=5_000.0),))
    with pytest.raises(InfeasiblePlanError) as err:
        client.allocate(Portfolio(customers, prospects), impossible)
    assert "minimum:new" in err.value.constraints
    assert "cannot be met" in err.value.reason


def test_limit_exceeded_names_the_limit(client: Client, data: Any) -> None:
    with pytest.raises(LimitExceededError) as err:
        client.allocate(Portfolio(make_customers(20_001)), data[2])
    assert (err.value.limit, err.value.value, err.value.maximum) == ("max_rows", 20_001, 20_000)
    with pytest.raises(LimitExceededError) as err:
        client.stream(Portfolio(make_customers(20_001)), data[2], batch_rows=5_000)
    assert err.value.limit == "max_rows"


def test_plugin_error_names_the_plugin(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    with pytest.raises(PluginError) as err:
        client.allocate(Portfolio(customers, prospects), _plan(plan, "boom"))
    assert err.value.plugin == "service-test-plugins"
    assert "boom inside the plugin" in err.value.problem
    assert client.health() == "SERVING"


def test_solver_error(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    with pytest.raises(SolverError) as err:
        client.allocate(Portfolio(customers, prospects), _plan(plan, "give-up"))
    assert err.value.status == "time limit"


def test_internal_error_has_no_traceback(
    client: Client, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    customers, prospects, plan = data
    with (
        caplog.at_level(logging.ERROR, logger="engine.service.server"),
        pytest.raises(ServiceError) as err,
    ):
        client.allocate(Portfolio(customers, prospects), _plan(plan, "explode"))
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert "secret" not in str(err.value) and "Traceback" not in str(err.value)
    request_id = err.value.metadata["request_id"]
    assert request_id in str(err.value)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret internal detail" in str(logged[-1].exc_info[1])  # type: ignore[index]
    assert logged[-1].fields["request_id"] == request_id  # type: ignore[attr-defined]


# --- long solves: cancellation, deadlines, concurrency --------------------------------------


def test_client_cancel_stops_the_solve(client: Client, server: EquityServer, data: Any) -> None:
    customers, prospects, plan = data
    pending = client.submit(Portfolio(customers, prospects), _plan(plan, "spin"))
    assert SpinState.started.wait(5)
    assert server.active_solves == 1
    pending.cancel()
    assert SpinState.stopped.wait(5), "the server kept working on a cancelled call"
    assert wait_until(lambda: server.active_solves == 0)
    with pytest.raises(CancelledError):
        pending.result()


def test_deadline_stops_the_solve(client: Client, server: EquityServer, data: Any) -> None:
    customers, prospects, plan = data
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        client.allocate(Portfolio(customers, prospects), _plan(plan, "spin"), timeout=0.5)
    assert time.monotonic() - started < 3
    assert SpinState.stopped.wait(5), "the server kept working past the deadline"
    assert wait_until(lambda: server.active_solves == 0)


def test_stream_deadline_stops_the_solve(client: Client, data: Any) -> None:
    customers, prospects, plan = data
    with pytest.raises(DeadlineExceededError):
        client.stream(Portfolio(customers, prospects), _plan(plan, "spin"), batch_rows=500,
                      timeout=0.5)
    assert SpinState.stopped.wait(5)


def test_long_solve_blocks_neither_health_nor_small_requests(
    client: Client, server: EquityServer, data: Any
) -> None:
    customers, prospects, plan = data
    pending = client.submit(Portfolio(customers, prospects), _plan(plan, "spin"))
    try:
        assert SpinState.started.wait(5)
        t0 = time.monotonic()
        assert client.health(timeout=2) == "SERVING"
        assert client.list_plugins(timeout=2)["strategies"]
        assert client.score(customers.head(100), timeout=2).height == 100
        small = client.allocate(Portfolio(customers.head(200)), replace(plan, segment_limits=()),
                                timeout=5)  # <= small_solve_rows: needs no solve slot
        assert small.summary["customers"] == 200
        assert time.monotonic() - t0 < 3
        assert not SpinState.stopped.is_set()
        # The only slot is busy and one large call may queue: a third one is refused.
        queued = client.submit(Portfolio(customers, prospects), plan, timeout=10)
        deadline = time.monotonic() + 10  # the second call holds its place before the third
        while server.gate.admitted_count < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(LimitExceededError) as err:
            client.allocate(Portfolio(customers, prospects), plan, timeout=5)
        assert err.value.limit == "max_queued_solves"
    finally:
        pending.cancel()
    assert SpinState.stopped.wait(5)
    assert queued.result().summary["status"] == "optimal"  # ran once the slot was free


# --- shutdown -------------------------------------------------------------------------------


def test_shutdown_health_in_flight_and_refusal(registry: Registry, data: Any) -> None:
    customers, prospects, plan = data
    srv = EquityServer(replace(CONFIG, drain=0.3, grace=3.0), registry)
    srv.start()
    channel = grpc.insecure_channel(srv.address)
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
    )
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert next(watch).status == serving
    client = Client(srv.address, timeout=10)
    Slow.started.clear()
    slow = client.submit(Portfolio(customers, prospects), _plan(plan, "slow"))
    assert Slow.started.wait(5)
    stopper = threading.Thread(target=srv.stop)
    t0 = time.monotonic()
    stopper.start()
    assert next(watch).status == not_serving
    assert client.health(timeout=1) == "NOT_SERVING"  # during the drain period
    result = slow.result()  # in flight when shutdown began: finishes within the grace
    assert result.summary["allocator"] == "slow"
    stopper.join(10)
    assert not stopper.is_alive() and time.monotonic() - t0 < 3
    with pytest.raises(ServiceError) as err:
        client.health(timeout=1)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    client.close()
    channel.close()


def test_shutdown_cancels_solves_past_the_grace(registry: Registry, data: Any) -> None:
    customers, prospects, plan = data
    srv = EquityServer(replace(CONFIG, grace=0.3), registry)
    srv.start()
    with Client(srv.address, timeout=10) as client:
        pending = client.submit(Portfolio(customers, prospects), _plan(plan, "spin"))
        assert SpinState.started.wait(5)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 3
        assert SpinState.stopped.wait(5)
        assert srv.active_solves == 0
        with pytest.raises((CancelledError, ServiceError)):
            pending.result()


def test_config_keeps_threads_for_health() -> None:
    with pytest.raises(ValueError, match="workers"):
        ServerConfig(workers=4, max_concurrent_solves=2, max_queued_solves=2)
    assert ServerConfig(host="::1", port=1).target == "[::1]:1"


def test_message_size_limits(registry: Registry, data: Any) -> None:
    customers, _, plan = data
    slim = customers.select("customer_id", "segment", "margin", "retention")
    no_limits = replace(plan, segment_limits=())
    with Client("unused") as c:
        request_bytes = c.allocate_request(Portfolio(slim), no_limits).ByteSize()
        big_request = c.allocate_request(Portfolio(customers), no_limits).ByteSize()
    local = allocate(Portfolio(slim), no_limits, registry)
    response_bytes = wire.encode_table(local.units).ByteSize()
    assert request_bytes < response_bytes and request_bytes < big_request
    limit = min(response_bytes, big_request) - 1_000
    srv = EquityServer(replace(CONFIG, max_message_bytes=limit), registry)
    srv.start()
    try:
        with Client(srv.address, timeout=10) as client:
            with pytest.raises(LimitExceededError) as err:  # the answer would not fit
                client.allocate(Portfolio(slim), no_limits)
            assert err.value.limit == "max_message_bytes"
            with pytest.raises(LimitExceededError) as err:  # refused by gRPC's transport
                client.allocate(Portfolio(customers), no_limits)
            assert err.value.limit == "max_message_bytes"
            assert err.value.value == big_request and err.value.maximum == limit
            streamed = client.stream(Portfolio(customers), no_limits, batch_rows=500)
            assert streamed.units.height == customers.height  # streaming has no such limit
    finally:
        srv.stop(0)
