"""``check_allocator``: an allocator against the contract of ``engine.strategies.Allocator``
(a valid allocation honouring every row), and ``tile_options`` to build large problems.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn

import numpy as np
import polars as pl

from engine.allocation import Allocation, violations
from engine.constraints import Constraint
from engine.errors import EquityError
from engine.options import OptionSet
from engine.strategies import Allocator, Problem
from engine.testing.failures import fail, label
from engine.testing.params import check_params
from engine.testing.tables import (
    COPY_SEPARATOR,
    N_LARGE,
    copies_for,
)


def tile_options(options: OptionSet, copies: int) -> OptionSet:
    """``copies`` copies of every unit (ids ``<id>~copy<k>``), same segments and kinds."""
    n, total = options.n_units, int(options.offsets[-1])
    copy = pl.Series(np.repeat(np.arange(copies, dtype=np.int64), n)).cast(pl.String)
    ids = pl.concat([options.unit_id.cast(pl.String)] * copies) + COPY_SEPARATOR + copy
    shift = np.repeat(np.arange(copies, dtype=np.int64) * total, n)
    offsets = np.concatenate([np.tile(options.offsets[:-1], copies) + shift,
                              [copies * total]]).astype(np.int64)
    return OptionSet(
        unit_id=ids,
        kind=np.tile(options.kind, copies),
        segment=np.tile(options.segment, copies),
        segments=list(options.segments),
        fractional=np.tile(options.fractional, copies),
        size=np.tile(options.size, copies),
        offsets=offsets,
        level=np.tile(options.level, copies),
        cost=np.tile(options.cost, copies),
        value=np.tile(options.value, copies),
    )


def check_allocator(
    cls: type[Allocator],
    problem: Problem,
    *,
    params: Mapping[str, Any] | None = None,
    n_large: int = N_LARGE,
    tolerance: float = 1e-7,
) -> Allocation:
    """Check an allocator on a problem (see ``make_problem``/``sample_problem``); return
    its allocation.

    Checked: the allocation's shapes and dtypes, that it picks each unit's own options,
    honours every budget, cap and (if ``supports_minimums``) minimum, carries an LP bound
    when ``exact``, is deterministic, leaves the problem untouched, answers a stop request
    with a valid allocation or an engine error, and handles the problem tiled to
    ``n_large`` units (budgets scaled alike) in one call.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, Allocator):
        fail(cls, "check_allocator expects an Allocator subclass")
    assert isinstance(instance, Allocator)
    for attr in ("exact", "supports_minimums"):
        if not isinstance(getattr(cls, attr), bool):
            fail(cls, f"{attr} must be a bool class attribute")
    if any(r.sense < 0 for r in problem.rows) and not cls.supports_minimums:
        raise AssertionError(
            f"check_allocator: the problem has minimum rows, which {label(cls)} does not "
            "support (supports_minimums = False; the engine refuses such plans before "
            "calling it); pass a problem without minimums, e.g. sample_problem(minimums=False)"
        )
    options = problem.options

    def run(p: Problem, what: str) -> Allocation:
        fresh = cls.from_params(params or {})
        try:
            allocation = fresh.allocate(p)
        except Exception as exc:
            raise AssertionError(f"{label(cls)}: allocate on {what} raised {exc!r}") from exc
        _check_allocation(cls, p, allocation, what, tolerance)
        return allocation

    arrays = {n: getattr(options, n).copy() for n in ("offsets", "level", "cost", "value",
                                                       "kind", "segment", "size")}
    allocation = run(problem, f"the problem ({options.n_units} units)")
    for name, array in arrays.items():
        if not np.array_equal(getattr(options, name), array):
            fail(cls, f"allocate modified problem.options.{name}")
    again = run(problem, "the same problem again")
    for name in ("lo", "hi", "theta"):
        if not np.array_equal(getattr(allocation, name), getattr(again, name)):
            fail(cls, f"not deterministic: two runs on the same problem differ in {name}")

    stop = replace(problem, should_stop=lambda: True)
    fresh = cls.from_params(params or {})
    try:
        stopped = fresh.allocate(stop)
    except EquityError:
        pass  # CancelledError / SolverError: the documented ways to give up
    except Exception as exc:
        fail(cls, f"with should_stop() True, allocate must return a valid allocation or "
                   f"raise CancelledError, raised {exc!r}")
    else:
        _check_allocation(cls, stop, stopped, "a stop request", tolerance)

    copies = copies_for(n_large, options.n_units)
    rows = [Constraint(r.name, r.cells, r.sense, r.rhs * copies) for r in problem.rows]
    large = replace(problem, options=tile_options(options, copies), rows=rows)
    run(large, f"{copies} copies of the problem ({large.options.n_units} units, "
               "budgets scaled alike)")
    return allocation


def _check_allocation(
    cls: Any, problem: Problem, allocation: object, what: str, tolerance: float
) -> None:
    def bad(message: str) -> NoReturn:
        fail(cls, f"on {what}: {message}")

    if not isinstance(allocation, Allocation):
        bad(f"returned {type(allocation).__name__}, not engine.allocation.Allocation")
    options = problem.options
    n = options.n_units
    for name in ("lo", "hi"):
        array = getattr(allocation, name)
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
            bad(f"{name} must be an integer numpy array (flat option indices)")
        if array.shape != (n,):
            bad(f"{name} has shape {array.shape}, expected ({n},)")
        if (array < 0).any() or (array >= options.cost.size).any():
            bad(f"{name} has indices outside the options")
        wrong = options.unit_of_option[array] != np.arange(n)
        if wrong.any():
            bad(f"{name} points at another unit's options (first at unit {int(np.argmax(wrong))})")
    theta = allocation.theta
    if not isinstance(theta, np.ndarray) or theta.dtype != np.float64 or theta.shape != (n,):
        bad(f"theta must be a float64 array of shape ({n},)")
    if not np.isfinite(theta).all() or (theta < 0).any() or (theta > 1).any():
        bad("theta must be in [0, 1]")
    if (~options.fractional & (theta > 0) & (allocation.lo != allocation.hi)).any():
        bad("a customer (not a pool) was given two levels")
    if not isinstance(allocation.status, str) or not allocation.status:
        bad("status must be a non-empty string")
    broken = violations(options, problem.rows, allocation, tolerance)
    if broken:
        bad(f"the plan breaks {broken}")
    equity = float(allocation.equity(options).sum())
    if not math.isfinite(equity):
        bad("the plan's equity is not finite")
    if cls.exact:
        bound = allocation.bound
        if bound is None or not math.isfinite(bound):
            bad("exact allocators must report a finite LP bound")
        if bound < equity - tolerance * max(1.0, abs(equity)):
            bad(f"LP bound {bound} is below the plan's equity {equity}")
