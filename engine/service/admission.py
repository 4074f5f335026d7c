"""Admission of solves: who may run now, who waits, who is refused, and when a solve stops.

- ``SolveGate``: at most ``max_concurrent_solves`` large solves run at once; up to
  ``max_queued_solves`` more wait (RESOURCE_EXHAUSTED beyond, or after ``queue_timeout``).
  Small requests (``small_solve_rows`` rows, ``small_solve_cells`` rows x levels,
  ``small_segment_limits``: all three within bounds), health checks, ``Score`` and
  ``ListPlugins`` never wait for a slot; a frontier always takes one.
- ``InFlight``: a count of work in progress that can be waited on (calls, solves), for a
  graceful shutdown.
- ``stopper``: ``should_stop`` for one call: the client went away or the deadline passed.
- ``SolveBudget``: ``max_solve_seconds`` of one solve, added to its ``should_stop``; a solve
  stopped by it fails with RESOURCE_EXHAUSTED naming that limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace

import grpc

from engine.errors import CancelledError, LimitExceededError, SolverError
from engine.limits import Limits
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.service.config import ServerConfig


class InFlight:
    """A count of work in progress that can be waited on until it drops to zero (calls in
    flight until gRPC has finished them; solves running)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._count += 1

    def leave(self) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    @property
    def count(self) -> int:
        with self._idle:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class SolveGate:
    """Bounds large solves: ``slots`` at once, ``queue`` more waiting, none beyond."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_concurrent_solves)
        self._lock = threading.Lock()
        self._admitted = 0
        self._receiving = 0
        self._waiting = 0
        self._running = InFlight()

    @property
    def running(self) -> int:
        """Solves running now (large and small)."""
        return self._running.count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no solve runs; False if ``timeout`` passed first."""
        return self._running.wait_idle(timeout)

    @property
    def waiting(self) -> int:
        """Large solves waiting for a slot now."""
        with self._lock:
            return self._waiting

    @property
    def receiving(self) -> int:
        """Streams uploading now."""
        with self._lock:
            return self._receiving

    @property
    def admitted_count(self) -> int:
        """Large solves running or queued now."""
        with self._lock:
            return self._admitted

    def is_large(self, portfolio: Portfolio, plan: Plan | None = None) -> bool:
        """Whether a solve needs a slot (and runs in a worker process): more rows than
        ``small_solve_rows``, more cells (rows x spend levels) than ``small_solve_cells``
        or more segment limits than ``small_segment_limits``. A small solve runs in the
        server's process at once, so each of those bounds its time and memory."""
        options = portfolio.options
        return self.is_large_rows(portfolio.size, None if options is None else options.height,
                                  plan)

    def is_large_rows(self, rows: int, option_rows: int | None, plan: Plan | None = None
                      ) -> bool:
        """``is_large`` of a portfolio of ``rows`` rows (``Portfolio.size``), ``option_rows``
        of them options (``None``: no options table), known before it is decoded."""
        config = self.config
        if rows > config.small_solve_rows:
            return True
        if plan is None:
            return False
        if len(plan.segment_limits) > config.small_segment_limits:
            return True
        levels = max(len(plan.retention_levels), len(plan.acquisition_levels), 1)
        cells = rows * levels if option_rows is None else max(option_rows, rows)
        return cells > config.small_solve_cells

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """A place among the large solves running or queued, or RESOURCE_EXHAUSTED."""
        capacity = self.config.max_concurrent_solves + self.config.max_queued_solves
        with self._lock:
            if self._admitted >= capacity:
                waiting = self._admitted - self.config.max_concurrent_solves + 1
                raise LimitExceededError(
                    "max_queued_solves", waiting, self.config.max_queued_solves
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    @contextmanager
    def uploading(self) -> Iterator[None]:
        """A place among the streams uploading now (``max_receiving_streams``), or
        RESOURCE_EXHAUSTED; separate from the solves' places."""
        limit = self.config.max_receiving_streams
        with self._lock:
            if self._receiving >= limit:
                raise LimitExceededError("max_receiving_streams", self._receiving + 1, limit)
            self._receiving += 1
        try:
            yield
        finally:
            with self._lock:
                self._receiving -= 1

    @contextmanager
    def slot(self, should_stop: Callable[[], bool]) -> Iterator[None]:
        """Wait for a solve slot, giving up when the call is cancelled or the wait too long."""
        started = time.monotonic()
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self._waiting += 1
            try:
                while not self._slots.acquire(timeout=0.05):
                    if should_stop():
                        raise CancelledError("cancelled while waiting for a solve slot")
                    waited = time.monotonic() - started
                    if waited > self.config.queue_timeout:
                        raise LimitExceededError("queue_timeout", waited,
                                                 self.config.queue_timeout)
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def solve(
        self, should_stop: Callable[[], bool], *, large: bool, admitted: bool = False
    ) -> Iterator[None]:
        """Everything a solve needs before it starts: a large one a place in the queue
        (unless the caller holds one already, as a stream does from its first message) and
        a slot; then, unless the call has gone meanwhile, it counts as running."""
        with ExitStack() as stack:
            if large:
                if not admitted:
                    stack.enter_context(self.admitted())
                stack.enter_context(self.slot(should_stop))
            if should_stop():
                raise CancelledError("cancelled before the solve started")
            self._running.enter()
            try:
                yield
            finally:
                self._running.leave()


def stopper(context: grpc.ServicerContext) -> Callable[[], bool]:
    """``should_stop`` for one call: the client went away or the deadline passed."""

    def should_stop() -> bool:
        if not context.is_active():
            return True
        remaining = context.time_remaining()
        return remaining is not None and remaining <= 0

    return should_stop


class SolveBudget:
    """``max_solve_seconds`` of one solve, counted from now: ``should_stop`` is the call's
    own or the budget spent; ``enforced`` turns a solve stopped by the budget alone into
    RESOURCE_EXHAUSTED ``max_solve_seconds``."""

    def __init__(self, seconds: float | None, call_stop: Callable[[], bool]) -> None:
        self.seconds = seconds
        self.call_stop = call_stop
        self.started = time.monotonic()

    def over(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.started > self.seconds

    def should_stop(self) -> bool:
        return self.call_stop() or self.over()

    def ran_out(self) -> bool:
        """Past the budget while the call itself still wants the answer."""
        return self.over() and not self.call_stop()

    def checkpoint(self, phase: str, done: float) -> None:
        """A progress callback that stops the work between phases (``CancelledError``)."""
        if self.should_stop():
            raise CancelledError(f"stopped at {phase} ({done:.0%} done)")

    def limits(self, limits: Limits) -> Limits:
        """Each solver call is bounded by ``solver_seconds``, at most the whole budget."""
        if self.seconds is None:
            return limits
        return replace(limits, solver_seconds=min(limits.solver_seconds or self.seconds,
                                                  self.seconds))

    @contextmanager
    def enforced(self) -> Iterator[None]:
        try:
            yield
        except (CancelledError, SolverError):
            if self.ran_out():
                assert self.seconds is not None
                elapsed = round(time.monotonic() - self.started, 3)
                raise LimitExceededError("max_solve_seconds", elapsed, self.seconds) from None
            raise


__all__ = ["InFlight", "SolveBudget", "SolveGate", "stopper"]
