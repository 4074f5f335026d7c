"""Domain errors: every failure a caller can act on, with the field and row that caused it.

The CLI turns these into one-line messages with a non-zero exit code; the gRPC layer maps
each class to one status code (see ``engine.service.status``), so no caller ever sees a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field; ``row`` is the 0-based row of a table when there is one."""

    field: str
    description: str
    row: int | None = None

    def path(self) -> str:
        return self.field if self.row is None else f"{self.field}[{self.row}]"

    def __str__(self) -> str:
        return f"{self.path()}: {self.description}"


class EquityError(Exception):
    """Base class of errors the engine raises on purpose."""


class InvalidInputError(EquityError):
    """The input (tables, plan, parameters) is malformed; maps to INVALID_ARGUMENT."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = list(violations)
        if not self.violations:
            raise ValueError("InvalidInputError needs at least one violation")
        shown = "; ".join(str(v) for v in self.violations[:10])
        more = len(self.violations) - 10
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))

    @classmethod
    def single(cls, field: str, description: str, row: int | None = None) -> InvalidInputError:
        return cls([FieldViolation(field, description, row)])


class InfeasiblePlanError(EquityError):
    """The plan's constraints cannot all be met; maps to FAILED_PRECONDITION."""

    def __init__(self, reason: str, constraints: Iterable[str] = ()) -> None:
        self.reason = reason
        self.constraints = list(constraints)
        super().__init__(reason)


class LimitExceededError(EquityError):
    """A configured limit was passed; maps to RESOURCE_EXHAUSTED with the limit named."""

    def __init__(self, limit: str, value: float, maximum: float) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        super().__init__(f"{limit}: {value:g} exceeds the limit of {maximum:g}")


class MemoryLimitError(LimitExceededError):
    """The machine ran out of memory for the problem: a resource limit, not a broken plugin."""

    def __init__(self, what: str) -> None:
        EquityError.__init__(
            self, f"memory: {what} ran out of memory; use a smaller portfolio or more memory"
        )
        self.limit, self.value, self.maximum = "memory", float("nan"), float("nan")


class PluginError(EquityError):
    """A plugin broke its contract (raised, wrong shape, bad spec); names the plugin."""

    def __init__(self, plugin: str, problem: str) -> None:
        self.plugin = plugin
        self.problem = problem
        super().__init__(f"plugin {plugin!r}: {problem}")


class SolverError(EquityError):
    """The solver failed or was stopped (time limit, cancellation) without a usable plan."""

    def __init__(self, message: str, status: str = "error") -> None:
        self.status = status
        super().__init__(message)


class CancelledError(EquityError):
    """The caller went away or its deadline passed; the engine stopped working on it."""
