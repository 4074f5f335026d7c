"""The report's charts in process: CPU seconds per chart at a size, best of ``--repeat``,
optionally side by side with the charts module of an earlier commit (the same report data,
both modules in turn in each round).

    .venv/bin/python benchmarks/report_charts.py --size 100k --repeat 7 --before 707d71d
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _size(text: str) -> int:
    text = text.strip().lower()
    for suffix, mult in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult)
    return int(text)


def _module_at(commit: str, tmp: Path) -> ModuleType:
    source = subprocess.run(["git", "show", f"{commit}:engine/planning/report_charts.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    path = tmp / f"report_charts_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"report_charts_{commit}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k", help="customers in the example (100k)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (best of)")
    parser.add_argument("--before", help="a commit whose charts module runs side by side")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from engine.planning import report_charts
    from engine.planning.report import CHARTS, build_report
    from engine.portfolio import Portfolio
    from engine.synthetic import example

    load_before = os.getloadavg()
    cust, pros, plan = example(_size(args.size))
    rate = plan.discount_rate
    data = build_report(Portfolio(cust, pros), plan,
                        discount_rates=[r for r in (rate - 0.05, rate + 0.05) if r >= 0],
                        response_factors=[0.5, 1.5])  # the CLI's default scenarios
    with tempfile.TemporaryDirectory() as tmp:
        modules: dict[str, Any] = {"now": report_charts}
        if args.before:
            modules = {args.before: _module_at(args.before, Path(tmp)), **modules}
        best: dict[str, dict[str, float]] = {tree: {} for tree in modules}
        for _ in range(args.repeat):
            for tree, module in modules.items():
                for name, make in module.render_charts(data).items():
                    started = time.process_time()
                    make()
                    seconds = time.process_time() - started
                    best[tree][name] = min(best[tree].get(name, float("inf")), seconds)
    trees = list(modules)
    print(f"{'chart':<12}" + "".join(f"{t:>12}" for t in trees) + "   (CPU s, best of "
          f"{args.repeat}, {_size(args.size):,} customers)")
    for name in CHARTS:
        print(f"{name:<12}" + "".join(f"{best[t].get(name, float('nan')):12.3f}"
                                      for t in trees))
    print(f"{'total':<12}" + "".join(f"{sum(best[t].values()):12.3f}" for t in trees))
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        args.json.write_text(json.dumps({"customers": _size(args.size), "repeat": args.repeat,
                                         "cpu_seconds": best, "load_before": load_before,
                                         "load_after": load_after}, indent=1))


if __name__ == "__main__":
    main()
