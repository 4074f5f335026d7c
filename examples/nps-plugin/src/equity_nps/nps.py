"""Net Promoter Score: categories of the 0-10 likelihood-to-recommend score, and NPS.

Promoters score 9-10, passives 7-8, detractors 0-6; NPS = % promoters - % detractors,
from -100 (all detractors) to +100 (all promoters). Scores are read from the customers
column ``nps_score``; a customer without a score is an error, or a passive when the
strategy's ``missing`` parameter says so.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from engine.errors import FieldViolation, InvalidInputError
from numpy.typing import NDArray

SCORE_COLUMN = "nps_score"
DETRACTOR, PASSIVE, PROMOTER = 0, 1, 2
CATEGORIES = ("detractor", "passive", "promoter")
"""Category names by code."""
PROMOTER_MIN, PASSIVE_MIN = 9.0, 7.0
MISSING = ("error", "passive")
"""What a customer without a score is: an input error, or a passive (neutral)."""


def scores(customers: pl.DataFrame, missing: str = "error") -> NDArray[np.float64]:
    """The ``nps_score`` column as floats, checked: numeric, in [0, 10], no NaN; nulls are
    an error or (``missing="passive"``) a passive's 7.0."""
    field = f"customers.{SCORE_COLUMN}"
    if SCORE_COLUMN not in customers.columns:
        raise InvalidInputError.single(
            field, "required column is missing (0-10 likelihood-to-recommend score)"
        )
    column = customers[SCORE_COLUMN]
    if not (column.dtype.is_numeric() or column.dtype == pl.Null):
        raise InvalidInputError.single(field, f"must be numeric, got {column.dtype}")
    nulls = column.is_null().to_numpy()
    if nulls.any() and missing != "passive":
        raise InvalidInputError.single(
            field,
            f"is null for {int(nulls.sum())} customers (set the strategy's missing "
            "parameter to 'passive' to treat them as passives)",
            int(np.flatnonzero(nulls)[0]),
        )
    values = column.cast(pl.Float64).fill_null(PASSIVE_MIN).to_numpy()
    bad = ~np.isfinite(values) | (values < 0) | (values > 10)
    if bad.any():
        raise InvalidInputError(
            [FieldViolation(field, f"must be a score from 0 to 10 ({int(bad.sum())} rows)",
                            int(np.flatnonzero(bad)[0]))]
        )
    return values


def categorize(values: NDArray[np.float64]) -> NDArray[np.int8]:
    """Codes DETRACTOR (score < 7), PASSIVE (7 <= score < 9), PROMOTER (score >= 9)."""
    return (
        (values >= PASSIVE_MIN).astype(np.int8) + (values >= PROMOTER_MIN).astype(np.int8)
    )


def category_names(codes: NDArray[np.int8]) -> pl.Series:
    return pl.Series("nps_category", np.array(CATEGORIES, dtype=object)[codes], dtype=pl.String)


def _groups(customers: pl.DataFrame, by: str | None) -> pl.Series:
    if by is None or by not in customers.columns:
        return pl.Series("segment", [""] * customers.height, dtype=pl.String)
    return customers[by].cast(pl.String).fill_null("").rename("segment")


def nps_by_segment(
    customers: pl.DataFrame, by: str | None = "segment", missing: str = "error"
) -> pl.DataFrame:
    """One row per segment (column ``by``; one row "" without it), sorted: customers,
    promoters, passives, detractors, and NPS in points (-100 to 100)."""
    codes = categorize(scores(customers, missing))
    frame = pl.DataFrame({"segment": _groups(customers, by), "code": codes})
    return (
        frame.group_by("segment")
        .agg(
            pl.len().cast(pl.Int64).alias("customers"),
            (pl.col("code") == PROMOTER).sum().cast(pl.Int64).alias("promoters"),
            (pl.col("code") == PASSIVE).sum().cast(pl.Int64).alias("passives"),
            (pl.col("code") == DETRACTOR).sum().cast(pl.Int64).alias("detractors"),
        )
        .with_columns(
            (100.0 * (pl.col("promoters") - pl.col("detractors")) / pl.col("customers"))
            .alias("nps")
        )
        .sort("segment")
    )


def portfolio_nps(customers: pl.DataFrame, missing: str = "error") -> float:
    """NPS of all customers together, in points (-100 to 100)."""
    codes = categorize(scores(customers, missing))
    return float(100.0 * ((codes == PROMOTER).mean() - (codes == DETRACTOR).mean()))


def segment_nps_per_row(
    customers: pl.DataFrame, by: str | None = "segment", missing: str = "error"
) -> NDArray[np.float64]:
    """Each customer's segment NPS, aligned with the rows of ``customers``."""
    table = nps_by_segment(customers, by, missing)
    rows = pl.DataFrame({"segment": _groups(customers, by)})
    joined = rows.join(table.select("segment", "nps"), on="segment", how="left",
                       maintain_order="left")
    return joined["nps"].to_numpy().astype(np.float64)
