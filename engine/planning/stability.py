"""How stable each unit's choice is: the plan re-solved under draws of the estimates.

``engine.planning.uncertainty`` keeps the plan and re-values it; here each of N draws
(N small: every draw is a full re-solve) takes every fitted curve's parameters from
N(theta_hat, covariance), clipped to the curve's domain (``draw_parameters``), and, when the
customers were valued from a transaction log, the BG/NBD and Gamma-Gamma parameters too
(``ValueDraws``: each customer's margin and retention re-derived); it rebuilds the options
with the plan's cost strategy and solves them under the same limits. A unit's stability is
the share of draws in which its choice is the plan's: a customer's spend level, a pool's
pair of levels (a pool's split between them moves with any change, so it is not compared).

The summary's ``choice_stability`` gives ``draws``, the ``mean`` over customers and
``share_stable_at_80pct``, the share of customers whose choice holds in at least 80% of the
draws (pools excluded from both); ``--output`` has a ``choice_stability`` column per unit.
Cost: N times the options build and solve of the plan itself.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from engine.constraints import build_constraints
from engine.errors import InvalidInputError
from engine.plan import Plan, ResponseCurve
from engine.response.uncertainty import draw_parameters

if TYPE_CHECKING:
    from engine.pipeline import Model
    from engine.portfolio import Portfolio
    from engine.result import PlanResult

STABLE_SHARE = 0.8  # a choice held in at least this share of the draws counts as stable


def _drawn_curves(plan: Plan, thetas: dict[int, np.ndarray], d: int) -> tuple[ResponseCurve,
                                                                              ...]:
    out = []
    for i, curve in enumerate(plan.response_curves):
        theta = thetas.get(i)
        if theta is None:
            out.append(curve)
            continue
        values: dict[str, Any] = dict(zip(curve.parameters, map(float, theta[d]), strict=True))
        out.append(replace(curve, **values))
    return tuple(out)


def _choices(units: pl.DataFrame) -> np.ndarray:
    """Per unit its level twice (a customer) or its pair of levels (a pool)."""
    level = pl.col("level").cast(pl.Float64)
    return units.select(pl.coalesce(pl.col("level_lower").cast(pl.Float64), level),
                        pl.coalesce(pl.col("level_upper").cast(pl.Float64), level)).to_numpy()


def check_stability(plan: Plan, draws: int) -> None:
    """Refuse, before anything is solved, draws the plan cannot be re-solved under."""
    from engine.assumptions import RESPONSE_COSTS

    if draws < 1:
        raise InvalidInputError.single("--stability", f"must be at least 1, got {draws}")
    if plan.cost.name not in RESPONSE_COSTS:
        raise InvalidInputError.single(
            "--stability", f"needs a response-curve cost strategy ({', '.join(RESPONSE_COSTS)})"
            f", not {plan.cost.name!r}")


def add_choice_stability(portfolio: Portfolio, plan: Plan, model: Model, result: PlanResult,
                         draws: int, seed: int = 0) -> None:
    """Re-solve under ``draws`` draws; a ``choice_stability`` column in ``result.units`` and
    the summary's ``choice_stability`` (module docstring)."""
    from engine.pipeline import allocate
    from engine.plugins import default_registry

    check_stability(plan, draws)
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 1])  # apart from the --uncertainty draws of this seed
    registry = default_registry()
    cost: Any = registry.create("cost", plan.cost)
    thetas = {i: draw_parameters(c, draws, rng)
              for i, c in enumerate(plan.response_curves) if c.covariance}
    values, order = _value_draws(portfolio, plan, model, draws, rng, registry)
    chosen = _choices(result.units)
    same = np.zeros(chosen.shape[0])
    customers = model.portfolio.customers
    for d in range(draws):
        at = plan.with_overrides(response_curves=_drawn_curves(plan, thetas, d))
        valued = model.portfolio
        if values is not None and customers is not None and order is not None:
            margin, retention = values.values(d)
            valued = replace(valued, customers=customers.with_columns(
                pl.Series("margin", margin[order]), pl.Series("retention", retention[order])))
        options = cost.build(valued, at)
        drawn = replace(model, options=options, rows=build_constraints(at, options),
                        portfolio=valued, timings={})
        again = allocate(valued, at, registry, model=drawn)
        same += np.all(np.isclose(_choices(again.units), chosen, rtol=1e-9, atol=1e-9), axis=1)
    share = same / draws
    result.units = result.units.with_columns(pl.Series("choice_stability", share))
    n = customers.height if customers is not None else 0
    people = share[:n]
    summary = result.summary
    summary.choice_stability = {
        "draws": float(draws),
        "mean": float(people.mean()) if n else float("nan"),
        "share_stable_at_80pct": float((people >= STABLE_SHARE).mean()) if n else float("nan"),
    }
    if not thetas and values is None:
        summary.notes.append("stability: no response curve was estimated (none has a "
                             "covariance) and no value was drawn, so every draw re-solves "
                             "the same problem")
    summary.seconds["stability"] = time.perf_counter() - started


def _value_draws(portfolio: Portfolio, plan: Plan, model: Model, draws: int,
                 rng: np.random.Generator, registry: Any) -> tuple[Any, Any]:
    """With a transaction log: the BG/NBD and Gamma-Gamma draws and, per customer of the
    model, its row in them; else (None, None)."""
    if portfolio.transactions is None or model.portfolio.customers is None:
        return None, None
    from engine.planning.uncertainty import ValueDraws

    metric = registry.create("metric", plan.metric)
    fit = getattr(metric, "fit", None)
    if fit is None:
        raise InvalidInputError.single(
            "--stability", f"metric {plan.metric.name!r} reports no fit to draw from")
    clv = fit(portfolio.transactions, plan.valuation)
    values = ValueDraws(clv, float(getattr(metric, "margin_ratio", 1.0)), draws, rng)
    ids = clv.rfm.select(pl.col("customer_id").cast(pl.String)).with_row_index("i")
    joined = model.portfolio.customers.select(pl.col("customer_id").cast(pl.String)).join(
        ids, on="customer_id", how="left", maintain_order="left")
    if joined["i"].null_count():
        raise InvalidInputError.single("--stability", "customers missing from the "
                                       "transaction log's fit")
    return values, joined["i"].to_numpy().astype(np.intp)
