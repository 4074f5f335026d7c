"""Planning sub-commands: ``equity frontier``, ``equity compare`` and ``equity report``.

They take the same portfolio and plan flags as ``equity allocate``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from engine.cli.arguments import add_plan_arguments, add_portfolio_arguments, load_inputs
from engine.cli.textfmt import number, plural
from engine.io import read_table, write_table


class Progress:
    """Phase and percentage on stderr: one updating line on a terminal, else one line per
    phase (so logs stay short)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.phase = ""
        self.last = 0.0

    def __call__(self, phase: str, done: float) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        elapsed = now - self.started
        if self.tty:
            if phase != self.phase or now - self.last > 0.2 or done >= 1.0:
                self.stream.write(f"\r\033[K{elapsed:7.1f}s  {phase} {100 * done:5.1f}%")
                self.stream.flush()
                self.last = now
        elif phase != self.phase:
            self.stream.write(f"{elapsed:7.1f}s  {phase}\n")
            self.stream.flush()
        self.phase = phase

    def close(self) -> None:
        if self.tty and not self.quiet and self.phase:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _print_json(obj: Any) -> None:
    print(json.dumps(_jsonable(obj), indent=2))


def _money(x: Any) -> str:
    return number(x)


def _print_frame(frame: pl.DataFrame) -> None:
    cols = frame.columns
    text = [[c for c in cols]]
    for row in frame.iter_rows():
        text.append([
            _money(v) if isinstance(v, float) else ("n/a" if v is None else str(v)) for v in row
        ])
    widths = [max(len(r[i]) for r in text) for i in range(len(cols))]
    for j, r in enumerate(text):
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------------------------


def cmd_frontier(args: argparse.Namespace) -> int:

    from engine.planning.frontier import frontier, integer_check

    progress = Progress(quiet=args.quiet)
    portfolio, plan = load_inputs(args)
    _check_uncertainty(args, plan)
    sure = None
    try:
        front = frontier(portfolio, plan, progress=progress)
        check = None
        if args.check > 0:
            lo, hi = front.min_budget, front.optimal_budget
            budgets = [lo + (hi - lo) * (i + 1) / (args.check + 1) for i in range(args.check)]
            progress("integer check", 0.0)
            check = integer_check(portfolio, plan, front, budgets)
        if args.uncertainty:
            from engine.planning.uncertainty import uncertainty_at_budgets

            progress("uncertainty", 0.0)
            sure = uncertainty_at_budgets(
                portfolio, plan, sorted({front.chosen_budget, front.optimal_budget}),
                args.uncertainty, args.seed)
    finally:
        progress.close()
    if args.output:
        write_table(front.points, args.output)
    table = front.table(args.rows)
    key = sorted({front.min_budget, front.chosen_budget, front.optimal_budget})
    split = front.split_at(key)
    if args.json:
        _print_json({
            "frontier": front.summary(),
            "table": table.to_dicts(),
            "split": split.to_dicts(),
            "integer_check": None if check is None else check.to_dicts(),
            "uncertainty": None if sure is None else {"draws": args.uncertainty,
                                                      "budgets": sure.to_dicts()},
        })
        return 0
    s = front.summary()
    if s["method"] == "solves":  # limits on other resources: exact LPs at budgets, a band between
        print(f"frontier         {plural(s['breakpoints'], 'exact LP solve')} at budgets, within "
              f"{_money(s['max_gap'])} between them, {s['seconds']:.2f} s")
    else:
        print(f"frontier         exact LP ({s['method']}), "
              f"{plural(s['breakpoints'], 'breakpoint')}, {s['seconds']:.2f} s "
              f"({s['model_seconds']:.2f} s of it building the model)")
    print(f"equity before    {_money(s['equity_before'])}")
    print(f"least budget     {_money(s['min_budget'])}")
    print(f"optimal budget   {_money(s['optimal_budget'])}  equity {_money(s['optimal_equity'])}"
          f"  gain {_money(s['optimal_gain'])}")
    if s["plan_budget"] is not None:
        print(f"plan budget      {_money(s['plan_budget'])}  equity {_money(s['chosen_equity'])}"
              f"  marginal net equity per unit {number(s['chosen_slope'], '.6f')}")
    print("slope = net equity one more unit of budget buys (shadow price of the budget); "
          "the optimal budget is where it reaches 0\n")
    _print_frame(table.select("budget", "equity", "equity_gain", "slope",
                              *[c for c in ("retention", "acquisition") if c in table.columns]))
    print("\nspend by segment and kind at the least, the plan's and the optimal budget")
    wide = split.with_columns(pl.col("budget").map_elements(_money, return_dtype=pl.String)
                              .alias("at")).pivot(on="at", index=["segment", "kind"],
                                                  values="spend")
    _print_frame(wide)
    if check is not None:
        print("\nintegral plans (allocate) vs the LP frontier")
        _print_frame(check)
    if sure is not None:
        print(f"\nhow sure: the integral plan's gain under {args.uncertainty:,} draws of the "
              "estimated parameters, at the plan's and the optimal budget")
        _print_frame(sure)
    for note in s["notes"]:
        print(f"note: {note}")
    return 0


