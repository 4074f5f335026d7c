"""How sure a plan is when the customers' values are estimated too, and against a current plan.

``engine.response.uncertainty`` draws the response curves only. Here each draw also takes,
when the customers were valued from a transaction log, the BG/NBD and Gamma-Gamma parameters
from their fitted covariances (log-normal, as ``engine.clv.intervals``: every draw
positive, the two models independent) and re-derives every customer's margin and retention
with ``engine.clv.value.customer_values`` (vectorised over customers; the expected streams
once per distinct (x, T)). Every customer's gain then changes, whatever its curve's source:

* a customer at spend s gains E(s; r0 + share (1 - r0) L(s)) - E(0; r0), with the draw's
  margin and r0, and share, k, shape resolved as the ``exponential-response`` cost model
  does (the segment's curve, drawn when fitted; else the table's ``retention_ceiling`` /
  ``retention_response`` columns, the ceiling kept as given; else the strategy's defaults);
* a pool gains N (a(A) CLV_new) - spend at its level(s), the prospects' values as given.

A current plan (``customer_id, spend``; a pool's id is its segment and its spend the pool's
total) is re-valued under the same draw at its own spends on the same curves, so each draw
gives both gains and P(plan beats current) is the share of draws where the plan's is larger.
A loop over draws, vectorised over customers inside each; no plan is re-solved.

``add_uncertainty`` writes the interval and probabilities into a solved plan's summary (for
``allocate``, ``compare`` and ``report``); ``uncertainty_at_budgets`` does it for the integral
plans at several total budgets (``frontier``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.clv.intervals import _draws
from engine.clv.value import CLVResult, customer_values
from engine.errors import InvalidInputError
from engine.plan import Plan
from engine.response.curves import lift
from engine.response.uncertainty import draw_parameters
from engine.valuation import Valuation, customer_equity, new_customer_equity

if TYPE_CHECKING:
    from engine.pipeline import Model
    from engine.portfolio import Portfolio
    from engine.result import PlanResult

Array = NDArray[np.float64]


class ValueDraws:
    """Customers' margin and retention under draws of the BG/NBD and Gamma-Gamma fits."""

    def __init__(self, clv: CLVResult, margin_ratio: float, draws: int,
                 rng: np.random.Generator) -> None:
        self.clv = clv
        self.margin_ratio = margin_ratio
        bg, gg = clv.bgnbd, clv.gamma_gamma
        if not bg.covariance or not gg.covariance:
            raise InvalidInputError.single(
                "--uncertainty", "the BG/NBD or Gamma-Gamma fit has no covariance to draw from")
        self.bg = _draws(np.array([bg.r, bg.alpha, bg.a, bg.b]), bg.covariance, draws, rng)
        self.gg = _draws(np.array([gg.p, gg.q, gg.gamma]), gg.covariance, draws, rng)
        self.gg[:, 1] = np.maximum(self.gg[:, 1], 1.0 + 1e-6)  # q > 1: a finite mean spend

    def values(self, d: int) -> tuple[Array, Array]:
        """(margin, retention) per customer of the log (``clv.rfm`` order) under draw d."""
        r, alpha, a, b = map(float, self.bg[d])
        p, q, gamma = map(float, self.gg[d])
        table = customer_values(
            self.clv.rfm, replace(self.clv.bgnbd, r=r, alpha=alpha, a=a, b=b),
            replace(self.clv.gamma_gamma, p=p, q=q, gamma=gamma), self.clv.valuation,
            self.clv.period_length, self.margin_ratio)
        return table["margin"].to_numpy(), table["retention"].to_numpy()


@dataclass
class _Customers:
    net: Array  # margin - service_cost (point estimate)
    service_cost: Array
    r0: Array
    share: Array  # the share of the gap to 1 closed at saturation (where no ceiling column)
    ceiling: Array | None  # the table's absolute ceilings, kept under every draw
    k: Array
    shape: Array  # 0: exponential
    segment: NDArray[Any]
    order: NDArray[np.intp] | None  # rows of the drawn values (rfm order) for these customers


def _segments(table: pl.DataFrame) -> NDArray[Any]:
    if "segment" not in table.columns:
        return np.full(table.height, "", dtype=object)
    return table["segment"].cast(pl.String).fill_null("").to_numpy()


