"""Exit statuses: what each engine error means to a shell script.

2 invalid input, 3 infeasible plan, 4 limit exceeded, 5 plugin error, 6 solver error,
130 cancelled, 141 standard output closed early, 70 internal error.
"""

from __future__ import annotations

import os
import sys

from engine.errors import (
    CancelledError,
    EquityError,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
    PluginError,
    SolverError,
)

EXIT_CODES: dict[type[EquityError], int] = {
    InfeasiblePlanError: 3,
    LimitExceededError: 4,
    PluginError: 5,
    SolverError: 6,
    CancelledError: 130,
}


def report_error(exc: BaseException) -> int:
    """Print the error for a person (one line per problem) and return its exit status."""
    if isinstance(exc, InvalidInputError):
        print("error: invalid input", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v}", file=sys.stderr)
        return 2
    for cls, code in EXIT_CODES.items():
        if isinstance(exc, cls):
            print(f"error: {exc}", file=sys.stderr)
            return code
    if isinstance(exc, EquityError):
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"internal error: {type(exc).__name__}: {exc} (EQUITY_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    return 70


def broken_pipe() -> int:
    """The reader of stdout went away: point stdout at the null device so the interpreter's
    final flush is quiet, and exit as a tool ended by SIGPIPE does (128 + 13)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (AttributeError, OSError, ValueError):  # not a real file (captured output)
        pass
    return 141

