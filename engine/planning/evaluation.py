"""Plans under the model: the evaluation of the optimum, of a supplied spend table or of fixed
levels, what a plan uses of each row, the rows it breaks and its Return on Customer.

``engine.planning.scenarios`` builds the comparisons on these and re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation, row_usage
from engine.constraints import GE, LE, Constraint
from engine.errors import InvalidInputError
from engine.options import KINDS, OptionSet
from engine.result import PlanResult
from engine.valuation import return_on_customer

FloatArray = NDArray[np.float64]
UNIT_COLUMNS = ("customer_id", "kind", "segment", "spend", "equity_before", "equity_after")


# --------------------------------------------------------------------------------------------
# Evaluating plans.
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """A plan under the model: one row per unit (``UNIT_COLUMNS`` plus ``uplift``)."""

    name: str
    units: pl.DataFrame
    discount_rate: float
    notes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # plan rows it breaks
    bound: float | None = None  # LP bound of the optimum it is compared with
    # per unit, its use of each resource besides spend the plan limits (contacts, calls...)
    resources: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def equity_before(self) -> float:
        return float(self.units["equity_before"].sum())

    @property
    def equity_after(self) -> float:
        return float(self.units["equity_after"].sum())

    @property
    def spend(self) -> float:
        return float(self.units["spend"].sum())

    @property
    def roc(self) -> float:
        return float(return_on_customer(self.equity_before, self.equity_after, self.spend,
                                        self.discount_rate))

    def totals(self) -> dict[str, Any]:
        return {
            "plan": self.name,
            "spend": self.spend,
            "equity_before": self.equity_before,
            "equity_after": self.equity_after,
            "equity_gain": self.equity_after - self.equity_before,
            "roc": self.roc,
            "breaks": list(self.broken),
            "notes": list(self.notes),
        }


def evaluation_of(result: PlanResult, name: str, discount_rate: float) -> Evaluation:
    """An ``allocate`` result as an evaluation."""
    units = result.units.with_columns(  # pools by name, as in supplied plans
        pl.coalesce(pl.col("customer_id").cast(pl.String), pl.col("pool")).alias("customer_id")
    ).select(*UNIT_COLUMNS).with_columns(
        (pl.col("equity_after") - pl.col("equity_before")).alias("uplift")
    )
    notes = [] if result.summary.get("gap") in (None, 0.0) else [
        f"gap to the LP bound {result.summary['gap']:.2e}"
    ]
    return Evaluation(name, units, discount_rate, notes, bound=result.summary.get("bound"),
                      resources=resource_use(result.options, result.allocation))


def units_frame(options: OptionSet, spend: FloatArray, after: FloatArray) -> pl.DataFrame:
    before = options.value[options.baseline]
    return pl.DataFrame({  # names gathered by code in polars: no Python string per unit
        "customer_id": options.unit_id.cast(pl.String),
        "kind": pl.Series(KINDS, dtype=pl.String).gather(options.kind),
        "segment": pl.Series(options.segments, dtype=pl.String).gather(options.segment),
        "spend": spend,
        "equity_before": before,
        "equity_after": after,
        "uplift": after - before,
    })


def _by_unit_and_cost(options: OptionSet, unit: NDArray[np.int64]) -> NDArray[np.int64]:
    """Options by unit, cost, then best value first; without a sort when every unit lists its
    levels in strictly increasing cost (the usual layout)."""
    rising = np.diff(options.cost) > 0
    same_unit = unit[1:] == unit[:-1]
    if bool((rising | ~same_unit).all()):
        return np.arange(options.cost.size, dtype=np.int64)
    return np.lexsort((-options.value, options.cost, unit))


def spend_allocation(
    options: OptionSet, table: pl.DataFrame, name: str = "plan"
) -> tuple[Allocation, FloatArray, list[str]]:
    """Map a spend table onto the options: each unit mixes the two levels around its spend.

    Returns the allocation, the spend above each unit's dearest level (no effect) and notes.
    """
    if "customer_id" not in table.columns or "spend" not in table.columns:
        missing = [c for c in ("customer_id", "spend") if c not in table.columns]
        raise InvalidInputError.single(f"{name}.{missing[0]}", "required column is missing")
    spend_col = table["spend"]
    if not spend_col.dtype.is_numeric():
        raise InvalidInputError.single(f"{name}.spend", f"must be numeric, got {spend_col.dtype}")
    values = spend_col.cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise InvalidInputError.single(f"{name}.spend", "must be a finite number >= 0",
                                       int(np.flatnonzero(bad)[0]))
    ids = table["customer_id"].cast(pl.String)
    if ids.is_duplicated().any():
        row = int(np.flatnonzero(ids.is_duplicated().to_numpy())[0])
        raise InvalidInputError.single(f"{name}.customer_id", f"{ids[row]!r} appears twice", row)
    units = pl.DataFrame({"customer_id": options.unit_id.cast(pl.String),
                          "__unit": np.arange(options.n_units)})
    if units["customer_id"].is_duplicated().any():
        raise InvalidInputError.single(
            f"{name}.customer_id", "customer and pool ids overlap; rename the pools' segments"
        )
    joined = pl.DataFrame({"customer_id": ids, "spend": values}).with_row_index("__row").join(
        units, on="customer_id", how="left"
    )
    unknown = joined.filter(pl.col("__unit").is_null())
    if unknown.height:
        raise InvalidInputError.single(
            f"{name}.customer_id",
            f"{unknown.height} ids are not in the portfolio, first {unknown['customer_id'][0]!r}",
            int(unknown["__row"][0]),
        )
    notes = []
    target = options.cost[options.baseline].copy()
    given = joined["__unit"].to_numpy().astype(np.int64)
    target[given] = joined["spend"].to_numpy()
    if given.size < options.n_units:
        notes.append(f"{options.n_units - given.size} units not in the table do nothing")

    unit = options.unit_of_option
    order = _by_unit_and_cost(options, unit)
    cost = options.cost[order]
    starts = options.offsets[:-1]
    counts = np.diff(options.offsets)
    first, last = order[starts], order[starts + counts - 1]
    low = target < options.cost[first] * (1 - 1e-12)
    if low.any():
        notes.append(f"{int(low.sum())} units spend less than their cheapest level: raised to it")
    target = np.maximum(target, options.cost[first])
    excess = np.maximum(target - options.cost[last], 0.0)
    excess[excess <= 1e-12 * np.maximum(1.0, options.cost[last])] = 0.0
    if excess.any():
        notes.append(f"{int((excess > 0).sum())} units spend above their dearest level: "
                     f"{excess.sum():,.2f} spent with no effect")
    target = target - excess
    within = cost <= target[unit[order]] * (1 + 1e-12) + 1e-12
    count = np.bincount(unit[order], weights=within, minlength=options.n_units).astype(np.int64)
    lo_pos = starts + np.maximum(count, 1) - 1
    # Among options at the same cost the sort puts the best value first: step back to it.
    same = np.flatnonzero(lo_pos > starts)
    while same.size:
        tie = cost[lo_pos[same] - 1] == cost[lo_pos[same]]
        same = same[tie]
        lo_pos[same] -= 1
        same = same[lo_pos[same] > starts[same]]
    hi_pos = np.minimum(starts + count, starts + counts - 1)
    lo, hi = order[lo_pos], order[hi_pos]
    width = options.cost[hi] - options.cost[lo]
    theta = np.where(width > 0, (target - options.cost[lo]) / np.where(width > 0, width, 1.0), 0)
    theta = np.clip(theta, 0.0, 1.0)
    exact = theta <= 1e-12
    hi = np.where(exact, lo, hi)
    theta = np.where(exact, 0.0, theta)
    mixed = ~options.fractional & (theta > 0)
    if mixed.any():
        notes.append(f"{int(mixed.sum())} customers spend between two levels: valued as the mix")
    return Allocation(lo, hi, theta, "feasible", "none", "supplied"), excess, notes


def evaluate_spend(
    options: OptionSet,
    rows: list[Constraint],
    table: pl.DataFrame,
    name: str,
    discount_rate: float,
) -> Evaluation:
    """A supplied plan (``customer_id, spend``) under the model; reports the rows it breaks."""
    allocation, excess, notes = spend_allocation(options, table, name)
    spend = allocation.spend(options) + excess
    after = allocation.equity(options) - excess
    resources = resource_use(options, allocation)
    return Evaluation(name, units_frame(options, spend, after), discount_rate, notes,
                      broken_rows(options, rows, spend, resources), resources=resources)


def resource_use(options: OptionSet, allocation: Allocation) -> dict[str, FloatArray]:
    """Per unit, its use of every resource column besides spend (contacts, calls...)."""
    return {name: allocation.mix(use) for name, use in options.extra.items()}


def plan_usage(
    options: OptionSet,
    rows: list[Constraint],
    spend: FloatArray,
    resources: dict[str, FloatArray] | None = None,
) -> FloatArray:
    """What a plan uses of each row (spend for budgets and caps, the row's own resource for a
    limit on contacts, calls...), from per-unit spend and resource use."""
    if all(r.resource == "cost" for r in rows):
        return row_usage(options, rows, spend)
    per_cell: dict[str, FloatArray] = {}
    out = np.zeros(len(rows))
    for k, row in enumerate(rows):
        name = row.resource
        if name not in per_cell:
            if name == "cost":
                use = spend
            elif resources is not None and name in resources:
                use = resources[name]
            else:
                raise InvalidInputError.single(
                    f"plan.resource_limits.{name}", "the plan's use of it is not known")
            per_cell[name] = np.bincount(options.cell, weights=use,
                                         minlength=options.n_cells).astype(np.float64)
        out[k] = float(per_cell[name][row.cells].sum())
    return out


def broken_rows(
    options: OptionSet,
    rows: list[Constraint],
    spend: FloatArray,
    resources: dict[str, FloatArray] | None = None,
) -> list[str]:
    """Names of the rows a plan breaks (relative tolerance 1e-9), from its per-unit spend and
    (for limits on other resources) its per-unit use of them."""
    usage = plan_usage(options, rows, spend, resources)
    return [
        r.name for r, u in zip(rows, usage, strict=True)
        if (r.sense == LE and u > r.rhs + 1e-9 * max(1.0, abs(r.rhs)))
        or (r.sense == GE and u < r.rhs - 1e-9 * max(1.0, abs(r.rhs)))
    ]


def roc_table(evaluations: Sequence[Evaluation]) -> pl.DataFrame:
    """ROC of each plan in total, per segment and per kind (long form).

    ROC = ((1 + d)(E + S) - S - E0) / E0 (``engine.valuation.return_on_customer``): E0 the
    equity at the start (doing nothing), E the plan's equity net of its spend S. Acquisition
    alone has no equity at the start (E0 = 0): its ROC is undefined (null)."""
    frames = []
    for ev in evaluations:
        u = ev.units
        parts = [
            u.select(pl.lit("total").alias("scope"), pl.lit("all").alias("group"),
                     pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                     pl.col("spend").sum()),
            u.group_by("segment").agg(pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                                      pl.col("spend").sum())
            .select(pl.lit("segment").alias("scope"), pl.col("segment").alias("group"),
                    "equity_before", "equity_after", "spend"),
            u.group_by("kind").agg(pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                                   pl.col("spend").sum())
            .select(pl.lit("kind").alias("scope"), pl.col("kind").alias("group"),
                    "equity_before", "equity_after", "spend"),
        ]
        frame = pl.concat(parts)
        roc = return_on_customer(frame["equity_before"].to_numpy(),
                                 frame["equity_after"].to_numpy(), frame["spend"].to_numpy(),
                                 ev.discount_rate)
        frames.append(frame.with_columns(pl.lit(ev.name).alias("plan"),
                                         pl.Series("roc", roc).fill_nan(None)))
    out = pl.concat(frames).select("plan", "scope", "group", "spend", "equity_before",
                                   "equity_after", "roc")
    return out.sort(["scope", "group", "plan"], maintain_order=True)


@dataclass(frozen=True)
class FixedLevels:
    """A plan kept level by level (an ``Allocation`` over one layout of options): under a
    changed assumption with the same units, levels and costs it keeps its very levels, so its
    use of contacts, calls... is kept too, which its spend alone does not say; otherwise its
    ``spend_table`` is valued."""

    allocation: Allocation
    offsets: NDArray[np.int64]
    cost: FloatArray
    spend_table: pl.DataFrame

    @classmethod
    def of(cls, result: PlanResult, evaluation: Evaluation) -> FixedLevels:
        return cls(result.allocation, result.options.offsets, result.options.cost,
                   spend_table(evaluation))

    def fits(self, options: OptionSet) -> bool:
        return (np.array_equal(self.offsets, options.offsets)
                and np.array_equal(self.cost, options.cost))


def evaluate_levels(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    name: str,
    discount_rate: float,
) -> Evaluation:
    """A plan given by its levels (on these options' layout) under the model."""
    spend = allocation.spend(options)
    resources = resource_use(options, allocation)
    return Evaluation(name, units_frame(options, spend, allocation.equity(options)),
                      discount_rate, [], broken_rows(options, rows, spend, resources),
                      resources=resources)


def spend_table(evaluation: Evaluation) -> pl.DataFrame:
    """An evaluated plan as a supplied plan (``customer_id, spend``)."""
    return evaluation.units.select("customer_id", "spend")
