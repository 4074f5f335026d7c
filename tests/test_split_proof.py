"""The integer proof split along the LP's binding limits (``engine.optimize.split``) and its
one-limit cores by Pareto states (``engine.optimize.knapsack``): against brute force, and
against highspy's MIP on the full per-customer model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.allocation import violations
from engine.constraints import build_constraints
from engine.optimize import lp, split
from engine.optimize.knapsack import solve_rows
from engine.optimize.proof import GAP
from engine.options import from_table
from engine.plan import Plan, ResourceLimit, SegmentLimit
from tests.reference import reference_mip
from tests.test_resources import against_mip, table


def brute_force(value: np.ndarray, use: np.ndarray, unit_start: np.ndarray,
                limit: np.ndarray) -> float:
    ends = np.append(unit_start[1:], value.size)
    best = -np.inf
    for pick in itertools.product(*[range(s, e) for s, e in zip(unit_start, ends, strict=True)]):
        cols = list(pick)
        if (use[:, cols].sum(axis=1) <= limit).all():
            best = max(best, float(value[cols].sum()))
    return best


@pytest.mark.parametrize("rows", [1, 2])
def test_pareto_states_match_brute_force(rows: int) -> None:
    rng = np.random.default_rng(5 + rows)
    for _ in range(300):
        counts = rng.integers(1, 5, size=rng.integers(1, 7))
        unit_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        size = int(counts.sum())
        value = rng.normal(10.0, 5.0, size)
        # negative uses too: a minimum in "<=" form; rounded at times: ties in use
        use = np.round(rng.uniform(-3.0, 10.0, (rows, size)), int(rng.integers(0, 3)))
        low = np.minimum.reduceat(use, unit_start, axis=1).sum(axis=1)
        high = np.maximum.reduceat(use, unit_start, axis=1).sum(axis=1)
        limit = rng.uniform(low - 2.0, high)
        price = rng.uniform(0.0, 3.0, rows)  # any prices >= 0 bound what is left
        optimum = brute_force(value, use, unit_start, limit)
        found = solve_rows(value, use, unit_start, limit, price, -np.inf)
        assert found is not None
        chosen, worth = found
        if not np.isfinite(optimum):
            assert not np.isfinite(worth) and not chosen.any()
            continue
        assert worth == pytest.approx(optimum, abs=1e-9)
        assert (np.add.reduceat(chosen.astype(int), unit_start) == 1).all()
        assert (use[:, chosen].sum(axis=1) <= limit).all()
        assert value[chosen].sum() == pytest.approx(worth)
        # an incumbent worth the optimum keeps it (ties are kept); one worth more: nothing
        again = solve_rows(value, use, unit_start, limit, price, optimum)
        assert again is not None and again[1] == pytest.approx(optimum, abs=1e-9)
        above = solve_rows(value, use, unit_start, limit, price, optimum + 1.0)
        assert above is not None and not np.isfinite(above[1])


def test_three_limits_are_left_to_the_mip() -> None:
    value, use = np.ones(4), np.ones((3, 4))
    unit_start = np.array([0, 2])
    assert solve_rows(value, use, unit_start, np.full(3, 5.0), np.zeros(3), -np.inf) is None


def segment_limits(n: int, segments: int, seed: int) -> Plan:
    """Call minutes and contacts per segment, a cap, a contacts minimum, contacts over all:
    components of one and of two binding limits, minimums among them."""
    rng = np.random.default_rng(seed)
    per = n / segments
    limits = [ResourceLimit("contacts", max=0.6 * n),
              ResourceLimit("contacts", segment="s1", min=0.5 * per)]
    limits += [ResourceLimit("calls", segment=f"s{s}", max=per * rng.uniform(0.4, 1.0))
               for s in range(segments)]
    limits += [ResourceLimit("contacts", segment=f"s{s}", max=per * rng.uniform(0.4, 0.8))
               for s in range(0, segments, 2)]
    return Plan(total_budget=9.0 * n, segment_limits=(SegmentLimit("s0", cap=4.0 * per),),
                resource_limits=tuple(limits))


@pytest.mark.parametrize("seed", range(5))
def test_split_proof_against_the_full_mip(seed: int) -> None:
    n = 1_300 + 300 * seed  # past the small plans' direct model (5,000 options)
    options = from_table(table(n, 40 + seed, barred=seed % 2 == 0, segments=5))
    rows = build_constraints(segment_limits(n, 5, seed), options)
    allocation = lp.solve(options, rows)
    value, optimum = against_mip(options, rows, allocation)
    assert any("of customers under the binding limits" in note for note in allocation.notes)
    assert allocation.status == "optimal"
    assert value == pytest.approx(optimum, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_a_dropped_limit_broken_is_taken_back(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the price of the most valuable binding limit set to 0, that limit is dropped
    at first; the components' plans break it, so it is taken back and the plan is still the
    full model's optimum."""
    n = 1_100
    options = from_table(table(n, 70 + seed, segments=5))
    rows = build_constraints(segment_limits(n, 5, seed), options)
    allocation, duals = lp.resource_lp(options, rows)
    k = int(np.argmax(duals))
    assert duals[k] > 0
    duals = duals.copy()
    duals[k] = 0.0  # prices >= 0 still bound every plan (weak duality)
    rounds: list[int] = []
    labels = split._labels

    def counted(*args):  # type: ignore[no-untyped-def]
        rounds.append(1)
        return labels(*args)

    monkeypatch.setattr(split, "_labels", counted)
    assert split.prove_split(options, rows, allocation, duals, GAP, None)
    assert len(rounds) >= 2  # the dropped limit was broken, then kept
    reference = reference_mip(options, rows)
    assert reference is not None and reference[2] == "Optimal"
    value = float(allocation.equity(options).sum())
    assert not violations(options, rows, allocation, tolerance=1e-9)
    assert allocation.status == "optimal"
    assert value == pytest.approx(reference[0], rel=1e-9, abs=1e-9)
    assert allocation.integer_bound is not None
    assert allocation.integer_bound >= reference[0] - 1e-9 * abs(reference[0])
