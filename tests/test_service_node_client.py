"""The Node.js example (examples/node, @grpc/grpc-js) against a real server: health,
reflection v1, Allocate with packed columns and with Arrow, AllocateStream and a
BadRequest decoded from the trailer, using only the protos shipped in proto/.

Needs node and npm (its packages come from the npm registry with ``npm ci``, pinned by
examples/node/package-lock.json); skipped where node is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.service.server import EquityServer, ServerConfig

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are not installed")


def test_the_node_client_example_runs_against_a_real_server() -> None:
    if not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=EXAMPLE, check=True, timeout=300, capture_output=True)
    server = EquityServer(ServerConfig(port=0, workers=6, max_concurrent_solves=1,
                                       max_queued_solves=1, isolate_solves=False))
    server.start()
    try:
        done = subprocess.run(["node", "client.mjs", server.address], cwd=EXAMPLE,
                              capture_output=True, text=True, timeout=120)
    finally:
        server.stop(grace=0.5)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["health"] == "SERVING"
    assert "grpc.reflection.v1.ServerReflection" in lines["reflection"]
    assert lines["allocate-columns"].startswith("status=optimal")
    assert lines["allocate-arrow"] == "rows=6 customer_id=LargeUtf8"
    assert lines["stream"] == "rows=6 status=optimal"
    assert "reason=INVALID_INPUT" in lines["bad-request"]
    assert lines["bad-request"].endswith("fields=plan.budget.total,plan.discount_rate")