def _customers(customers: pl.DataFrame, ceiling_share: float, response: float,
               values: ValueDraws | None) -> _Customers:
    r0 = customers["retention"].to_numpy().astype(np.float64)
    cost = (customers["service_cost"].to_numpy().astype(np.float64)
            if "service_cost" in customers.columns else np.zeros(r0.size))
    ceiling = (customers["retention_ceiling"].to_numpy().astype(np.float64)
               if "retention_ceiling" in customers.columns else None)
    k = (customers["retention_response"].to_numpy().astype(np.float64)
         if "retention_response" in customers.columns else np.full(r0.size, response))
    order = None
    if values is not None:  # the log's customers, matched by id as written
        ids = values.clv.rfm.select(pl.col("customer_id").cast(pl.String)).with_row_index("i")
        joined = customers.select(pl.col("customer_id").cast(pl.String)).join(
            ids, on="customer_id", how="left", maintain_order="left")
        if joined["i"].null_count():
            raise InvalidInputError.single("--uncertainty", "customers missing from the "
                                           "transaction log's fit")
        order = joined["i"].to_numpy().astype(np.intp)
    return _Customers(customers["margin"].to_numpy().astype(np.float64) - cost, cost, r0,
                      np.full(r0.size, ceiling_share), ceiling, k, np.zeros(r0.size),
                      _segments(customers), order)


def _retention_gain(c: _Customers, net: Array, r0: Array, share: Array, k: Array,
                    shape: Array, spend: Array, valuation: Valuation) -> float:
    rows = np.flatnonzero(spend > 0)
    if not rows.size:
        return 0.0
    r, s = r0[rows], spend[rows]
    if c.ceiling is not None:  # a given ceiling: the share of this draw's gap it closes
        given = (c.ceiling - r0) / np.maximum(1.0 - r0, 1e-12)
        share = np.where(np.isnan(share), given, share)
    level = np.where(shape[rows] > 0, lift("hill", s, k[rows], np.maximum(shape[rows], 1e-12)),
                     lift("exponential", s, k[rows]))
    after = customer_equity(net[rows], r + share[rows] * (1.0 - r) * level, s, valuation)
    before = customer_equity(net[rows], r, 0.0, valuation)
    return float((after - before).sum())


def _current_spend(current: pl.DataFrame, customers: pl.DataFrame | None,
                   pools: pl.Series | None) -> tuple[Array, Array]:
    """Per customer and per pool, the current plan's spend (0 where it has no row)."""
    table = current.select(pl.col("customer_id").cast(pl.String),
                           pl.col("spend").cast(pl.Float64))

    def spend_of(ids: pl.Series) -> Array:
        frame = pl.DataFrame({"customer_id": ids.cast(pl.String)})
        joined = frame.join(table, on="customer_id", how="left", maintain_order="left")
        return joined["spend"].fill_null(0.0).to_numpy()

    return (spend_of(customers["customer_id"]) if customers is not None else np.zeros(0),
            spend_of(pools) if pools is not None else np.zeros(0))


def joint_gain_draws(
    customers: pl.DataFrame | None,
    prospects: pl.DataFrame | None,
    plan: Plan,
    units: pl.DataFrame,
    draws: int,
    seed: int = 0,
    *,
    ceiling_share: float,
    response: float,
    values: tuple[CLVResult, float] | None = None,
    current: pl.DataFrame | None = None,
) -> tuple[Array, Array | None]:
    """The plan's equity gain under each draw, and the current plan's when one is given.

    ``values``: the transaction log's fit and the metric's margin ratio, to draw the
    customers' values too; ``ceiling_share`` and ``response``: the cost strategy's defaults.
    """
    rng = np.random.default_rng(seed)
    valuation = plan.valuation
    n = customers.height if customers is not None else 0
    drawn = ValueDraws(values[0], values[1], draws, rng) if values is not None else None
    fitted = [c for c in plan.response_curves if c.covariance]
    thetas = {id(c): draw_parameters(c, draws, rng) for c in fitted}
    plan_gain = np.zeros(draws)
    current_gain = np.zeros(draws) if current is not None else None
    spend = units["spend"].to_numpy()[:n]
    pools = units.slice(n)
    now_customers, now_pools = (_current_spend(current, customers, pools["pool"].cast(pl.String))
                                if current is not None else (None, None))
    if customers is not None:
        c = _customers(customers, ceiling_share, response, drawn)
        share, k, shape = c.share.copy(), c.k.copy(), c.shape.copy()
        if c.ceiling is not None:
            share[:] = np.nan  # from each draw's baseline and the given ceiling
        rows_of = {}
        for curve in plan.response_curves:
            if curve.kind != "retention":
                continue
            rows = np.flatnonzero(c.segment == curve.segment)
            rows_of[id(curve)] = rows
            share[rows] = (curve.ceiling - curve.base) / (1.0 - curve.base)
            k[rows] = curve.k
            shape[rows] = (curve.shape or 0.0) if curve.model == "hill" else 0.0
        for d in range(draws):  # a loop over draws, each vectorised over customers
            net, r0 = c.net, c.r0
            if drawn is not None and c.order is not None:
                margin, retention = drawn.values(d)
                net, r0 = margin[c.order] - c.service_cost, retention[c.order]
            s_d, k_d, h_d = share.copy(), k.copy(), shape.copy()
            for curve in (cv for cv in fitted if cv.kind == "retention"):
                theta, rows = thetas[id(curve)][d], rows_of[id(curve)]
                s_d[rows] = (theta[1] - theta[0]) / (1.0 - theta[0])
                k_d[rows] = theta[2]
                h_d[rows] = theta[3] if curve.model == "hill" else 0.0
            plan_gain[d] += _retention_gain(c, net, r0, s_d, k_d, h_d, spend, valuation)
            if current_gain is not None and now_customers is not None:
                current_gain[d] += _retention_gain(c, net, r0, s_d, k_d, h_d, now_customers,
                                                   valuation)
    if prospects is not None and pools.height:
        _pool_gains(prospects, pools, plan, thetas, draws, plan_gain, current_gain, now_pools)
    return plan_gain, current_gain


