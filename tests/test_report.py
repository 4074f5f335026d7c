"""The planning report and the planning CLI: files written, every chart in the page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.plan import Plan, SegmentLimit
from engine.planning.report import CHARTS, build_report, write_report
from engine.portfolio import Portfolio
from engine.synthetic import customers, example, prospects

PNG = b"\x89PNG\r\n\x1a\n"


def _current(cust: pl.DataFrame, pros: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.concat([
        pl.DataFrame({"customer_id": cust["customer_id"],
                      "spend": rng.choice([0.0, 2.0, 5.0], cust.height)}),
        pl.DataFrame({"customer_id": pros["segment"], "spend": pros["prospects"] * 1.0}),
    ])


def _check_report(paths: dict[str, Path]) -> str:
    page = paths["html"].read_text()
    for name in CHARTS:
        png = paths[name].read_bytes()
        assert png.startswith(PNG) and len(png) > 10_000, name
        tag = re.search(f'<img id="chart-{name}"[^>]*src="data:image/png;base64,([^"]+)"', page)
        assert tag is not None, name
        assert base64.b64decode(tag.group(1)) == png  # self-contained: the same image inline
    assert "<script" not in page and "http" not in page.split("<body>")[1]
    return page


def test_report_with_current_plan_and_scenarios(tmp_path: Path) -> None:
    cust, pros, plan = example(800)
    data = build_report(Portfolio(cust, pros), plan, _current(cust, pros), top=10,
                        discount_rates=[0.05], response_factors=[1.5])
    paths = write_report(data, tmp_path / "out")
    page = _check_report(paths)
    for text in ("Frontier and optimal budget", "Acquisition vs retention", "Return on Customer",
                 "optimum, same money", "Scenarios", "largest uplift"):
        assert text in page
    assert data.top.height == 10
    assert (data.top["uplift"].to_numpy()[:-1] >= data.top["uplift"].to_numpy()[1:]).all()


def test_report_with_twenty_segments(tmp_path: Path) -> None:
    segs = tuple(f"segment-{i:02d}" for i in range(20))
    cust, pros = customers(1500, segments=segs), prospects(segments=segs, scale=0.05)
    plan = Plan(total_budget=9_000.0, retention_levels=(0.0, 2.0, 5.0, 10.0, 20.0),
                segment_limits=(SegmentLimit("segment-03", cap=500.0),))
    paths = write_report(build_report(Portfolio(cust, pros), plan), tmp_path)
    page = _check_report(paths)
    assert all(s in page for s in segs)


def test_cli_frontier_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["frontier", "--example", "--example-size", "600", "--json", "--quiet",
                 "--rows", "5"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    s = out["frontier"]
    assert s["exact"] and s["min_budget"] <= s["chosen_budget"] <= s["optimal_budget"]
    assert len(out["table"]) >= 5 and {"budget", "equity", "slope"} <= set(out["table"][0])
    assert {r["kind"] for r in out["split"]} == {"retention", "acquisition"}


def test_cli_frontier_table_and_output(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "points.parquet"
    assert main(["frontier", "--example", "--example-size", "600", "--output", str(target),
                 "--budget", "2000"]) == 0
    captured = capsys.readouterr()
    assert "optimal budget" in captured.out and "plan budget" in captured.out
    assert "done" in captured.err  # progress goes to stderr
    points = pl.read_parquet(target)
    assert points.height > 100 and points["budget"].is_sorted()


def test_cli_report_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cust, pros, _ = example(600)
    current = tmp_path / "current.csv"
    _current(cust, pros).write_csv(current)
    assert main(["report", "--example", "--example-size", "600", "--out", str(tmp_path / "r"),
                 "--current-plan", str(current), "--no-scenarios", "--quiet"]) == 0
    _check_report({**{n: tmp_path / "r" / f"{n}.png" for n in CHARTS},
                   "html": tmp_path / "r" / "report.html"})
    capsys.readouterr()
    assert main(["compare", "--example", "--example-size", "600", "--current-plan",
                 str(current), "--json", "--quiet", "--scenario-response", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {p["plan"] for p in out["plans"]} >= {"optimum", "current", "optimum, same money"}
    assert out["acquisition_vs_retention"]["budgets"] == "separate"
    assert len(out["scenarios"]) == 2 * 3  # as planned + response x2; three plans each


def test_cli_bad_current_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"customer_id": ["nobody"], "spend": [1.0]}).write_csv(bad)
    assert main(["compare", "--example", "--example-size", "300", "--current-plan", str(bad),
                 "--no-scenarios", "--quiet"]) == 2
    assert "not in the portfolio" in capsys.readouterr().err
