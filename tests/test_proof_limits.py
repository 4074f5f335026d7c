"""The integer proof with many limits on resources besides spend: its time limit is kept
(a behavioural bound, not a benchmark), and every plan it labels "optimal" is the full
model's MIP optimum, every other plan's gap at least its true shortfall."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.allocation import violations
from engine.constraints import build_constraints
from engine.optimize import lp
from engine.options import from_table
from engine.plan import Plan, ResourceLimit
from tests.test_resources import against_mip, table


def many_limits(n: int, segments: int, seed: int) -> Plan:
    """A budget, contacts over all and per segment, call minutes per segment: tight enough
    that most of them bind."""
    rng = np.random.default_rng(seed)
    limits = [ResourceLimit("contacts", max=0.5 * n)]
    per = n / segments
    limits += [ResourceLimit("contacts", segment=f"s{s}", max=per * rng.uniform(0.3, 0.6))
               for s in range(segments)]
    limits += [ResourceLimit("calls", segment=f"s{s}", max=per * rng.uniform(0.5, 1.2))
               for s in range(segments)]
    return Plan(total_budget=8.0 * n, resource_limits=tuple(limits))


def test_a_tight_time_limit_is_kept_and_the_gap_is_proven() -> None:
    # 20 components under 41 binding limits, proven in ~0.5-1 s without a limit: 20 ms
    # leaves most of them at their first plan
    n, limit = 10_000, 0.02
    options = from_table(table(n, 7, segments=20))
    rows = build_constraints(many_limits(n, 20, 7), options)
    started = time.perf_counter()
    relaxed = lp.solve(options, rows, lp.LpSettings(repair=False))
    lp_seconds = time.perf_counter() - started
    started = time.perf_counter()
    allocation = lp.solve(options, rows, lp.LpSettings(mip_time_limit=limit))
    seconds = time.perf_counter() - started
    # the LP again, the time limit, and a generous slack for a loaded machine
    assert seconds <= lp_seconds + limit + 3.0, (seconds, lp_seconds)
    assert allocation.status == "feasible"
    assert not violations(options, rows, allocation, tolerance=1e-9)
    value = float(allocation.equity(options).sum())
    assert relaxed.bound is not None and allocation.integer_bound is not None
    scale = max(1.0, abs(value))
    assert value - 1e-9 * scale <= allocation.integer_bound <= relaxed.bound + 1e-9 * scale
    assert allocation.integer_bound - value > 1e-9 * scale  # not proven: said so
    assert any("time limit" in note for note in allocation.notes)


@pytest.mark.parametrize("seed", range(4))
def test_many_limits_against_the_full_mip(seed: int) -> None:
    n = 400 + 300 * seed
    options = from_table(table(n, 100 + seed, barred=seed % 2 == 1, segments=6))
    rows = build_constraints(many_limits(n, 6, seed), options)
    against_mip(options, rows, lp.solve(options, rows))
