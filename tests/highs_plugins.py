"""A test allocator whose time goes into one long HiGHS call (a random LP, built from numpy
arrays in milliseconds): how the tests see a solve stopped inside the solver."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.errors import CancelledError
from engine.hookspecs import hookimpl
from engine.plugins import Registry, build_registry
from engine.strategies import Allocator

SIZE = 100_000  # columns: HiGHS works on it for tens of seconds


class LongLp(Allocator):
    """Solves a random LP of ``SIZE`` columns, then gives up."""

    name = "long-lp"

    def allocate(self, problem: Any) -> Any:
        import highspy  # looked up now: the worker's interruptible subclass, if installed

        size = SIZE
        rng = np.random.default_rng(1)
        rows, per_row = size, 20
        h = highspy.Highs()
        h.silent()
        h.setOptionValue("presolve", "off")
        h.addVars(size, np.zeros(size), np.ones(size))
        h.changeColsCost(size, np.arange(size, dtype=np.int32), rng.standard_normal(size))
        shift = rng.integers(0, size // per_row, rows)  # distinct columns in each row
        index = np.sort((np.arange(rows)[:, None] * 7 + shift[:, None]
                         + np.arange(per_row)[None, :] * (size // per_row)) % size,
                        axis=1).ravel()
        status = h.addRows(rows, -np.ones(rows), np.ones(rows),
                  rows * per_row, np.arange(0, rows * per_row, per_row, dtype=np.int32),
                  index.astype(np.int32), rng.standard_normal(rows * per_row))
        assert status == highspy.HighsStatus.kOk, status
        h.run()
        raise CancelledError(f"long-lp: HiGHS ended with {h.getModelStatus()}")


@hookimpl
def register_allocators(register: Callable[[type[Allocator]], None]) -> None:
    register(LongLp)


PLUGIN = types.SimpleNamespace(__name__="highs_test_plugins",
                               register_allocators=register_allocators)


def long_lp_registry() -> Registry:
    return build_registry(extra=[PLUGIN], entry_points=False)


long_lp_registry.__test__ = False  # type: ignore[attr-defined]
