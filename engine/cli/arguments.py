"""Flags shared by every command that runs an allocation, and how they become a plan.

``load_inputs`` is the one place where the portfolio files, the example and the plan JSON
meet the command line; flags override the plan field by field.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError
from engine.io import read_table
from engine.plan import (
    DEFAULT_ACQUISITION_LEVELS,
    DEFAULT_RETENTION_LEVELS,
    Plan,
    ResourceLimit,
    SegmentLimit,
    StrategyChoice,
)
from engine.portfolio import Portfolio


def _amount(text: str) -> tuple[str, float]:
    segment, sep, amount = text.rpartition("=")
    if not sep or not segment:
        raise argparse.ArgumentTypeError(f"expected SEGMENT=AMOUNT, got {text!r}")
    try:
        return segment, float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount in {text!r} is not a number") from None


def resource_limit(text: str) -> ResourceLimit:
    """``RESOURCE[:SEGMENT[/KIND]]<=X`` or ``>=X``: e.g. ``contacts<=1500``,
    ``calls:s1<=40``, ``contacts:s2/retention>=100``."""
    side = "max" if "<=" in text else "min" if ">=" in text else ""
    if not side:
        raise argparse.ArgumentTypeError(
            f"expected RESOURCE[:SEGMENT[/KIND]]<=X or >=X, got {text!r}"
        )
    head, _, amount = text.partition("<=" if side == "max" else ">=")
    try:
        value = float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount in {text!r} is not a number") from None
    resource, _, where = head.strip().partition(":")
    segment, _, kind = where.partition("/")
    if not resource:
        raise argparse.ArgumentTypeError(f"no resource named in {text!r}")
    if kind and kind not in ("retention", "acquisition"):
        raise argparse.ArgumentTypeError(f"kind in {text!r} must be retention or acquisition")
    return ResourceLimit(resource, segment=segment or None, kind=kind or None,
                         **{side: value})


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
    g.add_argument("--limit", type=resource_limit, action="append", default=[],
                   metavar="RESOURCE[:SEGMENT[/KIND]]<=X",
                   help="limit on a resource column of the options (cost is spend), <=X or "
                   ">=X, e.g. 'contacts<=1500', 'calls:s1<=40', 'contacts:s2>=100'; "
                   "repeatable (default: the plan's resource limits)")
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
    g.add_argument("--response", type=Path, metavar="CURVES.json",
                   help="response curves per segment and kind, as written by `equity "
                   "fit-response --output`; they replace the plan's (default: the plan's "
                   "response_curves, else the tables' columns, else the cost strategy's "
                   "defaults; docs/response.md)")
    g.add_argument("--uncertainty", type=_draws, default=0, metavar="N",
                   help="re-value the plan under N draws of the estimated parameters (fitted "
                   "curves; BG/NBD and Gamma-Gamma with --transactions): equity_gain_interval "
                   "(p5, p50, p95) and probability_beats_nothing (0: no draws)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the --uncertainty draws")


def _draws(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


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


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The plan of ``--plan`` with the flags applied, without reading any table (a
    cluster's workers read them)."""
    plan = Plan.from_file(args.plan) if args.plan else Plan()
    plan = _override(plan, args, bool(args.options) and not args.customers)
    return _params(plan, args)


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
    if args.limit:
        changes["resource_limits"] = plan.resource_limits + tuple(args.limit)
    if getattr(args, "response", None):
        from engine.response.files import read_curves

        changes["response_curves"] = read_curves(args.response)
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

