"""The Frontier RPC: the same exact frontier as `equity frontier`, over a real channel."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, SegmentLimit
from engine.planning.frontier import frontier
from engine.portfolio import Portfolio
from engine.service.client import Client
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
