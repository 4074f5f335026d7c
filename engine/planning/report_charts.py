"""The report's charts (matplotlib, rendered to PNG).

Each ``draw_<chart>`` takes the chart's input from ``engine.planning.report_chart_data`` (plain
arrays, lists and numbers) and returns its PNG; this module loads numpy and matplotlib only, so
the chart process (``engine.planning.chart_process``) starts without the engine's numerics.
Every chart states its units; legends sit outside the plotting area so they never cover data;
segment charts show the segments the report shows one by one (the largest) plus one "other"
bar, so they read the same at 20 and at 200 segments.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FuncFormatter, MaxNLocator

if TYPE_CHECKING:
    from engine.planning.frontier import Frontier
    from engine.planning.report_data import ReportData

KIND_COLOURS = {"retention": "#1f77b4", "acquisition": "#ff7f0e"}
PLAN_COLOURS = {"optimum": "#2ca02c", "do nothing": "#7f7f7f", "uniform": "#9467bd",
                "proportional": "#8c564b", "current": "#d62728",
                "optimum, same money": "#17becf"}
SCENARIO_COLOURS = {"re-optimized": "#98df8a", "optimum": "#2ca02c", "current": "#d62728"}
MONEY = "currency units"
# titles at the top of their axes: no tick labels or offset text above any axes here, so
# matplotlib's automatic placement (which measures every y axis' labels at each draw) would put
# them there too
TITLE_Y = 1.0


def _money(x: float, _pos: object = None) -> str:
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:,.3g}{suffix}"
    return f"{x:,.4g}"


def _percent(x: float, _pos: object = None) -> str:
    return f"{x:.0%}"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # zlib level 3: a few per cent larger files, encoded in about half the time of level 6
    fig.savefig(buf, format="png", dpi=100, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return buf.getvalue()


def _subplots(*args: Any, **kwargs: Any) -> Any:
    """``plt.subplots`` without a layout engine: each chart sets its margins in inches from
    the widths of its own labels (``_layout``), so the PNG takes one draw (constrained layout
    measures every artist in an extra pass first, about a third of a chart's time)."""
    return plt.subplots(*args, **kwargs)


def _width(texts: Sequence[str], size: float = 8.0) -> float:
    """The widest of ``texts`` at ``size`` points, in inches (font metrics, no drawing)."""
    prop = FontProperties(size=size)
    widest = 0.0
    for text in texts:
        for line in str(text).split("\n"):
            w, _, _ = text_to_path.get_text_width_height_descent(line, prop, ismath=False)
            widest = max(widest, w)
    return widest / 72.0


def _layout(fig: Figure, left: float, right: float = 0.2, top: float = 0.4,
            bottom: float = 0.6, wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Margins and gaps between axes in inches."""
    wide, tall = fig.get_size_inches()
    grid = fig.axes[0].get_subplotspec()
    nrows, ncols = grid.get_gridspec().get_geometry() if grid is not None else (1, 1)
    inner_w = wide - left - right
    inner_h = tall - top - bottom
    fig.subplots_adjust(
        left=left / wide, right=1 - right / wide, top=1 - top / tall, bottom=bottom / tall,
        wspace=wspace / max((inner_w - wspace * (ncols - 1)) / ncols, 0.1),
        hspace=hspace / max((inner_h - hspace * (nrows - 1)) / nrows, 0.1))


def _below(ax: Axes, ncol: int, xlabel: bool = True) -> float:
    """The bottom margin (inches) for tick labels, the x label and a legend of ``ncol``
    columns under the axes."""
    return _below_n(len(ax.get_legend_handles_labels()[1]), ncol, xlabel)


def _below_n(entries: int, ncol: int, xlabel: bool = True) -> float:
    """``_below`` for a legend of ``entries`` entries."""
    return 0.32 + (0.24 if xlabel else 0.0) + 0.19 * math.ceil(entries / ncol) + 0.12


def _legend_below(ax: Axes, ncol: int = 3) -> None:
    """The legend under the axes, at the foot of the figure: it never covers a bar or a
    point."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig = ax.figure
        tall = fig.get_figheight() if isinstance(fig, Figure) else 4.0
        box = ax.get_position()
        ax.legend(handles, labels, loc="lower center",
                  bbox_to_anchor=((box.x0 + box.x1) / 2, 0.04 / tall),
                  bbox_transform=fig.transFigure, ncol=ncol, fontsize=8, frameon=False)


def _money_ticks(negative: bool = False, size: float = 10.0) -> float:
    """The widest money tick label (three significant digits and a suffix), in inches."""
    return _width(["-8.88M" if negative else "8.88M"], size)


def _thin(n: int, keep: Sequence[int] = (), most: int = 2000) -> np.ndarray:
    idx = np.unique(np.linspace(0, n - 1, min(n, most)).astype(np.int64))
    return np.unique(np.concatenate([idx, np.asarray(keep, dtype=np.int64)]))


def _height(n: int) -> float:
    return max(3.2, 0.36 * n + 1.8)


# --------------------------------------------------------------------------------------------


def chart_frontier(front: Frontier, interval: dict[str, float] | None = None) -> bytes:
    """The frontier's chart, from the frontier itself."""
    from engine.planning.report_chart_data import frontier_spec

    return draw_frontier(frontier_spec(front, interval))


def draw_frontier(spec: dict[str, Any]) -> bytes:
    budget, gain, slope = spec["budget"], spec["gain"], spec["slope"]
    ret = spec["retention"] if spec["retention"] is not None else np.zeros_like(budget)
    acq = spec["acquisition"] if spec["acquisition"] is not None else np.zeros_like(budget)
    best, plan_budget = spec["optimal_budget"], spec["plan_budget"]
    interval = spec["interval"]
    chosen = plan_budget if plan_budget is not None else best
    n_pts = budget.size
    if chosen > best:  # past the optimal budget the LP leaves money unspent: V is flat
        budget, gain = np.append(budget, chosen), np.append(gain, gain[-1])
        slope = np.append(slope, 0.0)
        ret, acq = np.append(ret, ret[-1]), np.append(acq, acq[-1])
    idx = _thin(budget.size, [0, budget.size - 1])
    fig, axes = _subplots(3, 1, figsize=(9, 9), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.5, 1.5]})
    ax = axes[0]
    if spec["method"] == "solves":  # solved budgets; V lies between the chord and the bounds
        ax.plot(budget[:n_pts], gain[:n_pts], "o-", color="#2ca02c", lw=2, ms=4,
                label=f"LP optimum at {n_pts} solved budgets (line: chord)")
        x = np.linspace(budget[0], budget[n_pts - 1], 400)
        b0, bound, price = budget[:n_pts], spec["bound"], spec["shadow_price"]
        upper = np.min(bound[:, None] + price[:, None] * (x[None, :] - b0[:, None]), axis=0)
        ax.fill_between(x, np.interp(x, b0, gain[:n_pts]), upper - spec["equity_before"],
                        color="#2ca02c", alpha=0.18, lw=0,
                        label="where the exact frontier can lie (solves' bounds)")
    else:
        ax.plot(budget[idx], gain[idx], color="#2ca02c", lw=2, label="LP frontier (exact)")
    g_chosen = spec["gain_at_chosen"]
    g_best = spec["optimal_equity"] - spec["equity_before"]
    ax.axvline(best, color="#555", ls="--", lw=1)
    ax.plot([best], [g_best], "o", color="#555", ms=8,
            label=f"optimal budget {_money(best)}: gain {_money(g_best)}")
    if plan_budget is not None:
        unspent = plan_budget - best
        extra = f" ({_money(unspent)} left unspent)" if unspent > 0 else ""
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
        ax.plot([chosen], [g_chosen], "D", color="#d62728", ms=8,
                label=f"plan budget {_money(plan_budget)}: gain {_money(g_chosen)}{extra}")
        if interval is not None:
            lo, hi = float(interval["p5"]), float(interval["p95"])
            err = [[max(g_chosen - lo, 0.0)], [max(hi - g_chosen, 0.0)]]
            ax.errorbar([chosen], [g_chosen], yerr=err, color="#d62728", capsize=6, lw=1.5,
                        label="gain, p5-p95 over the response curves' uncertainty")
    ax.set_ylabel(f"Equity gain over doing nothing\n({MONEY}, net of spend)")
    ax.set_title("Equity gain as a function of the total budget", y=TITLE_Y)
    ax.yaxis.set_major_formatter(FuncFormatter(_money))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    ax = axes[1]
    steps_x = np.repeat(budget, 2)[1:-1]
    steps_y = np.repeat(slope[1:], 2)
    ix = _thin(steps_x.size, [0, steps_x.size - 1], most=4000)
    ax.plot(steps_x[ix], steps_y[ix], color="#1f77b4", lw=1.5)
    ax.axhline(0.0, color="#555", lw=1)
    ax.axvline(best, color="#555", ls="--", lw=1)
    if plan_budget is not None:
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
    finite = steps_y[np.isfinite(steps_y)]
    if finite.size:
        top = float(np.quantile(finite, 0.98))
        ax.set_ylim(min(0.0, float(finite.min())) - 0.05 * max(top, 1e-9), top * 1.1 + 1e-9)
    ax.set_ylabel("Net equity per extra\nunit of budget (ratio)")
    ax.grid(alpha=0.3)

    ax = axes[2]
    ax.stackplot(budget[idx], ret[idx], acq[idx], labels=["retention", "acquisition"],
                 colors=[KIND_COLOURS["retention"], KIND_COLOURS["acquisition"]], alpha=0.8)
    ax.axvline(best, color="#555", ls="--", lw=1)
    if plan_budget is not None:
        ax.axvline(chosen, color="#d62728", ls=":", lw=1.5)
    ax.set_ylabel(f"Spend by kind\n({MONEY})")
    ax.set_xlabel(f"Total budget ({MONEY})")
    ax.yaxis.set_major_formatter(FuncFormatter(_money))
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    texts = axes[0].get_legend_handles_labels()[1] + axes[2].get_legend_handles_labels()[1]
    _layout(fig, left=0.5 + _money_ticks(), right=0.75 + _width(texts), top=0.4, bottom=0.6,
            hspace=0.2)
    return _png(fig)


