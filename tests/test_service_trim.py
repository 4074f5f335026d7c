"""Freed heap memory goes back to the system after large calls from a background thread
(``engine.service.solve_pool.Trimmer``), not on gRPC's polling thread where a call ends:
asking returns at once and the thread trims once for the requests made before it starts,
when they pause (or at the latest some seconds after the first while they keep coming);
a real server trims after a large call, not after small ones."""

from __future__ import annotations

import threading
import time

from engine.plan import Plan
from engine.service import solve_pool
from engine.service.server import ServerConfig
from engine.service.solve_pool import Trimmer
from engine.synthetic import customers as make_customers
from tests.servers import connected, running, wait_until


def test_the_trim_runs_in_its_own_thread(monkeypatch: object) -> None:
    started, release = threading.Event(), threading.Event()
    callers: list[str] = []

    # no wait for a pause: it trims as soon as it is asked
    trimmer = Trimmer(quiet=0.0)

    def slow_trim() -> None:  # stands for a malloc_trim that takes a while
        if threading.current_thread() is not trimmer._thread:
            return  # an earlier test's server's trimmer, trimming after its pause
        callers.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    monkeypatch.setattr(solve_pool, "release_memory", slow_trim)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    trimmer.request()
    assert time.perf_counter() - t0 < 0.05  # the caller does not wait for the trim
    assert started.wait(10)
    for _ in range(20):  # requests while a trim runs: one more trim at most, not 20
        trimmer.request()
    release.set()
    assert wait_until(lambda: trimmer.trims >= 1, timeout=10)
    time.sleep(0.2)
    assert 1 <= trimmer.trims <= 2 and len(callers) == trimmer.trims
    assert set(callers) == {"equity-trim"}


def _counted(monkeypatch: object, trimmer: Trimmer) -> list[float]:
    """release_memory replaced by a record of when ``trimmer``'s thread ran it (the
    threads of earlier tests' trimmers may still trim)."""
    ran: list[float] = []

    def record() -> None:
        if threading.current_thread() is trimmer._thread:
            ran.append(time.monotonic())

    monkeypatch.setattr(solve_pool, "release_memory", record)  # type: ignore[attr-defined]
    return ran


def _requests(trimmer: Trimmer, seconds: float) -> float:
    """A request every 50 ms for ``seconds``; returns when the last was made."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        trimmer.request()
        time.sleep(0.05)
    last = time.monotonic()
    trimmer.request()
    return last


def test_the_trim_waits_until_large_calls_pause(monkeypatch: object) -> None:
    trimmer = Trimmer(quiet=2.0, longest=60.0)
    ran = _counted(monkeypatch, trimmer)
    last = _requests(trimmer, 1.0)
    assert ran == []  # none while they keep coming
    assert wait_until(lambda: trimmer.trims == 1, timeout=10)
    assert ran[0] - last >= 2.0 - 0.01  # only after `quiet` without a request
    time.sleep(0.3)
    assert trimmer.trims == 1  # one trim for the whole burst


def test_the_trim_comes_within_longest_while_calls_keep_coming(monkeypatch: object) -> None:
    trimmer = Trimmer(quiet=30.0, longest=0.3)
    ran = _counted(monkeypatch, trimmer)
    started = time.monotonic()
    _requests(trimmer, 2.0)
    assert len(ran) >= 1  # `quiet` never passed: these trims came from `longest`
    assert ran[0] - started >= 0.3 - 0.01


def test_a_server_trims_after_large_calls_only() -> None:
    config = ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=1,
                          small_solve_rows=100, grace=1.0)
    for server in running(config):
        trimmer = server.interceptor.trimmer
        for client in connected(server, timeout=120.0):
            client.allocate(make_customers(50, seed=1), Plan(total_budget=50.0))
            time.sleep(0.2)
            assert trimmer.trims == 0
            client.allocate(make_customers(1_000, seed=1), Plan(total_budget=500.0))
            assert wait_until(lambda t=trimmer: t.trims == 1, timeout=10)  # type: ignore[misc]
