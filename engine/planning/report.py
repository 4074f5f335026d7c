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
``engine.planning.report_clv``. The charts' module (and matplotlib with it, ~0.4 s to
import) loads when the charts are drawn, or beforehand in a thread of its own
(``preload_charts``) while the figures are computed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from engine.plan import Plan
from engine.planning import report_data
from engine.planning.progress import Progress, no_progress
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

__all__ = ["CHARTS", "SECTIONS", "ReportData", "build_report", "preload_charts", "render_html",
           "report_json", "write_report"]

_CHARTS_MODULE = "engine.planning.report_charts"


def _import_charts() -> None:
    # an import error is raised where it counts: by write_report's own import
    with contextlib.suppress(Exception):
        importlib.import_module(_CHARTS_MODULE)


def preload_charts() -> threading.Thread:
    """Import the charts' module (matplotlib) in a thread while the caller computes the
    report's figures; ``write_report`` then finds it loaded (or waits for the import, under
    the import system's lock). Most of the figures' work runs in numpy, polars and HiGHS,
    which release the interpreter lock, so the two overlap."""
    thread = threading.Thread(target=_import_charts, name="report-charts-import", daemon=True)
    thread.start()
    return thread


def write_report(data: ReportData, out: Path, progress: Progress | None = None) -> dict[str, Path]:
    """Render every chart to ``out/<name>.png``, the page to ``out/report.html`` and the
    figures to ``out/report.json``."""
    from engine.planning.report_charts import render_charts

    progress = progress or no_progress
    out.mkdir(parents=True, exist_ok=True)
    makers = render_charts(data)
    clv = clv_of(data)
    if clv is not None:
        makers |= clv_charts(clv)
    images: dict[str, bytes] = {}
    paths: dict[str, Path] = {}
    for i, (name, make) in enumerate(makers.items()):
        progress(f"chart {name}", i / len(makers))
        images[name] = make()
        paths[name] = out / f"{name}.png"
        paths[name].write_bytes(images[name])
    paths["html"] = out / "report.html"
    page = render_html(data, images)
    paths["html"].write_text(page if clv is None else splice(page, clv_html(clv, images)))
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(report_json(data), indent=1, allow_nan=False))
    progress("report", 1.0)
    return paths
