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

from engine.allocation import Allocation, row_usage
from engine.constraints import GE, LE, Constraint, build_constraints, spend_only
from engine.errors import EquityError, InvalidInputError, SolverError
from engine.options import KINDS, OptionSet
from engine.plan import Plan, StrategyChoice
from engine.planning.acquisition_retention import kind_split as kind_split  # re-exported
from engine.planning.frontier import Frontier, frontier_of
from engine.planning.progress import Progress, no_progress
from engine.plugins import Registry, default_registry
from engine.portfolio import Portfolio
from engine.result import PlanResult
from engine.valuation import return_on_customer

FloatArray = NDArray[np.float64]
UNIT_COLUMNS = ("customer_id", "kind", "segment", "spend", "equity_before", "equity_after")


# --------------------------------------------------------------------------------------------
# Evaluating plans.
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """A plan under the model: one row per unit (``UNIT_COLUMNS`` plus ``uplift``)."""

    name: str
    units: pl.DataFrame
    discount_rate: float
    notes: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # plan rows it breaks
    bound: float | None = None  # LP bound of the optimum it is compared with
    # per unit, its use of each resource besides spend the plan limits (contacts, calls...)
    resources: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def equity_before(self) -> float:
        return float(self.units["equity_before"].sum())

    @property
    def equity_after(self) -> float:
        return float(self.units["equity_after"].sum())

    @property
    def spend(self) -> float:
        return float(self.units["spend"].sum())

    @property
    def roc(self) -> float:
        return float(return_on_customer(self.equity_before, self.equity_after, self.spend,
                                        self.discount_rate))

    def totals(self) -> dict[str, Any]:
        return {
            "plan": self.name,
            "spend": self.spend,
            "equity_before": self.equity_before,
            "equity_after": self.equity_after,
            "equity_gain": self.equity_after - self.equity_before,
            "roc": self.roc,
            "breaks": list(self.broken),
            "notes": list(self.notes),
        }


def evaluation_of(result: PlanResult, name: str, discount_rate: float) -> Evaluation:
    """An ``allocate`` result as an evaluation."""
    units = result.units.with_columns(  # pools by name, as in supplied plans
        pl.coalesce(pl.col("customer_id").cast(pl.String), pl.col("pool")).alias("customer_id")
    ).select(*UNIT_COLUMNS).with_columns(
        (pl.col("equity_after") - pl.col("equity_before")).alias("uplift")
    )
    notes = [] if result.summary.get("gap") in (None, 0.0) else [
        f"gap to the LP bound {result.summary['gap']:.2e}"
    ]
    return Evaluation(name, units, discount_rate, notes, bound=result.summary.get("bound"),
                      resources=resource_use(result.options, result.allocation))


def _units_frame(options: OptionSet, spend: FloatArray, after: FloatArray) -> pl.DataFrame:
    before = options.value[options.baseline]
    return pl.DataFrame({
        "customer_id": options.unit_id.cast(pl.String),
        "kind": np.array(KINDS)[options.kind],
        "segment": pl.Series(np.array(options.segments, dtype=object)[options.segment],
                             dtype=pl.String),
        "spend": spend,
        "equity_before": before,
        "equity_after": after,
        "uplift": after - before,
    })


def _by_unit_and_cost(options: OptionSet, unit: NDArray[np.int64]) -> NDArray[np.int64]:
    """Options by unit, cost, then best value first; without a sort when every unit lists its
    levels in strictly increasing cost (the usual layout)."""
    rising = np.diff(options.cost) > 0
    same_unit = unit[1:] == unit[:-1]
    if bool((rising | ~same_unit).all()):
        return np.arange(options.cost.size, dtype=np.int64)
    return np.lexsort((-options.value, options.cost, unit))


