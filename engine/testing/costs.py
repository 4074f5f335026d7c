"""``check_cost_model``: a cost model against the contract of
``engine.strategies.CostModel`` (a valid ``OptionSet``, vectorized over customers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np
import polars as pl

from engine.errors import InvalidInputError
from engine.options import KINDS, OptionSet
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.strategies import CostModel
from engine.testing.failures import fail, label
from engine.testing.params import check_params
from engine.testing.tables import (
    COPY_SUFFIX,
    N_LARGE,
    compare_columns,
    copies_for,
    frame_equal,
    picks,
    tile_table,
)


def options_frame(options: OptionSet) -> pl.DataFrame:
    """One row per option (kind, unit_id, rank by cost, ...), independent of storage order."""
    counts = np.diff(options.offsets)
    unit = options.unit_of_option
    frame = pl.DataFrame(
        {
            "kind": pl.Series(np.array(KINDS, dtype=object)[options.kind[unit]], dtype=pl.String),
            "unit_id": options.unit_id.cast(pl.String).gather(pl.Series(unit)),
            "segment": pl.Series(
                np.array(options.segments, dtype=object)[options.segment[unit]], dtype=pl.String
            ),
            "fractional": options.fractional[unit],
            "size": options.size[unit],
            "n": counts[unit],
            "level": options.level,
            "cost": options.cost,
            "value": options.value,
        }
    )
    frame = frame.sort(["kind", "unit_id", "cost", "level", "value"], maintain_order=True)
    return frame.with_columns(pl.int_range(pl.len()).over(["kind", "unit_id"]).alias("rank"))


_OPTION_COLUMNS = ("n", "segment", "fractional", "size", "level", "cost", "value")


def _check_option_set(cls: Any, options: object, what: str) -> OptionSet:
    def bad(message: str) -> NoReturn:
        fail(cls, f"on {what}: {message}")

    if not isinstance(options, OptionSet):
        bad(f"returned {type(options).__name__}, not engine.options.OptionSet")
    n = options.n_units
    if n < 1:
        bad("returned no units")
    offsets = np.asarray(options.offsets)
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or offsets[0] != 0:
        bad("offsets must be a 1-D integer array starting at 0")
    if (np.diff(offsets) < 1).any():
        bad("every unit needs at least one option (offsets must increase)")
    total = int(offsets[-1])
    for name in ("level", "cost", "value"):
        array = getattr(options, name)
        if not isinstance(array, np.ndarray) or array.dtype != np.float64 or array.shape != (
            total,
        ):
            bad(f"{name} must be a float64 array of shape ({total},) (one entry per option), "
                f"got {getattr(array, 'dtype', type(array))} {np.shape(array)}")
    for name, kind in (("kind", "integer"), ("segment", "integer"), ("fractional", "bool"),
                       ("size", "float64")):
        array = getattr(options, name)
        dtype = getattr(array, "dtype", None)
        ok = dtype is not None and (
            np.issubdtype(dtype, np.integer) if kind == "integer" else dtype == np.dtype(kind)
        )
        if not ok or np.shape(array) != (n,):
            bad(f"{name} must be a {kind} array of shape ({n},) (one entry per unit), got "
                f"{dtype} {np.shape(array)}")
    if not isinstance(options.unit_id, pl.Series) or options.unit_id.len() != n:
        bad(f"unit_id must be a polars Series of {n} ids")
    if options.unit_id.null_count():
        bad("unit_id has nulls")
    if not set(np.unique(options.kind).tolist()) <= {0, 1}:
        bad("kind must be 0 (retention) or 1 (acquisition)")
    if (options.segment < 0).any() or (options.segment >= len(options.segments)).any():
        bad("segment codes must index options.segments")
    if not np.isfinite(options.size).all() or (options.size <= 0).any():
        bad("size must be finite and > 0")
    try:
        options.validate()
    except InvalidInputError as exc:
        bad(f"options are invalid: {exc}")
    keys = pl.DataFrame({"kind": options.kind, "id": options.unit_id.cast(pl.String)})
    if keys.is_duplicated().any():
        i = int(np.flatnonzero(keys.is_duplicated().to_numpy())[0])
        bad(f"unit id {keys['id'][i]!r} appears more than once")
    return options


def _source_table(
    cls: type[CostModel], portfolio: Portfolio, unit_table: str | None
) -> tuple[str, pl.DataFrame] | None:
    """The table whose rows (customers) or id groups (options) become units."""
    names = [unit_table] if unit_table else [u for u in cls.uses if u in ("customers", "options")]
    for name in names:
        table = getattr(portfolio, name, None)
        if table is not None:
            return name, table
    return None


def _with_table(portfolio: Portfolio, name: str, table: pl.DataFrame) -> Portfolio:
    parts = {"customers": portfolio.customers, "prospects": portfolio.prospects,
             "options": portfolio.options} | {name: table}
    return Portfolio(**parts)


def check_cost_model(
    cls: type[CostModel],
    portfolio: Portfolio,
    plan: Plan,
    *,
    params: Mapping[str, Any] | None = None,
    unit_table: str | None = None,
    rows: int = 3,
    n_large: int = N_LARGE,
) -> OptionSet:
    """Check a cost model on a portfolio and plan; return the options it builds.

    The portfolio is validated first, as the engine does. Row-wise checks take single
    rows of, and tile, the first of ``cls.uses`` the portfolio has among ``customers`` and
    ``options`` (or ``unit_table``): a customer's options may depend only on its own row,
    the plan, the parameters and the other tables.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, CostModel):
        fail(cls, "check_cost_model expects a CostModel subclass")
    assert isinstance(instance, CostModel)
    if not isinstance(cls.uses, tuple) or not set(cls.uses) <= {"customers", "prospects",
                                                                  "options"}:
        fail(cls, "uses must be a tuple of 'customers', 'prospects', 'options'")
    portfolio = portfolio.validated()

    def run(p: Portfolio, what: str) -> tuple[OptionSet, pl.DataFrame]:
        fresh = cls.from_params(params or {})
        try:
            options = fresh.build(p, plan)
        except Exception as exc:
            raise AssertionError(f"{label(cls)}: build on {what} raised {exc!r}") from exc
        return _check_option_set(cls, options, what), options_frame(options)

    tables = {n: getattr(portfolio, n) for n in ("customers", "prospects", "options")}
    before = {n: t.clone() for n, t in tables.items() if t is not None}
    options, full = run(portfolio, "the portfolio")
    for name, table in before.items():
        if not frame_equal(getattr(portfolio, name), table):
            fail(cls, f"build modified the portfolio's {name} table")
    _, again = run(portfolio, "the same portfolio again")
    if not frame_equal(full, again):
        fail(cls, "not deterministic: two builds of the same portfolio differ")

    source = _source_table(cls, portfolio, unit_table)
    if source is None:
        return options
    name, table = source
    ids = table["customer_id"].cast(pl.String)
    unique_ids = ids.unique(maintain_order=True)
    for i in picks(unique_ids.len(), rows):
        one_id = unique_ids[i]
        subset = table.filter(ids == one_id)
        _, small = run(_with_table(portfolio, name, subset), f"{name} {one_id!r} alone")
        _compare_units(cls, small, full, f"{name} {one_id!r} alone must give the options "
                                         "it gets in the whole portfolio")

    copies = copies_for(n_large, unique_ids.len())
    tiled = _with_table(portfolio, name, tile_table(table, copies))
    _, large = run(tiled, f"{copies} copies of {name} ({copies * table.height} rows)")
    _compare_units(cls, large, full, f"{copies} copies of {name} must give copies of the "
                                     "same options", strip_copies=True)
    from_source = int(full.filter(pl.col("rank") == 0)["unit_id"].is_in(
        unique_ids.implode()).sum())
    units = int((large["rank"] == 0).sum())
    expected = int((full["rank"] == 0).sum()) + (copies - 1) * from_source
    if units != expected:
        fail(cls, f"{copies} copies of {name} gave {units} units, expected {expected}")
    return options


def _compare_units(
    cls: Any, got: pl.DataFrame, want: pl.DataFrame, what: str, strip_copies: bool = False
) -> None:
    if strip_copies:
        got = got.with_columns(pl.col("unit_id").str.replace(COPY_SUFFIX, ""))
    joined = got.join(want, on=["kind", "unit_id", "rank"], how="left", suffix="_want",
                      maintain_order="left")
    unmatched = joined["n_want"].is_null()
    if unmatched.any():
        i = int(np.flatnonzero(unmatched.to_numpy())[0])
        fail(cls, f"{what}: {joined['kind'][i]} unit {joined['unit_id'][i]!r} (option "
                   f"{joined['rank'][i]}) has no counterpart in the whole portfolio's options")
    wanted = joined.select([pl.col(f"{c}_want").alias(c) for c in _OPTION_COLUMNS]
                           + [pl.col("unit_id")])
    compare_columns(cls, joined, wanted, _OPTION_COLUMNS, what, key="unit_id")