def draw_response(spec: dict[str, Any]) -> bytes:
    """Small multiples: per segment, the effect its spend buys, with the optimum's and the
    current plan's spend marked, and the break-even line (effect = spend)."""
    curves: dict[str, dict[str, Any]] = spec["curves"]
    n = max(len(curves), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    # fixed margins in inches (one draw; constrained layout draws twice for 13 axes); only
    # the axes that show a curve are made; grid and tick sizes come from the style, not set
    # on every tick of every axes
    wide, tall = 3.0 * cols + 0.6, 2.5 * rows + 1.0
    with plt.rc_context({"axes.grid": True, "grid.alpha": 0.3, "xtick.labelsize": 7,
                         "ytick.labelsize": 7}):
        fig = plt.figure(figsize=(wide, tall))
        grid = fig.add_gridspec(rows, cols, left=0.85 / wide, right=1 - 0.15 / wide,
                                bottom=0.6 / tall, top=1 - 0.95 / tall,
                                wspace=0.32 * 3.0 / 2.6, hspace=0.5)
        axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n)]
        for ax, (label, c) in zip(axes, curves.items(), strict=False):
            x, y = np.asarray(c["spend"]), np.asarray(c["effect"])
            ax.plot(x, y, color="#2ca02c", lw=1.8, label="best effect of the spend")
            if x.size > 1:
                ax.plot([x[0], x[-1]], [x[0], x[-1]], color="#999", ls=":", lw=1,
                        label="break-even (effect = spend)")
            for name, marker in (("optimum", "o"), ("current", "D")):
                if name in c:
                    ax.plot([c[name]["spend"]], [c[name]["effect"]], marker, ms=7,
                            color=PLAN_COLOURS[name], label=f"{name} spend")
            ax.set_title(label, fontsize=9, y=TITLE_Y)
            ax.xaxis.set_major_formatter(FuncFormatter(_money))
            ax.yaxis.set_major_formatter(FuncFormatter(_money))
            # at most 4 intervals a side: a small panel reads as well, and each tick is an
            # artist made and drawn (0.18 -> 0.14 CPU s for the example's 5 panels)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
        return _response_png(fig, axes[0], wide, tall)


