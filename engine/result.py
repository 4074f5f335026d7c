"""What an allocation returns: the per-unit plan and a summary with its certificate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint
from engine.diagnosis import nothing_spent_notes
from engine.options import KINDS, OptionSet
from engine.small_tables import labels, nulls, padded, scattered
from engine.summary import ConstraintInfo, PlanSummary
from engine.valuation import return_on_customer


@dataclass
class PlanResult:
    """``units``: one row per customer or pool; ``summary``: the figures, typed."""

    units: pl.DataFrame
    summary: PlanSummary
    options: OptionSet = field(repr=False)
    allocation: Allocation = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(self.summary.to_dict(), indent=2, sort_keys=False)


def build_result(
    options: OptionSet,
    allocation: Allocation,
    rows: list[Constraint],
    discount_rate: float,
    allocator: str,
    exact: bool,
    timings: dict[str, float],
    metric_columns: pl.DataFrame | None = None,
    id_dtype: pl.DataType | None = None,
    level_dtype: pl.DataType | None = None,
) -> PlanResult:
    """``id_dtype`` and ``level_dtype`` are the input's ``customer_id`` and ``level`` types:
    the plan's ids and levels come back as they went in."""
    before = options.value[options.baseline]
    after = allocation.equity(options)
    spend = allocation.spend(options)
    # the table from a list of named columns: a dict of arrays costs polars ~50 us more a
    # call, which is most of a 100-customer table's time (the columns are the same)
    columns = [
        *unit_ids(options, id_dtype).values(),  # each column named by its key
        # labels by code: a gather from the few names (numpy text arrays cost seconds at 10M)
        labels(KINDS, options.kind).alias("kind"),
        labels(options.segments, options.segment).alias("segment"),
        *unit_levels(options, allocation, level_dtype).values(),
        pl.Series("spend", spend),
        pl.Series("equity_before", before),
        pl.Series("equity_after", after),
        pl.Series("uplift", after - before),
    ]
    join = None
    if metric_columns is not None:  # what the plan's metric said of each customer
        ids, extra = columns[0], metric_columns
        if extra["customer_id"].dtype != ids.dtype:
            extra = extra.with_columns(pl.col("customer_id").cast(ids.dtype, strict=False))
        names = {c.name for c in columns}
        taken = {c: f"metric_{c}" for c in extra.columns[1:] if c in names}
        if taken:
            extra = extra.rename(taken)
        beside = _metric_beside(ids, extra)
        if beside is None:
            join = extra
        else:  # in the one table built below
            columns += beside
    units = pl.DataFrame(columns)
    if join is not None:
        units = _metric_joined(units, join)
    equity_before, equity_after = float(before.sum()), float(after.sum())
    total_spend = float(spend.sum())
    _, (kind_spend,) = sums_by_code(options.kind, len(KINDS), [spend])
    present, by_segment = sums_by_code(options.segment, len(options.segments),
                                       [spend, before, after])
    segments = _segment_sums(options.segments, present, by_segment)
    bound = allocation.bound
    gap = best = None
    if bound is not None and exact:
        bound = max(bound, equity_after)  # equal up to float summation order
        # the plan's proven gap: to the integer optimum's proven bound when there is one
        best = allocation.integer_bound if allocation.integer_bound is not None else bound
        best = max(min(best, bound), equity_after)
        gap = max(0.0, (best - equity_after) / max(abs(best), 1e-12))

    # the plan's ROC and doing nothing's, in one call
    roc, roc_do_nothing = return_on_customer(
        np.array([equity_before, equity_before]), np.array([equity_after, equity_before]),
        np.array([total_spend, 0.0]), discount_rate).tolist()
    summary = PlanSummary(
        status=allocation.status,
        allocator=allocator,
        method=allocation.method,
        solver=allocation.solver,
        customers=int((~options.fractional).sum()),
        pools=int(options.fractional.sum()),
        equity_before=equity_before,
        equity_after=equity_after,
        equity_gain=equity_after - equity_before,
        total_spend=total_spend,
        spend_by_kind=dict(zip(KINDS, kind_spend.tolist(), strict=True)),
        spend_by_segment={name: s for name, (s, _, _) in segments.items()},
        equity_by_segment={name: {"before": b, "after": a} for name, (_, b, a) in segments.items()},
        roc=roc,
        roc_do_nothing=roc_do_nothing,
        lp_objective=allocation.lp_objective,
        bound=bound,
        gap=gap,
        integer_bound=best,
        shadow_prices=dict(allocation.shadow_prices),
        constraints=[
            ConstraintInfo(r.name, "<=" if r.sense > 0 else ">=", r.rhs) for r in rows
        ],
        fractional_pools=int((options.fractional & (allocation.theta > 0)).sum()),
        iterations=allocation.iterations,
        notes=list(allocation.notes) + nothing_spent_notes(options, rows, total_spend),
        seconds=timings,
    )
    return PlanResult(units, summary, options, allocation)


SUM_BLOCK = 1 << 16  # rows a block of ``sums_by_code``


