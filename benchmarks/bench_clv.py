"""Benchmark: transaction log file -> RFM -> BG/NBD + Gamma-Gamma -> per-customer CLV.

    .venv/bin/python benchmarks/bench_clv.py --customers 1000000

Generates (seeded, untimed) a BG/NBD + Gamma-Gamma population with about 10 transactions
per customer over two years and writes it to Parquet, then times each stage of the path a
user runs (``equity clv``): read the file, RFM statistics, both fits, per-customer CLV and
bridge. Then each purchase model (``--models``: BG/NBD, Pareto/NBD, MBG/NBD) is fitted on
the same RFM table, predicts per customer (P(alive), expected purchases over 39 weeks) and
values every customer with Gamma-Gamma (``customer_values(..., model=)``: CLV, margin and
retention with that model); its "file to per-customer CLV" total is read + RFM + Gamma-Gamma
+ its fit + its valuation. Where lifetimes is installed (it is not a dependency), its fitter
for the same model runs on the same RFM table (fit and the same two predictions) in a
subprocess with a time limit (``--lifetimes-timeout``), in the same run. Prints a table and
writes JSON (stage times, wall clock and this process's CPU time, which a busy shared machine
inflates less, machine load, fitted vs true values).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.clv.bgnbd import fit_bgnbd_rfm
from engine.clv.compare import MODELS
from engine.clv.gamma_gamma import fit_gamma_gamma_rfm
from engine.clv.transactions import read_transactions, rfm_statistics
from engine.clv.value import customer_values, default_discount_rate
from engine.valuation import Valuation

START = dt.date(2022, 1, 1)
CALIBRATION_END = dt.date(2023, 12, 31)
TRUE = {"r": 1.2, "alpha": 5.7, "a": 0.6, "b": 5.0, "p": 5.0, "q": 4.0, "gamma": 60.0}


def generate(n: int, seed: int) -> pl.DataFrame:
    """One row per purchase; first purchases spread over 2022, calibration ends 2023-12-31.

    Per customer: lambda ~ Gamma(r, alpha) per week, p ~ Beta(a, b); the number of repeat
    purchases by T is min(dropout index ~ Geometric(p), Poisson(lambda T)), their times the
    first order statistics of uniforms on (0, T] (exponential spacings, vectorised). About
    5% of purchase days are split into two rows, and 0.1% of rows are exact duplicates or
    refunds, so the cleaning path does real work.
    """
    rng = np.random.default_rng(seed)
    horizon = (CALIBRATION_END - START).days
    first = rng.integers(0, 365, n)
    age_days = (horizon - first).astype(np.float64)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n) / 7.0  # per day
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    n_poisson = rng.poisson(lam * age_days)
    repeats = np.minimum(rng.geometric(p), n_poisson)
    # Order statistics of N uniforms: Exp(1) spacings over their sum plus Gamma(N - k + 1).
    has = repeats > 0
    owner = np.repeat(np.arange(n), repeats)
    gaps = rng.exponential(1.0, owner.size)
    csum = np.cumsum(gaps)
    seg_start = (np.cumsum(repeats) - repeats)[has]
    within = csum - np.repeat(csum[seg_start] - gaps[seg_start], repeats[has])
    denom = np.zeros(n)
    denom[has] = within[seg_start + repeats[has] - 1] + rng.gamma(n_poisson[has] - repeats[has] + 1)
    u = within / denom[owner]
    repeat_day = first[owner] + np.floor(u * age_days[owner]).astype(np.int64)
    cust = np.concatenate([np.arange(n), owner])
    day = np.concatenate([first, repeat_day])
    # Spend: nu ~ Gamma(q, gamma); each purchase ~ Gamma(p, nu).
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["gamma"], n)
    amount = np.round(np.maximum(rng.gamma(TRUE["p"], 1.0 / nu[cust]), 0.01), 2)
    # Dirt: split baskets, exact duplicates, refunds.
    split = rng.random(cust.size) < 0.05
    share = np.round(amount[split] * rng.uniform(0.2, 0.8, split.sum()), 2)
    amount[split] -= share
    dup = rng.random(cust.size) < 0.001
    ref = np.flatnonzero(rng.random(cust.size) < 0.001)
    cust = np.concatenate([cust, cust[split], cust[dup], cust[ref]])
    day = np.concatenate([day, day[split], day[dup], day[ref] + 3])
    amount = np.concatenate([amount, share, amount[dup], -amount[ref]])
    ids = rng.permutation(n).astype(np.int64) + 10_000_000
    keep = day <= horizon
    order = np.argsort(day[keep], kind="stable")  # logs arrive in date order
    epoch = (START - dt.date(1970, 1, 1)).days
    return pl.DataFrame(
        {
            "customer_id": ids[cust[keep][order]],
            "date": pl.Series((day[keep][order] + epoch).astype(np.int32)).cast(pl.Date),
            "amount": amount[keep][order],
        }
    )


LIFETIMES = {
    "bgnbd": "BetaGeoFitter",
    "pareto-nbd": "ParetoNBDFitter",
    "mbg-nbd": "ModifiedBetaGeoFitter",
}
HORIZON = 39.0  # weeks of expected purchases per customer


def lifetimes_worker(model: str, rfm_path: str) -> None:
    """In a subprocess: lifetimes' fitter on the RFM table; prints seconds and parameters."""
    import warnings

    import lifetimes  # type: ignore[import-untyped]

    warnings.filterwarnings("ignore")
    df = pl.read_parquet(rfm_path).select("frequency", "recency", "T").to_pandas()
    t0, c0 = time.perf_counter(), time.process_time()
    fitter = getattr(lifetimes, LIFETIMES[model])(penalizer_coef=0.0)
    fitter.fit(df["frequency"], df["recency"], df["T"])
    t1, c1 = time.perf_counter(), time.process_time()
    fitter.conditional_probability_alive(df["frequency"], df["recency"], df["T"])
    fitter.conditional_expected_number_of_purchases_up_to_time(
        HORIZON, df["frequency"], df["recency"], df["T"]
    )
    t2 = time.perf_counter()
    params = {k: float(v) for k, v in fitter.params_.items()}
    print(json.dumps({"fit": t1 - t0, "predict": t2 - t1, "fit_cpu": c1 - c0, "params": params}))


