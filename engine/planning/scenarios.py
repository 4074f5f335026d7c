"""Plans side by side: the optimum, doing nothing, the baselines and the firm's own plan.

* ``evaluate_spend`` values a plan the user supplies (a table ``customer_id, spend``; a pool's
  id is its segment name and its spend is the pool's total) under the same model as the
  optimizer. The model only knows the plan's spend levels: a spend between two levels is
  valued as the mix of those two levels (what the LP could do with the same money), a spend
  below the cheapest level is raised to it and a spend above the dearest level is taken as
  spent with no further effect. Units the table leaves out do nothing.
* ``compare`` puts it next to the optimum (``allocate``), doing nothing and the ``uniform``
  and ``proportional`` baselines: equity, spend, Return on Customer in total, by segment and
  by kind, and where the money moves. A supplied plan is never reported better than the
  optimum: it is checked against the LP bound for the same money and the same rows (relaxed
  where the supplied plan breaks them).
* ``kind_split`` answers acquisition versus retention: with one shared budget, the split and
  the marginal equity of one more (and of the last) unit of each; with separate budgets, the
  shadow price of each and what moving one unit from one to the other gains (first order from
  the shadow prices, and exactly by re-solving the LP). It lives in
  ``engine.planning.acquisition_retention`` and is re-exported here.
* The evaluations themselves (``Evaluation``, ``evaluate_spend``, ``plan_usage``,
  ``roc_table``...) live in ``engine.planning.evaluation`` and are re-exported here.
* ``robustness`` evaluates fixed plans (the optimum's among them) under changed assumptions
  (discount rate, response strength) next to the plan re-optimized under them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import GE, LE, Constraint, build_constraints, spend_only
from engine.errors import EquityError, InvalidInputError, SolverError
from engine.options import OptionSet
from engine.plan import Plan, StrategyChoice
from engine.planning.acquisition_retention import kind_split as kind_split  # re-exported
from engine.planning.evaluation import (
    UNIT_COLUMNS,
    Evaluation,
    FixedLevels,
    broken_rows,
    evaluate_levels,
    evaluate_spend,
    evaluation_of,
    plan_usage,
    resource_use,
    roc_table,
    spend_allocation,
    spend_table,
    units_frame,
)
from engine.planning.frontier import Frontier, frontier_of
from engine.planning.progress import Progress, no_progress
from engine.plugins import Registry, default_registry
from engine.portfolio import Portfolio
from engine.result import PlanResult

__all__ = [
    "UNIT_COLUMNS",
    "Comparison",
    "Evaluation",
    "FixedLevels",
    "broken_rows",
    "compare",
    "evaluate_levels",
    "evaluate_spend",
    "evaluation_of",
    "kind_split",
    "known_bound",
    "money_moved",
    "plan_usage",
    "resource_use",
    "robustness",
    "roc_table",
    "same_money_bound",
    "scenario_variants",
    "spend_allocation",
    "spend_table",
    "with_response",
]

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# The comparison.
# --------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Every plan of one question, evaluated under one model."""

    plan: Plan
    optimum: PlanResult
    evaluations: list[Evaluation]
    moved: pl.DataFrame | None  # money by segment and kind: current plan vs optimum
    same_money: dict[str, Any] | None  # the optimum for the current plan's money and rows
    notes: list[str] = field(default_factory=list)
    frontier: Frontier | None = None  # the optimum's frontier (spend-only rows), when traced
    _roc: pl.DataFrame | None = field(default=None, init=False, repr=False)

    def summary(self) -> pl.DataFrame:
        """One row per plan; ``optimum_same_money`` is the LP bound for that plan's spend and
        rows, ``gain_available`` what re-allocating the same money would add (never < 0)."""
        rows = [ev.totals() for ev in self.evaluations]
        frame = pl.DataFrame([{k: v for k, v in r.items() if k not in ("notes", "breaks")}
                              for r in rows])
        bounds = [ev.bound if ev.bound is not None else math.nan for ev in self.evaluations]
        return frame.with_columns(
            pl.Series("optimum_same_money", bounds, dtype=pl.Float64),
            (pl.Series(bounds, dtype=pl.Float64) - pl.col("equity_after")).alias(
                "gain_available"),
            pl.Series("breaks", [", ".join(r["breaks"]) for r in rows], dtype=pl.String),
        ).with_columns(pl.col("optimum_same_money", "gain_available").fill_nan(None))

    def roc(self) -> pl.DataFrame:
        """``roc_table`` of the evaluations, computed once (the page and the JSON share it)."""
        if self._roc is None or self._roc["plan"].n_unique() != len(self.evaluations):
            self._roc = roc_table(self.evaluations)
        return self._roc

    def evaluation(self, name: str) -> Evaluation | None:
        return next((e for e in self.evaluations if e.name == name), None)


