"""Limits on other resources (contacts, calls) over partitions: the single machine's sifting
with a pricer over the partitions, in this process and on a real LocalCluster of two worker
processes, against the single machine and highspy's full LP."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.constraints import build_constraints
from engine.optimize import distributed, lp
from engine.optimize.cluster import InProcess, Workers
from engine.options import from_table
from engine.plan import Plan, StrategyChoice
from tests.reference import reference_mip
from tests.servers import local_cluster
from tests.test_distributed import _write_parts
from tests.test_resources import plan_for as _plan_for
from tests.test_resources import table


def plan_for(n: int, seed: int) -> Plan:
    """test_resources' plan, its options table read as given (values and costs)."""
    return replace(_plan_for(n, seed), cost=StrategyChoice("spend-table"))


def _one_machine(frame: pl.DataFrame, plan: Plan) -> tuple[float, float, float, float]:
    """The single machine's sifting LP (objective, bound), highspy's full LP and the single
    machine's integer plan's value (nan unless proven optimal)."""
    options = from_table(frame)
    rows = build_constraints(plan, options)
    relaxed = reference_mip(options, rows, relax=True)
    assert relaxed is not None
    allocation = lp.solve(options, rows)
    value = float(allocation.equity(options).sum())
    return (allocation.lp_objective, allocation.bound, relaxed[0],
            value if allocation.status == "optimal" else float("nan"))


def _check(units: pl.DataFrame, frame: pl.DataFrame, plan: Plan, s: dict) -> None:
    """Every customer once at one of its own levels, every limit kept (from the table's own
    columns, not the engine's sums), the equity as reported."""
    n = frame["customer_id"].n_unique()
    assert units.height == n and units["customer_id"].n_unique() == n
    chosen = units.select("customer_id", "level").join(frame, on=["customer_id", "level"])
    assert chosen.height == n
    for limit in plan.resource_limits:
        scope = chosen if limit.segment is None else chosen.filter(
            pl.col("segment") == limit.segment)
        used = float(scope[limit.resource].sum())
        if limit.max is not None:
            assert used <= limit.max * (1 + 1e-9) + 1e-9
        if limit.min is not None:
            assert used >= limit.min * (1 - 1e-9) - 1e-9
    assert plan.total_budget is not None
    assert float(chosen["cost"].sum()) <= plan.total_budget * (1 + 1e-9)
    assert units["equity_after"].sum() == pytest.approx(s["equity_after"], rel=1e-12)
    assert s["integer_bound"] >= s["equity_after"] - 1e-9 * abs(s["bound"])
    if s["status"] != "optimal":
        assert s["status"] == "feasible" and s["gap"] > 0


def _compare(s: dict, objective: float, bound: float, full: float, optimum: float) -> None:
    """The LP as one machine's and highspy's; an integer optimum proven on one machine is
    the cluster's plan's value too (both proven within 1e-9 of the same bound)."""
    assert s["method"] == "lagrange"
    if not np.isnan(optimum):
        assert s["status"] == "optimal"
        assert s["equity_after"] == pytest.approx(optimum, rel=2e-9)
    assert s["lp_objective"] == pytest.approx(objective, rel=1e-9)
    assert s["lp_objective"] == pytest.approx(full, rel=1e-9)
    assert s["bound"] == pytest.approx(bound, rel=1e-9)
    assert s["bound"] == pytest.approx(full, rel=1e-9)


@pytest.mark.parametrize(("n", "parts", "seed"), [(600, 3, 0), (3000, 4, 1), (12000, 5, 2),
                                                   (2500, 2, 3)])
def test_partitions_match_one_machine_and_highspy(tmp_path: Path, n: int, parts: int,
                                                  seed: int) -> None:
    frame, plan = table(n, seed), plan_for(n, seed)
    result = distributed.allocate(
        distributed.sources(options=_write_parts(frame, tmp_path / "o", parts)), plan,
        InProcess())
    s = result.summary
    assert s["partitions"] == parts
    _compare(s, *_one_machine(frame, plan))
    assert result.units is not None
    _check(result.units, frame, plan, s)
    assert set(s["shadow_prices"]) == {r.name for r in build_constraints(
        plan, from_table(frame))}


def test_limits_that_cannot_be_met_are_infeasible(tmp_path: Path) -> None:
    from engine.errors import InfeasiblePlanError
    from engine.plan import ResourceLimit

    frame = table(800, 4)
    plan = replace(plan_for(800, 4), resource_limits=(
        ResourceLimit("contacts", max=100.0), ResourceLimit("contacts", min=500.0)))
    with pytest.raises(InfeasiblePlanError):
        distributed.allocate(distributed.sources(options=_write_parts(frame, tmp_path / "o", 2)),
                             plan, InProcess())


def test_a_missing_resource_column_names_the_field(tmp_path: Path) -> None:
    from engine.errors import InvalidInputError
    from engine.plan import ResourceLimit

    frame = table(300, 5)
    plan = replace(plan_for(300, 5), resource_limits=(ResourceLimit("visits", max=10.0),))
    with pytest.raises(InvalidInputError, match=r"resource_limits\[0\]\.resource"):
        distributed.allocate(distributed.sources(options=_write_parts(frame, tmp_path / "o", 2)),
                             plan, InProcess())


# --- a real LocalCluster of two worker processes ---------------------------------------------


@pytest.fixture(scope="module")
def client():
    yield from local_cluster()


@pytest.mark.parametrize("seed", [6, 7])
def test_cluster_matches_one_machine_and_highspy(client, tmp_path: Path, seed: int) -> None:
    n = 4000
    frame, plan = table(n, seed), plan_for(n, seed)
    directory = _write_parts(frame, tmp_path / "o", 4)
    workers = Workers(client)
    try:
        result = distributed.allocate(distributed.sources(options=directory), plan, workers,
                                      output=tmp_path / "plan")
    finally:
        workers.close()
    assert result.units is None
    s = result.summary
    _compare(s, *_one_machine(frame, plan))
    _check(pl.read_parquet(tmp_path / "plan"), frame, plan, s)


def test_a_worker_killed_mid_sifting_gives_the_same_plan(client, tmp_path: Path) -> None:
    n = 4000
    frame, plan = table(n, 8), plan_for(n, 8)
    parts = distributed.sources(options=_write_parts(frame, tmp_path / "o", 4))
    quiet = distributed.allocate(parts, plan, InProcess())
    calls = []

    def kill_once() -> bool:
        calls.append(1)
        if len(calls) == 3:  # inside the sifting rounds (the first checks are before them)
            pids = client.run(os.getpid)
            os.kill(sorted(pids.values())[0], signal.SIGKILL)
        return False

    workers = Workers(client)
    try:
        result = distributed.allocate(parts, plan, workers, should_stop=kill_once)
    finally:
        workers.close()
    assert len(calls) > 3
    assert result.units is not None and quiet.units is not None
    for key in ("bound", "equity_after", "lp_objective"):
        assert result.summary[key] == pytest.approx(quiet.summary[key], rel=1e-12)
    assert result.units.sort("customer_id").equals(quiet.units.sort("customer_id"))
    client.wait_for_workers(2, timeout=30)
    assert np.isfinite(result.summary["bound"])
