"""The gRPC server: ``equity_engine.v1.EquityService`` plus health checking and reflection.

- ``ServerConfig``: address, threads and limits (one frozen dataclass; ``equity serve`` flags).
- ``EquityServicer``: the four RPCs, thin: decode (``engine.wire``), run the engine, encode.
- ``SolveGate``: at most ``max_concurrent_solves`` large solves run at once; up to
  ``max_queued_solves`` more wait (RESOURCE_EXHAUSTED beyond). Requests of at most
  ``small_solve_rows`` rows, health checks, ``Score`` and ``ListPlugins`` never wait for a
  slot, and the thread pool always keeps threads free for them.
- ``engine.solve_pool.SolvePool``: large solves run in worker processes (one per slot),
  so the solver, which holds the GIL, never stalls the calls served here.
- ``AuthInterceptor``: bearer tokens (constant-time compare); every call but health checks
  needs one when tokens are configured (UNAUTHENTICATED otherwise).
- ``ServiceInterceptor``: the one place exceptions become gRPC statuses
  (``engine.wire.status_from_error``) and the one JSON access-log line per request; a
  request that is not a valid protobuf message is INVALID_ARGUMENT, not INTERNAL.
- ``EquityServer``: owns the grpc server; ``start``/``stop`` with health NOT_SERVING first
  and a grace period for requests in flight. ``serve`` adds SIGTERM/SIGINT handling.
  It listens with TLS (``ServerTls``; mutual TLS with ``client_ca``) or, on loopback only
  unless ``insecure`` says otherwise, in plaintext.

Every solve gets ``should_stop``: true once the client has gone, the deadline has passed,
the server is stopping past its grace period or the solve has run ``max_solve_seconds``;
the block LP checks it between rounds and raises ``CancelledError`` (RESOURCE_EXHAUSTED
``max_solve_seconds`` when the time budget was the reason).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import polars as pl
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from engine import wire
from engine.api.equity_engine.v1 import service_pb2, service_pb2_grpc
from engine.errors import (
    CancelledError,
    EquityError,
    FieldViolation,
    InvalidInputError,
    LimitExceededError,
    SolverError,
)
from engine.limits import Limits
from engine.pipeline import allocate, apply_metric
from engine.plan import Plan, StrategyChoice
from engine.plugins import DISABLE_ENV, Registry, _env_names, build_registry, default_registry
from engine.portfolio import CUSTOMERS, Column, Portfolio, validate_table
from engine.result import PlanResult
from engine.solve_pool import SolvePool, WorkerSpec, limit_malloc_arenas, release_memory
from engine.strategies import Metric

log = logging.getLogger("engine.server")
access_log = logging.getLogger("engine.server.access")

SERVICE_NAME: str = service_pb2.DESCRIPTOR.services_by_name["EquityService"].full_name
MiB = 1 << 20


def _read(value: bytes | str | Path) -> bytes:
    """PEM given as bytes, or a path to a file holding it."""
    return value if isinstance(value, bytes) else Path(value).read_bytes()


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key (PEM); with ``client_ca`` also mutual TLS:
    every client must present a certificate signed by that CA (checked in the handshake,
    so a client without one cannot connect at all, health checks included)."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls, cert: str | Path | bytes, key: str | Path | bytes,
        client_ca: str | Path | bytes | None = None,
    ) -> ServerTls:
        return cls(_read(cert), _read(key), None if client_ca is None else _read(client_ca))

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.mutual,
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); not for 0.0.0.0."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: could resolve anywhere


MIN_TOKEN_LENGTH = 16
SERVER_LIMITS = Limits(solver_seconds=60.0)


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens, how many threads it uses, the limits it enforces and who
    may call it."""

    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 50051  # 0 = any free port (``EquityServer.start`` returns it)
    workers: int = 16  # RPC threads; > max_concurrent_solves + max_queued_solves
    max_concurrent_solves: int = 2  # large solves running at once
    max_queued_solves: int = 8  # large solves waiting for a slot; more: RESOURCE_EXHAUSTED
    queue_timeout: float = 60.0  # seconds a solve may wait for a slot; then RESOURCE_EXHAUSTED
    small_solve_rows: int = 10_000  # solves of at most this many rows never wait for a slot
    max_message_bytes: int = 64 * MiB  # per message, both directions
    max_rows: int = 10_000_000  # rows per table per request (streams: across batches)
    max_solve_seconds: float | None = 300.0  # wall time of one solve; then RESOURCE_EXHAUSTED
    max_concurrent_rpcs: int | None = 1024  # calls in flight; more: gRPC's RESOURCE_EXHAUSTED
    max_metrics: int = 16  # metrics per Score call
    isolate_solves: bool = True  # large solves in worker processes (engine.solve_pool)
    grace: float = 10.0  # seconds requests in flight may take to finish on shutdown
    drain: float = 0.0  # seconds health says NOT_SERVING before new requests are refused
    limits: Limits = SERVER_LIMITS  # per allocation: units, levels, segment limits, solver time
    tls: ServerTls | None = None  # None: plaintext (loopback only unless ``insecure``)
    tokens: tuple[str, ...] = field(default=(), repr=False)  # bearer tokens; () = none needed
    insecure: bool = False  # allow plaintext on a non-loopback address
    plugins_allow: tuple[str, ...] | None = None  # entry-point plugins to load; None = all

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in [0, 65535], got {self.port}")
        if self.tls is None and not self.insecure and not is_loopback(self.host):
            problems.append(
                f"refusing to listen on {self.host} without TLS: anyone on the network could "
                "call the service and read its data; give a certificate (--tls-cert, "
                "--tls-key) or say --insecure"
            )
        for token in self.tokens:
            if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() \
                    or any(c.isspace() for c in token):
                problems.append(f"tokens must be at least {MIN_TOKEN_LENGTH} printable ASCII "
                                "characters without spaces")
                break
        if self.max_solve_seconds is not None and not self.max_solve_seconds > 0:
            problems.append(f"max_solve_seconds must be > 0, got {self.max_solve_seconds}")
        if self.max_concurrent_rpcs is not None and self.max_concurrent_rpcs < self.workers:
            problems.append(f"max_concurrent_rpcs ({self.max_concurrent_rpcs}) must be at "
                            f"least workers ({self.workers})")
        if self.max_metrics < 1:
            problems.append(f"max_metrics must be >= 1, got {self.max_metrics}")
        for name in ("max_concurrent_solves", "max_message_bytes", "max_rows"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_queued_solves", "small_solve_rows"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("queue_timeout", "grace", "drain"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        spare = self.workers - self.max_concurrent_solves - self.max_queued_solves
        if spare < 2:
            problems.append(
                f"workers ({self.workers}) must exceed max_concurrent_solves + "
                f"max_queued_solves ({self.max_concurrent_solves + self.max_queued_solves}) "
                "by at least 2, so health checks and small requests always find a thread"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    def channel_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


# --- admission of solves ----------------------------------------------------------------------


class InFlight:
    """A count of work in progress that can be waited on until it drops to zero (calls in
    flight until gRPC has finished them; solves running)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._count += 1

    def leave(self) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    @property
    def count(self) -> int:
        with self._idle:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class SolveGate:
    """Bounds large solves: ``slots`` at once, ``queue`` more waiting, none beyond."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.max_concurrent_solves)
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = InFlight()

    @property
    def running(self) -> int:
        """Solves running now (large and small)."""
        return self._running.count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no solve runs; False if ``timeout`` passed first."""
        return self._running.wait_idle(timeout)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """A place among the large solves running or queued, or RESOURCE_EXHAUSTED."""
        capacity = self.config.max_concurrent_solves + self.config.max_queued_solves
        with self._lock:
            if self._admitted >= capacity:
                waiting = self._admitted - self.config.max_concurrent_solves + 1
                raise LimitExceededError(
                    "max_queued_solves", waiting, self.config.max_queued_solves
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    @contextmanager
    def slot(self, should_stop: Callable[[], bool]) -> Iterator[None]:
        """Wait for a solve slot, giving up when the call is cancelled or the wait too long."""
        started = time.monotonic()
        while not self._slots.acquire(timeout=0.05):
            if should_stop():
                raise CancelledError("cancelled while waiting for a solve slot")
            waited = time.monotonic() - started
            if waited > self.config.queue_timeout:
                raise LimitExceededError("queue_timeout", waited, self.config.queue_timeout)
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def running_solve(self) -> Iterator[None]:
        self._running.enter()
        try:
            yield
        finally:
            self._running.leave()


def stopper(context: grpc.ServicerContext) -> Callable[[], bool]:
    """``should_stop`` for one call: the client went away or the deadline passed."""

    def should_stop() -> bool:
        if not context.is_active():
            return True
        remaining = context.time_remaining()
        return remaining is not None and remaining <= 0

    return should_stop


# --- the service ------------------------------------------------------------------------------


class EquityServicer(service_pb2_grpc.EquityServiceServicer):
    """The RPCs of ``equity_engine.v1.EquityService``; errors are raised, never set here."""

    def __init__(self, registry: Registry, config: ServerConfig, gate: SolveGate) -> None:
        self.registry = registry
        self.config = config
        self.gate = gate
        self.pool: SolvePool | None = None  # set by EquityServer.start when isolating solves
        self._plugins = wire.plugins_to_proto(registry.describe(), registry.failures)

    # Allocate ------------------------------------------------------------------------------

    def Allocate(
        self, request: service_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> service_pb2.AllocateResponse:
        wire.check_format(request.response_format, "response_format")
        plan = wire.plan_from_proto(request.plan)
        portfolio = wire.decode_portfolio(request.portfolio)
        self._check_rows(portfolio)
        result = self._solve(portfolio, plan, context, admitted=False)
        fmt = request.response_format or wire.first_format(
            request.portfolio.customers, request.portfolio.prospects, request.portfolio.options
        )
        response = service_pb2.AllocateResponse(
            summary=wire.summary_to_proto(result.summary),
            units=wire.encode_table(result.units, fmt),
        )
        size = response.ByteSize()
        if size > self.config.max_message_bytes:
            raise LimitExceededError("max_message_bytes", size, self.config.max_message_bytes)
        return response

    def AllocateStream(
        self,
        request_iterator: Iterator[service_pb2.AllocateStreamRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[service_pb2.AllocateStreamResponse]:
        with self.gate.admitted():
            header, portfolio, fmt = self._receive(request_iterator)
            wire.check_format(header.response_format, "header.response_format")
            plan = wire.plan_from_proto(header.plan)  # "plan.*" paths, as in Allocate
            self._check_rows(portfolio)
            result = self._solve(portfolio, plan, context, admitted=True)
            fmt = header.response_format or fmt
            units = result.units
            limit = self.config.max_message_bytes
            rows = header.response_batch_rows or wire.batch_rows(units, min(2 * MiB, limit // 2))
            for start in range(0, units.height, rows):  # one message per batch of rows
                message = service_pb2.AllocateStreamResponse(
                    units=wire.encode_table(units.slice(start, rows), fmt)
                )
                if message.ByteSize() > limit:  # only with a response_batch_rows too large
                    raise LimitExceededError("max_message_bytes", message.ByteSize(), limit)
                yield message
            yield service_pb2.AllocateStreamResponse(summary=wire.summary_to_proto(result.summary))

    def _receive(
        self, requests: Iterator[service_pb2.AllocateStreamRequest]
    ) -> tuple[service_pb2.AllocateStreamHeader, Portfolio, int]:
        first = next(requests, None)
        if first is None or first.WhichOneof("item") != "header":
            raise InvalidInputError.single("header", "the first message of the stream must be "
                                           "the header (plan and response options)")
        parts: dict[str, list[pl.DataFrame]] = {name: [] for name in wire.TABLES}
        rows = dict.fromkeys(wire.TABLES, 0)
        fmt = None
        for i, msg in enumerate(requests, start=1):
            if msg.WhichOneof("item") != "batch":
                raise InvalidInputError.single("header", f"message {i} is a second header")
            if fmt is None:
                fmt = wire.first_format(msg.batch.customers, msg.batch.prospects, msg.batch.options)
            for name in wire.TABLES:
                table = wire.decode_table(getattr(msg.batch, name), name)
                if table is None:
                    continue
                if parts[name] and set(table.columns) != set(parts[name][0].columns):
                    raise InvalidInputError.single(
                        name, f"batch in message {i} has columns {sorted(table.columns)}; "
                        f"the first batch had {sorted(parts[name][0].columns)}")
                rows[name] += table.height
                if rows[name] > self.config.max_rows:
                    raise LimitExceededError("max_rows", rows[name], self.config.max_rows)
                parts[name].append(table.select(parts[name][0].columns) if parts[name] else table)
        tables: dict[str, pl.DataFrame | None] = {}
        for name, batches in parts.items():
            if not batches:
                tables[name] = None
                continue
            try:
                tables[name] = pl.concat(batches, how="vertical_relaxed", rechunk=True)
            except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InvalidInputError.single(
                    name, f"batches have incompatible column types: {message}"
                ) from None
        return first.header, Portfolio(**tables), fmt or wire.ARROW

    def _check_rows(self, portfolio: Portfolio) -> None:
        """Row and level limits, before any work: ``max_rows`` per table and, for an options
        table, ``max_levels_per_unit`` rows per customer (a million levels for one customer
        is refused here, not after the options are built); pools without a name."""
        for name in wire.TABLES:
            table = getattr(portfolio, name)
            if table is not None and table.height > self.config.max_rows:
                raise LimitExceededError("max_rows", table.height, self.config.max_rows)
        pools = portfolio.prospects
        if pools is not None and "segment" in pools.columns and pools["segment"].null_count():
            # engine.portfolio lets null segments through (customers may have them) and its
            # uniqueness check then fails on them: name the problem here
            row = int(pools["segment"].is_null().arg_max() or 0)
            raise InvalidInputError.single("prospects.segment", "is null (a pool needs a name)",
                                           row)
        options = portfolio.options
        limit = self.config.limits.max_levels_per_unit
        if options is not None and "customer_id" in options.columns and options.height > limit:
            try:
                most = options.group_by("customer_id").len()["len"].max()
            except pl.exceptions.PolarsError:
                return  # an id column polars cannot group: validation names it later
            if isinstance(most, int) and most > limit:
                raise LimitExceededError("max_levels_per_unit", most, limit)

    def _solve(
        self, portfolio: Portfolio, plan: Plan, context: grpc.ServicerContext, admitted: bool
    ) -> PlanResult:
        should_stop = stopper(context)
        set_rows(portfolio.size)
        with ExitStack() as stack:
            if portfolio.size > self.config.small_solve_rows:
                if not admitted:
                    stack.enter_context(self.gate.admitted())
                stack.enter_context(self.gate.slot(should_stop))
            if should_stop():
                raise CancelledError("cancelled before the solve started")
            with self.gate.running_solve():
                return self._timed_allocate(portfolio, plan, should_stop)
        raise AssertionError("unreachable")  # pragma: no cover (for mypy)

    def _timed_allocate(
        self, portfolio: Portfolio, plan: Plan, should_stop: Callable[[], bool]
    ) -> PlanResult:
        """``allocate`` within ``max_solve_seconds``: past it the solve is stopped and the
        call is RESOURCE_EXHAUSTED naming that limit (each solver call is also bounded by
        ``limits.solver_seconds``, at most the same budget)."""
        budget = self.config.max_solve_seconds
        limits = self.config.limits
        if budget is not None:
            per_call = min(limits.solver_seconds or budget, budget)
            limits = replace(limits, solver_seconds=per_call)
        started = time.monotonic()

        def over_budget() -> bool:
            return budget is not None and time.monotonic() - started > budget

        def stop() -> bool:
            return should_stop() or over_budget()

        try:
            if self.pool is not None and portfolio.size > self.config.small_solve_rows:
                stats: CallStats | None = getattr(_LOCAL, "stats", None)
                request_id = stats.request_id if stats is not None else ""
                return self.pool.solve(portfolio, plan, limits, stop, request_id)
            return allocate(portfolio, plan, self.registry, stop, limits)
        except (CancelledError, SolverError):
            if over_budget() and not should_stop():
                assert budget is not None
                elapsed = round(time.monotonic() - started, 3)
                raise LimitExceededError("max_solve_seconds", elapsed, budget) from None
            raise

    # Score / ListPlugins -------------------------------------------------------------------

    def Score(
        self, request: service_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> service_pb2.ScoreResponse:
        wire.check_format(request.response_format, "response_format")
        plan = wire.plan_from_proto(request.plan)
        table = wire.decode_table(request.customers, "customers")
        if table is None:
            raise InvalidInputError.single("customers", "a table of rows to score is required")
        set_rows(table.height)
        if table.height > self.config.max_rows:
            raise LimitExceededError("max_rows", table.height, self.config.max_rows)
        if len(request.metrics) > self.config.max_metrics:
            raise LimitExceededError("max_metrics", len(request.metrics), self.config.max_metrics)
        metrics = self._metrics(list(request.metrics) or [plan.metric.name])
        table = _score_inputs(table, metrics)
        scored = table
        for metric in metrics:
            scored = apply_metric(metric, scored, plan, self.registry)
        produced = [c for m in metrics for c in m.produces] + [
            c for c in scored.columns if c not in table.columns
        ]
        keep: list[str] = [c for c in ("customer_id", "pool") if c in table.columns]
        keep += [c for c in dict.fromkeys(produced) if c in scored.columns and c not in keep]
        fmt = request.response_format or wire.first_format(request.customers)
        return service_pb2.ScoreResponse(scores=wire.encode_table(scored.select(keep), fmt))

    def _metrics(self, names: list[str]) -> list[Metric]:
        problems = []
        metrics = []
        known = self.registry.names("metric")
        for i, name in enumerate(names):
            if name not in known:
                problems.append(FieldViolation(
                    f"metrics[{i}]", f"unknown metric {name!r}; available: {', '.join(known)}"
                ))
                continue
            metric = self.registry.create("metric", StrategyChoice(name))
            assert isinstance(metric, Metric)
            metrics.append(metric)
        if problems:
            raise InvalidInputError(problems)
        return metrics

    def ListPlugins(
        self, request: service_pb2.ListPluginsRequest, context: grpc.ServicerContext
    ) -> service_pb2.ListPluginsResponse:
        return self._plugins

    def Frontier(
        self, request: service_pb2.FrontierRequest, context: grpc.ServicerContext
    ) -> service_pb2.FrontierResponse:
        from engine.frontier import frontier

        wire.check_format(request.response_format, "response_format")
        plan = wire.plan_from_proto(request.plan)
        portfolio = wire.decode_portfolio(request.portfolio)
        self._check_rows(portfolio)
        self.config.limits.check_inputs(portfolio, plan)
        with self.gate.admitted():  # as heavy as a solve: counts against the same limit
            result = frontier(
                portfolio, plan, self.registry, should_stop=lambda: not context.is_active()
            )
        fmt = request.response_format or wire.ARROW
        response = service_pb2.FrontierResponse(
            points=wire.encode_table(result.points, fmt),
            moves=wire.encode_table(result.moves, fmt),
        )
        response.summary.update(json.loads(json.dumps(result.summary(), default=float)))
        size = response.ByteSize()
        if size > self.config.max_message_bytes:
            raise LimitExceededError("max_message_bytes", size, self.config.max_message_bytes)
        return response


def _score_inputs(table: pl.DataFrame, metrics: list[Metric]) -> pl.DataFrame:
    """Validate the columns the metrics read (and known customer columns that are present)."""
    required = {c for m in metrics for c in m.requires}
    known = {c.name for c in CUSTOMERS}
    units = "pool" in table.columns  # plan units: pool rows have no customer_id
    contract = tuple(
        replace(c, required=c.name in required,
                nullable=c.nullable or (units and c.name == "customer_id"))
        for c in CUSTOMERS
        if c.name in table.columns or c.name in required
    ) + tuple(Column(name) for name in sorted(required - known))
    return validate_table(table, "customers", contract)


# --- the interceptor --------------------------------------------------------------------------


@dataclass
class CallStats:
    """What the access log says about one call."""

    method: str
    request_id: str
    started: float
    request_bytes: int = 0
    response_bytes: int = 0
    request_messages: int = 0
    response_messages: int = 0
    rows: int | None = None
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    error: str | None = None


_LOCAL = threading.local()


def set_rows(rows: int) -> None:
    """Record the rows of the current call for the access log (no-op outside a call)."""
    stats: CallStats | None = getattr(_LOCAL, "stats", None)
    if stats is not None:
        stats.rows = rows


def _clear(stats: CallStats) -> None:
    if getattr(_LOCAL, "stats", None) is stats:
        _LOCAL.stats = None


_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Malformed:
    """Stands for a request message that did not parse (so the call can fail with
    INVALID_ARGUMENT and field ``request``; gRPC itself would answer INTERNAL)."""

    problem: str

    def error(self, index: int | None = None) -> InvalidInputError:
        where = "" if index is None else f"message {index} of the stream is "
        return InvalidInputError.single(
            "request", f"{where}not a valid protobuf message: {self.problem}"
        )


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream that raises ``InvalidInputError`` at the first malformed message."""
    for i, request in enumerate(requests):
        if isinstance(request, Malformed):
            raise request.error(i)
        yield request


class ServiceInterceptor(grpc.ServerInterceptor):
    """Maps every exception of the service to a status with details, and logs each call.

    Domain errors (``engine.errors``) get their code and ``google.rpc`` details from
    ``engine.wire.status_from_error``; anything else becomes INTERNAL with a request id
    and its traceback goes to the server log only. Health and reflection pass through.
    """

    def __init__(self, inflight: InFlight | None = None, trim_rows: int | None = None) -> None:
        self.prefix = f"/{SERVICE_NAME}/"
        self.inflight = inflight or InFlight()
        self.trim_rows = trim_rows  # after a call with more rows: hand freed memory back

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(self.prefix):
            return handler
        name = method.removeprefix(self.prefix)
        stats = CallStats(name, uuid.uuid4().hex[:16], time.perf_counter())
        request_deserializer = handler.request_deserializer
        response_serializer = handler.response_serializer

        def deserialize(data: bytes) -> Any:
            stats.request_bytes += len(data)
            stats.request_messages += 1
            if request_deserializer is None:
                return data
            try:
                return request_deserializer(data)
            except (DecodeError, ValueError, TypeError) as exc:  # garbage, bad UTF-8...
                return Malformed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

        def serialize(message: Any) -> bytes:
            data: bytes = response_serializer(message) if response_serializer else message
            stats.response_bytes += len(data)
            stats.response_messages += 1
            return data

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, stats), deserialize, serialize)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, stats), deserialize, serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, stats), deserialize, serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, stats), deserialize, serialize)
        return handler  # pragma: no cover

    def _begin(self, stats: CallStats, context: grpc.ServicerContext) -> None:
        _LOCAL.stats = stats
        self.inflight.enter()
        # Logged once gRPC has finished the call: the response is serialized (its size
        # known) and sent, or the call was cancelled.
        if not context.add_callback(lambda: self._finish(stats, context)):
            self._finish(stats, context)

    def _unary(self, behavior: Callable[..., Any], stats: CallStats) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            self._begin(stats, context)
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                if isinstance(request, Iterator):  # a client stream
                    request = _checked(request)
                response = behavior(request, context)
                stats.code = grpc.StatusCode.OK
                return response
            except Exception as exc:
                self._fail(exc, context, stats)
                raise
            finally:
                _clear(stats)

        return call

    def _streaming(
        self, behavior: Callable[..., Iterable[Any]], stats: CallStats
    ) -> Callable[..., Iterator[Any]]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._begin(stats, context)
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                if isinstance(request, Iterator):  # a client stream
                    request = _checked(request)
                for response in behavior(request, context):
                    _LOCAL.stats = stats
                    yield response
                stats.code = grpc.StatusCode.OK
            except GeneratorExit:
                stats.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                self._fail(exc, context, stats)
                raise
            finally:
                _clear(stats)

        return call

    def _fail(self, exc: Exception, context: grpc.ServicerContext, stats: CallStats) -> None:
        """Abort the call with the mapped status (raises); re-raise what is already a status."""
        code = context.code()  # type: ignore[attr-defined]
        if code is not None and code != grpc.StatusCode.OK:  # the handler aborted on its own
            stats.code = code
            return
        remaining = context.time_remaining()
        deadline_passed = remaining is not None and remaining <= 0
        if not context.is_active() and not isinstance(exc, EquityError):
            stats.code = (grpc.StatusCode.DEADLINE_EXCEEDED if deadline_passed
                          else grpc.StatusCode.CANCELLED)
            stats.error = "client went away"
            return
        if not isinstance(exc, EquityError):
            log.error("internal error in %s (request %s)", stats.method, stats.request_id,
                      exc_info=exc, extra={"fields": {"request_id": stats.request_id}})
        status = wire.status_from_error(exc, deadline_passed, stats.request_id)
        stats.code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
        stats.error = status.message if isinstance(exc, EquityError) else type(exc).__name__
        context.abort_with_status(rpc_status.to_status(status))

    def _finish(self, stats: CallStats, context: grpc.ServicerContext) -> None:
        if stats.code == grpc.StatusCode.UNKNOWN:
            # gRPC ended the call while the handler was still at work: the client cancelled
            # or the deadline passed (the handler sees should_stop() and stops on its own).
            remaining = context.time_remaining()
            stats.code = (grpc.StatusCode.DEADLINE_EXCEEDED
                          if remaining is not None and remaining <= 0
                          else grpc.StatusCode.CANCELLED)
            stats.error = stats.error or "client went away"
        fields = {
            "request_id": stats.request_id,
            "method": stats.method,
            "peer": context.peer(),
            "client": _client_name(context),
            "status": stats.code.name,
            "duration_ms": round(1000 * (time.perf_counter() - stats.started), 3),
            "request_bytes": stats.request_bytes,
            "response_bytes": stats.response_bytes,
            "request_messages": stats.request_messages,
            "response_messages": stats.response_messages,
            "rows": stats.rows,
        }
        if stats.error is not None:
            fields["error"] = stats.error
        access_log.info("%s %s", stats.method, stats.code.name, extra={"fields": fields})
        self.inflight.leave()
        if self.trim_rows is not None and (stats.rows or 0) > self.trim_rows:
            release_memory()


