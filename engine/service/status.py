"""The one mapping between the engine's errors and gRPC statuses with ``google.rpc`` details.

- ``status_from_error``: an exception as the ``google.rpc.Status`` a client receives (code,
  one-line message, ``BadRequest`` / ``PreconditionFailure`` / ``QuotaFailure`` and an
  ``ErrorInfo`` of domain ``equity-engine.v1``); anything not a domain error is INTERNAL
  with the request id only.
- ``error_from_status``: back again, so a Python caller gets the same exception classes
  locally and remotely (``ServiceError`` for statuses that are not domain errors).
- ``grpc_code``: the status code number of a ``google.rpc.Status`` as a ``grpc.StatusCode``.
- ``unauthenticated``: the status of a call without a valid bearer token.

The server's interceptor, its solve workers and the client all use these; the table of
codes is in docs/api.md ("Error model").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from engine.errors import (
    CancelledError,
    EquityError,
    FieldViolation,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
    PluginError,
    SolverError,
)

DOMAIN = "equity-engine.v1"
_T = TypeVar("_T")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def grpc_code(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a status code number (UNKNOWN for one gRPC does not know)."""
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


class ServiceError(EquityError):
    """A gRPC failure that is not one of the engine's domain errors (INTERNAL, UNAVAILABLE...)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        super().__init__(f"{code.name}: {message}")


class TruncatedInputError(InvalidInputError):
    """An ``InvalidInputError`` whose status listed only the first violations (the server
    caps them): ``.violations`` holds those, ``.total`` counts all, ``.omitted`` the rest."""

    def __init__(self, violations: Sequence[FieldViolation], total: int) -> None:
        super().__init__(violations)
        self.total = total
        self.omitted = total - len(self.violations)
        self.args = (f"{self.args[0]}; {self.omitted} more not listed",)


class DeadlineExceededError(CancelledError):
    """The call's deadline passed; the server stopped working on it (DEADLINE_EXCEEDED)."""


_TRANSPORT_SIZE = re.compile(r"message larger than max \((\d+) vs\. (\d+)\)")
_ROW = re.compile(r"^((?:customers|prospects|options|transactions)\.[^\[\]]+)\[(\d+)\]$")


def _pack(*messages: Any) -> list[any_pb2.Any]:
    out = []
    for m in messages:
        packed = any_pb2.Any()
        packed.Pack(m)
        out.append(packed)
    return out


def _info(reason: str, **metadata: Any) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={k: str(v) for k, v in metadata.items()}
    )


MAX_DETAILS = 50  # field violations in one status (ServerConfig.max_error_details)
# A failed call's status, as gRPC counts it in the trailer: the message percent-encoded
# (``grpc-message``) and the serialized Status (``grpc-status-details-bin``, counted as
# bytes, not base64). gRPC clients refuse a trailer past 8 KiB at random by default (the
# soft ``grpc.max_metadata_size``; always past 16 KiB) and the caller then gets
# RESOURCE_EXHAUSTED without details: the status stays within 6 KiB, leaving room for the
# request id and gRPC's own entries.
MAX_TRAILER_BYTES = 6 << 10
MAX_MESSAGE_BYTES = 1024  # the message as ``grpc-message`` carries it (percent-encoded)
_DESCRIPTION_CHARS = 512
# the listed problems' share: what is left beside the message (once in the Status, once as
# ``grpc-message``) and the ErrorInfo
_DETAIL_BYTES = MAX_TRAILER_BYTES - 2 * MAX_MESSAGE_BYTES - 512
# the bytes gRPC sends as they are in ``grpc-message``; any other is sent as %XX
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x25)


def _encoded_length(text: str) -> int:
    """The length of ``text`` in ``grpc-message``: UTF-8, every byte outside printable
    ASCII (and ``%``) percent-encoded."""
    data = text.encode()
    return len(data) + 2 * len(data.translate(None, _PLAIN))


