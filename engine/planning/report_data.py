"""The figures of the planning report: everything the page shows, computed once.

``build_report`` runs the comparison, the frontier, the acquisition-vs-retention split and
the scenarios, then derives what a reader acts on: the recommendation (what to do, at what
budget, the gain against doing nothing and against the current plan), the limits with their
shadow prices, the assumptions, per segment the spend and effect of each plan and the
response curve, and how concentrated the gain is. ``report_json`` gives all of it as one
JSON-ready document (``equity report --format json``); ``engine.planning.report_charts`` and
``engine.planning.report_html`` draw it.

Segments are shown as the ``top`` largest (by spend under the optimum, then the current plan,
then equity) plus "other": the page reads the same at 20 and 200 segments; the JSON has all.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine import __version__
from engine.constraints import GE, build_constraints
from engine.options import KINDS, OptionSet
from engine.plan import Plan
from engine.planning.frontier import Frontier, frontier_of
from engine.planning.progress import Progress, no_progress
from engine.planning.scenarios import (
    Comparison,
    FixedLevels,
    compare,
    kind_split,
    plan_usage,
    robustness,
)
from engine.plugins import Registry
from engine.portfolio import Portfolio

FloatArray = NDArray[np.float64]
CURVE_POINTS = 160  # points per response curve (the curves are piecewise linear and concave)
NOISE = 1e-7  # relative: amounts below NOISE x the largest of their kind are solver noise


@dataclass
class ReportData:
    frontier: Frontier
    comparison: Comparison
    kinds: dict[str, Any]
    robustness: pl.DataFrame | None
    top: pl.DataFrame  # customers with the largest uplift
    segments: pl.DataFrame  # per segment: spend, effect and shares per plan, largest first
    groups: list[str]  # segments shown one by one (the rest are "other")
    curves: dict[str, dict[str, Any]]  # per shown group: response curve and plan points
    limits: pl.DataFrame  # every row of the plan: limit, used, shadow price, binding
    decision: dict[str, Any]  # the recommendation and the headline figures
    assumptions: dict[str, Any]
    concentration: dict[str, Any]  # share of the gain against share of customers
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Small helpers.
# --------------------------------------------------------------------------------------------


def denoise(values: FloatArray, scale: float | None = None) -> FloatArray:
    """Amounts within solver tolerance of 0 (relative to the largest) become exactly 0."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    top = scale if scale is not None else (float(np.abs(finite).max()) if finite.size else 0.0)
    limit = NOISE * max(top, 1.0)
    return np.where(np.abs(values) < limit, 0.0, values)


def limit_label(name: str) -> str:
    """``cap:at-risk/retention`` -> ``at-risk retention cap``; ``budget`` -> ``total budget``;
    ``max:contacts:s1`` -> ``contacts limit in s1``."""
    if name == "budget":
        return "total budget"
    what, _, rest = name.partition(":")
    if what == "budget":
        return f"{rest} budget"
    if what in ("max", "min"):  # max:contacts:s1/retention -> contacts limit in s1 retention
        resource, _, where = rest.partition(":")
        resource, _, kind = resource.partition("/") if not where else (resource, "", "")
        scope = " ".join(x for x in (*where.partition("/")[::2], kind) if x)
        return (f"{resource} {'limit' if what == 'max' else 'minimum'}"
                + (f" in {scope}" if scope else ""))
    segment, _, kind = rest.partition("/")
    return f"{segment}{' ' + kind if kind else ''} {what}"


def money(x: float | None) -> str:
    """12,345 / 1.23M: readable amounts for sentences."""
    if x is None or not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:,.2f}B"
    if a >= 1e6:
        return f"{x / 1e6:,.2f}M"
    if a >= 100:
        return f"{x:,.0f}"
    return f"{x:,.2f}"


# --------------------------------------------------------------------------------------------
# Building the report.
# --------------------------------------------------------------------------------------------