def _client_name(context: grpc.ServicerContext) -> str | None:
    """The common name of the client certificate (mutual TLS), if there is one."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else None


class AuthInterceptor(grpc.ServerInterceptor):
    """Bearer tokens: a call needs metadata ``authorization: Bearer <token>`` with one of
    the configured tokens, compared in constant time; otherwise UNAUTHENTICATED (reason
    ``UNAUTHENTICATED`` in ``ErrorInfo``), before the request is even parsed.

    Health checks (``grpc.health.v1.Health``) need no token, so load balancers and
    orchestrators can probe the server; they reveal only SERVING / NOT_SERVING.
    """

    OPEN = ("/grpc.health.v1.Health/",)

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]
        if not self._tokens:
            raise ValueError("AuthInterceptor needs at least one token")

    def authorized(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        given = b""
        for key, value in metadata or ():
            if key == "authorization":
                given = value if isinstance(value, bytes) else value.encode()
        scheme, _, presented = given.partition(b" ")
        ok = False
        for token in self._tokens:  # no early exit: timing says nothing about which matched
            ok |= hmac.compare_digest(presented, token)
        return ok and scheme.lower() == b"bearer"

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        if method.startswith(self.OPEN) or self.authorized(metadata):
            return continuation(handler_call_details)
        return _refusal(method, continuation(handler_call_details))


def _refusal(method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape that answers UNAUTHENTICATED without parsing anything."""
    message = "missing or invalid bearer token (metadata 'authorization: Bearer <token>')"
    status = status_pb2.Status(
        code=code_pb2.UNAUTHENTICATED, message=message,
        details=wire._pack(wire._info("UNAUTHENTICATED")),
    )

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        access_log.warning("%s UNAUTHENTICATED", method, extra={"fields": {
            "method": method, "peer": context.peer(), "status": "UNAUTHENTICATED"}})
        context.abort_with_status(rpc_status.to_status(status))

    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


