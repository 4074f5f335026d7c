"""The server's logs: JSON lines on stderr, and one access-log line per call.

- ``log`` (logger ``engine.service.server``): start, stop, internal errors with tracebacks;
  ``access_log`` (``engine.service.server.access``): one line per call.
- ``configure_logging``: stderr, one JSON object per line (``JsonFormatter``) or plain text.
- ``CallStats``: what the access log says about one call. The service interceptor creates
  it and hands it to the servicer inside a ``CallContext`` (the call's ``grpc`` context
  plus its record), so the servicer adds the rows and reads the request id without any
  state shared between threads; ``call_of(context)`` finds it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

REQUEST_ID_HEADER = "x-request-id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

log = logging.getLogger("engine.service.server")
access_log = logging.getLogger("engine.service.server.access")


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
        request_id = request_id_var.get()
        if request_id:  # every line logged while serving a call names it
            out["request_id"] = request_id
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    """Plain text, with ``[request <id>]`` on lines logged while serving a call."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = request_id_var.get()
        return f"{text} [request {request_id}]" if request_id else text


def configure_logging(level: int | str = logging.INFO, json_lines: bool = True) -> None:
    """Log to stderr, one JSON object per line (or plain text)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else _TextFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def json_lines_configured() -> bool:
    """Whether the root logger writes JSON lines (solve workers then log the same way)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


# --- one call ---------------------------------------------------------------------------------


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
    id_sent: bool = False  # the request id is in the response's initial metadata


class CallContext(grpc.ServicerContext):
    """The context a servicer method gets: gRPC's own for the call (every method is
    passed through to it) plus ``call``, the call's access-log record."""

    def __init__(self, context: grpc.ServicerContext, call: CallStats) -> None:
        self.context = context
        self.call = call

    def is_active(self) -> bool:
        return self.context.is_active()

    def time_remaining(self) -> float | None:
        return self.context.time_remaining()

    def cancel(self) -> None:
        self.context.cancel()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self.context.add_callback(callback)

    def invocation_metadata(self) -> Any:
        return self.context.invocation_metadata()

    def peer(self) -> str:
        return self.context.peer()

    def peer_identities(self) -> Sequence[bytes] | None:
        return self.context.peer_identities()

    def peer_identity_key(self) -> str | None:
        return self.context.peer_identity_key()

    def auth_context(self) -> Any:
        return self.context.auth_context()

    def set_compression(self, compression: grpc.Compression) -> None:
        self.context.set_compression(compression)

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        self.context.send_initial_metadata(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self.context.set_trailing_metadata(trailing_metadata)

    def trailing_metadata(self) -> Any:
        return self.context.trailing_metadata()

    def abort(self, code: grpc.StatusCode, details: str) -> Any:
        return self.context.abort(code, details)

    def abort_with_status(self, status: grpc.Status) -> Any:
        return self.context.abort_with_status(status)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.context.set_code(code)

    def set_details(self, details: str) -> None:
        self.context.set_details(details)

    def code(self) -> grpc.StatusCode:
        return self.context.code()

    def details(self) -> bytes:
        return self.context.details()

    def disable_next_message_compression(self) -> None:
        self.context.disable_next_message_compression()


def call_of(context: grpc.ServicerContext) -> CallStats | None:
    """The access-log record of the call ``context`` belongs to (None outside the service
    interceptor, e.g. a servicer called directly)."""
    return context.call if isinstance(context, CallContext) else None


def log_access(stats: CallStats, context: grpc.ServicerContext) -> None:
    """The call's one access-log line (once gRPC has finished it)."""
    if not access_log.isEnabledFor(logging.INFO):  # --log-level WARNING: no line to build
        return
    fields = {
        "request_id": stats.request_id,
        "method": stats.method,
        "peer": context.peer(),
        "client": client_name(context),
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


def client_name(context: grpc.ServicerContext) -> str | None:
    """The common name of the client certificate (mutual TLS), if there is one."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else None


__all__ = [
    "REQUEST_ID_HEADER",
    "CallContext",
    "CallStats",
    "JsonFormatter",
    "access_log",
    "call_of",
    "client_name",
    "configure_logging",
    "json_lines_configured",
    "log",
    "log_access",
    "request_id_var",
]
