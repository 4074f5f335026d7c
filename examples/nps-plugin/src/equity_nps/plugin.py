"""The module the ``equity_engine`` entry point names: the engine calls these hooks once,
when it builds its plugin registry, and each hands over its strategy classes."""

from __future__ import annotations

from collections.abc import Callable

from engine.hookspecs import hookimpl
from engine.strategies import CostModel, Metric

from equity_nps.strategies import NetPromoterScore, NpsResponse


@hookimpl
def register_costs(register: Callable[[type[CostModel]], None]) -> None:
    register(NpsResponse)


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(NetPromoterScore)