# --- the server -------------------------------------------------------------------------------


class EquityServer:
    """The service, health and reflection on one grpc server with a thread pool."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        registry: Registry | None = None,
        registry_factory: Callable[[], Registry] | None = None,
    ) -> None:
        """``registry``: strategies to use (solves then stay in this process, since a
        registry cannot be sent to a worker); ``registry_factory``: a picklable function
        that builds one, in this process and in each solve worker. Neither: built-ins plus
        the installed entry-point plugins ``config.plugins_allow`` admits."""
        self.config = config or ServerConfig()
        limit_malloc_arenas()  # before the RPC threads allocate: keeps RSS flat under load
        self._factory = registry_factory
        if registry_factory is not None:
            self.registry = registry_factory()
        else:
            self.registry = registry or server_registry(self.config)
        self._isolate = self.config.isolate_solves and (registry is None or
                                                        registry_factory is not None)
        self.pool: SolvePool | None = None
        self.gate = SolveGate(self.config)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.interceptor = ServiceInterceptor(trim_rows=self.config.small_solve_rows)
        interceptors: list[grpc.ServerInterceptor] = [self.interceptor]
        if self.config.tokens:
            interceptors.insert(0, AuthInterceptor(self.config.tokens))
        self._pool = futures.ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="equity-rpc"
        )
        self._server = grpc.server(
            self._pool, interceptors=interceptors, options=self.config.channel_options(),
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        self.servicer = EquityServicer(self.registry, self.config, self.gate)
        service_pb2_grpc.add_EquityServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port: int | None = None
        self._stopped = threading.Event()

    def _bind(self) -> int:
        """Listen on the configured address: TLS when configured, else plaintext (which
        ``ServerConfig`` allows on loopback only, unless ``insecure``)."""
        if self.config.tls is not None:
            return self._server.add_secure_port(self.config.target, self.config.tls.credentials())
        return self._server.add_insecure_port(self.config.target)

    def start(self) -> int:
        """Bind, start serving, mark the service SERVING; returns the port bound."""
        try:
            port = self._bind()
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.config.target}: {exc}") from None
        if not port:
            raise OSError(f"cannot listen on {self.config.target}")
        self.port = port
        if self._isolate:
            root = logging.getLogger()
            json_logs = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
            self.pool = SolvePool(self.config.max_concurrent_solves, WorkerSpec(
                self.config.plugins_allow, self._factory, root.level, json_logs, nice=15))
            self.servicer.pool = self.pool
        self._server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        tls = self.config.tls
        log.info("serving on %s:%d", self.config.host, port, extra={"fields": {
            "host": self.config.host, "port": port, "workers": self.config.workers,
            "max_concurrent_solves": self.config.max_concurrent_solves,
            "max_message_bytes": self.config.max_message_bytes,
            "max_solve_seconds": self.config.max_solve_seconds,
            "transport": "plaintext" if tls is None else "mutual-tls" if tls.mutual else "tls",
            "solve_workers": 0 if self.pool is None else self.pool.size,
            "tokens": len(self.config.tokens),
            "strategies": len(self.registry.strategies),
            "plugin_failures": len(self.registry.failures),
        }})
        return port

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return replace(self.config, port=self.port).target

    @property
    def active_solves(self) -> int:
        """Solves running now; drops to 0 once cancelled solves have stopped."""
        return self.gate.running

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: health NOT_SERVING, wait ``drain``, refuse new calls, let calls
        in flight finish for up to ``grace`` seconds, then cancel what is left (solves see
        ``should_stop`` and stop). Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        log.info("shutting down", extra={"fields": {"grace": grace, "in_flight":
                                                    self.interceptor.inflight.count}})
        if self.config.drain > 0:
            time.sleep(self.config.drain)  # let load balancers see NOT_SERVING
        done = self._server.stop(grace)
        # Health watches never end on their own: once the service's calls are done, stop now.
        self.interceptor.inflight.wait_idle(grace)
        self._server.stop(0)
        done.wait()
        self.gate.wait_idle(5.0)
        if self.pool is not None:
            self.pool.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")

    def cancel_all(self) -> None:
        """Cancel every call now (their solves stop); for a second shutdown signal."""
        self._server.stop(0)

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> EquityServer:
        if self.port is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_registry(config: ServerConfig) -> Registry:
    """Built-ins plus installed entry-point plugins: all of them, or only those named by
    ``config.plugins_allow`` (``EQUITY_PLUGINS_DISABLE`` still applies). Plugins come
    from installed distributions only; nothing is loaded from a path or a request."""
    if config.plugins_allow is None:
        return default_registry()
    return build_registry(allow=config.plugins_allow, disable=_env_names(DISABLE_ENV) or ())


def serve(
    config: ServerConfig,
    registry: Registry | None = None,
    registry_factory: Callable[[], Registry] | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully (``EquityServer.stop``)."""
    server = EquityServer(config, registry, registry_factory)
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():  # a second signal: do not wait for the grace period
            log.warning("received %s again: cancelling calls in flight", name)
            server.cancel_all()
            return
        log.info("received %s", name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop.wait()
        server.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


# --- logging ----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int | str = logging.INFO, json_lines: bool = True) -> None:
    """Log to stderr, one JSON object per line (or plain text)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


__all__ = [
    "SERVICE_NAME",
    "AuthInterceptor",
    "EquityServer",
    "EquityServicer",
    "JsonFormatter",
    "ServerConfig",
    "ServerTls",
    "ServiceInterceptor",
    "SolveGate",
    "configure_logging",
    "is_loopback",
    "serve",
    "server_registry",
    "stopper",
]
