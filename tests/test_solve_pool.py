"""Large solves in worker processes (engine.service.solve_pool): the same plans and errors as in
process, cancellation and deadlines relayed, a worker deaf to them killed, a crashed one
replaced, and the server's own process free for health checks meanwhile."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from service_plugins import PLUGIN_NAME, test_registry

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
from engine.portfolio import Portfolio
from engine.service.client import Client, DeadlineExceededError
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import running, wait_until

CONFIG = ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=1,
                      small_solve_rows=500, grace=1.0,
                      limits=replace(ServerConfig().limits, max_levels_per_unit=32))
CUSTOMERS = make_customers(2_000, seed=8)  # > small_solve_rows: solved in a worker
PLAN = Plan(total_budget=900.0)


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(CONFIG, registry_factory=test_registry)


@pytest.fixture(scope="module")
def client(server: EquityServer) -> Iterator[Client]:
    with Client(server.address, timeout=60.0) as c:
        c.allocate(CUSTOMERS, PLAN)  # the worker has started and imported the engine
        yield c


def _with(allocator: str, **params: Any) -> Plan:
    return replace(PLAN, allocation=StrategyChoice(allocator, params))


def _gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie waiting to be)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_the_plan_is_the_same_as_in_process(client: Client, server: EquityServer) -> None:
    assert server.pool is not None and len(server.pool.pids()) == 1
    assert os.getpid() not in server.pool.pids()
    remote = client.allocate(CUSTOMERS, PLAN)
    local = allocate(Portfolio(CUSTOMERS), PLAN, test_registry())
    assert_frame_equal(remote.units, local.units)
    assert remote.summary["equity_after"] == pytest.approx(local.summary["equity_after"],
                                                           rel=1e-9)


def test_errors_keep_their_fields_across_the_process_boundary(client: Client) -> None:
    bad = CUSTOMERS.with_columns(
        retention=pl.when(pl.int_range(pl.len()) == 17).then(1.5).otherwise("retention"))
    with pytest.raises(InvalidInputError) as err:
        client.allocate(bad, PLAN)
    assert (err.value.violations[0].field, err.value.violations[0].row) == (
        "customers.retention", 17)
    with pytest.raises(PluginError) as perr:
        client.allocate(CUSTOMERS, _with("boom"))
    assert perr.value.plugin == PLUGIN_NAME and "boom inside" in perr.value.problem
    with pytest.raises(InfeasiblePlanError) as ierr:
        client.allocate(CUSTOMERS, replace(PLAN, total_budget=10.0, segment_limits=(
            SegmentLimit("core", minimum=500.0),)))
    assert "minimum:core" in ierr.value.constraints
    with pytest.raises(LimitExceededError) as lerr:
        client.allocate(CUSTOMERS, replace(PLAN, retention_levels=tuple(map(float, range(40)))))
    assert lerr.value.limit == "max_levels_per_unit"


def test_cancel_and_deadline_reach_the_worker(client: Client, server: EquityServer) -> None:
    pending = client.submit(CUSTOMERS, _with("spin"))
    assert wait_until(lambda: server.active_solves == 1, timeout=10)
    pending.cancel()
    assert wait_until(lambda: server.active_solves == 0, timeout=3)
    with pytest.raises(CancelledError):
        pending.result()
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        client.allocate(CUSTOMERS, _with("spin"), timeout=0.5)
    assert time.monotonic() - started < 2
    assert wait_until(lambda: server.active_solves == 0, timeout=3)
    assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"


def test_a_worker_deaf_to_the_stop_signal_is_killed(client: Client, server: EquityServer,
                                                    tmp_path: Path) -> None:
    assert server.pool is not None
    server.pool.kill_after = 0.5
    before = server.pool.pids()
    started = tmp_path / "stubborn-started"
    pending = client.submit(CUSTOMERS, _with("stubborn", seconds=60.0,
                                             started_file=str(started)))
    assert wait_until(lambda: server.active_solves == 1, timeout=10)
    # cancelled inside the deaf loop: before it, the worker stops cooperatively (and stays)
    assert wait_until(started.exists, timeout=60)
    t0 = time.monotonic()
    assert client.health(timeout=1) == "SERVING"  # its busy loop holds another GIL
    assert client.allocate(CUSTOMERS.head(100), PLAN, timeout=5).units.height == 100
    assert time.monotonic() - t0 < 2, "the server's own process was held up"
    pending.cancel()
    assert wait_until(lambda: server.active_solves == 0, timeout=5)
    assert wait_until(lambda: server.pool is not None and server.pool.pids() != before, timeout=10)
    assert all(wait_until(functools.partial(_gone, pid), timeout=10) for pid in before)
    assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"


def test_a_crashed_worker_is_replaced(client: Client, server: EquityServer) -> None:
    assert server.pool is not None
    before = server.pool.pids()
    with pytest.raises(SolverError) as err:
        client.allocate(CUSTOMERS, _with("crash"))
    assert "worker died" in str(err.value)
    assert server.pool.pids() != before
    assert client.health() == "SERVING"
    assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"


def test_solve_time_budget_in_a_worker(server: EquityServer) -> None:
    config = replace(CONFIG, max_solve_seconds=0.5)
    with EquityServer(config, registry_factory=test_registry) as srv, \
            Client(srv.address, timeout=30) as client:
        with pytest.raises(LimitExceededError) as err:
            client.allocate(CUSTOMERS, _with("spin"))
        assert err.value.limit == "max_solve_seconds"
        assert srv.pool is not None
        pids = srv.pool.pids()
    assert all(wait_until(functools.partial(_gone, pid), timeout=10) for pid in pids)
