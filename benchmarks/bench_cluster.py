"""The allocation on a LocalCluster of worker processes against one machine, side by side.

    .venv/bin/python benchmarks/bench_cluster.py --sizes 1M,10M --workers 2 --partitions 8 \
        --json benchmarks/results/distributed.json

Per size: the README's example portfolio (``engine.synthetic.example``: customers with the
``clv`` metric and ``exponential-response`` cost, 5 prospect pools, a total and an
acquisition budget, a cap, a per-kind cap and a minimum) is written untimed as a partitioned
Parquet dataset (``--partitions`` files) plus the pools. Then, in fresh subprocesses:

* one machine: read the dataset, ``engine.pipeline.allocate``, write the plan (one Parquet
  file); wall time and peak RSS (``VmHWM``: see ``peak_rss``), and per step (read, model,
  allocate and report, write: ``steps``) its wall and CPU seconds and its own peak RSS;
* the cluster: start ``local:W`` (timed apart), ``engine.optimize.distributed.allocate``
  (the workers read the dataset and write the plan), then the cluster's shutdown; wall time,
  the driver's peak RSS, each worker's peak RSS, rounds, and the bytes sent to and gathered
  from the workers per call (pickled arguments and results).

Each leg also reports its processes' CPU seconds (user, system): on a shared machine the
wall times move with the load (``load_before``/``load_after``), the CPU seconds much less.

``--memory-defaults`` runs both legs (and the workers) with ``EQUITY_MEMORY_DEFAULTS=1``:
numpy's huge-page advice and glibc's malloc thresholds as they come, not as
``engine.memory.configure`` sets them; run it beside the default to compare the two.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = {"k": 1_000, "M": 1_000_000}


def parse_size(text: str) -> int:
    return int(float(text[:-1]) * SIZES[text[-1]]) if text[-1] in SIZES else int(text)


def prepare(n: int, partitions: int, workdir: Path) -> Path:
    import polars as pl

    from engine.synthetic import example

    root = workdir / f"portfolio_{n}_{partitions}"
    if (root / "done").exists():
        return root
    customers, prospects, plan = example(n)
    (root / "customers").mkdir(parents=True, exist_ok=True)
    step = -(-n // partitions)
    for i in range(partitions):
        customers.slice(i * step, step).write_parquet(root / "customers" / f"part-{i:04d}.parquet")
    prospects.write_parquet(root / "prospects.parquet")
    (root / "plan.json").write_text(plan.to_json())
    del customers
    pl.DataFrame({"n": [n]}).write_parquet(root / "done")
    return root


def peak_rss() -> int:
    """This process's peak resident set, bytes: ``VmHWM`` (Linux), which starts afresh at
    exec. Not ``ru_maxrss``: that survives fork and exec, so a process started by a larger
    one (the benchmark's parent after writing a 10M portfolio, the driver for its workers)
    would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> list[float]:
    """This process's CPU time so far, [user, system] seconds: on a shared machine the wall
    time depends on what else runs, the CPU time much less."""
    t = os.times()
    return [t.user, t.system]


class Steps:
    """Per step of a leg: wall seconds, CPU seconds [user, system] and the step's own peak
    RSS (``VmHWM`` reset at each step's start through ``/proc/self/clear_refs``; without
    it, the peak so far)."""

    def __init__(self) -> None:
        self.found: dict[str, dict[str, Any]] = {}
        self._reset()

    def _reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()

    def mark(self, name: str) -> None:
        self.found[name] = {
            "seconds": time.perf_counter() - self._wall,
            "cpu_seconds": [a - b for a, b in zip(cpu_seconds(), self._cpu, strict=True)],
            "peak_rss_bytes": peak_rss(),
        }
        self._reset()


def single(root: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    from engine.pipeline import allocate, build_model
    from engine.plan import Plan
    from engine.portfolio import Portfolio

    cpu_before = cpu_seconds()
    started = time.perf_counter()
    steps = Steps()
    plan = Plan.from_file(root / "plan.json")
    customers = pl.read_parquet(root / "customers")
    prospects = pl.read_parquet(root / "prospects.parquet")
    steps.mark("read")
    # allocate() builds the model itself when not given one: the same work, split in two
    model = build_model(Portfolio(customers, prospects), plan)
    steps.mark("model (validate, metric, options, hull)")
    result = allocate(Portfolio(customers, prospects), plan, model=model)
    steps.mark("allocate and report")
    result.units.write_parquet(out / "single.parquet")
    steps.mark("write")
    s = result.summary
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": max(v["peak_rss_bytes"] for v in steps.found.values()),
        "cpu_seconds": [a - b for a, b in zip(cpu_seconds(), cpu_before, strict=True)],
        "bound": s["bound"], "equity_after": s["equity_after"], "status": s["status"],
        "notes": list(s["notes"]), "stages": dict(s["seconds"]), "steps": steps.found,
    }


def cluster(root: Path, out: Path, workers: int, memory: str | None) -> dict[str, Any]:
    from engine.optimize import distributed
    from engine.optimize.cluster import Workers, connect
    from engine.plan import Plan

    traffic: list[dict[str, Any]] = []

    class Counted(Workers):
        def map(self, fn: Any, *args: Any, each: Any = None) -> list[Any]:
            results = super().map(fn, *args, each=each)
            traffic.append({"call": fn.__name__,
                            "sent": len(pickle.dumps((args, each))) * (1 if each else self.n),
                            "gathered": sum(len(pickle.dumps(r)) for r in results)})
            return results

        def exchange(self, split: Any, n: int, reduce: Any, *args: Any) -> list[Any]:
            results = super().exchange(split, n, reduce, *args)
            traffic.append({"call": f"exchange {split.__name__}/{reduce.__name__}",
                            "sent": len(pickle.dumps(args)) * self.n,
                            "gathered": sum(len(pickle.dumps(r)) for r in results)})
            return results

    started = time.perf_counter()
    with connect(f"local:{workers}", memory_limit=memory) as client:
        up = time.perf_counter() - started
        mark = time.perf_counter()
        w = Counted(client)
        plan = Plan.from_file(root / "plan.json")
        result = distributed.allocate(
            distributed.sources(root / "customers", root / "prospects.parquet"), plan, w,
            output=out / "plan")
        seconds = time.perf_counter() - mark
        worker_rss = list(client.run(peak_rss).values())
        worker_cpu = list(client.run(cpu_seconds).values())
        w.close()
    s = result.summary
    return {
        "startup_seconds": up,
        "seconds": seconds,
        "with_startup_and_shutdown": time.perf_counter() - started,
        "driver_peak_rss_bytes": peak_rss(),
        "worker_peak_rss_bytes": worker_rss,
        "driver_cpu_seconds": cpu_seconds(),
        "worker_cpu_seconds": worker_cpu,
        "bound": s["bound"], "equity_after": s["equity_after"], "status": s["status"],
        "integer_bound": s["integer_bound"], "rounds": s["iterations"],
        "lp_columns": s.get("lp_columns"),
        "partitions": s["partitions"], "notes": s["notes"], "stages": s["seconds"],
        "traffic": traffic,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k,1M")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--memory-limit", default=None, help="per worker, e.g. 4GiB")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "equity-bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory-defaults", action="store_true",
                    help="EQUITY_MEMORY_DEFAULTS=1 in both legs (see engine.memory)")
    ap.add_argument("--only", choices=("single", "cluster"), help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # one measurement, in a fresh process
        out = Path(tempfile.mkdtemp(dir=args.workdir))
        found = (single(args.root, out) if args.only == "single"
                 else cluster(args.root, out, args.workers, args.memory_limit))
        print(json.dumps(found))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"load_before": os.getloadavg(), "runs": [],
                              "memory_defaults": args.memory_defaults}
    env = dict(os.environ)
    env.pop("EQUITY_MEMORY_DEFAULTS", None)
    if args.memory_defaults:
        env["EQUITY_MEMORY_DEFAULTS"] = "1"
    for text in args.sizes.split(","):
        n = parse_size(text)
        root = prepare(n, args.partitions, args.workdir)
        row: dict[str, Any] = {"customers": n, "partitions": args.partitions,
                               "workers": args.workers}
        for what in ("single", "cluster"):
            cmd = [sys.executable, __file__, "--only", what, "--root", str(root),
                   "--workdir", str(args.workdir), "--workers", str(args.workers)]
            if args.memory_limit:
                cmd += ["--memory-limit", args.memory_limit]
            run = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            row[what] = (json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0
                         else {"error": run.stderr[-2000:]})
        if "seconds" in row["single"] and "seconds" in row["cluster"]:
            row["ratio"] = row["cluster"]["seconds"] / row["single"]["seconds"]
            row["bound_rel_diff"] = abs(row["cluster"]["bound"] - row["single"]["bound"]) / abs(
                row["single"]["bound"])
        report["runs"].append(row)
        print(json.dumps(row, indent=1, default=str)[:3000], flush=True)
    report["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
