"""Large allocations of the service on a Dask cluster (``equity serve --cluster SPEC``).

``ClusterSolver`` connects once when the server starts (``local:N`` starts N worker
processes, ``tcp://HOST:PORT`` joins a running scheduler) and runs the exact allocation of
``engine.optimize.distributed`` for each large request that takes a solve slot: the
request's tables are checked here as one machine checks them (so errors name the same
fields and rows), written as a partitioned Parquet dataset in a temporary directory the
workers read (under ``ServerConfig.cluster_dir``; with ``tcp://`` that directory must be on
a filesystem every worker sees at the same path), allocated there, and the plan the workers
write back is read into the response. The summary is the single machine's
(``engine.summary.PlanSummary``) and so is the plan's table, rows in the same order.

The call's ``should_stop`` (client gone, deadline passed, ``max_solve_seconds`` spent) is
checked between the run's stages and rounds and polled while the workers run a stage; a
stopped run cancels its tasks, releases its partitions on the workers and the cluster takes
the next request. A cluster that loses its workers beyond
retry fails the call (INTERNAL, naming the cluster), never with a partial plan.

Plans the cluster does not run (an allocator other than ``lp``, a transaction log to value,
response curves in the plan) and small requests are solved on this machine as before;
limits on other resources run on the cluster (``engine.optimize.sifting_cluster``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import SolverError
from engine.limits import Limits
from engine.optimize.partition import Source
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.service.config import ServerConfig
from engine.service.logs import log
from engine.summary import PlanSummary


@dataclass
class ClusterPlan:
    """What the servicer sends back: the plan's table and its summary."""

    units: pl.DataFrame
    summary: PlanSummary


class ClusterSolver:
    """A connection to a Dask cluster, shared by the server's solves."""

    def __init__(self, config: ServerConfig) -> None:
        assert config.cluster is not None
        self.spec = config.cluster
        self.directory = config.cluster_dir
        self.partition_rows = config.cluster_partition_rows
        self.client: Any = None
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self.running = 0  # distributed runs in progress
        self.runs: dict[str, int] = {"ok": 0, "cancelled": 0, "failed": 0}

    def start(self) -> None:
        from engine.optimize.cluster import ClusterError, connect

        try:
            self.client = self._stack.enter_context(connect(self.spec, field="cluster"))
        except ClusterError as exc:
            raise OSError(str(exc)) from None
        workers = len(self.client.scheduler_info().get("workers", {}))
        log.info("cluster %s: %d workers", self.spec, workers,
                 extra={"fields": {"cluster": self.spec, "cluster_workers": workers}})

    def close(self) -> None:
        """Disconnect (and shut down a ``local:N`` cluster's processes)."""
        self._stack.close()
        self.client = None

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    @staticmethod
    def accepts(portfolio: Portfolio, plan: Plan) -> bool:
        """Whether the cluster runs this plan (else this machine does)."""
        return (plan.allocation.name == "lp" and portfolio.transactions is None
                and not plan.response_curves)

    def solve(self, portfolio: Portfolio, plan: Plan, limits: Limits,
              should_stop: Callable[[], bool]) -> ClusterPlan:
        from engine.errors import CancelledError
        from engine.optimize import distributed
        from engine.optimize.cluster import ClusterError, Workers

        # the single machine's checks first: its errors name the rows of the whole table
        limits.check_inputs(portfolio, plan)
        plan.validate()
        portfolio.validated()
        with self._scratch() as scratch, self._counted():
            sources = write_dataset(portfolio, scratch, self._parts(portfolio))
            workers = Workers(self.client, should_stop)
            try:
                result = distributed.allocate(sources, plan, workers, output=scratch / "plan",
                                              should_stop=should_stop)
            except CancelledError:
                self._count("cancelled")
                raise
            except ClusterError as exc:
                self._count("failed")
                raise SolverError(f"cluster {self.spec}: {exc}", "cluster") from None
            finally:
                workers.close()
            units = pl.read_parquet(scratch / "plan")
        self._count("ok")
        return ClusterPlan(units, result.summary)

    def _parts(self, portfolio: Portfolio) -> int:
        rows = max(t.height for t in (portfolio.customers, portfolio.options, portfolio.prospects)
                   if t is not None)
        return max(self.workers, -(-rows // self.partition_rows))

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix="equity-cluster-", dir=self.directory))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.runs[outcome] += 1

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1


def write_dataset(portfolio: Portfolio, directory: Path, parts: int) -> list[Source]:
    """The request's tables as partitioned Parquet datasets under ``directory``: customers
    in ``parts`` contiguous slices (the plan's rows come back in the input's order), an
    options table without customers in ``parts`` ranges of sorted customer ids (all rows of
    a customer in one file, as one machine orders them), with customers one shared file;
    the pools one file."""
    from engine.optimize.distributed import sources

    customers, options, prospects = portfolio.customers, portfolio.options, portfolio.prospects
    paths: dict[str, Path | None] = {"customers": None, "options": None, "prospects": None}
    if customers is not None:
        paths["customers"] = _slices(customers, directory / "customers", parts)
        if options is not None:
            shared = paths["options"] = directory / "options.parquet"
            options.write_parquet(shared)
    elif options is not None:
        rank = options["customer_id"].rank("dense").cast(pl.Int64) - 1
        count = options["customer_id"].n_unique()
        chunk = pl.Series("__part", (rank * parts) // max(count, 1))
        out = directory / "options"
        out.mkdir()
        for (i,), table in options.with_columns(chunk).partition_by(
                "__part", as_dict=True, maintain_order=True).items():
            table.drop("__part").write_parquet(out / f"part-{int(i):05d}.parquet")
        paths["options"] = out
    if prospects is not None:
        pools = paths["prospects"] = directory / "prospects.parquet"
        prospects.write_parquet(pools)
    return sources(paths["customers"], paths["prospects"], paths["options"])


def _slices(table: pl.DataFrame, directory: Path, parts: int) -> Path:
    directory.mkdir()
    size = max(1, -(-table.height // parts))
    for i, start in enumerate(range(0, max(table.height, 1), size)):
        table.slice(start, size).write_parquet(directory / f"part-{i:05d}.parquet")
    return directory


__all__ = ["ClusterPlan", "ClusterSolver", "write_dataset"]
