"""What the checks share: sizes and tolerances, comparing tables column by column, and
tiling an input into a large one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.testing.failures import fail

N_LARGE = 100_000
"""Rows (customers, or units for allocators) of the large input every check runs once."""
COPY_SEPARATOR = "~copy"
"""Tiled copies of a row get ids ``<id>~copy<k>``."""
RTOL = 1e-9
"""Relative tolerance when comparing a row computed alone with the same row in a batch."""

COPY_SUFFIX = re.escape(COPY_SEPARATOR) + r"\d+$"
"""A regular expression matching the suffix tiling adds to an id."""


def plain_dtype(dtype: pl.DataType) -> bool:
    """Whether a column of this dtype is one the engine can store and compare as it is."""
    return (
        dtype.is_numeric()
        or dtype.is_temporal()
        or dtype in (pl.Boolean, pl.String, pl.Categorical)
        or isinstance(dtype, pl.Enum)
    )


def compare_columns(
    cls: Any, got: pl.DataFrame, want: pl.DataFrame, columns: Iterable[str], what: str,
    key: str | None = None,
) -> None:
    """Column by column, floats within RTOL (NaN equal to NaN), others exactly."""
    for column in columns:
        g, w = got[column], want[column]
        if g.dtype.is_numeric() and w.dtype.is_numeric():
            a = g.cast(pl.Float64).to_numpy()
            b = w.cast(pl.Float64).to_numpy()
            scale = np.maximum(np.abs(a), np.abs(b))
            close = np.isclose(a, b, rtol=RTOL, atol=RTOL * 1e-3) | (
                np.isnan(a) & np.isnan(b)
            )
            close |= (a == b) | (np.abs(a - b) <= RTOL * scale)  # equal infinities
            bad = np.flatnonzero(~close)
        else:
            bad = np.flatnonzero(
                g.cast(pl.String).ne_missing(w.cast(pl.String)).to_numpy()
            )
        if bad.size:
            i = int(bad[0])
            where = f"{key} {got[key][i]!r}" if key else f"row {i}"
            fail(cls, f"{what}: column {column!r} differs at {where} ({bad.size} rows): "
                       f"{g[i]!r} vs {w[i]!r}")


def frame_equal(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Same columns in the same order, same height, same values."""
    return a.columns == b.columns and a.height == b.height and a.equals(b)


def tile_table(
    table: pl.DataFrame, copies: int, id_column: str = "customer_id"
) -> pl.DataFrame:
    """``copies`` copies of ``table`` one after the other; ids become ``<id>~copy<k>``."""
    h = table.height
    index = pl.Series(np.tile(np.arange(h, dtype=np.int64), copies))
    tiled = table.select(pl.all().gather(index))
    if id_column in table.columns:
        copy = pl.Series(np.repeat(np.arange(copies, dtype=np.int64), h)).cast(pl.String)
        tiled = tiled.with_columns(
            (pl.col(id_column).cast(pl.String) + COPY_SEPARATOR + copy).alias(id_column)
        )
    return tiled


def copies_for(n_large: int, n: int) -> int:
    """How many copies of ``n`` rows reach at least ``n_large`` rows."""
    return max(1, -(-n_large // max(n, 1)))


def picks(height: int, rows: int) -> list[int]:
    """Up to ``rows`` row indices spread evenly over a table of ``height`` rows."""
    return sorted({int(i) for i in np.linspace(0, height - 1, num=min(rows, height))})


def permutation(height: int) -> NDArray[np.int64]:
    """A fixed shuffle of ``height`` rows that moves at least one row (when it can)."""
    perm = np.random.default_rng(20240611).permutation(height).astype(np.int64)
    if height > 1 and (perm == np.arange(height)).all():
        perm = np.roll(perm, 1)
    return perm
