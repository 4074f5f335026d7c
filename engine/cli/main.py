"""The ``equity`` command line. Errors print one line per problem and exit non-zero:
2 invalid input, 3 infeasible plan, 4 limit exceeded, 5 plugin error, 6 solver error,
70 internal error (a traceback only with EQUITY_DEBUG=1)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine import __version__
from engine.errors import (
    CancelledError,
    EquityError,
    InfeasiblePlanError,
    InvalidInputError,
    LimitExceededError,
    PluginError,
    SolverError,
)
from engine.io import read_table, write_table
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.portfolio import Portfolio
from engine.stdio import reserve_stdout

# Modules adding sub-commands: each defines ``add_parser(subparsers)``.
EXTENSIONS: tuple[str, ...] = (
    "engine.cli.clv","engine.cli.service", "engine.cli.planning")


def _amount(text: str) -> tuple[str, float]:
    segment, sep, amount = text.rpartition("=")
    if not sep or not segment:
        raise argparse.ArgumentTypeError(f"expected SEGMENT=AMOUNT, got {text!r}")
    try:
        return segment, float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount in {text!r} is not a number") from None


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Plan flags shared by every command that runs an allocation."""
    g = parser.add_argument_group("plan (flags override --plan)")
    g.add_argument("--plan", type=Path, help="Plan JSON (protobuf JSON of equity_engine.v1.Plan)")
    g.add_argument("--budget", type=float, help="total budget for the period")
    g.add_argument("--acquisition-budget", type=float)
    g.add_argument("--retention-budget", type=float)
    g.add_argument("--cap", type=_amount, action="append", default=[], metavar="SEGMENT=AMOUNT")
    g.add_argument("--minimum", type=_amount, action="append", default=[], metavar="SEGMENT=AMOUNT")
    g.add_argument("--discount-rate", type=float)
    g.add_argument("--horizon", type=int, help="periods valued (default: infinite)")
    g.add_argument("--metric", help="metric strategy (default clv)")
    g.add_argument("--cost", help="cost strategy (default exponential-response)")
    g.add_argument("--allocator", help="allocation strategy (default lp)")
    g.add_argument("--solver", choices=("auto", "highs", "cbc"))


def add_portfolio_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("portfolio")
    g.add_argument("--customers", type=Path, help="customers table (.parquet, .csv, .arrow)")
    g.add_argument("--prospects", type=Path, help="prospect pools table")
    g.add_argument("--options", type=Path, help="explicit options table")
    g.add_argument("--transactions", type=Path,
                   help="transaction log (customer_id, date, amount; CSV, Parquet or CDNOW): "
                   "customers are valued from it by the 'bgnbd' metric unless --metric says")
    g.add_argument("--calibration-end", help="last date the CLV model learns from (YYYY-MM-DD)")
    g.add_argument("--time-unit", choices=("day", "week"), help="CLV model time unit")
    g.add_argument("--example", action="store_true", help="use the built-in example portfolio")
    g.add_argument("--example-size", type=int, default=5_000, help="customers in the example")


def load_inputs(args: argparse.Namespace) -> tuple[Portfolio, Plan]:
    plan = Plan()
    customers = prospects = options = None
    if args.example:
        from engine.synthetic import example

        customers, prospects, plan = example(args.example_size)
    if args.plan:
        plan = Plan.from_file(args.plan)
    if args.customers:
        customers = read_table(args.customers, "customers")
    if args.prospects:
        prospects = read_table(args.prospects, "prospects")
    if args.options:
        options = read_table(args.options, "options")
    transactions = None
    if getattr(args, "transactions", None):
        from engine.clv.transactions import read_transactions

        transactions = read_transactions(args.transactions)
    plan = _override(plan, args, options is not None and customers is None)
    if transactions is not None:
        plan = _transactions_metric(plan, args)
    return Portfolio(customers, prospects, options, transactions), plan


def _transactions_metric(plan: Plan, args: argparse.Namespace) -> Plan:
    """--transactions implies the bgnbd metric; --calibration-end / --time-unit set its params."""
    metric = plan.metric if args.metric or plan.metric.name != "clv" else StrategyChoice("bgnbd")
    params = dict(metric.params)
    if args.calibration_end:
        params["calibration_end"] = args.calibration_end
    if args.time_unit:
        params["time_unit"] = args.time_unit
    return plan.with_overrides(metric=StrategyChoice(metric.name, params))


