"""Small tables without polars' fixed cost per call.

A polars expression, ``repeat``, ``gather`` or ``DataFrame.clear`` costs 50-150 us whatever
the size of its table: nothing at 10M rows, most of the time of a 100-customer allocation
(dozens of such calls around the solver). Below ``SMALL_ROWS`` rows the helpers here build
the same columns from Python lists and numpy arrays instead; above it they take the
columnar path, which a list of 10M Python objects would slow down. Each helper returns
exactly what its general path returns (values, nulls, dtype; names where a caller keeps
them), and ``tests/test_small_tables.py`` runs random small plans through both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from numpy.typing import NDArray

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

SMALL_ROWS = 4_096  # rows at most for the list and numpy paths


def labels(names: Sequence[str], codes: NDArray[np.integer]) -> pl.Series:
    """``names[codes]`` as an unnamed String column (the labels of kind or segment codes)."""
    if codes.size <= SMALL_ROWS and len(names):
        return pl.Series("", np.asarray(names, dtype=object)[codes].tolist(), dtype=pl.String)
    return pl.Series(names, dtype=pl.String).gather(codes.astype(np.uint32))


def nulls(n: int, dtype: PolarsDataType) -> pl.Series:
    """A column of ``n`` nulls of type ``dtype`` (named as ``pl.repeat`` names it)."""
    if n <= SMALL_ROWS:
        return pl.Series("literal", [None] * n, dtype=dtype)
    return pl.repeat(None, n, dtype=dtype, eager=True)


def scattered(n: int, rows: NDArray[np.integer], values: NDArray[np.float64]) -> pl.Series:
    """A Float64 column of ``n`` nulls with ``values`` at ``rows`` (``nulls(n, pl.Float64)
    .scatter(rows, values)``, named as ``pl.repeat`` names it, 0.0 under the nulls). A
    small one is one constructor call on a list (a column of nulls and a scatter: 16 -> 7 us
    at 100 rows); a large one is scattered into nulls, whose pages nothing writes (a list,
    or a NaN-filled array, would be built and written in full: 80 MB a column at 10M)."""
    if n <= SMALL_ROWS:
        column: list[float | None] = [None] * n
        for row, value in zip(rows.tolist(), values.tolist(), strict=True):  # a few rows
            column[row] = value
        return pl.Series("literal", column, dtype=pl.Float64)
    return nulls(n, pl.Float64).scatter(rows, values)


def null_rows(table: pl.DataFrame, n: int) -> pl.DataFrame:
    """``n`` rows of nulls with ``table``'s columns and types (``table.clear(n)``)."""
    if n <= SMALL_ROWS:
        return pl.DataFrame([pl.Series(name, [None] * n, dtype=dtype)
                             for name, dtype in table.schema.items()])
    return table.clear(n)


def padded(columns: list[pl.Series], n: int) -> list[pl.Series]:
    """``columns`` (of one length) each followed by ``n`` nulls. Small columns are rebuilt
    from their values (a concatenation wakes polars' thread pool, which on a busy machine
    costs milliseconds)."""
    if not columns or columns[0].len() + n <= SMALL_ROWS:
        return [pl.Series(c.name, c.to_list() + [None] * n, dtype=c.dtype) for c in columns]
    table = pl.DataFrame(columns)
    return pl.concat([table, null_rows(table, n)]).get_columns()


def distinct_rows(table: pl.DataFrame, keys: list[str]) -> bool:
    """Whether no row of a small table repeats an earlier one on ``keys`` (no nulls among
    them). False means "not known here": the caller's general check then decides and names
    the repeat."""
    if table.height > SMALL_ROWS:
        return False
    columns = [table[k] for k in keys]
    # ids compared as Python values: integers and text only (NaN, -0.0 and the like are
    # left to polars' own equality)
    if any(c.null_count() or not (c.dtype.is_integer() or c.dtype == pl.String)
           for c in columns):
        return False
    rows = list(zip(*(c.to_list() for c in columns), strict=True))
    return len(set(rows)) == len(rows)


def codes(segment: pl.Series) -> tuple[NDArray[np.int32], list[str]] | None:
    """A small text column's labels as codes of their sorted names, null as "" (what
    ``engine.options`` makes of segment labels), or ``None`` for a column that is not
    small text (the caller's columnar path then encodes it). Python orders text by code
    point, polars by UTF-8 bytes: the same order."""
    found = _labels(segment)
    if found is None:
        return None
    values, names = found
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[v] for v in values), dtype=np.int32, count=len(values)), names


def names(segment: pl.Series) -> list[str] | None:
    """The sorted names of ``codes`` without the codes (``None`` when ``codes`` is)."""
    found = _labels(segment)
    return None if found is None else found[1]


def _labels(segment: pl.Series) -> tuple[list[str], list[str]] | None:
    if segment.len() > SMALL_ROWS or segment.dtype != pl.String:
        return None
    values = ["" if v is None else v for v in segment.to_list()]
    return values, sorted(set(values))

