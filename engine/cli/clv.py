"""``equity clv``: fit purchase models + Gamma-Gamma on a transaction log and print them.

``--model`` adds Pareto/NBD or MBG/NBD beside BG/NBD (which values CLV), ``--compare`` fits
them all, ``--holdout-end`` runs the calibration/holdout check, ``--survival`` fits the sBG
model to cohort survival counts instead (no transaction log), ``--model bgbb`` with
``--opportunities`` the BG/BB model to discrete purchase opportunities.

Registered by listing ``"engine.cli.clv"`` in ``engine.cli.EXTENSIONS``; errors propagate
to ``engine.cli.app`` (exit 2 for invalid input, 6 for a fit that did not converge), except
that with ``--json`` a non-converged fit also prints ``{"converged": false, ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl

from engine.cli.arguments import discount_rate
from engine.cli.textfmt import number, plural
from engine.clv.choices import VALUE_MODELS as LOG_MODELS  # fitted on a transaction log
from engine.errors import InvalidInputError

# The fits (engine.clv.bgnbd, .run, .transactions) load scipy.optimize: imported by the
# commands that fit, not when the parser is built (every ``equity`` command builds it).
MODEL_CHOICES = (*LOG_MODELS, "bgbb")  # bgbb: discrete opportunities (--opportunities)
_HORIZON_UNITS = {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.25}  # days


def prediction_horizon(text: str) -> tuple[float, str]:
    """``39`` (time units), or a length with a unit: ``273d``, ``39w``, ``12m``, ``1y``."""
    t = text.strip().lower()
    unit = t[-1] if t and t[-1] in _HORIZON_UNITS else ""
    try:
        value = float(t[:-1] if unit else t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a length; e.g. 39 (time units), 39w, 273d, 12m, 1y"
        ) from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: the horizon must be > 0")
    return value, unit


def add_parser(subparsers: Any) -> None:
    """Add the ``clv`` sub-command to the ``equity`` CLI's sub-parsers."""
    p = subparsers.add_parser(
        "clv",
        help="fit BG/NBD and Gamma-Gamma on a transaction log; per-customer CLV",
        description="Customer lifetime value from a transaction log (docs/clv.md).",
    )
    p.add_argument(
        "--transactions",
        type=Path,
        help="customer_id,date,amount[,transaction_id] (.csv/.parquet) or raw CDNOW text "
        "(default: none; needed unless --survival or --opportunities)",
    )
    p.add_argument("--calibration-end",
                   help="last calibration date, YYYY-MM-DD (default: none; needed with "
                   "--transactions)")
    p.add_argument(
        "--holdout-end",
        help="check the fit on the purchases after the calibration end up to this date "
        "(default: no holdout check)",
    )
    p.add_argument(
        "--model", action="append", choices=MODEL_CHOICES,
        help="purchase model(s) to fit beside BG/NBD (repeatable; BG/NBD values the CLV); "
        "bgbb fits discrete opportunities from --opportunities instead of a log (default: "
        "BG/NBD only)",
    )
    p.add_argument(
        "--value-model", choices=LOG_MODELS, default="bgnbd",
        help="purchase model that values the customers with Gamma-Gamma (margin, retention, "
        "clv, p_alive, expected_purchases); its fit is reported beside BG/NBD's "
        "(default: bgnbd)",
    )
    p.add_argument(
        "--compare", action="store_true",
        help="fit every purchase model; log-likelihood, AIC and holdout error side by side",
    )
    p.add_argument(
        "--survival", type=Path,
        help="cohort,period,alive survival counts: fit the sBG churn model per cohort instead "
        "(default: none)",
    )
    p.add_argument(
        "--opportunities", type=Path,
        help="discrete purchase opportunities for --model bgbb: frequency,recency,n[,weight] "
        "per customer or pattern, or customer_id,opportunity,purchased per opportunity "
        "(default: none)",
    )
    p.add_argument("--time-unit", choices=("day", "week"), default="week",
                   help="time unit of recency and age")
    p.add_argument(
        "--format", dest="fmt", choices=("auto", "cdnow", "csv", "parquet"), default="auto",
        help="file format; auto: by extension, CDNOW when the first line looks like it",
    )
    p.add_argument("--horizon", type=int, help="periods valued (default: infinite)")
    p.add_argument(
        "--discount-rate", type=discount_rate,
        help="per period, a fraction (default: the equivalent of 10%% a year)",
    )
    p.add_argument(
        "--period-length",
        type=float,
        default=1.0,
        help="one valuation period in time units (default 1; 52.18 weeks = a year)",
    )
    p.add_argument(
        "--margin-ratio",
        type=float,
        default=1.0,
        help="contribution margin per unit of spend (default 1: value = revenue)",
    )
    p.add_argument(
        "--refunds",
        choices=("drop", "net_same_day", "error"),
        default="drop",
        help="negative amounts: drop (default), net within the day, or reject",
    )
    p.add_argument(
        "--dedupe", action="store_true",
        help="identical rows (customer, date, amount) are double exports, not purchases "
        "(without a transaction_id they count as purchases by default)",
    )
    p.add_argument(
        "--prediction-horizon",
        type=prediction_horizon,
        help="horizon of expected_purchases: 39 (time units), 39w, 273d, 12m, 1y "
        "(default: the valued horizon, one period when it is infinite)",
    )
    p.add_argument(
        "--intervals", type=int, default=0, metavar="DRAWS",
        help="per-customer intervals in --output from this many draws of the estimates' "
        "asymptotic distribution (e.g. 200; default 0: none)",
    )
    p.add_argument("--interval-level", type=float, default=0.9,
                   help="coverage of the intervals (default 0.9: 5%% and 95%% quantiles)")
    p.add_argument("--output", type=Path,
                   help="per-customer values (.parquet or .csv) (default: not written)")
    p.add_argument(
        "--diagnostics", action="store_true",
        help="add BG/NBD diagnostics: period-transactions histogram (model vs actual repeat "
        "purchases in calibration), P(alive) matrix by frequency and recency, P(X(t) = n) "
        "at the prediction horizon",
    )
    p.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    p.set_defaults(func=cmd_clv)


