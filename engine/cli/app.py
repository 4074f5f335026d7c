"""The ``equity`` command line. Errors print one line per problem and exit non-zero:
2 invalid input, 3 infeasible plan, 4 limit exceeded, 5 plugin error, 6 solver error,
70 internal error (a traceback only with EQUITY_DEBUG=1).

When standard output is closed early (``equity frontier --example | head -2``) every command
stops quietly with exit status 141, what a shell reports for a tool ended by SIGPIPE, so
``set -o pipefail`` scripts see what they see of any Unix tool; nothing goes to stderr.
Warnings of third-party libraries (matplotlib, numpy, polars) are not printed."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
import traceback
import warnings
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
from engine.plan import (
    DEFAULT_ACQUISITION_LEVELS,
    DEFAULT_RETENTION_LEVELS,
    Plan,
    SegmentLimit,
    StrategyChoice,
)
from engine.portfolio import Portfolio
from engine.stdio import reserve_stdout
from engine.cli.textfmt import number, plural

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


def discount_rate(text: str) -> float:
    """A per-period rate as a fraction: ``10`` (a percent by mistake) is refused."""
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if rate < 0 or rate > 1:  # NaN passes on to the plan's own check
        hint = f": for {rate:g}% write --discount-rate {rate / 100:.2f}" if 1 < rate <= 100 else ""
        raise argparse.ArgumentTypeError(
            f"{text} is not a per-period rate between 0 and 1 (10% is 0.10){hint}"
        )
    return rate


def _levels(text: str) -> tuple[float, ...]:
    levels = []
    for part in text.split(","):
        try:
            level = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} in {text!r} is not a number (expected e.g. 0,1,2,5)"
            ) from None
        if not math.isfinite(level) or level < 0:
            raise argparse.ArgumentTypeError(f"levels must be finite and >= 0, got {part!r}")
        levels.append(level)
    return tuple(levels)


def _param(text: str) -> tuple[str, str, Any]:
    """``KIND.NAME=VALUE``; the value is read as JSON (number, true/false, list), else text."""
    key, sep, raw = text.partition("=")
    kind, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or kind not in STRATEGY_KINDS:
        raise argparse.ArgumentTypeError(
            f"expected KIND.NAME=VALUE with KIND one of {', '.join(STRATEGY_KINDS)}, "
            f"got {text!r}"
        )
    value: Any = raw
    with contextlib.suppress(ValueError):
        value = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
    return kind, name, value


STRATEGY_KINDS = ("metric", "cost", "allocation")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.default in (None, [], argparse.SUPPRESS)
        ):
            return text
        return text + " (default: %(default)s)"


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Plan flags shared by every command that runs an allocation."""
    g = parser.add_argument_group(
        "plan (flags override --plan; a default 'from the plan' is the --plan file's value, "
        "else the example's with --example, else the one given)"
    )
    g.add_argument("--plan", type=Path, help="Plan JSON (protobuf JSON of equity_engine.v1.Plan)"
                   " (default: none, the built-in plan defaults)")
    g.add_argument("--budget", type=float,
                   help="total budget for the period (default: from the plan, else no limit)")
    g.add_argument("--acquisition-budget", type=float,
                   help="budget for acquisition (default: from the plan, else no limit)")
    g.add_argument("--retention-budget", type=float,
                   help="budget for retention (default: from the plan, else no limit)")
    g.add_argument("--cap", type=_amount, action="append", default=[], metavar="SEGMENT=AMOUNT",
                   help="most a segment may spend, repeatable (default: the plan's caps)")
    g.add_argument("--minimum", type=_amount, action="append", default=[],
                   metavar="SEGMENT=AMOUNT",
                   help="least a segment must spend, repeatable (default: the plan's minimums)")
    g.add_argument("--discount-rate", type=discount_rate, metavar="RATE",
                   help="per period, a fraction: 0.10 for 10%% (default: from the plan, else 0.10)")
    g.add_argument("--horizon", type=int,
                   help="periods valued (default: from the plan, else infinite)")
    g.add_argument("--retention-levels", type=_levels, metavar="L1,L2,...",
                   help="retention spend levels per customer per period, e.g. 0,1,2,5 "
                   "(default: from the plan, else "
                   + ",".join(f"{v:g}" for v in DEFAULT_RETENTION_LEVELS) + ")")
    g.add_argument("--acquisition-levels", type=_levels, metavar="L1,L2,...",
                   help="acquisition spend levels per prospect, e.g. 0,0.5,1 "
                   "(default: from the plan, else "
                   + ",".join(f"{v:g}" for v in DEFAULT_ACQUISITION_LEVELS) + ")")
    g.add_argument("--metric", help="metric strategy (default: from the plan, else clv)")
    g.add_argument("--cost",
                   help="cost strategy (default: from the plan, else exponential-response)")
    g.add_argument("--allocator", help="allocation strategy (default: from the plan, else lp)")
    g.add_argument("--solver", choices=("auto", "highs", "cbc"),
                   help="LP solver of the lp allocator (default: from the plan, else auto)")
    g.add_argument("--param", type=_param, action="append", default=[],
                   metavar="KIND.NAME=VALUE",
                   help="a strategy parameter, e.g. cost.k=0.1 or allocation.solver=cbc; KIND "
                   "is metric, cost or allocation; repeatable; `equity plugins` lists them "
                   "(default: the plan's parameters)")


