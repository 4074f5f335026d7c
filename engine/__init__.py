"""Equity Engine: allocate acquisition and retention budgets to maximize total customer equity.

The names below are the public facade of the plugin SDK; each is imported on first use so
that ``import engine`` stays cheap (the command line builds its parser before any numerics
are loaded). The layers, from the bottom:

* ``engine.errors``, ``engine.api`` — the error model and the generated protobuf schema;
* the plugin SDK at this level — plan, portfolio, options, hull, constraints, allocation,
  result, valuation, strategies, hookspecs, plugins, pipeline and ``engine.testing``;
* ``engine.optimize`` (the exact LP and its repair) and ``engine.clv`` (lifetime value);
* ``engine.planning`` (frontier, scenarios, report);
* ``engine.service`` (gRPC server and client);
* ``engine.cli`` (the ``equity`` command).

A module imports only from its own layer or the ones below (``tests/test_layers.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine import _moved

__version__ = "0.1.0"

_moved.install()

_FACADE: dict[str, str] = {
    "Plan": "engine.plan",
    "SegmentLimit": "engine.plan",
    "StrategyChoice": "engine.plan",
    "Portfolio": "engine.portfolio",
    "Valuation": "engine.valuation",
    "OptionSet": "engine.options",
    "Allocation": "engine.allocation",
    "PlanResult": "engine.result",
    "PlanSummary": "engine.summary",
    "allocate": "engine.pipeline",
    "build_model": "engine.pipeline",
    "Metric": "engine.strategies",
    "CostModel": "engine.strategies",
    "Allocator": "engine.strategies",
    "Param": "engine.strategies",
    "Problem": "engine.strategies",
    "hookimpl": "engine.hookspecs",
    "Registry": "engine.plugins",
    "default_registry": "engine.plugins",
    "EquityError": "engine.errors",
    "FieldViolation": "engine.errors",
    "InvalidInputError": "engine.errors",
    "InfeasiblePlanError": "engine.errors",
    "LimitExceededError": "engine.errors",
    "PluginError": "engine.errors",
    "SolverError": "engine.errors",
    "CancelledError": "engine.errors",
}

__all__ = [
    "Allocation",
    "Allocator",
    "CancelledError",
    "CostModel",
    "EquityError",
    "FieldViolation",
    "InfeasiblePlanError",
    "InvalidInputError",
    "LimitExceededError",
    "Metric",
    "OptionSet",
    "Param",
    "Plan",
    "PlanResult",
    "PlanSummary",
    "PluginError",
    "Portfolio",
    "Problem",
    "Registry",
    "SegmentLimit",
    "SolverError",
    "StrategyChoice",
    "Valuation",
    "__version__",
    "allocate",
    "build_model",
    "default_registry",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _FACADE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACADE))


if TYPE_CHECKING:
    from engine.allocation import Allocation
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
    from engine.hookspecs import hookimpl
    from engine.options import OptionSet
    from engine.pipeline import allocate, build_model
    from engine.plan import Plan, SegmentLimit, StrategyChoice
    from engine.plugins import Registry, default_registry
    from engine.portfolio import Portfolio
    from engine.result import PlanResult
    from engine.strategies import Allocator, CostModel, Metric, Param, Problem
    from engine.summary import PlanSummary
    from engine.valuation import Valuation
