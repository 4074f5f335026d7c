"""The planning report: one self-contained HTML file (charts embedded as PNG) plus the PNGs.

Charts: the frontier with the optimal and the plan's budget marked (with the marginal return
and the acquisition/retention split along it), spend by segment and kind, equity before and
after by segment, Return on Customer of every plan, and the customers with the largest
uplift. Amounts are in the portfolio's currency units; horizontal bars keep 20 segments
readable.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from engine.constraints import build_constraints
from engine.plan import Plan
from engine.planning.frontier import Frontier, frontier_of
from engine.planning.progress import Progress, no_progress
from engine.planning.scenarios import (
    Comparison,
    compare,
    kind_split,
    robustness,
    spend_table,
)
from engine.plugins import Registry
from engine.portfolio import Portfolio

KIND_COLOURS = {"retention": "#1f77b4", "acquisition": "#ff7f0e"}
PLAN_COLOURS = {"optimum": "#2ca02c", "do nothing": "#7f7f7f", "uniform": "#9467bd",
                "proportional": "#8c564b", "current": "#d62728",
                "optimum, same money": "#17becf"}
CHARTS = ("frontier", "spend", "equity", "roc", "uplift")


@dataclass
class ReportData:
    frontier: Frontier
    comparison: Comparison
    kinds: dict[str, Any]
    robustness: pl.DataFrame | None
    top: pl.DataFrame
    notes: list[str] = field(default_factory=list)


def build_report(
    portfolio: Portfolio,
    plan: Plan,
    current: pl.DataFrame | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
    top: int = 20,
    discount_rates: Sequence[float] = (),
    response_factors: Sequence[float] = (),
) -> ReportData:
    """Everything the report shows: frontier, comparison, kind split, scenarios, top uplift."""
    progress = progress or no_progress
    comparison = compare(portfolio, plan, current, registry, progress)
    optimum = comparison.optimum
    options = optimum.options
    rows = build_constraints(plan, options)
    progress("frontier", 0.0)
    front = frontier_of(options, rows, plan.total_budget, progress)
    progress("acquisition vs retention", 0.0)
    kinds = kind_split(optimum, rows)
    scen = None
    if discount_rates or response_factors:
        plans = {"optimum": spend_table(comparison.evaluations[0])}
        if current is not None:
            plans["current"] = current
        scen = robustness(portfolio, plan, plans, discount_rates, response_factors, registry,
                          progress)
    units = optimum.units.with_columns(pl.Series("pool", options.fractional))
    top_units = (
        units.filter(~pl.col("pool"))
        .sort("uplift", descending=True)
        .head(top)
        .select("customer_id", "segment", "kind", "level", "spend", "equity_before",
                "equity_after", "uplift")
    )
    return ReportData(front, comparison, kinds, scen, top_units)


# --------------------------------------------------------------------------------------------
# Charts.
# --------------------------------------------------------------------------------------------


def _money(x: float, _pos: object = None) -> str:
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:,.3g}{suffix}"
    return f"{x:,.4g}"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _thin(n: int, keep: Sequence[int] = (), most: int = 4000) -> np.ndarray:
    idx = np.unique(np.linspace(0, n - 1, min(n, most)).astype(np.int64))
    return np.unique(np.concatenate([idx, np.asarray(keep, dtype=np.int64)]))


def chart_frontier(front: Frontier) -> bytes:
    pts = front.points
    budget = pts["budget"].to_numpy()
    gain = pts["equity_gain"].to_numpy()
    slope = pts["slope"].fill_null(np.nan).to_numpy()
    ret, acq = pts["retention"].to_numpy(), pts["acquisition"].to_numpy()
    best = front.optimal_budget
    chosen = front.plan_budget if front.plan_budget is not None else best
    if chosen > best:  # past the optimal budget the LP leaves money unspent: V is flat
        budget, gain = np.append(budget, chosen), np.append(gain, gain[-1])
        slope = np.append(slope, 0.0)
        ret, acq = np.append(ret, ret[-1]), np.append(acq, acq[-1])
    idx = _thin(budget.size, [0, budget.size - 1])
    fig, axes = plt.subplots(3, 1, figsize=(9, 9.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.6, 1.6]})
    ax = axes[0]
    ax.plot(budget[idx], gain[idx], color="#2ca02c", lw=2, label="LP frontier (exact)")
    g_chosen = float(front.equity_at([chosen])[0] - front.equity_before)
    g_best = front.optimal_equity - front.equity_before
    ax.axvline(best, color="#555", ls="--", lw=1)
    ax.plot([best], [g_best], "o", color="#555", ms=8,
            label=f"optimal budget {_money(best)}: gain {_money(g_best)}")
    if front.plan_budget is not None:
        unspent = front.plan_budget - best
        extra = f" ({_money(unspent)} left unspent)" if unspent > 0 else ""
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
        ax.plot([chosen], [g_chosen], "D", color="#d62728", ms=8,
                label=f"plan budget {_money(front.plan_budget)}: gain {_money(g_chosen)}{extra}")
    ax.set_ylabel("Equity gain over doing nothing\n(currency units, net of spend)")
    ax.set_title("Equity gain as a function of the total budget")
    ax.yaxis.set_major_formatter(FuncFormatter(_money))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")

    ax = axes[1]
    steps_x = np.repeat(budget, 2)[1:-1]
    steps_y = np.repeat(slope[1:], 2)
    ix = _thin(steps_x.size, [0, steps_x.size - 1], most=8000)
    ax.plot(steps_x[ix], steps_y[ix], color="#1f77b4", lw=1.5)
    ax.axhline(0.0, color="#555", lw=1)
    ax.axvline(best, color="#555", ls="--", lw=1)
    if front.plan_budget is not None:
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
    finite = steps_y[np.isfinite(steps_y)]
    if finite.size:
        top = float(np.quantile(finite, 0.98))
        ax.set_ylim(min(0.0, float(finite.min())) - 0.05 * max(top, 1e-9), top * 1.1 + 1e-9)
    ax.set_ylabel("Marginal net equity\nper unit of budget")
    ax.grid(alpha=0.3)

    ax = axes[2]
    ax.stackplot(budget[idx], ret[idx], acq[idx], labels=["retention", "acquisition"],
                 colors=[KIND_COLOURS["retention"], KIND_COLOURS["acquisition"]], alpha=0.8)
    ax.axvline(best, color="#555", ls="--", lw=1)
    if front.plan_budget is not None:
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
    ax.set_ylabel("Spend by kind\n(currency units)")
    ax.set_xlabel("Total budget (currency units)")
    ax.yaxis.set_major_formatter(FuncFormatter(_money))
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _segment_height(n: int) -> float:
    return max(3.5, 0.42 * n + 1.6)


def chart_spend(comparison: Comparison) -> bytes:
    shown = ("optimum", "current", "optimum, same money")
    plans = [e for e in comparison.evaluations if e.name in shown]
    style = {"optimum": (1.0, None), "current": (0.45, "//"), "optimum, same money": (0.75, "..")}
    frames = [e.units.group_by(["segment", "kind"]).agg(pl.col("spend").sum())
              .with_columns(pl.lit(e.name).alias("plan")) for e in plans]
    data = pl.concat(frames)
    segments = sorted(set(data["segment"].to_list()))
    n = len(segments)
    fig, ax = plt.subplots(figsize=(9, _segment_height(n) * (1.0 + 0.35 * (len(plans) - 1))))
    height = 0.8 / len(plans)
    y = np.arange(n)
    for j, ev in enumerate(plans):
        left = np.zeros(n)
        offset = (j - (len(plans) - 1) / 2) * height
        for kind in ("retention", "acquisition"):
            part = data.filter((pl.col("plan") == ev.name) & (pl.col("kind") == kind))
            lookup = dict(zip(part["segment"].to_list(), part["spend"].to_list(), strict=True))
            vals = np.array([lookup.get(s, 0.0) for s in segments])
            alpha, hatch = style[ev.name]
            ax.barh(y + offset, vals, height * 0.95, left=left, color=KIND_COLOURS[kind],
                    alpha=alpha, hatch=hatch, edgecolor="white", label=f"{ev.name}: {kind}")
            left += vals
    ax.set_yticks(y)
    ax.set_yticklabels(segments)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("Spend (currency units)")
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.set_title("Spend by segment and kind: " + ", ".join(e.name for e in plans))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def chart_equity(comparison: Comparison) -> bytes:
    opt = comparison.evaluations[0].units.group_by("segment").agg(
        pl.col("equity_before").sum(), pl.col("equity_after").sum()
    ).sort("segment")
    segments = opt["segment"].to_list()
    n = len(segments)
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(9, _segment_height(n)))
    ax.barh(y - 0.2, opt["equity_before"].to_numpy(), 0.38, color="#7f7f7f",
            label="before (doing nothing)")
    ax.barh(y + 0.2, opt["equity_after"].to_numpy(), 0.38, color="#2ca02c",
            label="after (optimum, net of spend)")
    for yi, b, a in zip(y, opt["equity_before"].to_numpy(), opt["equity_after"].to_numpy(),
                        strict=True):
        change = (a - b) / b if b > 0 else math.nan
        text = f"+{_money(a - b)}" + (f" ({change:+.1%})" if math.isfinite(change) else "")
        ax.text(max(a, b), yi + 0.2, "  " + text, va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(segments)
    ax.invert_yaxis()
    ax.set_xlabel("Customer equity (currency units)")
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.set_xlim(0, max(float(opt["equity_after"].to_numpy().max()),
                       float(opt["equity_before"].to_numpy().max())) * 1.25)
    ax.set_title("Equity before and after by segment")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def chart_roc(comparison: Comparison) -> bytes:
    roc = comparison.roc()
    plans = [e.name for e in comparison.evaluations]
    total = roc.filter(pl.col("scope") == "total")
    seg = roc.filter(pl.col("scope") == "segment")
    segments = sorted(set(seg["group"].to_list()))
    n = len(segments)
    fig, (ax0, ax1) = plt.subplots(
        1, 2, figsize=(11, max(4.0, 0.42 * n + 2.0)), gridspec_kw={"width_ratios": [1, 2]}
    )
    values = [float(total.filter(pl.col("plan") == p)["roc"].fill_null(np.nan)[0]) for p in plans]
    colours = [PLAN_COLOURS.get(p, "#17becf") for p in plans]
    ax0.barh(np.arange(len(plans)), values, color=colours)
    for i, v in enumerate(values):
        ax0.text(v, i, f" {v:.1%}", va="center", fontsize=9)
    ax0.set_yticks(np.arange(len(plans)))
    ax0.set_yticklabels(plans)
    ax0.invert_yaxis()
    ax0.set_xlabel("Return on Customer, whole base (% per period)")
    ax0.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
    ax0.set_xlim(min(0.0, min(values) * 1.2), max(values) * 1.35 if max(values) > 0 else 1)
    ax0.set_title("ROC by plan")
    ax0.grid(axis="x", alpha=0.3)
    y = np.arange(n)
    for j, p in enumerate(plans):
        part = seg.filter(pl.col("plan") == p)
        lookup = dict(zip(part["group"].to_list(), part["roc"].fill_null(np.nan).to_list(),
                          strict=True))
        vals = np.array([lookup.get(s, np.nan) for s in segments], dtype=float)
        ax1.plot(vals, y + (j - (len(plans) - 1) / 2) * 0.12, "o", ms=6,
                 color=PLAN_COLOURS.get(p, "#17becf"), label=p)
    ax1.set_yticks(y)
    ax1.set_yticklabels(segments)
    ax1.invert_yaxis()
    ax1.set_xlabel("Return on Customer by segment (% per period)")
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
    ax1.set_title("ROC by segment (customers and their segment's pool)")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def chart_uplift(top: pl.DataFrame) -> bytes:
    n = top.height
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * n + 1.4)))
    labels = [f"{c}  ({s})" for c, s in zip(top["customer_id"].to_list(),
                                             top["segment"].to_list(), strict=True)]
    vals = top["uplift"].to_numpy()
    ax.barh(np.arange(n), vals, color="#2ca02c")
    for i, (v, spend) in enumerate(zip(vals, top["spend"].to_numpy(), strict=True)):
        ax.text(v, i, f"  +{_money(v)} for {_money(spend)} spend", va="center", fontsize=8)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Equity uplift (currency units, net of spend)")
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    largest = float(vals.max()) if n else 0.0
    if largest > 0:  # all-zero uplift (nothing worth spending): matplotlib's own limits
        ax.set_xlim(0, largest * 1.45)
    ax.set_title(f"The {n} customers with the largest uplift" if largest > 0
                 else "No customer gains from spend in this plan")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML.
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value == 0:
            return "0"
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return html.escape(str(value))


def _table(frame: pl.DataFrame, percent: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c, v in row.items():
            if c in percent and isinstance(v, float) and math.isfinite(v):
                cells.append(f"<td>{v:.2%}</td>")
            else:
                cells.append(f"<td>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _segment_split(front: Frontier) -> str:
    """Spend by segment (rows) and kind at the least, the plan's and the optimal budget."""
    budgets = sorted({front.min_budget, front.chosen_budget, front.optimal_budget})
    split = front.split_at(budgets)
    labels = {b: ("least " if b == front.min_budget else "")
              + ("plan's " if b == front.chosen_budget and front.plan_budget is not None else "")
              + ("optimal " if b == front.optimal_budget else "") + f"budget {b:,.0f}"
              for b in budgets}
    wide = split.with_columns(
        pl.col("budget").replace_strict(labels, return_dtype=pl.String).alias("at")
    ).pivot(on="at", index=["segment", "kind"], values="spend")
    return _table(wide)


