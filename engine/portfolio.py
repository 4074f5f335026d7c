"""The portfolio: customers, prospect pools and/or an explicit options table, validated.

Each table's contract is declared once (``CUSTOMERS``, ``PROSPECTS``, ``OPTIONS``) and
checked column by column; every violation names the table, the column and the first
offending row, so bad input never reaches the optimizer as a NaN or a silent clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.errors import FieldViolation, InvalidInputError
from engine.small_tables import distinct_rows

# Money and counts beyond this are data errors, and would overflow equity sums to infinity.
MAX_MAGNITUDE = 1e12


@dataclass(frozen=True)
class Column:
    name: str
    required: bool = True
    numeric: bool = True
    minimum: float | None = None
    maximum: float | None = None
    below_maximum: bool = False  # strict upper bound (retention < 1)
    doc: str = ""
    nullable: bool = False  # nulls allowed (a customer without a segment)


CUSTOMERS = (
    Column("customer_id", numeric=False, doc="unique id"),
    Column("margin", doc="contribution per period, currency; may be negative"),
    Column("retention", minimum=0.0, maximum=1.0, below_maximum=True, doc="per-period, 0 <= r < 1"),
    Column("service_cost", required=False, minimum=0.0, doc="cost to serve per period, >= 0"),
    Column("segment", required=False, numeric=False, nullable=True, doc="segment name"),
    Column(
        "retention_ceiling",
        required=False,
        minimum=0.0,
        maximum=1.0,
        below_maximum=True,
        doc="retention reachable with unlimited spend, in [retention, 1)",
    ),
    Column(
        "retention_response",
        required=False,
        minimum=0.0,
        doc="k in r(s) = r0 + (r_ceil - r0)(1 - exp(-k s)), per currency unit",
    ),
)
PROSPECTS = (
    Column("segment", numeric=False, doc="pool name (segment or channel), unique"),
    Column("prospects", minimum=0.0, doc="pool size"),
    # optional only for pools the plan's response_curves cover (checked by the cost model)
    Column("acquisition_ceiling", required=False, minimum=0.0, maximum=1.0,
           doc="share acquirable, in [0, 1]"),
    Column("acquisition_response", required=False, minimum=0.0,
           doc="k in a(A) = a_ceil (1 - exp(-k A))"),
    Column("margin", doc="contribution per period of an acquired customer"),
    Column(
        "retention", minimum=0.0, maximum=1.0, below_maximum=True, doc="of an acquired customer"
    ),
    Column("service_cost", required=False, minimum=0.0, doc="of an acquired customer"),
)
OPTIONS = (
    Column("customer_id", numeric=False, doc="unit id; one row per level"),
    Column("level", doc="spend level label (spend per head)"),
    Column("cost", minimum=0.0, doc="budget consumed at this level"),
    Column("value", doc="equity at this level net of the spend it implies"),
    Column("segment", required=False, numeric=False),
    Column("kind", required=False, numeric=False, doc="acquisition or retention"),
)

SEGMENT_LEVELS = (
    Column("segment", numeric=False, doc="segment the row applies to"),
    Column("level", minimum=0.0, doc="spend per customer per period"),
    Column(
        "retention",
        minimum=0.0,
        maximum=1.0,
        below_maximum=True,
        doc="retention reached at this spend",
    ),
)


def validate_table(table: pl.DataFrame, name: str, columns: tuple[Column, ...]) -> pl.DataFrame:
    """Check ``table`` against ``columns``; return it with numeric columns as Float64."""
    problems: list[FieldViolation] = []
    if table.height == 0:
        raise InvalidInputError.single(name, "is empty")
    # the columns by name at once (a lookup per column, or the schema, costs microseconds)
    present = dict(zip(table.columns, table.get_columns(), strict=True))
    uncast = False  # a numeric column that is not Float64 yet
    for col in columns:
        field = f"{name}.{col.name}"
        series = present.get(col.name)
        if series is None:
            if col.required:
                problems.append(FieldViolation(field, "required column is missing"))
            continue
        dtype = series.dtype
        float64 = isinstance(dtype, pl.Float64)
        uncast |= col.numeric and not float64
        if series.null_count():  # a count the column keeps: no mask unless there are nulls
            if not col.nullable:
                problems.append(_first(field, "is null", series.is_null()))
            continue
        if not col.numeric:
            continue
        if not dtype.is_numeric():
            problems.append(_not_numeric(field, series))
            continue
        values = (series if float64 else series.cast(pl.Float64)).to_numpy()
        if not _within(values, col):  # two reductions; the masks only to name a row
            problems.extend(_value_problems(field, values, col))
    if problems:
        raise InvalidInputError(problems)
    if not uncast:
        return table  # nothing to cast (Arrow from the client usually)
    numeric = [c.name for c in columns if c.numeric and c.name in present]
    return table.with_columns(pl.col(numeric).cast(pl.Float64))


def _value_problems(field: str, values: np.ndarray, col: Column) -> list[FieldViolation]:
    """What is wrong with a numeric column's values, each problem at its first row."""
    bad = ~np.isfinite(values)
    if bad.any():
        return [_first(field, "must be finite (no NaN or infinity)", bad)]
    huge = np.abs(values) > MAX_MAGNITUDE
    if huge.any():
        return [_first(field, f"must be within +-{MAX_MAGNITUDE:g}", huge)]
    problems = []
    if col.minimum is not None and (values < col.minimum).any():
        problems.append(_first(field, f"must be >= {col.minimum:g}", values < col.minimum))
    if col.maximum is not None:
        over = values >= col.maximum if col.below_maximum else values > col.maximum
        relation = "<" if col.below_maximum else "<="
        if over.any():
            problems.append(_first(field, f"must be {relation} {col.maximum:g}", over))
    return problems