def _without_minimums(plan: Plan) -> Plan:
    limits = tuple(replace(lim, minimum=None) for lim in plan.segment_limits if lim.cap is not None)
    return plan.with_overrides(segment_limits=limits)


def compare(
    portfolio: Portfolio,
    plan: Plan,
    current: pl.DataFrame | None = None,
    registry: Registry | None = None,
    progress: Progress | None = None,
    baselines: Sequence[str] = ("uniform", "proportional"),
    uncertainty: int = 0,
    seed: int = 0,
) -> Comparison:
    """The optimum next to doing nothing, the baselines and (optionally) the current plan;
    ``uncertainty`` > 0: the optimum (and the current plan) re-valued under that many draws
    of the estimated parameters, in the optimum's summary (engine.planning.uncertainty)."""
    from engine.pipeline import allocate, build_model

    registry = registry or default_registry()
    progress = progress or no_progress
    d = plan.discount_rate
    progress("optimum", 0.0)
    model = build_model(portfolio, plan, registry)  # once: the baselines share its options
    optimum = allocate(portfolio, plan, registry, model=model)
    if uncertainty:
        from engine.planning.uncertainty import add_uncertainty

        progress("uncertainty", 0.05)
        add_uncertainty(portfolio, plan, model, optimum, uncertainty, seed, current)
    options = optimum.options
    rows = build_constraints(plan, options)
    notes: list[str] = []
    evaluations = [evaluation_of(optimum, "optimum", d)]
    before = options.value[options.baseline]
    evaluations.append(Evaluation(
        "do nothing", units_frame(options, options.cost[options.baseline], before), d,
        resources={n: u[options.baseline] for n, u in options.extra.items()}))
    for i, name in enumerate(baselines):
        progress(f"baseline {name}", (i + 1) / (len(baselines) + 3))
        base_plan = plan.with_overrides(allocation=StrategyChoice(name))
        try:
            if any(lim.minimum for lim in plan.segment_limits):
                base_plan = _without_minimums(base_plan)
                notes.append(f"{name}: segment minimums dropped (the baseline cannot honour them)")
            if base_plan.resource_limits:
                base_plan = base_plan.with_overrides(resource_limits=())
                used = ", ".join(sorted({r.resource for r in plan.resource_limits}))
                notes.append(f"{name}: limits on {used} dropped (the baseline spends alike "
                             "whatever they use); the rows it breaks are listed")
            base_model = replace(model, rows=build_constraints(base_plan, options),
                                 timings=dict(model.timings))
            ev = evaluation_of(allocate(portfolio, base_plan, registry, model=base_model), name, d)
            if plan.resource_limits:
                ev.broken = broken_rows(options, rows, ev.units["spend"].to_numpy(), ev.resources)
            if ev.spend == 0:
                notes.append(f"{name}: spends nothing (no common level fits the budgets)")
            evaluations.append(ev)
        except EquityError as exc:
            notes.append(f"{name}: not available ({exc})")
    moved = same_money = None
    if current is not None:
        progress("current plan", 0.8)
        evaluations.append(evaluate_spend(options, rows, current, "current", d))
    progress("frontier", 0.85)
    front = frontier_of(options, rows, plan.total_budget) if spend_only(rows) else None
    progress("bounds", 0.9)
    for ev in evaluations[1:]:
        if ev.name != "current" and known_bound(options, rows, ev, front) is not None:
            continue  # the frontier at its spend: no LP to solve
        found, solution = _same_money(options, rows, ev)
        if ev.name == "current":
            same_money = found
            lp_plan = Evaluation(
                "optimum, same money", units_frame(options, solution.spend(options),
                                                    solution.equity(options)), d,
                ["the LP plan for the current plan's spend and rows (customers may be split "
                 "between two levels)"], bound=found["lp_bound"],
                resources=resource_use(options, solution))
    if current is not None:
        evaluations.append(lp_plan)
        moved = money_moved(evaluations[-2], evaluations[0], lp_plan)
    progress("done", 1.0)
    return Comparison(plan, optimum, evaluations, moved, same_money, notes, front)