def _response_png(fig: Figure, first: Axes, wide: float, tall: float) -> bytes:
    handles, labels = first.get_legend_handles_labels()
    fig.supxlabel(f"Spend in the segment ({MONEY})", fontsize=9, y=0.12 / tall, va="bottom")
    fig.supylabel(f"Equity added before spend ({MONEY})", fontsize=9, x=0.1 / wide,
                  ha="left")
    # the title heads the legend, both in the top margin
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.05 / tall),
               ncol=4, fontsize=8, frameon=False, title="Response curves by segment",
               title_fontsize=11)
    return _png(fig)


def draw_shares(spec: dict[str, Any]) -> bytes:
    """Share of spend against share of effect, per segment, for the optimum (and the current
    plan when given)."""
    labels, plans = spec["labels"], spec["plans"]
    n = len(labels)
    y = np.arange(n)
    fig, axes = _subplots(1, len(plans), figsize=(5.2 * len(plans) + 1, _height(n)),
                             squeeze=False, sharey=True)
    _layout(fig, left=_width(labels) + 0.25, top=0.35, bottom=_below_n(2, 2), wspace=0.3)
    for ax, p in zip(axes.flat, plans, strict=True):
        spend, effect = spec["shares"][p]["spend"], spec["shares"][p]["effect"]
        ax.barh(y - 0.2, spend, 0.38, color="#1f77b4", label="share of spend")
        ax.barh(y + 0.2, effect, 0.38, color="#2ca02c", label="share of effect")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(n - 0.5, -0.5)
        ax.xaxis.set_major_formatter(FuncFormatter(_percent))
        ax.set_xlabel("Share of the plan's total (%)")
        ax.set_title(f"{p}: share of spend vs share of effect", fontsize=10, y=TITLE_Y)
        ax.grid(axis="x", alpha=0.3)
        _legend_below(ax, 2)
    return _png(fig)


