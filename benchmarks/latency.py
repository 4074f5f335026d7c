"""Latency of small calls on an idle server: health checks and small Allocates, one after
another over one loopback connection to an ``equity serve`` process.

    .venv/bin/python benchmarks/latency.py --calls 300 --customers 100

    .venv/bin/python benchmarks/latency.py --solver --seeds 10 --calls 20

    git archive COMMIT | tar -x -C /some/dir   # an earlier engine, served side by side:
    .venv/bin/python benchmarks/latency.py --calls 200 --against /some/dir

``--solver``: no server; the direct path's solver (``engine.optimize.small.solve``) on
``--seeds`` example portfolios, side by side in one run: its branch and bound over the
core, the same without closing nodes at earlier nodes' prices (``PRICES = 0``), and HiGHS'
MIP on the same cores (``NODE_LIMIT = 0``); the median CPU time of the process (HiGHS'
MIP also runs threads) per portfolio, the HiGHS runs of one solve and the proven optima
(equal).

Reports p50 / p90 / p99 of each (after ``--warmup`` calls), and, for Allocate, how the
median splits into the engine's own time (``summary.seconds.total``, measured in the
server, with the median of each of its stages) and the rest (transport,
(de)serialisation, the service's checks). The target
(issue 16) is a 100-customer Allocate at p50 <= 5 ms; ``--json`` writes the figures.
``--against DIR`` serves another source tree of the engine beside this one and sends each
call to both in turn (same request, same load), figures for each.
"""

from __future__ import annotations

import argparse
import json
import os
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.servers import serve_tree  # noqa: E402


def _quantiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)}


def _solver(seeds: int, calls: int) -> dict[str, object]:
    """The direct path's search against itself without the earlier nodes' prices and
    against HiGHS' MIP on the same models (see the module), with the HiGHS runs of one
    solve."""
    import highspy

    from engine.limits import Limits
    from engine.optimize import small
    from engine.pipeline import build_model
    from engine.plugins import default_registry

    registry = default_registry()
    rows: list[dict[str, object]] = []
    limit, prices, make = small.NODE_LIMIT, small.PRICES, small._highs
    variants = (("search", limit, prices), ("search_unpriced", limit, 0),
                ("highs_mip", 0, prices))
    totals = {name: 0.0 for name, _, _ in variants}
    runs = [0]

    def counted(time_limit: float | None) -> highspy.Highs:
        h = make(time_limit)
        run = h.run

        def counted_run() -> highspy.HighsStatus:
            runs[0] += 1
            return run()

        h.run = counted_run  # type: ignore[method-assign]
        return h

    try:
        for seed in range(1, seeds + 1):
            customers, pools, plan = example(100, seed=seed)
            model = build_model(Portfolio(customers, pools), plan, registry, Limits())
            row: dict[str, object] = {"seed": seed}
            for name, nodes, keep in variants:
                small.NODE_LIMIT, small.PRICES = nodes, keep
                small._highs = counted
                runs[0] = 0
                found = small.solve(model.options, model.rows)
                row[f"{name}_highs_runs"] = runs[0]
                small._highs = make
                cpu = []
                for _ in range(calls):
                    started = time.process_time()
                    found = small.solve(model.options, model.rows)
                    cpu.append(time.process_time() - started)
                assert found is not None and found.status == "optimal"
                median_ms = float(np.median(cpu)) * 1000
                totals[name] += median_ms
                row[f"{name}_cpu_ms"] = round(median_ms, 2)
                row[f"{name}_value"] = float(found.equity(model.options).sum())
            rows.append(row)
    finally:
        small.NODE_LIMIT, small.PRICES, small._highs = limit, prices, make
    return {
        "seeds": rows,
        **{f"{name}_cpu_ms_total": round(total, 2) for name, total in totals.items()},
        "load_average": os.getloadavg(),
    }


def _figures(timings: dict[str, list[float]], engine: list[float],
             stages: dict[str, list[float]], method: str) -> dict[str, object]:
    return {
        "health_ms": _quantiles(timings["health"]),
        "allocate_ms": _quantiles(timings["allocate"]),
        "allocate_engine_ms_p50": round(float(np.median(engine)) * 1000, 3),
        # the engine's stages (validate, metric, options, allocate = the solver, report)
        "engine_stages_ms_p50": {stage: round(float(np.median(v)) * 1000, 3)
                                 for stage, v in stages.items()},
        "method": method,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--solver", action="store_true",
                        help="the direct path's solver in process, search vs HiGHS' MIP")
    parser.add_argument("--seeds", type=int, default=10, help="example portfolios (--solver)")
    parser.add_argument("--against", type=Path,
                        help="a source tree of the engine (e.g. `git archive COMMIT | tar -x "
                        "-C DIR`) served side by side: calls alternate between the servers")
    parser.add_argument("--against-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the other server (repeatable): "
                        "without --against, this tree served beside itself so")
    parser.add_argument("serve_flags", nargs="*", help="extra `equity serve` flags (after --)")
    args = parser.parse_args()
    if args.solver:
        solver = _solver(args.seeds, args.calls)
        print(json.dumps(solver, indent=2))
        if args.json:
            args.json.write_text(json.dumps(solver, indent=2) + "\n")
        return 0

    trees: dict[str, Path | None] = {"this": None}
    if args.against is not None or args.against_env:
        trees["against"] = None if args.against is None else args.against.resolve()
    against_env = dict(pair.split("=", 1) for pair in args.against_env)
    ports = {name: _free_port() for name in trees}
    servers = {name: serve_tree(ports[name], args.serve_flags, tree,
                                against_env if name == "against" else None)
               for name, tree in trees.items()}
    clients: dict[str, Client] = {}
    try:
        customers, pools, plan = example(args.customers, seed=1)
        check = health_pb2.HealthCheckRequest(service="")
        runs: dict[str, tuple[dict[str, list[float]], list[float], dict[str, list[float]]]] = {}
        for name in trees:
            clients[name] = Client(f"127.0.0.1:{ports[name]}", timeout=60)
            clients[name].wait_ready(30)
            runs[name] = ({"health": [], "allocate": []}, [], {})
        request: service_pb2.AllocateRequest = clients["this"].allocate_request(
            Portfolio(customers, pools), plan)
        method = ""
        for i in range(args.warmup + args.calls):
            for name, client in clients.items():  # the servers in turn, the same request
                health = health_pb2_grpc.HealthStub(client.channel)
                started = time.perf_counter()
                health.Check(check, timeout=10)
                middle = time.perf_counter()
                reply = client.stub.Allocate(request, timeout=60)
                ended = time.perf_counter()
                if i >= args.warmup:
                    timings, engine, stages = runs[name]
                    timings["health"].append(middle - started)
                    timings["allocate"].append(ended - middle)
                    engine.append(reply.summary.seconds["total"])
                    for stage, seconds in reply.summary.seconds.items():
                        stages.setdefault(stage, []).append(seconds)
                    method = method or reply.summary.method
        figures: dict[str, object] = {"customers": args.customers, "calls": args.calls}
        figures.update(_figures(*runs["this"], method))
        if "against" in trees:
            figures["against"] = _figures(*runs["against"], method)
            figures["against_env"] = against_env
        figures["load_average"] = os.getloadavg()
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.terminate()
            server.wait(30)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
