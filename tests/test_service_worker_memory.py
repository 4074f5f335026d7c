"""A memory cap per solve worker (``worker_memory_mib``, RLIMIT_AS): a solve that needs
more is RESOURCE_EXHAUSTED naming the cap, whether Python sees the failed allocation
(MemoryError) or native code aborts on it; the worker is replaced and the next solve
runs; solves within the cap are untouched. Over loopback gRPC against a real server."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest

from engine.allocation import Allocation
from engine.errors import LimitExceededError
from engine.hookspecs import hookimpl
from engine.plan import Plan, StrategyChoice
from engine.plugins import Registry, build_registry
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.strategies import Allocator, Param, Problem
from engine.synthetic import customers as make_customers
from tests.servers import connected, running

CAP_MIB = 512
CUSTOMERS = make_customers(1_000, seed=3)  # > small_solve_rows: solved in a worker
PLAN = Plan(total_budget=500.0)


class Hog(Allocator):
    """Takes ``mib`` MiB (numpy, touched), then every unit's cheapest level."""

    name = "hog"
    params: ClassVar = {"mib": Param(16, "MiB to take.", int, minimum=0)}
    mib: int

    def allocate(self, problem: Problem) -> Any:
        block = np.ones(self.mib * 1024 * 1024 // 8)
        assert block.sum() > 0 or self.mib == 0
        return Allocation.single(problem.options.baseline, "feasible", self.name)


class NativeHog(Allocator):
    """Takes ``mib`` MiB in polars (Rust aborts the process when the allocation fails)."""

    name = "native-hog"
    params: ClassVar = {"mib": Param(16, "MiB to take.", int, minimum=0)}
    mib: int

    def allocate(self, problem: Problem) -> Any:
        column = pl.repeat(1.0, self.mib * 1024 * 1024 // 8, eager=True)
        assert column.len() >= 0
        return Allocation.single(problem.options.baseline, "feasible", self.name)


@hookimpl
def register_allocators(register: Callable[[type[Allocator]], None]) -> None:
    register(Hog)
    register(NativeHog)


def hog_registry() -> Registry:
    plugins = types.SimpleNamespace(__name__="memory-test-plugins",
                                    register_allocators=register_allocators)
    return build_registry(extra=[plugins], entry_points=False)


hog_registry.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=1,
                          small_solve_rows=100, worker_memory_mib=CAP_MIB, grace=1.0)
    yield from running(config, registry_factory=hog_registry)


@pytest.fixture(scope="module")
def client(server: EquityServer) -> Iterator[Client]:
    yield from connected(server, timeout=120.0)


def _hog(name: str, mib: int) -> Plan:
    return replace(PLAN, allocation=StrategyChoice(name, {"mib": mib}))


def test_a_solve_within_the_cap_runs(client: Client, server: EquityServer) -> None:
    result = client.allocate(CUSTOMERS, PLAN)
    assert result.summary["status"] == "optimal"
    assert client.allocate(CUSTOMERS, _hog("hog", CAP_MIB // 4)).summary["status"] == "feasible"
    assert server.pool is not None and len(server.pool.pids()) == 1


@pytest.mark.parametrize("name", ["hog", "native-hog"])
def test_a_solve_over_the_cap_is_resource_exhausted(
    client: Client, server: EquityServer, name: str
) -> None:
    client.allocate(CUSTOMERS, PLAN)
    assert server.pool is not None
    before = server.pool.pids()
    with pytest.raises(LimitExceededError) as err:
        client.allocate(CUSTOMERS, _hog(name, 4 * CAP_MIB))
    assert err.value.limit == "worker_memory_mib"
    assert err.value.maximum == CAP_MIB
    assert "worker_memory_mib" in str(err.value)
    # the worker was replaced and the next solve runs
    again = client.allocate(CUSTOMERS, PLAN)
    assert again.summary["status"] == "optimal"
    assert server.pool.pids() and server.pool.pids() != before


def test_the_cap_must_leave_room_to_work() -> None:
    with pytest.raises(ValueError, match="worker_memory_mib must be >= 64"):
        ServerConfig(port=0, worker_memory_mib=10)


def test_the_cap_is_a_serve_flag() -> None:
    from engine.cli import build_parser
    from engine.cli.service import config_from_args

    args = build_parser().parse_args(["serve", "--worker-memory-mib", "300"])
    assert config_from_args(args).worker_memory_mib == 300
    assert config_from_args(build_parser().parse_args(["serve"])).worker_memory_mib is None