def draw_spend(spec: dict[str, Any]) -> bytes:
    labels, plans = spec["labels"], spec["plans"]
    style = {"optimum": (1.0, None), "current": (0.45, "//"), "optimum, same money": (0.75, "..")}
    n = len(labels)
    fig, ax = _subplots(figsize=(9, _height(n) * (1.0 + 0.3 * (len(plans) - 1))))
    height = 0.8 / len(plans)
    y = np.arange(n)
    for j, (name, kinds) in enumerate(plans):
        left = np.zeros(n)
        offset = (j - (len(plans) - 1) / 2) * height
        for kind in ("retention", "acquisition"):
            vals = kinds[kind]
            alpha, hatch = style[name]
            ax.barh(y + offset, vals, height * 0.95, left=left, color=KIND_COLOURS[kind],
                    alpha=alpha, hatch=hatch, edgecolor="white", label=f"{name}: {kind}")
            left += vals
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(f"Spend ({MONEY})")
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.set_title("Spend by segment and kind", y=TITLE_Y)
    ax.grid(axis="x", alpha=0.3)
    ncol = 2 if len(plans) < 3 else 3
    _layout(fig, left=_width(labels) + 0.25, top=0.4, bottom=_below(ax, ncol))
    _legend_below(ax, 2 if len(plans) < 3 else 3)
    return _png(fig)


