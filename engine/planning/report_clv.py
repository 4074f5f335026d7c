"""The report's CLV section: is the purchase model that values the customers any good?

When the plan values customers from a transaction log (metric ``bgnbd`` with a
``calibration_end``) and the log runs past that date, the purchases after it are a holdout:
the report fits BG/NBD on the calibration period (as the metric does) and shows the
standard acceptance test (Fader, Hardie & Lee 2005; ``engine.clv.holdout``):

* ``clv_holdout``: repeat purchases per customer in the holdout by calibration frequency
  0, 1, ..., 7+, predicted against actual (FHL figure 4);
* ``clv_tracking``: cumulative repeat purchases of the calibration cohort, predicted against
  actual, through calibration and holdout (FHL figure 3), the calibration end marked;
* ``clv_calibration``: customers by repeat purchases in the calibration period, actual
  against the model's expectation (the period-transactions histogram).

The holdout runs to the log's last purchase date. ``clv_report`` returns ``None`` (no section)
without transactions, with another metric, without a calibration end or without purchases
after it. The JSON (``clv_json``) holds the same figures as ``equity clv --holdout-end
--diagnostics``; ``clv_html`` is the section of the page.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from engine.clv.holdout import holdout_check
from engine.clv.transactions import normalize_transactions, parse_calibration_end, rfm_statistics
from engine.plan import Plan
from engine.planning.report_data import ReportData
from engine.portfolio import Portfolio

CLV_CHARTS = ("clv_holdout", "clv_tracking", "clv_calibration")
PREDICTED, ACTUAL = "#1f77b4", "#d62728"


@dataclass(frozen=True)
class ClvReport:
    """The holdout check and calibration diagnostics of the plan's purchase model."""

    time_unit: str
    fit: dict[str, Any]  # BG/NBD on the calibration period (as `equity clv --json`)
    holdout: dict[str, Any]  # engine.clv.holdout.HoldoutCheck.as_dict()
    period_transactions: list[dict[str, Any]]


def clv_report(portfolio: Portfolio, plan: Plan) -> ClvReport | None:
    """The section's figures, or ``None`` when the plan has no holdout to check."""
    tx = portfolio.transactions
    params = plan.metric.params
    if tx is None or plan.metric.name != "bgnbd" or not params.get("calibration_end"):
        return None
    tx = normalize_transactions(tx)
    calibration_end = parse_calibration_end(str(params["calibration_end"]))
    last = tx["date"].max()
    if not isinstance(last, dt.date) or last <= calibration_end:
        return None
    time_unit = str(params.get("time_unit", "week"))  # the metric's defaults
    refunds = str(params.get("refunds", "drop"))
    rfm, _ = rfm_statistics(tx, calibration_end, time_unit, refunds)  # type: ignore[arg-type]
    # imported here: the fit brings scipy.optimize and the diagnostics scipy.stats, which a
    # report without a holdout never needs (every report imports this module)
    from engine.clv.bgnbd import fit_bgnbd_rfm
    from engine.clv.diagnostics import period_transactions

    fit = fit_bgnbd_rfm(rfm)

    check = holdout_check(fit, rfm, tx, calibration_end, last, time_unit,  # type: ignore[arg-type]
                          refunds)  # type: ignore[arg-type]
    histogram = period_transactions(
        fit.params, rfm["frequency"].to_numpy(), rfm["T"].cast(float).to_numpy())
    return ClvReport(time_unit, fit.as_dict(), check.as_dict(), histogram)


def clv_json(clv: ClvReport) -> dict[str, Any]:
    return {"model": "bgnbd", "time_unit": clv.time_unit, "fit": clv.fit,
            "holdout": clv.holdout, "period_transactions": clv.period_transactions}


# ------------------------------------------------------------------------------------ charts


