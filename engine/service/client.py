"""Python client of ``equity_engine.v1.EquityService``: polars in, polars out.

    from engine.service.client import Client
    with Client("127.0.0.1:50051") as client:
        result = client.allocate(Portfolio(customers, prospects), plan, timeout=30)
        print(result.summary["equity_gain"], result.units.head())

Failed calls raise the engine's own exceptions, rebuilt from the status details:
``InvalidInputError`` (with ``.violations``: field, description, row),
``InfeasiblePlanError`` (``.reason``, ``.constraints``), ``LimitExceededError``
(``.limit``, ``.value``, ``.maximum``), ``CancelledError`` / ``DeadlineExceededError``,
``PluginError`` (``.plugin``), ``SolverError``; anything else is a ``ServiceError``
carrying the gRPC ``code`` (e.g. UNAUTHENTICATED without a valid token, UNAVAILABLE when
the TLS handshake fails). All derive from ``engine.errors.EquityError``.

Security: ``tls=ClientTls.from_files(ca="ca.pem")`` (add ``cert=``/``key=`` for mutual
TLS, or ``tls=True`` for the system's CAs) and ``token="..."`` (sent as
``authorization: Bearer <token>`` on every call).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import polars as pl
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.errors import CancelledError, EquityError
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.service import wire
from engine.service.config import MiB
from engine.service.status import DeadlineExceededError, ServiceError, error_from_status
from engine.summary import PlanSummary

if TYPE_CHECKING:
    from engine.service.clv import ClvResult

DEFAULT_TARGET = "127.0.0.1:50051"
T = TypeVar("T")


@dataclass
class AllocateResult:
    """``units``: the per-unit plan (columns as ``PlanResult.units``); ``summary``: the
    same typed summary as ``PlanResult.summary`` (undefined figures are None)."""

    units: pl.DataFrame
    summary: PlanSummary

    def to_json(self) -> str:
        return json.dumps(self.summary.to_dict(), indent=2)


@dataclass(frozen=True)
class ClientTls:
    """TLS for the channel: the CA that signed the server's certificate (None: the system's
    roots) and, for mutual TLS, this client's certificate chain and key (PEM bytes).
    ``server_name`` overrides the name checked against the server certificate."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | Path | bytes | None = None,
        cert: str | Path | bytes | None = None,
        key: str | Path | bytes | None = None,
        server_name: str | None = None,
    ) -> ClientTls:
        def read(value: str | Path | bytes | None) -> bytes | None:
            if value is None or isinstance(value, bytes):
                return value
            return Path(value).read_bytes()

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("a client certificate needs its key, and the key its certificate")
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of the channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


