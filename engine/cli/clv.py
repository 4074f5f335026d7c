"""``equity clv``: fit BG/NBD + Gamma-Gamma on a transaction log and print the model.

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

from engine.cli.arguments import discount_rate
from engine.cli.textfmt import number, plural
from engine.clv.bgnbd import ModelFitError
from engine.clv.value import clv_from_transactions, default_discount_rate
from engine.errors import InvalidInputError
from engine.valuation import Valuation


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
        required=True,
        help="customer_id,date,amount (.csv/.parquet) or raw CDNOW text",
    )
    p.add_argument("--calibration-end", required=True, help="last calibration date, YYYY-MM-DD")
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
        "--prediction-horizon",
        type=float,
        help="time units for expected_purchases (default: the valued horizon)",
    )
    p.add_argument("--output", type=Path,
                   help="per-customer values (.parquet or .csv) (default: not written)")
    p.add_argument("--json", action="store_true", help="print the fit as one JSON object")
    p.set_defaults(func=cmd_clv)


def cmd_clv(args: argparse.Namespace) -> int:
    from engine.io import write_table

    rate = args.discount_rate
    if rate is None:
        rate = default_discount_rate(args.time_unit, args.period_length)
    valuation = Valuation(discount_rate=rate, horizon=args.horizon)
    try:
        result = clv_from_transactions(
            args.transactions,
            args.calibration_end,
            time_unit=args.time_unit,
            valuation=valuation,
            period_length=args.period_length,
            margin_ratio=args.margin_ratio,
            refunds=args.refunds,
            fmt=args.fmt,
            prediction_horizon=args.prediction_horizon,
        )
    except ModelFitError as exc:
        if args.json:
            print(json.dumps({"converged": False, "model": exc.model, "message": str(exc)}))
        raise
    if args.output:
        write_table(result.customers, args.output)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
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

    parser = argparse.ArgumentParser(prog="equity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (InvalidInputError, ModelFitError) as exc:
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