def sums_by_code(
    codes: NDArray[np.integer], n_codes: int, values: list[NDArray[np.float64]]
) -> tuple[NDArray[np.bool_], list[NDArray[np.float64]]]:
    """Which of the codes ``0 .. n_codes - 1`` occur, and each of ``values`` summed by code.

    One summation at every size: within a block of ``SUM_BLOCK`` rows each code's values
    are added in row order (``np.bincount``), then the blocks' sums in block order. The
    figures depend on nothing but the input: polars' group-by sums, used before, are
    split among threads and differed in the last bit from run to run (at 1,000 rows and
    up); a table of 100 rows gets exactly the row-order sums they gave. The blocks keep
    ``bincount``'s index copy (it takes intp) to one block: no full-size temporary."""
    seen = np.zeros(n_codes, dtype=np.int64)
    sums = [np.zeros(n_codes) for _ in values]
    for start in range(0, codes.size, SUM_BLOCK):  # a loop over blocks, not rows
        block = codes[start:start + SUM_BLOCK].astype(np.intp)
        seen += np.bincount(block, minlength=n_codes)
        for total, v in zip(sums, values, strict=True):
            total += np.bincount(block, v[start:start + SUM_BLOCK], minlength=n_codes)
    return seen > 0, sums


def _segment_sums(
    names: list[str], present: NDArray[np.bool_], sums: list[NDArray[np.float64]]
) -> dict[str, tuple[float, ...]]:
    """The sums of the segments that have units, by segment name in sorted order (Python
    orders text by code point, polars by UTF-8 bytes: the same order)."""
    rows = zip(*(s.tolist() for s in sums), strict=True)
    named = [(n, r) for n, r, p in zip(names, rows, present.tolist(), strict=True) if p]
    return dict(sorted(named, key=lambda item: item[0]))


def _with_metric_columns(units: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    """``units`` left-joined with the metric's columns on ``customer_id``."""
    beside = _metric_beside(units["customer_id"], extra)
    return _metric_joined(units, extra) if beside is None else units.hstack(beside)


def _metric_beside(ids: pl.Series, extra: pl.DataFrame) -> list[pl.Series] | None:
    """The metric's columns as they stand beside units whose ``customer_id`` is ``ids``,
    when the units start with the metric's customers in the same order and the rest are
    pools (the usual layout: no hashing of 10M ids); None otherwise."""
    m, n = extra.height, ids.len()
    if m <= n and ids.slice(m).null_count() == n - m and ids.slice(0, m).equals(
            extra["customer_id"]):
        columns = extra.get_columns()[1:]  # not ``drop``: a lazy query's cost
        return padded(columns, n - m) if n > m else columns
    return None


def _metric_joined(units: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    # pools have no customer_id (null never matches), so they get no customer metrics
    return units.join(extra, on="customer_id", how="left", maintain_order="left")


def unit_ids(options: OptionSet, id_dtype: pl.DataType | None = None) -> dict[str, pl.Series]:
    """``customer_id`` (the input's type; null on pool rows) and ``pool`` (the pool's name;
    null on customer rows). Pools are named by text (their segment) and customers by
    whatever the input used (Int64, String...), so the two never share a column."""
    ids = options.unit_id
    pool = options.fractional
    n = options.n_units
    if id_dtype is not None and ids.dtype != id_dtype:
        # OptionSet.concat names customers and pools alike as text; give customers back
        # the input's type, unless a cost model made up ids that are not of that type.
        typed = ids.cast(id_dtype, strict=False)
        lost = typed.is_null().to_numpy() & ~ids.is_null().to_numpy() & ~pool
        customer = ids if lost.any() else typed
    else:
        customer = ids
    if not pool.any():
        return {
            "customer_id": customer.alias("customer_id"),
            "pool": nulls(n, pl.String).alias("pool"),
        }
    names = ids if ids.dtype == pl.String else ids.cast(pl.String)
    return {
        "customer_id": customer.zip_with(pl.Series(~pool), nulls(n, customer.dtype))
        .alias("customer_id"),
        "pool": names.zip_with(pl.Series(pool), nulls(n, pl.String)).alias("pool"),
    }


def unit_levels(
    options: OptionSet, allocation: Allocation, level_dtype: pl.DataType | None = None
) -> dict[str, pl.Series]:
    """``level``: the level a customer takes, or the one level of a pool that takes one
    (null when a pool mixes two); ``level_lower``, ``level_upper``, ``share_upper``: a
    pool's two levels and the share of its prospects at the upper one (a pool at a single
    level has both levels equal and share 0), null on customer rows."""
    lo, hi, theta = allocation.lo, allocation.hi, allocation.theta
    n = theta.size
    # one gather for every unit (a customer has theta > 0 only with lo == hi), then the few
    # pools' own columns: at 10M customers the earlier full-size temporaries per column
    # were ~1 GB of the plan's peak memory
    level = options.level_at(np.where(theta > 0.0, hi, lo))
    pools = np.flatnonzero(options.fractional)
    out: dict[str, pl.Series] = {}
    if pools.size:
        share = theta[pools]
        low, high = options.level_at(lo[pools]), options.level_at(hi[pools])
        mixed = (share > 0.0) & (share < 1.0) & (low != high)
        single = level[pools]
        level[pools[mixed]] = np.nan  # a pool split between two levels has no one level
        for name, v in (("level_lower", np.where(mixed, low, single)),
                        ("level_upper", np.where(mixed, high, single)),
                        ("share_upper", np.where(mixed, share, 0.0))):
            out[name] = scattered(n, pools, v).alias(name)
    else:
        out = {name: nulls(n, pl.Float64).alias(name)
               for name in ("level_lower", "level_upper", "share_upper")}
    out = {"level": pl.Series("level", level, dtype=pl.Float64, nan_to_null=True)} | out
    if level_dtype is not None and level_dtype.is_numeric() and level_dtype != pl.Float64:
        typed = {k: out[k].cast(level_dtype, strict=False) for k in ("level", "level_lower",
                                                                      "level_upper")}
        # the input's type when the levels fit it exactly (an Int64 level stays Int64)
        if all(typed[k].cast(pl.Float64).equals(out[k]) for k in typed):
            out |= typed
    return out
