"""The ``equity`` command line."""

from engine.cli.app import (
    add_plan_arguments,
    add_portfolio_arguments,
    build_parser,
    load_inputs,
    main,
    print_summary,
    report_error,
)

__all__ = [
    "add_plan_arguments",
    "add_portfolio_arguments",
    "build_parser",
    "load_inputs",
    "main",
    "print_summary",
    "report_error",
]
