"""Test-only strategies for the service tests, and a server that loads them.

Long solves come from allocators that work until ``should_stop()`` says so, which is how
the tests see the server stop working on a cancelled call. Broken ones (raise, wrong
shape, wrong rows, wrong type) exercise the plugin-error path.

``python tests/service_plugins.py serve --port N ...`` runs ``equity serve`` (same flags)
with these strategies registered, for tests that need a real process (signals).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from engine.allocation import Allocation
from engine.errors import CancelledError, SolverError
from engine.hookspecs import hookimpl
from engine.plan import StrategyChoice
from engine.plugins import Registry, build_registry
from engine.strategies import Allocator, CostModel, Metric, Param, Problem

PLUGIN_NAME = "service-test-plugins"


class SpinState:
    """What the spin allocator saw: started, and stopped because should_stop() said so."""

    started = threading.Event()
    stopped = threading.Event()
    checks = 0
    running = 0
    most_running = 0
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.started.clear()
        cls.stopped.clear()
        cls.checks = 0
        with cls.lock:
            cls.running = 0
            cls.most_running = 0


class Spin(Allocator):
    """Works (in small steps) until the engine's stop signal: an endless solve."""

    name = "spin"

    def allocate(self, problem: Problem) -> Any:
        with SpinState.lock:
            SpinState.running += 1
            SpinState.most_running = max(SpinState.most_running, SpinState.running)
        SpinState.started.set()
        try:
            while not problem.should_stop():
                SpinState.checks += 1
                time.sleep(0.005)
        finally:
            with SpinState.lock:
                SpinState.running -= 1
        SpinState.stopped.set()
        raise CancelledError("spin stopped")


class Slow(Allocator):
    """The greedy plan after a pause of ``seconds`` (stopping early if told to)."""

    name = "slow"
    params: ClassVar[dict[str, Param]] = {
        "seconds": Param(0.4, "Pause before answering, seconds.", float, minimum=0.0),
    }
    seconds: float
    started: ClassVar[threading.Event] = threading.Event()

    def allocate(self, problem: Problem) -> Any:
        from equity_plugins.allocators import Greedy

        Slow.started.set()
        print("slow solve started", file=sys.stderr, flush=True)  # for subprocess tests
        until = time.monotonic() + self.seconds
        while time.monotonic() < until:
            if problem.should_stop():
                raise CancelledError("slow stopped")
            time.sleep(0.01)
        return Greedy().allocate(problem)


class SlowHere(Allocator):
    """Endless in the process that serves (it works until told to stop), the greedy plan in
    a solve worker (a child process): a small request whose search runs long."""

    name = "slow-here"

    def allocate(self, problem: Problem) -> Any:
        import multiprocessing

        from equity_plugins.allocators import Greedy

        if multiprocessing.parent_process() is not None:  # a solve worker
            return Greedy().allocate(problem)
        until = time.monotonic() + 60.0
        while time.monotonic() < until and not problem.should_stop():
            time.sleep(0.01)
        raise CancelledError("slow-here stopped")


class Record(Allocator):
    """The greedy plan; remembers the solver time limit the engine passed."""

    name = "record"
    time_limits: ClassVar[list[float | None]] = []

    def allocate(self, problem: Problem) -> Any:
        from equity_plugins.allocators import Greedy

        Record.time_limits.append(problem.time_limit)
        return Greedy().allocate(problem)


class Stubborn(Allocator):
    """Busy in Python (holding the GIL) for ``seconds``, deaf to the stop signal."""

    name = "stubborn"
    params: ClassVar[dict[str, Param]] = {
        "seconds": Param(30.0, "How long to keep busy, seconds.", float, minimum=0.0),
        "started_file": Param("", "A file created once the busy loop starts (for tests that "
                              "must cancel it inside the loop, not before).", str),
    }
    seconds: float
    started_file: str

    def allocate(self, problem: Problem) -> Any:
        if self.started_file:
            Path(self.started_file).touch()
        until = time.monotonic() + self.seconds
        x = 0
        while time.monotonic() < until:
            x += sum(range(1000))
        raise CancelledError(f"stubborn gave up after {x} sums")


class Crash(Allocator):
    """Takes its process down (as a segfaulting solver would)."""

    name = "crash"

    def allocate(self, problem: Problem) -> Any:
        os._exit(3)


class Boom(Allocator):
    name = "boom"

    def allocate(self, problem: Problem) -> Any:
        raise RuntimeError("boom inside the plugin")


class GiveUp(Allocator):
    name = "give-up"

    def allocate(self, problem: Problem) -> Any:
        raise SolverError("the solver gave up", "time limit")


class WrongShape(Allocator):
    """Returns an allocation for one unit too few."""

    name = "wrong-shape"

    def allocate(self, problem: Problem) -> Any:
        n = problem.options.n_units - 1
        first = problem.options.offsets[:-1][:n].astype(np.int64)
        return Allocation.single(first, "optimal", "wrong-shape")


class NotAnAllocation(Allocator):
    name = "not-an-allocation"

    def allocate(self, problem: Problem) -> Any:
        return {"lo": [0]}


class ShortMetric(Metric):
    """Returns one row fewer than it was given."""

    name = "short-metric"
    produces = ("clv",)

    def compute(self, table: pl.DataFrame, valuation: Any) -> pl.DataFrame:
        return pl.DataFrame({"clv": np.zeros(max(table.height - 1, 0))})


class NoOptions(CostModel):
    """Returns a DataFrame where an OptionSet is due."""

    name = "no-options"

    def build(self, portfolio: Any, plan: Any) -> Any:
        return pl.DataFrame({"x": [1]})


ALLOCATORS = (Spin, Slow, SlowHere, Record, Stubborn, Crash, Boom, GiveUp, WrongShape,
              NotAnAllocation)


@hookimpl
def register_allocators(register: Callable[[type[Allocator]], None]) -> None:
    for cls in ALLOCATORS:
        register(cls)


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(ShortMetric)


@hookimpl
def register_costs(register: Callable[[type[CostModel]], None]) -> None:
    register(NoOptions)


TEST_PLUGINS = types.SimpleNamespace(
    __name__=PLUGIN_NAME,
    register_allocators=register_allocators,
    register_metrics=register_metrics,
    register_costs=register_costs,
)


class ExplodingRegistry(Registry):
    """A registry with a bug: the unexpected-exception path (INTERNAL, no traceback)."""

    def create(self, kind: str, choice: StrategyChoice) -> Any:
        if choice.name == "explode":
            raise KeyError("secret internal detail")
        return super().create(kind, choice)


def test_registry() -> Registry:
    base = build_registry(extra=[TEST_PLUGINS], entry_points=False)
    return ExplodingRegistry(base.strategies, base.failures)


test_registry.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


def main(argv: list[str]) -> int:
    """``equity serve`` with the test strategies registered."""
    import argparse

    from engine.cli import service as cli_service
    from engine.service.server import configure_logging, serve

    parser = argparse.ArgumentParser()
    cli_service.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    config = cli_service.config_from_args(args)
    configure_logging(args.log_level.upper(), json_lines=args.log_format == "json")
    return serve(config, registry_factory=test_registry)  # solve workers load them too


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
