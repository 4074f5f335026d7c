"""The distributed allocation against the single machine and highspy: in this process over
partitions, then on a real LocalCluster of two worker processes (allocate, compare, a worker
killed mid-run, clean shutdown) and through ``equity allocate --cluster``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks import generate, reference
from engine.errors import InvalidInputError
from engine.optimize import collect, distributed, partition
from engine.optimize.cluster import ClusterError, InProcess, Workers, check_spec, connect
from engine.optimize.partition import load as partition_load
from engine.pipeline import allocate as single_allocate
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.servers import alive, local_cluster

EQUITY = str(Path(sys.executable).with_name("equity"))


def _options_case(n: int, seed: int) -> tuple[pl.DataFrame, Plan]:
    _, table, plan = generate.portfolio(generate.Spec(n, seed=seed))
    budget = plan.total_budget
    assert budget is not None
    limits = (*plan.segment_limits[:-1], SegmentLimit("S19", cap=0.07 * budget,
                                                      minimum=0.03 * budget))
    return table, replace(plan, segment_limits=limits)


def _write_parts(table: pl.DataFrame, directory: Path, parts: int) -> Path:
    """A partitioned dataset: customers dealt round-robin to ``parts`` files."""
    directory.mkdir(parents=True)
    ids = table["customer_id"].unique().sort()
    for i in range(parts):
        chosen = ids.gather(np.arange(i, ids.len(), parts))
        table.filter(pl.col("customer_id").is_in(chosen.implode())).write_parquet(
            directory / f"part-{i}.parquet")
    return directory


def _check_plan(units: pl.DataFrame, table: pl.DataFrame, plan: Plan, s: dict) -> None:
    """Every customer once at one of its own levels, every limit kept, sums as reported."""
    n = table["customer_id"].n_unique()
    assert units.height == n and units["customer_id"].n_unique() == n
    offered = table.select("customer_id", "level")
    assert units.join(offered, on=["customer_id", "level"], how="inner").height == n
    spend = dict(units.group_by("segment").agg(pl.col("spend").sum()).iter_rows())
    assert plan.total_budget is not None
    assert units["spend"].sum() <= plan.total_budget * (1 + 1e-9)
    for lim in plan.segment_limits:
        if lim.cap is not None:
            assert spend.get(lim.segment, 0.0) <= lim.cap * (1 + 1e-9)
        if lim.minimum is not None:
            assert spend.get(lim.segment, 0.0) >= lim.minimum * (1 - 1e-9)
    assert units["equity_after"].sum() == pytest.approx(s["equity_after"], rel=1e-12)


@pytest.mark.parametrize(("n", "parts", "seed"), [(3000, 3, 3), (6000, 5, 17)])
def test_partitions_reach_the_single_machine_optimum(
    tmp_path: Path, n: int, parts: int, seed: int
) -> None:
    table, plan = _options_case(n, seed)
    result = distributed.allocate(
        distributed.sources(options=_write_parts(table, tmp_path / "options", parts)), plan,
        InProcess())
    s = result.summary
    assert s["partitions"] == parts
    single = single_allocate(Portfolio(None, None, table), plan).summary
    caps = {x.segment: x.cap for x in plan.segment_limits if x.cap is not None}
    mins = {x.segment: x.minimum for x in plan.segment_limits if x.minimum is not None}
    assert plan.total_budget is not None
    independent = reference.highs_direct(
        reference.model_from_table(table, plan.total_budget, caps, mins))
    assert s["lp_objective"] == pytest.approx(independent.objective, rel=1e-9)
    assert s["bound"] == pytest.approx(single["bound"], rel=1e-9)
    assert s["bound"] >= independent.objective * (1 - 1e-12)
    # the integer plan: as good as the single machine's (its repair moves a superset)
    assert s["equity_after"] >= single["equity_after"] - 1e-9 * abs(single["bound"])
    assert s["status"] == "optimal"  # the integer optimum, proven within 1e-9 of its bound
    assert s["integer_bound"] - s["equity_after"] <= 1e-9 * s["bound"]
    assert result.units is not None
    _check_plan(result.units, table, plan, s)


def test_a_block_shared_by_partitions_is_filled_once(tmp_path: Path) -> None:
    """Identical customers in every partition share one ratio, hence one block: its spend
    must be handed out across partitions once (at most one customer left between levels)."""
    n = 3000
    table = pl.DataFrame({
        "customer_id": np.repeat(np.arange(n), 3),
        "level": np.tile([0.0, 10.0, 20.0], n),
        "cost": np.tile([0.0, 10.0, 20.0], n),
        "value": np.tile([100.0, 130.0, 140.0], n),  # +3 per unit of spend, then +1
        "segment": ["A"] * (3 * n),
    })
    plan = Plan(total_budget=10.0 * 1234 + 5.0, cost=StrategyChoice("spend-table"))
    result = distributed.allocate(
        distributed.sources(options=_write_parts(table, tmp_path / "o", 4)), plan, InProcess())
    units = result.units
    assert units is not None
    assert result.summary["lp_objective"] == pytest.approx(100.0 * n + 3.0 * (10.0 * 1234 + 5))
    assert units["spend"].sum() <= 10.0 * 1234 + 5.0
    assert (units["level"] == 10.0).sum() == 1234  # the half customer is repaired down
    assert result.summary["gap"] < 1e-3


def test_an_unknown_segment_in_a_limit_names_the_field(tmp_path: Path) -> None:
    table, plan = _options_case(500, 5)
    plan = replace(plan, segment_limits=(SegmentLimit("nowhere", cap=1.0),))
    with pytest.raises(InvalidInputError, match=r"plan\.segment_limits\[0\]\.segment"):
        distributed.allocate(distributed.sources(options=_write_parts(table, tmp_path / "o", 2)),
                             plan, InProcess())


# --- a real LocalCluster of two worker processes ---------------------------------------------


@pytest.fixture(scope="module")
def client():
    yield from local_cluster()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, Plan, dict]:
    table, plan = _options_case(3000, 23)
    directory = _write_parts(table, tmp_path_factory.mktemp("cluster") / "options", 4)
    single = single_allocate(Portfolio(None, None, table), plan).summary
    return directory, table, plan, dict(single)


def test_cluster_matches_one_machine_and_writes_the_plan(client, case, tmp_path: Path) -> None:
    directory, table, plan, single = case
    workers = Workers(client)
    out = tmp_path / "plan"
    try:
        result = distributed.allocate(distributed.sources(options=directory), plan, workers,
                                      output=out)
    finally:
        workers.close()
    s = result.summary
    assert result.units is None  # written by the workers, not gathered
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    assert s["bound"] == pytest.approx(single["bound"], rel=1e-9)
    assert s["equity_after"] >= single["equity_after"] - 1e-9 * abs(single["bound"])
    units = pl.read_parquet(out)
    _check_plan(units, table, plan, s)
    assert units.columns == list(single_allocate(Portfolio(None, None, table.head(50)),
                                                 replace(plan, segment_limits=(),
                                                         total_budget=1.0)).units.columns)


def _kill_one_worker(client) -> None:
    pids = client.run(os.getpid)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)


def test_a_worker_killed_mid_run_gives_the_same_plan(client, case, tmp_path: Path) -> None:
    """The killed worker's partitions (built hulls included) are rebuilt from their files on
    the worker left, and the run ends with the plan a run without the fault gives."""
    directory, _, plan, _ = case
    parts = distributed.sources(options=directory)
    quiet = distributed.allocate(parts, plan, InProcess())
    calls = []

    def kill_once() -> bool:
        calls.append(1)
        if len(calls) == 2:  # after the hulls are on the workers, before the LP's first round
            _kill_one_worker(client)
        return False

    workers = Workers(client)
    try:
        result = distributed.allocate(parts, plan, workers, should_stop=kill_once)
    finally:
        workers.close()
    assert len(calls) > 2
    assert result.units is not None and quiet.units is not None
    for key in ("bound", "equity_after", "lp_objective", "total_spend"):
        assert result.summary[key] == pytest.approx(quiet.summary[key], rel=1e-12)
    assert result.units.sort("customer_id").equals(quiet.units.sort("customer_id"))
    client.wait_for_workers(2, timeout=30)


def test_a_task_that_keeps_killing_workers_is_a_clear_error(client) -> None:
    """No retry left: the run stops with ClusterError, never a partial plan."""
    old = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler,
                                                           "allowed_failures", 0))
    workers = Workers(client)
    try:
        workers.start(lambda source: source, [1, 2])
        with pytest.raises(ClusterError, match="lost the workers"):
            workers.map(lambda part: os._exit(1))
    finally:
        workers.close()
        client.run_on_scheduler(lambda dask_scheduler, n=old: setattr(
            dask_scheduler, "allowed_failures", n))
    client.wait_for_workers(2, timeout=30)


def test_should_stop_cancels_a_running_stage(client) -> None:
    """A stage running on the workers stops when ``should_stop`` turns true: its tasks are
    cancelled and the call raises CancelledError, long before the tasks would end."""
    from engine.errors import CancelledError

    started = time.monotonic()
    workers = Workers(client, should_stop=lambda: time.monotonic() - started > 0.5)
    try:
        workers.start(lambda source: source, [1, 2])  # done before the stop: no error
        with pytest.raises(CancelledError):
            workers.map(lambda part: time.sleep(6))
        assert time.monotonic() - started < 4  # the tasks alone take 6 s
    finally:
        workers.close()
    time.sleep(max(0.0, started + 7 - time.monotonic()))  # the workers idle again
    client.wait_for_workers(2, timeout=30)


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ClusterError, match=r"cannot reach the dask scheduler at tcp://"), \
            connect("tcp://127.0.0.1:9", timeout=0.5):
        pass


# --- the command line -------------------------------------------------------------------------


def test_cli_allocates_on_a_local_cluster(tmp_path: Path) -> None:
    customers, prospects, plan = example(3000)
    (tmp_path / "customers").mkdir()
    for i in range(3):
        customers[i::3].write_parquet(tmp_path / "customers" / f"part-{i}.parquet")
    prospects.write_parquet(tmp_path / "prospects.parquet")
    (tmp_path / "plan.json").write_text(plan.to_json())
    out = tmp_path / "plan"
    run = subprocess.run(
        [EQUITY, "allocate", "--customers", str(tmp_path / "customers"), "--prospects",
         str(tmp_path / "prospects.parquet"), "--plan", str(tmp_path / "plan.json"),
         "--cluster", "local:2", "--output", str(out), "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    s = json.loads(run.stdout)
    single = single_allocate(Portfolio(customers, prospects), plan)
    assert s["partitions"] == 4  # three files of customers, one of pools
    assert s["bound"] == pytest.approx(single.summary["bound"], rel=1e-9)
    assert s["equity_after"] >= single.summary["equity_after"] - 1e-9 * abs(s["bound"])
    assert (s["customers"], s["pools"]) == (3000, single.summary["pools"])
    units = pl.read_parquet(out)
    assert units.schema == single.units.schema
    assert units.height == single.units.height
    assert units["equity_after"].sum() == pytest.approx(s["equity_after"], rel=1e-12)


@pytest.mark.parametrize("spec", ["local:0", "local", "http://host:80", "tcp://host"])
def test_a_wrong_cluster_names_the_flag(spec: str) -> None:
    with pytest.raises(InvalidInputError, match=r"--cluster.*local:N"):
        check_spec(spec)


def test_cli_refuses_a_wrong_cluster(tmp_path: Path) -> None:
    run = subprocess.run(
        [EQUITY, "allocate", "--options", str(tmp_path / "o.parquet"), "--budget", "1",
         "--cluster", "local:0"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "--cluster" in run.stderr and "local:N" in run.stderr


# --- the summary's shape, and ids unique across partitions -------------------------------------


def test_the_summary_has_the_single_machines_shape(tmp_path: Path) -> None:
    """The same typed PlanSummary: every field, assumptions and notes as on one machine."""
    from engine.summary import PlanSummary

    customers, prospects, plan = example(2000)
    (tmp_path / "c").mkdir()
    for i in range(3):
        customers[i::3].write_parquet(tmp_path / "c" / f"part-{i}.parquet")
    prospects.write_parquet(tmp_path / "p.parquet")
    result = distributed.allocate(distributed.sources(tmp_path / "c", tmp_path / "p.parquet"),
                                  plan, InProcess())
    single = single_allocate(Portfolio(customers, prospects), plan).summary
    s = result.summary
    assert isinstance(s, PlanSummary)
    assert list(s.to_dict()) == list(single.to_dict())
    assert s.assumptions == single.assumptions and s.assumptions["responses"]
    assert [n for n in single.notes if n.startswith("response:")] == [
        n for n in s.notes if n.startswith("response:")]
    assert (s.partitions, single.partitions) == (4, 1)
    assert s.lp_columns and not single.lp_columns
    assert s.integer_bound is not None and single.integer_bound is not None
    assert s.integer_bound >= s.equity_after
    assert s.gap == pytest.approx((s.integer_bound - s.equity_after) / s.integer_bound, abs=1e-15)
    assert s.constraints == single.constraints
    assert set(s.shadow_prices) == set(single.shadow_prices)


@pytest.mark.parametrize("kind", ["customers", "options"])
def test_a_customer_in_two_partitions_is_an_error_naming_it(tmp_path: Path, kind: str) -> None:
    if kind == "customers":
        customers, _, plan = example(600)
        table = customers.with_columns(pl.col("customer_id").cast(pl.String))
    else:
        table, plan = _options_case(600, 7)
    ids = table["customer_id"].unique(maintain_order=True)
    first, second = ids[:300], ids[300:]
    twice = ids[123]
    (tmp_path / "d").mkdir()
    table.filter(pl.col("customer_id").is_in(first.implode())).write_parquet(
        tmp_path / "d" / "a.parquet")
    table.filter(pl.col("customer_id").is_in(second.implode()) |
                 (pl.col("customer_id") == twice)).write_parquet(tmp_path / "d" / "b.parquet")
    parts = (distributed.sources(tmp_path / "d") if kind == "customers"
             else distributed.sources(options=tmp_path / "d"))
    with pytest.raises(InvalidInputError, match=rf"{kind}\.customer_id.*{twice!r}.*a\.parquet"
                       r".*b\.parquet") as info:
        distributed.allocate(parts, plan, InProcess())
    assert info.value.violations[0].field.startswith(f"{kind}.customer_id")


@pytest.mark.parametrize("ranges", [64, 2])
def test_the_id_check_is_exact_over_many_hash_ranges(tmp_path: Path, monkeypatch,
                                                      ranges: int) -> None:
    """Each partition's hashes cut into ranges of the hash space, each range merged apart:
    every hash lands in exactly one range, a repeat in any range is found, distinct ids
    pass (one range per partition, or fewer ranges than partitions)."""
    monkeypatch.setattr(collect, "ID_RANGES", ranges)
    table, plan = _options_case(3000, 11)
    directory = _write_parts(table, tmp_path / "o", 3)
    workers = InProcess()
    workers.start(partition_load, distributed.sources(options=directory), plan)
    for n in (1, 2, 31):
        pieces = [partition.id_ranges(part, n) for part in workers.parts]
        assert all(len(p) == n for p in pieces)
        for part, cut in zip(workers.parts, pieces, strict=True):
            assert np.array_equal(np.concatenate(cut), part.id_hash)  # all, once, in order
        edges = [(k << 64) // n for k in range(n + 1)]
        for j in range(n):
            got = np.concatenate([p[j] for p in pieces])
            assert ((got >= np.uint64(edges[j])) if j else got >= 0).all()
            if j + 1 < n:
                assert (got < np.uint64(edges[j + 1])).all()
            assert not partition.repeated(*(p[j] for p in pieces)).size
    collect.check_unique_ids(workers)  # 3000 distinct ids: no error
    extra = table.filter(pl.col("customer_id") == table["customer_id"][-1])
    extra.write_parquet(directory / "part-9.parquet")
    workers.start(partition_load, distributed.sources(options=directory), plan)
    with pytest.raises(InvalidInputError, match="is in two partitions"):
        collect.check_unique_ids(workers)


def test_the_id_check_runs_among_the_workers(client, tmp_path: Path) -> None:
    """On a real cluster: the hashes are merged on the workers (the driver gathers one small
    array per range, not 8 bytes per customer), and a customer in two partitions is still
    named with both files."""
    customers, _, plan = example(4000)
    directory = tmp_path / "c"
    directory.mkdir()
    for i in range(4):
        customers.slice(1000 * i, 1000).write_parquet(directory / f"part-{i}.parquet")
    workers = Workers(client)
    gathered: list[int] = []
    gather = client.gather

    def counted(futures, *args, **kwargs):
        out = gather(futures, *args, **kwargs)
        gathered.extend(getattr(o, "nbytes", 0) for o in (out if isinstance(out, list) else []))
        return out

    try:
        workers.start(partition_load, distributed.sources(directory), plan)
        client.gather = counted
        collect.check_unique_ids(workers)
        assert len(gathered) == 4 and sum(gathered) == 0  # four ranges, nothing repeated
        customers.slice(2500, 1).write_parquet(directory / "part-9.parquet")
        workers.start(partition_load, distributed.sources(directory), plan)
        with pytest.raises(InvalidInputError, match=r"'C0002500' is in two partitions: row 500 "
                           r"of .*part-2\.parquet and row 0 of .*part-9\.parquet"):
            collect.check_unique_ids(workers)
    finally:
        client.gather = gather
        workers.close()


# --- tcp:// against a real external scheduler ---------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def external_scheduler(tmp_path: Path):
    """``dask scheduler`` and ``dask worker`` processes on loopback, as an operator runs
    them; stopped with SIGTERM at the end and checked gone."""
    dask_cli = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "dask.log").open("w")
    scheduler = subprocess.Popen(
        [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=log, stderr=subprocess.STDOUT)
    worker = subprocess.Popen(
        [dask_cli, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
         "--host", "127.0.0.1", "--memory-limit", "1GiB"],
        stdout=log, stderr=subprocess.STDOUT)
    pids: set[int] = set()
    try:
        with connect(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
            pids = set(c.run(os.getpid).values())
        assert len(pids) == 2 and not pids & {os.getpid(), scheduler.pid, worker.pid}
        yield address, pids
    finally:
        for proc in (worker, scheduler):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - shows as a failure below
                proc.kill()
                proc.wait()
        log.close()
    assert worker.returncode is not None and scheduler.returncode is not None
    deadline = time.monotonic() + 10  # the worker processes end with their nanny
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def test_cli_allocates_on_an_external_scheduler(external_scheduler, tmp_path: Path) -> None:
    """``--cluster tcp://HOST:PORT``: the scheduler and workers were started apart (this
    machine's filesystem is the shared one), the plan matches one machine's, the workers
    stay up after the run and end cleanly with their scheduler."""
    address, pids = external_scheduler
    table, plan = _options_case(3000, 29)
    directory = _write_parts(table, tmp_path / "options", 3)
    (tmp_path / "plan.json").write_text(plan.to_json())
    out = tmp_path / "plan"
    run = subprocess.run(
        [EQUITY, "allocate", "--options", str(directory), "--plan", str(tmp_path / "plan.json"),
         "--cluster", address, "--output", str(out), "--json"],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    s = json.loads(run.stdout)
    single = single_allocate(Portfolio(None, None, table), plan).summary
    assert s["partitions"] == 3 and s["status"] == "optimal"
    assert s["bound"] == pytest.approx(single["bound"], rel=1e-9)
    assert s["equity_after"] >= single["equity_after"] - 1e-9 * abs(single["bound"])
    assert list(s) == list(single.to_dict())
    units = pl.read_parquet(out)
    _check_plan(units, table, plan, s)
    assert all(alive(p) for p in pids)  # a run does not stop an operator's workers


# --- the integer proof's core grows as on one machine --------------------------------------------


def test_the_core_grows_until_the_plan_is_proven(tmp_path: Path, monkeypatch) -> None:
    """A first core far too small (50 levels for thousands of candidates): the core grows
    fourfold per round and the plan is proven optimal, the single machine's optimum."""
    table, plan = _options_case(3000, 3)
    parts = distributed.sources(options=_write_parts(table, tmp_path / "o", 4))
    monkeypatch.setattr(distributed, "FIRST_CORE", 50)
    s = distributed.allocate(parts, plan, InProcess()).summary
    note = s.notes[-1]
    assert note.startswith("integer plan proven optimal") and "(5 rounds)" in note, note
    assert s.status == "optimal" and s.gap <= 1e-9
    single = single_allocate(Portfolio(None, None, table), plan).summary
    assert single.status == "optimal"
    assert s.equity_after == pytest.approx(single.equity_after, rel=1e-9)


def test_a_core_capped_too_small_reports_a_valid_gap(tmp_path: Path, monkeypatch) -> None:
    """With MAX_CORE reached before the proof, the plan is feasible with a gap to a bound
    that still holds (at least the proven optimum)."""
    table, plan = _options_case(3000, 3)
    parts = distributed.sources(options=_write_parts(table, tmp_path / "o", 4))
    monkeypatch.setattr(distributed, "FIRST_CORE", 20)
    monkeypatch.setattr(distributed, "MAX_CORE", 80)
    s = distributed.allocate(parts, plan, InProcess()).summary
    single = single_allocate(Portfolio(None, None, table), plan).summary
    assert s.status == "feasible" and "not proven optimal" in s.notes[-1]
    assert s.integer_bound is not None
    assert s.integer_bound >= single.equity_after - 1e-9 * abs(single.bound)
    assert s.gap == pytest.approx((s.integer_bound - s.equity_after) / s.integer_bound)
    assert s.gap > 1e-9
