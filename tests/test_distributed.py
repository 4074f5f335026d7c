"""engine.optimize.distributed over Dask partitions against the single-machine LP and highspy."""

from __future__ import annotations

from dataclasses import replace

import pytest

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

from benchmarks import generate, reference  # noqa: E402
from engine.constraints import build_constraints  # noqa: E402
from engine.optimize import distributed, lp  # noqa: E402
from engine.options import from_table  # noqa: E402
from engine.plan import SegmentLimit  # noqa: E402


@pytest.mark.parametrize(("n", "partitions", "seed"), [(4000, 3, 3), (9000, 6, 17)])
def test_partitions_reach_the_single_machine_optimum(n: int, partitions: int, seed: int) -> None:
    _, table, plan = generate.portfolio(generate.Spec(n, seed=seed))
    budget = plan.total_budget
    assert budget is not None
    limits = (*plan.segment_limits[:-1], SegmentLimit("S19", cap=0.07 * budget,
                                                      minimum=0.03 * budget))
    plan = replace(plan, segment_limits=limits)
    frame = dd.from_pandas(table.to_pandas().set_index("customer_id"),
                           npartitions=partitions, sort=True)
    with dask.config.set(scheduler="synchronous"):
        result = distributed.allocate(frame, plan)
        units = result.units.compute()
    s = result.summary
    assert s["partitions"] == partitions

    options = from_table(table)
    single = lp.solve(options, build_constraints(plan, options))
    caps = {x.segment: x.cap for x in plan.segment_limits if x.cap is not None}
    mins = {x.segment: x.minimum for x in plan.segment_limits if x.minimum is not None}
    independent = reference.highs_direct(reference.model_from_table(table, budget, caps, mins))
    assert s["lp_objective"] == pytest.approx(independent.objective, rel=1e-9)
    assert s["lp_objective"] == pytest.approx(single.lp_objective, rel=1e-12)
    assert s["bound"] == pytest.approx(single.bound, rel=1e-9)
    assert s["bound"] >= independent.objective * (1 - 1e-12)

    # the per-customer plan: every customer once, at one of its levels, every limit kept
    assert len(units) == n and units["customer_id"].is_unique
    offered = table.select("customer_id", "level").to_pandas()
    merged = units.merge(offered, on=["customer_id", "level"], how="inner")
    assert len(merged) == n  # an integral level each
    spend = units.groupby("segment")["spend"].sum()
    assert units["spend"].sum() <= budget * (1 + 1e-9)
    for segment, cap in caps.items():
        assert spend.get(segment, 0.0) <= cap * (1 + 1e-9)
    for segment, minimum in mins.items():
        assert spend.get(segment, 0.0) >= minimum * (1 - 1e-9)
    equity = float(units["equity_after"].sum())
    assert equity == pytest.approx(s["equity_after"], rel=1e-12)
    assert equity <= s["bound"] * (1 + 1e-12)
    assert s["gap"] == pytest.approx((s["bound"] - equity) / s["bound"], rel=1e-6, abs=1e-15)
    assert s["gap"] < 1e-3


def test_a_block_shared_by_partitions_is_filled_once() -> None:
    """Identical customers in every partition share one ratio, hence one block: its spend
    must be handed out across partitions once (at most one customer left between levels)."""
    import polars as pl

    from engine.plan import Plan

    n = 3000
    table = pl.DataFrame({
        "customer_id": [i for i in range(n) for _ in range(3)],
        "level": [0.0, 10.0, 20.0] * n,
        "cost": [0.0, 10.0, 20.0] * n,
        "value": [100.0, 130.0, 140.0] * n,  # +3 per unit of spend, then +1
        "segment": ["A"] * (3 * n),
    })
    plan = Plan(total_budget=10.0 * 1234 + 5.0)  # 1234.5 customers' first step
    frame = dd.from_pandas(table.to_pandas().set_index("customer_id"), npartitions=4,
                           sort=True)
    with dask.config.set(scheduler="synchronous"):
        result = distributed.allocate(frame, plan)
        units = result.units.compute()
    assert result.summary["lp_objective"] == pytest.approx(100.0 * n + 3.0 * (10.0 * 1234 + 5))
    assert units["spend"].sum() <= plan.total_budget
    assert (units["level"] == 10.0).sum() == 1234  # the half customer is repaired down
    assert result.summary["repaired_customers"] == 1
