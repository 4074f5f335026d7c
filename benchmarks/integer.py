"""The proven integer optimum and limits on any resource, beside highspy on the full model.

    PYTHONPATH=. .venv/bin/python benchmarks/integer.py --spend 50k,1M --resources 50k,1M \
        --repeat 5 --mip-max 50k --reference-max 1M --reference-limit 1800 \
        --reference-solver ipm --mip-limit 60 --json benchmarks/results/integer.json

- ``spend``: the seeded portfolio of benchmarks/generate.py (5 levels, a total budget and 20
  segment caps): the LP with its certificate (``lp.solve`` without the integer step), then the
  whole solve with the integer proof; status and proven gap. Up to ``--mip-max`` customers,
  highspy's MIP on the full per-customer model (gap 1e-9) beside it.
- ``resources``: the same portfolio with two more resource columns (contacts: 1 per non-zero
  level, 2 at the top two; call minutes growing with spend) and 50 limits (budget, 20 caps,
  a contacts limit over all and per segment, call-minute limits per segment); the LP
  (sifting, ``engine.optimize.lagrange``) beside highspy's LP on the full model (up to
  ``--reference-max`` customers, stopped after ``--reference-limit`` seconds: then the ratio
  is a lower bound), and up to ``--mip-max`` customers the integer proof (its time limit
  ``--mip-limit``) beside highspy's MIP; ``--seeds`` draws several such portfolios.
- Up to ``--started-max`` customers, highspy's LP on the full model started from the engine's
  point (``tests.reference.reference_lp_from``: crossover from the engine's plan and prices,
  then simplex proves the basis optimal or pivots on): highspy's own optimum where its cold
  solve does not finish, to compare the objectives; its time is not a speed reference.

Every figure is measured in this process, one after another; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generate import Spec, portfolio, segment_names  # noqa: E402
from benchmarks.run import label, parse_size  # noqa: E402
from engine.constraints import build_constraints  # noqa: E402
from engine.optimize import lp  # noqa: E402
from engine.options import from_table  # noqa: E402
from engine.plan import ResourceLimit  # noqa: E402
from tests.reference import reference_lp_from, reference_mip  # noqa: E402


def _with_resources(table: pl.DataFrame, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    level = table["level"].to_numpy()
    n = table["customer_id"].n_unique()
    per = np.repeat(rng.uniform(0.5, 2.0, n), table.height // n)
    contacts = np.select([level == 0, level >= 20], [0.0, 2.0], 1.0)
    return table.with_columns(contacts=pl.Series(contacts), calls=pl.Series(level / 10 * per))


def run(n: int, resources: bool, args: argparse.Namespace, seed: int | None = None
        ) -> dict[str, object]:
    spec = Spec(n=n) if seed is None else Spec(n=n, seed=seed)
    _, table, plan = portfolio(spec)
    if resources:
        table = _with_resources(table, spec.seed)
        names = segment_names(spec.segments)
        limits = [ResourceLimit("contacts", max=args.contacts_share * n)]
        limits += [ResourceLimit("contacts", segment=s, max=0.006 * n) for s in names[:14]]
        limits += [ResourceLimit("calls", segment=s, max=0.003 * n) for s in names[:15]]
        plan = plan.with_overrides(resource_limits=tuple(limits))
    options = from_table(table)
    rows = build_constraints(plan, options)
    lp_times, lp_cpu = [], []
    for _ in range(args.repeat):  # the LP certificate alone, each time from nothing
        t, c = time.perf_counter(), time.process_time()
        relaxed = lp.solve(options, rows, lp.LpSettings(repair=False))
        lp_times.append(time.perf_counter() - t)
        lp_cpu.append(time.process_time() - c)
    lp_seconds = float(np.median(lp_times))
    assert relaxed.bound is not None and relaxed.lp_objective is not None
    kind = "resources" if resources else "spend"
    binding = sum(1 for v in relaxed.shadow_prices.values() if abs(v) > 1e-9)
    print(f"{kind:9} {label(n):>5} seed {spec.seed} rows {len(rows):3} ({binding} binding)  "
          f"LP {lp_seconds:7.2f} s "
          f"(objective {relaxed.lp_objective:.12g}, bound {relaxed.bound:.12g})", flush=True)
    record: dict[str, object] = {
        "kind": kind, "customers": n, "seed": spec.seed, "rows": len(rows), "binding": binding,
        "lp_certificate_seconds": round(lp_seconds, 3),
        "lp_certificate_runs": [round(x, 3) for x in lp_times],
        "lp_certificate_cpu_seconds": round(float(np.median(lp_cpu)), 3),
        "lp_objective": relaxed.lp_objective, "bound": relaxed.bound,
    }
    integral = not resources or n <= args.mip_max
    value = float("nan")
    if integral:
        t = time.perf_counter()
        whole = lp.solve(options, rows, lp.LpSettings(mip_time_limit=args.mip_limit))
        seconds = time.perf_counter() - t
        value = float(whole.equity(options).sum())
        assert whole.integer_bound is not None
        gap = (whole.integer_bound - value) / abs(whole.integer_bound)
        print(f"{'':9} {'':>5} integral {seconds:7.2f} s  {whole.status} gap {gap:.1e}  "
              f"value {value:.10g}", flush=True)
        record.update(integral_seconds=round(seconds, 3), status=whole.status,
                      proven_gap=gap, value=value, mip_time_limit=args.mip_limit)
    if n <= args.reference_max:
        t, c = time.perf_counter(), time.process_time()
        ref_lp = reference_mip(options, rows, relax=True, time_limit=args.reference_limit,
                              lp_solver=args.reference_solver)
        ref_lp_seconds = time.perf_counter() - t
        ref_lp_cpu = time.process_time() - c
        assert ref_lp is not None
        diff = abs(ref_lp[0] - relaxed.lp_objective) / abs(ref_lp[0])
        print(f"{'':9} {'':>5} highspy full LP {ref_lp_seconds:7.2f} s {ref_lp[2]} "
              f"objective {ref_lp[0]:.12g} (|diff| {diff:.1e}, "
              f"{ref_lp_seconds / lp_seconds:.0f}x the LP's time; CPU {ref_lp_cpu:.1f} s, "
              f"{ref_lp_cpu / float(np.median(lp_cpu)):.0f}x the LP's)", flush=True)
        record["highspy_full_lp"] = {"seconds": round(ref_lp_seconds, 2), "status": ref_lp[2],
                                     "solver": args.reference_solver,
                                     "objective": ref_lp[0], "relative_diff": diff,
                                     "speedup": round(ref_lp_seconds / lp_seconds, 1),
                                     "cpu_seconds": round(ref_lp_cpu, 2),
                                     "cpu_speedup": round(ref_lp_cpu / float(np.median(lp_cpu)), 1)}
    if resources and n <= args.started_max:
        t = time.perf_counter()
        started = reference_lp_from(options, rows, relaxed, time_limit=args.reference_limit)
        started_seconds = time.perf_counter() - t
        diff = abs(started[0] - relaxed.lp_objective) / abs(started[0])
        print(f"{'':9} {'':>5} highspy full LP from the engine's point {started_seconds:7.2f} s "
              f"{started[1]} objective {started[0]:.12g} (|diff| {diff:.1e}, "
              f"{started[2]} simplex iterations)", flush=True)
        record["highspy_full_lp_started"] = {
            "seconds": round(started_seconds, 2), "status": started[1], "objective": started[0],
            "relative_diff": diff, "simplex_iterations": started[2]}
    if integral and n <= min(args.mip_max, args.reference_max):
        t = time.perf_counter()
        ref = reference_mip(options, rows, time_limit=args.reference_limit)
        ref_seconds = time.perf_counter() - t
        assert ref is not None
        print(f"{'':9} {'':>5} highspy full MIP {ref_seconds:7.2f} s {ref[2]} optimum "
              f"{ref[0]:.10g} (plan short by {(ref[0] - value) / abs(ref[0]):.1e})", flush=True)
        record["highspy_full_mip"] = {"seconds": round(ref_seconds, 2), "status": ref[2],
                                      "objective": ref[0],
                                      "plan_short_by": (ref[0] - value) / abs(ref[0])}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spend", default="50k")
    parser.add_argument("--resources", default="50k")
    parser.add_argument("--mip-max", type=parse_size, default=50_000)
    parser.add_argument("--reference-max", type=parse_size, default=50_000)
    parser.add_argument("--reference-limit", type=float, default=600.0)
    parser.add_argument("--started-max", type=parse_size, default=0,
                        help="highspy's full LP from the engine's point up to this size")
    parser.add_argument("--mip-limit", type=float, default=60.0)
    parser.add_argument("--reference-solver", default="choose",
                        help="HiGHS' solver for the reference LP (choose, simplex, ipm)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="LP certificate solves per size (the median is reported)")
    parser.add_argument("--contacts-share", type=float, default=0.15,
                        help="the contacts limit over all, per customer (0.15: not binding; "
                             "0.10 binds it, linking every segment)")
    parser.add_argument("--seeds", default="",
                        help="portfolio seeds for --resources, comma-separated (default: "
                             "generate.py's)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"load average before: {before}", flush=True)
    records = [run(parse_size(text), False, args) for text in filter(None, args.spend.split(","))]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [None]
    records += [run(parse_size(text), True, args, seed)
                for text in filter(None, args.resources.split(",")) for seed in seeds]
    after = os.getloadavg()
    print(f"load average after: {after}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "command": "PYTHONPATH=. python benchmarks/integer.py " + " ".join(sys.argv[1:]),
            "started": started, "load_before": [round(x, 2) for x in before],
            "load_after": [round(x, 2) for x in after],
            "portfolio": "benchmarks/generate.py seeded: 5 levels per customer, a total budget "
                         "and 20 segment caps; 'resources' adds contacts and call minutes and "
                         "30 limits on them (51 rows)",
            "targets": {"spend_lp_certificate_seconds_1M": 0.5,
                        "spend_integral_proven_seconds_1M": 5.0,
                        "resources_lp_seconds_1M": 5.0, "resources_lp_speedup_min": 50,
                        "proven_optimum_seconds_50k": 2.0},
            "runs": records,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