def add_portfolio_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("portfolio")
    g.add_argument("--customers", type=Path,
                   help="customers table (.parquet, .csv, .arrow) (default: none)")
    g.add_argument("--prospects", type=Path, help="prospect pools table (default: none)")
    g.add_argument("--options", type=Path, help="explicit options table (default: none)")
    g.add_argument("--transactions", type=Path,
                   help="transaction log (customer_id, date, amount; CSV, Parquet or CDNOW): "
                   "customers are valued from it by the 'bgnbd' metric unless --metric says "
                   "(default: none)")
    g.add_argument("--calibration-end",
                   help="last date the CLV model learns from, YYYY-MM-DD (default: the last "
                   "date of the log)")
    g.add_argument("--time-unit", choices=("day", "week"),
                   help="CLV model time unit (default: the metric's, week)")
    g.add_argument("--example", action="store_true",
                   help="use the built-in example portfolio and plan (not with --customers, "
                   "--prospects, --options or --transactions)")
    g.add_argument("--example-size", type=int, default=5_000, help="customers in the example")


def load_inputs(args: argparse.Namespace) -> tuple[Portfolio, Plan]:
    plan = Plan()
    customers = prospects = options = None
    mixed = [f"--{name}" for name in ("customers", "prospects", "options", "transactions")
             if getattr(args, name, None)]
    if args.example and mixed:
        raise InvalidInputError.single(
            "--example", f"cannot be combined with {', '.join(mixed)}: the example brings its "
            "own customers, pools and plan; drop --example to use your files"
        )
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
    plan = _params(plan, args)
    return Portfolio(customers, prospects, options, transactions), plan


def _transactions_metric(plan: Plan, args: argparse.Namespace) -> Plan:
    """--transactions implies the bgnbd metric; --calibration-end / --time-unit set its params."""
    metric = plan.metric if args.metric or plan.metric.name != "clv" else StrategyChoice("bgnbd")
    params = dict(metric.params)
    if args.calibration_end:
        from engine.clv.transactions import parse_calibration_end

        parse_calibration_end(args.calibration_end, field="--calibration-end")
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
        ("retention_levels", "retention_levels"),
        ("acquisition_levels", "acquisition_levels"),
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


def _params(plan: Plan, args: argparse.Namespace) -> Plan:
    """Apply ``--param KIND.NAME=VALUE``, each checked against the strategy's declared
    parameters so a wrong name or value names the flag."""
    if not getattr(args, "param", None):
        return plan
    from engine.plugins import default_registry

    registry = default_registry()
    changes: dict[str, StrategyChoice] = {}
    for kind, name, value in args.param:
        choice: StrategyChoice = changes.get(kind, getattr(plan, kind))
        flag = f"--param {kind}.{name}"
        declared = registry.info(kind, choice.name).cls.params
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidInputError.single(
                flag, f"{kind} strategy {choice.name!r} has no parameter {name!r}; known: {known}"
            )
        value = declared[name].check(flag, value)
        changes[kind] = StrategyChoice(choice.name, dict(choice.params) | {name: value})
    return plan.with_overrides(**changes)


def print_summary(summary: dict[str, Any]) -> None:
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
    print(f"time             {summary['seconds']['total']:.3f} s")
    for note in summary.get("notes", []):
        print(f"note             {note}")


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
    ext = args.fmt
    write_table(customers, args.out / f"customers.{ext}")
    write_table(prospects, args.out / f"prospects.{ext}")
    (args.out / "plan.json").write_text(plan.to_json() + "\n")
    print(
        f"wrote {args.out}/customers.{ext} ({plural(customers.height, 'row')}), "
        f"prospects.{ext} ({plural(prospects.height, 'pool')}), plan.json"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equity", description="Equity Engine")
    parser.add_argument("--version", action="version", version=f"equity-engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("allocate", help="allocate budgets to maximize total customer equity")
    add_portfolio_arguments(p)
    add_plan_arguments(p)
    p.add_argument("--output", type=Path,
                   help="per-customer plan (.parquet or .csv) (default: not written)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("plugins", help="list loaded strategies and plugin failures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("example", help="write the example portfolio and plan to files")
    p.add_argument("--out", type=Path, default=Path("example"), help="output directory")
    p.add_argument("--size", type=int, default=5_000, help="customers in the example")
    p.add_argument("--format", dest="fmt", choices=("parquet", "csv"), default="parquet",
                   help="table format; csv opens in a spreadsheet")
    p.set_defaults(func=cmd_example)

    for module in EXTENSIONS:
        importlib.import_module(module).add_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
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


def _broken_pipe() -> int:
    """The reader of stdout went away: point stdout at the null device so the interpreter's
    final flush is quiet, and exit as a tool ended by SIGPIPE does (128 + 13)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (AttributeError, OSError, ValueError):  # not a real file (captured output)
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    reserve_stdout()  # only what the engine prints reaches stdout (engine/stdio.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not os.environ.get("EQUITY_DEBUG"):
                warnings.simplefilter("ignore")  # third-party warnings are not the user's
            code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EQUITY_DEBUG"):
            traceback.print_exc()
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
