"""Faults, one test each: a client that cancels mid-stream (uploading, solving, downloading),
a deadline shorter than a real solve, SIGTERM with calls in flight (finished within the
grace period, or failed cleanly with no partial plan passed off as complete), the solver
failing, plugins that raise or return the wrong shape. After each, the server still serves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest
from grpc_status import rpc_status
from service_plugins import PLUGIN_NAME, SpinState, test_registry

from engine.api.equity_engine.v1 import service_pb2
from engine.cli.service import _free_port
from engine.errors import CancelledError, PluginError, SolverError
from engine.optimize import small, solvers
from engine.plan import Plan, StrategyChoice
from engine.portfolio import Portfolio
from engine.service.client import Client, DeadlineExceededError, ServiceError
from engine.service.server import EquityServer, ServerConfig
from engine.service.status import error_from_status
from engine.synthetic import customers as make_customers
from engine.synthetic import example
from tests.servers import connected, running, wait_until

HERE = Path(__file__).parent
CONFIG = ServerConfig(port=0, workers=8, max_concurrent_solves=1, max_queued_solves=0,
                      small_solve_rows=500, grace=2.0)
CUSTOMERS = make_customers(2_000, seed=5)
PLAN = Plan(total_budget=800.0)


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(CONFIG, test_registry())


@pytest.fixture(scope="module")
def client(server: EquityServer) -> Iterator[Client]:
    yield from connected(server, timeout=30.0)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SpinState.reset()


def _with(allocator: str, plan: Plan = PLAN, **params: Any) -> Plan:
    return replace(plan, allocation=StrategyChoice(allocator, params))


def _still_serving(client: Client) -> None:
    """Health is SERVING and a large solve (which needs the only slot) succeeds."""
    assert client.health() == "SERVING"
    result = client.allocate(CUSTOMERS, PLAN, timeout=20)
    assert result.summary["status"] == "optimal" and result.units.height == CUSTOMERS.height


def _fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of the access-log lines captured so far."""
    access = "engine.service.server.access"
    return [getattr(r, "fields", {}) for r in caplog.records if r.name == access]