def known_bound(
    options: OptionSet,
    rows: list[Constraint],
    ev: Evaluation,
    front: Frontier | None = None,
    solved: tuple[float, float] | None = None,
) -> float | None:
    """The same-money bound of a plan (what ``same_money_bound`` solves) when it is known
    without an LP, else None. Rows on spend only and a plan breaking no row but the total
    budget: nothing is relaxed, so it is the LP optimum at the plan's spend with every other
    row kept: the frontier ``front`` there, or ``solved = (budget, bound)`` of an LP already
    solved on these rows when the plan spends that budget. A plan at every unit's cheapest
    level: the LP has no money to move, the bound is the cheapest levels' best value.
    Checked as ``same_money_bound`` is; stored in ``ev.bound``."""
    if not spend_only(rows):
        return None
    spend = ev.units["spend"].to_numpy()
    total = float(spend.sum())
    first = options.hull.points[options.hull.offsets[:-1]]
    tol = 1e-12 * max(1.0, abs(total))
    if np.array_equal(spend, options.cost[first]):
        bound = float(options.value[first].sum())
    elif set(broken_rows(options, rows, spend, ev.resources)) - {"budget"}:
        return None
    elif solved is not None and abs(solved[0] - total) <= tol:
        bound = float(solved[1])
    elif front is not None and total >= front.min_budget * (1 + 1e-12) + 1e-9:
        bound = float(front.equity_at([total])[0])
    else:
        return None
    if ev.equity_after > bound + 1e-9 * max(1.0, abs(bound)):
        raise SolverError(
            f"plan {ev.name!r} ({ev.equity_after:.9g}) came out above the LP frontier at its "
            f"spend ({bound:.9g}): the model is inconsistent"
        )
    ev.bound = bound
    return bound


def same_money_bound(
    options: OptionSet, rows: list[Constraint], ev: Evaluation
) -> dict[str, Any]:
    """The LP optimum with the plan's total spend and the other rows, each relaxed just
    enough to admit the plan: a bound it cannot beat (checked; stored in ``ev.bound``)."""
    return _same_money(options, rows, ev)[0]


def _same_money(
    options: OptionSet, rows: list[Constraint], ev: Evaluation
) -> tuple[dict[str, Any], Allocation]:
    from engine.optimize import lp

    spend = ev.units["spend"].to_numpy()
    usage = plan_usage(options, rows, spend, ev.resources)
    relaxed = []
    for row, used in zip(rows, usage, strict=True):
        if row.name == "budget":
            continue
        rhs = max(row.rhs, used) if row.sense == LE else min(row.rhs, used)
        relaxed.append(replace(row, rhs=float(rhs)))
    total = float(spend.sum())
    relaxed.append(Constraint("budget", np.ones(options.n_cells, dtype=bool), LE, total))
    allocation = lp.solve(options, relaxed, lp.LpSettings(repair=False))
    objective = float(allocation.lp_objective or 0.0)
    bound = objective if allocation.bound is None else float(allocation.bound)
    if ev.equity_after > bound + 1e-9 * max(1.0, abs(bound)):
        raise SolverError(
            f"plan {ev.name!r} ({ev.equity_after:.9g}) came out above the LP bound for the same "
            f"money ({bound:.9g}): the model is inconsistent"
        )
    ev.bound = bound
    return {
        "budget": total,
        "relaxed": [r.name for r, u in zip(rows, usage, strict=True)
                    if r.name != "budget" and ((r.sense == LE and u > r.rhs)
                                               or (r.sense == GE and u < r.rhs))],
        "lp_objective": objective,
        "lp_bound": bound,
        "gain_available": bound - ev.equity_after,
    }, allocation


def money_moved(
    current: Evaluation, optimum: Evaluation, same_money: Evaluation | None = None
) -> pl.DataFrame:
    """Spend by (segment, kind) under each plan and how much the optimum moves (``moved``:
    optimum minus current; ``moved_same_money``: the same-money optimum minus current)."""
    def cells(ev: Evaluation, name: str) -> pl.DataFrame:
        return ev.units.group_by(["segment", "kind"]).agg(pl.col("spend").sum().alias(name))

    out = cells(current, "current").join(cells(optimum, "optimum"), on=["segment", "kind"],
                                         how="full", coalesce=True)
    if same_money is not None:
        out = out.join(cells(same_money, "same_money"), on=["segment", "kind"], how="full",
                       coalesce=True)
    out = out.fill_null(0.0).with_columns((pl.col("optimum") - pl.col("current")).alias("moved"))
    if same_money is not None:
        out = out.with_columns((pl.col("same_money") - pl.col("current"))
                               .alias("moved_same_money"))
    return out.sort(["segment", "kind"])