def _pool_gains(prospects: pl.DataFrame, pools: pl.DataFrame, plan: Plan,
                thetas: dict[int, Array], draws: int, plan_gain: Array,
                current_gain: Array | None, now: Array | None) -> None:
    valuation = plan.valuation
    size = prospects["prospects"].to_numpy().astype(np.float64)
    net = prospects["margin"].to_numpy() - (prospects["service_cost"].to_numpy()
                                            if "service_cost" in prospects.columns else 0.0)
    clv_new = new_customer_equity(net, prospects["retention"].to_numpy(), valuation)
    segment = pools["pool"].cast(pl.String).to_numpy()
    ceiling, k = (  # a column may be absent where curves cover every pool (the cost model)
        np.broadcast_to(prospects[c].to_numpy().astype(np.float64) if c in prospects.columns
                        else np.nan, (draws, size.size)).copy()
        for c in ("acquisition_ceiling", "acquisition_response"))
    shape = np.zeros((draws, size.size))
    for curve in plan.response_curves:
        if curve.kind != "acquisition":
            continue
        rows = np.flatnonzero(segment == curve.segment)
        theta = thetas.get(id(curve))
        if theta is None:
            theta = np.tile([curve.ceiling, curve.k, *([curve.shape] if curve.model == "hill"
                                                        else [])], (draws, 1))
        ceiling[:, rows] = theta[:, 0:1]
        k[:, rows] = theta[:, 1:2]
        if curve.model == "hill":
            shape[:, rows] = theta[:, 2:3]

    def acquired(level: Array) -> Array:
        exp = lift("exponential", level[None, :], k)
        hill = lift("hill", level[None, :], k, np.maximum(shape, 1e-12))
        return ceiling * np.where(shape > 0, hill, exp)

    lower = pools["level_lower"].cast(pl.Float64).to_numpy()
    upper = pools["level_upper"].cast(pl.Float64).to_numpy()
    weight = pools["share_upper"].cast(pl.Float64).to_numpy()
    paid = pools["spend"].to_numpy()
    heads = (1.0 - weight) * acquired(lower) + weight * acquired(upper)
    plan_gain += (size * heads * clv_new - paid).sum(axis=1)
    if current_gain is not None and now is not None:
        per_head = now / np.maximum(size, 1e-12)
        current_gain += (size * acquired(per_head) * clv_new - now).sum(axis=1)


# --------------------------------------------------------------------------------------------
# A solved plan's summary with its uncertainty.
# --------------------------------------------------------------------------------------------


def check_uncertainty(plan: Plan, draws: int, field: str = "--uncertainty") -> None:
    """Refuse, before anything is solved, draws the plan cannot be re-valued under."""
    from engine.assumptions import RESPONSE_COSTS

    if draws < 1:
        raise InvalidInputError.single(field, f"must be at least 1, got {draws}")
    if plan.cost.name not in RESPONSE_COSTS:
        raise InvalidInputError.single(
            field, f"needs a response-curve cost strategy ({', '.join(RESPONSE_COSTS)})"
            f", not {plan.cost.name!r}")