def _override(plan: Plan, args: argparse.Namespace, options_only: bool) -> Plan:
    changes: dict[str, Any] = {}
    for flag, attr in (
        ("budget", "total_budget"),
        ("acquisition_budget", "acquisition_budget"),
        ("retention_budget", "retention_budget"),
        ("discount_rate", "discount_rate"),
        ("horizon", "horizon"),
    ):
        if getattr(args, flag) is not None:
            changes[attr] = getattr(args, flag)
    limits = {(lim.segment, lim.kind): lim for lim in plan.segment_limits}
    for segment, amount in args.cap:
        old = limits.get((segment, None), SegmentLimit(segment))
        limits[(segment, None)] = replace(old, cap=amount)
    for segment, amount in args.minimum:
        old = limits.get((segment, None), SegmentLimit(segment))
        limits[(segment, None)] = replace(old, minimum=amount)
    changes["segment_limits"] = tuple(limits.values())
    if args.metric:
        changes["metric"] = StrategyChoice(args.metric)
    if args.cost:
        changes["cost"] = StrategyChoice(args.cost)
    elif options_only and plan.cost.name == "exponential-response":
        changes["cost"] = StrategyChoice("spend-table")
    if args.allocator:
        changes["allocation"] = StrategyChoice(args.allocator)
    if args.solver:
        allocation = changes.get("allocation", plan.allocation)
        changes["allocation"] = StrategyChoice(
            allocation.name, dict(allocation.params) | {"solver": args.solver}
        )
    return plan.with_overrides(**changes)


def print_summary(summary: dict[str, Any]) -> None:
    def money(x: float | None) -> str:
        return "n/a" if x is None else f"{x:,.2f}"

    print(
        f"status           {summary['status']} ({summary['allocator']}, "
        f"{summary['method']}, solver {summary['solver']})"
    )
    print(f"units            {summary['customers']:,} customers, {summary['pools']} pools")
    print(f"equity before    {money(summary['equity_before'])}")
    print(f"equity after     {money(summary['equity_after'])}")
    print(f"equity gain      {money(summary['equity_gain'])}")
    print(
        f"total spend      {money(summary['total_spend'])}  "
        + "  ".join(f"{k} {money(v)}" for k, v in summary["spend_by_kind"].items())
    )
    roc = summary["roc"]
    print(
        f"ROC              {roc:.4f} (doing nothing: {summary['roc_do_nothing']:.4f})"
        if roc is not None and roc == roc
        else "ROC              n/a"
    )
    if summary.get("bound") is not None:
        print(f"LP bound         {money(summary['bound'])}  gap {summary['gap']:.3e}")
    for name, price in summary.get("shadow_prices", {}).items():
        print(f"shadow price     {name}: {price:.6f} equity per unit")
    print(f"time             {summary['seconds']['total']:.3f} s")


def cmd_allocate(args: argparse.Namespace) -> int:
    from engine.pipeline import allocate

    portfolio, plan = load_inputs(args)
    result = allocate(portfolio, plan)
    if args.output:
        write_table(result.units, args.output)
    if args.json:
        print(result.to_json())
    else:
        print_summary(json.loads(result.to_json()))
    return 0


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
    write_table(customers, args.out / "customers.parquet")
    write_table(prospects, args.out / "prospects.parquet")
    (args.out / "plan.json").write_text(plan.to_json() + "\n")
    print(
        f"wrote {args.out}/customers.parquet ({customers.height} rows), prospects.parquet "
        f"({prospects.height} pools), plan.json"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equity", description="Equity Engine")
    parser.add_argument("--version", action="version", version=f"equity-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("allocate", help="allocate budgets to maximize total customer equity")
    add_portfolio_arguments(p)
    add_plan_arguments(p)
    p.add_argument("--output", type=Path, help="per-customer plan (.parquet or .csv)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("plugins", help="list loaded strategies and plugin failures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("example", help="write the example portfolio and plan to files")
    p.add_argument("--out", type=Path, default=Path("example"))
    p.add_argument("--size", type=int, default=5_000)
    p.set_defaults(func=cmd_example)

    for module in EXTENSIONS:
        importlib.import_module(module).add_parser(sub)
    return parser


def report_error(exc: BaseException) -> int:
    if isinstance(exc, InvalidInputError):
        print("error: invalid input", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v}", file=sys.stderr)
        return 2
    codes = {
        InfeasiblePlanError: 3,
        LimitExceededError: 4,
        PluginError: 5,
        SolverError: 6,
        CancelledError: 130,
    }
    for cls, code in codes.items():
        if isinstance(exc, cls):
            print(f"error: {exc}", file=sys.stderr)
            return code
    if isinstance(exc, EquityError):
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"internal error: {type(exc).__name__}: {exc} (EQUITY_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    return 70


def main(argv: Sequence[str] | None = None) -> int:
    reserve_stdout()  # only what the engine prints reaches stdout (engine/stdio.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EQUITY_DEBUG"):
            traceback.print_exc()
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
