"""Hook specifications: how plugins hand their strategies to the engine.

A plugin is a module or object with one or more of these functions decorated with
``engine.hookspecs.hookimpl``. Built-ins are plugins like any other (listed in
``engine.plugins.DEFAULT_PLUGINS``); third-party packages are found through the
``equity_engine`` entry-point group. Each hook is called once, when the plugin registry
is first built (at CLI start or server start), never during an allocation.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from engine.strategies import Allocator, CostModel, Metric

hookspec = pluggy.HookspecMarker("equity_engine")
hookimpl = pluggy.HookimplMarker("equity_engine")


@hookspec
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register metric strategies by calling ``register(cls)`` once per class.

    ``cls`` subclasses :class:`engine.strategies.Metric` with a unique ``name``. Metrics
    value the rows of a table (e.g. ``clv`` per customer, ``roc`` per plan unit); the plan's
    ``metric`` field picks the one that values customers before costs are built.
    Returns nothing; registering a name twice is reported as an error of the later plugin.
    """


@hookspec
def register_costs(register: Callable[[type[CostModel]], None]) -> None:
    """Register cost strategies by calling ``register(cls)`` once per class.

    ``cls`` subclasses :class:`engine.strategies.CostModel`. A cost strategy turns the
    portfolio and the plan's spend levels into options (cost and value per level and unit);
    the plan's ``cost`` field picks one. Returns nothing.
    """


@hookspec
def register_allocators(register: Callable[[type[Allocator]], None]) -> None:
    """Register allocation strategies by calling ``register(cls)`` once per class.

    ``cls`` subclasses :class:`engine.strategies.Allocator`; its ``allocate`` chooses the
    level of every unit under the plan's budgets, caps and minimums. The plan's
    ``allocation`` field picks one. Returns nothing.
    """
