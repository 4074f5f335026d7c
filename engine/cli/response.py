"""``equity fit-response``: response curves estimated from spend experiments.

Reads an experiments file (aggregated arms or one row per unit, docs/response.md), fits per
segment and kind the retention or acquisition curve by binomial maximum likelihood, and prints
the curves with standard errors, model choice and goodness of fit per spend level.
``--output curves.json`` writes the JSON that ``equity allocate --response`` reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.textfmt import number, plural


def curves_document(path: Path) -> dict[str, Any]:
    """The fit of an experiments file as the ``{"curves": [...]}`` document."""
    from engine.response.experiments import read_experiments
    from engine.response.fit import fit_experiments

    fits = fit_experiments(read_experiments(path))
    return {"curves": [fit.to_dict() for fit in fits]}


def cmd_fit_response(args: argparse.Namespace) -> int:
    document = curves_document(args.experiments)
    text = json.dumps(document, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        print(text)
        return 0
    curves = document["curves"]
    print(f"{plural(len(curves), 'curve')} from {args.experiments}"
          + (f", written to {args.output}" if args.output else ""))
    for curve in curves:
        se = curve["standard_errors"]
        params = "  ".join(f"{name} {number(curve[name], '.4g')} ({number(se[name], '.2g')})"
                           for name in curve["parameters"])
        gof = curve["goodness_of_fit"]
        print(f"\n{curve['segment'] or '(all)'} {curve['kind']}: {curve['model']}  {params}")
        choice = curve["model_choice"]
        hill = choice.get("hill", {})
        print(f"  log-likelihood {number(curve['log_likelihood'], ',.2f')}  AIC exponential "
              f"{number(choice['exponential']['aic'], ',.2f')}  hill "
              + (number(hill['aic'], ',.2f') if "aic" in hill else f"n/a ({hill.get('reason')})"))
        print(f"  fit: Pearson chi-square {number(gof['statistic'], '.3f')} on {gof['df']} df, "
              f"p {number(gof['p_value'], '.3f')}")
        print(f"  {'spend':>10} {'units':>9} {'observed':>9} {'predicted':>9} {'residual':>9} "
              f"{'p':>6}")
        for row in curve["fit_by_level"]:
            print(f"  {number(row['spend'], ',.2f'):>10} {row['units']:>9,} "
                  f"{row['observed']:>9.4f} {row['predicted']:>9.4f} "
                  f"{number(row['pearson_residual'], '+.2f'):>9} {row['p_value']:>6.3f}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fit-response`` to the ``equity`` sub-commands."""
    p = subparsers.add_parser(
        "fit-response",
        help="fit retention/acquisition response curves to spend experiments",
        description="Response curves from experiments at several spend levels "
        "(docs/response.md).",
    )
    p.add_argument("--experiments", type=Path, required=True,
                   help="segment,kind,spend,units,successes per arm, or kind,spend,success "
                   "per unit with segment or customer_id (.csv, .parquet, .arrow)")
    p.add_argument("--output", type=Path,
                   help="write the curves JSON here, for `equity allocate --response` "
                   "(default: not written)")
    p.add_argument("--json", action="store_true", help="print the curves as JSON")
    p.set_defaults(func=cmd_fit_response)
