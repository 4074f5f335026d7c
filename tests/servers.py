"""Real servers on loopback for the service tests, and a real Dask LocalCluster for the
cluster tests: one way to start one, connect to it and stop it, so a test module states
only its configuration."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from engine.api.equity_engine.v1 import service_pb2_grpc
from engine.plugins import Registry
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``timeout`` seconds pass: whether it
    came to hold (checked once more at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def running(
    config: ServerConfig,
    registry: Registry | None = None,
    registry_factory: Callable[[], Registry] | None = None,
    grace: float = 0.5,
) -> Iterator[EquityServer]:
    """A started server for a fixture to yield from; stopped with ``grace`` seconds after."""
    server = EquityServer(config, registry, registry_factory=registry_factory)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=grace)


def connected(server: EquityServer, **options: object) -> Iterator[Client]:
    """A client of ``server`` (``Client``'s options: timeout, table_format, ...)."""
    with Client(server.address, **options) as client:  # type: ignore[arg-type]
        yield client


def stub(server: EquityServer) -> Iterator[service_pb2_grpc.EquityServiceStub]:
    """The generated stub of ``server`` over its own channel, for calls a client would not
    make (malformed payloads, raw streams)."""
    with grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.EquityServiceStub(channel)


def local_cluster(workers: int = 2, memory_limit: str = "1GiB") -> Iterator[Any]:
    """A client of a Dask LocalCluster of ``workers`` processes (none of them this one);
    after the fixture ends, the worker processes are checked to be gone."""
    from engine.optimize.cluster import connect

    with connect(f"local:{workers}", memory_limit=memory_limit) as client:
        pids = set(client.run(os.getpid).values())
        assert len(pids) == workers and os.getpid() not in pids  # processes of their own
        yield client
    deadline = time.monotonic() + 10  # a clean shutdown: the worker processes are gone
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