def build_report(
    portfolio: Portfolio,
    plan: Plan,
    current: pl.DataFrame | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
    top: int = 20,
    discount_rates: Sequence[float] = (),
    response_factors: Sequence[float] = (),
    inputs: Mapping[str, str] | None = None,
    segments_shown: int = 12,
    uncertainty: int = 0,
    seed: int = 0,
    figures_ready: Callable[[ReportData], None] | None = None,
    frontier_ready: Callable[[Frontier, dict[str, float] | None], None] | None = None,
) -> ReportData:
    """Everything the report shows. ``inputs`` names the input files (for the assumptions);
    ``segments_shown`` how many segments the charts show one by one; ``uncertainty`` draws
    give the gain's interval (``compare``). To draw the charts meanwhile: ``frontier_ready``
    gets the frontier and that interval once known, ``figures_ready`` everything but the
    acquisition-vs-retention split and the scenarios (solved after it)."""
    progress = progress or no_progress
    comparison = compare(portfolio, plan, current, registry, progress,
                         uncertainty=uncertainty, seed=seed)
    optimum = comparison.optimum
    options = optimum.options
    rows = build_constraints(plan, options)
    progress("frontier", 0.0)
    front = comparison.frontier or frontier_of(options, rows, plan.total_budget, progress)
    if frontier_ready is not None:
        frontier_ready(front, _interval(optimum.summary.get("equity_gain_interval")))
    progress("report figures", 0.0)
    customers = optimum.units.filter(pl.col("pool").is_null())
    top_units = customers.sort("uplift", descending=True).head(top).select(
        "customer_id", "segment", "kind", "level", "spend", "equity_before", "equity_after",
        "uplift")
    seg = segment_table(comparison)
    groups = seg["segment"].head(segments_shown).to_list() if seg.height > segments_shown + 1 \
        else seg["segment"].to_list()
    limits = limit_table(comparison, rows)
    data = ReportData(
        frontier=front, comparison=comparison, kinds={}, robustness=None, top=top_units,
        segments=seg, groups=groups, curves=response_curves(options, comparison, groups),
        limits=limits, decision=decision(comparison, front, limits),
        assumptions=assumptions(portfolio, plan, optimum.summary, inputs),
        concentration=concentration(customers["uplift"].to_numpy(), customers["spend"].to_numpy()),
    )
    if figures_ready is not None:  # no chart shows these two: drawn while they are solved
        figures_ready(data)
    progress("acquisition vs retention", 0.0)
    data.kinds = kind_split(optimum, rows)
    data.notes = list(data.kinds.get("notes", []))
    if discount_rates or response_factors:
        plans: dict[str, pl.DataFrame | FixedLevels] = {
            "optimum": FixedLevels.of(optimum, comparison.evaluations[0]),
            **({"current": current} if current is not None else {})}
        data.robustness = robustness(portfolio, plan, plans, discount_rates, response_factors,
                                     registry, progress, planned=optimum, planned_frontier=front)
    return data


def segment_table(comparison: Comparison) -> pl.DataFrame:
    """Per segment and plan (optimum, current when given): spend, equity before, gain net of
    spend, effect (equity added before spend) and each as a share of the plan's total;
    segments ordered by spend under the optimum (then the current plan, then equity)."""
    names = [n for n in ("optimum", "current") if comparison.evaluation(n) is not None]
    frame: pl.DataFrame | None = None
    for name in names:
        ev = comparison.evaluation(name)
        assert ev is not None
        nothing = comparison.evaluation("do nothing")
        base = nothing.units["spend"] if nothing is not None else pl.Series([0.0] * ev.units.height)
        part = (ev.units.with_columns((pl.col("uplift") + pl.col("spend") - base).alias("effect"))
                .group_by("segment").agg(pl.col("equity_before").sum(),
                                         pl.col("spend").sum().alias(f"spend_{name}"),
                                         pl.col("uplift").sum().alias(f"gain_{name}"),
                                         pl.col("effect").sum().alias(f"effect_{name}")))
        for col in (f"spend_{name}", f"gain_{name}", f"effect_{name}"):
            part = part.with_columns(pl.Series(col, denoise(part[col].to_numpy())))
        for what in ("spend", "effect"):
            total = float(part[f"{what}_{name}"].sum())
            part = part.with_columns(
                (pl.col(f"{what}_{name}") / total if total > 0 else pl.lit(None, pl.Float64))
                .alias(f"share_{what}_{name}"))
        frame = part if frame is None else frame.join(part.drop("equity_before"), on="segment",
                                                      how="full", coalesce=True)
    assert frame is not None
    keys = [f"spend_{n}" for n in names] + ["equity_before"]
    return frame.sort(keys, descending=True).fill_null(0.0)