def spend_allocation(
    options: OptionSet, table: pl.DataFrame, name: str = "plan"
) -> tuple[Allocation, FloatArray, list[str]]:
    """Map a spend table onto the options: each unit mixes the two levels around its spend.

    Returns the allocation, the spend above each unit's dearest level (no effect) and notes.
    """
    if "customer_id" not in table.columns or "spend" not in table.columns:
        missing = [c for c in ("customer_id", "spend") if c not in table.columns]
        raise InvalidInputError.single(f"{name}.{missing[0]}", "required column is missing")
    spend_col = table["spend"]
    if not spend_col.dtype.is_numeric():
        raise InvalidInputError.single(f"{name}.spend", f"must be numeric, got {spend_col.dtype}")
    values = spend_col.cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise InvalidInputError.single(f"{name}.spend", "must be a finite number >= 0",
                                       int(np.flatnonzero(bad)[0]))
    ids = table["customer_id"].cast(pl.String)
    if ids.is_duplicated().any():
        row = int(np.flatnonzero(ids.is_duplicated().to_numpy())[0])
        raise InvalidInputError.single(f"{name}.customer_id", f"{ids[row]!r} appears twice", row)
    units = pl.DataFrame({"customer_id": options.unit_id.cast(pl.String),
                          "__unit": np.arange(options.n_units)})
    if units["customer_id"].is_duplicated().any():
        raise InvalidInputError.single(
            f"{name}.customer_id", "customer and pool ids overlap; rename the pools' segments"
        )
    joined = pl.DataFrame({"customer_id": ids, "spend": values}).with_row_index("__row").join(
        units, on="customer_id", how="left"
    )
    unknown = joined.filter(pl.col("__unit").is_null())
    if unknown.height:
        raise InvalidInputError.single(
            f"{name}.customer_id",
            f"{unknown.height} ids are not in the portfolio, first {unknown['customer_id'][0]!r}",
            int(unknown["__row"][0]),
        )
    notes = []
    target = options.cost[options.baseline].copy()
    given = joined["__unit"].to_numpy().astype(np.int64)
    target[given] = joined["spend"].to_numpy()
    if given.size < options.n_units:
        notes.append(f"{options.n_units - given.size} units not in the table do nothing")

    unit = options.unit_of_option
    order = _by_unit_and_cost(options, unit)
    cost = options.cost[order]
    starts = options.offsets[:-1]
    counts = np.diff(options.offsets)
    first, last = order[starts], order[starts + counts - 1]
    low = target < options.cost[first] * (1 - 1e-12)
    if low.any():
        notes.append(f"{int(low.sum())} units spend less than their cheapest level: raised to it")
    target = np.maximum(target, options.cost[first])
    excess = np.maximum(target - options.cost[last], 0.0)
    excess[excess <= 1e-12 * np.maximum(1.0, options.cost[last])] = 0.0
    if excess.any():
        notes.append(f"{int((excess > 0).sum())} units spend above their dearest level: "
                     f"{excess.sum():,.2f} spent with no effect")
    target = target - excess
    within = cost <= target[unit[order]] * (1 + 1e-12) + 1e-12
    count = np.bincount(unit[order], weights=within, minlength=options.n_units).astype(np.int64)
    lo_pos = starts + np.maximum(count, 1) - 1
    # Among options at the same cost the sort puts the best value first: step back to it.
    same = np.flatnonzero(lo_pos > starts)
    while same.size:
        tie = cost[lo_pos[same] - 1] == cost[lo_pos[same]]
        same = same[tie]
        lo_pos[same] -= 1
        same = same[lo_pos[same] > starts[same]]
    hi_pos = np.minimum(starts + count, starts + counts - 1)
    lo, hi = order[lo_pos], order[hi_pos]
    width = options.cost[hi] - options.cost[lo]
    theta = np.where(width > 0, (target - options.cost[lo]) / np.where(width > 0, width, 1.0), 0)
    theta = np.clip(theta, 0.0, 1.0)
    exact = theta <= 1e-12
    hi = np.where(exact, lo, hi)
    theta = np.where(exact, 0.0, theta)
    mixed = ~options.fractional & (theta > 0)
    if mixed.any():
        notes.append(f"{int(mixed.sum())} customers spend between two levels: valued as the mix")
    return Allocation(lo, hi, theta, "feasible", "none", "supplied"), excess, notes


def evaluate_spend(
    options: OptionSet,
    rows: list[Constraint],
    table: pl.DataFrame,
    name: str,
    discount_rate: float,
) -> Evaluation:
    """A supplied plan (``customer_id, spend``) under the model; reports the rows it breaks."""
    allocation, excess, notes = spend_allocation(options, table, name)
    spend = allocation.spend(options) + excess
    after = allocation.equity(options) - excess
    resources = resource_use(options, allocation)
    return Evaluation(name, _units_frame(options, spend, after), discount_rate, notes,
                      broken_rows(options, rows, spend, resources), resources=resources)


def resource_use(options: OptionSet, allocation: Allocation) -> dict[str, FloatArray]:
    """Per unit, its use of every resource column besides spend (contacts, calls...)."""
    return {name: allocation.mix(use) for name, use in options.extra.items()}


def plan_usage(
    options: OptionSet,
    rows: list[Constraint],
    spend: FloatArray,
    resources: dict[str, FloatArray] | None = None,
) -> FloatArray:
    """What a plan uses of each row (spend for budgets and caps, the row's own resource for a
    limit on contacts, calls...), from per-unit spend and resource use."""
    if all(r.resource == "cost" for r in rows):
        return row_usage(options, rows, spend)
    per_cell: dict[str, FloatArray] = {}
    out = np.zeros(len(rows))
    for k, row in enumerate(rows):
        name = row.resource
        if name not in per_cell:
            if name == "cost":
                use = spend
            elif resources is not None and name in resources:
                use = resources[name]
            else:
                raise InvalidInputError.single(
                    f"plan.resource_limits.{name}", "the plan's use of it is not known")
            per_cell[name] = np.bincount(options.cell, weights=use,
                                         minlength=options.n_cells).astype(np.float64)
        out[k] = float(per_cell[name][row.cells].sum())
    return out