def _plt() -> Any:
    """pyplot on the Agg backend, imported by the charts that draw (every report imports
    this module; matplotlib loads with the charts: ``engine.planning.report``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def _label(row: dict[str, Any], key: str) -> str:
    return f"{row[key]}+" if row.get("and_above") else str(row[key])


def _bars(labels: list[str], predicted: list[float], actual: list[float], title: str,
          xlabel: str, ylabel: str) -> bytes:
    fig, ax = _plt().subplots(figsize=(7.5, 3.8), layout="constrained")
    x = np.arange(len(labels))
    ax.bar(x - 0.2, actual, 0.4, label="actual", color=ACTUAL)
    ax.bar(x + 0.2, predicted, 0.4, label="BG/NBD", color=PREDICTED)
    ax.set_xticks(x, labels)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _png(fig)


def chart_holdout(clv: ClvReport) -> bytes:
    rows = clv.holdout["by_frequency"]
    return _bars([_label(r, "frequency") for r in rows],
                 [r["predicted_mean"] for r in rows], [r["actual_mean"] for r in rows],
                 f"Holdout to {clv.holdout['holdout_end']}: repeat purchases per customer",
                 "Repeat purchases in calibration", "Holdout repeat purchases per customer")


def chart_calibration(clv: ClvReport) -> bytes:
    rows = clv.period_transactions
    return _bars([_label(r, "frequency") for r in rows], [r["expected"] for r in rows],
                 [float(r["actual"]) for r in rows],
                 "Calibration: customers by repeat purchases", "Repeat purchases in calibration",
                 "Customers")


def chart_tracking(clv: ClvReport) -> bytes:
    import matplotlib.dates as mdates

    rows = clv.holdout["tracking"]
    days = mdates.date2num([dt.date.fromisoformat(r["period_end"]) for r in rows])
    fig, ax = _plt().subplots(figsize=(7.5, 3.8), layout="constrained")
    ax.plot(days, [r["actual"] for r in rows], color=ACTUAL, label="actual")
    ax.plot(days, [r["predicted"] for r in rows], color=PREDICTED, linestyle="--",
            label="BG/NBD")
    ax.axvline(float(mdates.date2num(dt.date.fromisoformat(clv.holdout["calibration_end"]))),
               color="#7f7f7f", linewidth=1, label="calibration end")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_title("Cumulative repeat purchases of the calibration cohort", fontsize=10)
    ax.set_ylabel("Repeat purchases")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _png(fig)


def clv_charts(clv: ClvReport) -> dict[str, Callable[[], tuple[str, str, tuple[Any, ...]]]]:
    """Chart name -> function of no argument returning its job: (module, function,
    arguments), drawn here or in the chart process (``engine.planning.report``)."""
    def job(function: str) -> Callable[[], tuple[str, str, tuple[Any, ...]]]:
        return lambda: (__name__, function, (clv,))

    return {"clv_holdout": job("chart_holdout"), "clv_tracking": job("chart_tracking"),
            "clv_calibration": job("chart_calibration")}


# -------------------------------------------------------------------------------------- page


def clv_html(clv: ClvReport, images: dict[str, bytes]) -> str:
    """The page's ``clv`` section."""
    h = clv.holdout

    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(images[name]).decode("ascii")
        return (f'<img id="chart-{name}" alt="{html.escape(alt)}" '
                f'src="data:image/png;base64,{b64}">')

    rows = "".join(
        f"<tr><td>{html.escape(_label(r, 'frequency'))}</td><td>{r['customers']:,}</td>"
        f"<td>{r['predicted_mean']:.3f}</td><td>{r['actual_mean']:.3f}</td></tr>"
        for r in h["by_frequency"])
    fit = clv.fit
    text = (
        f"BG/NBD fitted on purchases to {h['calibration_end']} (r {fit['r']:.3f}, alpha "
        f"{fit['alpha']:.3f}, a {fit['a']:.3f}, b {fit['b']:.3f}, on {fit['customers']:,} "
        f"customers) expects {h['predicted']:,.1f} repeat purchases from them in the "
        f"{h['length']:.1f} {clv.time_unit}s to {h['holdout_end']}; {h['actual']:,} happened "
        f"({100 * h['error']:+.1f}%). A model that misses here misvalues the customers the "
        "plan spends on.")
    return (
        "<section id='clv'><h2>Purchase model: calibration and holdout</h2>"
        f"<p>{html.escape(text)}</p>"
        + img("clv_holdout", "holdout repeat purchases per customer by calibration frequency")
        + "<table><thead><tr><th>frequency</th><th>customers</th><th>predicted_mean</th>"
        f"<th>actual_mean</th></tr></thead><tbody>{rows}</tbody></table>"
        + img("clv_tracking", "cumulative repeat purchases, predicted and actual")
        + img("clv_calibration", "customers by calibration repeat purchases")
        + "</section>"
    )


# ---------------------------------------------------------------------- the report's hooks


@dataclass
class ReportWithClv(ReportData):
    """The report's figures with the CLV section (``None``: no section)."""

    clv: ClvReport | None = None


def with_clv(data: ReportData, portfolio: Portfolio, plan: Plan) -> ReportData:
    """``data`` with the CLV section when the plan has a holdout to check."""
    clv = clv_report(portfolio, plan)
    if clv is None:
        return data
    return ReportWithClv(**{f.name: getattr(data, f.name) for f in fields(data)}, clv=clv)


def clv_of(data: ReportData) -> ClvReport | None:
    return data.clv if isinstance(data, ReportWithClv) else None


def splice(page: str, section: str) -> str:
    """The page with ``section`` after the last content section (before the notes)."""
    at = page.find("<section id='notes'>")
    if at < 0:
        at = page.rfind("</body>")
    return page[:at] + section + page[at:]
