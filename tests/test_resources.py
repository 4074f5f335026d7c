"""Limits on any resource (contacts, calls...), barred customers, one shadow price a limit:
the LP and the integral plan against highspy on the full per-customer model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.allocation import Allocation, violations
from engine.constraints import Constraint, build_constraints
from engine.errors import InfeasiblePlanError, InvalidInputError
from engine.optimize import lp
from engine.options import OptionSet, from_table
from engine.plan import Plan, ResourceLimit, SegmentLimit
from tests.reference import reference_mip


def table(n: int, seed: int, barred: bool = False, segments: int = 4) -> pl.DataFrame:
    """Customers x 5 levels with contacts (1 per non-zero level, 2 at the top two levels)
    and call minutes (grow with spend, differ by customer); concave and S-shaped value."""
    rng = np.random.default_rng(seed)
    spend = np.array([0.0, 5.0, 10.0, 20.0, 40.0])
    worth = rng.lognormal(4.0, 0.6, n)[:, None]
    half = rng.lognormal(np.log(15.0), 0.4, n)[:, None]
    rate = rng.lognormal(np.log(0.06), 0.5, n)[:, None]
    lift = np.where(rng.random(n)[:, None] < 1 / 3, spend**3 / (spend**3 + half**3),
                    -np.expm1(-rate * spend))
    value = worth * (1 + 0.5 * lift) - spend
    contacts = np.array([0, 1, 1, 2, 2.0])
    calls = (spend / 10)[None, :] * rng.uniform(0.5, 2.0, n)[:, None]
    out = pl.DataFrame({
        "customer_id": np.repeat(np.arange(n), 5),
        "level": np.tile(spend, n),
        "cost": np.tile(spend, n),
        "value": value.ravel(),
        "contacts": np.tile(contacts, n),
        "calls": calls.ravel(),
        "segment": np.repeat(np.char.add("s", rng.integers(0, segments, n).astype(str)), 5),
    })
    if barred:
        out = out.with_columns(
            do_not_contact=pl.Series(np.repeat(rng.random(n) < 0.1, 5)),
            max_spend=pl.Series(np.repeat(np.where(rng.random(n) < 0.2, 10.0, np.nan), 5)),
        ).with_columns(pl.col("max_spend").fill_nan(None))
    return out


def plan_for(n: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    limits = [ResourceLimit("contacts", max=float(n) * rng.uniform(0.3, 0.8)),
              ResourceLimit("calls", segment="s1", max=float(n) * rng.uniform(0.05, 0.2))]
    if seed % 2:
        limits.append(ResourceLimit("contacts", segment="s2", min=float(n) * 0.1))
    caps = (SegmentLimit("s0", cap=float(n) * 2.0),) if seed % 3 == 0 else ()
    return Plan(total_budget=float(n) * rng.uniform(4, 10), segment_limits=caps,
                resource_limits=tuple(limits))


def against_mip(options: OptionSet, rows: list[Constraint], allocation: Allocation
                ) -> tuple[float, float]:
    """The integral plan against highspy's full MIP: every row kept, its proven bound
    valid, "optimal" within 1e-9 of the optimum, "feasible" with a gap that covers its
    shortfall. Returns the plan's value and the optimum."""
    reference = reference_mip(options, rows)
    assert reference is not None and reference[2] == "Optimal"
    optimum = reference[0]
    value = float(allocation.equity(options).sum())
    scale = max(1.0, abs(optimum))
    assert not violations(options, rows, allocation, tolerance=1e-9)
    assert allocation.integer_bound is not None
    assert allocation.integer_bound >= optimum - 1e-9 * scale  # a valid bound
    if allocation.status == "optimal":
        assert value >= optimum - 1e-9 * scale, (value, optimum)
    else:
        assert allocation.status == "feasible"
        assert allocation.integer_bound - value >= optimum - value - 1e-9 * scale
    return value, optimum


