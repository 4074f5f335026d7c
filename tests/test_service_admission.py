"""Admission of small requests: a request with few rows but many spend levels or many
segment limits is a large solve (a slot, a worker process), so no request runs in the
server's own process without a bound on its size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.plan import Plan, SegmentLimit
from engine.portfolio import Portfolio
from engine.service.admission import SolveGate
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running

GATE = SolveGate(ServerConfig())


def _caps(n: int) -> tuple[SegmentLimit, ...]:
    return tuple(SegmentLimit(segment=f"s{i}", cap=10.0) for i in range(n))


def test_small_means_few_rows_few_cells_and_few_segment_limits() -> None:
    small = Portfolio(customers=make_customers(100, seed=1))
    assert not GATE.is_large(small, Plan(total_budget=100.0))
    many_rows = Portfolio(customers=make_customers(10_001, seed=1))
    assert GATE.is_large(many_rows, Plan(total_budget=100.0))
    ten_k = Portfolio(customers=make_customers(10_000, seed=1))
    assert not GATE.is_large(ten_k, Plan(total_budget=100.0))
    assert GATE.is_large(ten_k, Plan(total_budget=100.0, segment_limits=_caps(2_000)))
    levels = tuple(float(i) for i in range(256))
    assert GATE.is_large(ten_k, Plan(total_budget=100.0, retention_levels=levels))
    few = Portfolio(customers=make_customers(300, seed=1))
    assert GATE.is_large(few, Plan(total_budget=100.0, retention_levels=levels,
                                   acquisition_levels=levels[:10]))
    assert not GATE.is_large(few, Plan(total_budget=100.0, segment_limits=_caps(100)))


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(
        port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1,
        grace=1.0,
    )
    yield from running(config, grace=1.0)


def test_few_rows_with_many_levels_solve_in_a_worker(server: EquityServer) -> None:
    assert server.pool is not None and server.pool.pids() == []
    levels = tuple(float(5 * i) for i in range(256))
    with Client(server.address, timeout=60) as client:
        client.allocate(make_customers(100, seed=2), Plan(total_budget=500.0))
        assert server.pool.pids() == []  # a small request: in the server's process
        result = client.allocate(make_customers(600, seed=2),
                                 Plan(total_budget=500.0, retention_levels=levels))
    assert result.summary["customers"] == 600
    assert len(server.pool.pids()) == 1  # 600 x 256 cells: a worker's