# --------------------------------------------------------------------------------------------
# Robustness: the same plans under changed assumptions.
# --------------------------------------------------------------------------------------------


def with_response(portfolio: Portfolio, plan: Plan, factor: float) -> tuple[Portfolio, Plan]:
    """Spend response ``factor`` times as strong: every response rate k scaled by it (the
    tables' columns, the cost strategy's default and the plan's response curves)."""
    customers, prospects = portfolio.customers, portfolio.prospects
    if customers is not None and "retention_response" in customers.columns:
        customers = customers.with_columns(pl.col("retention_response") * factor)
    if prospects is not None and "acquisition_response" in prospects.columns:
        prospects = prospects.with_columns(pl.col("acquisition_response") * factor)
    cost = plan.cost
    if cost.name in ("exponential-response", "activity-based"):
        params = dict(cost.params)
        params["response"] = float(params.get("response", 0.05)) * factor
        cost = StrategyChoice(cost.name, params)
    curves = tuple(replace(c, k=c.k * factor) for c in plan.response_curves)
    return Portfolio(customers, prospects, portfolio.options), plan.with_overrides(
        cost=cost, response_curves=curves)


def scenario_variants(
    portfolio: Portfolio,
    plan: Plan,
    discount_rates: Sequence[float] = (),
    response_factors: Sequence[float] = (),
) -> list[tuple[str, Portfolio, Plan]]:
    """``(label, portfolio, plan)`` of each assumption ``robustness`` re-optimizes under, the
    plan as planned first (a discount rate the plan refuses is left out)."""
    variants: list[tuple[str, Portfolio, Plan]] = [("as planned", portfolio, plan)]
    for rate in discount_rates:
        try:
            variants.append((f"discount rate {rate:g}", portfolio,
                             plan.with_overrides(discount_rate=float(rate))))
        except InvalidInputError:
            continue
    for factor in response_factors:
        pf, pl_ = with_response(portfolio, plan, float(factor))
        variants.append((f"response x{factor:g}", pf, pl_))
    return variants


def robustness(
    portfolio: Portfolio,
    plan: Plan,
    plans: Mapping[str, pl.DataFrame | FixedLevels],
    discount_rates: Sequence[float] = (),
    response_factors: Sequence[float] = (),
    registry: Registry | None = None,
    progress: Progress | None = None,
    planned: PlanResult | None = None,
    planned_frontier: Frontier | None = None,
) -> pl.DataFrame:
    """Each fixed plan (``customer_id, spend``, or ``FixedLevels``: the levels themselves)
    under each changed assumption, next to the
    plan re-optimized under it: equity, spend, ROC and what sticking to the plan costs.
    ``planned``: the optimum of ``plan`` itself when the caller has it (not solved again);
    ``planned_frontier``: its frontier (the plans' bounds as planned read off it)."""
    from engine.pipeline import allocate

    registry = registry or default_registry()
    progress = progress or no_progress
    variants = scenario_variants(portfolio, plan, discount_rates, response_factors)
    rows: list[dict[str, Any]] = []
    for i, (label, pf, variant) in enumerate(variants):
        progress(f"scenario {label}", i / len(variants))
        best = planned if i == 0 and planned is not None else allocate(pf, variant, registry)
        options = best.options
        constraints = build_constraints(variant, options)
        d = variant.discount_rate
        evs = [evaluation_of(best, "re-optimized", d)]
        for name, table in plans.items():
            if isinstance(table, FixedLevels) and table.fits(options):
                evs.append(evaluate_levels(options, constraints, table.allocation, name, d))
            else:
                spend = table.spend_table if isinstance(table, FixedLevels) else table
                evs.append(evaluate_spend(options, constraints, spend, name, d))
        front = planned_frontier if (i == 0 and planned is not None) else None
        at_budget = None
        if variant.total_budget is not None and best.summary.get("bound") is not None:
            at_budget = (float(variant.total_budget), float(best.summary["bound"]))
        for ev in evs[1:]:
            if known_bound(options, constraints, ev, front, at_budget) is None:
                same_money_bound(options, constraints, ev)
        for ev in evs:
            bound = ev.bound if ev.bound is not None else ev.equity_after
            rows.append({
                "assumption": label,
                "plan": ev.name,
                "spend": ev.spend,
                "equity_after": ev.equity_after,
                "equity_gain": ev.equity_after - ev.equity_before,
                "roc": ev.roc,
                "below_optimum_bound": bound - ev.equity_after,
            })
    progress("scenarios", 1.0)
    return pl.DataFrame(rows).with_columns(pl.col("roc").fill_nan(None))


