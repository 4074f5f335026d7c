"""``equity serve --cluster``: large Allocate and AllocateStream requests run on a real
LocalCluster of two worker processes and answer as a server without a cluster does (same
summary figures to 1e-9, same plan table, rows in the same order); cancellation and the
deadline stop the distributed run between its rounds and the cluster takes the next call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import polars as pl
import pytest

from benchmarks import generate
from engine.errors import InvalidInputError
from engine.plan import SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import example

BASE = ServerConfig(port=0, workers=8, max_concurrent_solves=2, max_queued_solves=2,
                    small_solve_rows=1000, isolate_solves=False, grace=1.0)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[EquityServer, EquityServer]]:
    with EquityServer(replace(BASE, cluster="local:2", cluster_partition_rows=700)) as on, \
            EquityServer(BASE) as alone:
        assert on.cluster is not None and on.cluster.workers == 2
        yield on, alone


def _compare(a: dict, b: dict) -> None:
    """The cluster's summary ``a`` against one machine's ``b``."""
    assert a["bound"] == pytest.approx(b["bound"], rel=1e-9)
    assert a["lp_objective"] == pytest.approx(b["lp_objective"], rel=1e-9)
    assert a["equity_after"] >= b["equity_after"] - 1e-9 * abs(b["bound"])
    assert a["equity_after"] == pytest.approx(b["equity_after"], rel=1e-9)
    assert a["status"] == b["status"] == "optimal"
    for key in ("customers", "pools", "constraints", "assumptions", "allocator"):
        assert a[key] == b[key], key
    for key in ("total_spend", "equity_before"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    assert a["spend_by_segment"] == pytest.approx(b["spend_by_segment"], rel=1e-6, abs=1e-6)
    assert list(a) == list(b)


def _same_plan(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.schema == b.schema
    key = [c for c in ("customer_id", "pool") if c in a.columns]
    assert a.select(key).equals(b.select(key))  # the same rows in the same order
    assert a["equity_after"].sum() == pytest.approx(b["equity_after"].sum(), rel=1e-9)


def test_allocate_on_the_cluster_answers_as_one_machine(servers) -> None:
    on, alone = servers
    customers, prospects, plan = example(3000)
    before = dict(on.cluster.runs)
    with Client(on.address) as c1, Client(alone.address) as c2:
        got = c1.allocate(Portfolio(customers, prospects), plan)
        want = c2.allocate(Portfolio(customers, prospects), plan)
    assert on.cluster.runs["ok"] == before["ok"] + 1  # it did run on the cluster
    assert (got.summary["partitions"], want.summary["partitions"]) == (6, 1)  # 5 + the pools
    assert got.summary["lp_columns"] and got.summary["integer_bound"] is not None
    _compare(got.summary, want.summary)
    _same_plan(got.units, want.units)


def test_allocate_stream_of_an_options_table_on_the_cluster(servers) -> None:
    on, alone = servers
    _, table, plan = generate.portfolio(generate.Spec(2500, seed=4))
    assert plan.total_budget is not None
    plan = replace(plan, segment_limits=(*plan.segment_limits[:-1],
                                         SegmentLimit("S19", cap=0.07 * plan.total_budget)))
    table = table.sample(fraction=1.0, shuffle=True, seed=1)  # one machine sorts by id
    before = on.cluster.runs["ok"]
    with Client(on.address) as c1, Client(alone.address) as c2:
        got = c1.stream(Portfolio(options=table), plan, batch_rows=2000)
        want = c2.stream(Portfolio(options=table), plan, batch_rows=2000)
    assert on.cluster.runs["ok"] == before + 1
    _compare(got.summary, want.summary)
    _same_plan(got.units, want.units)


def test_small_requests_and_other_allocators_stay_on_this_machine(servers) -> None:
    on, _ = servers
    customers, prospects, plan = example(3000)
    before = dict(on.cluster.runs)
    with Client(on.address) as client:
        small = client.allocate(Portfolio(customers.head(200), prospects), plan)
        greedy = client.allocate(Portfolio(customers, prospects),
                                 replace(plan, allocation=StrategyChoice("greedy"),
                                         segment_limits=tuple(x for x in plan.segment_limits
                                                              if x.minimum is None)))
    assert small.summary["customers"] == 200 and small.summary["partitions"] == 1
    assert greedy.summary["customers"] == 3000 and greedy.summary["allocator"] == "greedy"
    assert on.cluster.runs == before


def test_errors_name_the_rows_of_the_whole_table(servers) -> None:
    on, alone = servers
    customers, prospects, plan = example(3000)
    bad = customers.with_columns(
        pl.when(pl.int_range(pl.len()) == 2500).then(1.5).otherwise(pl.col("retention"))
        .alias("retention"))
    messages = []
    for server in (on, alone):
        with Client(server.address) as client, pytest.raises(InvalidInputError) as info:
            client.allocate(Portfolio(bad, prospects), plan)
        messages.append(str(info.value))
    assert "customers.retention[2500]" in messages[0] and messages[0] == messages[1]


def _until(condition, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


BIG = example(150_000)


def test_a_cancelled_call_stops_the_distributed_run(servers) -> None:
    on, _ = servers
    customers, prospects, plan = BIG
    cluster = on.cluster
    before = dict(cluster.runs)
    with Client(on.address, timeout=120) as client:
        future = client.stub.Allocate.future(
            client.allocate_request(Portfolio(customers, prospects), plan), timeout=120)
        assert _until(lambda: cluster.running == 1, 60) is not None
        assert future.cancel()
        stopped = _until(lambda: cluster.running == 0 and on.active_solves == 0, 60)
        # within the stage running (reading and valuing 150k customers: about 9 s here
        # when only the checks between stages stop it), its tasks cancelled on the workers
        assert stopped is not None and stopped < 5.0, stopped
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        assert cluster.runs["cancelled"] == before["cancelled"] + 1
        assert cluster.runs["ok"] == before["ok"]  # stopped, not run to its end
        again = client.allocate(Portfolio(customers.head(3000), prospects), plan)
    assert again.summary["customers"] == 3000 and cluster.runs["ok"] == before["ok"] + 1


def test_the_deadline_stops_the_distributed_run(servers) -> None:
    on, _ = servers
    customers, prospects, plan = BIG
    cluster = on.cluster
    before = dict(cluster.runs)
    with Client(on.address) as client:
        request = client.allocate_request(Portfolio(customers, prospects), plan)
        with pytest.raises(grpc.RpcError) as info:
            client.stub.Allocate(request, timeout=3.0)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _until(lambda: cluster.running == 0 and on.active_solves == 0, 30) is not None
    assert cluster.runs["ok"] == before["ok"]  # stopped, not run to its end
    assert cluster.runs["cancelled"] == before["cancelled"] + 1  # by the run's should_stop


def test_limits_on_contacts_and_calls_run_on_the_cluster(servers) -> None:
    """Limits on other resources: sifting over the partitions, the same LP and bound as a
    server without a cluster, every limit kept by the plan it answers."""
    from engine.plan import ResourceLimit
    from tests.test_resources import table

    on, alone = servers
    n = 3000
    options = table(n, 11)
    plan = replace(example(10)[2], total_budget=7.0 * n, segment_limits=(),
                   cost=StrategyChoice("spend-table"),
                   resource_limits=(ResourceLimit("contacts", max=0.5 * n),
                                    ResourceLimit("calls", segment="s1", max=0.1 * n)))
    before = on.cluster.runs["ok"]
    with Client(on.address) as c1, Client(alone.address) as c2:
        got = c1.allocate(Portfolio(options=options), plan)
        want = c2.allocate(Portfolio(options=options), plan)
    assert on.cluster.runs["ok"] == before + 1
    a, b = got.summary, want.summary
    assert a["partitions"] > 1 and a["method"] == "lagrange"
    assert a["bound"] == pytest.approx(b["bound"], rel=1e-9)
    assert a["lp_objective"] == pytest.approx(b["lp_objective"], rel=1e-9)
    assert a["equity_after"] <= b["bound"] * (1 + 1e-12)
    assert a["integer_bound"] >= a["equity_after"]
    assert a["status"] in ("optimal", "feasible")
    chosen = got.units.select("customer_id", "level").join(options, on=["customer_id", "level"])
    assert chosen.height == n
    assert chosen["contacts"].sum() <= 0.5 * n * (1 + 1e-9)
    assert chosen.filter(pl.col("segment") == "s1")["calls"].sum() <= 0.1 * n * (1 + 1e-9)
    assert got.units.schema == want.units.schema
    assert got.units["customer_id"].equals(want.units["customer_id"])  # the same row order
    assert got.units["equity_after"].sum() == pytest.approx(a["equity_after"], rel=1e-12)
