"""The planning report: a page someone acts on, its charts, and the same figures as JSON.

``build_report`` computes everything (``engine.planning.report_data``); ``write_report``
writes ``report.html`` (self-contained: charts inline as PNG, no scripts, a print
stylesheet), each chart as ``<name>.png`` and ``report.json``; ``report_json`` is the JSON
document alone (``equity report --format json``). The page opens with the decision: the
recommendation in words, the headline figures, the binding limits with their shadow prices
and the assumptions; then the frontier, response curves per segment, share of spend against
share of effect, acquisition vs retention, the plans compared, spend, equity, Return on
Customer, scenarios and where the gain comes from.

Charts: ``engine.planning.report_charts``; the page: ``engine.planning.report_html``; the
purchase model's holdout check when customers are valued from a transaction log:
``engine.planning.report_clv``. Each chart is a job (``engine.planning.report_chart_data``)
drawn in this process, or in a chart process (``engine.planning.chart_process``: matplotlib
loads there, not here) given to ``write_report``: ``equity report`` starts one first thing,
sends it the charts as soon as their figures are known (``send_charts`` from
``build_report``'s ``figures_ready``) and solves the scenarios meanwhile. The PNGs are the same
wherever they are drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from engine.plan import Plan
from engine.planning import report_data
from engine.planning.chart_process import ChartProcess
from engine.planning.frontier import Frontier
from engine.planning.progress import Progress, no_progress
from engine.planning.report_chart_data import Job, chart_jobs, frontier_job, run_job
from engine.planning.report_clv import clv_charts, clv_html, clv_json, clv_of, splice, with_clv
from engine.planning.report_data import ReportData
from engine.planning.report_html import CHARTS, SECTIONS, render_html
from engine.portfolio import Portfolio

P = ParamSpec("P")


def _with_clv(
    build: Callable[Concatenate[Portfolio, Plan, P], ReportData],
) -> Callable[Concatenate[Portfolio, Plan, P], ReportData]:
    def built(portfolio: Portfolio, plan: Plan, *args: P.args, **kwargs: P.kwargs) -> ReportData:
        return with_clv(build(portfolio, plan, *args, **kwargs), portfolio, plan)

    built.__doc__ = build.__doc__
    return built


# the CLV section (engine.planning.report_clv) rides along when the plan has a holdout
build_report = _with_clv(report_data.build_report)


def report_json(data: ReportData) -> dict[str, Any]:
    doc = report_data.report_json(data)
    clv = clv_of(data)
    if clv is not None:
        doc["clv"] = json.loads(json.dumps(clv_json(clv)))
    return doc

__all__ = ["CHARTS", "SECTIONS", "ChartProcess", "ReportData", "build_report", "frontier_sender",
           "render_html", "report_json", "send_charts", "write_report"]


def _jobs(data: ReportData) -> dict[str, Callable[[], Job]]:
    """Every chart of the page, in its order: name -> function returning its job."""
    jobs = chart_jobs(data)
    clv = clv_of(data)
    if clv is not None:
        jobs |= clv_charts(clv)
    return jobs


def send_charts(charts: ChartProcess, data: ReportData) -> None:
    """Send ``charts`` every chart of ``data`` not sent yet (the scenarios' chart only once
    the scenarios are solved)."""
    sent = set(charts.submitted)
    for name, make in _jobs(data).items():
        if name not in sent:  # its input is computed in the thread that sends it
            charts.submit(name, make)


def frontier_sender(charts: ChartProcess) -> Callable[[Frontier, dict[str, float] | None], None]:
    """For ``build_report``'s ``frontier_ready``: the frontier's chart sent to ``charts`` as
    soon as the frontier is known, ahead of the other charts."""
    def send(front: Frontier, interval: dict[str, float] | None) -> None:
        charts.submit("frontier", lambda: frontier_job(front, interval))

    return send


def write_report(data: ReportData, out: Path, progress: Progress | None = None,
                 charts: ChartProcess | None = None) -> dict[str, Path]:
    """Render every chart to ``out/<name>.png`` (in ``charts`` when given, else here), the
    page to ``out/report.html`` and the figures to ``out/report.json``."""
    progress = progress or no_progress
    out.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(data)
    if charts is not None:
        send_charts(charts, data)
    # the JSON first: it is written while the chart process draws the last charts
    figures = json.dumps(report_json(data), indent=1, allow_nan=False)
    images: dict[str, bytes] = {}
    paths: dict[str, Path] = {}
    for i, (name, make) in enumerate(jobs.items()):
        progress(f"chart {name}", i / len(jobs))
        images[name] = charts.result(name) if charts is not None else run_job(make())
        paths[name] = out / f"{name}.png"
        paths[name].write_bytes(images[name])
    clv = clv_of(data)
    paths["html"] = out / "report.html"
    page = render_html(data, images)
    paths["html"].write_text(page if clv is None else splice(page, clv_html(clv, images)))
    paths["json"] = out / "report.json"
    paths["json"].write_text(figures)
    progress("report", 1.0)
    return paths