def limit_table(comparison: Comparison, rows: Sequence[Any]) -> pl.DataFrame:
    """Every row of the plan: its limit, what the optimum uses of it, its shadow price (net
    equity per extra unit of the limit; solver noise shown as 0) and whether it binds;
    binding rows first, by the size of their price."""
    optimum = comparison.optimum
    options = optimum.options
    prices = optimum.summary.get("shadow_prices") or {}
    best = comparison.evaluations[0]
    used = plan_usage(options, list(rows), best.units["spend"].to_numpy(), best.resources)
    top = max([abs(float(v)) for v in prices.values()] + [1.0])
    out = []
    for row, u in zip(rows, used, strict=True):
        price = float(prices.get(row.name, 0.0))
        price = 0.0 if abs(price) < 1e-9 * top else price
        out.append({
            "limit": row.name, "label": limit_label(row.name),
            "sense": ">=" if row.sense == GE else "<=", "amount": float(row.rhs),
            "used": float(u), "shadow_price": price,
            # a non-zero LP price means the LP's row is tight (complementary slackness); the
            # integral plan may leave a few units' use of it free
            "binding": price != 0.0,
        })
    frame = pl.DataFrame(out, schema={"limit": pl.String, "label": pl.String, "sense": pl.String,
                                      "amount": pl.Float64, "used": pl.Float64,
                                      "shadow_price": pl.Float64, "binding": pl.Boolean})
    return frame.sort([pl.col("binding"), pl.col("shadow_price").abs()], descending=True)


def _group_index(options: OptionSet, groups: Sequence[str]) -> tuple[NDArray[np.int64], list[str]]:
    """Per unit: the index of its shown group (the last index is "other")."""
    pos = {s: i for i, s in enumerate(groups)}
    of_segment = np.array([pos.get(s, len(groups)) for s in options.segments], dtype=np.int64)
    labels = list(groups)
    rest = len(options.segments) - len(groups)
    if rest > 0:
        labels.append(f"other ({rest} segments)")
    return of_segment[options.segment], labels


def _sum_by(index: NDArray[np.int64], weights: FloatArray, n: int) -> FloatArray:
    return np.bincount(index, weights=weights, minlength=n).astype(np.float64)


