"""What each chart of the report draws, as plain numbers: the charts' inputs, apart from
their drawing.

``chart_jobs`` turns the report's figures (``ReportData``: polars frames, the frontier, the
comparison) into one job per chart: the drawing function of ``engine.planning.report_charts``
named by module and name, and its input, a dict of numpy arrays, lists, strings and floats
(no frames, no engine objects). A job runs the same wherever it runs: in this process
(``run_job``), or in the chart process (``engine.planning.chart_process``) while this one
solves the scenarios; the PNG is the same either way. Computing the inputs needs polars but
not matplotlib; drawing them needs matplotlib but not polars.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from engine.planning.frontier import Frontier
from engine.planning.report_data import ReportData, scenarios_table

CHARTS_MODULE = "engine.planning.report_charts"
Job = tuple[str, str, tuple[Any, ...]]  # (module, function, arguments): function(*arguments)


def run_job(job: Job) -> bytes:
    """The job's PNG, drawn in this process."""
    module, function, args = job
    draw: Callable[..., bytes] = getattr(importlib.import_module(module), function)
    return draw(*args)


def chart_jobs(data: ReportData) -> dict[str, Callable[[], Job]]:
    """Chart name -> function of no argument returning its job, in the page's order (the
    scenarios' chart only when the report has scenarios). Each input is computed when its
    function is called, so a caller can send some charts off before the rest are known."""
    interval = data.decision.get("gain_vs_nothing_interval")

    def job(function: str, make: Callable[[], dict[str, Any]]) -> Callable[[], Job]:
        return lambda: (CHARTS_MODULE, function, (make(),))

    return {
        "frontier": lambda: frontier_job(data.frontier, interval),
        "response": job("draw_response", lambda: {"curves": data.curves}),
        "shares": job("draw_shares", lambda: shares_spec(data)),
        "spend": job("draw_spend", lambda: spend_spec(data)),
        "equity": job("draw_equity", lambda: equity_spec(data)),
        "roc": job("draw_roc", lambda: roc_spec(data)),
        **({"scenarios": job("draw_scenarios", lambda: scenarios_spec(data.robustness))}
           if data.robustness is not None else {}),
        "uplift": job("draw_uplift", lambda: {"concentration": data.concentration}),
    }


def frontier_job(front: Frontier, interval: dict[str, float] | None) -> Job:
    """The frontier's chart, which needs only the frontier and the gain's interval: it can be
    sent as soon as the frontier is known (``build_report``'s ``frontier_ready``)."""
    return CHARTS_MODULE, "draw_frontier", (frontier_spec(front, interval),)


# --------------------------------------------------------------------------------------------


def group_labels(data: ReportData) -> tuple[dict[str, str], list[str]]:
    """Segment -> shown label (the largest by name, the rest as "other (k segments)")."""
    segments = data.segments["segment"].to_list()
    shown = set(data.groups)
    rest = [s for s in segments if s not in shown]
    other = f"other ({len(rest)} segments)"
    mapping = {s: (s if s in shown else other) for s in segments}
    return mapping, list(data.groups) + ([other] if rest else [])


def _grouped(units: pl.DataFrame, mapping: dict[str, str]) -> pl.DataFrame:
    return units.with_columns(pl.col("segment").replace_strict(mapping, default="other",
                                                               return_dtype=pl.String)
                              .alias("group"))


def frontier_spec(front: Frontier, interval: dict[str, float] | None = None) -> dict[str, Any]:
    """The frontier's points (all of them: the chart thins them), its key budgets and the gain
    at the plan's budget."""
    pts = front.points
    best = front.optimal_budget
    chosen = front.plan_budget if front.plan_budget is not None else best
    spec: dict[str, Any] = {
        "budget": pts["budget"].to_numpy(),
        "gain": pts["equity_gain"].to_numpy(),
        "slope": pts["slope"].fill_null(np.nan).to_numpy(),
        "retention": pts["retention"].to_numpy() if "retention" in pts.columns else None,
        "acquisition": pts["acquisition"].to_numpy() if "acquisition" in pts.columns else None,
        "method": front.method,
        "optimal_budget": best,
        "plan_budget": front.plan_budget,
        "equity_before": front.equity_before,
        "optimal_equity": front.optimal_equity,
        "gain_at_chosen": float(front.equity_at([chosen])[0] - front.equity_before),
        "interval": interval,
    }
    if front.method == "solves":  # solved budgets; V lies between the chord and the bounds
        spec["bound"] = pts["bound"].to_numpy()
        spec["shadow_price"] = pts["shadow_price"].to_numpy()
    return spec


