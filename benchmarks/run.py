"""Allocation at scale: the engine against independent solves, stage by stage, size by size.

    .venv/bin/python benchmarks/run.py --sizes 10k,100k,1M --json out.json
    .venv/bin/python benchmarks/run.py --sizes 10k,100k,1M,10M --highs-max 1M --pulp-max 100k

For each size a seeded portfolio (benchmarks/generate.py: lognormal margins, beta retention,
20 segments, 12% S-shaped responses, 5 spend levels, a total budget and 20 segment caps) is
written to Parquet, then each measurement runs in a fresh subprocess, so that peak memory
(``ru_maxrss``, the resident high-water mark: numpy's buffers included, which tracemalloc
misses) belongs to that measurement alone:

- ``engine``: end to end, Parquet in -> metric (clv) -> options (spend-table) -> allocation
  (exact LP) -> Parquet out, with the time of every stage and the certificate;
- ``highs``: the full per-customer LP (one column per customer-level, one row per customer
  plus the coupling rows) built from numpy arrays and solved by highspy directly (IPM,
  presolve off, crossover on), for sizes up to ``--highs-max``;
- ``pulp``: the same LP written the usual way in PuLP (an LpVariable per customer-level,
  lpSum of products) and solved by HiGHS through PuLP, for sizes up to ``--pulp-max``;
- ``grpc`` (optional, ``--grpc``): the same portfolio streamed through ``AllocateStream`` to
  an ``equity serve`` process on loopback and the plan streamed back.

The table goes to the terminal, everything to ``--json``. The machine is shared: the load
average before and after each measurement is recorded next to its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


# --- measurements, each run in its own process ---------------------------------------------


def task_generate(n: int, seed: int, folder: Path, route: str) -> dict[str, Any]:
    from dataclasses import replace

    from benchmarks import generate
    from engine.plan import StrategyChoice

    spec = generate.Spec(n, seed=seed)
    t0 = time.perf_counter()
    if route == "table":
        customers, options, plan = generate.portfolio(spec)
    else:  # the engine builds the options from the customers' response curves
        customers, options = generate.customers(spec), None
        plan = replace(generate.plan(spec), cost=StrategyChoice("exponential-response"))
    t1 = time.perf_counter()
    customers.write_parquet(folder / "customers.parquet")
    if options is not None:
        options.write_parquet(folder / "options.parquet")
    (folder / "plan.json").write_text(plan.to_json())
    t2 = time.perf_counter()
    return {
        "generate_seconds": t1 - t0,
        "write_seconds": t2 - t1,
        "option_rows": options.height if options is not None else n * len(spec.levels),
        "s_shaped": int(customers["s_shaped"].sum()),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def task_engine(folder: Path) -> dict[str, Any]:
    from engine.io import read_table, write_table
    from engine.pipeline import allocate
    from engine.plan import Plan
    from engine.portfolio import Portfolio

    plan = Plan.from_file(folder / "plan.json")
    t0 = time.perf_counter()
    customers = read_table(folder / "customers.parquet")
    table = folder / "options.parquet"
    options = read_table(table) if table.exists() else None
    t1 = time.perf_counter()
    result = allocate(Portfolio(customers, options=options), plan)
    t2 = time.perf_counter()
    write_table(result.units, folder / "plan_out.parquet")
    t3 = time.perf_counter()
    s = result.summary
    stages = dict(s["seconds"])
    stages = {
        "read": t1 - t0,
        "validate": stages["validate"],
        "metric": stages["metric"],
        "options": stages["options"],
        "allocate": stages["allocate"],
        "report": stages.get("report", 0.0),  # the per-customer table and the summary
        "other": (t2 - t1) - stages["total"],  # plugin registry, anything not timed above
        "write": t3 - t2,
    }
    hull = result.options.hull
    return {
        "stages": stages,
        "end_to_end_seconds": t3 - t0,
        "lp_objective": s["lp_objective"],
        "bound": s["bound"],
        "equity_after": s["equity_after"],
        "gap": s["gap"],
        "lp_gap": (s["bound"] - s["lp_objective"]) / abs(s["bound"]),
        "iterations": s["iterations"],
        "notes": s["notes"],
        "binding_rows": sum(1 for v in s["shadow_prices"].values() if v > 1e-9),
        "hull_points_removed": int(result.options.cost.size - hull.points.size),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _model(folder: Path) -> Any:
    import polars as pl

    from benchmarks import reference
    from engine.plan import Plan

    plan = Plan.from_file(folder / "plan.json")
    table = pl.read_parquet(folder / "options.parquet")
    caps = {lim.segment: float(lim.cap) for lim in plan.segment_limits if lim.cap is not None}
    return reference.model_from_table(table, plan.total_budget, caps)


def task_highs(folder: Path) -> dict[str, Any]:
    from benchmarks import reference

    solved = reference.highs_direct(_model(folder))
    return {
        "objective": solved.objective,
        "seconds": solved.seconds,
        "build_seconds": solved.build_seconds,
        "status": solved.status,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def task_pulp(folder: Path) -> dict[str, Any]:
    from benchmarks import reference

    solved = reference.pulp_naive(_model(folder))
    return {
        "objective": solved.objective,
        "seconds": solved.seconds,
        "build_seconds": solved.build_seconds,
        "status": solved.status,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def task_grpc(folder: Path) -> dict[str, Any]:
    import signal

    from engine.cli.service import _free_port
    from engine.io import read_table
    from engine.plan import Plan
    from engine.portfolio import Portfolio
    from engine.service.client import Client

    plan = Plan.from_file(folder / "plan.json")
    table = folder / "options.parquet"
    portfolio = Portfolio(
        read_table(folder / "customers.parquet"),
        options=read_table(table) if table.exists() else None,
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--log-level",
         "WARNING", "--max-message-mb", "512", "--max-rows", "100000000"],
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        with Client(f"127.0.0.1:{port}", timeout=900, max_message_bytes=512 << 20) as client:
            client.wait_ready(60)
            t0 = time.perf_counter()
            result = client.stream(portfolio, plan, batch_rows=100_000)
            seconds = time.perf_counter() - t0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return {
        "seconds": seconds,
        "engine_seconds": result.summary["seconds"]["total"],
        "equity_after": result.summary["equity_after"],
        "units": result.units.height,
    }


TASKS = {
    "generate": task_generate,
    "engine": task_engine,
    "highs": task_highs,
    "pulp": task_pulp,
    "grpc": task_grpc,
}


def child(argv: list[str]) -> int:
    name, folder = argv[0], Path(argv[1])
    if name == "generate":
        out = task_generate(int(argv[2]), int(argv[3]), folder, argv[4])
    else:
        out = TASKS[name](folder)  # type: ignore[operator]
    print("RESULT " + json.dumps(out))
    return 0


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", *args],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out: dict[str, Any] = json.loads(line[len("RESULT "):])
            out["load_before"], out["load_after"] = load_before, os.getloadavg()[0]
            out["process_seconds"] = wall
            return out
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine's figures over repeated fresh processes: per stage the median, memory
    the largest; every run kept under ``runs`` (the machine is shared, so noise is real)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    out["stages"] = {k: statistics.median(r["stages"][k] for r in ok) for k in ok[0]["stages"]}
    for key in ("end_to_end_seconds", "load_before", "load_after", "process_seconds"):
        out[key] = statistics.median(r[key] for r in ok)
    out["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in ok)
    out["runs"] = runs
    return out


# --- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import highspy  # noqa: F401
    import numpy
    import polars
    import pulp

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "polars": polars.__version__,
        "pulp": pulp.__version__,
        "highspy": version("highspy"),
    }


def rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return (a - b) / max(abs(b), 1e-300)


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def summarize(rows: list[dict[str, Any]]) -> str:
    lines = []
    head = (f"{'size':>6} {'read':>6} {'valid':>6} {'metric':>6} {'opts':>6} {'alloc':>6} "
            f"{'report':>6} {'other':>6} {'write':>6} {'e2e s':>7} {'peak GiB':>8} {'us/cust':>7} "
            f"{'load':>5}")
    lines.append("Engine, end to end (median seconds per stage over the repeats; opts = cost "
                 "model, checks, constraint rows and hull; alloc = the exact LP with integer "
                 "repair and its checks)")
    lines.append(head)
    for r in rows:
        e = r.get("engine", {})
        if "error" in e or not e:
            lines.append(f"{r['label']:>6} engine failed: {e.get('error', 'not run')}")
            continue
        st = e["stages"]
        lines.append(
            f"{r['label']:>6} " + " ".join(f"{st[k]:6.2f}" for k in (
                "read", "validate", "metric", "options", "allocate", "report", "other",
                "write"))
            + f" {e['end_to_end_seconds']:7.2f} {e['peak_rss_bytes'] / 2**30:8.2f}"
            f" {1e6 * e['end_to_end_seconds'] / r['n']:7.2f} {e['load_before']:5.1f}"
        )
    lines.append("")
    lines.append("Exactness and speed against independent solves of the full per-customer LP")
    lines.append(f"{'size':>6} {'LP objective':>18} {'LP gap':>9} {'int gap':>9} "
                 f"{'vs highs':>9} {'vs pulp':>9} {'highs s':>8} {'pulp s':>8} "
                 f"{'(build)':>8} {'x highs':>8} {'x pulp':>8} {'x build':>8}")
    for r in rows:
        e, h, p = r.get("engine", {}), r.get("highs", {}), r.get("pulp", {})
        if "stages" not in e:
            continue
        alloc = e["stages"]["allocate"]
        hs = h.get("seconds") if "error" not in h else None
        ps = p.get("seconds") if "error" not in p else None
        pb = p.get("build_seconds") if "error" not in p else None
        lines.append(
            f"{r['label']:>6} {e['lp_objective']:18.6f} {fmt(e['lp_gap'], '9.1e')} "
            f"{fmt(e['gap'], '9.1e')} {fmt(r.get('rel_highs'), '9.1e')} "
            f"{fmt(r.get('rel_pulp'), '9.1e')} {fmt(hs, '8.2f')} {fmt(ps, '8.2f')} "
            f"{fmt(pb, '8.2f')} {fmt(hs / alloc if hs else None, '8.0f')} "
            f"{fmt(ps / alloc if ps else None, '8.0f')} {fmt(pb / alloc if pb else None, '8.0f')}"
        )
        for name, part in (("highs", h), ("pulp", p)):
            if "error" in part:
                lines.append(f"{'':>6} {name}: {part['error']}")
    grpc = [r for r in rows if r.get("grpc")]
    if grpc:
        lines.append("")
        lines.append("gRPC AllocateStream on loopback (portfolio streamed in, plan streamed back)")
        for r in grpc:
            g = r["grpc"]
            if "error" in g:
                lines.append(f"{r['label']:>6} failed: {g['error']}")
            else:
                lines.append(f"{r['label']:>6} {g['seconds']:7.2f} s wall, engine "
                             f"{g['engine_seconds']:.2f} s, load {g['load_before']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10k,100k,1M", help="comma-separated, e.g. 10k,1M")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--route", choices=("table", "response"), default="table",
        help="table: customers + a per-customer options table (12%% S-shaped responses; "
        "cost model spend-table); response: customers only, the engine's "
        "exponential-response cost model builds the options (no independent references)",
    )
    parser.add_argument("--highs-max", default="1M", help="largest size for highspy directly")
    parser.add_argument("--pulp-max", default="100k", help="largest size for naive PuLP")
    parser.add_argument("--grpc", default="", help="sizes to stream through gRPC, e.g. 1M")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--repeat", type=int, default=3,
                        help="engine runs per size (fresh processes); medians are reported")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the Parquet files here")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    highs_max, pulp_max = parse_size(args.highs_max), parse_size(args.pulp_max)
    grpc_sizes = {parse_size(s) for s in args.grpc.split(",") if s.strip()}
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "benchmarks/run.py", *argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "route": args.route,
        "sizes": [],
    }
    rows: list[dict[str, Any]] = report["sizes"]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in sizes:
            folder = Path(tmp) / label(n)
            folder.mkdir()
            row: dict[str, Any] = {"n": n, "label": label(n)}
            rows.append(row)
            print(f"[{label(n)}] generating", file=sys.stderr, flush=True)
            row["generate"] = run_child(
                ["generate", str(folder), str(n), str(args.seed), args.route], args.timeout
            )
            for name, wanted in (
                ("engine", True),
                ("highs", n <= highs_max and args.route == "table"),
                ("pulp", n <= pulp_max and args.route == "table"),
                ("grpc", n in grpc_sizes),
            ):
                if wanted and "error" not in row["generate"]:
                    print(f"[{label(n)}] {name}", file=sys.stderr, flush=True)
                    if name == "engine":
                        row[name] = median_run(
                            [run_child([name, str(folder)], args.timeout)
                             for _ in range(args.repeat)]
                        )
                    else:
                        row[name] = run_child([name, str(folder)], args.timeout)
            lp = row.get("engine", {}).get("lp_objective")
            row["rel_highs"] = rel(lp, row.get("highs", {}).get("objective"))
            row["rel_pulp"] = rel(lp, row.get("pulp", {}).get("objective"))
            for f in folder.iterdir():  # keep the disk small between sizes
                f.unlink()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    text = summarize(rows)
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; python {m['python']}, "
          f"numpy {m['numpy']}, polars {m['polars']}, pulp {m['pulp']}, highspy {m['highspy']}")
    print(f"route: {args.route}; load average now {os.getloadavg()[0]:.1f}")
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"figures written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
