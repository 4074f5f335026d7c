"""Seeded synthetic portfolio for the scale benchmarks: customers and their options table.

Customers of a subscription business in ``segments`` segments of unequal size: lognormal
margins, beta retention, gamma cost-to-serve, each segment with its own location. Spend
buys retention up to a per-customer ceiling; for most customers with diminishing returns
(exponential), for ``s_shaped`` of them with an S-shaped (Hill) response, whose value curve
is not concave, so the hull reduction has real work to do. Values are customer equity net
of spend (``engine.valuation.customer_equity``), the same closed form the engine uses.

The options table is written sorted by customer and cost, as an upstream job would.
Everything is vectorised: 10M customers x 5 levels take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.valuation import Valuation, customer_equity

LEVELS = (0.0, 5.0, 10.0, 20.0, 40.0)


@dataclass(frozen=True)
class Spec:
    n: int
    seed: int = 2024
    segments: int = 20
    levels: tuple[float, ...] = LEVELS
    s_shaped: float = 0.12
    budget_per_customer: float = 1.8
    cap_share: float = 0.07  # each segment's cap, as a share of the total budget


def segment_names(k: int) -> list[str]:
    return [f"S{i:02d}" for i in range(k)]


def customers(spec: Spec) -> pl.DataFrame:
    rng = np.random.default_rng(spec.seed)
    k = spec.segments
    share = rng.dirichlet(np.full(k, 4.0))
    seg = rng.choice(k, size=spec.n, p=share)
    mu = rng.uniform(3.6, 5.0, k)[seg]
    a = rng.uniform(3.0, 18.0, k)[seg]
    margin = rng.lognormal(mu, 0.55)
    retention = np.minimum(rng.beta(a, 3.0), 0.95)
    service = rng.gamma(2.0, 0.08, spec.n) * margin
    ceiling = np.minimum(retention + rng.uniform(0.1, 0.5, spec.n) * (1 - retention), 0.98)
    names = np.array(segment_names(k))
    return pl.DataFrame(
        {
            "customer_id": np.arange(spec.n, dtype=np.int64),
            "segment": pl.Series(names[seg]).cast(pl.Categorical),
            "margin": margin,
            "retention": retention,
            "service_cost": service,
            "retention_ceiling": ceiling,
            "retention_response": rng.lognormal(np.log(0.08), 0.5, spec.n),
            "s_shaped": rng.random(spec.n) < spec.s_shaped,
            "half_saturation": rng.lognormal(np.log(15.0), 0.4, spec.n),
        }
    )


def options(spec: Spec, cust: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
    """Long options table (customer_id, level, cost, value, segment), one row per level."""
    s = np.asarray(spec.levels)[None, :]
    r0 = cust["retention"].to_numpy()[:, None]
    top = cust["retention_ceiling"].to_numpy()[:, None]
    k = cust["retention_response"].to_numpy()[:, None]
    half = cust["half_saturation"].to_numpy()[:, None]
    lift = -np.expm1(-k * s)
    hill = s**3 / (s**3 + half**3)
    lift = np.where(cust["s_shaped"].to_numpy()[:, None], hill, lift)
    r = r0 + (top - r0) * lift
    net = (cust["margin"] - cust["service_cost"]).to_numpy()[:, None]
    value = customer_equity(net, r, s, valuation)
    n, m = value.shape
    return pl.DataFrame(
        {
            "customer_id": np.repeat(cust["customer_id"].to_numpy(), m),
            "level": np.tile(s[0], n),
            "cost": np.tile(s[0], n),
            "value": value.ravel(),
            "segment": cust["segment"].gather(np.repeat(np.arange(n), m)),
        }
    )


def plan(spec: Spec) -> Plan:
    """A total budget and one cap per segment (some bind, some do not)."""
    budget = spec.budget_per_customer * spec.n
    caps = tuple(
        SegmentLimit(name, cap=spec.cap_share * budget) for name in segment_names(spec.segments)
    )
    return Plan(
        total_budget=budget,
        segment_limits=caps,
        retention_levels=spec.levels,
        cost=StrategyChoice("spend-table"),
    )


def portfolio(spec: Spec) -> tuple[pl.DataFrame, pl.DataFrame, Plan]:
    p = plan(spec)
    cust = customers(spec)
    return cust, options(spec, cust, p.valuation), p
