"""What an allocation returns: the per-unit plan and a summary with its certificate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engine.allocation import Allocation
from engine.constraints import Constraint
from engine.options import KINDS, OptionSet
from engine.valuation import return_on_customer


@dataclass
class PlanResult:
    """``units``: one row per customer or pool; ``summary``: JSON-ready figures."""

    units: pl.DataFrame
    summary: dict[str, Any]
    options: OptionSet = field(repr=False)
    allocation: Allocation = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(_finite(self.summary), indent=2, sort_keys=False)


def _finite(obj: Any) -> Any:
    """JSON has no NaN: undefined figures (ROC of an empty base, no bound) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def build_result(
    options: OptionSet,
    allocation: Allocation,
    rows: list[Constraint],
    discount_rate: float,
    allocator: str,
    exact: bool,
    timings: dict[str, float],
    metric_columns: pl.DataFrame | None = None,
) -> PlanResult:
    before = options.value[options.baseline]
    after = allocation.equity(options)
    spend = allocation.spend(options)
    kind = np.array(KINDS)[options.kind]
    segment = np.array(options.segments, dtype=object)[options.segment]
    units = pl.DataFrame(
        {
            "customer_id": options.unit_id.cast(pl.String),
            "kind": kind,
            "segment": pl.Series(segment, dtype=pl.String),
            "level": allocation.level(options),
            "spend": spend,
            "equity_before": before,
            "equity_after": after,
            "uplift": after - before,
            "pool_share_at_upper": allocation.theta,
        }
    )
    if metric_columns is not None:  # what the plan's metric said of each customer
        extra = metric_columns.with_columns(pl.col("customer_id").cast(pl.String))
        extra = extra.rename({c: f"metric_{c}" for c in extra.columns[1:] if c in units.columns})
        pools = pl.Series(options.fractional)
        units = units.join(extra, on="customer_id", how="left", maintain_order="left")
        units = units.with_columns(  # a pool named like a customer gets no customer metrics
            pl.when(pools).then(None).otherwise(pl.col(c)).alias(c) for c in extra.columns[1:]
        )
    equity_before, equity_after = float(before.sum()), float(after.sum())
    total_spend = float(spend.sum())
    by_kind = units.group_by("kind").agg(pl.col("spend").sum())
    by_segment = (
        units.group_by("segment")
        .agg(pl.col("spend").sum(), pl.col("equity_before").sum(), pl.col("equity_after").sum())
        .sort("segment")
    )
    bound = allocation.bound
    gap = None
    if bound is not None and exact:
        bound = max(bound, equity_after)  # equal up to float summation order
        gap = max(0.0, (bound - equity_after) / max(abs(bound), 1e-12))

    def roc(e0: float, e1: float, s: float) -> float:
        return float(return_on_customer(e0, e1, s, discount_rate))

    summary: dict[str, Any] = {
        "status": allocation.status,
        "allocator": allocator,
        "method": allocation.method,
        "solver": allocation.solver,
        "customers": int((~options.fractional).sum()),
        "pools": int(options.fractional.sum()),
        "equity_before": equity_before,
        "equity_after": equity_after,
        "equity_gain": equity_after - equity_before,
        "total_spend": total_spend,
        "spend_by_kind": {k: 0.0 for k in KINDS}
        | dict(zip(by_kind["kind"].to_list(), by_kind["spend"].to_list(), strict=True)),
        "spend_by_segment": dict(
            zip(by_segment["segment"].to_list(), by_segment["spend"].to_list(), strict=True)
        ),
        "equity_by_segment": {
            s: {"before": b, "after": a}
            for s, b, a in by_segment.select("segment", "equity_before", "equity_after").iter_rows()
        },
        "roc": roc(equity_before, equity_after, total_spend),
        "roc_do_nothing": roc(equity_before, equity_before, 0.0),
        "lp_objective": allocation.lp_objective,
        "bound": bound,
        "gap": gap,
        "shadow_prices": dict(allocation.shadow_prices),
        "constraints": [
            {"name": r.name, "sense": "<=" if r.sense > 0 else ">=", "rhs": r.rhs} for r in rows
        ],
        "fractional_pools": int((options.fractional & (allocation.theta > 0)).sum()),
        "iterations": allocation.iterations,
        "notes": list(allocation.notes),
        "seconds": timings,
    }
    return PlanResult(units, summary, options, allocation)
