"""Latency of small calls on an idle server: health checks and small Allocates, one after
another over one loopback connection to an ``equity serve`` process.

    .venv/bin/python benchmarks/latency.py --calls 300 --customers 100

Reports p50 / p90 / p99 of each (after ``--warmup`` calls), and, for Allocate, how the
median splits into the engine's own time (``summary.seconds.total``, measured in the
server, with the median of each of its stages) and the rest (transport,
(de)serialisation, the service's checks). The target
(issue 16) is a 100-customer Allocate at p50 <= 5 ms; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.api.equity_engine.v1 import service_pb2
from engine.cli.service import _free_port
from engine.portfolio import Portfolio
from engine.service.client import Client
from engine.synthetic import example


def _quantiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("serve_flags", nargs="*", help="extra `equity serve` flags (after --)")
    args = parser.parse_args()

    port = _free_port()
    target = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--log-level",
         "WARNING", *args.serve_flags], env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        with Client(target, timeout=60) as client:
            client.wait_ready(30)
            customers, pools, plan = example(args.customers, seed=1)
            request: service_pb2.AllocateRequest = client.allocate_request(
                Portfolio(customers, pools), plan)
            health = health_pb2_grpc.HealthStub(client.channel)
            check = health_pb2.HealthCheckRequest(service="")
            timings: dict[str, list[float]] = {"health": [], "allocate": []}
            engine: list[float] = []
            stages: dict[str, list[float]] = {}
            for i in range(args.warmup + args.calls):
                started = time.perf_counter()
                health.Check(check, timeout=10)
                middle = time.perf_counter()
                reply = client.stub.Allocate(request, timeout=60)
                ended = time.perf_counter()
                if i >= args.warmup:
                    timings["health"].append(middle - started)
                    timings["allocate"].append(ended - middle)
                    engine.append(reply.summary.seconds["total"])
                    for stage, seconds in reply.summary.seconds.items():
                        stages.setdefault(stage, []).append(seconds)
        figures = {
            "customers": args.customers,
            "calls": args.calls,
            "health_ms": _quantiles(timings["health"]),
            "allocate_ms": _quantiles(timings["allocate"]),
            "allocate_engine_ms_p50": round(float(np.median(engine)) * 1000, 3),
            # the engine's stages (validate, metric, options, allocate = the solver, report)
            "engine_stages_ms_p50": {stage: round(float(np.median(v)) * 1000, 3)
                                     for stage, v in stages.items()},
            "method": reply.summary.method,
            "load_average": os.getloadavg(),
        }
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