def _error(err: grpc.RpcError) -> EquityError:
    """The typed exception for a failed call (see the module doc)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    details: Sequence[Any] = ()
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        status = None
    if status is not None:
        message, details = status.message, status.details
    exc = error_from_status(code, message or "", details)
    exc.grpc_code = code  # type: ignore[attr-defined]
    return exc


def _portfolio(portfolio: Portfolio | pl.DataFrame) -> Portfolio:
    return Portfolio(customers=portfolio) if isinstance(portfolio, pl.DataFrame) else portfolio


class PendingAllocation:
    """An ``Allocate`` call in flight: ``result()`` waits, ``cancel()`` tells the server to stop."""

    def __init__(self, future: grpc.Future) -> None:
        self._future = future

    def cancel(self) -> bool:
        return bool(self._future.cancel())

    def done(self) -> bool:
        return bool(self._future.done())

    def result(self, timeout: float | None = None) -> AllocateResult:
        try:
            response = self._future.result(timeout)
        except grpc.FutureCancelledError:
            raise CancelledError("cancelled by the client") from None
        except grpc.RpcError as err:
            raise _error(err) from err
        return AllocateResult(
            _decode_units(response.units), wire.summary_from_proto(response.summary)
        )


def _decode_units(table: portfolio_pb2.Table) -> pl.DataFrame:
    out = wire.decode_table(table, "units")
    return out if out is not None else pl.DataFrame()


class Client:
    """A channel to one server. ``timeout`` (seconds) is the default deadline of each call
    (None: no deadline); ``table_format`` is how tables are sent: "arrow" (Arrow IPC,
    fastest) or "columns" (packed repeated fields)."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 300.0,
        table_format: str = "arrow",
        max_message_bytes: int = 64 * MiB,
        tls: ClientTls | bool | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.table_format = wire.table_format(table_format)
        self.max_message_bytes = max_message_bytes
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls is True:
            tls = ClientTls()
        if isinstance(tls, ClientTls):
            credentials = tls.credentials()
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
        if channel is None:
            channel = (grpc.secure_channel(target, credentials, options) if credentials
                       else grpc.insecure_channel(target, options))
        self._raw_channel = channel
        if token is not None:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self.channel = channel
        self.stub = service_pb2_grpc.EquityServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as err:
            raise _error(err) from err

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (e.g. a server that is starting)."""
        try:
            grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"no server at {self.target} after {timeout:g} s") from None

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The server's health status name: "SERVING", "NOT_SERVING", ..."""
        response = self._call(lambda: self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    # Allocate ------------------------------------------------------------------------------

    def allocate_request(
        self, portfolio: Portfolio | pl.DataFrame, plan: Plan | None = None
    ) -> service_pb2.AllocateRequest:
        return service_pb2.AllocateRequest(
            portfolio=wire.encode_portfolio(_portfolio(portfolio), self.table_format),
            plan=(plan or Plan()).to_proto(),
        )

    def allocate(
        self,
        portfolio: Portfolio | pl.DataFrame,
        plan: Plan | None = None,
        *,
        timeout: float | None = None,
    ) -> AllocateResult:
        """One allocation in one message (``Allocate``); a DataFrame means customers."""
        return self.submit(portfolio, plan, timeout=timeout).result()

    def submit(
        self,
        portfolio: Portfolio | pl.DataFrame,
        plan: Plan | None = None,
        *,
        timeout: float | None = None,
    ) -> PendingAllocation:
        """Start ``Allocate`` without waiting; the result can be awaited or cancelled."""
        request = self.allocate_request(portfolio, plan)
        return PendingAllocation(self.stub.Allocate.future(request, timeout=self._timeout(timeout)))

    # AllocateStream ------------------------------------------------------------------------

    def stream_requests(
        self,
        portfolio: Portfolio | pl.DataFrame,
        plan: Plan | None = None,
        *,
        batch_rows: int = 100_000,
        response_batch_rows: int = 0,
    ) -> Iterator[service_pb2.AllocateStreamRequest]:
        """The request stream: a header, then batches of ``batch_rows`` rows of customers
        (and options); prospect pools go with the first batch."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        portfolio = _portfolio(portfolio)
        yield service_pb2.AllocateStreamRequest(header=service_pb2.AllocateStreamHeader(
            plan=(plan or Plan()).to_proto(),
            response_format=self.table_format,
            response_batch_rows=response_batch_rows,
        ))
        big = {n: getattr(portfolio, n) for n in ("customers", "options")}
        longest = max((t.height for t in big.values() if t is not None), default=0)
        for i, start in enumerate(range(0, max(longest, 1), batch_rows)):
            batch = Portfolio(
                **{n: t.slice(start, batch_rows) for n, t in big.items()
                   if t is not None and start < t.height},
                prospects=portfolio.prospects if i == 0 else None,
            )
            yield service_pb2.AllocateStreamRequest(
                batch=wire.encode_portfolio(batch, self.table_format)
            )

    def stream(
        self,
        portfolio: Portfolio | pl.DataFrame,
        plan: Plan | None = None,
        *,
        batch_rows: int = 100_000,
        response_batch_rows: int = 0,
        timeout: float | None = None,
        on_batch: Callable[[pl.DataFrame], None] | None = None,
    ) -> AllocateResult:
        """A large portfolio through ``AllocateStream``, sent ``batch_rows`` rows at a time.

        The plan comes back in batches: with ``on_batch`` each one is handed over as it
        arrives and not kept (``units`` is then empty); otherwise they are concatenated.
        """
        requests = self.stream_requests(
            portfolio, plan, batch_rows=batch_rows, response_batch_rows=response_batch_rows
        )
        responses = self.stub.AllocateStream(requests, timeout=self._timeout(timeout))
        batches: list[pl.DataFrame] = []
        summary: PlanSummary | None = None
        try:
            for response in responses:
                if response.WhichOneof("item") == "units":
                    units = _decode_units(response.units)
                    if on_batch is not None:
                        on_batch(units)
                    else:
                        batches.append(units)
                elif response.WhichOneof("item") == "summary":
                    summary = wire.summary_from_proto(response.summary)
        except grpc.RpcError as err:
            raise _error(err) from err
        finally:
            responses.cancel()  # no-op once complete; stops the call if we leave early
        if summary is None:
            raise ServiceError(grpc.StatusCode.DATA_LOSS, "the stream ended without a summary")
        units = pl.concat(batches, rechunk=True) if batches else pl.DataFrame()
        return AllocateResult(units, summary)

    # Score / ListPlugins -------------------------------------------------------------------

    def score(
        self,
        customers: pl.DataFrame,
        plan: Plan | None = None,
        metrics: Sequence[str] = (),
        *,
        timeout: float | None = None,
    ) -> pl.DataFrame:
        """Metric columns (e.g. ``clv``) for each row, with ``customer_id`` when sent."""
        request = service_pb2.ScoreRequest(
            customers=wire.encode_table(customers, self.table_format),
            plan=(plan or Plan()).to_proto(),
            metrics=list(metrics),
        )
        response = self._call(lambda: self.stub.Score(request, timeout=self._timeout(timeout)))
        out = wire.decode_table(response.scores, "scores")
        return out if out is not None else pl.DataFrame()

    def frontier(
        self, portfolio: Portfolio | pl.DataFrame, plan: Plan | None = None, *,
        timeout: float | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        """The exact equity-vs-budget frontier: (points, moves, summary)."""
        request = service_pb2.FrontierRequest(
            portfolio=wire.encode_portfolio(_portfolio(portfolio), self.table_format),
            plan=(plan or Plan()).to_proto(),
        )
        response = self._call(lambda: self.stub.Frontier(request, timeout=self._timeout(timeout)))
        points = wire.decode_table(response.points, "points")
        moves = wire.decode_table(response.moves, "moves")
        summary = json_format.MessageToDict(response.summary)
        return (points if points is not None else pl.DataFrame(),
                moves if moves is not None else pl.DataFrame(), summary)

    def fit_response(
        self, experiments: pl.DataFrame, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Response curves fitted to spend experiments (aggregated arms or one row per
        unit): the ``{"curves": [...]}`` document of ``equity fit-response --json``."""
        from engine.service.curves import document_from_proto

        request = service_pb2.FitResponseRequest(
            experiments=wire.encode_table(experiments, self.table_format))
        response = self._call(
            lambda: self.stub.FitResponse(request, timeout=self._timeout(timeout)))
        return document_from_proto(response)

    def fit_clv(
        self, transactions: pl.DataFrame, calibration_end: str, *,
        timeout: float | None = None, **options: Any,
    ) -> ClvResult:
        """CLV from a transaction log (``equity clv`` over gRPC): the ``--json`` summary, the
        fits and the per-customer table. ``options`` are ``FitClvRequest`` fields
        (``holdout_end``, ``models``, ``prediction_horizon``, ``interval_draws``, ...)."""
        from engine.service.clv import request_to_proto, result_from_proto

        request = request_to_proto(
            wire.encode_table(transactions, self.table_format), calibration_end,
            self.table_format, **options)
        response = self._call(lambda: self.stub.FitClv(request, timeout=self._timeout(timeout)))
        return result_from_proto(response)

    def list_plugins(self, *, timeout: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """``{"strategies": [...], "failures": [...]}``, as ``equity plugins --json`` prints."""
        response = self._call(lambda: self.stub.ListPlugins(
            service_pb2.ListPluginsRequest(), timeout=self._timeout(timeout)))
        return {
            "strategies": wire.plugins_from_proto(response),
            "failures": [{"plugin": f.plugin, "problem": f.problem} for f in response.failures],
        }


__all__ = [
    "AllocateResult",
    "CancelledError",
    "Client",
    "ClientTls",
    "DeadlineExceededError",
    "PendingAllocation",
    "ServiceError",
]