def add_uncertainty(portfolio: Portfolio, plan: Plan, model: Model, result: PlanResult,
                    draws: int, seed: int = 0, current: pl.DataFrame | None = None) -> None:
    """Re-value ``result`` (the plan ``model`` was solved into) under ``draws`` draws and
    write into its summary ``equity_gain_interval``, ``probability_beats_nothing``,
    ``uncertainty_draws`` and, with a current plan, ``current_gain_interval`` and
    ``probability_beats_current``, with notes saying what was drawn.

    The fitted curves only (``engine.response.uncertainty``), unless the customers were valued
    from a transaction log or a current plan is given: then the joint draws of this module."""
    from engine.response.uncertainty import gain_draws, interval

    check_uncertainty(plan, draws)
    started = time.perf_counter()
    summary = result.summary
    if portfolio.transactions is not None or current is not None:
        gains, now = _joint_draws(portfolio, plan, model, result, draws, seed, current)
    else:
        gains, now = gain_draws(model.portfolio.customers, model.portfolio.prospects, plan,
                                result.units, draws, seed), None
    summary.equity_gain_interval = interval(gains)
    summary.probability_beats_nothing = float((gains > 0).mean())
    summary.uncertainty_draws = draws
    if now is not None:
        summary.current_gain_interval = interval(now)
        summary.probability_beats_current = float((gains > now).mean())
    if not any(c.covariance for c in plan.response_curves):
        summary.notes.append("uncertainty: no response curve was estimated (none has a "
                             "covariance), so their parameters do not vary over the draws")
    if portfolio.transactions is not None:
        summary.notes.append("uncertainty: the BG/NBD and Gamma-Gamma parameters are drawn "
                             "too (each customer's margin and retention re-derived per draw)")
    else:
        summary.notes.append("uncertainty: response-curve parameters only; the customers' "
                             "margin and retention are taken as known")
    summary.seconds["uncertainty"] = time.perf_counter() - started


def _joint_draws(portfolio: Portfolio, plan: Plan, model: Model, result: PlanResult,
                 draws: int, seed: int, current: pl.DataFrame | None
                 ) -> tuple[Array, Array | None]:
    """Per draw, the plan's gain and the current plan's (``joint_gain_draws``)."""
    from engine.plugins import default_registry

    if plan.cost.name != "exponential-response":
        raise InvalidInputError.single(
            "--uncertainty", "with --transactions or --current-plan it needs the "
            f"exponential-response cost strategy, not {plan.cost.name!r}")
    registry = default_registry()
    cost: Any = registry.create("cost", plan.cost)  # ExponentialResponse: its two defaults
    values = None
    if portfolio.transactions is not None:
        metric = registry.create("metric", plan.metric)
        fit = getattr(metric, "fit", None)
        if fit is None:
            raise InvalidInputError.single(
                "--uncertainty", f"metric {plan.metric.name!r} reports no fit to draw from")
        values = (fit(portfolio.transactions, plan.valuation),
                  float(getattr(metric, "margin_ratio", 1.0)))
    return joint_gain_draws(
        model.portfolio.customers, model.portfolio.prospects, plan, result.units, draws, seed,
        ceiling_share=float(cost.ceiling_share), response=float(cost.response), values=values,
        current=current)


def uncertainty_at_budgets(portfolio: Portfolio, plan: Plan, budgets: list[float], draws: int,
                           seed: int = 0) -> pl.DataFrame:
    """At each total budget, the integral plan (``allocate``) and its gain under the same
    ``draws`` draws (one seed: the budgets are compared draw by draw): one row per budget
    with the gain, its p5, p50, p95 and P(gain > 0). For ``equity frontier --uncertainty``."""
    from engine.constraints import build_constraints
    from engine.pipeline import allocate, build_model

    check_uncertainty(plan, draws)
    model = build_model(portfolio, plan)
    rows = []
    for budget in budgets:
        at = plan.with_overrides(total_budget=float(budget))
        model_at = replace(model, rows=build_constraints(at, model.options),
                           timings=dict(model.timings))
        result = allocate(portfolio, at, model=model_at)
        add_uncertainty(portfolio, at, model_at, result, draws, seed)
        s = result.summary
        rows.append({"budget": float(budget), "equity_gain": s.equity_gain,
                     **s.equity_gain_interval,
                     "probability_beats_nothing": s.probability_beats_nothing})
    return pl.DataFrame(rows)


def allocate_with_uncertainty(portfolio: Portfolio, plan: Plan, registry: Any = None,
                              should_stop: Any = None, limits: Any = None) -> PlanResult:
    """``engine.pipeline.allocate``, then, when the plan asks for ``uncertainty_draws``, its
    gain re-valued under them (``add_uncertainty`` with ``uncertainty_seed``): the service's
    Allocate, in the server and in its solve workers."""
    from engine.pipeline import allocate, build_model

    stop = should_stop or (lambda: False)
    if not plan.uncertainty_draws:
        return allocate(portfolio, plan, registry, stop, limits)
    check_uncertainty(plan, plan.uncertainty_draws, "plan.uncertainty_draws")
    model = build_model(portfolio, plan, registry, limits, stop)
    result = allocate(portfolio, plan, registry, stop, limits, model=model)
    add_uncertainty(portfolio, plan, model, result, plan.uncertainty_draws, plan.uncertainty_seed)
    return result
