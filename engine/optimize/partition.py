"""One partition of a distributed allocation: what runs on a worker, next to its data.

A partition is read from its own files (``Source``: a customers file and/or an options file,
or the prospects table), valued by the plan's metric and cost strategies
(``engine.pipeline.build_model``), reduced once to hull increments and their ratio keys
(``attach``), and kept on its worker as a :class:`Part` for the whole run. The driver then
asks each part for small answers only: block sums of a set of key ranges (``summary``), its
share of partly taken blocks (``partial_spend``), the customers it leaves between two
levels and their neighbours (``settle``), and finally its plan, written by the worker
itself as one file of a partitioned Parquet dataset (``write``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint
from engine.errors import InvalidInputError
from engine.io import read_table
from engine.optimize.blocks import float_key
from engine.optimize.increments import HullIncrements, Increments
from engine.optimize.key_index import KeyIndex
from engine.optimize.lagrange import two_largest
from engine.optimize.pricing import RowPricer, UnitPricer, best_two, options_of, whole
from engine.options import KINDS, OptionSet
from engine.plan import Plan
from engine.portfolio import Portfolio

Ranges = NDArray[np.int64]  # rows of (cell, first key, end key, shift), end exclusive


@dataclass(frozen=True)
class Source:
    """The files of one partition (paths as the workers see them)."""

    customers: str | None = None
    prospects: str | None = None
    options: str | None = None
    shared_options: str | None = None  # a small options table every partition reads

    def describe(self) -> str:
        return self.customers or self.options or self.prospects or "?"


@dataclass
class Part:
    options: OptionSet
    metric_columns: pl.DataFrame | None
    id_dtype: pl.DataType | None
    level_dtype: pl.DataType | None
    hull: HullIncrements | None = None
    inc: Increments | None = None
    key: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    constrained: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    source: str = ""  # the partition's file, for errors
    id_field: str = "customers.customer_id"  # where its customer ids come from
    id_hash: NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    # the constrained increments by (cell, key), for the rounds' key ranges: binary searches,
    # not a pass over all (``engine.optimize.key_index``)
    index: KeyIndex | None = None
    totals: dict[str, Any] = field(default_factory=dict)  # the same every round
    # per input table: its columns and segments (the summary's assumptions, on the driver)
    shape: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    # limits on other resources: the sifting state (``engine.optimize.pricing.UnitPricer``),
    # the last call's answer, and the LP plan's two options per unit and share at the second
    sift: Any = None
    answer: Any = None
    two: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] | None = None


def load(source: Source, plan: Plan) -> Part:
    """Read and value one partition; its segments are still its own (see ``attach``)."""
    from engine.pipeline import build_model

    def read(path: str | None, name: str) -> pl.DataFrame | None:
        return None if path is None else read_table(path, name)

    options_table = read(source.options, "options")
    if options_table is None:
        options_table = read(source.shared_options, "options")
    portfolio = Portfolio(read(source.customers, "customers"), read(source.prospects, "prospects"),
                          options_table)
    # Limits name segments this partition may not have: the driver builds the rows.
    model = build_model(portfolio, replace(plan, segment_limits=()))
    options = model.options
    ids = options.unit_id.filter(pl.Series(~options.fractional))
    shape = {}
    for name in ("customers", "prospects", "options"):
        table = getattr(model.portfolio, name)
        if table is not None:
            segments = (table["segment"].cast(pl.String).fill_null("").unique().to_list()
                        if "segment" in table.columns else [])
            shape[name] = (list(table.columns), segments)
    return Part(options, model.metric_columns, model.id_dtype, model.level_dtype,
                source=source.describe(),
                id_field="customers.customer_id" if source.customers else "options.customer_id",
                id_hash=np.sort(ids.hash(seed=0).to_numpy()), shape=shape)


def table_shape(part: Part) -> dict[str, tuple[list[str], list[str]]]:
    return part.shape


# --- customer ids unique across partitions -----------------------------------------------------


def id_ranges(part: Part, n: int) -> list[NDArray[np.uint64]]:
    """The partition's sorted customer id hashes cut into ``n`` equal ranges of the 64-bit
    hash space (each id once: the partition's own validation refused duplicates in it)."""
    edges = np.array([(k << 64) // n for k in range(1, n)], dtype=np.uint64)
    return np.split(part.id_hash, np.searchsorted(part.id_hash, edges, side="left"))


def repeated(*pieces: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The hashes found in more than one of ``pieces`` (each sorted and without repeats),
    at most 1,000 of them: one range of every partition's hashes, merged on a worker."""
    both = np.sort(np.concatenate(pieces)) if pieces else np.zeros(0, dtype=np.uint64)
    twice = both[1:][both[1:] == both[:-1]]
    return np.unique(twice)[:1000]


def ids_of(part: Part, hashes: NDArray[np.uint64]) -> tuple[str, str, list[tuple[str, int]]]:
    """The partition's file, id field, and the customers (id as text, row within the
    partition) whose id hashes are among ``hashes``."""
    options = part.options
    customer = np.flatnonzero(~options.fractional)
    ids = options.unit_id.gather(customer)
    hit = np.flatnonzero(np.isin(ids.hash(seed=0).to_numpy(), hashes))
    return part.source, part.id_field, [(str(ids[int(i)]), int(i)) for i in hit]


def segment_names(part: Part) -> list[str]:
    return list(part.options.segments)


def attach(part: Part, names: list[str], constrained_cells: NDArray[np.bool_]) -> Part:
    """Put the partition on the global segment codes and build its hull increments and their
    ratio keys, once: they stay on the worker for every later round."""
    options = part.options
    index = {name: i for i, name in enumerate(names)}
    glob = np.array([index[s] for s in options.segments], dtype=np.int32)
    options.segment = glob[options.segment] if glob.size else options.segment
    options.segments = list(names)
    options.__dict__.pop("cell", None)  # cached on the old codes
    hull = HullIncrements(options)
    inc = hull.apply()
    key = float_key(inc.dv / inc.dc + 0.0)
    constrained = constrained_cells[inc.cell]
    free = inc.dv[~constrained]
    totals = {
        "base_cost": np.bincount(options.cell, weights=options.cost[inc.first],
                                 minlength=options.n_cells),
        "base_value": float(options.value[inc.first].sum()),
        "free_value": float(free[free > 0].sum()),
        "units": options.n_units,
    }
    return replace(part, hull=hull, inc=inc, key=key, constrained=constrained,
                   index=KeyIndex(key, inc.cell, constrained, options.n_cells), totals=totals)


def _inc(part: Part) -> Increments:
    assert part.inc is not None, "attach() first"
    return part.inc


def members(part: Part, ranges: Ranges) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Increments falling in one of ``ranges`` (disjoint within a cell): (index, range).
    Binary searches in the cells' keys (``KeyIndex.members``: its order does not depend on
    earlier calls): the work is the ranges and their members, not a pass over the
    partition."""
    _inc(part)
    assert part.index is not None
    return part.index.members(ranges)


def summary(part: Part, ranges: Ranges, lag: Ranges, lag_price: NDArray[np.float64]
            ) -> dict[str, Any]:
    """Sums of the increments in ``ranges`` per (range, key >> the range's shift), the
    Lagrangian terms of those in ``lag`` at ``lag_price``, and the partition's totals."""
    inc = _inc(part)
    idx, rid = members(part, ranges)
    uniq, inverse = _groups(part.key[idx], rid, ranges)
    lag_idx, lag_rid = members(part, lag)
    reduced = inc.dv[lag_idx] - lag_price[lag_rid] * inc.dc[lag_idx]
    return {
        "groups": uniq,
        "cost": np.bincount(inverse, weights=inc.dc[idx], minlength=len(uniq)),
        "value": np.bincount(inverse, weights=inc.dv[idx], minlength=len(uniq)),
        "count": np.bincount(inverse, minlength=len(uniq)),
        "lagrangian": np.bincount(lag_rid, weights=np.maximum(reduced, 0.0), minlength=len(lag)),
        **part.totals,
    }


LOCAL_BITS = 17  # a range spans at most 2**16 sub-keys at its own shift (plus one)


def _groups(key: NDArray[np.int64], rid: NDArray[np.int64], ranges: Ranges
            ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The distinct (range, key >> its shift) pairs and each key's pair, without a sort of
    the keys: within a range the sub-key less the range's first one is below 2**17, so the
    pair is one small integer and a count per value finds the distinct ones (a sort when
    the keys are few beside the values counted: a later round's narrow ranges)."""
    if key.size == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    shift = ranges[rid, 3]
    base = ranges[:, 1] >> ranges[:, 3]
    sub = key >> shift
    local = sub - base[rid]
    code = (rid << LOCAL_BITS) | local
    size = len(ranges) << LOCAL_BITS
    if size <= min(1 << 23, 8 * key.size):  # else a sort of the few keys costs less
        present = np.flatnonzero(np.bincount(code, minlength=size))
        lookup = np.zeros(size, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        inverse = lookup[code]
    else:
        present, inverse = np.unique(code, return_inverse=True)
    r = present >> LOCAL_BITS
    subs = (present & ((1 << LOCAL_BITS) - 1)) + base[r]
    return np.stack([r, subs], axis=1), inverse.ravel()


@dataclass
class Fill:
    """The driver's answer, enough for a partition to fill its customers exactly."""

    full: Ranges  # wholly taken blocks
    partial: Ranges  # partly taken blocks (each a single ratio)
    budget: NDArray[np.float64]  # per partial block: its spend left for this partition
    # the driver's integer patch: units, their two options (counted from each unit's first)
    # and the share at the second (0 for a customer: one level)
    patch_units: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    patch_lo: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    patch_hi: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    patch_theta: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def partial_spend(part: Part, partial: Ranges) -> NDArray[np.float64]:
    idx, rid = members(part, partial)
    return np.bincount(rid, weights=_inc(part).dc[idx], minlength=len(partial)).astype(np.float64)


def allocation(part: Part, fill: Fill) -> Allocation:
    """The partition's allocation under ``fill``: blocks in full, partly taken blocks handed
    out in increment order up to the partition's budget, then the driver's integer patch
    (``patch_units`` take their options ``patch_lo`` and ``patch_hi`` by ``patch_theta``)."""
    inc = _inc(part)
    taken = (~part.constrained & (inc.dv > 0)).astype(np.float64)
    idx, _ = members(part, fill.full)
    taken[idx] = 1.0
    idx, rid = members(part, fill.partial)
    if idx.size:
        order = np.lexsort((idx, rid))
        idx, rid = idx[order], rid[order]
        dc = inc.dc[idx]
        cum = np.cumsum(dc)
        first = np.r_[True, rid[1:] != rid[:-1]]
        starts = np.maximum.accumulate(np.where(first, np.arange(idx.size), 0))
        before = cum - dc - np.concatenate(([0.0], cum))[starts]
        taken[idx] = np.clip((fill.budget[rid] - before) / dc, 0.0, 1.0)
    assert part.hull is not None
    out = part.hull.invert(inc, inc.prefix_fill(taken))
    if fill.patch_units.size:
        first = part.options.offsets[fill.patch_units]
        out.lo[fill.patch_units] = first + fill.patch_lo
        out.hi[fill.patch_units] = first + fill.patch_hi
        out.theta[fill.patch_units] = fill.patch_theta
    return out


def settle(part: Part, fill: Fill, prices: NDArray[np.float64], cells: NDArray[np.bool_],
           per_cell: int) -> dict[str, Any]:
    """Spend per cell, and the customers the repair may move: those left between two levels
    and, per constrained cell, the ``per_cell`` whose increments lie nearest the cell's price
    (the cheapest ones to move), each with all of its options and its current choice."""
    options, inc = part.options, _inc(part)
    alloc = allocation(part, fill)
    spend = alloc.spend(options)
    integral = ~options.fractional
    split = np.flatnonzero(integral & (alloc.theta > 0))
    picked = [split]
    present = np.bincount(options.cell, minlength=options.n_cells) > 0
    for c in np.flatnonzero(present & cells):
        # the per_cell ratios nearest the price lie within per_cell places of it on either
        # side in the cell's sorted keys: a binary search, not a pass over the cell
        assert part.index is not None
        idx = part.index.near(int(c), int(float_key(np.array([prices[c] + 0.0]))[0]), per_cell)
        if idx.size == 0:
            continue
        near = np.abs(inc.dv[idx] / inc.dc[idx] - prices[c])
        if idx.size > per_cell:
            idx = idx[np.argpartition(near, per_cell - 1)[:per_cell]]
        picked.append(inc.unit_of(idx))
    units = np.unique(np.concatenate(picked))
    return _movable(options, alloc, units[integral[units]], spend)


def candidates(part: Part, fill: Fill, prices: NDArray[np.float64], cells: NDArray[np.bool_],
               cut: float, most: int) -> dict[str, Any]:
    """Reduced-cost fixing, per partition: with ``r_j = v_j - p_c c_j`` and each customer's
    best ``L_i = max_j r_j``, a level whose gap ``L_i - r_j`` exceeds ``cut`` (the driver's
    bound minus its incumbent's value) is in no better plan. Returned: the customers with
    another level within ``cut`` (those levels and the one they hold; at most ``most``
    levels, smallest gaps first), every pool of a constrained cell with all of its levels,
    and ``floor``: the least gap of a level left out."""
    options = part.options
    alloc = allocation(part, fill)
    unit = options.unit_of_option
    reduced = options.value - prices[options.cell[unit]] * options.cost
    gap = np.maximum.reduceat(reduced, options.offsets[:-1])[unit] - reduced
    customer = ~options.fractional & cells[options.cell]
    gap[~customer[unit]] = np.inf
    held = np.zeros(unit.size, dtype=bool)
    held[alloc.lo[customer]] = True
    gap[held] = np.inf
    within = np.flatnonzero(gap <= cut)
    if within.size > most:
        within = within[np.argpartition(gap[within], most - 1)[:most]]
    outside = gap.copy()
    outside[within] = np.inf
    units = np.unique(unit[within])
    keep = np.zeros(unit.size, dtype=bool)
    keep[within] = True
    keep[alloc.lo[units]] = True
    pools = np.flatnonzero(options.fractional & cells[options.cell])
    for p in pools:
        keep[options.offsets[p]:options.offsets[p + 1]] = True
    out = _movable(options, alloc, np.union1d(units, pools), alloc.spend(options), keep)
    out["floor"] = float(outside.min()) if outside.size else np.inf
    return out


def _movable(options: OptionSet, alloc: Allocation, units: NDArray[np.int64],
             spend: NDArray[np.float64], keep: NDArray[np.bool_] | None = None
             ) -> dict[str, Any]:
    """``units`` with their options (those in ``keep``, default all; always the ones they
    hold) and their current choice as positions among those options."""
    starts, ends = options.offsets[units], options.offsets[units + 1]
    opt = (np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
           if units.size else np.zeros(0, dtype=np.int64))
    owner = np.repeat(np.arange(units.size), ends - starts)
    if keep is not None:
        chosen = keep[opt]
        chosen[np.searchsorted(opt, alloc.lo[units])] = True
        chosen[np.searchsorted(opt, alloc.hi[units])] = True
        opt, owner = opt[chosen], owner[chosen]
    counts = np.bincount(owner, minlength=units.size)
    first = np.zeros(units.size + 1, dtype=np.int64)
    np.cumsum(counts, out=first[1:])
    return {
        "cell_spend": np.bincount(options.cell, weights=spend, minlength=options.n_cells),
        "equity": float(alloc.equity(options).sum()),
        "units": units,
        "fractional": options.fractional[units],
        "cell": options.cell[units],
        "counts": counts,
        "pos": opt - options.offsets[units][owner],  # option within its unit
        "level": options.level_at(opt),
        "cost": options.cost[opt],
        "value": options.value[opt],
        "lo": np.searchsorted(opt, alloc.lo[units]) - first[:-1],
        "hi": np.searchsorted(opt, alloc.hi[units]) - first[:-1],
        "theta": alloc.theta[units],
        "spend": spend[units],
    }


def write(part: Part, fill: Fill, out: str | None, discount_rate: float) -> dict[str, Any]:
    """The partition's plan (the single machine's units table), written to ``out`` by this
    worker when given, else returned; with the sums the driver's summary adds up."""
    from engine.result import build_result

    options = part.options
    alloc = allocation(part, fill)
    units = build_result(options, alloc, [], discount_rate, "lp", True, {},
                         part.metric_columns, part.id_dtype, part.level_dtype).units
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        units.write_parquet(out)
    by_segment = units.group_by("segment").agg(
        pl.col("spend").sum(), pl.col("equity_before").sum(), pl.col("equity_after").sum())
    return {
        "units": None if out is not None else units,
        "rows": units.height,
        "customers": int((~options.fractional).sum()),
        "pools": int(options.fractional.sum()),
        "fractional_pools": int((options.fractional & (alloc.theta > 0)).sum()),
        "equity_before": float(units["equity_before"].sum()),
        "equity_after": float(units["equity_after"].sum()),
        "cell_spend": np.bincount(options.cell, weights=alloc.spend(options),
                                  minlength=options.n_cells),
        "spend_by_kind": {k: float(units.filter(pl.col("kind") == k)["spend"].sum())
                          for k in KINDS},
        "by_segment": {s: (sp, b, a) for s, sp, b, a in by_segment.iter_rows()},
    }


# --- limits on other resources: the sifting pricer's side (engine.optimize.sifting_cluster) ---
# Each call that changes the state returns a new Part (a shallow copy of the pricer, whose
# arrays are replaced, never written): a worker lost mid-run recomputes it from its inputs.


def sift_begin(part: Part, rows: list[Constraint]) -> Part:
    options = part.options
    for i, row in enumerate(rows):
        if options.resource(row.resource) is None:
            raise InvalidInputError.single(
                f"rows[{i}].resource", f"the partition {part.source} has no column "
                f"{row.resource!r}")
    return replace(part, sift=UnitPricer(RowPricer(rows, options), whole(options)))


def sift_call(part: Part, *args: Any, method: str) -> Part:
    pricer = copy.copy(part.sift)
    answer = getattr(pricer, method)(*args)
    if method == "open":
        answer = (answer, pricer.opened)
    return replace(part, sift=pricer, answer=answer)


def sift_open(part: Part, y: NDArray[np.float64], k: int) -> Part:
    return sift_call(part, y, k, method="open")


def sift_join(part: Part, ids: NDArray[np.int64]) -> Part:
    return sift_call(part, ids, method="join")


def sift_price(part: Part, y: NDArray[np.float64], k: int) -> Part:
    return sift_call(part, y, k, method="price")


def sift_answer(part: Part) -> Any:
    return part.answer


def sift_query(part: Part, method: str) -> Any:
    """``stats`` or ``everyone``: no change of state."""
    return getattr(part.sift, method)()


def sift_settle(part: Part, x: NDArray[np.float64]) -> Part:
    """The LP plan (the core's ``x`` for this partition's core columns): per unit its two
    options of largest weight and the share at the second."""
    return replace(part, two=two_largest(part.options, part.sift.weights(x)))


def sift_split(part: Part) -> dict[str, Any]:
    """The customers the LP plan leaves between two levels, with their options' values and
    limit-row columns, and the row use and value of every other unit at its LP plan."""
    assert part.two is not None
    lo, hi, theta = part.two
    options, rows = part.options, part.sift.rows
    split = np.flatnonzero((theta > 0) & ~options.fractional)
    rest = np.ones(options.n_units, dtype=bool)
    rest[split] = False
    opt = np.concatenate([lo[rest], hi[rest]])
    weight = np.concatenate([1 - theta[rest], theta[rest]])
    glob, _, begin = options_of(options.offsets, split)
    starts, index, coef = rows.columns(glob)
    return {"units": split, "begin": begin, "value": options.value[glob], "starts": starts,
            "index": index, "coef": coef, "rest_use": rows.usage(opt, weight),
            "rest_value": float(options.value[opt] @ weight)}


def _best_at(part: Part, y: NDArray[np.float64]
             ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per unit its first best option at ``y`` and every option's loss against it."""
    pricer = part.sift
    reduced = pricer.rows.reduced(y, pricer.view)
    pick, top, _ = best_two(pricer.view, reduced)
    return pick, top[part.options.unit_of_option] - reduced


def sift_candidates(part: Part, y: NDArray[np.float64], delta: float, cap: int
                    ) -> dict[str, Any]:
    """Reduced-cost fixing at ``y``: a plan worth more than the bound less ``delta`` uses
    only options losing less than ``delta``. The units with two or more such options (with
    ``cap`` such options at most, else only their counts) with those options' values and
    columns, and the row use and value of every other unit at its best option."""
    options, rows = part.options, part.sift.rows
    pick, loss = _best_at(part, y)
    near = loss < delta
    count = np.bincount(options.unit_of_option[near], minlength=options.n_units)
    free = np.flatnonzero(count >= 2)
    out: dict[str, Any] = {"free": int(free.size), "levels": int(count[free].sum()),
                           "pools": bool(options.fractional[free].any())}
    if out["levels"] > cap or out["pools"]:
        return out
    fixed = np.ones(options.n_units, dtype=bool)
    fixed[free] = False
    held = pick[fixed]
    opt, unit, _ = options_of(options.offsets, free)
    keep = near[opt]
    opt, unit = opt[keep], unit[keep]
    begin = np.zeros(free.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(unit, minlength=free.size), out=begin[1:])
    starts, index, coef = rows.columns(opt)
    out.update(units=free, begin=begin, offset=opt - options.offsets[free][unit],
               value=options.value[opt], starts=starts, index=index, coef=coef,
               rest_use=rows.usage(held), rest_value=float(options.value[held].sum()))
    return out


def sift_write(part: Part, units: NDArray[np.int64], choice: NDArray[np.int64],
               out: str | None, discount_rate: float,
               at: NDArray[np.float64] | None = None) -> dict[str, Any]:
    """The partition's plan: the LP plan (or, given prices ``at``, every unit at its first
    best option there), ``units`` at their option ``choice`` (counted from the unit's
    first), written as :func:`write` does, with each row's use."""
    assert part.two is not None
    lo, hi, theta = part.two[0].copy(), part.two[1].copy(), part.two[2].copy()
    if at is not None:
        lo = hi = _best_at(part, at)[0]
        theta = np.zeros(lo.size)
    first = part.options.offsets[:-1]
    lo[units] = hi[units] = first[units] + choice
    theta[units] = 0.0
    none = np.zeros((0, 4), dtype=np.int64)
    n = part.options.n_units
    fill = Fill(none, none, np.zeros(0), np.arange(n), lo - first, hi - first, theta)
    out_dict = write(part, fill, out, discount_rate)
    opt = np.concatenate([lo, hi])
    out_dict["row_use"] = part.sift.rows.usage(opt, np.concatenate([1 - theta, theta]))
    return out_dict
