"""The report page: one self-contained HTML file (charts inline as PNG, no scripts) with a
print stylesheet, so it prints or saves as PDF cleanly.

It opens with the decision on one screen (the recommendation in words, the headline figures,
the binding limits with their shadow prices and the assumptions), then the detail. Every
section carries an ``id`` (``SECTIONS``) and every table is sorted by the size of what it
shows.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from engine.planning.report_data import (
    ReportData,
    frontier_split,
    kind_view,
    moves_sorted,
    plans_table,
    roc_wide,
    scenarios_table,
)

CHARTS = ("frontier", "response", "shares", "spend", "equity", "roc", "scenarios", "uplift")
SECTIONS = ("decision", "limits", "assumptions", "frontier", "response", "shares",
            "acquisition-retention", "plans", "spend", "equity", "roc", "uplift")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value == 0:
            return "0"
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def _table(frame: pl.DataFrame, percent: Sequence[str] = (), cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = [f"<td>{_pct(v)}</td>" if c in percent else f"<td>{_fmt(v)}</td>"
                 for c, v in row.items()]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table class='{cls}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _section(ident: str, title: str, *parts: str) -> str:
    return f"<section id='{ident}'><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _p(text: str, cls: str = "") -> str:
    return f"<p class='{cls}'>{text}</p>" if cls else f"<p>{text}</p>"


def _money(x: Any) -> str:
    from engine.planning.report_data import money

    return money(x) if isinstance(x, int | float) else "n/a"


# --------------------------------------------------------------------------------------------


def _decision(data: ReportData) -> str:
    d = data.decision
    interval = d.get("gain_vs_nothing_interval")
    gain = _money(d["gain_vs_nothing"])
    if interval:
        gain += f"<small>interval p5-p95: {_money(interval['p5'])} to {_money(interval['p95'])}"
        if d.get("probability_beats_nothing") is not None:
            gain += f"; P(gain &gt; 0) {d['probability_beats_nothing']:.0%}"
        gain += "</small>"
    kpis = [("Equity gain vs doing nothing", gain)]
    if d["gain_vs_current"] is not None:
        versus = _money(d["gain_vs_current"])
        if d.get("probability_beats_current") is not None:
            versus += f"<small>P(plan beats current) {d['probability_beats_current']:.0%}</small>"
        kpis.append(("Gain over the current plan", versus))
    kpis += [
        ("Spend", _money(d["spend"])),
        ("Return on Customer", _pct(d["roc"]) + (f"<small>doing nothing {_pct(d['roc_do_nothing'])}"
                                                 "</small>" if d["roc_do_nothing"] is not None
                                                 else "")),
        ("Optimal budget", _money(d["optimal_budget"])),
        ("Next unit of budget returns", f"{d['marginal_return']:.2f} net"
         if math.isfinite(d["marginal_return"]) else "n/a"),
    ]
    binding = data.limits.filter(pl.col("binding"))
    items = "".join(
        f"<li><b>{html.escape(r['label'])}</b> ({r['sense']} {_money(r['amount'])}): "
        f"{abs(r['shadow_price']):.2f} of equity per unit "
        f"{'more' if r['sense'] == '<=' else 'less'}</li>"
        for r in binding.iter_rows(named=True))
    limits = (f"<ul class='limits'>{items}</ul>" if items
              else "<p>No limit binds: the optimum stops where spend stops paying.</p>")
    return (
        "<section id='decision' class='decision'><h2>Decision</h2>"
        f"<p class='recommendation'>{html.escape(d['recommendation'])}</p>"
        + "".join(f"<div class='kpi'>{k}<b>{v}</b></div>" for k, v in kpis)
        + "<div class='cols'><div><h3>Binding limits (shadow prices)</h3>" + limits
        + "</div><div><h3>Assumptions</h3>" + _assumption_list(data.assumptions)
        + "</div></div></section>"
    )


def _assumption_list(a: dict[str, Any]) -> str:
    rows = [
        ("Response", "; ".join(a["response"]) or "n/a"),
        ("Discount rate", f"{a['discount_rate']:g} per period"),
        ("Horizon", a["horizon"]),
        ("Margin growth", f"{a['margin_growth']:g} per period"),
        ("Inputs", ", ".join(f"{k}: {v}" for k, v in a["inputs"].items()) or "built-in example"),
        ("Engine", f"{a['engine_version']}, {a['generated']}"),
    ]
    model = a.get("model")
    if isinstance(model, dict):
        rows += [(str(k), _short(v)) for k, v in model.items() if k != "responses"]
    elif isinstance(model, list):
        rows += [("Model", "; ".join(str(m) for m in model))]
    return "<dl class='assumptions'>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows) + "</dl>"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, [], {}))
    return str(value)


def _limits(data: ReportData) -> str:
    frame = data.limits.select(
        pl.col("label").alias("limit"), "sense", "amount", "used", "shadow_price", "binding")
    return _section(
        "limits", "Limits and their shadow prices",
        _p("The shadow price of a limit is the net equity one more unit of it would buy (a "
           "minimum: one unit less). Binding limits first, largest price first; prices within "
           "solver tolerance of 0 show as 0."),
        _table(frame))


def _assumptions(data: ReportData) -> str:
    a = data.assumptions
    rows = pl.DataFrame({
        "assumption": ["retention levels", "acquisition levels", "metric", "cost", "allocation"],
        "value": [", ".join(f"{v:g}" for v in a["retention_levels"]),
                  ", ".join(f"{v:g}" for v in a["acquisition_levels"]),
                  a["strategies"]["metric"], a["strategies"]["cost"],
                  a["strategies"]["allocation"]],
    })
    parts = [_assumption_list(a), _table(rows)]
    model = a.get("model")
    responses = model.get("responses") if isinstance(model, dict) else None
    if responses:
        frame = pl.DataFrame([{k: _short(v) if isinstance(v, dict | list) else v
                               for k, v in r.items()} for r in responses])
        parts += [_p("Where each segment's response curve comes from:"), _table(frame)]
    return _section("assumptions", "Assumptions in full", *parts)


def _kinds(data: ReportData) -> str:
    view = kind_view(data.kinds, data.limits)
    frame = pl.DataFrame(view["kinds"], schema_overrides={"budgets": pl.List(pl.String)}) \
        .with_columns(pl.col("budgets").list.join(" + "))
    parts = []
    if view["budgets"] == "separate":
        parts.append(_p(
            "Each kind draws on the budgets listed: its next unit needs one more unit of each, "
            "so it returns the sum of their shadow prices (net equity per unit). A kind without "
            "a budget of its own is bought with the total budget alone."))
    else:
        parts.append(_p("One shared budget: the next and the last unit of each kind are priced "
                        "by re-solving the LP with the split pinned and one kind moved by one "
                        "unit."))
    parts.append(_table(frame, percent=("share",)))
    moves = ", ".join(f"{k}: {_fmt(v)}" for k, v in view["gain_moving_one_unit"].items())
    if moves:
        parts.append(_p(f"Moving one unit between kinds (LP re-solved): {moves} (never above 0 "
                        "at the optimum)."))
    return _section("acquisition-retention", "Acquisition vs retention", *parts)


def _segments(data: ReportData) -> str:
    seg = data.segments
    cols = ["segment", *[c for c in seg.columns if c.startswith(("spend_", "share_"))]]
    shown = seg.select(cols).head(len(data.groups))
    rest = seg.height - shown.height
    note = _p(f"{rest} smaller segments are in the JSON report.", "note") if rest > 0 else ""
    return _table(shown, percent=[c for c in cols if c.startswith("share_")]) + note


def _frontier_table(front: Any) -> str:
    table = front.table(8)
    return _table(table.select("budget", "equity", "equity_gain", "slope",
                               *[k for k in ("retention", "acquisition") if k in table.columns]))


def _frontier_text(front: Any) -> str:
    head = ("as the total budget varies with every other limit kept. The middle panel is the net "
            "equity one more unit of budget buys (the budget's shadow price); the optimal budget "
            "is where it falls to 0.")
    if front.method == "solves":
        return (f"Equity gain (the LP optimum at {front.n_breakpoints} budgets solved exactly, "
                f"each with its bound) {head} With limits on resources besides spend the "
                "frontier is traced by solves: between two solved budgets the exact frontier "
                "lies in the shaded band, at most "
                f"{html.escape(_money(front.max_gap))} above the line. {front.seconds:.2f} s.")
    return (f"Equity gain (the LP optimum, exact at every breakpoint) {head} Method: "
            f"{html.escape(front.method)}, {front.n_breakpoints:,} breakpoints, "
            f"{front.seconds:.2f} s.")


def _frontier_prices(front: Any) -> str:
    """With the solves method: every limit's shadow price at each solved budget."""
    if front.prices is None or front.prices.height == 0:
        return ""
    from engine.planning.report_data import limit_label

    wide = front.prices.with_columns(
        pl.col("limit").map_elements(limit_label, return_dtype=pl.String)
    ).pivot(on="limit", index="budget", values="shadow_price").sort("budget")
    return (_p("Shadow price of every limit at each solved budget (net equity per unit of "
               "the limit; a minimum: per unit less):") + _table(wide))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.6em}