def draw_equity(spec: dict[str, Any]) -> bytes:
    labels, before, after = spec["labels"], spec["before"], spec["after"]
    n = len(labels)
    y = np.arange(n)
    fig, ax = _subplots(figsize=(9, _height(n)))
    ax.barh(y - 0.2, before, 0.38, color="#7f7f7f", label="before (doing nothing)")
    ax.barh(y + 0.2, after, 0.38, color="#2ca02c", label="after (optimum, net of spend)")
    for yi, b, a in zip(y, before, after, strict=True):
        change = (a - b) / b if b > 0 else math.nan
        text = f"{a - b:+,.0f}" + (f" ({change:+.1%})" if math.isfinite(change) else "")
        ax.text(max(a, b), yi + 0.2, "  " + text, va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(f"Customer equity ({MONEY})")
    ax.xaxis.set_major_formatter(FuncFormatter(_money))
    top = max(float(after.max(initial=0.0)), float(before.max(initial=0.0)))
    if top > 0:
        ax.set_xlim(0, top * 1.3)
    ax.set_title("Equity before and after by segment", y=TITLE_Y)
    ax.grid(axis="x", alpha=0.3)
    _layout(fig, left=_width(labels) + 0.25, top=0.4, bottom=_below(ax, 2))
    _legend_below(ax, 2)
    return _png(fig)


def draw_roc(spec: dict[str, Any]) -> bytes:
    labels, plans, values = spec["labels"], spec["plans"], spec["values"]
    n = len(labels)
    fig, (ax0, ax1) = _subplots(1, 2, figsize=(11, max(4.0, 0.36 * n + 2.4)),
                                   gridspec_kw={"width_ratios": [1, 2]})
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    colours = [PLAN_COLOURS.get(p, "#17becf") for p in plans]
    ax0.barh(np.arange(len(plans)), np.nan_to_num(values), color=colours)
    for i, v in enumerate(values):
        ax0.text(v if math.isfinite(v) else 0, i, f" {v:.1%}" if math.isfinite(v) else " n/a",
                 va="center", fontsize=8)
    ax0.set_yticks(np.arange(len(plans)))
    ax0.set_yticklabels(plans, fontsize=8)
    ax0.invert_yaxis()
    ax0.set_xlabel("ROC, whole base (% per period)")
    ax0.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax0.set_xlim(min(0.0, min(finite) * 1.2), max(finite) * 1.4 if max(finite) > 0 else 1)
    ax0.set_title("ROC by plan", fontsize=10, y=TITLE_Y)
    ax0.grid(axis="x", alpha=0.3)
    y = np.arange(n)
    for j, (p, vals) in enumerate(zip(plans, spec["by_group"], strict=True)):
        ax1.plot(vals, y + (j - (len(plans) - 1) / 2) * 0.12, "o", ms=5,
                 color=PLAN_COLOURS.get(p, "#17becf"), label=p)
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=8)
    ax1.set_ylim(n - 0.5, -0.5)
    ax1.set_xlabel("ROC by segment (% per period)")
    ax1.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax1.set_title("ROC by segment (customers and their segment's pool)", fontsize=10, y=TITLE_Y)
    ax1.grid(alpha=0.3)
    _layout(fig, left=_width(plans) + 0.25, right=0.2, top=0.35, bottom=_below(ax1, 3),
            wspace=_width(labels) + 0.45)
    _legend_below(ax1, 3)
    return _png(fig)


