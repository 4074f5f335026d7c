"""Planning commands at scale, side by side with the allocation they build on.

Each command runs in a fresh process (the wall time of the whole command, process start and
model building included): ``equity allocate`` (the reference), ``equity report`` without and
with its default scenarios, and ``equity frontier`` on the example plan (kind budgets crossing
segment limits: the flow-network path) and on the same portfolio with only a total and an
acquisition budget (laminar: the merge path), and (up to ``--resources-max`` customers) on the
example plan with a limit on contacts besides spend (one contact per head spent on, at most
0.3 per customer: exact LP solves at budgets, each started from its neighbour's prices). The
frontier's own seconds come from its JSON
(``seconds``: from the inputs to the result; ``model_seconds``: the part of it that builds the
options and rows, the same work ``allocate`` does first). Beside each wall time, the CPU
seconds (user + system) of the command and of the processes it waited for, the report's chart
process among them, and the part of them in the command's own process: the report works in
two processes, so its wall time gains from a free second core and from none on a machine whose
cores are busy; its CPU seconds are what it costs either way, its own process' CPU seconds
about what its wall time comes to with a core free for the charts.

    .venv/bin/python benchmarks/planning.py --sizes 100k,1M --report-max 100k --repeat 3 \
        --json benchmarks/results/planning.json

``--against DIR`` runs every command a second time on another source tree of the engine
(``git archive COMMIT | tar -x -C DIR``; its ``plugins`` serve as ``equity_plugins``), the two
trees in turn within each repeat (the same load for both), and reports both side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# ``python -m engine.cli ARGS`` that also writes, as its last line on stderr, the CPU seconds
# of its own process and of the processes it waited for (the report's chart process)
CPU_MARK = "planning-benchmark-cpu"
EQUITY = [sys.executable, "-c", f"""
import atexit, json, resource, runpy, sys

def cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("{CPU_MARK}", json.dumps([own.ru_utime + own.ru_stime,
                                    kids.ru_utime + kids.ru_stime]), file=sys.stderr)