def _read_current(path: Path | None) -> pl.DataFrame | None:
    return None if path is None else read_table(path, "current_plan")


def _scenario_values(args: argparse.Namespace, discount_rate: float) -> tuple[list[float],
                                                                              list[float]]:
    if args.no_scenarios:
        return [], []
    rates = list(args.scenario_discount_rate)
    factors = list(args.scenario_response)
    if not rates and not factors:
        rates = [r for r in (discount_rate - 0.05, discount_rate + 0.05) if r >= 0]
        factors = [0.5, 1.5]
    return rates, factors


def cmd_compare(args: argparse.Namespace) -> int:

    from engine.constraints import build_constraints
    from engine.planning.scenarios import FixedLevels, compare, kind_split, robustness

    progress = Progress(quiet=args.quiet)
    portfolio, plan = load_inputs(args)
    current = _read_current(args.current_plan)
    _check_uncertainty(args, plan)
    try:
        comp = compare(portfolio, plan, current, progress=progress,
                       uncertainty=args.uncertainty, seed=args.seed)
        kinds = kind_split(comp.optimum, build_constraints(plan, comp.optimum.options))
        rates, factors = _scenario_values(args, plan.discount_rate)
        scen = None
        if rates or factors:
            # the optimum keeps its very levels (and so its use of contacts, calls...)
            plans: dict[str, Any] = {
                "optimum": FixedLevels.of(comp.optimum, comp.evaluations[0])}
            if current is not None:
                plans["current"] = current
            scen = robustness(portfolio, plan, plans, rates, factors, progress=progress,
                              planned=comp.optimum, planned_frontier=comp.frontier)
    finally:
        progress.close()
    if args.json:
        _print_json({
            "plans": comp.summary().to_dicts(),
            "roc": comp.roc().to_dicts(),
            "acquisition_vs_retention": kinds,
            "money_moved": None if comp.moved is None else comp.moved.to_dicts(),
            "same_money": comp.same_money,
            "scenarios": None if scen is None else scen.to_dicts(),
            "uncertainty": _uncertainty(comp.optimum.summary),
            "notes": comp.notes + [n for e in comp.evaluations for n in e.notes],
        })
        return 0
    print("plans (optimum_same_money: LP bound for each plan's own spend; gain_available >= 0)")
    _print_frame(comp.summary().drop("equity_before"))
    print("\nReturn on Customer by kind (acquisition starts from no equity: undefined)")
    _print_frame(comp.roc().filter(pl.col("scope") != "segment").drop("scope"))
    print(f"\nacquisition vs retention ({kinds['budgets']} budgets): spend "
          + ", ".join(f"{k} {_money(v)}" for k, v in kinds["spend"].items()))
    if "marginal" in kinds:
        for k, v in kinds["marginal"].items():
            print(f"  {k:<12} next unit returns {number(v['next_unit'], '.6f')}, last unit "
                  f"{number(v['last_unit'], '.6f')} (net equity per unit)")
    else:
        for k, v in kinds["shadow_price"].items():
            print(f"  {k:<12} shadow price {number(v, '.6f')}")
    for k, v in kinds.get("gain_moving_one_unit", {}).items():
        shown = v if isinstance(v, float) else v.get("exact")
        print(f"  moving one unit {k}: {number(shown, '+.6f')}")
    if comp.moved is not None:
        print("\nmoney moved by segment and kind")
        _print_frame(comp.moved)
    if scen is not None:
        print("\nthe same plans under changed assumptions")
        _print_frame(scen)
    _print_uncertainty(comp.optimum.summary)
    for note in comp.notes:
        print(f"note: {note}")
    return 0


def _check_uncertainty(args: argparse.Namespace, plan: Any) -> None:
    if args.uncertainty:
        from engine.planning.uncertainty import check_uncertainty

        check_uncertainty(plan, args.uncertainty)


_UNCERTAINTY = ("uncertainty_draws", "equity_gain_interval", "probability_beats_nothing",
                "current_gain_interval", "probability_beats_current")


def _uncertainty(summary: Any) -> dict[str, Any] | None:
    """The optimum's uncertainty fields (``--uncertainty``), or None without draws."""
    if not summary.get("uncertainty_draws"):
        return None
    return {k: summary.get(k) for k in _UNCERTAINTY if summary.get(k) is not None}