def cmd_clv(args: argparse.Namespace) -> int:
    if args.survival is not None:
        return _survival(args)
    if args.opportunities is not None or "bgbb" in (args.model or []):
        return _bgbb(args)
    missing = [f for f, v in (("--transactions", args.transactions),
                              ("--calibration-end", args.calibration_end)) if v is None]
    if missing:
        raise InvalidInputError.single(
            missing[0].lstrip("-").replace("-", "_"), f"{' and '.join(missing)} required "
            "(or --survival for cohort survival counts)",
        )
    from engine.clv.bgnbd import ModelFitError
    from engine.clv.run import ClvOptions, run_clv
    from engine.clv.transactions import UNIT_DAYS, read_transactions
    from engine.io import write_table

    horizon = None
    if args.prediction_horizon is not None:
        value, unit = args.prediction_horizon
        horizon = value * (_HORIZON_UNITS[unit] / UNIT_DAYS[args.time_unit] if unit else 1.0)
    options = ClvOptions(
        calibration_end=args.calibration_end,
        holdout_end=args.holdout_end,
        models=tuple(args.model or ()),
        compare=args.compare,
        value_model=args.value_model,
        time_unit=args.time_unit,
        horizon=args.horizon,
        discount_rate=args.discount_rate,
        period_length=args.period_length,
        margin_ratio=args.margin_ratio,
        refunds=args.refunds,
        dedupe=args.dedupe,
        prediction_horizon=horizon,
        interval_draws=args.intervals,
        interval_level=args.interval_level,
        diagnostics=args.diagnostics,
        names={"models": "model", "interval_draws": "intervals"},
    )
    try:
        tx = read_transactions(args.transactions, args.fmt)
        run = run_clv(tx, options, customers=args.output is not None)
    except ModelFitError as exc:
        if args.json:
            print(json.dumps({"converged": False, "model": exc.model, "message": str(exc)}))
        raise
    summary = run.summary
    if args.output and run.customers is not None:
        write_table(run.customers, args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


def _survival(args: argparse.Namespace) -> int:
    from engine.clv.sbg import fit_survival_table, read_survival

    rate = 0.10 if args.discount_rate is None else args.discount_rate
    fits = fit_survival_table(read_survival(args.survival))
    out = {"sbg": [f.as_dict(rate) for f in fits]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for f in out["sbg"]:
        se = f["standard_errors"]
        print(
            f"sBG {f['cohort']:<14} alpha {f['alpha']:.4f} ({se['alpha']:.4f})  "
            f"beta {f['beta']:.4f} ({se['beta']:.4f})  LL {f['log_likelihood']:.2f}  "
            f"retention {', '.join(f'{r:.3f}' for r in f['retention'][:5])}  "
            f"DEL {f['del']:.3f} at {rate:g} per period"
        )
    return 0


def _bgbb(args: argparse.Namespace) -> int:
    """BG/BB on discrete opportunities: the fit, and per row P(alive), expected purchases over
    the next --prediction-horizon opportunities (default 1) and DERT at --discount-rate."""
    from engine.clv.bgbb import fit_bgbb, read_opportunities
    from engine.clv.bgnbd import ModelFitError
    from engine.io import write_table

    if args.opportunities is None or args.transactions is not None:
        raise InvalidInputError.single(
            "opportunities", "--model bgbb fits discrete purchase opportunities: give "
            "--opportunities (not --transactions; the log's models are "
            f"{', '.join(LOG_MODELS)})",
        )
    extra = [name for name in (args.model or []) if name != "bgbb"]
    if extra or args.compare or args.holdout_end:
        raise InvalidInputError.single(
            "model", "--opportunities fits bgbb alone (no --compare, --holdout-end or "
            f"transaction-log models{': ' + ', '.join(extra) if extra else ''})",
        )
    horizon, source = 1.0, "one opportunity"
    if args.prediction_horizon is not None:
        value, unit = args.prediction_horizon
        if unit:
            raise InvalidInputError.single(
                "prediction_horizon", "counts opportunities for bgbb: a number such as 5"
            )
        horizon, source = value, "given"
    rate = 0.10 if args.discount_rate is None else args.discount_rate
    table = read_opportunities(args.opportunities)
    cols = tuple(table[c].to_numpy() for c in ("frequency", "recency", "n"))
    weight = table["weight"].to_numpy()
    try:
        fit = fit_bgbb(cols[0], cols[1], cols[2], weight)
    except ModelFitError as exc:
        if args.json:
            print(json.dumps({"converged": False, "model": exc.model, "message": str(exc)}))
        raise
    p_alive = fit.p_alive(*cols)
    expected = fit.conditional_expected_purchases(horizon, *cols)
    dert = fit.dert(rate, *cols)
    summary = {"bgbb": fit.as_dict() | {
        "prediction_horizon": {"opportunities": horizon, "source": source,
                               "expected_purchases": float(weight @ expected)},
        "p_alive_mean": float(weight @ p_alive / weight.sum()),
        "discount_rate": rate,
        "dert_total": float(weight @ dert),
    }}
    if args.output:
        counts = [pl.col(c).cast(pl.Int64) for c in ("frequency", "recency", "n")]
        write_table(table.with_columns(*counts, pl.Series("p_alive", p_alive),
                                       pl.Series("expected_purchases", expected),
                                       pl.Series("dert", dert)), args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    b = summary["bgbb"]
    se = b["standard_errors"]
    print("BG/BB            " + "  ".join(f"{k} {b[k]:.4f} ({se[k]:.4f})" for k in
                                          ("alpha", "beta", "gamma", "delta"))
          + f"  LL {b['log_likelihood']:.2f}  on {plural(b['customers'], 'customer')}")
    print(f"expected         {number(b['prediction_horizon']['expected_purchases'])} purchases "
          f"in the next {horizon:g} opportunities ({source})")
    return 0


def _print(s: dict[str, Any]) -> None:
    bg, gg = s["bgnbd"], s["gamma_gamma"]
    se, gse = bg["standard_errors"], gg["standard_errors"]
    out = sys.stdout
    out.write(
        f"customers        {plural(s['customers'], 'customer')} "
        f"(calibration to {s['calibration_end']}, "
        f"{s['time_unit']}s)\n"
    )
    out.write(
        "BG/NBD           "
        + "  ".join(f"{k} {bg[k]:.4f} ({se[k]:.4f})" for k in ("r", "alpha", "a", "b"))
        + f"  LL {bg['log_likelihood']:.2f}\n"
    )
    out.write(
        "Gamma-Gamma      "
        + "  ".join(f"{k} {gg[k]:.4f} ({gse[k]:.4f})" for k in ("p", "q", "gamma"))
        + f"  on {plural(gg['customers'], 'repeater')}\n"
    )
    v = s["valuation"]
    horizon = "infinite" if v["horizon"] is None else f"{v['horizon']} periods"
    out.write(
        f"CLV              total {number(s['clv']['total'])}  mean {number(s['clv']['mean'])}  "
        f"({horizon}, {v['discount_rate']:.6f} per period)\n"
    )
    ph = s["prediction_horizon"]
    out.write(
        f"expected         {number(ph['expected_purchases'])} purchases in the next "
        f"{ph['length']:g} {ph['time_unit']}s ({ph['source']})\n"
    )
    for row in s.get("comparison", []):
        text = f"{row['model']:<16} LL {row['log_likelihood']:.2f}  AIC {row['aic']:.2f}"
        if "holdout_predicted" in row:
            text += (
                f"  holdout {row['holdout_predicted']:.1f} vs {row['holdout_actual']} "
                f"({100 * row['holdout_error']:+.1f}%)"
            )
        out.write(text + "\n")
    if "holdout" in s and "comparison" not in s:
        h = s["holdout"]
        out.write(
            f"holdout          {h['predicted']:.1f} predicted vs {h['actual']} repeat purchases "
            f"to {h['holdout_end']} ({100 * h['error']:+.1f}%)\n"
        )
    dropped = {
        k: n
        for k, n in s["cleaning"].items()
        if n and k not in ("input_rows", "customers", "rows_used", "purchase_days")
    }
    out.write(
        "cleaning         "
        + (", ".join(f"{k} {n:g}" for k, n in dropped.items()) or "clean")
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m engine.cli.clv``) until the CLI registers the command."""
    from engine.cli.exits import report_error
    from engine.clv.bgnbd import ModelFitError

    parser = argparse.ArgumentParser(prog="equity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (InvalidInputError, ModelFitError) as exc:
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
