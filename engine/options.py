"""The allocation problem's data: every unit's spend levels with their cost and value.

A *unit* is an existing customer (takes exactly one level), an individual prospect from an
options table (likewise), or a prospect pool (may mix levels: part of the pool at one spend,
the rest at another). Options are stored flat, grouped by unit through ``offsets`` (CSR), so
millions of customers stay a handful of numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine import small_tables
from engine.errors import FieldViolation, InvalidInputError
from engine.hull import Hull, rising, upper_hull

KINDS: tuple[str, str] = ("retention", "acquisition")
RETENTION, ACQUISITION = 0, 1


@dataclass(frozen=True)
class LevelsAfter:
    """Levels stored without a copy of the cost: every option before flat index ``start``
    has its cost as its level (customers, whose level is their spend), the options from
    ``start`` on have ``tail`` (prospect pools, whose cost is level x size). Passed as an
    ``OptionSet``'s ``level``, it saves one full-size array (400 MB at 10M customers)."""

    start: int
    tail: NDArray[np.float64]


@dataclass
class OptionSet:
    """Units and their options. ``value`` is equity at that level net of the spend it implies;
    ``cost`` is the budget the level consumes this period; ``level`` is spend per head.

    ``level`` may be given as the cost array itself or as :class:`LevelsAfter`; reading
    ``level`` then builds the full array, :meth:`level_at` only the levels asked for."""

    unit_id: pl.Series
    kind: NDArray[np.int8]
    segment: NDArray[np.int32]
    segments: list[str]
    fractional: NDArray[np.bool_]
    size: NDArray[np.float64]
    offsets: NDArray[np.int64]
    level: NDArray[np.float64]
    cost: NDArray[np.float64]
    value: NDArray[np.float64]
    extra: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stored = self.stored_level
        if isinstance(stored, LevelsAfter) and stored.start + stored.tail.size != self.cost.size:
            raise ValueError(f"LevelsAfter covers {stored.start} + {stored.tail.size} options, "
                             f"cost has {self.cost.size}")

    @property
    def n_units(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def stored_level(self) -> NDArray[np.float64] | LevelsAfter:
        """``level`` as stored: an array (perhaps ``cost`` itself) or :class:`LevelsAfter`."""
        stored: NDArray[np.float64] | LevelsAfter = self.__dict__["_level"]
        return stored

    def level_at(self, idx: NDArray[np.integer]) -> NDArray[np.float64]:
        """The levels of the options at flat indices ``idx`` (a gather: no full-size array
        when the levels are stored as :class:`LevelsAfter`)."""
        stored = self.stored_level
        if not isinstance(stored, LevelsAfter):
            return stored[idx]
        out = self.cost[idx]
        tail = np.flatnonzero(idx >= stored.start)
        if tail.size:
            out[tail] = stored.tail[idx[tail] - stored.start]
        return out

    @cached_property
    def unit_of_option(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(self.n_units, dtype=np.int64), np.diff(self.offsets))

    @cached_property
    def baseline(self) -> NDArray[np.int64]:
        """Flat index of each unit's do-nothing option: its cheapest (best value on ties,
        the first listed on full ties). Segment minima, not a sort of all options."""
        starts = self.offsets[:-1]
        counts = np.diff(self.offsets)
        if self.n_units and bool((counts > 0).all()) and rising(self.cost, starts):
            return starts.copy()  # the common layout: each unit's levels by cost
        if self.n_units == 0 or (counts == 0).any():  # empty units: the sort
            order = np.lexsort((-self.value, self.cost, self.unit_of_option))
            return order[starts]
        unit = self.unit_of_option
        cheapest = self.cost == np.minimum.reduceat(self.cost, starts)[unit]
        value = np.where(cheapest, self.value, -np.inf)
        best = cheapest & (value == np.maximum.reduceat(value, starts)[unit])
        hits = np.flatnonzero(best)
        first = np.ones(hits.size, dtype=bool)
        first[1:] = unit[hits[1:]] != unit[hits[:-1]]
        return hits[first]

    @cached_property
    def cost_order(self) -> NDArray[np.int64] | None:
        """The options by unit, then cost, then value (the order baselines walk each unit's
        levels in); None when that is their own order (each unit's levels by rising cost,
        the common layout: one linear check instead of a sort)."""
        counts = np.diff(self.offsets)
        if self.n_units and bool((counts > 0).all()) and rising(self.cost, self.offsets[:-1]):
            return None
        return np.lexsort((self.value, self.cost, self.unit_of_option))

    @cached_property
    def hull(self) -> Hull:
        return upper_hull(self.offsets, self.cost, self.value)

    @cached_property
    def cell(self) -> NDArray[np.int64]:
        """Per unit: index of its (segment, kind) cell, the unit of coupling constraints."""
        return self.segment.astype(np.int64) * len(KINDS) + self.kind

    def resource(self, name: str) -> NDArray[np.float64] | None:
        """Per option, how much of resource ``name`` it uses: ``cost`` is spend, any other
        name a numeric column of the options table (None when there is no such column)."""
        return self.cost if name == "cost" else self.extra.get(name)

    @property
    def n_cells(self) -> int:
        return len(self.segments) * len(KINDS)

    def cell_label(self, cell: int) -> tuple[str, str]:
        return self.segments[cell // len(KINDS)], KINDS[cell % len(KINDS)]

    @classmethod
    def uniform(
        cls,
        unit_id: pl.Series,
        kind: NDArray[np.int8],
        segment_names: pl.Series,
        fractional: NDArray[np.bool_],
        size: NDArray[np.float64],
        level: NDArray[np.float64],
        cost: NDArray[np.float64],
        value: NDArray[np.float64],
    ) -> OptionSet:
        """Units that all have the same number of levels: 2-D (units x levels) arrays."""
        n, n_levels = cost.shape
        codes, names = encode_segments(segment_names)
        flat_cost = np.ascontiguousarray(cost, dtype=np.float64).ravel()
        # levels that are the cost (customers: spend per head) stay one array
        flat_level = flat_cost if level is cost else np.ascontiguousarray(
            level, dtype=np.float64).ravel()
        return cls(
            unit_id=unit_id,
            kind=np.asarray(kind, dtype=np.int8),
            segment=codes,
            segments=names,
            fractional=np.asarray(fractional, dtype=bool),
            size=np.asarray(size, dtype=np.float64),
            offsets=np.arange(0, n * n_levels + 1, n_levels, dtype=np.int64),
            level=flat_level,
            cost=flat_cost,
            value=np.ascontiguousarray(value, dtype=np.float64).ravel(),
        )

    @classmethod
    def concat(cls, parts: list[OptionSet]) -> OptionSet:
        parts = [p for p in parts if p.n_units > 0]
        if not parts:
            raise InvalidInputError.single("portfolio", "has no customers, prospects or options")
        if len(parts) == 1:
            return parts[0]
        segment, names = merge_codes([(p.segment, p.segments) for p in parts])
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        ids = pl.concat([p.unit_id.cast(pl.String) for p in parts])
        cost = _joined([p.cost for p in parts])
        # Resource columns survive: a part without one uses none of it (0 at every option).
        extra = {
            name: np.concatenate(
                [p.extra.get(name, np.zeros(p.cost.size)) for p in parts]
            )
            for name in sorted({k for p in parts for k in p.extra})
        }
        return cls(
            unit_id=ids,
            kind=np.concatenate([p.kind for p in parts]),
            segment=segment,
            segments=names,
            fractional=np.concatenate([p.fractional for p in parts]),
            size=np.concatenate([p.size for p in parts]),
            offsets=np.concatenate(offsets),
            # the property's setter takes LevelsAfter too (read back, level is an array)
            level=cast("NDArray[np.float64]", _joined_levels(parts, cost)),
            cost=cost,
            value=_joined([p.value for p in parts]),
            extra=extra,
        )

    def validate(self) -> None:
        """Options must be finite: a NaN reaching the solver would yield a silent wrong plan."""
        problems = []
        stored = self.stored_level
        checked = {"level": stored.tail if isinstance(stored, LevelsAfter) else stored,
                   "cost": self.cost, "value": self.value}
        for name, values in checked.items():
            if (values is self.cost and name == "level") or _all_finite(values):
                continue  # levels that are the cost: checked as the cost
            bad = ~np.isfinite(values)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                if name == "level" and isinstance(stored, LevelsAfter):
                    first += stored.start
                unit = int(self.unit_of_option[first])
                problems.append(
                    FieldViolation(
                        f"options.{name}",
                        f"{int(bad.sum())} non-finite values, first for unit "
                        f"{self.unit_id[unit]!r}",
                    )
                )
        if _any_negative(self.cost):
            first = int(np.flatnonzero(self.cost < 0)[0])
            problems.append(FieldViolation("options.cost", "must be >= 0", first))
        if problems:
            raise InvalidInputError(problems)


def _get_level(self: OptionSet) -> NDArray[np.float64]:
    stored = self.stored_level
    if not isinstance(stored, LevelsAfter):
        return stored
    return np.concatenate((self.cost[:stored.start], stored.tail))


def _set_level(self: OptionSet, value: NDArray[np.float64] | LevelsAfter) -> None:
    self.__dict__["_level"] = value


# ``level`` is a property over the stored form; the dataclass's __init__ and replace() go
# through it (a data descriptor on the class takes an instance's assignments). Set after the
# decorator, so that the dataclass sees no default value.
setattr(OptionSet, "level", property(_get_level, _set_level))  # noqa: B010


def _joined_levels(
    parts: list[OptionSet], cost: NDArray[np.float64]
) -> NDArray[np.float64] | LevelsAfter:
    """The joined parts' levels: ``cost`` itself when every part's levels are its cost,
    :class:`LevelsAfter` when the first parts' are (customers, then pools), else a copy."""
    shares = [p.stored_level is p.cost for p in parts]
    if all(shares):
        return cost
    k = shares.index(False)
    if k == 0:
        return _joined([p.level for p in parts])
    start = sum(int(p.offsets[-1]) for p in parts[:k])
    return LevelsAfter(start, _joined([p.level for p in parts[k:]]))


_BLOCK = 1 << 17  # values per piece of a check: no full-size boolean array


def _all_finite(x: NDArray[np.float64]) -> bool:
    return all(bool(np.isfinite(x[lo:lo + _BLOCK]).all()) for lo in range(0, x.size, _BLOCK))


def _any_negative(x: NDArray[np.float64]) -> bool:
    return any(bool((x[lo:lo + _BLOCK] < 0).any()) for lo in range(0, x.size, _BLOCK))


def _joined(arrays: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    """The arrays one after the other: a view when they are consecutive slices of one
    buffer (a cost model that filled one array for all its parts), else a copy."""
    base = arrays[0].base
    if isinstance(base, np.ndarray) and base.flags.c_contiguous and all(
        a.base is base and a.ndim == 1 and a.flags.c_contiguous and a.dtype == base.dtype
        for a in arrays
    ):
        start = arrays[0].ctypes.data
        at = start
        for a in arrays:
            if a.ctypes.data != at:
                break
            at += a.nbytes
        else:
            first, size = (start - base.ctypes.data) // base.itemsize, (at - start) // base.itemsize
            view: NDArray[np.float64] = base.reshape(-1)[first:first + size]
            return view
    return np.concatenate(arrays)


def encode_segments(names: pl.Series) -> tuple[NDArray[np.int32], list[str]]:
    """Segment labels to dense codes, sorted names so results are reproducible."""
    return _codes(names, names.len())


def merge_codes(
    coded: Sequence[tuple[NDArray[np.integer], list[str]]],
) -> tuple[NDArray[np.int32], list[str]]:
    """Several columns' segment codes (each over its own sorted names) as one column's, over
    the sorted union of the names."""
    if all(own == coded[0][1] for _, own in coded[1:]):  # the same names (customers and
        # pools of the same segments, as usual): the codes as they are, no gather
        return np.concatenate([codes for codes, _ in coded], dtype=np.int32), list(coded[0][1])
    names = sorted({s for _, own in coded for s in own})
    index = {s: i for i, s in enumerate(names)}
    segment = np.concatenate(
        [np.array([index[s] for s in own], dtype=np.int32)[codes] for codes, own in coded]
    )
    return segment, names


def from_table(table: pl.DataFrame) -> OptionSet:
    """An explicit options table: one row per (customer_id, level), each customer takes one.

    Columns: ``customer_id``, ``level``, ``cost``, ``value``; optional ``segment`` and
    ``kind`` (``acquisition`` or ``retention``, default retention) constant per customer.
    Any other numeric column is a *resource* the levels use (contacts, calls...), which a
    plan's ``resource_limits`` may limit. Customers may be barred from levels: a true
    ``do_not_contact`` keeps only a customer's cheapest level, a ``max_spend`` drops the
    levels costing more (the cheapest always stays), and a level not listed is not offered.
    A table already sorted by customer and, within each customer, by cost (as written by
    most pipelines) is used as it is, in a few linear passes; any other order is sorted.
    """
    table = _barred(table)
    n = table.height
    df = table
    new_unit = _new_unit(df["customer_id"])
    rows: NDArray[np.int64] | None = None  # original row of each sorted row, if sorted
    if not _ordered(df["customer_id"], df["cost"], new_unit):
        df = table.with_row_index("__row").sort(["customer_id", "cost"], maintain_order=True)
        rows = df["__row"].to_numpy().astype(np.int64)
        new_unit = _new_unit(df["customer_id"])
    ids = df["customer_id"]
    starts = np.flatnonzero(new_unit)
    seg, names = _codes(df["segment"] if "segment" in df.columns else None, n)
    kind_text = df["kind"].cast(pl.String) if "kind" in df.columns else None
    kind = np.zeros(n, dtype=np.int8)
    known = np.ones(n, dtype=bool)
    if kind_text is not None:
        kind_code = kind_text.cast(pl.Enum(list(KINDS)), strict=False)
        known = kind_code.is_not_null().to_numpy()
        kind = kind_code.to_physical().fill_null(len(KINDS)).to_numpy().astype(np.int8)

    def row_of(i: int) -> int:
        return int(rows[i]) if rows is not None else i

    problems = []
    for column, codes in (("segment", seg), ("kind", kind)):
        differs = np.zeros(n, dtype=bool)
        np.not_equal(codes[1:], codes[:-1], out=differs[1:])
        if column == "kind" and kind_text is not None and not known.all():
            # two different unknown kinds share a code: compare their text
            text_differs = (kind_text.slice(1) != kind_text.slice(0, n - 1)).fill_null(True)
            differs[1:] |= text_differs.to_numpy()
        differs &= ~new_unit
        if differs.any():
            bad_units = np.unique(np.searchsorted(starts, np.flatnonzero(differs), "right") - 1)
            first = int(starts[bad_units[0]])
            problems.append(
                FieldViolation(
                    f"options.{column}",
                    f"must be the same on every row of a customer; differs for "
                    f"{bad_units.size} customers, first {ids[first]!r}",
                    row_of(first),
                )
            )
    unknown = ~known[starts]
    if unknown.any() and kind_text is not None:
        first = int(starts[np.flatnonzero(unknown)[0]])
        problems.append(
            FieldViolation(
                "options.kind",
                f"must be 'acquisition' or 'retention', got {kind_text[first]!r}",
                row_of(first),
            )
        )
    if problems:
        raise InvalidInputError(problems)
    offsets = np.append(starts, n).astype(np.int64)
    return OptionSet(
        unit_id=ids.gather(starts),
        kind=kind[starts],
        segment=seg[starts],
        segments=names,
        fractional=np.zeros(starts.size, dtype=bool),
        size=np.ones(starts.size),
        offsets=offsets,
        level=df["level"].cast(pl.Float64).to_numpy(),
        cost=df["cost"].cast(pl.Float64).to_numpy(),
        value=df["value"].cast(pl.Float64).to_numpy(),
        extra=_resources(df),
    )


_KNOWN = {"customer_id", "level", "cost", "value", "segment", "kind", "do_not_contact",
          "max_spend", "__row"}


def _resources(df: pl.DataFrame) -> dict[str, NDArray[np.float64]]:
    """The numeric columns besides the known ones: resources the levels use (finite, >= 0)."""
    out: dict[str, NDArray[np.float64]] = {}
    problems = []
    for name in df.columns:
        if name in _KNOWN or not df[name].dtype.is_numeric():
            continue
        values = df[name].cast(pl.Float64).fill_null(0.0).to_numpy()
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            problems.append(FieldViolation(
                f"options.{name}", "a resource column must be finite and >= 0",
                int(np.flatnonzero(bad)[0]),
            ))
        out[name] = values
    if problems:
        raise InvalidInputError(problems)
    return out


def _barred(table: pl.DataFrame) -> pl.DataFrame:
    """Drop the levels a customer is barred from (``do_not_contact``, ``max_spend``); each
    customer keeps at least its cheapest level."""
    if "do_not_contact" not in table.columns and "max_spend" not in table.columns:
        return table
    cheapest = pl.col("cost") == pl.col("cost").min().over("customer_id")
    allowed = pl.lit(True)
    if "do_not_contact" in table.columns:
        allowed = allowed & ~pl.col("do_not_contact").cast(pl.Boolean).fill_null(False)
    if "max_spend" in table.columns:
        ceiling = pl.col("max_spend").cast(pl.Float64)
        allowed = allowed & (ceiling.is_null() | (pl.col("cost") <= ceiling))
    return table.filter(allowed | cheapest)


def _new_unit(ids: pl.Series) -> NDArray[np.bool_]:
    """Rows whose customer differs from the previous row's (the first row included)."""
    n = ids.len()
    out = np.ones(n, dtype=bool)
    if n > 1:
        out[1:] = (ids.slice(1) != ids.slice(0, n - 1)).fill_null(True).to_numpy()
    return out


def _ordered(ids: pl.Series, cost: pl.Series, new_unit: NDArray[np.bool_]) -> bool:
    """Whether rows are sorted by customer and, within a customer, by cost: a linear check
    that lets an already ordered table skip the sort."""
    if ids.null_count() or not ids.is_sorted():
        return False
    c = cost.cast(pl.Float64).to_numpy()
    return not bool((~new_unit[1:] & (c[1:] < c[:-1])).any())


def _codes(segment: pl.Series | None, n: int) -> tuple[NDArray[np.int32], list[str]]:
    """Segment labels to codes of their sorted names (null is the segment named "").
    Categorical columns go to codes directly, without a string per row."""
    if segment is None:
        return np.zeros(n, dtype=np.int32), [""]
    small = small_tables.codes(segment)  # a few rows of text: without polars' fixed costs
    if small is not None:
        return small
    if segment.dtype == pl.Categorical and not segment.null_count():
        names = segment.unique().cast(pl.String).sort().to_list()
        codes = segment.cast(pl.Enum(names))
    else:
        text = segment.cast(pl.String).fill_null("")
        names = text.unique().sort().to_list()
        codes = text.cast(pl.Enum(names))
    return codes.to_physical().to_numpy().astype(np.int32), names
