"""A cancelled solve stops inside HiGHS, in its worker process, within moments: the worker
is told, HiGHS is interrupted between iterations, and the same worker takes the next
solve (no kill, no restart)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from highs_plugins import long_lp_registry

from engine.plan import Plan, StrategyChoice
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running

CONFIG = ServerConfig(port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1,
                      small_solve_rows=100, grace=1.0)
CUSTOMERS = make_customers(500, seed=5)  # > small_solve_rows: solved in a worker


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(CONFIG, registry_factory=long_lp_registry)


def _until(condition: object, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def test_a_cancelled_solve_stops_in_highs_and_the_worker_stays(server: EquityServer) -> None:
    assert server.pool is not None
    server.pool.kill_after = 10.0  # a worker that does not stop on its own would show
    with Client(server.address, timeout=60) as client:
        client.allocate(CUSTOMERS, Plan(total_budget=100.0))  # the worker is up
        [pid] = server.pool.pids()
        plan = Plan(total_budget=100.0, allocation=StrategyChoice("long-lp"))
        future = client.stub.Allocate.future(client.allocate_request(CUSTOMERS, plan),
                                             timeout=60)
        assert _until(lambda: server.active_solves == 1, 10) is not None
        time.sleep(2.0)  # well inside HiGHS (about 20 s of work when left alone)
        assert future.cancel()
        stopped = _until(lambda: server.active_solves == 0, 10)
        assert stopped is not None and stopped < 1.5, stopped
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        assert server.pool.pids() == [pid]  # the same worker: not killed, not restarted
        again = client.allocate(CUSTOMERS, Plan(total_budget=100.0))
        assert again.summary["customers"] == 500 and server.pool.pids() == [pid]

