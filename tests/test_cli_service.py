"""`equity demo` and `equity serve` (a real subprocess, stopped by a signal)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from engine.cli import main
from engine.cli.service import _free_port
from engine.service.client import Client
from engine.synthetic import example


def test_demo_prints_the_plan_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--size", "800"]) == 0
    out = capsys.readouterr().out
    assert "health SERVING" in out and "Allocate: 800 customers" in out
    assert "status           optimal" in out and "server stopped" in out
    assert main(["demo", "--size", "800", "--stream", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["customers"] == 800


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_logs_json_and_stops_on_signal(sig: signal.Signals) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--grace", "2"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_ready(timeout=20)
            customers = example(300)[0]
            assert client.score(customers).height == 300
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    score = next(r for r in lines if r.get("method") == "Score")
    assert score["status"] == "OK" and score["rows"] == 300 and score["request_bytes"] > 0
    assert {"duration_ms", "response_bytes", "peer", "request_id"} <= score.keys()
    messages = [r["message"] for r in lines]
    assert any(m.startswith("serving on 127.0.0.1") for m in messages)
    assert "shutting down" in messages and "stopped" in messages


def test_serve_rejects_a_config_without_spare_threads() -> None:
    with pytest.raises(SystemExit, match="workers"):
        main(["serve", "--workers", "3", "--max-concurrent-solves", "2"])
