"""A small request whose search runs long does not keep the server's process: past
``small_solve_seconds`` it is dropped there and solved again as a large solve, in a worker
(``EquityServicer._small_solve``); without a pool, or with the bound off, it stays."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from engine.errors import CancelledError
from engine.plan import Plan, StrategyChoice
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running, wait_until
from tests.service_plugins import test_registry

SLOW_HERE = Plan(total_budget=300.0, allocation=StrategyChoice("slow-here"))
GREEDY = Plan(total_budget=300.0, allocation=StrategyChoice("greedy"))


def _config(**changes: object) -> ServerConfig:
    base = dict(port=0, workers=6, max_concurrent_solves=1, max_queued_solves=1, grace=1.0,
                small_solve_seconds=0.3)
    return ServerConfig(**(base | changes))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(_config(), registry_factory=test_registry, grace=1.0)


def test_a_small_solve_past_its_seconds_is_solved_in_a_worker(server: EquityServer) -> None:
    customers = make_customers(60, seed=3)
    with Client(server.address, timeout=60) as client:
        assert server.pool is not None
        quick = client.allocate(customers, GREEDY)
        assert server.pool.pids() == []  # a small request: in the server's process
        started = time.monotonic()
        moved = client.allocate(customers, SLOW_HERE)
        seconds = time.monotonic() - started
    assert server.pool.pids() != []  # solved again in a worker
    assert 0.3 <= seconds < 20.0
    # the worker's answer (greedy there) is the plan greedy gives in the server's process
    assert moved.summary.equity_after == pytest.approx(quick.summary.equity_after, rel=1e-12)
    assert moved.units["level"].to_list() == quick.units["level"].to_list()


def test_a_cancelled_small_solve_is_not_solved_again(server: EquityServer) -> None:
    """A deadline that passes during the first attempt ends the call; no second attempt."""
    assert server.pool is not None
    tasks = sum(w.tasks for w in server.pool._all)
    with Client(server.address, timeout=60) as client, \
            pytest.raises((CancelledError, grpc.RpcError)) as err:
        client.allocate(make_customers(60, seed=4), SLOW_HERE, timeout=0.15)
    assert "DEADLINE" in repr(err.value).upper() or isinstance(err.value, CancelledError)
    assert wait_until(lambda: server.gate.running == 0)  # the first attempt stopped
    time.sleep(0.5)  # past small_solve_seconds: a second attempt would have started
    assert sum(w.tasks for w in server.pool._all) == tasks


@pytest.mark.parametrize("changes", [{"small_solve_seconds": None},
                                     {"isolate_solves": False}])
def test_without_the_bound_or_a_pool_the_small_solve_stays(
        changes: dict[str, object]) -> None:
    """Bound off, or no workers: the solve runs in the server's process until the call's
    own deadline."""
    for server in running(_config(**changes), registry_factory=test_registry, grace=1.0):
        with Client(server.address, timeout=60) as client, \
                pytest.raises((CancelledError, grpc.RpcError)):
            client.allocate(make_customers(60, seed=5), SLOW_HERE, timeout=1.0)
        assert server.pool is None or server.pool.pids() == []
