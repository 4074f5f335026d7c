"""The report page in a real headless browser (Chromium, driven over the DevTools protocol).

The page is loaded from disk as a user would open it; the test asserts no console error or
exception, every image decoded (non-zero natural size), every section present, the decision
summary first, and that the page prints to PDF. ``.ci/run`` installs Debian's chromium when it
is missing; elsewhere the test is skipped when no Chromium is found.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from engine.planning.report import CHARTS, SECTIONS, build_report, write_report
from engine.portfolio import Portfolio
from engine.synthetic import example

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
         "--remote-debugging-pipe")


def _browser() -> str | None:
    return next((p for p in (shutil.which(b) for b in BROWSERS) if p), None)


class DevTools:
    """The DevTools protocol over ``--remote-debugging-pipe``: JSON messages separated by NUL,
    commands on the browser's descriptor 3, replies and events on its descriptor 4."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def wire() -> None:  # runs in the child: the two pipe ends become 3 and 4
            import fcntl

            high_in = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4),
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no reply from the browser")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ConnectionError("the browser closed its pipe")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(head))

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, ConnectionError):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium found (.ci/run installs Debian's chromium)")
    tools = DevTools(binary, tmp_path_factory.mktemp("profile"))
    try:
        yield tools
    finally:
        tools.close()


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cust, pros, plan = example(1000)
    rng = np.random.default_rng(3)
    current = pl.concat([
        pl.DataFrame({"customer_id": cust["customer_id"].cast(pl.String),
                      "spend": rng.choice([0.0, 2.0, 5.0], cust.height)}),
        pl.DataFrame({"customer_id": pros["segment"], "spend": pros["prospects"] * 1.0}),
    ])
    data = build_report(Portfolio(cust, pros), plan, current, discount_rates=[0.05],
                        response_factors=[1.5])
    return write_report(data, tmp_path_factory.mktemp("report"))["html"]


PROBE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({id: i.id, complete: i.complete,
                                                  width: i.naturalWidth, height: i.naturalHeight,
                                                  shown: i.getBoundingClientRect().width,
                                                  section: (i.closest('section') || {}).id})),
  pageWidth: document.documentElement.scrollWidth,
  sections: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
  first: document.querySelector('section').id,
  decisionTop: document.getElementById('decision').getBoundingClientRect().top,
  recommendation: document.querySelector('.recommendation').textContent,
  scripts: document.scripts.length
})"""


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(json.dumps(params.get("args", []))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(params["entry"].get("text", ""))
    return found


def _load(browser: DevTools, page: Path) -> tuple[str, str, dict[str, Any]]:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                 session=session)
    browser.events.clear()
    browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired")
    probe = browser.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                         session=session)
    return target, session, json.loads(probe["result"]["value"])


def test_the_probe_sees_a_broken_image_and_a_console_error(browser: DevTools,
                                                           tmp_path: Path) -> None:
    """The checks below can fail: a page with a broken image and a console error."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><section id='decision'>"
                   "<p class='recommendation'>x</p></section>"
                   "<img id='chart-x' src='data:image/png;base64,AAAA'>"
                   "<script>console.error('boom')</script></body></html>")
    target, _, page = _load(browser, bad)
    assert any("boom" in e for e in _errors(browser.events))
    assert [{k: i[k] for k in ("id", "complete", "width", "height")} for i in page["images"]] \
        == [{"id": "chart-x", "complete": True, "width": 0, "height": 0}]
    browser.send("Target.closeTarget", {"targetId": target})


def test_report_loads_in_chromium_without_errors(browser: DevTools, report_page: Path) -> None:
    target, session, page = _load(browser, report_page)

    assert _errors(browser.events) == []
    assert page["scripts"] == 0
    images = {i["id"]: i for i in page["images"]}
    assert set(images) == {f"chart-{n}" for n in CHARTS}
    for name, image in images.items():
        assert image["complete"] and image["width"] > 200 and image["height"] > 100, name
        # drawn at three quarters of its size or more: the axis labels stay legible
        assert image["shown"] >= 0.75 * image["width"], name
    assert images["chart-scenarios"]["section"] == "scenarios"  # the chart, not only a table
    assert page["pageWidth"] <= 1280  # nothing wider than the window
    assert set(SECTIONS) <= set(page["sections"])
    assert page["first"] == "decision" and page["decisionTop"] < 200  # on the first screen
    assert page["recommendation"].startswith("Spend ")

    pdf = browser.send("Page.printToPDF", {"printBackground": False}, session=session,
                       timeout=120)
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF")
    assert len(data) > 50_000  # the charts are in it
    browser.send("Target.closeTarget", {"targetId": target})


def test_clv_section_loads_in_chromium(browser: DevTools,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Customers valued from the CDNOW log with a holdout: the purchase model's section."""
    from engine.clv.transactions import read_transactions
    from engine.plan import Plan, StrategyChoice

    tx = read_transactions(Path(__file__).parent / "data" / "CDNOW_sample.txt")
    plan = Plan(total_budget=2000.0,
                metric=StrategyChoice("bgnbd", {"calibration_end": "1997-09-30"}))
    page_path = write_report(build_report(Portfolio(transactions=tx), plan),
                             tmp_path_factory.mktemp("clv-report"))["html"]
    target, _, page = _load(browser, page_path)
    assert _errors(browser.events) == []
    images = {i["id"]: i for i in page["images"]}
    for name in ("clv_holdout", "clv_tracking", "clv_calibration"):
        image = images[f"chart-{name}"]
        assert image["section"] == "clv"
        assert image["complete"] and image["width"] > 200 and image["height"] > 100, name
        assert image["shown"] >= 0.75 * image["width"], name
    assert page["pageWidth"] <= 1280
    assert set(SECTIONS) | {"clv"} <= set(page["sections"])
    assert page["first"] == "decision"
    browser.send("Target.closeTarget", {"targetId": target})
