"""The core MIP held to a hard deadline (``engine.optimize.deadline``): a forked child that
streams improving plans back and is killed at the deadline. Real HiGHS runs; the hard
instance is a multi-row knapsack HiGHS cannot close in the time given."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import highspy
import numpy as np
import pytest
from scipy import sparse

from engine.optimize import deadline, small


def knapsack(n: int, rows: int, seed: int, units: int | None = None):
    """max v.x, W x <= cap, x binary: each column its own unit (choose it or its empty
    twin), so the model has the core MIP's shape (units summing to one)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(10, 20, n)
    w = rng.uniform(1, 10, (rows, n))
    cap = w.sum(axis=1) / 3
    value = np.zeros(2 * n)
    value[0::2] = v
    coupling = np.zeros((rows, 2 * n))
    coupling[:, 0::2] = w
    offsets = np.arange(0, 2 * n + 1, 2, dtype=np.int64)
    return value, sparse.csr_matrix(coupling), cap, offsets


def passed(value, coupling, cap, offsets, highs_limit):
    h = small._highs(highs_limit)
    assert small._pass(h, value, coupling, cap, offsets, np.ones(value.size, dtype=bool))
    return h


def children() -> set[int]:
    """This process's child processes (Linux: /proc lists them per thread)."""
    found: set[int] = set()
    for listing in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        found.update(int(pid) for pid in listing.read_text().split())
    return found


@pytest.fixture
def no_child_left() -> Iterator[None]:
    """Every child a run forks is gone (reaped) when it returns; children of earlier tests
    (servers' workers) are not this test's."""
    before = children()
    yield
    assert children() <= before


def check_plan(answer, value, coupling, cap) -> None:
    x = np.zeros(value.size)
    x[answer.chosen] = 1.0
    assert (coupling @ x <= cap + 1e-6).all()
    assert np.isclose(float(value @ x), answer.objective, rtol=1e-9)


@pytest.mark.skipif(not deadline.can_fork(), reason="needs fork from the main thread")
@pytest.mark.usefixtures("no_child_left")
def test_a_run_past_its_deadline_is_killed_with_its_best_plan() -> None:
    value, coupling, cap, offsets = knapsack(400, 40, 1)
    h = passed(value, coupling, cap, offsets, None)  # HiGHS' own clock off: only the kill
    started = time.perf_counter()
    answer = deadline.run(h, 0.5)
    seconds = time.perf_counter() - started
    assert seconds < 0.5 + 1.5, seconds  # the deadline, and slack for a loaded machine
    assert answer.killed
    assert answer.status in ("time_limit", "error")
    if answer.status == "time_limit":  # the best plan streamed back before the kill
        check_plan(answer, value, coupling, cap)
        assert answer.bound >= answer.objective - 1e-6  # a dual bound, in the max sense


@pytest.mark.usefixtures("no_child_left")
def test_a_run_within_its_deadline_answers_as_in_process() -> None:
    value, coupling, cap, offsets = knapsack(30, 3, 2)
    inside = passed(value, coupling, cap, offsets, None)
    inside.run()
    expected = deadline._final(inside)
    answer = deadline.run(passed(value, coupling, cap, offsets, None), 30.0)
    assert not answer.killed
    assert answer.status == expected.status == "optimal"
    assert np.array_equal(answer.chosen, expected.chosen)
    assert answer.objective == expected.objective
    assert answer.bound == expected.bound
    check_plan(answer, value, coupling, cap)


def test_an_infeasible_model_is_reported_so() -> None:
    value, coupling, cap, offsets = knapsack(20, 2, 3)
    coupling = sparse.vstack([coupling, sparse.csr_matrix(-np.ones((1, value.size)))]).tocsr()
    cap = np.append(cap, -(value.size // 2 + 1.0))  # more than one column per unit
    answer = deadline.run(passed(value, coupling, cap, offsets, None), 30.0)
    assert answer.status == "infeasible"
    assert answer.chosen.size == 0


@pytest.mark.skipif(not deadline.can_fork(), reason="needs fork from the main thread")
@pytest.mark.usefixtures("no_child_left")
def test_a_stop_request_ends_the_run_at_once() -> None:
    value, coupling, cap, offsets = knapsack(400, 40, 4)
    h = passed(value, coupling, cap, offsets, None)
    asked = time.perf_counter() + 0.3
    started = time.perf_counter()
    answer = deadline.run(h, 60.0, should_stop=lambda: time.perf_counter() > asked)
    assert time.perf_counter() - started < 0.3 + 1.5
    assert answer.killed


@pytest.mark.skipif(not deadline.can_fork(), reason="needs fork from the main thread")
@pytest.mark.usefixtures("no_child_left")
def test_a_child_that_cannot_start_highs_leaves_the_run_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HiGHS at times refuses to rebuild its thread pool in a forked child ("Invalid
    argument"): the MIP is then solved here, with the same answer, not reported unsolved."""
    value, coupling, cap, offsets = knapsack(30, 3, 5)
    inside = passed(value, coupling, cap, offsets, None)
    inside.run()
    expected = deadline._final(inside)

    def refuse(blocking: bool) -> None:
        raise RuntimeError("Invalid argument")

    monkeypatch.setattr(highspy.Highs, "resetGlobalScheduler", staticmethod(refuse))
    answer = deadline.run(passed(value, coupling, cap, offsets, None), 30.0)
    assert not answer.killed
    assert answer.status == expected.status == "optimal"
    assert np.array_equal(answer.chosen, expected.chosen)
    check_plan(answer, value, coupling, cap)
