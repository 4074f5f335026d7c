"""Deterministic synthetic portfolios: the built-in example and benchmark data.

Distributions chosen to look like a subscription retailer: lognormal margins, beta
retention, cost-to-serve from activity counts, segments that differ in both.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.plan import Plan, SegmentLimit

SEGMENTS = ("premium", "core", "value", "at-risk", "new")
_MARGIN_MU = {"premium": 5.0, "core": 4.4, "value": 3.8, "at-risk": 4.2, "new": 4.0}
_RETENTION_AB = {
    "premium": (18, 2),
    "core": (12, 3),
    "value": (8, 3),
    "at-risk": (4, 3),
    "new": (5, 3),
}
_SHARE = np.array([0.08, 0.35, 0.30, 0.12, 0.15])


def customers(n: int, seed: int = 7, segments: tuple[str, ...] = SEGMENTS) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    share = _SHARE[: len(segments)] if len(segments) <= len(_SHARE) else np.ones(len(segments))
    seg_idx = rng.choice(len(segments), size=n, p=share / share.sum())
    mu = np.array([_MARGIN_MU.get(s, 3.8) for s in segments])[seg_idx]
    ab = np.array([_RETENTION_AB.get(s, (8, 3)) for s in segments])[seg_idx]
    margin = rng.lognormal(mu, 0.5)
    retention = np.clip(rng.beta(ab[:, 0], ab[:, 1]), 0.0, 0.97)
    calls = rng.poisson(0.6, n)
    orders = rng.poisson(2.0, n)
    service_cost = 4.0 * calls + 0.8 * orders
    ceiling = retention + rng.uniform(0.15, 0.5, n) * (1.0 - retention)
    response = rng.lognormal(np.log(0.15), 0.4, n)
    # ids C0000000, C0000001, ... and segment names built columnar (a Python string per
    # customer took most of the example's time at 1M)
    ids = pl.select(pl.concat_str(pl.lit("C"), pl.int_range(0, n).cast(pl.String).str.zfill(7)))
    return pl.DataFrame(
        {
            "customer_id": ids.to_series(),
            "segment": pl.Series(list(segments), dtype=pl.String).gather(seg_idx),
            "margin": np.round(margin, 2),
            "retention": np.round(retention, 4),
            "service_cost": np.round(service_cost, 2),
            "retention_ceiling": np.round(np.minimum(ceiling, 0.99), 4),
            "retention_response": np.round(response, 4),
            "activity_calls": calls,
            "activity_orders": orders,
        }
    )


def prospects(
    seed: int = 7, segments: tuple[str, ...] = SEGMENTS, scale: float = 1.0
) -> pl.DataFrame:
    rng = np.random.default_rng(seed + 1)
    m = len(segments)
    return pl.DataFrame(
        {
            "segment": list(segments),
            "prospects": np.round(rng.uniform(2_000, 20_000, m) * scale),
            "acquisition_ceiling": np.round(rng.uniform(0.2, 0.5, m), 3),
            "acquisition_response": np.round(rng.uniform(0.08, 0.25, m), 3),
            "margin": np.round(rng.lognormal(3.7, 0.3, m), 2),
            "retention": np.round(rng.uniform(0.55, 0.8, m), 3),
            "service_cost": np.round(rng.uniform(2.0, 6.0, m), 2),
        }
    )


def example(n_customers: int = 5_000, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame, Plan]:
    """The README's example: customers, prospect pools and a plan with caps and a minimum."""
    cust = customers(n_customers, seed)
    pros = prospects(seed, scale=n_customers / 5_000)
    budget = 6.0 * n_customers
    plan = Plan(
        total_budget=budget,
        acquisition_budget=0.5 * budget,
        segment_limits=(
            SegmentLimit("premium", cap=0.25 * budget),
            SegmentLimit("at-risk", kind="retention", cap=0.15 * budget),
            SegmentLimit("new", minimum=0.05 * budget),
        ),
        discount_rate=0.10,
        retention_levels=(0.0, 2.0, 5.0, 10.0, 20.0),
    )
    return cust, pros, plan


def options_table(
    n: int, levels: int = 5, seed: int = 11, segments: int = 20, nonconcave_share: float = 0.1
) -> pl.DataFrame:
    """A long options table (customer_id, level, cost, value, segment), some responses
    non-concave (an S-shaped lift) so the hull reduction has work to do."""
    rng = np.random.default_rng(seed)
    spend = np.array([0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0])[:levels]
    if levels > spend.size:
        spend = np.concatenate([spend, 320.0 * 2.0 ** np.arange(1, levels - spend.size + 1)])
    clv = rng.lognormal(5.0, 0.8, n)
    lift = (
        rng.uniform(0.05, 0.6, n)[:, None]
        * clv[:, None]
        * -np.expm1(-rng.lognormal(np.log(0.04), 0.5, n)[:, None] * spend[None, :])
    )
    s_shaped = rng.random(n) < nonconcave_share
    lift[s_shaped] *= (spend[None, :] / spend[-1]) ** 1.5
    value = clv[:, None] + lift - spend[None, :]
    seg = rng.integers(0, segments, n)
    return pl.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), levels),
            "level": np.tile(spend, n),
            "cost": np.tile(spend, n),
            "value": value.ravel(),
            "segment": np.repeat(np.char.add("S", seg.astype(str)), levels),
        }
    )