def check(options: OptionSet, plan: Plan) -> str:
    rows = build_constraints(plan, options)
    reference = reference_mip(options, rows)
    relaxed = reference_mip(options, rows, relax=True)
    try:
        allocation = lp.solve(options, rows)
    except InfeasiblePlanError:
        assert reference is None
        return "infeasible"
    assert reference is not None and relaxed is not None
    optimum = reference[0]
    scale = max(1.0, abs(optimum))
    assert allocation.bound == pytest.approx(relaxed[0], rel=1e-9)  # the exact LP
    assert allocation.lp_objective == pytest.approx(relaxed[0], rel=1e-9)
    assert not violations(options, rows, allocation, tolerance=1e-9)
    value = float(allocation.equity(options).sum())
    assert allocation.integer_bound is not None
    assert allocation.integer_bound >= optimum - 1e-9 * scale
    if allocation.status == "optimal":
        assert value >= optimum - 1e-9 * scale
    else:
        assert allocation.integer_bound - value >= optimum - value - 1e-9 * scale
    assert set(allocation.shadow_prices) == {r.name for r in rows}
    return allocation.status


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [60, 600])
def test_resource_limits_match_highspy(n: int, seed: int) -> None:
    options = from_table(table(n, seed, barred=seed % 2 == 1))
    assert check(options, plan_for(n, seed)) in ("optimal", "infeasible")


def test_barred_customers_keep_only_allowed_levels() -> None:
    t = table(200, 3, barred=True)
    options = from_table(t)
    per_customer = t.group_by("customer_id", maintain_order=True).agg(
        pl.col("do_not_contact").first(), pl.col("max_spend").first()
    )
    top = np.maximum.reduceat(options.cost, options.offsets[:-1])
    dnc = per_customer["do_not_contact"].to_numpy()
    assert (top[dnc] == 0).all()
    ceiling = per_customer["max_spend"].fill_null(np.inf).to_numpy()
    assert (top <= ceiling).all()
    assert set(options.extra) == {"contacts", "calls"}


def test_shadow_prices_are_named_by_their_resource() -> None:
    options = from_table(table(300, 1))
    plan = Plan(total_budget=3000.0, resource_limits=(
        ResourceLimit("contacts", max=60.0), ResourceLimit("calls", segment="s1", max=10.0)))
    allocation = lp.solve(options, build_constraints(plan, options))
    assert set(allocation.shadow_prices) == {"budget", "max:contacts", "max:calls:s1"}
    assert allocation.shadow_prices["max:contacts"] > 0


def test_unknown_resource_is_named() -> None:
    options = from_table(table(20, 0))
    plan = Plan(resource_limits=(ResourceLimit("emails", max=5.0),))
    with pytest.raises(InvalidInputError, match="emails"):
        build_constraints(plan, options)


def test_cli_limits_on_contacts_and_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.test_cli import run

    table(1500, 4, barred=True).write_csv(tmp_path / "options.csv")
    proc = run(
        "allocate", "--options", str(tmp_path / "options.csv"), "--budget", "12000",
        "--limit", "contacts<=1200", "--limit", "calls:s1<=30", "--limit", "contacts:s2>=80",
        "--output", str(tmp_path / "plan.csv"), "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["shadow_prices"]) == {
        "budget", "max:contacts", "max:calls:s1", "min:contacts:s2"
    }
    assert summary["status"] in ("optimal", "feasible")
    assert summary["gap"] is not None and summary["gap"] >= 0
    bad = run("allocate", "--options", str(tmp_path / "options.csv"), "--limit", "contacts=5")
    assert bad.returncode == 2 and "RESOURCE[:SEGMENT[/KIND]]<=X" in bad.stderr


def test_allocators_limited_to_spend_refuse_other_resources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import run

    table(100, 2).write_csv(tmp_path / "options.csv")
    proc = run("allocate", "--options", str(tmp_path / "options.csv"), "--budget", "500",
               "--limit", "contacts<=20", "--allocator", "greedy")
    assert proc.returncode == 2
    assert "plan.allocation.name" in proc.stderr and "contacts" in proc.stderr
