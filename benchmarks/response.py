"""Response curves and plan uncertainty at scale, each beside a reference in the same run.

Fit (target: 10M unit-level experiment rows <= 5 s). The example's spend experiments
(8 segment-kind curves, 43 arms, ``engine.response.experiments.EXAMPLE_TRUTH``) drawn as
one row per unit:

* engine, in-process: ``aggregate`` (10M rows to 43 arms) and ``fit_experiments``;
* engine, ``equity fit-response --experiments rows.parquet --json`` in a fresh process (the
  wall time of the whole command: start, reading the Parquet file, fit, output);
* reference (on ``--reference-rows``, 1M by default, beside the engine on the same rows:
  it takes minutes at 10M): the same maximum likelihood written directly, without
  aggregating: per curve, scipy's L-BFGS-B on the per-row Bernoulli log-likelihood over the
  natural parameters with bounds and finite-difference gradients, best of three starts (the
  observed rates at the lowest and highest spend, k in 0.03, 0.1, 0.3; one start can end on
  a step function). statsmodels' binomial GLM does not fit these curves (they are not
  linear in a link). Its estimates are compared with the engine's.

Uncertainty (target: ``--uncertainty 200`` on 1M customers <= 10 s). The example portfolio
of 1M customers with the example's fitted curves, each command in a fresh process:

* ``equity allocate --example --example-size 1000000 --response curves.json`` (reference);
* the same with ``--uncertainty 200``: the summary's ``seconds.uncertainty`` (the 200
  re-valuations of the chosen plan) and the wall time;
* a re-solve under one draw of the curves (``--response`` with drawn parameters): what each
  draw would cost if the plan were re-solved instead of re-valued (x 200 for the same draws).

    .venv/bin/python benchmarks/response.py --rows 10M --reference-rows 1M --customers 1M \\
        --json benchmarks/results/response.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize

from engine.response.curves import Shape, probability
from engine.response.experiments import EXAMPLE_LEVELS, EXAMPLE_TRUTH, aggregate
from engine.response.fit import fit_experiments

EQUITY = [sys.executable, "-m", "engine.cli"]


def _size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def unit_rows(rows: int, seed: int = 11) -> pl.DataFrame:
    """``rows`` units spread evenly over the example's arms, one Bernoulli draw each."""
    rng = np.random.default_rng(seed)
    arms = [(segment, kind, s, probability(Shape(kind, "exponential"),
                                           [params[p] for p in Shape(kind, "exponential")
                                            .parameters], s))
            for (segment, kind), params in EXAMPLE_TRUTH.items()
            for s in EXAMPLE_LEVELS[kind]]
    per = np.full(len(arms), rows // len(arms))
    per[: rows - per.sum()] += 1
    segments = [a[0] for a in arms]
    kinds = [a[1] for a in arms]
    codes = np.repeat(np.arange(len(arms)), per)
    p = np.repeat([float(a[3]) for a in arms], per)
    return pl.DataFrame({
        "segment": pl.Series(np.array(segments)[codes]),
        "kind": pl.Series(np.array(kinds)[codes]),
        "spend": np.repeat([a[2] for a in arms], per).astype(np.float64),
        "success": (rng.random(rows) < p).astype(np.int8),
    })


def reference_fit(table: pl.DataFrame) -> tuple[float, dict[tuple[str, str], np.ndarray]]:
    """Per curve, the per-row Bernoulli likelihood maximised by L-BFGS-B (numeric
    gradients, natural parameters with bounds, best of three starts): (seconds, estimates)."""
    started = time.perf_counter()
    estimates = {}
    for (segment, kind), group in table.group_by("segment", "kind", maintain_order=True):
        spend = group["spend"].to_numpy()
        y = group["success"].to_numpy().astype(np.float64)
        shape = Shape(str(kind), "exponential")

        def nll(theta: np.ndarray, spend: np.ndarray = spend, y: np.ndarray = y,
                shape: Shape = shape) -> float:
            p = np.clip(probability(shape, theta, spend), 1e-12, 1 - 1e-12)
            return -float((y * np.log(p) + (1 - y) * np.log1p(-p)).sum())

        # starts: the observed rates at the lowest and highest spend, k from a short grid
        # (one start can end on a step function: k at its bound)
        low, high = y[spend == spend.min()].mean(), y[spend == spend.max()].mean()
        head = [low, high] if kind == "retention" else [high]
        bounds = [(1e-6, 1 - 1e-6)] * len(head) + [(1e-6, 10.0)]
        runs = [optimize.minimize(nll, [*head, k0], method="L-BFGS-B", bounds=bounds)
                for k0 in (0.03, 0.1, 0.3)]
        estimates[(str(segment), str(kind))] = min(runs, key=lambda r: r.fun).x
    return time.perf_counter() - started, estimates


def _engine_fit(table: pl.DataFrame) -> tuple[float, float, list[Any], int]:
    started = time.perf_counter()
    arms = aggregate(table)
    aggregated = time.perf_counter() - started
    fits = fit_experiments(arms)
    return time.perf_counter() - started, aggregated, fits, arms.height


def measure_fit(rows: int, reference_rows: int, work: Path) -> dict[str, Any]:
    table = unit_rows(rows)
    path = work / "experiments.parquet"
    table.write_parquet(path)
    engine, aggregated, fits, arms = _engine_fit(table)
    del table
    started = time.perf_counter()
    proc = subprocess.run([*EQUITY, "fit-response", "--experiments", str(path), "--json"],
                          capture_output=True, text=True, check=True)
    cli = time.perf_counter() - started
    assert len(json.loads(proc.stdout)["curves"]) == len(fits)
    # the reference takes minutes at 10M rows: both side by side on reference_rows
    small = unit_rows(reference_rows, seed=12)
    small_engine, _, small_fits, _ = _engine_fit(small)
    ref_seconds, ref = reference_fit(small)
    gap = max(float(np.max(np.abs(ref[(f.segment, f.kind)] - f.chosen.theta)
                           / f.chosen.standard_errors)) for f in small_fits)
    out = {
        "rows": rows, "arms": arms, "curves": len(fits),
        "engine_in_process_seconds": round(engine, 3),
        "engine_aggregate_seconds": round(aggregated, 3),
        "engine_cli_seconds": round(cli, 3),
        "reference_rows": reference_rows,
        "engine_seconds_at_reference_rows": round(small_engine, 3),
        "reference_per_row_lbfgsb_seconds": round(ref_seconds, 3),
        "speedup_vs_reference": round(ref_seconds / small_engine, 1),
        "max_estimate_gap_in_standard_errors": round(gap, 5),
        "models_chosen": sorted({f.model for f in fits}),
    }
    print(f"fit {rows:,} unit rows ({arms} arms, {len(fits)} curves): engine {engine:.2f} s "
          f"in-process (aggregate {aggregated:.2f} s), {cli:.2f} s as `equity fit-response`; "
          f"at {reference_rows:,} rows engine {small_engine:.2f} s, per-row reference "
          f"{ref_seconds:.2f} s, largest estimate gap {gap:.4f} standard errors", flush=True)
    return out


def _allocate(args: list[str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run([*EQUITY, "allocate", *args, "--json"], capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"allocate {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def measure_uncertainty(customers: int, draws: int, work: Path) -> dict[str, Any]:
    from engine.plan import curve_parameters
    from engine.response.experiments import example_experiments

    document = {"curves": [f.to_dict() for f in fit_experiments(example_experiments())]}
    curves = work / "curves.json"
    curves.write_text(json.dumps(document))
    rng = np.random.default_rng(5)
    drawn = []
    for c in document["curves"]:
        names = curve_parameters(c["kind"], c["model"])
        theta = rng.multivariate_normal([c[n] for n in names], c["covariance"])
        drawn.append({**{k: c[k] for k in ("segment", "kind", "model", "base")},
                      **dict(zip(names, map(float, theta), strict=True))})
    one_draw = work / "drawn.json"
    one_draw.write_text(json.dumps({"curves": drawn}))
    example = ["--example", "--example-size", str(customers)]
    base_s, base = _allocate([*example, "--response", str(curves)])
    unc_s, unc = _allocate([*example, "--response", str(curves), "--uncertainty", str(draws)])
    draw_s, _ = _allocate([*example, "--response", str(one_draw)])
    revalue = unc["seconds"]["uncertainty"]
    out = {
        "customers": customers, "draws": draws,
        "allocate_seconds": round(base_s, 3),
        "allocate_uncertainty_seconds": round(unc_s, 3),
        "uncertainty_seconds": round(revalue, 3),
        "resolve_one_draw_seconds": round(draw_s, 3),
        "resolve_all_draws_seconds_extrapolated": round(draw_s * draws, 1),
        "equity_gain": base["equity_gain"],
        "equity_gain_interval": unc["equity_gain_interval"],
        "probability_beats_nothing": unc["probability_beats_nothing"],
    }
    print(f"uncertainty {draws} draws on {customers:,} customers: re-valuation "
          f"{revalue:.2f} s (allocate {base_s:.2f} s, with --uncertainty {unc_s:.2f} s); a "
          f"re-solve per draw {draw_s:.2f} s (x {draws} = {draw_s * draws:,.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10M", help="unit-level experiment rows to fit")
    parser.add_argument("--reference-rows", default="1M",
                        help="rows of the side-by-side run with the per-row reference")
    parser.add_argument("--customers", default="1M", help="customers of the uncertainty run")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--skip", choices=("fit", "uncertainty"), action="append", default=[])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": list(os.getloadavg()),
                               "started": time.strftime("%Y-%m-%d %H:%M"),
                               "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "fit" not in args.skip:
            results["fit"] = measure_fit(_size(args.rows), _size(args.reference_rows), work)
        if "uncertainty" not in args.skip:
            results["uncertainty"] = measure_uncertainty(_size(args.customers), args.draws,
                                                         work)
    results["load_after"] = list(os.getloadavg())
    print(f"load average before {results['load_before'][0]:.1f}, after "
          f"{results['load_after'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
