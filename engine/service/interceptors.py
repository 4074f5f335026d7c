"""The server's interceptors: authentication, errors as statuses, the access log.

- ``AuthInterceptor``: bearer tokens (constant-time compare); every call but health checks
  needs one when tokens are configured (UNAUTHENTICATED otherwise, before the request is
  even parsed).
- ``ServiceInterceptor``: the one place exceptions become gRPC statuses with ``google.rpc``
  details (``engine.service.status.status_from_error``) and the one JSON access-log line per
  call. It creates each call's record (``CallStats``) and passes it to the servicer inside
  the call's context (``engine.service.logs.CallContext``). A request that is not a valid
  protobuf message is INVALID_ARGUMENT, not INTERNAL.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from engine.errors import EquityError, InvalidInputError
from engine.service.admission import InFlight
from engine.service.config import SERVICE_NAME
from engine.service.logs import (
    REQUEST_ID_HEADER,
    CallContext,
    CallStats,
    access_log,
    log,
    log_access,
    request_id_var,
)
from engine.service.metrics import Metrics
from engine.service.solve_pool import Trimmer
from engine.service.status import MAX_DETAILS, grpc_code, status_from_error, unauthenticated

Handler: TypeAlias = "grpc.RpcMethodHandler | None"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Handler]


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


_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


class _Panic(Exception):
    """A ``BaseException`` that is no signal to stop (a Rust panic in polars arrives as
    pyo3's ``PanicException``): mapped to INTERNAL like any other bug, never left without
    a status."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.__cause__ = exc


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _request_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's ``x-request-id`` when it is a plain token of at most 64 characters
    (letters, digits, ``-_.:``), so a trace can follow one id across services; otherwise
    a new random one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 64 \
                and set(value) <= _ID_CHARS:
            return value
    return uuid.uuid4().hex[:16]


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream that raises ``InvalidInputError`` at the first malformed message."""
    for i, request in enumerate(requests):
        if isinstance(request, Malformed):
            raise request.error(i)
        yield request


def _send_id(stats: CallStats, context: grpc.ServicerContext) -> None:
    """The call's request id in the response's initial metadata, once."""
    if not stats.id_sent:
        stats.id_sent = True
        context.send_initial_metadata(((REQUEST_ID_HEADER, stats.request_id),))


class ServiceInterceptor(grpc.ServerInterceptor):
    """Maps every exception of the service to a status with details, and logs each call.

    Domain errors (``engine.errors``) get their code and ``google.rpc`` details from
    ``engine.service.status.status_from_error``; anything else becomes INTERNAL with a
    request id and its traceback goes to the server log only. Health and reflection pass
    through.
    """

    def __init__(self, inflight: InFlight | None = None, trim_rows: int | None = None,
                 max_details: int = MAX_DETAILS) -> None:
        self.prefix = f"/{SERVICE_NAME}/"
        self.max_details = max_details
        self.metrics: Metrics | None = None  # set by EquityServer when metrics are on
        self.inflight = inflight or InFlight()
        self.trim_rows = trim_rows  # after a call with more rows: hand freed memory back
        self.trimmer = Trimmer()  # in its own thread, not on gRPC's polling thread

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(self.prefix):
            return handler
        name = method.removeprefix(self.prefix)
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        stats = CallStats(name, _request_id(metadata), time.perf_counter())
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
            # a response serialized already (a solve worker's) goes out as it is: not parsed
            # and serialized again in the server's process (~1 ms a 9 MB response)
            data: bytes = message if isinstance(message, bytes) or not response_serializer \
                else response_serializer(message)
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

    def _begin(self, stats: CallStats, context: grpc.ServicerContext,
               send_id: bool) -> CallContext:
        """Count the call in flight and log it once gRPC has finished it (the response
        serialized, its size known, and sent; or the call cancelled); the servicer gets
        the call's record with its context. A stream's request id goes out at once; a
        unary call's with its response or its status (``_send_id``), in the same write."""
        self.inflight.enter()
        if not context.add_callback(lambda: self._finish(stats, context)):
            self._finish(stats, context)
        request_id_var.set(stats.request_id)  # this thread's log lines name the call
        if send_id:
            _send_id(stats, context)
        return CallContext(context, stats)

    def _unary(self, behavior: Callable[..., Any], stats: CallStats) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            call_context = self._begin(stats, context, send_id=False)
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                if isinstance(request, Iterator):  # a client stream
                    request = _checked(request)
                response = behavior(request, call_context)
                _send_id(stats, context)
                stats.code = grpc.StatusCode.OK
                return response
            except Exception as exc:
                self._fail(exc, context, stats)
                raise
            except BaseException as exc:  # a panic in native code (pyo3's PanicException)
                if isinstance(exc, _PASS_THROUGH):
                    raise
                self._fail(_Panic(exc), context, stats)
                raise
            finally:
                request_id_var.set("")

        return call

    def _streaming(
        self, behavior: Callable[..., Iterable[Any]], stats: CallStats
    ) -> Callable[..., Iterator[Any]]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call_context = self._begin(stats, context, send_id=True)
            try:
                if isinstance(request, Malformed):
                    raise request.error()
                if isinstance(request, Iterator):  # a client stream
                    request = _checked(request)
                yield from behavior(request, call_context)
                stats.code = grpc.StatusCode.OK
            except GeneratorExit:
                stats.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                self._fail(exc, context, stats)
                raise
            except BaseException as exc:  # a panic in native code
                if isinstance(exc, _PASS_THROUGH):
                    raise
                self._fail(_Panic(exc), context, stats)
                raise
            finally:
                request_id_var.set("")

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
        status = status_from_error(exc, deadline_passed, stats.request_id, self.max_details)
        stats.code = grpc_code(status.code)
        stats.error = status.message if isinstance(exc, EquityError) else type(exc).__name__
        _send_id(stats, context)
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
        log_access(stats, context)
        if self.metrics is not None:
            self.metrics.call(stats.method, stats.code.name, time.perf_counter() - stats.started)
        self.inflight.leave()
        if self.trim_rows is not None and (stats.rows or 0) > self.trim_rows:
            self.trimmer.request()


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
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        if method.startswith(self.OPEN) or self.authorized(metadata):
            return continuation(handler_call_details)
        return _refusal(method, continuation(handler_call_details))


def _refusal(method: str, handler: Handler) -> grpc.RpcMethodHandler:
    """A handler of the same shape that answers UNAUTHENTICATED without parsing anything."""
    status = unauthenticated(
        "missing or invalid bearer token (metadata 'authorization: Bearer <token>')")

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        request_id = _request_id(context.invocation_metadata())
        context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
        access_log.warning("%s UNAUTHENTICATED", method, extra={"fields": {
            "request_id": request_id, "method": method, "peer": context.peer(),
            "status": "UNAUTHENTICATED"}})
        context.abort_with_status(rpc_status.to_status(status))

    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


__all__ = ["AuthInterceptor", "Malformed", "ServiceInterceptor"]
