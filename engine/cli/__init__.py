"""The ``equity`` command line. Errors print one line per problem and exit non-zero:
2 invalid input, 3 infeasible plan, 4 limit exceeded, 5 plugin error, 6 solver error,
70 internal error (a traceback only with EQUITY_DEBUG=1).

When standard output is closed early (``equity frontier --example | head -2``) every command
stops quietly with exit status 141, what a shell reports for a tool ended by SIGPIPE, so
``set -o pipefail`` scripts see what they see of any Unix tool; nothing goes to stderr.
Warnings of third-party libraries (matplotlib, numpy, polars) are not printed.

Each command group lives in a module of its own (``allocation``, ``clv``, ``planning``,
``service``) exposing ``add_parser``; the service modules import grpc only when a service
command runs, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from engine import __version__
from engine.cli import allocation, clv, planning, response, service
from engine.cli.allocation import print_summary
from engine.cli.arguments import (
    HelpFormatter,
    add_plan_arguments,
    add_portfolio_arguments,
    load_inputs,
)
from engine.cli.exits import broken_pipe, report_error
from engine.stdio import reserve_stdout

COMMAND_GROUPS = (allocation, clv, service, planning, response)

__all__ = [
    "add_plan_arguments",
    "add_portfolio_arguments",
    "build_parser",
    "load_inputs",
    "main",
    "print_summary",
    "report_error",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equity", description="Equity Engine")
    parser.add_argument("--version", action="version", version=f"equity-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    reserve_stdout()  # only what the engine prints reaches stdout (engine/stdio.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not os.environ.get("EQUITY_DEBUG"):
                warnings.simplefilter("ignore")  # third-party warnings are not the user's
            code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EQUITY_DEBUG"):
            traceback.print_exc()
        return report_error(exc)