def draw_scenarios(spec: dict[str, Any]) -> bytes:
    """Each fixed plan under each changed assumption next to the plan re-optimized under it:
    the equity gain over doing nothing, and how far each falls below the best its money could
    do there (both in currency units)."""
    if not spec["assumptions"]:
        fig, ax = _subplots(figsize=(8, 2.5))
        ax.text(0.5, 0.5, "No scenarios in this report", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        _layout(fig, left=0.2, top=0.2, bottom=0.2)
        return _png(fig)
    assumptions, plans = spec["assumptions"], spec["plans"]
    n, k = len(assumptions), len(plans)
    # a fixed layout (margins in inches) instead of constrained layout: one draw, not two
    tall = max(3.4, 0.225 * n * max(k, 2) + 2.0)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, tall), gridspec_kw={"width_ratios": [3, 2]})
    fig.subplots_adjust(left=1.45 / 11, right=1 - 0.25 / 11, top=1 - 0.4 / tall,
                        bottom=0.95 / tall, wspace=0.06)
    y = np.arange(n)
    height = 0.8 / k
    for j, plan in enumerate(plans):
        gain, short = spec["gain"][plan], spec["short"][plan]
        at = y + (j - (k - 1) / 2) * height
        colour = SCENARIO_COLOURS.get(plan, PLAN_COLOURS.get(plan, "#17becf"))
        label = "re-optimized under the assumption" if plan == "re-optimized" else f"{plan} plan"
        ax0.barh(at, np.nan_to_num(gain), height=height * 0.92, color=colour, label=label)
        ax1.barh(at, short, height=height * 0.92, color=colour)
        for yy, v in zip(at, gain, strict=True):
            if math.isfinite(v):
                ax0.text(v, yy, f" {_money(v)}", va="center", fontsize=7)
    for ax in (ax0, ax1):
        ax.set_yticks(y)
        ax.set_ylim(n - 0.5, -0.5)
        ax.xaxis.set_major_formatter(FuncFormatter(_money))
        ax.grid(axis="x", alpha=0.3)
    ax0.set_yticklabels(assumptions, fontsize=8)
    ax1.set_yticklabels([])
    left, right = ax0.get_xlim()
    ax0.set_xlim(min(left, 0.0), right + 0.15 * (right - min(left, 0.0)))  # room for labels
    ax0.axvline(0.0, color="#555", lw=1)
    ax0.set_xlabel(f"Equity gain over doing nothing ({MONEY}, net of spend)")
    ax0.set_title("Each plan under changed assumptions", fontsize=10, y=TITLE_Y)
    ax1.set_xlabel(f"Below the best its money could do ({MONEY})")
    ax1.set_title("What sticking to the plan costs", fontsize=10, y=TITLE_Y)
    ax1.set_xlim(left=0.0)
    handles, names = ax0.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize=8, frameon=False)
    return _png(fig)


def draw_uplift(spec: dict[str, Any]) -> bytes:
    """Where the gain comes from: customers sorted by uplift, the cumulative share of the
    gain and of the spend against the share of customers."""
    c: dict[str, Any] = spec["concentration"]
    fig, ax = _subplots(figsize=(8, 4.2))
    if c["share_customers"]:
        x = np.concatenate([[0.0], c["share_customers"]])
        ax.plot(x, np.concatenate([[0.0], c["share_gain"]]), color="#2ca02c", lw=2,
                label="share of the gain (net of spend)")
        ax.plot(x, np.concatenate([[0.0], c["share_spend"]]), color="#1f77b4", lw=1.5, ls="--",
                label="share of the spend")
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":", label="equal shares")
        text = ", ".join(f"top {k}: {v:.0%}" for k, v in c["top"].items())
        ax.set_title(f"Where the gain comes from ({c['customers']:,} customers; {text} of the "
                     "gain)", fontsize=10, y=TITLE_Y)
    else:
        ax.text(0.5, 0.5, "No customer gains from spend in this plan", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_title("Where the gain comes from", fontsize=10, y=TITLE_Y)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    ax.set_xlabel("Customers, largest uplift first (% of customers)")
    ax.set_ylabel("Cumulative share (%)")
    ax.grid(alpha=0.3)
    _layout(fig, left=0.35 + _width(["100%"], 10.0) + 0.15, right=0.55, top=0.35,
            bottom=_below(ax, 3))
    _legend_below(ax, 3)
    return _png(fig)


def render_charts(data: ReportData) -> dict[str, Any]:
    """Chart name -> function of no argument returning its PNG, drawn in this process."""
    from engine.planning.report_chart_data import chart_jobs

    def drawn(make: Any) -> Any:
        def draw() -> bytes:
            _module, function, args = make()
            draw_chart: Any = globals()[function]
            return bytes(draw_chart(*args))
        return draw

    return {name: drawn(make) for name, make in chart_jobs(data).items()}