def shares_spec(data: ReportData) -> dict[str, Any]:
    """Per plan (optimum, current when given) and shown group: share of spend and of effect."""
    mapping, labels = group_labels(data)
    seg = data.segments.with_columns(pl.col("segment").replace_strict(mapping, default="other",
                                                                      return_dtype=pl.String)
                                     .alias("group"))
    plans = [p for p in ("optimum", "current") if f"share_spend_{p}" in seg.columns]
    cols = [f"share_{w}_{p}" for p in plans for w in ("spend", "effect")]
    agg = seg.group_by("group").agg([pl.col(c).sum() for c in cols])
    lookup = {r["group"]: r for r in agg.iter_rows(named=True)}
    shares = {p: {w: np.array([lookup.get(g, {}).get(f"share_{w}_{p}", 0.0) or 0.0
                               for g in labels]) for w in ("spend", "effect")} for p in plans}
    return {"labels": labels, "plans": plans, "shares": shares}


SPEND_PLANS = ("optimum", "current", "optimum, same money")


def spend_spec(data: ReportData) -> dict[str, Any]:
    """Per plan shown (optimum, current, optimum with the current plan's money) and kind: the
    spend of each shown group."""
    mapping, labels = group_labels(data)
    plans = []
    for ev in data.comparison.evaluations:
        if ev.name not in SPEND_PLANS:
            continue
        cells = _grouped(ev.units, mapping).group_by(["group", "kind"]).agg(pl.col("spend").sum())
        kinds = {}
        for kind in ("retention", "acquisition"):
            part = cells.filter(pl.col("kind") == kind)
            lookup = dict(zip(part["group"].to_list(), part["spend"].to_list(), strict=True))
            kinds[kind] = np.array([lookup.get(s, 0.0) for s in labels])
        plans.append((ev.name, kinds))
    return {"labels": labels, "plans": plans}


def equity_spec(data: ReportData) -> dict[str, Any]:
    """Per shown group: equity before (doing nothing) and after (the optimum)."""
    mapping, labels = group_labels(data)
    opt = _grouped(data.comparison.evaluations[0].units, mapping).group_by("group").agg(
        pl.col("equity_before").sum(), pl.col("equity_after").sum())
    lookup = {r["group"]: r for r in opt.iter_rows(named=True)}
    return {"labels": labels,
            "before": np.array([lookup[g]["equity_before"] for g in labels]),
            "after": np.array([lookup[g]["equity_after"] for g in labels])}


def roc_spec(data: ReportData) -> dict[str, Any]:
    """Return on Customer per plan (whole base) and per plan and shown group."""
    comparison = data.comparison
    mapping, labels = group_labels(data)
    roc = comparison.roc()
    plans = [e.name for e in comparison.evaluations]
    total = roc.filter(pl.col("scope") == "total")
    values = [float(total.filter(pl.col("plan") == p)["roc"].fill_null(np.nan)[0]) for p in plans]
    by_group = []
    for p in plans:
        ev = comparison.evaluation(p)
        assert ev is not None
        g = _grouped(ev.units, mapping).group_by("group").agg(
            pl.col("equity_before").sum(), pl.col("equity_after").sum(), pl.col("spend").sum())
        lookup = {r["group"]: r for r in g.iter_rows(named=True)}
        vals = []
        for s in labels:
            r = lookup.get(s)
            e0 = r["equity_before"] if r else 0.0
            vals.append(((1 + ev.discount_rate) * (r["equity_after"] + r["spend"]) - r["spend"]
                         - e0) / e0 if r and e0 > 0 else np.nan)
        by_group.append(vals)
    return {"labels": labels, "plans": plans, "values": values, "by_group": by_group}


def _get(lookup: dict[tuple[str, str], dict[str, Any]], assumption: str, plan: str,
         column: str) -> float:
    value = lookup.get((assumption, plan), {}).get(column)
    return float(value) if value is not None else math.nan


def scenarios_spec(robustness: pl.DataFrame | None) -> dict[str, Any]:
    """Per assumption and plan: the equity gain over doing nothing and how far the plan falls
    below the best its money could do there (empty: no scenarios)."""
    frame = scenarios_table(robustness)
    if frame is None or frame.height == 0:
        return {"assumptions": [], "plans": [], "gain": {}, "short": {}}
    assumptions = list(dict.fromkeys(frame["assumption"].to_list()))
    plans = list(dict.fromkeys(frame["plan"].to_list()))
    lookup = {(r["assumption"], r["plan"]): r for r in frame.iter_rows(named=True)}
    return {
        "assumptions": assumptions, "plans": plans,
        "gain": {p: np.array([_get(lookup, a, p, "equity_gain") for a in assumptions])
                 for p in plans},
        "short": {p: np.nan_to_num([_get(lookup, a, p, "below_optimum_bound")
                                    for a in assumptions]) for p in plans},
    }