def run_lifetimes(model: str, rfm_path: Path, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--lifetimes-worker", model, str(rfm_path)]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"did not finish in {timeout:.0f} s"}
    if done.returncode != 0:
        return {"status": "failed", "error": done.stderr.strip().splitlines()[-1:]}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out | {"status": "ok", "wall": time.perf_counter() - t0}


def compare_models(
    rfm: pl.DataFrame, shared: tuple[float, float], models: list[str], workdir: Path,
    timeout: float,
    fits: tuple[Any, Any, Valuation] | None = None,
) -> dict[str, Any]:
    """Each model's fit, per-customer predictions and CLV, beside lifetimes' where it runs.
    ``fits``: BG/NBD, Gamma-Gamma and the valuation of the main run; ``shared``: the seconds
    of read + RFM + Gamma-Gamma, wall clock and CPU (this process, all threads)."""
    x = rfm["frequency"].cast(pl.Float64).to_numpy()
    tx = rfm["recency"].cast(pl.Float64).to_numpy()
    t_age = rfm["T"].cast(pl.Float64).to_numpy()
    rfm_path = workdir / f"clv_rfm_{rfm.height}.parquet"
    rfm.select("frequency", "recency", "T").write_parquet(rfm_path)
    try:
        import lifetimes  # type: ignore[import-untyped]  # noqa: F401

        have_lifetimes = timeout > 0
    except ImportError:
        have_lifetimes = False
    out: dict[str, Any] = {}
    for name in models:
        t0, c0 = time.perf_counter(), time.process_time()
        fit = MODELS[name](rfm)
        t1, c1 = time.perf_counter(), time.process_time()
        fit.p_alive(x, tx, t_age)
        fit.conditional_expected_purchases(np.full(x.size, HORIZON), x, tx, t_age)
        t2, c2 = time.perf_counter(), time.process_time()
        value = value_cpu = 0.0
        if fits is not None:
            bg, gg, valuation = fits
            customer_values(rfm, bg, gg, valuation,
                            model=None if name == "bgnbd" else fit)  # type: ignore[arg-type]
            value, value_cpu = time.perf_counter() - t2, time.process_time() - c2
        row: dict[str, Any] = {
            "fit": t1 - t0,
            "predict": t2 - t1,
            "value": value,
            "file_to_clv": shared[0] + (t1 - t0) + value,
            "cpu": {"fit": c1 - c0, "predict": c2 - c1, "value": value_cpu,
                    "file_to_clv": shared[1] + (c1 - c0) + value_cpu},
            "params": {
                k: v for k, v in fit.as_dict().items() if isinstance(v, float) and k not in ("aic",)
            },
        }
        row["lifetimes"] = (
            run_lifetimes(name, rfm_path, timeout)
            if have_lifetimes
            else {"status": "not installed" if timeout > 0 else "skipped"}
        )
        out[name] = row
    return out


def run(
    n: int, seed: int, workdir: Path, models: list[str] | None = None, timeout: float = 0.0
) -> dict[str, Any]:
    path = workdir / f"clv_tx_{n}.parquet"
    t0 = time.perf_counter()
    if not path.exists():
        generate(n, seed).write_parquet(path)
    gen = time.perf_counter() - t0
    load_before = os.getloadavg()
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    start = mark = time.perf_counter()
    cpu_start = cpu_mark = time.process_time()

    def lap(name: str) -> None:
        nonlocal mark, cpu_mark
        now, now_cpu = time.perf_counter(), time.process_time()
        times[name], cpu[name] = now - mark, now_cpu - cpu_mark
        mark, cpu_mark = now, now_cpu

    tx = read_transactions(path)
    lap("read parquet")
    rfm, report = rfm_statistics(tx, CALIBRATION_END, "week")
    lap("RFM statistics")
    bg = fit_bgnbd_rfm(rfm)
    lap("BG/NBD fit")
    gg = fit_gamma_gamma_rfm(rfm)
    lap("Gamma-Gamma fit")
    valuation = Valuation(discount_rate=default_discount_rate("week"))
    customers = customer_values(rfm, bg, gg, valuation)
    lap("CLV + bridge")
    times["total"] = time.perf_counter() - start
    cpu["total"] = time.process_time() - cpu_start
    stages = ("read parquet", "RFM statistics", "Gamma-Gamma fit")
    shared = (sum(times[k] for k in stages), sum(cpu[k] for k in stages))
    load_models = os.getloadavg()
    per_model = compare_models(rfm, shared, models or [], workdir, timeout, (bg, gg, valuation))
    return {
        "models": per_model,
        "load_average_models": [load_models, os.getloadavg()],
        "customers": rfm.height,
        "transactions": tx.height,
        "distinct_rfm_rows": bg.n_rows,
        "repeaters": gg.n_customers,
        "seconds": times,
        "cpu_seconds": cpu,
        "generate_seconds": gen,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "fitted": {
            "bgnbd": {k: getattr(bg, k) for k in ("r", "alpha", "a", "b")}
            | {"log_likelihood": bg.log_likelihood},
            "gamma_gamma": {k: getattr(gg, k) for k in ("p", "q", "gamma")},
            "true": TRUE,
        },
        "cleaning": report.as_dict(),
        "clv_total": float(customers["clv"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--seed", type=int, default=2005)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/equity-bench"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/clv.json"))
    parser.add_argument("--models", nargs="*", default=list(LIFETIMES), choices=list(LIFETIMES))
    parser.add_argument(
        "--lifetimes-timeout", type=float, default=300.0, help="seconds per model; 0 skips"
    )
    parser.add_argument("--lifetimes-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lifetimes_worker:
        lifetimes_worker(*args.lifetimes_worker)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = [
        run(n, args.seed, args.workdir, args.models, args.lifetimes_timeout) for n in args.customers
    ]
    stages = list(results[0]["seconds"])
    print(f"{'stage':<18}" + "".join(f"{r['customers']:>14,}" for r in results))
    print(f"{'transactions':<18}" + "".join(f"{r['transactions']:>14,}" for r in results))
    for stage in stages:
        print(f"{stage:<18}" + "".join(
            f"{r['seconds'][stage]:>8.2f}s ({r['cpu_seconds'][stage]:.2f} CPU)" for r in results))
    for r in results:
        f = r["fitted"]
        print(
            f"n={r['customers']:,}: BG/NBD "
            + " ".join(f"{k}={f['bgnbd'][k]:.3f}({f['true'][k]})" for k in ("r", "alpha", "a", "b"))
            + "  GG "
            + " ".join(
                f"{k}={f['gamma_gamma'][k]:.3f}({f['true'][k]})" for k in ("p", "q", "gamma")
            )
            + f"  load {r['load_average_before'][0]:.2f}->{r['load_average_after'][0]:.2f}"
        )
    for r in results:
        print(f"n={r['customers']:,}: model fit / predict / value / file-to-CLV s, "
              "lifetimes fit / predict")
        for name, m in r["models"].items():
            lt = m["lifetimes"]
            theirs = (
                f"{lt['fit']:.2f} / {lt['predict']:.2f} (fit CPU {lt['fit_cpu']:.2f})"
                if lt["status"] == "ok" else lt["status"]
            )
            print(
                f"  {name:<11}{m['fit']:>7.2f} /{m['predict']:>6.2f} /{m['value']:>6.2f} /"
                f"{m['file_to_clv']:>6.2f} (CPU {m['cpu']['file_to_clv']:.2f})"
                f"   {theirs}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
