"""The report's charts drawn in a process of their own (``engine.planning.chart_process``):
the same files byte for byte as drawn in process, and every failure of the child a
``ChartError`` naming the chart, never a wait without end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.planning.chart_process import ChartError, ChartProcess
from engine.planning.report import (
    CHARTS,
    build_report,
    frontier_sender,
    send_charts,
    write_report,
)
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.test_report import _check_report, _current

JOBS = "tests.chart_jobs"


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_the_page_and_charts_drawn_in_the_chart_process_are_those_drawn_in_process(
        tmp_path: Path) -> None:
    cust, pros, plan = example(1500)
    with ChartProcess() as charts:
        # as the command does it: the frontier's chart as soon as the frontier is known, every
        # other chart but the scenarios' before the acquisition-vs-retention split and the
        # scenarios are solved
        sent: list[list[str]] = []

        def ready(data: object) -> None:
            sent.append(charts.submitted)
            send_charts(charts, data)  # type: ignore[arg-type]
            sent.append(charts.submitted)

        data = build_report(Portfolio(cust, pros), plan, _current(cust, pros),
                            discount_rates=[0.05, 0.15], response_factors=[0.5, 1.5],
                            frontier_ready=frontier_sender(charts), figures_ready=ready)
        assert sent == [["frontier"], [n for n in CHARTS if n != "scenarios"]]
        assert data.robustness is not None
        parallel = write_report(data, tmp_path / "parallel", charts=charts)
        assert charts.submitted[-1] == "scenarios"
    write_report(data, tmp_path / "serial")
    _check_report(parallel, scenarios=True)
    a, b = _files(tmp_path / "parallel"), _files(tmp_path / "serial")
    assert set(a) == {f"{n}.png" for n in CHARTS} | {"report.html", "report.json"}
    json_a, json_b = json.loads(a.pop("report.json")), json.loads(b.pop("report.json"))
    assert a == b  # every PNG and the page, byte for byte
    # The JSON is computed from the same data in both, but in the parallel run while the
    # send thread computes the charts' inputs. Once in a full run the two JSON files
    # differed (the PNGs and the page did not); the likely cause is polars' threaded float
    # sums splitting their work differently beside another thread, a last-bit difference.
    assert _close(json_a, json_b)


def _close(a: object, b: object) -> bool:
    """Equal, floats to 1e-12 relative."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_a_chart_that_raises_names_the_chart_and_the_process_goes_on() -> None:
    with ChartProcess() as charts:
        charts.submit("frontier", ("engine.planning.report_charts", "draw_frontier", ({},)))
        charts.submit("missing", ("engine.no_such_module", "draw", ()))
        charts.submit("fine", (JOBS, "sleep_and_draw", (0.0,)))
        with pytest.raises(ChartError, match=r"chart 'frontier' failed in the chart process"
                                             r"(.|\n)*KeyError: 'budget'"):
            charts.result("frontier")
        with pytest.raises(ChartError, match=r"chart 'missing'(.|\n)*No module named "
                                             r"'engine.no_such_module'"):
            charts.result("missing")
        assert charts.result("fine") == b"drawn"


def test_a_job_whose_input_fails_names_the_chart() -> None:
    def broken() -> tuple[str, str, tuple[object, ...]]:
        raise ZeroDivisionError("no segments")

    with ChartProcess() as charts:
        charts.submit("made", broken)  # computed in the sending thread
        charts.submit("unpicklable", (JOBS, "sleep_and_draw", (lambda: 0.0,)))
        charts.submit("fine", lambda: (JOBS, "sleep_and_draw", (0.0,)))
        with pytest.raises(ChartError, match=r"chart 'made' failed(.|\n)*its input could not "
                                             r"be made or sent(.|\n)*ZeroDivisionError"):
            charts.result("made")
        with pytest.raises(ChartError, match=r"chart 'unpicklable' failed(.|\n)*pickle"):
            charts.result("unpicklable")
        assert charts.result("fine") == b"drawn"


def test_a_reply_that_is_no_image_is_an_error() -> None:
    with ChartProcess() as charts:
        charts.submit("none", (JOBS, "not_a_png", ()))
        with pytest.raises(ChartError, match=r"chart 'none'.*NoneType"):
            charts.result("none")


def test_a_child_that_dies_is_an_error_not_a_wait() -> None:
    charts = ChartProcess()
    try:
        charts.submit("slow", (JOBS, "sleep_and_draw", (60.0,)))
        time.sleep(0.5)
        os.kill(charts.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(ChartError, match=r"chart 'slow': the chart process \(pid \d+\) "
                                             r"ended before drawing it \(exit code -9\)"):
            charts.result("slow")
        assert time.monotonic() - started < 10
        charts.submit("after", (JOBS, "sleep_and_draw", (0.0,)))  # a broken pipe: no raise
        with pytest.raises(ChartError, match="chart 'after': the chart process"):
            charts.result("after")
    finally:
        charts.close()


def test_a_child_that_cannot_start_says_why() -> None:
    with ChartProcess(preload="engine.no_such_charts") as charts:
        charts.submit("frontier", (JOBS, "sleep_and_draw", (0.0,)))
        with pytest.raises(ChartError, match=r"ended before drawing it \(exit code 1\)"
                                             r"(.|\n)*No module named 'engine.no_such_charts'"):
            charts.result("frontier", timeout=60)


def test_a_hung_chart_times_out_when_asked() -> None:
    with ChartProcess() as charts:
        charts.submit("slow", (JOBS, "sleep_and_draw", (30.0,)))
        with pytest.raises(ChartError, match=r"chart 'slow': no reply .* within 0.5 s"):
            charts.result("slow", timeout=0.5)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # closing ends (kills) it


def test_warnings_come_back_and_prints_stay_out_of_the_replies() -> None:
    with ChartProcess() as charts:
        charts.submit("talk", (JOBS, "talk_and_draw", ()))
        charts.submit("warn", (JOBS, "warn_and_draw", ("mind the axes",)))
        assert charts.result("talk") == b"drawn"
        with pytest.warns(UserWarning, match="mind the axes") as caught:
            assert charts.result("warn") == b"drawn"
        assert len([w for w in caught if "mind the axes" in str(w.message)]) == 1
    with pytest.raises(ValueError, match="not sent"):
        charts.result("never")


def test_the_report_command_draws_no_chart_in_its_own_process(tmp_path: Path) -> None:
    # matplotlib loads in the chart process only; the command's own process never imports it
    out = tmp_path / "r"
    code = ("import contextlib, io, sys\nfrom engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['report', '--example', '--example-size', '400', '--quiet', "
            f"'--out', {str(out)!r}]) == 0\n"
            "print('matplotlib' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300)
    assert proc.stdout.split() == ["False"]
    assert proc.stderr == ""
    _check_report({**{n: out / f"{n}.png" for n in CHARTS}, "html": out / "report.html",
                   "json": out / "report.json"}, scenarios=True)


def test_without_a_second_process_the_command_draws_the_charts_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from engine.cli import main
    from engine.planning import chart_process

    def cannot_start(*args: object, **kwargs: object) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(chart_process.ChartProcess, "__init__", cannot_start)
    out = tmp_path / "r"
    assert main(["report", "--example", "--example-size", "400", "--quiet", "--out",
                 str(out)]) == 0
    assert "charts drawn in process: no more processes" in caplog.text
    _check_report({**{n: out / f"{n}.png" for n in CHARTS}, "html": out / "report.html",
                   "json": out / "report.json"}, scenarios=True)
