"""``check_metric``: a metric against the contract of ``engine.strategies.Metric``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import polars as pl

from engine.strategies import Metric
from engine.testing.failures import fail, label
from engine.testing.params import check_params
from engine.testing.tables import (
    N_LARGE,
    compare_columns,
    copies_for,
    frame_equal,
    permutation,
    picks,
    plain_dtype,
    tile_table,
)
from engine.valuation import Valuation


def check_metric(
    cls: type[Metric],
    table: pl.DataFrame,
    *,
    valuation: Valuation | None = None,
    params: Mapping[str, Any] | None = None,
    allow_nan: Collection[str] = (),
    aggregate: Collection[str] = (),
    rows: int = 3,
    n_large: int = N_LARGE,
) -> pl.DataFrame:
    """Check a metric on ``table`` (a customers table, or the units of a plan); return its
    output.

    ``allow_nan``: produced columns where NaN is a documented value (e.g. ``roc`` of
    prospects). ``aggregate``: produced columns that depend on other rows too (e.g. a
    segment's NPS repeated on each of its rows); they are checked for shape, finiteness,
    determinism and row order, but not against single rows or tiled copies.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, Metric):
        fail(cls, "check_metric expects a Metric subclass")
    assert isinstance(instance, Metric)
    for attr in ("requires", "produces"):
        value = getattr(cls, attr)
        if not isinstance(value, tuple) or not all(isinstance(c, str) for c in value):
            fail(cls, f"{attr} must be a tuple of column names")
    if not cls.produces:
        fail(cls, "produces must name at least one column")
    if table.height == 0:
        raise AssertionError("check_metric needs a table with at least one row")
    missing = [c for c in cls.requires if c not in table.columns]
    if missing:
        raise AssertionError(
            f"check_metric: the test table lacks {missing}, required by {label(cls)}"
        )
    unknown = sorted((set(allow_nan) | set(aggregate)) - set(cls.produces))
    if unknown:
        raise AssertionError(f"check_metric: {unknown} are not produced by {label(cls)}")
    valuation = valuation or Valuation()
    rowwise = [c for c in cls.produces if c not in aggregate]

    def run(t: pl.DataFrame, what: str) -> pl.DataFrame:
        fresh = cls.from_params(params or {})
        try:
            out = fresh.compute(t, valuation)
        except Exception as exc:
            raise AssertionError(f"{label(cls)}: compute on {what} raised {exc!r}") from exc
        _check_metric_output(cls, out, t.height, allow_nan, what)
        return out

    before = table.clone()
    out = run(table, f"the table ({table.height} rows)")
    if not frame_equal(table, before):
        fail(cls, "compute modified its input table")
    again = run(table, "the same table again")
    if not frame_equal(out, again):
        fail(cls, "not deterministic: two runs on the same table differ")

    perm = permutation(table.height)
    shuffled = run(table[perm], "the rows shuffled")
    compare_columns(cls, shuffled, out[perm], cls.produces,
                     "rows shuffled must give the same per-row results, shuffled")

    for i in picks(table.height, rows):
        one = run(table.slice(i, 1), f"row {i} alone")
        compare_columns(cls, one, out.slice(i, 1), rowwise,
                         f"row {i} alone must give what it gets in the whole table "
                         "(vectorized over rows; list other columns in aggregate=)")

    copies = copies_for(n_large, table.height)
    large = run(tile_table(table, copies), f"{copies} copies of the table "
                                           f"({copies * table.height} rows)")
    compare_columns(cls, large.select(rowwise), tile_table(out.select(rowwise), copies),
                     rowwise, f"{copies} copies of the table must give copies of the results")
    return out


def _check_metric_output(
    cls: type[Metric], out: object, height: int, allow_nan: Collection[str], what: str
) -> None:
    if not isinstance(out, pl.DataFrame):
        fail(cls, f"compute on {what} returned {type(out).__name__}, not a polars DataFrame")
    if out.height != height:
        fail(cls, f"compute on {what} returned {out.height} rows for {height}")
    missing = [c for c in cls.produces if c not in out.columns]
    extra = [c for c in out.columns if c not in cls.produces]
    if missing or extra:
        fail(cls, f"compute on {what} must return exactly the columns in produces "
                   f"{list(cls.produces)}; missing {missing}, extra {extra}")
    for column in out.columns:
        dtype = out[column].dtype
        if not plain_dtype(dtype):
            fail(cls, f"column {column!r} has dtype {dtype}; use a number, boolean, "
                       "string, categorical or date column")
        if dtype.is_float():
            values = out[column].to_numpy()
            bad = ~np.isfinite(values)
            if column in allow_nan:
                bad &= ~np.isnan(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                fail(cls, f"compute on {what}: column {column!r} has {int(bad.sum())} "
                           f"non-finite values, first at row {i}: {values[i]}")
        if out[column].null_count() and column not in allow_nan:
            fail(cls, f"compute on {what}: column {column!r} has nulls")
