"""``equity allocate``, ``equity plugins`` and ``equity example``: the allocation itself,
the strategies it can use, and files to try it on."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.arguments import (
    add_plan_arguments,
    add_portfolio_arguments,
    load_inputs,
    plan_from_args,
)
from engine.cli.textfmt import number, plural
from engine.io import write_table

if TYPE_CHECKING:
    from engine.plan import Plan
    from engine.portfolio import Portfolio
    from engine.result import PlanResult


def print_summary(summary: Mapping[str, Any]) -> None:
    money = number
    print(
        f"status           {summary['status']} ({summary['allocator']}, "
        f"{summary['method']}, solver {summary['solver']})"
    )
    print(f"units            {plural(summary['customers'], 'customer')}, "
          f"{plural(summary['pools'], 'pool')}")
    print(f"equity before    {money(summary['equity_before'])}")
    print(f"equity after     {money(summary['equity_after'])}")
    print(f"equity gain      {money(summary['equity_gain'])}")
    print(
        f"total spend      {money(summary['total_spend'])}  "
        + "  ".join(f"{k} {money(v)}" for k, v in summary["spend_by_kind"].items())
    )
    roc = summary["roc"]
    print(
        f"ROC              {number(roc, '.4f')} "
        f"(doing nothing: {number(summary['roc_do_nothing'], '.4f')})"
        if roc is not None and roc == roc
        else "ROC              n/a"
    )
    if summary.get("bound") is not None:
        print(f"LP bound         {money(summary['bound'])}  gap {number(summary['gap'], '.3e')}")
    for name, price in summary.get("shadow_prices", {}).items():
        print(f"shadow price     {name}: {number(price, '.6f')} equity per unit")
    band = summary.get("equity_gain_interval")
    if band:
        print(f"gain interval    {money(band['p5'])} to {money(band['p95'])} (p5-p95, median "
              f"{money(band['p50'])}, {summary['uncertainty_draws']:,} draws); "
              f"P(gain > 0) {number(summary['probability_beats_nothing'], '.3f')}")
    current = summary.get("current_gain_interval")
    if current:
        print(f"current plan     gain {money(current['p5'])} to {money(current['p95'])} (p5-p95, "
              f"median {money(current['p50'])}); P(plan beats current) "
              f"{number(summary['probability_beats_current'], '.3f')}")
    stable = summary.get("choice_stability")
    if stable:
        print(f"choice stability {number(stable['mean'], '.3f')} of the draws keep a "
              f"customer's level on average; {number(stable['share_stable_at_80pct'], '.1%')} "
              f"of customers keep it in >= 80% ({int(stable['draws'])} re-solves)")
    print(f"time             {summary['seconds']['total']:.3f} s")
    for note in summary.get("notes", []):
        print(f"note             {note}")


def cmd_allocate(args: argparse.Namespace) -> int:
    from engine.pipeline import allocate

    for flag in ("response", "uncertainty", "stability"):
        if args.cluster and getattr(args, flag):
            from engine.errors import InvalidInputError

            raise InvalidInputError.single(f"--{flag}", "is not supported with --cluster yet")
    if args.cluster:
        return _allocate_on_cluster(args)
    portfolio, plan = load_inputs(args)
    if args.current_plan is not None and not (args.uncertainty or plan.uncertainty_draws):
        from engine.errors import InvalidInputError

        raise InvalidInputError.single("--current-plan", "needs --uncertainty N (the plans "
                                       "are compared over the same draws)")
    draws = args.uncertainty or plan.uncertainty_draws  # the flag, else the --plan file's
    seed = args.seed if args.uncertainty else plan.uncertainty_seed
    if draws or args.stability:
        result = _allocate_with_uncertainty(portfolio, plan, draws, seed,
                                            args.current_plan, args.stability)
    else:
        result = allocate(portfolio, plan)
    if portfolio.transactions is not None:  # values from a log, responses from nowhere
        for note in result.summary.notes:
            if note.startswith("response:"):
                print(f"warning: {note}", file=sys.stderr)
    if args.output:
        write_table(result.units, args.output)
    if args.json:
        print(result.to_json())
    else:
        print_summary(json.loads(result.to_json()))
    return 0


def _allocate_on_cluster(args: argparse.Namespace) -> int:
    """The exact allocation on a Dask cluster: the workers read the partitioned datasets and
    write the plan as one (``--output`` is then a directory)."""
    from engine.errors import InvalidInputError
    from engine.optimize import distributed
    from engine.optimize.cluster import Workers, check_spec, connect

    check_spec(args.cluster)
    for flag in ("example", "transactions"):
        if getattr(args, flag, None):
            raise InvalidInputError.single(
                f"--{flag}", "not with --cluster: the workers read --customers, --options "
                "and --prospects files (partitioned Parquet datasets)")
    if args.output is not None and args.output.suffix in (".csv", ".tsv", ".arrow"):
        raise InvalidInputError.single(
            "--output", "with --cluster the plan is a partitioned Parquet dataset: give a "
            "directory")
    plan = plan_from_args(args)
    parts = distributed.sources(args.customers, args.prospects, args.options)
    with connect(args.cluster) as client:
        workers = Workers(client)
        try:
            result = distributed.allocate(parts, plan, workers, output=args.output)
        finally:
            workers.close()
    if args.json:  # the single machine's document: engine.summary.PlanSummary
        print(json.dumps(result.summary.to_dict(), indent=2))
    else:
        print_summary(result.summary.to_dict())
    return 0


def _allocate_with_uncertainty(
    portfolio: Portfolio, plan: Plan, draws: int, seed: int, current_plan: Path | None = None,
    stability: int = 0,
) -> PlanResult:
    """The plan, then its equity gain re-valued under ``draws`` draws of the estimated
    parameters, the current plan under the same draws (engine.planning.uncertainty; no
    re-solve), and with ``stability`` the plan re-solved under that many draws
    (engine.planning.stability)."""
    from engine.io import read_table
    from engine.pipeline import allocate, build_model
    from engine.planning.stability import add_choice_stability, check_stability
    from engine.planning.uncertainty import add_uncertainty, check_uncertainty

    if draws:
        check_uncertainty(plan, draws)
    if stability:
        check_stability(plan, stability)
    current = read_table(current_plan, "current_plan") if current_plan is not None else None
    model = build_model(portfolio, plan)
    result = allocate(portfolio, plan, model=model)
    if draws:
        add_uncertainty(portfolio, plan, model, result, draws, seed, current)
    if stability:
        add_choice_stability(portfolio, plan, model, result, stability, seed)
    return result


def cmd_plugins(args: argparse.Namespace) -> int:
    from engine.plugins import default_registry

    registry = default_registry()
    if args.json:
        print(
            json.dumps(
                {
                    "strategies": registry.describe(),
                    "failures": [
                        {"plugin": f.plugin, "problem": f.problem} for f in registry.failures
                    ],
                },
                indent=2,
            )
        )
        return 0
    for item in registry.describe():
        print(
            f"{item['kind']:<11} {item['name']:<22} {item['package']} {item['version']}"
            f"  ({item['plugin']})"
        )
        if item["summary"]:
            print(f"{'':<12}  {item['summary']}")
        for key, p in item["parameters"].items():
            allowed = f" {p['choices']}" if "choices" in p else ""
            allowed += f" >= {p['minimum']:g}" if "minimum" in p else ""
            allowed += f" <= {p['maximum']:g}" if "maximum" in p else ""
            print(f"{'':<12}  {key} = {p['default']!r} ({p['type']}{allowed}): {p['doc']}")
    for failure in registry.failures:
        print(f"FAILED      {failure.plugin}: {failure.problem}")
    return 0


def cmd_example(args: argparse.Namespace) -> int:
    from engine.synthetic import example

    customers, prospects, plan = example(args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    ext = args.fmt
    write_table(customers, args.out / f"customers.{ext}")
    write_table(prospects, args.out / f"prospects.{ext}")
    (args.out / "plan.json").write_text(plan.to_json() + "\n")
    from engine.response.experiments import example_experiments

    experiments = example_experiments()
    write_table(experiments, args.out / f"experiments.{ext}")
    print(
        f"wrote {args.out}/customers.{ext} ({plural(customers.height, 'row')}), "
        f"prospects.{ext} ({plural(prospects.height, 'pool')}), plan.json, "
        f"experiments.{ext} ({plural(experiments.height, 'arm')})"
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``allocate``, ``plugins`` and ``example`` to the ``equity`` sub-commands."""
    p = subparsers.add_parser("allocate", help="allocate budgets to maximize total customer equity")
    add_portfolio_arguments(p)
    add_plan_arguments(p)
    p.add_argument("--stability", type=int, default=0, metavar="N",
                   help="re-solve the plan under N draws of the estimated parameters (each a "
                   "full solve: keep N small, 5-20) and report per unit the share of draws "
                   "keeping its level (choice_stability, a column of --output) and "
                   "choice_stability {mean, share_stable_at_80pct} in the summary (0: none)")
    p.add_argument("--current-plan", type=Path, metavar="FILE",
                   help="with --uncertainty: the firm's current plan (customer_id, spend; a "
                   "pool's id is its segment, its spend the pool's total), re-valued under the "
                   "same draws: current_gain_interval and probability_beats_current "
                   "(default: none)")
    p.add_argument("--output", type=Path,
                   help="per-customer plan (.parquet or .csv) (default: not written)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--cluster", metavar="SPEC",
                   help="run on a Dask cluster: local:N (N worker processes on this machine) "
                   "or tcp://HOST:PORT (a running scheduler); the workers read --customers, "
                   "--options and --prospects (a Parquet file or a directory of them, one "
                   "partition per file) and write --output as a directory of Parquet files "
                   "(default: this process)")
    p.set_defaults(func=cmd_allocate)

    p = subparsers.add_parser("plugins", help="list loaded strategies and plugin failures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = subparsers.add_parser("example", help="write the example portfolio and plan to files")
    p.add_argument("--out", type=Path, default=Path("example"), help="output directory")
    p.add_argument("--size", type=int, default=5_000, help="customers in the example")
    p.add_argument("--format", dest="fmt", choices=("parquet", "csv"), default="parquet",
                   help="table format; csv opens in a spreadsheet")
    p.set_defaults(func=cmd_example)
