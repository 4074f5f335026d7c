"""Experiment tables: spend at several levels and who responded, aggregated or per unit.

Two layouts are read (docs/response.md):

* aggregated, one row per arm: ``segment, kind, spend, units, successes``;
* per unit, one row per customer or prospect: ``kind, spend, success`` (0/1) with
  ``segment`` and/or ``customer_id`` (without ``segment`` every row is the segment ``""``,
  which applies to customers without a segment; a ``customer_id`` may appear once per kind).

``kind`` is ``retention`` (success: the customer stayed the period) or ``acquisition``
(success: the prospect became a customer). Both layouts become the same aggregated table,
one row per (segment, kind, spend), sorted; every problem is an input error naming the
column and row (``experiments.successes[17]: ...``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from engine.errors import FieldViolation, InvalidInputError
from engine.io import read_table

FIELD = "experiments"
AGGREGATED = ("segment", "kind", "spend", "units", "successes")
UNIT_LEVEL = ("kind", "spend", "success")
KINDS = ("retention", "acquisition")


def read_experiments(path: str | Path) -> pl.DataFrame:
    """Read an experiments file (CSV, Parquet, Arrow) and aggregate it (see the module)."""
    return aggregate(read_table(path, FIELD))


def aggregate(table: pl.DataFrame) -> pl.DataFrame:
    """The aggregated, checked form of either layout: segment, kind, spend, units, successes."""
    if "success" in table.columns and "successes" not in table.columns:
        return _from_units(table)
    missing = [c for c in AGGREGATED if c not in table.columns]
    if missing:
        hint = (" (or per unit: kind, spend, success with segment or customer_id)"
                if "units" in missing else "")
        raise InvalidInputError(
            FieldViolation(f"{FIELD}.{c}", "required column is missing" + hint) for c in missing
        )
    if table.height == 0:
        raise InvalidInputError.single(FIELD, "has no rows")
    problems: list[FieldViolation] = []
    segment = _text(table, "segment", problems)
    kind = _kind(table, problems)
    spend = _number(table, "spend", problems)
    units = _count(table, "units", problems, minimum=1)
    successes = _count(table, "successes", problems, minimum=0)
    if units is not None and successes is not None:
        over = successes > units
        if over.any():
            row = int(np.flatnonzero(over)[0])
            problems.append(FieldViolation(
                f"{FIELD}.successes", f"{int(successes[row])} exceeds units ({int(units[row])})",
                row))
    if problems:
        raise InvalidInputError(problems)
    assert segment is not None and kind is not None and spend is not None
    out = pl.DataFrame({"segment": segment, "kind": kind, "spend": spend,
                        "units": units, "successes": successes})
    return _collapse(out)


def _from_units(table: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in UNIT_LEVEL if c not in table.columns]
    if "segment" not in table.columns and "customer_id" not in table.columns:
        missing.append("segment")
    if missing:
        raise InvalidInputError(
            FieldViolation(f"{FIELD}.{c}", "required column is missing (per-unit layout: "
                           "kind, spend, success and segment or customer_id)")
            for c in missing
        )
    if table.height == 0:
        raise InvalidInputError.single(FIELD, "has no rows")
    problems: list[FieldViolation] = []
    segment = (_text(table, "segment", problems) if "segment" in table.columns
               else pl.select(pl.repeat("", table.height, dtype=pl.String)).to_series())
    kind = _kind(table, problems)
    spend = _number(table, "spend", problems)
    success = _count(table, "success", problems, minimum=0)
    if success is not None:
        bad = success > 1
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            problems.append(FieldViolation(f"{FIELD}.success", "must be 0 or 1", row))
    if "customer_id" in table.columns and kind is not None:
        ids = table.select(pl.col("customer_id"), kind.alias("__kind"))
        if ids["customer_id"].null_count():
            row = int(np.flatnonzero(ids["customer_id"].is_null().to_numpy())[0])
            problems.append(FieldViolation(f"{FIELD}.customer_id", "must not be empty", row))
        repeated = ids.is_duplicated().to_numpy()
        if repeated.any():
            row = int(np.flatnonzero(repeated)[1])  # the second of a repeated pair
            problems.append(FieldViolation(
                f"{FIELD}.customer_id",
                f"{ids['customer_id'][row]!r} appears twice for {ids['__kind'][row]}: a unit "
                "is one trial of one spend level", row))
    if problems:
        raise InvalidInputError(problems)
    assert kind is not None and spend is not None and success is not None
    long = pl.DataFrame({"segment": segment, "kind": kind, "spend": spend,
                         "units": np.ones(table.height, dtype=np.int64), "successes": success})
    return _collapse(long)


def _collapse(table: pl.DataFrame) -> pl.DataFrame:
    """One row per (segment, kind, spend): arms with the same spend are pooled."""
    return (
        table.group_by("segment", "kind", "spend")
        .agg(pl.col("units").sum(), pl.col("successes").sum())
        .sort("segment", "kind", "spend")
    )


def _first_bad(mask: np.ndarray) -> int | None:
    return int(np.flatnonzero(mask)[0]) if mask.any() else None


def _text(table: pl.DataFrame, name: str, problems: list[FieldViolation]) -> pl.Series:
    values = table[name].cast(pl.String)
    row = _first_bad(values.is_null().to_numpy())
    if row is not None:
        problems.append(FieldViolation(f"{FIELD}.{name}", "must not be empty", row))
    return values.fill_null("")


def _kind(table: pl.DataFrame, problems: list[FieldViolation]) -> pl.Series | None:
    """``kind`` normalised (trimmed, lower case), checked on its distinct values only."""
    raw = table["kind"].cast(pl.String)
    distinct = raw.unique()
    clean = distinct.str.strip_chars().str.to_lowercase()
    wrong = distinct.filter(~clean.is_in(KINDS) | clean.is_null())
    if wrong.len():
        row = _first_bad(raw.is_in(wrong.drop_nulls().implode()).fill_null(False).to_numpy()
                         | raw.is_null().to_numpy())
        assert row is not None
        problems.append(FieldViolation(
            f"{FIELD}.kind", f"must be retention or acquisition, got {table['kind'][row]!r}", row))
        return None
    mapping = dict(zip(distinct.to_list(), clean.to_list(), strict=True))
    return raw.replace_strict(mapping, return_dtype=pl.String)


def _number(table: pl.DataFrame, name: str, problems: list[FieldViolation]) -> np.ndarray | None:
    try:
        values = table[name].cast(pl.Float64, strict=True).to_numpy()
    except pl.exceptions.InvalidOperationError:
        row = _first_bad(table[name].cast(pl.Float64, strict=False).is_null().to_numpy())
        problems.append(FieldViolation(f"{FIELD}.{name}", "must be a number", row))
        return None
    row = _first_bad(~np.isfinite(values) | (values < 0))
    if row is not None:
        problems.append(FieldViolation(
            f"{FIELD}.{name}", f"must be a finite number >= 0, got {values[row]!r}", row))
        return None
    return values


def _count(table: pl.DataFrame, name: str, problems: list[FieldViolation],
           minimum: int) -> np.ndarray | None:
    values = _number(table, name, problems)
    if values is None:
        return None
    row = _first_bad((values != np.floor(values)) | (values < minimum))
    if row is not None:
        problems.append(FieldViolation(
            f"{FIELD}.{name}", f"must be a whole number >= {minimum}, got {values[row]:g}", row))
        return None
    return values.astype(np.int64)


def simulate(
    truth: dict[tuple[str, str], dict[str, float]],
    levels: dict[str, tuple[float, ...]],
    units: int,
    seed: int = 0,
    model: str = "exponential",
) -> pl.DataFrame:
    """Aggregated experiments drawn from known curves: ``truth[(segment, kind)]`` holds the
    parameters (base, ceiling, k[, shape]), ``levels[kind]`` the spend levels, ``units`` the
    arm size. For examples, tests and benchmarks."""
    from engine.response.curves import Shape, probability

    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for (segment, kind), params in truth.items():
        shape = Shape(kind, model)
        theta = [params[p] for p in shape.parameters]
        spend = np.asarray(levels[kind], dtype=np.float64)
        p = probability(shape, theta, spend)
        wins = rng.binomial(units, p)
        rows.extend(
            {"segment": segment, "kind": kind, "spend": float(s), "units": units,
             "successes": int(w)}
            for s, w in zip(spend, wins, strict=True)
        )
    return pl.DataFrame(rows)


EXAMPLE_TRUTH: dict[tuple[str, str], dict[str, float]] = {
    ("premium", "retention"): {"base": 0.78, "ceiling": 0.88, "k": 0.12},
    ("core", "retention"): {"base": 0.62, "ceiling": 0.74, "k": 0.08},
    ("value", "retention"): {"base": 0.66, "ceiling": 0.75, "k": 0.10},
    ("at-risk", "retention"): {"base": 0.55, "ceiling": 0.72, "k": 0.06},
    ("new", "retention"): {"base": 0.50, "ceiling": 0.64, "k": 0.15},
    ("premium", "acquisition"): {"ceiling": 0.30, "k": 0.12},
    ("core", "acquisition"): {"ceiling": 0.33, "k": 0.12},
    ("new", "acquisition"): {"ceiling": 0.34, "k": 0.22},
}
EXAMPLE_LEVELS = {"retention": (0.0, 5.0, 10.0, 20.0, 40.0),
                  "acquisition": (0.0, 2.0, 5.0, 10.0, 20.0, 40.0)}


def example_experiments(units: int = 1500, seed: int = 7) -> pl.DataFrame:
    """The example's experiments (``equity example``): one arm per spend level for five
    retention segments and three prospect pools of the example portfolio."""
    return simulate(EXAMPLE_TRUTH, EXAMPLE_LEVELS, units, seed=seed)
