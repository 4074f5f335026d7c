"""What a plan rests on: where each segment's spend response came from, and the valuation
basis its figures are stated in (``PlanSummary.assumptions``, docs/response.md).

Per segment and kind the response is ``fitted`` (a curve estimated by ``equity fit-response``,
with its covariance, in ``plan.response_curves``), ``file`` (a curve written by hand, the
customers' ``retention_ceiling`` / ``retention_response`` columns, the prospects' acquisition
columns, or a spend table) or ``default`` (the cost strategy's ``ceiling_share`` and
``response`` parameters, which nothing estimated). ``defaults`` lists the parameters of an
entry that came from the strategy's defaults.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engine import small_tables
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.strategies import Strategy

RESPONSE_COSTS = ("exponential-response", "activity-based")
TABLE_COSTS = ("spend-table", "segment-spend-table")


def _segments(table: pl.DataFrame) -> list[str]:
    if "segment" not in table.columns:
        return [""]
    text = table["segment"]
    if text.dtype != pl.String:
        text = text.cast(pl.String)
    small = small_tables.names(text)  # a few rows: the names without polars' fixed costs
    if small is not None:
        return small
    return sorted(text.fill_null("").unique().to_list())


def plan_assumptions(
    portfolio: Portfolio, plan: Plan, metric: Strategy, cost: Strategy, from_transactions: bool
) -> tuple[dict[str, Any], list[str]]:
    """The ``assumptions`` of a plan's summary, and the notes they call for."""
    curves = {(c.segment, c.kind): c for c in plan.response_curves}
    responses: list[dict[str, Any]] = []
    customers, prospects = portfolio.customers, portfolio.prospects
    respond = cost.name in RESPONSE_COSTS

    def entry(segment: str, kind: str, source: str, defaults: list[str]) -> None:
        curve = curves.get((segment, kind)) if respond else None
        if curve is not None:
            responses.append({"segment": segment, "kind": kind, "source": curve.source,
                              "model": curve.model, "defaults": []})
        else:
            responses.append({"segment": segment, "kind": kind, "source": source,
                              "model": "exponential" if respond else cost.name,
                              "defaults": defaults})

    if customers is not None and (respond or cost.name in TABLE_COSTS):
        columns = ("retention_ceiling", "retention_response")
        missing = [c for c in columns if c not in customers.columns] if respond else []
        defaults = [{"retention_ceiling": "ceiling_share", "retention_response": "response"}[c]
                    for c in missing]
        source = "default" if len(missing) == len(columns) else "file"
        for segment in _segments(customers):
            entry(segment, "retention", source, defaults)
    if prospects is not None and respond:
        for segment in _segments(prospects):
            entry(segment, "acquisition", "file", [])
    if portfolio.options is not None and not respond:
        for segment in _segments(portfolio.options):
            responses.append({"segment": segment, "kind": "options", "source": "file",
                              "model": cost.name, "defaults": []})

    period_days = getattr(metric, "period_days", None)
    valuation = {
        "period_days": period_days,
        "period": f"{period_days:g} days" if period_days else "the period of the input's "
        "margin and retention",
        "discount_rate_per_period": plan.discount_rate,
        "horizon_periods": plan.horizon,
        "margin_growth_per_period": plan.margin_growth,
    }
    notes = []
    fallback = [r["segment"] or "(all)" for r in responses if r["source"] == "default"]
    if fallback:
        notes.append(
            f"response: {len(fallback)} segment(s) ({', '.join(fallback[:5])}"
            f"{', ...' if len(fallback) > 5 else ''}) use the default retention response "
            f"(ceiling_share {getattr(cost, 'ceiling_share', 'n/a')}, k "
            f"{getattr(cost, 'response', 'n/a')}) that nothing estimated; estimate curves "
            "with `equity fit-response` and pass them with --response")
    if from_transactions and period_days:
        unit = getattr(metric, "time_unit", "week")
        unit_days = 7.0 if unit == "week" else 1.0
        horizon = "an infinite horizon" if plan.horizon is None else f"{plan.horizon} periods"
        notes.append(
            f"valuation: customers are valued in periods of {period_days:g} days at "
            f"{plan.discount_rate:g} per period over {horizon}, margins at each period's end; "
            "`equity clv` by default uses periods of one time unit at the equivalent rate, "
            "which discounts each purchase nearer its date and gives higher values; "
            f"`equity clv --period-length {period_days / unit_days:.6g}` ({unit}s) states them "
            "on this basis")
    return {"valuation": valuation, "responses": responses}, notes