def _short(message: str) -> str:
    """The message cut to ``MAX_MESSAGE_BYTES`` as sent (ending "...")."""
    if len(message) <= MAX_MESSAGE_BYTES and _encoded_length(message) <= MAX_MESSAGE_BYTES:
        return message
    room = MAX_MESSAGE_BYTES - 3
    cut = message[:room]
    while (excess := _encoded_length(cut) - room) > 0:  # a character sends 1 to 12 bytes
        cut = cut[: len(cut) - max(1, excess // 12)]
    return cut + "..."


def trailer_bytes(status: status_pb2.Status) -> int:
    """What ``status`` takes of a trailer as gRPC counts it (see ``MAX_TRAILER_BYTES``)."""
    return _encoded_length(status.message) + status.ByteSize()


def _violations(
    exc: InvalidInputError, max_details: int
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The first violations, at most ``max_details`` and their share of the trailer."""
    out: list[error_details_pb2.BadRequest.FieldViolation] = []
    size = 0
    for v in exc.violations[:max_details]:
        item = error_details_pb2.BadRequest.FieldViolation(
            field=v.path()[:_DESCRIPTION_CHARS], description=v.description[:_DESCRIPTION_CHARS],
            reason="INVALID_VALUE")
        size += item.ByteSize() + 4
        if out and size > _DETAIL_BYTES:
            break
        out.append(item)
    return out


def status_from_error(
    exc: BaseException, deadline_passed: bool = False, request_id: str = "",
    max_details: int = MAX_DETAILS,
) -> status_pb2.Status:
    """The one mapping from an exception to the ``google.rpc.Status`` a client receives.

    Domain errors keep their message and gain structured details; anything else is
    INTERNAL with only the request id (the traceback stays in the server log). A request
    id, when given, is in every ``ErrorInfo``. Field violations are capped (``max_details``
    and what fits in the trailer, ``MAX_TRAILER_BYTES``): ``ErrorInfo.metadata`` says how
    many there are (``violations``) and how many are left out (``omitted``), and the
    message ends with "and N more". A plan's infeasible constraints are capped alike.
    """
    status = _status(exc, deadline_passed, request_id, max_details)
    status.message = _short(status.message)
    return status


def _status(exc: BaseException, deadline_passed: bool, request_id: str,
            max_details: int) -> status_pb2.Status:
    ids = {"request_id": request_id} if request_id else {}
    if isinstance(exc, InvalidInputError):
        return _fitted(lambda shown: _bad_request(exc, shown, ids),
                       _violations(exc, max_details), lambda shown: shown[:-1])
    if isinstance(exc, InfeasiblePlanError):
        return _fitted(lambda names: _infeasible(exc, names, ids), list(exc.constraints),
                       lambda names: names[: len(names) // 2])
    if isinstance(exc, LimitExceededError):
        quota = error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=exc.limit, description=str(exc))
        ])
        info = _info("LIMIT_EXCEEDED", limit=exc.limit, value=repr(exc.value),
                     maximum=repr(exc.maximum), **ids)
        return status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc), details=_pack(quota, info)
        )
    if isinstance(exc, CancelledError):
        code = code_pb2.DEADLINE_EXCEEDED if deadline_passed else code_pb2.CANCELLED
        reason = "DEADLINE_EXCEEDED" if deadline_passed else "CANCELLED"
        return status_pb2.Status(code=code, message=str(exc), details=_pack(_info(reason, **ids)))
    if isinstance(exc, PluginError):
        info = _info("PLUGIN_ERROR", plugin=exc.plugin, request_id=request_id)
        return status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc), details=_pack(info))
    if isinstance(exc, SolverError):
        info = _info("SOLVER_ERROR", status=exc.status, request_id=request_id)
        return status_pb2.Status(code=code_pb2.INTERNAL, message=str(exc), details=_pack(info))
    info = _info("INTERNAL", request_id=request_id)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (request {request_id}; details are in the server log)",
        details=_pack(info),
    )


def _fitted(build: Callable[[list[_T]], status_pb2.Status], items: list[_T],
            fewer: Callable[[list[_T]], list[_T]]) -> status_pb2.Status:
    """``build(items)``, with ``fewer(items)`` until the status fits its trailer
    (``MAX_TRAILER_BYTES``), one item at least."""
    while True:
        status = build(items)
        if len(items) <= 1 or trailer_bytes(status) <= MAX_TRAILER_BYTES:
            return status
        items = fewer(items)


def _bad_request(exc: InvalidInputError,
                 shown: list[error_details_pb2.BadRequest.FieldViolation],
                 ids: dict[str, str]) -> status_pb2.Status:
    omitted = len(exc.violations) - len(shown)
    bad = error_details_pb2.BadRequest(field_violations=shown)
    message = str(exc) if omitted == 0 or len(shown) >= 10 else "; ".join(
        f"{v.field}: {v.description}" for v in shown) + f"; and {omitted} more"
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=_short(message),
        details=_pack(bad, _info("INVALID_INPUT", violations=len(exc.violations),
                                 omitted=omitted, **ids)),
    )


def _infeasible(exc: InfeasiblePlanError, names: list[str],
                ids: dict[str, str]) -> status_pb2.Status:
    """The plan's infeasibility naming ``names`` of its constraints (all, unless they would
    not fit the trailer: ``ErrorInfo.metadata`` then counts the rest, ``omitted``)."""
    description = exc.reason[:_DESCRIPTION_CHARS]
    failure = error_details_pb2.PreconditionFailure(violations=[
        error_details_pb2.PreconditionFailure.Violation(
            type="PLAN_INFEASIBLE", subject=name[:_DESCRIPTION_CHARS], description=description
        )
        for name in (names or ["plan"])
    ])
    omitted = len(exc.constraints) - len(names)
    extra = {"omitted": omitted} if omitted else {}
    return status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION, message=_short(str(exc)),
        details=_pack(failure, _info("PLAN_INFEASIBLE", constraints=",".join(names),
                                     **extra, **ids)),
    )


def error_from_status(
    code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any] = ()
) -> EquityError:
    """The exception a client raises for a failed call: the engine's own classes for domain
    errors (with their field violations, constraints, limit), ``ServiceError`` otherwise."""
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    failure = error_details_pb2.PreconditionFailure()
    quota = error_details_pb2.QuotaFailure()
    found = set()
    for detail in details:
        for name, target in (("info", info), ("bad", bad), ("failure", failure), ("quota", quota)):
            if detail.Is(target.DESCRIPTOR):
                detail.Unpack(target)
                found.add(name)
    reason = info.reason if "info" in found else ""
    meta = dict(info.metadata)
    if code == grpc.StatusCode.INVALID_ARGUMENT and bad.field_violations:
        violations = []
        for v in bad.field_violations:
            m = _ROW.match(v.field)
            if m:
                violations.append(FieldViolation(m.group(1), v.description, int(m.group(2))))
            else:
                violations.append(FieldViolation(v.field, v.description))
        omitted = int(meta.get("omitted", "0") or 0)
        if omitted > 0:
            return TruncatedInputError(violations, len(violations) + omitted)
        return InvalidInputError(violations)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "PLAN_INFEASIBLE":
        constraints = [c for c in meta.get("constraints", "").split(",") if c]
        text = failure.violations[0].description if failure.violations else message
        return InfeasiblePlanError(text, constraints)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason == "LIMIT_EXCEEDED":
        return LimitExceededError(
            meta.get("limit", "limit"),
            float(meta.get("value", "nan")),
            float(meta.get("maximum", "nan")),
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (m := _TRANSPORT_SIZE.search(message)):
        # gRPC's transport refuses an oversized message before the service sees it.
        return LimitExceededError("max_message_bytes", int(m.group(1)), int(m.group(2)))
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(message or "deadline exceeded")
    if code == grpc.StatusCode.CANCELLED:
        return CancelledError(message or "cancelled")
    if code == grpc.StatusCode.INTERNAL and reason == "PLUGIN_ERROR":
        plugin = meta.get("plugin", "")
        prefix = f"plugin {plugin!r}: "
        return PluginError(plugin, message.removeprefix(prefix))
    if code == grpc.StatusCode.INTERNAL and reason == "SOLVER_ERROR":
        return SolverError(message, meta.get("status", "error"))
    return ServiceError(code, message, reason, meta)


def unauthenticated(message: str) -> status_pb2.Status:
    """The status of a call refused for want of a valid token (reason ``UNAUTHENTICATED``)."""
    return status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message,
                             details=_pack(_info("UNAUTHENTICATED")))


__all__ = [
    "DOMAIN",
    "DeadlineExceededError",
    "ServiceError",
    "TruncatedInputError",
    "error_from_status",
    "grpc_code",
    "status_from_error",
    "unauthenticated",
]
