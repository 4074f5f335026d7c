"""The Frontier RPC: the same exact frontier as `equity frontier`, over a real channel; like a
large solve it takes a place in the solve queue and a slot, and stops at its deadline and at
``max_solve_seconds``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from engine.errors import InvalidInputError, LimitExceededError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit
from engine.planning.frontier import frontier
from engine.portfolio import Portfolio
from engine.service.client import Client, DeadlineExceededError
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers, prospects


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    server = EquityServer(ServerConfig(port=0))
    server.start()
    with Client(server.address, timeout=60.0) as c:
        yield c
    server.stop(grace=1.0)


PORTFOLIO = Portfolio(customers(1500, seed=6), prospects(seed=6, scale=0.3))
PLAN = Plan(total_budget=3000.0, segment_limits=(SegmentLimit("core", cap=900.0),))


def test_frontier_rpc_matches_the_engine_and_a_separate_solve(client: Client) -> None:
    points, moves, summary = client.frontier(PORTFOLIO, PLAN)
    local = frontier(PORTFOLIO, PLAN)
    assert points.height == local.points.height and points.height > 2
    assert np.allclose(points["equity"].to_numpy(), local.points["equity"].to_numpy())
    assert summary["optimal_budget"] == pytest.approx(local.summary()["optimal_budget"])
    assert {"segment", "kind", "spend"} <= set(moves.columns)
    # concave and non-decreasing up to the optimal budget
    slopes = np.diff(points["equity"].to_numpy()) / np.diff(points["budget"].to_numpy())
    assert (np.diff(slopes) <= 1e-9).all() and (slopes >= -1e-9).all()
    # its value at the plan's budget is the LP optimum of a separate solve at that budget
    solved = allocate(PORTFOLIO, PLAN).summary["lp_objective"]
    assert summary["chosen_equity"] == pytest.approx(solved, rel=1e-9)


def test_frontier_rpc_bad_plan_is_invalid_argument(client: Client) -> None:
    bad = Plan(total_budget=10.0, segment_limits=(SegmentLimit("atlantis", cap=1.0),))
    with pytest.raises(InvalidInputError) as err:
        client.frontier(PORTFOLIO, bad)
    assert err.value.violations[0].field == "plan.segment_limits[0].segment"


# --- admission and stopping: a frontier is as heavy as a large solve ---------------------------


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def gated() -> Iterator[EquityServer]:
    """One solve slot and one place in the queue; the tests hold them from this process."""
    config = ServerConfig(port=0, max_concurrent_solves=1, max_queued_solves=1,
                          queue_timeout=30.0, isolate_solves=False, grace=1.0)
    server = EquityServer(config)
    server.start()
    yield server
    server.stop(grace=1.0)


def test_frontier_takes_a_place_in_the_solve_queue(gated: EquityServer) -> None:
    with Client(gated.address, timeout=30.0) as c:
        full = (gated.gate.admitted(), gated.gate.admitted())  # one running, one queued
        with full[0], full[1], pytest.raises(LimitExceededError) as err:
            c.frontier(PORTFOLIO, PLAN)
        assert err.value.limit == "max_queued_solves"
        points, _, _ = c.frontier(PORTFOLIO, PLAN)  # room again: it runs
        assert points.height > 2
    assert gated.active_solves == 0


def test_frontier_waits_for_a_slot_and_gives_up_at_its_deadline(
    gated: EquityServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.service.server.access")
    with Client(gated.address, timeout=30.0) as c:
        with gated.gate.admitted(), gated.gate.slot(lambda: False):  # a solve is running
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                c.frontier(PORTFOLIO, PLAN, timeout=0.5)
            assert time.monotonic() - started < 5.0
            # The call stopped waiting once its deadline passed and left the queue.
            assert _eventually(lambda: gated.gate.admitted_count == 1)
        points, _, _ = c.frontier(PORTFOLIO, PLAN)
        assert points.height > 2
    statuses = [r.fields["status"] for r in caplog.records  # type: ignore[attr-defined]
                if getattr(r, "fields", {}).get("method") == "Frontier"]
    assert statuses[0] == "DEADLINE_EXCEEDED" and statuses[-1] == "OK"


def test_frontier_stops_at_max_solve_seconds() -> None:
    config = ServerConfig(port=0, max_solve_seconds=1e-6, isolate_solves=False, grace=1.0)
    with EquityServer(config) as server, Client(server.address, timeout=30.0) as c:
        with pytest.raises(LimitExceededError) as err:
            c.frontier(PORTFOLIO, PLAN)
        assert err.value.limit == "max_solve_seconds"
        assert server.active_solves == 0