def response_curves(
    options: OptionSet, comparison: Comparison, groups: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per shown segment (and "other"): the best effect (equity added before spend, over
    doing nothing) its spend can buy, from the hull of its units' levels sorted by return,
    with the optimum's and the current plan's (spend, effect) on it."""
    hull = options.hull
    unit, dc, dv = hull.increments(options.cost, options.value)
    first = hull.points[hull.offsets[:-1]]
    group_of_unit, labels = _group_index(options, groups)
    n = len(labels)
    base_cost = np.bincount(group_of_unit, weights=options.cost[first], minlength=n)
    base_value = np.bincount(group_of_unit, weights=options.value[first], minlength=n)
    before = np.bincount(group_of_unit, weights=options.value[options.baseline], minlength=n)
    nothing_cost = np.bincount(group_of_unit, weights=options.cost[options.baseline], minlength=n)
    inc_group = group_of_unit[unit]
    order = np.argsort(-(dv / dc), kind="stable")  # then by group: np.lexsort's order, the
    narrow = np.int16 if n < (1 << 15) else np.int64  # second sort a radix sort of small ids
    order = order[np.argsort(inc_group[order].astype(narrow), kind="stable")]
    inc_group, dc, dv = inc_group[order], dc[order], dv[order]
    bounds = np.searchsorted(inc_group, np.arange(n + 1))
    marks: dict[str, tuple[FloatArray, FloatArray]] = {}
    for ev in comparison.evaluations:
        if ev.name in ("optimum", "current"):
            u = ev.units
            spent = _sum_by(group_of_unit, u["spend"].to_numpy(), n)
            gain = _sum_by(group_of_unit, u["uplift"].to_numpy(), n)
            marks[ev.name] = (spent, gain + spent - nothing_cost)
    out: dict[str, dict[str, Any]] = {}
    for i, label in enumerate(labels):
        c = dc[bounds[i]:bounds[i + 1]]
        v = dv[bounds[i]:bounds[i + 1]]
        x = np.concatenate([[base_cost[i]], base_cost[i] + np.cumsum(c)])
        start = base_value[i] - before[i]
        net = np.concatenate([[start], start + np.cumsum(v)])
        effect = net + x - nothing_cost[i]
        peak = float(x[int(np.argmax(net))])
        marked = max([float(m[0][i]) for m in marks.values()] + [0.0])
        right = min(peak * 1.2, 3.0 * marked) if marked > 0 else 1.2 * peak
        right = min(float(x[-1]), max(right, float(x[0])))
        grid = np.linspace(float(x[0]), right, CURVE_POINTS) if right > x[0] else x[:1]
        at = [float(m[0][i]) for m in marks.values() if x[0] <= m[0][i] <= right]
        grid = np.union1d(grid, at)  # exact at the plans' spends (the curve is exact there)
        curve = {"spend": grid.tolist(), "effect": np.interp(grid, x, effect).tolist(),
                 "best_spend": peak}
        for name, (spent, e) in marks.items():
            curve[name] = {"spend": float(denoise(spent[i:i + 1], float(spent.max()))[0]),
                           "effect": float(e[i])}
        out[label] = curve
    return out


def concentration(uplift: FloatArray, spend: FloatArray, points: int = 200) -> dict[str, Any]:
    """Customers sorted by uplift: cumulative share of the gain and of the spend against the
    share of customers, and the share of the gain the top 1%, 10% and 20% bring."""
    n = uplift.size
    total = float(uplift.sum())
    if n == 0 or total <= 0:
        return {"customers": n, "share_customers": [], "share_gain": [], "share_spend": [],
                "top": {}}
    order = np.argsort(-uplift, kind="stable")
    gain = np.cumsum(uplift[order]) / total
    paid = np.cumsum(spend[order])
    paid = paid / paid[-1] if paid[-1] > 0 else paid
    idx = np.unique(np.linspace(0, n - 1, min(n, points)).astype(np.int64))
    share = (idx + 1) / n
    top = {f"{p:g}%": float(gain[max(math.ceil(n * p / 100) - 1, 0)]) for p in (1, 10, 20)}
    return {"customers": n, "share_customers": share.tolist(), "share_gain": gain[idx].tolist(),
            "share_spend": paid[idx].tolist(), "top": top}


# --------------------------------------------------------------------------------------------
# The decision and its assumptions.
# --------------------------------------------------------------------------------------------


def decision(comparison: Comparison, front: Frontier, limits: pl.DataFrame) -> dict[str, Any]:
    """The recommendation in words and the headline figures behind it."""
    opt = comparison.optimum.summary
    spend = float(denoise(np.array([opt["total_spend"]]), 1.0)[0])
    by_kind = {k: float(v) for k, v in opt["spend_by_kind"].items()}
    gain = float(opt["equity_gain"])
    current = comparison.evaluation("current")
    out: dict[str, Any] = {
        "spend": spend,
        "spend_by_kind": by_kind,
        "equity_before": float(opt["equity_before"]),
        "equity_after": float(opt["equity_after"]),
        "gain_vs_nothing": gain,
        "gain_vs_nothing_interval": _interval(opt.get("equity_gain_interval")),
        "probability_beats_nothing": opt.get("probability_beats_nothing"),
        "current_gain_interval": _interval(opt.get("current_gain_interval")),
        "probability_beats_current": opt.get("probability_beats_current"),
        "roc": opt["roc"],
        "roc_do_nothing": opt["roc_do_nothing"],
        "plan_budget": front.plan_budget,
        "optimal_budget": front.optimal_budget,
        "gain_at_optimal_budget": front.optimal_equity - front.equity_before,
        "marginal_return": float(front.slope_at([front.chosen_budget])[0]),
        "gap": opt.get("gap"),
        "current_spend": None, "gain_vs_current": None, "gain_same_money": None,
    }
    words = []
    if spend <= 0:
        why = next((n for n in opt.get("notes", []) if "spend" in n or "pays" in n), None)
        words.append("Spend nothing" + (f": {why.rstrip('.')}." if why else
                                        ": no spend returns more than it costs."))
    else:
        parts = " and ".join(f"{money(v)} on {k}" for k, v in by_kind.items() if v > 0)
        words.append(f"Spend {money(spend)} ({parts}) as allocated below: customer equity "
                     f"rises by {money(gain)} over doing nothing")
    if current is not None:
        gain_current = comparison.evaluations[0].equity_after - current.equity_after
        same = (current.bound - current.equity_after) if current.bound is not None else None
        out.update(current_spend=current.spend, gain_vs_current=gain_current,
                   gain_same_money=same)
        if gain_current >= 0:
            words[-1] += (f" and by {money(gain_current)} over the current plan, which spends "
                          f"{money(current.spend)}")
        else:
            words[-1] += (f"; the current plan spends {money(current.spend)} and ends "
                          f"{money(-gain_current)} higher")
        if same is not None and same > 0 and abs(current.spend - spend) > 1e-6 * max(spend, 1):
            words[-1] += (f"; the current plan's own money, re-allocated, would add "
                          f"{money(same)} to it")
    if spend > 0:
        words[-1] += "."
    if front.plan_budget is not None:
        b, best = front.plan_budget, front.optimal_budget
        tol = 1e-6 * max(1.0, best)
        if best > b + tol:
            more = front.optimal_equity - float(front.equity_at([front.chosen_budget])[0])
            words.append(f"The budget of {money(b)} binds: each further unit returns "
                         f"{out['marginal_return']:.2f} net, up to {money(best)}, where equity "
                         f"would be {money(more)} higher.")
        elif best < b - tol:
            words.append(f"Do not spend the whole budget of {money(b)}: past {money(best)} a "
                         f"unit returns less than it costs ({money(b - best)} left unspent).")
    else:
        words.append(f"No total budget was set: {money(front.optimal_budget)} is the optimal "
                     "budget.")
    other = limits.filter(pl.col("binding") & (pl.col("limit") != "budget"))
    if other.height:
        listed = ", ".join(
            f"the {r['label']} ({abs(r['shadow_price']):.2f} per unit "
            f"{'more' if r['sense'] == '<=' else 'less'})" for r in other.iter_rows(named=True))
        words.append(f"Binding limits worth revisiting, with the equity each unit of them "
                     f"would add: {listed}.")
    out["recommendation"] = " ".join(words)
    return out


def _interval(band: Any) -> dict[str, float] | None:
    """The gain's uncertainty band (``p5``, ``p50``, ``p95``) when the plan has one."""
    if isinstance(band, Mapping) and {"p5", "p95"} <= set(band):
        return {k: float(v) for k, v in band.items()}
    return None


def _fitted_sources(responses: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary's per-(segment, kind) response sources, one line per kind and source."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for r in responses:
        key = (str(r.get("kind", "")), str(r.get("source", "")), str(r.get("model", "")))
        grouped.setdefault(key, []).append(str(r.get("segment", "")))
    return [f"{kind}: {source}" + (f" ({model})" if model else "") + f", {len(segs)} segment"
            + ("s" if len(segs) != 1 else "") + (f" ({', '.join(segs)})" if len(segs) <= 6 else "")
            for (kind, source, model), segs in grouped.items()]


def _response_source(portfolio: Portfolio, plan: Plan) -> list[str]:
    out = []
    params = ", ".join(f"{k}={v}" for k, v in plan.cost.params.items())
    strategy = f"cost strategy {plan.cost.name}" + (f" ({params})" if params else "")
    if portfolio.options is not None:
        out.append("options table: each customer's equity at each level as supplied")
    cust, pros = portfolio.customers, portfolio.prospects
    if cust is not None:
        out.append("retention: per-customer response rates (customers.retention_response), "
                   f"ceilings and margins; {strategy}"
                   if "retention_response" in cust.columns else f"retention: {strategy}")
    if pros is not None:
        out.append("acquisition: per-pool response rates (prospects.acquisition_response)"
                   if "acquisition_response" in pros.columns else f"acquisition: {strategy}")
    return out


def assumptions(portfolio: Portfolio, plan: Plan, summary: Mapping[str, Any],
                inputs: Mapping[str, str] | None) -> dict[str, Any]:
    """Where the numbers come from: response model, discount rate, horizon, inputs, version."""
    out: dict[str, Any] = {
        "response": _response_source(portfolio, plan),
        "discount_rate": plan.discount_rate,
        "horizon": "infinite" if plan.horizon is None else f"{plan.horizon} periods",
        "margin_growth": plan.margin_growth,
        "retention_levels": list(plan.retention_levels),
        "acquisition_levels": list(plan.acquisition_levels),
        "strategies": {"metric": plan.metric.name, "cost": plan.cost.name,
                       "allocation": plan.allocation.name},
        "inputs": {k: str(Path(v).name) for k, v in (inputs or {}).items()},
        "engine_version": __version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    extra = summary.get("assumptions")
    if extra:
        out["model"] = extra
        responses = extra.get("responses") if isinstance(extra, Mapping) else None
        if responses:
            out["response"] = _fitted_sources(responses)
    return out


# --------------------------------------------------------------------------------------------
# The JSON document.
# --------------------------------------------------------------------------------------------


def roc_wide(comparison: Comparison) -> pl.DataFrame:
    """Return on Customer per plan: one row per plan, total and per kind."""
    roc = comparison.roc().filter(pl.col("scope") != "segment")
    wide = roc.with_columns(pl.when(pl.col("scope") == "total").then(pl.lit("total"))
                            .otherwise(pl.col("group")).alias("of")) \
        .pivot(on="of", index="plan", values="roc")
    order = {e.name: i for i, e in enumerate(comparison.evaluations)}
    cols = ["plan", *[c for c in ("total", *KINDS) if c in wide.columns]]
    return wide.select(cols).sort(pl.col("plan").replace_strict(order, return_dtype=pl.Int64))


def moves_sorted(comparison: Comparison) -> pl.DataFrame | None:
    """Money moved by segment and kind, largest move first, noise as 0."""
    if comparison.moved is None:
        return None
    moved = comparison.moved
    scale = float(moved.select(pl.all().exclude("segment", "kind").abs().max()).max_horizontal()[0])
    moved = moved.with_columns([pl.Series(c, denoise(moved[c].to_numpy(), scale))
                                for c in moved.columns if c not in ("segment", "kind")])
    return moved.sort(pl.col("moved").abs(), descending=True)


def frontier_split(front: Frontier) -> pl.DataFrame:
    """Spend by segment and kind at the least, the plan's and the optimal budget, largest
    spend at the plan's budget first."""
    budgets = sorted({front.min_budget, front.chosen_budget, front.optimal_budget})
    split = front.split_at(budgets)
    labels = {b: ("least " if b == front.min_budget else "")
              + ("plan's " if b == front.chosen_budget and front.plan_budget is not None else "")
              + ("optimal " if b == front.optimal_budget else "") + f"budget {b:,.0f}"
              for b in budgets}
    wide = split.with_columns(
        pl.col("budget").replace_strict(labels, return_dtype=pl.String).alias("at"),
        pl.Series("spend", denoise(split["spend"].to_numpy())),
    ).pivot(on="at", index=["segment", "kind"], values="spend")
    return wide.sort(labels[front.chosen_budget], descending=True)


def plans_table(comparison: Comparison) -> pl.DataFrame:
    """One row per plan; what the LP bound adds within solver tolerance of the equity shown
    as 0."""
    return _clean_gaps(comparison.summary().drop("equity_before"), "gain_available")


def scenarios_table(frame: pl.DataFrame | None) -> pl.DataFrame | None:
    return None if frame is None else _clean_gaps(frame, "below_optimum_bound")


def _clean_gaps(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    scale = float(frame["equity_after"].abs().max() or 0.0)  # type: ignore[arg-type]
    gaps = frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return frame.with_columns(pl.Series(column, denoise(gaps, scale)).fill_nan(None))


def _frame(frame: pl.DataFrame | None) -> list[dict[str, Any]] | None:
    return None if frame is None else frame.to_dicts()


def report_json(data: ReportData) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready document (NaN as null)."""
    front, comp = data.frontier, data.comparison
    doc = {
        "decision": data.decision,
        "limits": data.limits.to_dicts(),
        "assumptions": data.assumptions,
        "frontier": {"summary": front.summary(),
                     "table": front.table(8).to_dicts(),
                     "split": frontier_split(front).to_dicts(),
                     "points": front.points.select(
                         "budget", "equity_gain", "slope",
                         *[k for k in KINDS if k in front.points.columns]).gather(
                         _thin(front.points.height)).to_dicts(),
                     "shadow_prices": _frame(front.prices)},
        "acquisition_vs_retention": kind_view(data.kinds, data.limits),
        "plans": plans_table(comp).to_dicts(),
        "roc": roc_wide(comp).to_dicts(),
        "roc_by_segment": comp.roc().filter(pl.col("scope") == "segment").to_dicts(),
        "money_moved": _frame(moves_sorted(comp)),
        "same_money": comp.same_money,
        "segments": data.segments.to_dicts(),
        "segments_shown": data.groups,
        "response_curves": data.curves,
        "concentration": data.concentration,
        "scenarios": _frame(scenarios_table(data.robustness)),
        "top_customers": data.top.to_dicts(),
        "notes": comp.notes + front.notes + data.notes,
    }
    return _finite(doc)


def _thin(n: int, most: int = 400) -> list[int]:
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, most)).astype(np.int64)).tolist()


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.floating | np.integer):
        return _finite(obj.item())
    return obj


def kind_view(kinds: dict[str, Any], limits: pl.DataFrame) -> dict[str, Any]:
    """Acquisition vs retention as a reader needs it: per kind its spend, share, the budget
    rows it draws on and what its next unit returns (the sum of those rows' shadow prices
    with separate budgets; the LP re-solved with a shared one), and the gain of moving one
    unit between kinds."""
    prices = dict(zip(limits["limit"].to_list(), limits["shadow_price"].to_list(), strict=True))
    rows = []
    for k in KINDS:
        share = kinds["share"].get(k, math.nan)
        row: dict[str, Any] = {"kind": k, "spend": kinds["spend"][k],
                               "share": share if math.isfinite(share) else None,
                               "gain": kinds["equity_gain"][k]}
        drawn = [n for n in ("budget", f"budget:{k}") if n in prices]
        row["budgets"] = [limit_label(n) for n in drawn]
        if "marginal" in kinds:
            m = kinds["marginal"].get(k)
            row["next_unit"] = None if m is None else m["next_unit"]
            row["last_unit"] = None if m is None else m["last_unit"]
        else:
            row["next_unit"] = float(sum(prices[n] for n in drawn)) if drawn else None
        rows.append(row)
    moves = {}
    for name, v in kinds.get("gain_moving_one_unit", {}).items():
        exact = v if isinstance(v, float) else v.get("exact")
        moves[name] = float(denoise(np.array([exact]), 1.0)[0]) if exact is not None else None
    return {"budgets": kinds["budgets"], "kinds": rows, "gain_moving_one_unit": moves}
