"""Solve workers run at a lower OS priority than the server (``worker_nice``, ``equity
serve --worker-nice``), so the server's own process (health checks, small calls, streaming
I/O) gets the cores first while large solves run; a replaced worker keeps the setting and
the server keeps its own priority. Over loopback gRPC against a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from engine.plan import Plan
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers as make_customers
from tests.servers import connected, running

CUSTOMERS = make_customers(1_000, seed=5)  # > small_solve_rows: solved in a worker
PLAN = Plan(total_budget=500.0)
NICE = 7  # not the default, so the configured value is what the workers get


def _nice(pid: int) -> int:
    """A process's niceness, read from /proc (field 19 of ``stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        after_name = f.read().rsplit(")", 1)[1].split()
    return int(after_name[16])


def _config(nice: int) -> ServerConfig:
    return ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=1,
                        small_solve_rows=100, worker_nice=nice, grace=1.0)


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(_config(NICE))


def test_workers_run_at_the_configured_niceness(server: EquityServer) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    for client in connected(server, timeout=120.0):
        assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"
        assert server.pool is not None
        pids = server.pool.pids()
        assert len(pids) == 1 and os.getpid() not in pids
        assert [_nice(p) for p in pids] == [min(own + NICE, 19)]
        assert os.getpriority(os.PRIO_PROCESS, pids[0]) == min(own + NICE, 19)
        # the server's process (this one) keeps its priority: health and small calls first
        assert os.getpriority(os.PRIO_PROCESS, 0) == own == _nice(os.getpid())
        # a replaced worker (after max_tasks, a crash or a kill) is niced the same way
        server.pool.max_tasks = 1
        assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"
        replaced = server.pool.pids()
        assert len(replaced) == 1 and replaced != pids
        assert [_nice(p) for p in replaced] == [min(own + NICE, 19)]
        assert _nice(os.getpid()) == own


def test_zero_keeps_the_servers_priority() -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    for server in running(_config(0)):
        for client in connected(server, timeout=120.0):
            assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"
        assert server.pool is not None and server.pool.pids()
        assert [_nice(p) for p in server.pool.pids()] == [own]


def test_niceness_is_checked() -> None:
    for bad in (-1, 20):
        with pytest.raises(ValueError, match="worker_nice must be in \\[0, 19\\]"):
            ServerConfig(port=0, worker_nice=bad)


def test_niceness_is_a_serve_flag() -> None:
    from engine.cli import build_parser
    from engine.cli.service import config_from_args

    args = build_parser().parse_args(["serve", "--worker-nice", "3"])
    assert config_from_args(args).worker_nice == 3
    assert config_from_args(build_parser().parse_args(["serve"])).worker_nice == 15
