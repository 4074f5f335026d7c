"""How sure a plan is: its equity gain under draws of the estimated response parameters.

The plan is held fixed (each customer keeps its level, each pool its split); only what the
levels are worth changes. Each draw takes every fitted curve's parameters from the normal
approximation of its estimate, N(theta_hat, covariance), clipped to the curve's domain
(0 <= base <= ceiling < 1, k > 0, shape > 0), and re-values, all customers of a segment at
once:

* a customer at spend s > 0 gains E(s; r0 + share (1 - r0) L(s)) - E(0; r0) with the draw's
  share = (ceiling - base) / (1 - base) and lift L (customers at 0 gain 0 in every draw);
* a pool of N prospects gains N (sum over its levels of weight a(A) CLV_new) - spend.

Units whose response was not estimated (``file`` or ``default``) add their fixed gain to every
draw. No plan is re-solved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.plan import Plan, ResponseCurve
from engine.response.curves import lift
from engine.valuation import Valuation, customer_equity, new_customer_equity

_CELLS = 1 << 22  # draws x customers per block: the temporaries stay a few tens of MB


def draw_parameters(curve: ResponseCurve, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` x parameters (``curve.parameters`` order), clipped to the curve's domain."""
    names = curve.parameters
    mean = np.array([getattr(curve, n) for n in names], dtype=np.float64)
    cov = np.asarray(curve.covariance, dtype=np.float64).reshape(len(names), len(names))
    theta = rng.multivariate_normal(mean, cov, size=draws, method="eigh")
    top = 1.0 - 1e-9
    if curve.kind == "retention":
        theta[:, 0] = np.clip(theta[:, 0], 0.0, top)
        theta[:, 1] = np.clip(theta[:, 1], theta[:, 0], top)
    else:
        theta[:, 0] = np.clip(theta[:, 0], 0.0, top)
    rest = 2 if curve.kind == "retention" else 1
    theta[:, rest:] = np.maximum(theta[:, rest:], 1e-12)
    return theta


def _segments(table: pl.DataFrame) -> np.ndarray:
    if "segment" not in table.columns:
        return np.zeros(table.height, dtype=bool)
    return table["segment"].cast(pl.String).fill_null("").to_numpy()


def _retention_gain(curve: ResponseCurve, theta: np.ndarray, r0: np.ndarray, net: np.ndarray,
                    spend: np.ndarray, valuation: Valuation) -> np.ndarray:
    """Sum over the customers of the gain under each draw: (draws,)."""
    base, ceiling, k = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    shape = theta[:, 3:4] if curve.model == "hill" else 1.0
    share = (ceiling - base) / (1.0 - base)
    total = np.zeros(theta.shape[0])
    block = max(1, _CELLS // max(theta.shape[0], 1))
    for lo in range(0, r0.size, block):
        hi = min(lo + block, r0.size)
        s, r, m = spend[None, lo:hi], r0[None, lo:hi], net[None, lo:hi]
        level = lift(curve.model, s, k, shape)
        after = customer_equity(m, r + share * (1.0 - r) * level, s, valuation)
        before = customer_equity(m, r, 0.0, valuation)
        total += (after - before).sum(axis=1)
    return total


def gain_draws(
    customers: pl.DataFrame | None,
    prospects: pl.DataFrame | None,
    plan: Plan,
    units: pl.DataFrame,
    draws: int,
    seed: int = 0,
) -> np.ndarray:
    """The plan's equity gain under each of ``draws`` parameter draws: (draws,).

    ``customers`` and ``prospects`` are the valued tables the options were built from and
    ``units`` the plan (``PlanResult.units``, customers first in the same order, then pools).
    """
    rng = np.random.default_rng(seed)
    valuation = plan.valuation
    fixed = units["uplift"].to_numpy().copy()  # per unit; the fitted ones are replaced below
    total = np.zeros(draws)
    n = customers.height if customers is not None else 0
    fitted = [c for c in plan.response_curves if c.covariance]
    if customers is not None:
        segment = _segments(customers)
        spend = units["spend"].to_numpy()[:n]
        r0 = customers["retention"].to_numpy().astype(np.float64)
        net = customers["margin"].to_numpy().astype(np.float64)
        if "service_cost" in customers.columns:
            net = net - customers["service_cost"].to_numpy()
        for curve in (c for c in fitted if c.kind == "retention"):
            rows = np.flatnonzero((segment == curve.segment) & (spend > 0))
            fixed[np.flatnonzero(segment == curve.segment)] = 0.0
            if rows.size:
                theta = draw_parameters(curve, draws, rng)
                total += _retention_gain(curve, theta, r0[rows], net[rows], spend[rows],
                                         valuation)
    if prospects is not None:
        pools = units.slice(n)
        segment = pools["pool"].cast(pl.String).to_numpy()
        size = prospects["prospects"].to_numpy().astype(np.float64)
        clv_new = new_customer_equity(
            prospects["margin"].to_numpy() - (prospects["service_cost"].to_numpy()
                                              if "service_cost" in prospects.columns else 0.0),
            prospects["retention"].to_numpy(), valuation)
        lower = pools["level_lower"].cast(pl.Float64).to_numpy()
        upper = pools["level_upper"].cast(pl.Float64).to_numpy()
        weight = pools["share_upper"].cast(pl.Float64).to_numpy()
        paid = pools["spend"].to_numpy()
        for curve in (c for c in fitted if c.kind == "acquisition"):
            rows = np.flatnonzero(segment == curve.segment)
            if not rows.size:
                continue
            fixed[n + rows] = 0.0
            theta = draw_parameters(curve, draws, rng)
            ceiling, k = theta[:, 0:1], theta[:, 1:2]
            shape = theta[:, 2:3] if curve.model == "hill" else 1.0

            low = ceiling * lift(curve.model, lower[None, rows], k, shape)
            high = ceiling * lift(curve.model, upper[None, rows], k, shape)
            acquired = (1.0 - weight[rows]) * low + weight[rows] * high
            total += (size[rows] * acquired * clv_new[rows] - paid[rows]).sum(axis=1)
    return total + float(fixed.sum())


def interval(gains: np.ndarray, percentiles: Sequence[float] = (5, 50, 95)) -> dict[str, float]:
    values = np.percentile(gains, percentiles)
    return {f"p{p:g}": float(v) for p, v in zip(percentiles, values, strict=True)}
