"""Conformance kit for strategy plugins: call these functions from your own tests.

Each ``check_*`` function runs one strategy class against the contract the engine relies on
and raises ``AssertionError`` with a message naming the class and the broken rule, so it
works with pytest, unittest or a bare ``assert``-free script alike::

    from engine.testing import check_cost_model, check_metric, sample_portfolio

    def test_my_cost_model():
        portfolio, plan = sample_portfolio()
        check_cost_model(MyCostModel, portfolio, plan)

What is checked, for every kind (``check_params``):

- the class subclasses the right base, has a ``name`` (letters, digits, ``.``, ``_``, ``-``),
  a ``summary`` and documented ``Param`` declarations whose defaults pass their own checks;
- ``from_params({})`` fills every default, ``from_params`` rejects unknown parameters with
  ``InvalidInputError``, ``__init__`` stores every declared parameter on the instance and
  nothing else (scikit-learn's convention: no work, no hidden state in ``__init__``).

Then, by kind, on the inputs you pass (``check_metric``, ``check_cost_model``,
``check_allocator``): outputs have the right type, length and dtypes and are finite; the
strategy is vectorized over customers (each of a few single rows gives what it gets inside
the whole table, shuffled rows give shuffled results, and a table tiled to 100,000 rows is
handled in one call with the same per-row results); the same input gives the same output
from a fresh instance; the inputs are not modified. ``check_plugin`` and
``check_entry_point`` check that a plugin registers its strategies without failures.

The kit is split by what it checks (``engine.testing.params``, ``metrics``, ``costs``,
``allocators``, ``plugins``), with the sample inputs in ``engine.testing.portfolios`` and
the shared comparison and tiling helpers in ``engine.testing.tables``; import the names
below from ``engine.testing`` itself.
"""

from __future__ import annotations

from engine.testing.allocators import check_allocator, tile_options
from engine.testing.costs import check_cost_model
from engine.testing.costs import options_frame as options_frame
from engine.testing.metrics import check_metric
from engine.testing.params import check_params
from engine.testing.plugins import check_entry_point, check_plugin
from engine.testing.portfolios import make_problem, sample_portfolio, sample_problem
from engine.testing.tables import COPY_SEPARATOR, N_LARGE, tile_table
from engine.testing.tables import RTOL as RTOL

__all__ = [
    "COPY_SEPARATOR",
    "N_LARGE",
    "check_allocator",
    "check_cost_model",
    "check_entry_point",
    "check_metric",
    "check_params",
    "check_plugin",
    "make_problem",
    "sample_portfolio",
    "sample_problem",
    "tile_options",
    "tile_table",
]