h3{margin:.6em 0 .3em;font-size:1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}
th,td{border:1px solid #ddd;padding:.28em .6em;text-align:right}
th{background:#f4f6f8} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.decision{background:#fafcfa;border:1px solid #dde8dd;border-radius:8px;padding:.2em 1.2em 1em}
.decision h2{border:none;margin-top:.5em}
.recommendation{font-size:1.15em;font-weight:500}
.kpi{display:inline-block;background:#eef6ee;border-radius:6px;padding:.5em .9em;margin:.25em;
min-width:9em;vertical-align:top}
.kpi b{display:block;font-size:1.3em} .kpi small{display:block;color:#555;font-weight:normal}
.cols{display:flex;gap:2em;flex-wrap:wrap} .cols>div{flex:1 1 22em}
dl.assumptions{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:0;
font-size:.9em} dl.assumptions dt{color:#555}
ul.limits{margin:0;padding-left:1.2em}
.note{color:#666;font-size:.88em} .scroll{overflow-x:auto;max-width:100%}
@media print{
 @page{size:A4;margin:14mm}
 body{max-width:none;margin:0;padding:0;font-size:10pt;color:#000}
 .decision{border:none;background:none;padding:0;page-break-after:always}
 .kpi{background:none;border:1px solid #999}
 section,img,table,tr,.kpi{break-inside:avoid;page-break-inside:avoid}
 h2,h3{break-after:avoid;page-break-after:avoid}
 .scroll{overflow:visible}
 img{border:none;max-height:240mm}
 a{color:inherit;text-decoration:none}
}
"""


def render_html(data: ReportData, images: dict[str, bytes]) -> str:
    front, comp = data.frontier, data.comparison
    opt = comp.optimum.summary

    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(images[name]).decode("ascii")
        return f'<img id="chart-{name}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'

    parts = [
        "<header><h1>Customer equity plan</h1>"
        f"<p class='note'>{opt['customers']:,} customers, {opt['pools']} prospect pools. "
        "Amounts in currency units; equity is the discounted value of customers, net of the "
        "spend it implies.</p></header>",
        _decision(data),
        _limits(data),
        _assumptions(data),
        _section(
            "frontier", "Frontier and optimal budget",
            _p(_frontier_text(front)),
            img("frontier", "equity gain against the total budget"),
            _frontier_table(front),
            _frontier_prices(front),
            _p("Spend by segment and kind along the frontier, largest at the plan's budget "
               "first:"),
            _table(frontier_split(front))),
        _section(
            "response", "Response curves by segment",
            _p("For each segment, the most equity (before spend) its spend can buy, with the "
               "optimum's and the current plan's spend marked; a mark below its curve means the "
               "money inside the segment could do better. Where the curve flattens below the "
               "break-even line, the next unit returns less than it costs."),
            img("response", "response curves by segment")),
        _section(
            "shares", "Share of spend vs share of effect",
            _p("A segment taking a larger share of spend than of effect is where money works "
               "least; effect is equity added before spend."),
            img("shares", "share of spend against share of effect"), _segments(data)),
        _kinds(data),
        _section(
            "plans", "Plans compared",
            _p("<i>optimum_same_money</i> is the LP bound for each plan's own spend (its rows "
               "relaxed only where it breaks them): no plan can beat it, so "
               "<i>gain_available</i> is what re-allocating the same money would add."),
            _table(plans_table(comp), percent=("roc",)),
            "".join(_p(html.escape(n), "note") for n in comp.notes)),
    ]
    moved = moves_sorted(comp)
    spend_parts = [img("spend", "spend by segment and kind")]
    if moved is not None:
        spend_parts += [_p("Where the money moves (optimum minus current plan), largest move "
                           "first:"), _table(moved)]
    parts += [
        _section("spend", "Spend by segment and kind", *spend_parts),
        _section("equity", "Equity before and after by segment",
                 img("equity", "equity before and after by segment")),
        _section(
            "roc", "Return on Customer",
            _p("ROC = (cash flow of the period + change in customer equity) / equity at its "
               "start = ((1 + d)(E + S) - S - E0) / E0; doing nothing earns the discount rate d. "
               "Acquisition alone starts from no equity, so its ROC is undefined."),
            img("roc", "return on customer"),
            _table(roc_wide(comp), percent=("total", "retention", "acquisition"))),
    ]
    scen = scenarios_table(data.robustness)
    if scen is not None:
        parts.append(_section(
            "scenarios", "Scenarios: the same plans under changed assumptions",
            _p("Each plan kept as it is while an assumption changes, next to the plan "
               "re-optimized under that assumption. <i>below_optimum_bound</i>: how far each "
               "plan falls below the best its money could do under that assumption."),
            img("scenarios", "equity gain of each plan under each assumption"),
            _table(scen, percent=("roc",))))
    parts.append(_section(
        "uplift", "Where the gain comes from",
        img("uplift", "cumulative share of the gain by customer"),
        _p("The customers with the largest uplift:"), _table(data.top.head(10))))
    notes = front.notes + data.notes
    if notes:
        parts.append("<section id='notes'>" + "".join(_p(html.escape(n), "note") for n in notes)
                     + "</section>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>Customer equity plan</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