def broken_rows(
    options: OptionSet,
    rows: list[Constraint],
    spend: FloatArray,
    resources: dict[str, FloatArray] | None = None,
) -> list[str]:
    """Names of the rows a plan breaks (relative tolerance 1e-9), from its per-unit spend and
    (for limits on other resources) its per-unit use of them."""
    usage = plan_usage(options, rows, spend, resources)
    return [
        r.name for r, u in zip(rows, usage, strict=True)
        if (r.sense == LE and u > r.rhs + 1e-9 * max(1.0, abs(r.rhs)))
        or (r.sense == GE and u < r.rhs - 1e-9 * max(1.0, abs(r.rhs)))
    ]


def roc_table(evaluations: Sequence[Evaluation]) -> pl.DataFrame:
    """ROC of each plan in total, per segment and per kind (long form).

    ROC = ((1 + d)(E + S) - S - E0) / E0 (``engine.valuation.return_on_customer``): E0 the
    equity at the start (doing nothing), E the plan's equity net of its spend S. Acquisition
    alone has no equity at the start (E0 = 0): its ROC is undefined (null)."""
    frames = []
    for ev in evaluations:
        u = ev.units
        parts = [
            u.select(pl.lit("total").alias("scope"), pl.lit("all").alias("group"),
                     pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                     pl.col("spend").sum()),
            u.group_by("segment").agg(pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                                      pl.col("spend").sum())
            .select(pl.lit("segment").alias("scope"), pl.col("segment").alias("group"),
                    "equity_before", "equity_after", "spend"),
            u.group_by("kind").agg(pl.col("equity_before").sum(), pl.col("equity_after").sum(),
                                   pl.col("spend").sum())
            .select(pl.lit("kind").alias("scope"), pl.col("kind").alias("group"),
                    "equity_before", "equity_after", "spend"),
        ]
        frame = pl.concat(parts)
        roc = return_on_customer(frame["equity_before"].to_numpy(),
                                 frame["equity_after"].to_numpy(), frame["spend"].to_numpy(),
                                 ev.discount_rate)
        frames.append(frame.with_columns(pl.lit(ev.name).alias("plan"),
                                         pl.Series("roc", roc).fill_nan(None)))
    out = pl.concat(frames).select("plan", "scope", "group", "spend", "equity_before",
                                   "equity_after", "roc")
    return out.sort(["scope", "group", "plan"], maintain_order=True)


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
        "do nothing", _units_frame(options, options.cost[options.baseline], before), d,
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
                "optimum, same money", _units_frame(options, solution.spend(options),
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
    rows: list[dict[str, Any]] = []
    for i, (label, pf, variant) in enumerate(variants):
        progress(f"scenario {label}", i / len(variants))
        best = planned if (i == 0 and planned is not None) else allocate(pf, variant, registry)
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
        solved = None
        if variant.total_budget is not None and best.summary.get("bound") is not None:
            solved = (float(variant.total_budget), float(best.summary["bound"]))
        for ev in evs[1:]:
            if known_bound(options, constraints, ev, front, solved) is None:
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


@dataclass(frozen=True)
class FixedLevels:
    """A plan kept level by level (an ``Allocation`` over one layout of options): under a
    changed assumption with the same units, levels and costs it keeps its very levels, so its
    use of contacts, calls... is kept too, which its spend alone does not say; otherwise its
    ``spend_table`` is valued."""

    allocation: Allocation
    offsets: NDArray[np.int64]
    cost: FloatArray
    spend_table: pl.DataFrame

    @classmethod
    def of(cls, result: PlanResult, evaluation: Evaluation) -> FixedLevels:
        return cls(result.allocation, result.options.offsets, result.options.cost,
                   spend_table(evaluation))

    def fits(self, options: OptionSet) -> bool:
        return (np.array_equal(self.offsets, options.offsets)
                and np.array_equal(self.cost, options.cost))


def evaluate_levels(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    name: str,
    discount_rate: float,
) -> Evaluation:
    """A plan given by its levels (on these options' layout) under the model."""
    spend = allocation.spend(options)
    resources = resource_use(options, allocation)
    return Evaluation(name, _units_frame(options, spend, allocation.equity(options)),
                      discount_rate, [], broken_rows(options, rows, spend, resources),
                      resources=resources)


def spend_table(evaluation: Evaluation) -> pl.DataFrame:
    """An evaluated plan as a supplied plan (``customer_id, spend``)."""
    return evaluation.units.select("customer_id", "spend")