atexit.register(cpu)
sys.argv[0] = "equity"
runpy.run_module("engine.cli", run_name="__main__", alter_sys=True)
"""]
THIS = "this"


def _size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def _tree_env(tree: Path, work: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s engine: the tree first on the path, its plugins
    as ``equity_plugins`` (a link in ``work``), ahead of the installed ones."""
    links = work / f"plugins-{abs(hash(str(tree)))}"
    links.mkdir(exist_ok=True)
    link = links / "equity_plugins"
    if not link.exists():
        link.symlink_to(tree / "plugins", target_is_directory=True)
    path = os.pathsep.join(filter(None, [str(tree), str(links), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
         ) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system of the command and the processes it waited
    for: the report's chart process among them), the part of them in the command's own
    process, and the stdout of one command."""
    cpu = _cpu_of_children()
    started = time.perf_counter()
    proc = subprocess.run([*EQUITY, *args], capture_output=True, text=True, check=False,
                          env=env, cwd=cwd)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    marks = [line for line in proc.stderr.splitlines() if line.startswith(CPU_MARK)]
    own = json.loads(marks[-1].split(" ", 1)[1])[0] if marks else math.nan
    return seconds, _cpu_of_children() - cpu, own, proc.stdout


def measure(n: int, work: Path, report: bool, repeat: int, resources: bool = False,
            against: Path | None = None) -> dict[str, Any]:
    example = ["--example", "--example-size", str(n), "--quiet"]
    laminar_plan = work / "laminar.json"
    laminar_plan.write_text(json.dumps({"budget": {"total": 6.0 * n, "acquisition": 3.0 * n},
                                        "discount_rate": 0.1,
                                        "retention_levels": [0, 2, 5, 10, 20]}))
    cases: dict[str, list[str]] = {
        "allocate": ["allocate", "--example", "--example-size", str(n), "--output",
                     str(work / "plan.parquet")],
        "frontier (example: crossing)": ["frontier", *example, "--json", "--rows", "5"],
        "frontier (laminar)": ["frontier", *example, "--plan", str(laminar_plan), "--json",
                               "--rows", "5"],
    }
    if resources:
        cases["frontier (contacts limit)"] = [
            "frontier", *example, "--param", "cost.contacts_per_head=1",
            "--limit", f"contacts<={0.3 * n:g}", "--json", "--rows", "5"]
    if report:
        cases["report, no scenarios"] = ["report", *example, "--no-scenarios", "--out",
                                         str(work / "r1")]
        cases["report, default scenarios"] = ["report", *example, "--out", str(work / "r2")]
    # the installed tree runs from the repository (as `.venv/bin/python -m engine.cli`); the
    # other from the work directory, where this repository's engine is not on the path
    trees: dict[str, tuple[dict[str, str] | None, Path | None]] = {THIS: (None, None)}
    if against is not None:
        trees[str(against)] = (_tree_env(against, work), work)
    out: dict[str, Any] = {"customers": n, "runs": {}}
    if against is not None:
        out["against"] = {"tree": against.name, "runs": {}}  # its name: no path kept
    for name, args in cases.items():
        runs: dict[str, list[dict[str, Any]]] = {tree: [] for tree in trees}
        for _ in range(repeat):
            for tree, (env, cwd) in trees.items():  # in turn: the same load for both
                seconds, cpu, own, stdout = _run(args, env, cwd)
                run: dict[str, Any] = {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                                       "own_cpu_seconds": round(own, 3)}
                if name.startswith("frontier"):
                    summary = json.loads(stdout)["frontier"]
                    run["frontier_seconds"] = round(summary["seconds"], 3)
                    run["model_seconds"] = round(summary.get("model_seconds", 0.0), 3)
                    run["breakpoints"] = summary["breakpoints"]
                    run["method"] = summary["method"]
                    if summary.get("max_gap") is not None:
                        run["max_gap"] = summary["max_gap"]
                runs[tree].append(run)
        for tree, tree_runs in runs.items():
            best = sorted(tree_runs, key=lambda r: r["seconds"])[len(tree_runs) // 2]
            held = out["runs"] if tree == THIS else out["against"]["runs"]
            held[name] = {**best, "all": tree_runs}
            what = ""
            if "frontier_seconds" in best:
                points = (f"{best['breakpoints']:,} exact LP solves, max gap "
                          f"{best['max_gap']:,.6g}" if best["method"] == "solves"
                          else f"{best['breakpoints']:,} breakpoints")
                what = (f"  (frontier {best['frontier_seconds']:.2f} s of which model "
                        f"{best['model_seconds']:.2f} s, {points}, {best['method']})")
            label = "" if tree == THIS else "  [against]"
            print(f"{n:>9,}  {name:<28} {best['seconds']:7.2f} s, CPU {best['cpu_seconds']:5.2f} s"
                  f" (its own process {best['own_cpu_seconds']:5.2f} s){what}{label}", flush=True)
    for held in [out["runs"]] + ([out["against"]["runs"]] if against is not None else []):
        ref, ref_cpu = held["allocate"]["seconds"], held["allocate"]["cpu_seconds"]
        for run in held.values():
            run["x_allocate"] = round(run["seconds"] / ref, 2)
            run["x_allocate_cpu"] = round(run["cpu_seconds"] / ref_cpu, 2) if ref_cpu else None
    for name, run in out["runs"].items():
        other = out["against"]["runs"][name] if against is not None else None
        versus = (f", against {other['seconds']:.2f} s = {other['x_allocate']:.2f}x"
                  f" (CPU {other['x_allocate_cpu']:.2f}x)" if other is not None else "")
        print(f"{n:>9,}  {name:<28} {run['x_allocate']:5.2f}x allocate (CPU "
              f"{run['x_allocate_cpu']:.2f}x){versus}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k", help="customers, comma separated (100k,1M)")
    parser.add_argument("--report-max", default="100k",
                        help="largest size the report is run at (default 100k)")
    parser.add_argument("--resources-max", default="100k",
                        help="largest size the frontier with a contacts limit is run at "
                             "(default 100k; 0: never)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command (median)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--against", type=Path,
                        help="another source tree of the engine (e.g. `git archive COMMIT | "
                             "tar -x -C DIR`) run side by side, in turn with this one")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg(),
                               "started": time.strftime("%Y-%m-%d %H:%M"),
                               "sizes": []}
    against = args.against.resolve() if args.against is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        for n in (_size(s) for s in args.sizes.split(",")):
            results["sizes"].append(measure(n, Path(tmp), n <= _size(args.report_max),
                                            args.repeat, n <= _size(args.resources_max),
                                            against))
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