def _kinds_html(kinds: dict[str, Any]) -> str:
    parts = [f"<p>Budgets: <b>{kinds['budgets']}</b>. Split at the optimum: "
             + ", ".join(f"{k} {_fmt(v)} ({kinds['share'][k]:.1%})"
                         for k, v in kinds["spend"].items() if math.isfinite(kinds['share'][k]))
             + ".</p>"]
    if "marginal" in kinds:
        rows = [{"kind": k, "next unit": v["next_unit"], "last unit": v["last_unit"]}
                for k, v in kinds["marginal"].items()]
        parts.append("<p>Marginal net equity per unit of budget (LP re-solved with the split "
                     "pinned and one kind's spend moved by one unit):</p>")
        parts.append(_table(pl.DataFrame(rows)))
        if "gain_moving_one_unit" in kinds:
            parts.append("<p>Moving one unit: " + ", ".join(
                f"{k}: {_fmt(v)}" for k, v in kinds["gain_moving_one_unit"].items()) + "</p>")
    else:
        parts.append("<p>Shadow prices (net equity per extra unit of each budget): " + ", ".join(
            f"{k}: {_fmt(v)}" for k, v in kinds["shadow_price"].items()) + "</p>")
        rows = [{"move one unit": k, "first order (shadow prices)": v["first_order"],
                 "exact (LP re-solved)": v["exact"]}
                for k, v in kinds["gain_moving_one_unit"].items()]
        parts.append(_table(pl.DataFrame(rows)))
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}
th,td{border:1px solid #ddd;padding:.28em .6em;text-align:right}
th{background:#f4f6f8} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.kpi{display:inline-block;background:#f4f8f4;border-radius:6px;padding:.6em 1em;margin:.3em}
.kpi b{display:block;font-size:1.35em} .note{color:#666;font-size:.88em}
.scroll{overflow-x:auto;max-width:100%}
"""


def render_html(data: ReportData, images: dict[str, bytes]) -> str:
    front, comp = data.frontier, data.comparison
    opt = comp.optimum.summary
    fs = front.summary()

    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(images[name]).decode("ascii")
        return f'<img id="chart-{name}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'

    kpis = [
        ("Equity gain (optimum)", _fmt(opt["equity_gain"])),
        ("Spend", _fmt(opt["total_spend"])),
        ("Return on Customer", f"{opt['roc']:.2%}" if opt["roc"] is not None else "n/a"),
        ("Optimal budget", _fmt(fs["optimal_budget"])),
        ("Marginal return at the plan's budget", _fmt(fs["chosen_slope"])),
    ]
    sections = [
        "<h1>Equity Engine: planning report</h1>"
        f"<p class='note'>{opt['customers']:,} customers, {opt['pools']} prospect pools; "
        f"discount rate {comp.plan.discount_rate:g}. Amounts in currency units; equity is net "
        "of the spend it implies.</p>",
        "".join(f"<div class='kpi'>{k}<b>{v}</b></div>" for k, v in kpis),
        "<h2>Frontier and optimal budget</h2>",
        "<p>Equity (the LP optimum, exact at every breakpoint) as the total budget varies with "
        "every other limit of the plan kept. The slope is the net equity one more unit of "
        "budget buys (the budget's shadow price): a slope s means the unit returns 1 + s "
        "before its own cost. The optimal budget is where it falls to 0; past it the LP "
        f"leaves money unspent. Method: {front.method}, {front.n_breakpoints:,} breakpoints, "
        f"{front.seconds:.2f} s.</p>",
        img("frontier", "frontier"),
        _table(front.table(10).select("budget", "equity", "equity_gain", "slope",
                                      *[k for k in ("retention", "acquisition")
                                        if k in front.table(2).columns])),
        "<p>Spend by segment and kind along the frontier:</p>",
        _segment_split(front),
        "<h2>Acquisition vs retention</h2>",
        _kinds_html(data.kinds),
        "<h2>Plans compared</h2>",
        "<p><i>optimum_same_money</i> is the LP bound for each plan's own spend (its rows "
        "relaxed only where it breaks them): no plan can beat it, so <i>gain_available</i> is "
        "what re-allocating the same money would add.</p>",
        _table(comp.summary().drop("equity_before"), percent=("roc",)),
        "".join(f"<p class='note'>{html.escape(n)}</p>" for n in comp.notes),
        "<h2>Spend by segment and kind</h2>",
        img("spend", "spend by segment and kind"),
    ]
    if comp.moved is not None:
        sections += ["<p>Where the money moves (optimum minus current plan):</p>",
                     _table(comp.moved)]
    sections += [
        "<h2>Equity before and after by segment</h2>",
        img("equity", "equity before and after by segment"),
        "<h2>Return on Customer</h2>",
        "<p>ROC = (cash flow of the period + change in customer equity) / equity at its start "
        "= ((1 + d)(E + S) - S - E0) / E0; doing nothing earns the discount rate d. "
        "Acquisition alone starts from no equity, so its ROC is undefined; segments include "
        "their prospect pool.</p>",
        img("roc", "return on customer"),
        _table(comp.roc().filter(pl.col("scope") != "segment"), percent=("roc",)),
    ]
    if data.robustness is not None:
        sections += ["<h2>Scenarios: the same plans under changed assumptions</h2>",
                     "<p><i>below_optimum_bound</i>: how far each plan falls below the best "
                     "that its money could do under that assumption.</p>",
                     _table(data.robustness, percent=("roc",))]
    sections += [
        "<h2>Customers with the largest uplift</h2>",
        img("uplift", "customers with the largest uplift"),
        _table(data.top),
    ]
    if front.notes or data.notes:
        sections.append("".join(f"<p class='note'>{html.escape(n)}</p>"
                                for n in front.notes + data.notes))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Equity Engine planning report</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")


def write_report(data: ReportData, out: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Render every chart to ``out/<name>.png`` and the page to ``out/report.html``."""
    progress = progress or no_progress
    out.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[], bytes]] = {
        "frontier": lambda: chart_frontier(data.frontier),
        "spend": lambda: chart_spend(data.comparison),
        "equity": lambda: chart_equity(data.comparison),
        "roc": lambda: chart_roc(data.comparison),
        "uplift": lambda: chart_uplift(data.top),
    }
    images: dict[str, bytes] = {}
    paths: dict[str, Path] = {}
    for i, (name, make) in enumerate(makers.items()):
        progress(f"chart {name}", i / len(makers))
        images[name] = make()
        paths[name] = out / f"{name}.png"
        paths[name].write_bytes(images[name])
    paths["html"] = out / "report.html"
    paths["html"].write_text(render_html(data, images))
    progress("report", 1.0)
    return paths
