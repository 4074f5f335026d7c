"""``equity_engine.v1.EquityService``: seven RPCs, each one converting its messages
(``engine.service.wire``, ``Plan.from_proto``) and delegating the work to the engine:
``Allocate`` and ``AllocateStream`` to ``engine.pipeline.allocate`` (large solves in a
worker process, ``engine.service.solve_pool``), ``Score`` to the metric strategies,
``ListPlugins`` to the registry, ``Frontier`` to ``engine.planning.frontier``,
``FitResponse`` to ``engine.response`` (``engine.service.curves``), ``FitClv`` to
``engine.clv.run`` (``engine.service.clv``).

Errors are raised, never set here: the service interceptor maps them to statuses.
Admission (``engine.service.admission``) comes first: a large solve and every frontier take
a solve slot, and each gets ``should_stop``: true once the client has gone, the deadline has
passed or the work has run ``max_solve_seconds`` (RESOURCE_EXHAUSTED naming that limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import grpc
import polars as pl

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.errors import (
    CancelledError,
    FieldViolation,
    InvalidInputError,
    LimitExceededError,
    SolverError,
)
from engine.pipeline import apply_metric, derive_customers
from engine.plan import Plan, StrategyChoice
from engine.planning.uncertainty import allocate_with_uncertainty
from engine.plugins import Registry
from engine.portfolio import CUSTOMERS, Column, Portfolio, validate_table
from engine.result import PlanResult
from engine.service import wire
from engine.service.admission import SolveBudget, SolveGate, stopper
from engine.service.cluster import ClusterPlan, ClusterSolver
from engine.service.config import MiB, ServerConfig
from engine.service.logs import call_of, log
from engine.service.metrics import Metrics
from engine.service.solve_pool import EncodedPlan, SolvePool
from engine.service.streams import BoundedStream
from engine.strategies import Metric


class EquityServicer(service_pb2_grpc.EquityServiceServicer):
    """The RPCs of ``equity_engine.v1.EquityService``."""

    # A request smaller than this is decoded in the server's process even when its solve is
    # large: reading its tables' metadata first would cost about as much (some 40 us for
    # 100 customers). Larger ones of large solves are decoded by the solve worker.
    worker_decode_bytes = 64 << 10

    def __init__(self, registry: Registry, config: ServerConfig, gate: SolveGate) -> None:
        self.registry = registry
        self.config = config
        self.gate = gate
        self.pool: SolvePool | None = None  # set by EquityServer.start when isolating solves
        self.metrics: Metrics | None = None  # set by EquityServer when metrics are on
        self.cluster: ClusterSolver | None = None  # set by EquityServer with --cluster
        self._plugins = wire.plugins_to_proto(registry.describe(), registry.failures)

    def Allocate(
        self, request: service_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> service_pb2.AllocateResponse | bytes:
        wire.check_format(request.response_format, "response_format")
        plan = Plan.from_proto(request.plan)
        fmt = request.response_format or wire.first_format(
            request.portfolio.customers, request.portfolio.prospects, request.portfolio.options
        )
        encoding = wire.UnitsEncoding(fmt)
        tables = self._undecoded(request.portfolio, plan, context)
        if tables is not None:  # a large solve in a worker, which decodes the tables
            data = self._respond(tables, plan, context, encoding)
            if len(data) > self.config.max_message_bytes:
                raise LimitExceededError("max_message_bytes", len(data),
                                         self.config.max_message_bytes)
            return data  # as the worker serialized it (the interceptor sends bytes as they are)
        portfolio = self._decode(request.portfolio)
        self._check_rows(portfolio)
        result = self._solve(portfolio, plan, context, admitted=False, encoding=encoding)
        response = service_pb2.AllocateResponse(
            summary=wire.summary_to_proto(result.summary),
            units=_units(result, encoding)[0],
        )
        self._check_size(response)
        return response

    def AllocateStream(
        self,
        request_iterator: Iterator[service_pb2.AllocateStreamRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[service_pb2.AllocateStreamResponse]:
        # the upload takes a place among the streams receiving (not a solve's: a stream that
        # sends nothing must not block Allocate or Frontier), within the stream limits
        stream = BoundedStream(request_iterator, self.config)
        try:
            with self.gate.uploading():
                header, portfolio, fmt = wire.receive_stream(
                    stream, self.config.max_rows, max_bytes=self.config.max_decoded_bytes)
        finally:
            stream.close()
        wire.check_format(header.response_format, "header.response_format")
        plan = Plan.from_proto(header.plan)  # "plan.*" paths, as in Allocate
        self._check_rows(portfolio)
        limit = self.config.max_message_bytes
        encoding = wire.UnitsEncoding(header.response_format or fmt, batched=True,
                                      batch_rows=header.response_batch_rows,
                                      target_bytes=min(2 * MiB, limit // 2))
        result = self._solve(portfolio, plan, context, admitted=False, encoding=encoding)
        for table in _units(result, encoding):  # one message per batch of rows
            message = service_pb2.AllocateStreamResponse(units=table)
            if message.ByteSize() > limit:  # only with a response_batch_rows too large
                raise LimitExceededError("max_message_bytes", message.ByteSize(), limit)
            yield message
        yield service_pb2.AllocateStreamResponse(summary=wire.summary_to_proto(result.summary))

    def _table(self, message: portfolio_pb2.Table, name: str,
               context: grpc.ServicerContext) -> pl.DataFrame | None:
        """A request's table decoded within the server's limits, its rows noted for the
        access log (``None`` when the request sent none)."""
        table = wire.decode_table(message, name, max_rows=self.config.max_rows,
                                  max_bytes=self.config.max_decoded_bytes)
        rows = table.height if table is not None else 0
        _note_rows(context, rows)
        if rows > self.config.max_rows:
            raise LimitExceededError("max_rows", rows, self.config.max_rows)
        return table

    def Score(
        self, request: service_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> service_pb2.ScoreResponse:
        wire.check_format(request.response_format, "response_format")
        plan = Plan.from_proto(request.plan)
        table = self._table(request.customers, "customers", context)
        if table is None:
            raise InvalidInputError.single("customers", "a table of rows to score is required")
        if len(request.metrics) > self.config.max_metrics:
            raise LimitExceededError("max_metrics", len(request.metrics), self.config.max_metrics)
        metrics = self._metrics(list(request.metrics) or [plan.metric.name], plan.metric)
        fmt = request.response_format or wire.first_format(request.customers)
        if any(m.input_table == "transactions" for m in metrics):  # e.g. bgnbd: a log in
            if len(metrics) > 1:
                raise InvalidInputError.single(
                    "metrics", "a transactions metric turns the log into customers: score it alone"
                )
            derived = derive_customers(metrics[0], table, plan, self.registry)
            return service_pb2.ScoreResponse(scores=wire.encode_table(derived, fmt))
        table = _score_inputs(table, metrics)
        scored = table
        for metric in metrics:
            scored = apply_metric(metric, scored, plan, self.registry)
        produced = [c for m in metrics for c in m.produces] + [
            c for c in scored.columns if c not in table.columns
        ]
        keep: list[str] = [c for c in ("customer_id", "pool") if c in table.columns]
        keep += [c for c in dict.fromkeys(produced) if c in scored.columns and c not in keep]
        return service_pb2.ScoreResponse(scores=wire.encode_table(scored.select(keep), fmt))

    def ListPlugins(
        self, request: service_pb2.ListPluginsRequest, context: grpc.ServicerContext
    ) -> service_pb2.ListPluginsResponse:
        return self._plugins

    def Frontier(
        self, request: service_pb2.FrontierRequest, context: grpc.ServicerContext
    ) -> service_pb2.FrontierResponse:
        from engine.planning.frontier import frontier

        wire.check_format(request.response_format, "response_format")
        plan = Plan.from_proto(request.plan)
        portfolio = self._decode(request.portfolio)
        self._check_rows(portfolio)
        self.config.limits.check_inputs(portfolio, plan)
        _note_rows(context, portfolio.size)
        should_stop = stopper(context)
        # heavier than a solve of the same portfolio: always a slot, in this process
        with self.gate.solve(should_stop, large=True):
            budget = SolveBudget(self.config.max_solve_seconds, should_stop)
            with budget.enforced():
                result = frontier(portfolio, plan, self.registry, progress=budget.checkpoint,
                                  should_stop=budget.should_stop)
        fmt = request.response_format or wire.first_format(
            request.portfolio.customers, request.portfolio.prospects, request.portfolio.options
        )
        response = service_pb2.FrontierResponse(
            points=wire.encode_table(result.points, fmt),
            moves=wire.encode_table(result.moves, fmt),
        )
        response.summary.update(json.loads(json.dumps(result.summary(), default=float)))
        self._check_size(response)
        return response

    def FitResponse(
        self, request: service_pb2.FitResponseRequest, context: grpc.ServicerContext
    ) -> service_pb2.FitResponseResponse:
        from engine.service import curves

        table = self._table(request.experiments, "experiments", context)
        rows = table.height if table is not None else 0
        # a fit is quick once the rows are aggregated; many rows take a slot as a solve would
        with self.gate.solve(stopper(context), large=rows > self.config.small_solve_rows):
            return curves.fits_to_proto(curves.fit_response(table))

    def FitClv(
        self, request: service_pb2.FitClvRequest, context: grpc.ServicerContext
    ) -> service_pb2.FitClvResponse:
        from engine.service import clv

        wire.check_format(request.response_format, "response_format")
        table = self._table(request.transactions, "transactions", context)
        rows = table.height if table is not None else 0
        # the fits read every row: many rows take a solve slot, as a fit of curves does
        with self.gate.solve(stopper(context), large=rows > self.config.small_solve_rows):
            run = clv.fit_clv(request, table)
        assert run.customers is not None
        fmt = request.response_format or wire.first_format(request.transactions)
        response = clv.response_from_run(run, wire.encode_table(run.customers, fmt))
        self._check_size(response)
        return response

    # the work behind the RPCs ----------------------------------------------------------------

    def _decode(self, msg: portfolio_pb2.Portfolio) -> Portfolio:
        return wire.decode_portfolio(msg, max_rows=self.config.max_rows,
                                     max_bytes=self.config.max_decoded_bytes)

    def _undecoded(self, msg: portfolio_pb2.Portfolio, plan: Plan,
                   context: grpc.ServicerContext) -> wire.RequestTables | None:
        """The request's tables undecoded when a solve worker will decode them: a large
        solve (``SolveGate.is_large_rows`` of the rows their metadata declares, within
        ``max_rows`` and ``max_decoded_bytes``) of a request of at least
        ``worker_decode_bytes``, with a pool of workers and no cluster. ``None`` otherwise,
        and for tables whose metadata fails a check: decoded here, as every small request
        is, they get the status they always got."""
        if self.pool is None or self.cluster is not None:
            return None
        call = call_of(context)  # the request's size as received (ByteSize would serialize it)
        if call is not None and call.request_bytes < self.worker_decode_bytes:
            return None
        tables = wire.request_tables(msg, max_rows=self.config.max_rows,
                                     max_bytes=self.config.max_decoded_bytes)
        if tables is None or not self.gate.is_large_rows(tables.size,
                                                         tables.rows.get("options"), plan):
            return None
        return tables

    def _respond(self, tables: wire.RequestTables, plan: Plan, context: grpc.ServicerContext,
                 encoding: wire.UnitsEncoding) -> bytes:
        """The serialized response of a large solve whose tables a worker decodes: admitted
        first, then decoded, checked (``wire.read_portfolio``: the same checks, errors and
        statuses as here), solved and encoded in the worker, within ``max_solve_seconds``."""
        _note_rows(context, tables.size)
        should_stop = stopper(context)
        assert self.pool is not None
        with self.gate.solve(should_stop, large=True):
            budget = SolveBudget(self.config.max_solve_seconds, should_stop)
            call = call_of(context)
            checks = {"max_rows": self.config.max_rows,
                      "max_bytes": self.config.max_decoded_bytes,
                      "max_levels_per_unit": self.config.limits.max_levels_per_unit}
            try:
                with budget.enforced():
                    return self.pool.respond(tables, plan, budget.limits(self.config.limits),
                                             budget.should_stop,
                                             call.request_id if call is not None else "",
                                             encoding, checks)
            finally:
                if self.metrics is not None:
                    self.metrics.solve("worker", time.monotonic() - budget.started)
        raise AssertionError("unreachable")  # pragma: no cover (for mypy)

    def _solve(
        self, portfolio: Portfolio, plan: Plan, context: grpc.ServicerContext, admitted: bool,
        encoding: wire.UnitsEncoding | None = None,
    ) -> PlanResult | ClusterPlan | EncodedPlan:
        """``allocate`` once admitted, within ``max_solve_seconds`` (each solver call is
        also bounded by ``limits.solver_seconds``, at most the same budget); a large solve
        on the cluster when there is one and it runs the plan, else in a worker process
        when there is a pool (which then encodes the plan's table as ``encoding`` says, so
        that the server's process does not)."""
        _note_rows(context, portfolio.size)
        should_stop = stopper(context)
        large = self.gate.is_large(portfolio, plan)
        if not large and self.pool is not None and self.config.small_solve_seconds is not None:
            with self.gate.solve(should_stop, large=False, admitted=admitted):
                found = self._small_solve(portfolio, plan, should_stop,
                                          self.config.small_solve_seconds)
            if found is not None:
                return found
            large = True  # past small_solve_seconds here: solved again as a large solve
        with self.gate.solve(should_stop, large=large, admitted=admitted):
            budget = SolveBudget(self.config.max_solve_seconds, should_stop)
            limits = budget.limits(self.config.limits)
            where = "worker" if self.pool is not None and large else "server"
            cluster = self.cluster
            if (cluster is not None and large and not plan.uncertainty_draws
                    and cluster.accepts(portfolio, plan)):
                where = "cluster"
            try:
                with budget.enforced():
                    if where == "cluster":
                        assert cluster is not None
                        return cluster.solve(portfolio, plan, limits, budget.should_stop)
                    if where == "worker":
                        assert self.pool is not None
                        call = call_of(context)
                        return self.pool.solve(portfolio, plan, limits, budget.should_stop,
                                               call.request_id if call is not None else "",
                                               encoding)
                    return allocate_with_uncertainty(portfolio, plan, self.registry,
                                                     budget.should_stop, limits)
            finally:
                if self.metrics is not None:
                    self.metrics.solve(where, time.monotonic() - budget.started)
        raise AssertionError("unreachable")  # pragma: no cover (for mypy)

    def _small_solve(self, portfolio: Portfolio, plan: Plan, should_stop: Callable[[], bool],
                     seconds: float) -> PlanResult | None:
        """A small solve in the server's process within ``seconds`` (each solver call too),
        or ``None`` when it took longer: the caller then solves it as a large one (in a
        worker), so a request whose rows say small but whose search is long holds neither
        the server's process nor its cores. A plan that came in late is dropped too: a
        solver call cut short by the time limit may have left it short of the plan the
        full budget gives."""
        budget = SolveBudget(seconds, should_stop)
        try:
            result = allocate_with_uncertainty(portfolio, plan, self.registry,
                                               budget.should_stop,
                                               budget.limits(self.config.limits))
        except (CancelledError, SolverError):
            if not budget.ran_out():
                raise
            result = None
        finally:
            if self.metrics is not None:
                self.metrics.solve("server", time.monotonic() - budget.started)
        if result is None or budget.ran_out():
            log.info("small solve past %.3g s in the server's process: solved in a worker",
                     seconds)
            return None
        return result

    def _check_rows(self, portfolio: Portfolio) -> None:
        """Row and level limits, before any work (``wire.check_rows``)."""
        wire.check_rows(portfolio, self.config.max_rows, self.config.limits.max_levels_per_unit)

    def _check_size(
        self,
        response: service_pb2.AllocateResponse
        | service_pb2.FrontierResponse
        | service_pb2.FitClvResponse,
    ) -> None:
        size = response.ByteSize()
        if size > self.config.max_message_bytes:
            raise LimitExceededError("max_message_bytes", size, self.config.max_message_bytes)

    def _metrics(self, names: list[str], chosen: StrategyChoice) -> list[Metric]:
        """The metrics named, the plan's own with the plan's parameters (checked and named
        ``plan.metric.params.NAME`` when wrong), any other with its defaults."""
        problems = []
        metrics = []
        known = self.registry.names("metric")
        for i, name in enumerate(names):
            if name not in known:
                problems.append(FieldViolation(
                    f"metrics[{i}]", f"unknown metric {name!r}; available: {', '.join(known)}"
                ))
                continue
            params = chosen.params if name == chosen.name else {}
            metric = self.registry.create("metric", StrategyChoice(name, params))
            assert isinstance(metric, Metric)
            metrics.append(metric)
        if problems:
            raise InvalidInputError(problems)
        return metrics


def _units(
    result: PlanResult | ClusterPlan | EncodedPlan, encoding: wire.UnitsEncoding
) -> list[portfolio_pb2.Table]:
    """The plan's table as the response carries it (a solve worker encodes it already)."""
    if isinstance(result, EncodedPlan):
        return result.tables
    return wire.encode_units(result.units, encoding)


def _note_rows(context: grpc.ServicerContext, rows: int) -> None:
    """Record the rows of the call for its access-log line."""
    call = call_of(context)
    if call is not None:
        call.rows = rows


def _score_inputs(table: pl.DataFrame, metrics: list[Metric]) -> pl.DataFrame:
    """Validate the columns the metrics read (and known customer columns that are present).
    A column only a metric knows is checked as numbers unless it is Boolean (a flag such as
    sbg's ``active``): the metric reads flags itself."""
    required = {c for m in metrics for c in m.requires}
    known = {c.name for c in CUSTOMERS}
    units = "pool" in table.columns  # plan units: pool rows have no customer_id
    contract = tuple(
        replace(c, required=c.name in required,
                nullable=c.nullable or (units and c.name == "customer_id"))
        for c in CUSTOMERS
        if c.name in table.columns or c.name in required
    ) + tuple(Column(name, numeric=table.schema.get(name) != pl.Boolean)
              for name in sorted(required - known))
    return validate_table(table, "customers", contract)


__all__ = ["EquityServicer"]