def _access(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    return [f["status"] for f in _fields(caplog) if f.get("method") == method]


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_while_uploading(client: Client, server: EquityServer,
                                caplog: pytest.LogCaptureFixture) -> None:
    """The client stops half-way through sending batches: the call ends CANCELLED and its
    place among the large solves is given back."""
    requests = list(client.stream_requests(CUSTOMERS, PLAN, batch_rows=500))
    release = threading.Event()

    def slow_upload() -> Iterator[service_pb2.AllocateStreamRequest]:
        yield from requests[:3]
        release.wait(10)
        yield from requests[3:]

    caplog.set_level(logging.INFO, logger="engine.service.server.access")
    call = client.stub.AllocateStream(slow_upload(), timeout=20)
    assert wait_until(lambda: server.interceptor.inflight.count == 1)
    time.sleep(0.1)  # the server is waiting for the fourth message
    call.cancel()
    release.set()
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    assert wait_until(lambda: "CANCELLED" in _access(caplog, "AllocateStream"))
    assert wait_until(lambda: server.interceptor.inflight.count == 0)
    _still_serving(client)  # max_queued_solves=0: only works if the slot was given back


def test_cancel_while_solving(client: Client, server: EquityServer) -> None:
    call = client.stub.AllocateStream(
        client.stream_requests(CUSTOMERS, _with("spin"), batch_rows=500), timeout=20)
    assert SpinState.started.wait(5)
    call.cancel()
    assert SpinState.stopped.wait(5), "the server kept solving for a cancelled stream"
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    assert wait_until(lambda: server.active_solves == 0)
    _still_serving(client)


def test_cancel_while_downloading(client: Client, server: EquityServer,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """The client reads two of many plan batches, then cancels: no summary ever arrives
    and the server stops sending."""
    caplog.set_level(logging.INFO, logger="engine.service.server.access")
    responses = client.stub.AllocateStream(
        client.stream_requests(CUSTOMERS, PLAN, batch_rows=500, response_batch_rows=10),
        timeout=20)
    kinds = [next(responses).WhichOneof("item") for _ in range(2)]
    responses.cancel()
    assert kinds == ["units", "units"]
    with pytest.raises(grpc.RpcError) as err:
        for response in responses:
            assert response.WhichOneof("item") == "units", "a summary after the cancel"
    assert err.value.code() == grpc.StatusCode.CANCELLED
    assert wait_until(lambda: "CANCELLED" in _access(caplog, "AllocateStream"))
    sent = [f["response_messages"] for f in _fields(caplog) if f.get("status") == "CANCELLED"]
    assert sent and sent[-1] < CUSTOMERS.height // 10  # it stopped well before the end
    _still_serving(client)


def test_deadline_shorter_than_a_real_solve(server: EquityServer) -> None:
    """A deadline of a quarter of what the same real solve takes without one: the caller
    gets DEADLINE_EXCEEDED and the server stops working on it soon after.

    The deadline is measured, not fixed: on a fast machine 150k customers are planned,
    sent and returned in under 0.3 s, and a fixed 0.3 s deadline then never fires."""
    customers, prospects, plan = example(150_000)
    portfolio = Portfolio(customers, prospects)
    with Client(server.address, timeout=30) as client:
        took = []
        for _ in range(2):  # the faster of two, so a slow first call cannot inflate it
            started = time.monotonic()
            client.allocate(portfolio, plan)
            took.append(time.monotonic() - started)
        deadline = min(took) / 4
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            client.allocate(portfolio, plan, timeout=deadline)
        assert time.monotonic() - started < deadline + 1.0
        assert wait_until(lambda: server.active_solves == 0, timeout=10)
        assert wait_until(lambda: server.interceptor.inflight.count == 0)
        _still_serving(client)


# --- solver and plugin failures -------------------------------------------------------------


def test_solver_failure_is_a_clear_status(client: Client, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise SolverError("highs failed: simulated crash", "error")

    monkeypatch.setattr(solvers, "maximize", broken)
    # a plan this small is solved directly in HiGHS, without solvers.maximize: that path
    # hands back to the general one when HiGHS does not answer, so fail it that way too
    monkeypatch.setattr(small, "solve", lambda *args, **kwargs: None)
    request = client.allocate_request(CUSTOMERS.head(300), PLAN)
    with pytest.raises(grpc.RpcError) as raw:
        client.stub.Allocate(request, timeout=20)
    assert raw.value.code() == grpc.StatusCode.INTERNAL
    status = rpc_status.from_call(raw.value)  # type: ignore[arg-type]
    assert status is not None
    exc = error_from_status(raw.value.code(), status.message, status.details)
    assert isinstance(exc, SolverError) and "simulated crash" in str(exc)
    with pytest.raises(SolverError):  # the same through the client, for streams too
        client.stream(CUSTOMERS.head(300), PLAN, batch_rows=100)
    monkeypatch.undo()
    _still_serving(client)


def test_solver_giving_up(client: Client) -> None:
    with pytest.raises(SolverError) as err:
        client.allocate(CUSTOMERS.head(300), _with("give-up"))
    assert err.value.status == "time limit" and "gave up" in str(err.value)
    _still_serving(client)


@pytest.mark.parametrize(("plan", "problem"), [
    (_with("boom"), "boom inside the plugin"),
    (_with("wrong-shape"), "expected (300,)"),
    (_with("not-an-allocation"), "returned dict"),
    (replace(PLAN, metric=StrategyChoice("short-metric")), "returned 299 rows for 300"),
    (replace(PLAN, cost=StrategyChoice("no-options")), "not OptionSet"),
])
def test_broken_plugin_is_named_and_the_server_keeps_serving(
    client: Client, plan: Plan, problem: str
) -> None:
    with pytest.raises(PluginError) as err:
        client.allocate(CUSTOMERS.head(300), plan)
    assert err.value.plugin == PLUGIN_NAME
    assert problem in err.value.problem
    with pytest.raises(PluginError):  # Score and streams go through the same checks
        client.stream(CUSTOMERS.head(300), plan, batch_rows=100)
    _still_serving(client)


# --- SIGTERM with calls in flight (a real `equity serve` process) ---------------------------


class Served:
    """``equity serve`` (with the test strategies) in a subprocess; stderr collected."""

    def __init__(self, *flags: str) -> None:
        self.port = _free_port()
        self.lines: list[str] = []
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "service_plugins.py"), "serve", "--port",
             str(self.port), *flags],
            stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "slow solve started" in line:
                self.started.set()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    made: list[Served] = []

    def make(*flags: str) -> Served:
        made.append(Served(*flags))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _stream_in_background(client: Client, plan: Plan, **kwargs: Any) -> dict[str, Any]:
    """Runs ``client.stream`` in a thread; the dict gets "result" or "error", and "batches"
    (rows of each batch handed over)."""
    out: dict[str, Any] = {"batches": []}

    def run() -> None:
        try:
            out["result"] = client.stream(
                CUSTOMERS, plan, batch_rows=500, response_batch_rows=100,
                on_batch=lambda b: out["batches"].append(b.height), **kwargs)
        except Exception as exc:
            out["error"] = exc

    out["thread"] = threading.Thread(target=run)
    out["thread"].start()
    return out


def test_sigterm_lets_calls_in_flight_finish_within_the_grace(
    served: Callable[..., Served],
) -> None:
    server = served("--grace", "10", "--max-concurrent-solves", "1",
                    "--small-solve-rows", "500")  # the solve runs in a worker process
    with Client(f"127.0.0.1:{server.port}", timeout=30) as client:
        client.wait_ready(20)
        call = _stream_in_background(client, _with("slow", seconds=1.0))
        assert server.started.wait(15)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        call["thread"].join(20)
        assert "error" not in call, call.get("error")
        result = call["result"]
        assert result.summary["customers"] == CUSTOMERS.height  # complete: every batch
        assert sum(call["batches"]) == CUSTOMERS.height
        with pytest.raises(ServiceError) as err:  # new calls are refused meanwhile / after
            client.health(timeout=2)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert server.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10
    logged = server.records()
    assert any(r.get("method") == "AllocateStream" and r.get("status") == "OK" for r in logged)
    messages = [r["message"] for r in logged]
    assert "shutting down" in messages and messages[-1] == "stopped"


def test_sigterm_past_the_grace_fails_cleanly(served: Callable[..., Served]) -> None:
    """A solve that outlives the grace period is cancelled: the client gets an error, never
    a plan passed off as complete, and the server exits promptly."""
    server = served("--grace", "0.5", "--max-concurrent-solves", "1",
                    "--small-solve-rows", "500")  # the solve runs in a worker process
    with Client(f"127.0.0.1:{server.port}", timeout=30) as client:
        client.wait_ready(20)
        call = _stream_in_background(client, _with("slow", seconds=20.0))
        assert server.started.wait(15)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        call["thread"].join(10)
        assert not call["thread"].is_alive()
        assert "result" not in call, "a plan came back although the solve was cancelled"
        assert isinstance(call["error"], CancelledError | ServiceError), call["error"]
        assert sum(call["batches"]) < CUSTOMERS.height
    assert server.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    statuses = [r.get("status") for r in server.records() if r.get("method") == "AllocateStream"]
    assert statuses and statuses[-1] in ("CANCELLED", "UNAVAILABLE")


def test_sigterm_while_the_plan_streams_out(served: Callable[..., Served]) -> None:
    """The server is cut off after sending part of the plan: the client sees the batches it
    got and an error, and ``Client.stream`` raises: no summary, so nothing looks complete.
    (The client keeps HTTP/2's 64 KiB window, so the server cannot send far ahead of it.)"""
    server = served("--grace", "0.3")
    big = make_customers(20_000, seed=9)
    target = f"127.0.0.1:{server.port}"
    channel = grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
    with Client(target, timeout=60, channel=channel) as client:
        client.wait_ready(20)
        seen: list[int] = []
        first = threading.Event()

        def slow_reader(batch: pl.DataFrame) -> None:
            seen.append(batch.height)
            first.set()
            # a slow consumer: reading all 200 batches takes 20 s, far beyond the grace even
            # when a loaded machine delays the server's stop
            time.sleep(0.1)

        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["result"] = client.stream(big, PLAN, batch_rows=10_000,
                                              response_batch_rows=100, on_batch=slow_reader)
            except Exception as exc:
                out["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        assert first.wait(30)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert not thread.is_alive()
        assert "result" not in out and isinstance(out["error"], CancelledError | ServiceError)
        assert 0 < sum(seen) < big.height
        assert time.monotonic() - t0 < 3
    assert server.proc.wait(10) == 0


# --- the solver's own time limit ------------------------------------------------------------


def test_solver_time_limit_gives_a_feasible_plan_with_its_gap(client: Client) -> None:
    """A solver call cut short by its time limit still yields a plan that keeps the budget,
    with a bound and a gap that say how far from optimal it may be."""
    plan = _with("lp", time_limit=1e-6)
    result = client.allocate(CUSTOMERS, plan)
    full = client.allocate(CUSTOMERS, PLAN)
    s = result.summary
    assert s["total_spend"] <= PLAN.total_budget * (1 + 1e-9)  # type: ignore[operator]
    assert s["equity_after"] <= full.summary["equity_after"] + 1e-6
    assert s["bound"] >= full.summary["equity_after"] - 1e-6
    assert s["gap"] is not None and s["gap"] > 1e-6
    assert full.summary["gap"] < 1e-9


def test_a_time_limited_solve_says_so(client: Client) -> None:
    """The status and a note tell the caller the plan is the best found, not the optimum;
    the same through a stream."""
    for result in (client.allocate(CUSTOMERS, _with("lp", time_limit=1e-6)),
                   client.stream(CUSTOMERS, _with("lp", time_limit=1e-6), batch_rows=500)):
        assert result.summary["status"] == "time_limit"
        assert any("time limit" in note for note in result.summary["notes"])
        assert result.units.height == CUSTOMERS.height
