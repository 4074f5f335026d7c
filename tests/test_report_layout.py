"""The report charts' fixed margins (set in inches from each chart's own labels, no layout
engine): every label, title and legend inside the figure, no legend over a plotting area and
no axis' labels over another plotting area, at 5, 20 and 200 segments, with a current plan,
scenarios and a band on the frontier."""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import BboxBase

from engine.plan import Plan, SegmentLimit
from engine.planning import report_charts
from engine.planning.report import CHARTS, build_report
from engine.portfolio import Portfolio
from engine.synthetic import customers, example, prospects
from tests.test_report import _current

TOL = 1.0  # pixels


def _inside(inner: BboxBase, outer: BboxBase) -> bool:
    return (inner.x0 >= outer.x0 - TOL and inner.y0 >= outer.y0 - TOL
            and inner.x1 <= outer.x1 + TOL and inner.y1 <= outer.y1 + TOL)


def _overlap(a: BboxBase, b: BboxBase) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > TOL) and (min(a.y1, b.y1) - max(a.y0, b.y0) > TOL)


def _problems(name: str, fig: Figure) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    page = fig.bbox
    shown: list[Axes] = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    out: list[str] = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        box = ax.get_tightbbox(renderer)
        if box is not None and not _inside(box, page):
            out.append(f"{name}: axes {i} ({ax.get_title()!r}) reaches past the figure: "
                       f"{box.bounds} not in {page.bounds}")
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    for legend in (lg for lg in legends if lg is not None):
        box = legend.get_window_extent(renderer)
        if not _inside(box, page):
            out.append(f"{name}: a legend reaches past the figure: {box.bounds}")
        for ax in shown:
            if _overlap(box, ax.get_window_extent(renderer)):
                out.append(f"{name}: a legend covers the plotting area of {ax.get_title()!r}")
    for a in shown:
        for b in shown:
            if a is b:
                continue
            for axis in (b.xaxis, b.yaxis):
                labels = axis.get_tightbbox(renderer)
                if labels is not None and _overlap(labels, a.get_window_extent(renderer)):
                    out.append(f"{name}: the labels of {b.get_title()!r} run into the "
                               f"plotting area of {a.get_title()!r}")
    for text in fig.texts:  # supxlabel, supylabel
        if text.get_visible() and text.get_text():
            box = text.get_window_extent(renderer)
            if not _inside(box, page):
                out.append(f"{name}: {text.get_text()!r} reaches past the figure")
    return out


def _check(data: Any, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    problems: list[str] = []
    drawn: set[str] = set()
    real = report_charts._png
    current = {"name": ""}

    def checked(fig: Figure) -> bytes:
        drawn.add(current["name"])
        problems.extend(_problems(current["name"], fig))
        return real(fig)

    monkeypatch.setattr(report_charts, "_png", checked)
    for name, make in report_charts.render_charts(data).items():
        current["name"] = name
        assert make().startswith(b"\x89PNG")
    assert not problems, "\n".join(problems)
    return drawn


def test_example_charts_keep_labels_and_legends_in_their_margins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cust, pros, plan = example(3000)
    data = build_report(Portfolio(cust, pros), plan, _current(cust, pros),
                        discount_rates=[0.05, 0.15], response_factors=[0.5, 1.5])
    assert _check(data, monkeypatch) == set(CHARTS)
    band = {"p5": 0.5 * data.frontier.optimal_equity, "p50": 0.0,
            "p95": data.frontier.optimal_equity}
    fig_check: list[str] = []
    real = report_charts._png

    def checked(fig: Figure) -> bytes:
        fig_check.extend(_problems("frontier with a band", fig))
        return real(fig)

    monkeypatch.setattr(report_charts, "_png", checked)
    report_charts.chart_frontier(data.frontier, band)
    assert not fig_check, "\n".join(fig_check)


@pytest.mark.parametrize("n_segments", [20, 200])
def test_segment_charts_keep_labels_and_legends_in_their_margins(
        n_segments: int, monkeypatch: pytest.MonkeyPatch) -> None:
    segs = tuple(f"segment-{i:03d}" for i in range(n_segments))
    cust, pros = customers(3000, segments=segs), prospects(segments=segs, scale=0.05)
    plan = Plan(total_budget=18_000.0, retention_levels=(0.0, 2.0, 5.0, 10.0, 20.0),
                segment_limits=(SegmentLimit(segs[3], cap=500.0),))
    data = build_report(Portfolio(cust, pros), plan, _current(cust, pros),
                        response_factors=[1.5], discount_rates=[0.05])
    assert _check(data, monkeypatch) == set(CHARTS)


def test_the_check_sees_a_legend_over_the_data() -> None:
    """The check itself: a legend inside the axes and a label past the edge are found."""
    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a line with a long legend entry")
    ax.legend(loc="center")
    ax.set_ylabel("a label")
    fig.subplots_adjust(left=0.0)
    found = _problems("probe", fig)
    assert any("covers the plotting area" in p for p in found)
    assert any("reaches past the figure" in p for p in found)
