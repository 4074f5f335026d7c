"""Elementwise passes over millions of customers on the machine's cores.

numpy releases the GIL inside its loops, so the pieces of a chunked pass (each writing its
own slice of the results, as the closed-form values, the hull's chord tests and the block
keys do) can run on threads. :func:`each` runs ``fn(lo, hi)`` for every piece of
``range(n)``: inline when the pass is small (fewer than :data:`MIN_PIECES` pieces) or one
thread is allowed, else on a pool of :func:`threads` threads. The results are the same bit
for bit: each piece computes what it would alone, and what is summed across pieces
(:func:`results`) is summed by the caller in the pieces' order.

``EQUITY_THREADS`` in the environment sets the number of threads (``1``: none); by default
the cores this process may run on, at most :data:`MAX_THREADS`. A process forked from one
that used the pool makes its own (a pool's threads do not survive ``fork``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

MAX_THREADS = 4
MIN_PIECES = 8  # fewer pieces than this: inline (a pool's hand-offs would cost more)

_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool)
_local = threading.local()


def threads() -> int:
    """How many threads a pass may use."""
    text = os.environ.get("EQUITY_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def each(fn: Callable[[int, int], None], n: int, size: int) -> None:
    """``fn(lo, hi)`` for each piece ``[lo, hi)`` of ``range(n)``, ``size`` long (the last
    shorter). Pieces must write disjoint slices; an exception in any is raised here."""
    results(fn, n, size)


def results(fn: Callable[[int, int], T], n: int, size: int) -> list[T]:
    """``fn(lo, hi)`` of each piece, as :func:`each`, returned in the pieces' order: a
    caller that adds them up in that order gets the sum one thread would."""
    pieces = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    k = threads()
    if k < 2 or len(pieces) < MIN_PIECES or getattr(_local, "inside", False):
        return [fn(lo, hi) for lo, hi in pieces]
    pool = _get_pool(k)

    def run(bounds: tuple[int, int]) -> T:
        _local.inside = True  # a pass inside a pass runs inline: no pool waits on itself
        try:
            return fn(*bounds)
        finally:
            _local.inside = False

    return list(pool.map(run, pieces))


def _after_fork_in_child() -> None:
    """A child forked while another thread held the lock must not wait on it forever."""
    global _lock, _pool
    _lock = threading.Lock()
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _get_pool(k: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        pid = os.getpid()
        if _pool is None or _pool[0] != pid or _pool[1] != k:
            _pool = (pid, k, ThreadPoolExecutor(max_workers=k, thread_name_prefix="equity-pass"))
        return _pool[2]
