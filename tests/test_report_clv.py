"""The report's CLV section: customers valued from the CDNOW log with purchases after the
calibration end carry the published calibration/holdout check (Fader, Hardie & Lee 2005)
into report.json, the page and its charts; without a holdout there is no section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from engine.plan import Plan, StrategyChoice
from engine.planning.report import build_report, report_json, write_report
from engine.portfolio import Portfolio

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
PNG = b"\x89PNG\r\n\x1a\n"


def _plan(calibration_end: str, metric: str = "bgnbd") -> Plan:
    params = {"calibration_end": calibration_end} if calibration_end else {}
    return Plan(total_budget=2000.0, metric=StrategyChoice(metric, params))


def test_report_json_carries_the_published_holdout_check(cdnow: pl.DataFrame) -> None:
    doc = report_json(build_report(Portfolio(transactions=cdnow), _plan("1997-09-30")))
    clv = doc["clv"]
    assert clv["model"] == "bgnbd" and clv["time_unit"] == "week"
    assert (round(clv["fit"]["r"], 3), round(clv["fit"]["alpha"], 3)) == (0.243, 4.414)
    h = clv["holdout"]
    assert (h["calibration_end"], h["holdout_end"]) == ("1997-09-30", "1998-06-30")
    assert round(h["predicted"], 1) == 1653.4 and h["actual"] == 1882
    assert [round(r["predicted_mean"], 3) for r in h["by_frequency"]] == [
        0.225, 0.523, 1.044, 1.520, 2.164, 2.654, 3.504, 6.157]
    assert [round(r["actual_mean"], 3) for r in h["by_frequency"]] == [
        0.237, 0.697, 1.393, 1.560, 2.532, 2.947, 3.862, 6.359]
    tracking = h["tracking"]
    assert tracking[-1]["period_end"] == "1998-06-30"
    assert tracking[-1]["actual"] > tracking[0]["actual"]
    assert [r["actual"] for r in clv["period_transactions"]] == [
        1411, 439, 214, 100, 62, 38, 29, 64]
    json.dumps(doc, allow_nan=False)  # the document stays strict JSON


@pytest.mark.parametrize(("calibration_end", "metric"), [
    ("1998-06-30", "bgnbd"),  # the log ends there: nothing to hold out
    ("", "bgnbd"),  # values as of the log's end
])
def test_no_section_without_a_holdout(cdnow: pl.DataFrame, calibration_end: str,
                                      metric: str) -> None:
    doc = report_json(build_report(Portfolio(transactions=cdnow), _plan(calibration_end, metric)))
    assert "clv" not in doc


def test_page_and_charts_carry_the_section(cdnow: pl.DataFrame, tmp_path: Path) -> None:
    data = build_report(Portfolio(transactions=cdnow), _plan("1997-09-30"))
    paths = write_report(data, tmp_path)
    for name in ("clv_holdout", "clv_tracking", "clv_calibration"):
        assert paths[name].read_bytes().startswith(PNG), name
    page = paths["html"].read_text()
    section = page[page.index("<section id='clv'>"):]
    section = section[:section.index("</section>")]
    assert re.findall(r'id="chart-(clv_\w+)"', section) == [
        "clv_holdout", "clv_tracking", "clv_calibration"]
    assert "1,653.4 repeat purchases" in section and "1,882 happened" in section
    assert page.index("<section id='clv'>") > page.index("id='uplift'")  # after the plan
    assert json.loads(paths["json"].read_text())["clv"]["holdout"]["actual"] == 1882