def _print_uncertainty(summary: Any) -> None:
    band = summary.get("equity_gain_interval")
    if not band:
        return
    print(f"\nhow sure ({summary['uncertainty_draws']:,} draws of the estimated parameters)")
    print(f"  optimum gain   {_money(band['p5'])} to {_money(band['p95'])} (p5-p95, median "
          f"{_money(band['p50'])}); P(gain > 0) "
          f"{number(summary['probability_beats_nothing'], '.3f')}")
    current = summary.get("current_gain_interval")
    if current:
        print(f"  current gain   {_money(current['p5'])} to {_money(current['p95'])} (p5-p95, "
              f"median {_money(current['p50'])}); P(optimum beats current) "
              f"{number(summary['probability_beats_current'], '.3f')}")


def _input_files(args: argparse.Namespace) -> dict[str, str]:
    names = ("plan", "customers", "prospects", "options", "transactions", "current_plan",
             "response")
    return {n: str(getattr(args, n)) for n in names if getattr(args, n, None)}


def cmd_report(args: argparse.Namespace) -> int:

    from engine.planning.chart_process import ChartProcess

    # the charts' process starts first: it loads matplotlib while this one loads the engine,
    # reads the inputs and solves, and draws the charts while this one solves the scenarios
    html = args.format == "html"
    charts = None
    if html:
        try:
            charts = ChartProcess()
        except OSError as exc:  # no second process here: the charts are drawn in this one
            logging.getLogger(__name__).warning("charts drawn in process: %s", exc)
    progress = Progress(quiet=args.quiet)
    paths = None
    try:
        from engine.planning.report import (
            build_report,
            frontier_sender,
            report_json,
            send_charts,
            write_report,
        )

        portfolio, plan = load_inputs(args)
        current = _read_current(args.current_plan)
        rates, factors = _scenario_values(args, plan.discount_rate)
        _check_uncertainty(args, plan)
        data = build_report(portfolio, plan, current, progress=progress, top=args.top,
                            discount_rates=rates, response_factors=factors,
                            inputs=_input_files(args), uncertainty=args.uncertainty,
                            seed=args.seed,
                            frontier_ready=None if charts is None else frontier_sender(charts),
                            figures_ready=None if charts is None else
                            lambda ready: send_charts(charts, ready))
        if html:
            paths = write_report(data, args.out, progress, charts)
    finally:
        progress.close()
        if charts is not None:
            charts.close()
    if paths is None:  # --format json: the page's figures on stdout, no files
        _print_json(report_json(data))
        return 0
    if args.json:
        _print_json({"files": {k: str(v) for k, v in paths.items()},
                     "frontier": data.frontier.summary(),
                     "recommendation": data.decision["recommendation"]})
        return 0
    print(data.decision["recommendation"])
    print(f"wrote {paths['html']}")
    for name, path in paths.items():
        if name != "html":
            print(f"      {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:


    def common(p: argparse.ArgumentParser) -> None:
        add_portfolio_arguments(p)
        add_plan_arguments(p)
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
        p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    def scenarios(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("scenarios")
        g.add_argument("--current-plan", type=Path, metavar="FILE",
                       help="the firm's current plan: a table customer_id, spend (a pool's id is "
                            "its segment, its spend the pool's total) (default: none)")
        g.add_argument("--scenario-discount-rate", type=float, action="append", default=[],
                       metavar="RATE", help="re-evaluate the plans at this discount rate "
                                            "(repeatable; default: d - 0.05 and d + 0.05)")
        g.add_argument("--scenario-response", type=float, action="append", default=[],
                       metavar="FACTOR", help="re-evaluate with spend response this many times "
                                              "as strong (repeatable; default: 0.5 and 1.5)")
        g.add_argument("--no-scenarios", action="store_true", help="skip the scenarios")

    p = subparsers.add_parser(
        "frontier", help="exact equity-vs-total-budget frontier and the optimal budget"
    )
    common(p)
    p.add_argument("--rows", type=int, default=12, help="budgets shown in the table")
    p.add_argument("--output", type=Path,
                   help="every breakpoint (.parquet, .csv or .arrow) (default: not written)")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="also solve integral plans at N budgets and compare with the frontier")
    p.set_defaults(func=cmd_frontier)

    p = subparsers.add_parser(
        "compare", help="the plan next to doing nothing, the baselines and a current plan"
    )
    common(p)
    scenarios(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("report", help="HTML report (and PNG charts) of the plan")
    common(p)
    scenarios(p)
    p.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    p.add_argument("--top", type=int, default=20, help="customers shown by uplift")
    p.add_argument("--format", choices=("html", "json"), default="html",
                   help="html: write the page, its charts and report.json to --out; json: print "
                        "everything the page shows to stdout and write nothing")
    p.set_defaults(func=cmd_report)