def _within(values: np.ndarray, col: Column) -> bool:
    """Whether every value passes ``validate_table``'s checks (finite, magnitude, bounds),
    from the smallest and largest: a NaN makes both NaN and fails every comparison."""
    if not values.size:
        return True
    low, high = values.min(), values.max()
    ok = bool(low >= -MAX_MAGNITUDE and high <= MAX_MAGNITUDE)
    if col.minimum is not None:
        ok = ok and bool(low >= col.minimum)
    if col.maximum is not None:
        ok = ok and bool(high < col.maximum if col.below_maximum else high <= col.maximum)
    return ok


def _not_numeric(field: str, series: pl.Series) -> FieldViolation:
    """Name the first value that is not a number (text in a numeric column of a CSV)."""
    if series.dtype == pl.String:
        numbers = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = numbers.is_null() & series.is_not_null()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            value = series[int(rows[0])]
            hint = " (decimal comma? write 1.5, not 1,5)" if "," in value else ""
            more = f" ({rows.size} rows)" if rows.size > 1 else ""
            return FieldViolation(field, f"{value!r} is not a number{hint}{more}", int(rows[0]))
    return FieldViolation(field, f"must be numeric, got {series.dtype}")


def _first(field: str, problem: str, mask: np.ndarray | pl.Series) -> FieldViolation:
    rows = np.flatnonzero(mask.to_numpy() if isinstance(mask, pl.Series) else mask)
    more = f" ({rows.size} rows)" if rows.size > 1 else ""
    return FieldViolation(field, problem + more, int(rows[0]))


def _sorted_and_distinct(table: pl.DataFrame, keys: list[str]) -> bool:
    """Linear check for the common case of keys already sorted (numeric keys, or one text
    key): hashing 50M rows costs seconds and gigabytes that a comparison of neighbours does
    not."""
    columns = [table[k] for k in keys]
    if table.height < 2 or any(c.null_count() for c in columns):
        return False
    if len(columns) == 1 and not columns[0].dtype.is_numeric():  # text ids, e.g. 'C0000017'
        ids = columns[0]
        return ids.is_sorted() and not bool(
            (ids.slice(1) == ids.slice(0, table.height - 1)).any())
    if not all(c.dtype.is_numeric() for c in columns):
        return False
    arrays = [c.to_numpy() for c in columns]
    later = np.zeros(table.height - 1, dtype=bool)  # row i+1 sorts strictly after row i
    tied = np.ones(table.height - 1, dtype=bool)
    for values in arrays:
        later |= tied & (values[1:] > values[:-1])
        tied &= values[1:] == values[:-1]
    return bool(later.all())


def _unique(table: pl.DataFrame, name: str, keys: list[str]) -> None:
    """Name the first row that repeats an earlier one, and that earlier row."""
    if _sorted_and_distinct(table, keys) or distinct_rows(table, keys):
        return
    repeated = ~table.select(pl.struct(keys).is_first_distinct()).to_series()
    if repeated.any():
        rows = np.flatnonzero(repeated.to_numpy())
        first = table.row(int(rows[0]), named=True)
        label = ", ".join(f"{k}={first[k]!r}" for k in keys)
        earlier = table.with_row_index("__row").filter(
            pl.all_horizontal(pl.col(k) == first[k] for k in keys)
        )["__row"][0]
        raise InvalidInputError.single(
            f"{name}.{keys[-1] if len(keys) > 1 else keys[0]}",
            f"must be unique; {label} repeats row {earlier} ({rows.size} repeated rows in all)",
            int(rows[0]),
        )


@dataclass(frozen=True)
class Portfolio:
    """Customers and prospect pools (valued by the cost model), or explicit options."""

    customers: pl.DataFrame | None = None
    prospects: pl.DataFrame | None = None
    options: pl.DataFrame | None = None
    transactions: pl.DataFrame | None = None  # valued into customers by a transactions metric

    def validated(self) -> Portfolio:
        if all(t is None for t in (self.customers, self.prospects, self.options)):
            raise InvalidInputError.single(
                "portfolio", "needs customers, prospects, an options table or transactions"
            )
        customers = prospects = options = None
        if self.customers is not None:
            customers = validate_table(self.customers, "customers", CUSTOMERS)
            _unique(customers, "customers", ["customer_id"])
            if "retention_ceiling" in customers.columns:  # both finite Float64 by now
                low = customers["retention_ceiling"].to_numpy() < customers["retention"].to_numpy()
                if low.any():
                    raise InvalidInputError(
                        [_first("customers.retention_ceiling", "must be >= retention", low)]
                    )
        if self.prospects is not None:
            prospects = validate_table(self.prospects, "prospects", PROSPECTS)
            _unique(prospects, "prospects", ["segment"])
        if (
            self.options is not None
            and "customer_id" not in self.options.columns
            and ("retention" in self.options.columns)
        ):  # a per-segment response table (segment, level, retention)
            options = validate_table(self.options, "options", SEGMENT_LEVELS)
            _unique(options, "options", ["segment", "level"])
        elif self.options is not None:
            options = validate_table(self.options, "options", OPTIONS)
            _unique(options, "options", ["customer_id", "level"])
        return Portfolio(customers, prospects, options, self.transactions)

    @property
    def size(self) -> int:
        return sum(
            t.height for t in (self.customers, self.prospects, self.options) if t is not None
        )
