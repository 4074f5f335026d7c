"""Resource columns emitted by the cost strategies (``contacts_per_head``) and kept when
option sets are joined: a limit on contacts binds on the example and is priced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from equity_plugins.costs import ExponentialResponse, SpendTable

from engine.errors import InvalidInputError
from engine.options import OptionSet, from_table
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.synthetic import example
from tests.test_cli import run


def contacts_used(plan_csv: Path, size: int) -> float:
    """Contacts of a written plan: one per customer at a non-zero level, and per prospect of
    a pool the share of the pool at non-zero levels."""
    rows = pl.read_csv(plan_csv, infer_schema_length=None)
    customers = rows.filter(pl.col("kind") == "retention")
    used = float((customers["level"] > 0).sum())
    _, prospects, _ = example(size)
    assert prospects is not None
    pools = rows.filter(pl.col("kind") == "acquisition").join(
        prospects.select(pl.col("segment").cast(pl.String).alias("pool"), "prospects"),
        on="pool",
    )
    assert pools.height == prospects.height
    upper = pools["share_upper"].to_numpy()
    share = np.where(pools["level_upper"].to_numpy() > 0, upper, 0.0) + np.where(
        pools["level_lower"].to_numpy() > 0, 1.0 - upper, 0.0
    )
    return used + float((share * pools["prospects"].to_numpy()).sum())


def test_example_contacts_limit_binds_and_is_priced(tmp_path: Path) -> None:
    free = run("allocate", "--example", "--param", "cost.contacts_per_head=1",
               "--output", str(tmp_path / "free.csv"), "--json")
    assert free.returncode == 0, free.stderr
    assert contacts_used(tmp_path / "free.csv", 5_000) > 1_500  # so the limit below binds
    proc = run("allocate", "--example", "--param", "cost.contacts_per_head=1",
               "--limit", "contacts<=1500", "--output", str(tmp_path / "plan.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["shadow_prices"]["max:contacts"] > 0
    assert {"name": "max:contacts", "sense": "<=", "rhs": 1500.0} in summary["constraints"]
    used = contacts_used(tmp_path / "plan.csv", 5_000)
    assert 1_499.0 <= used <= 1_500.0 + 1e-6
    assert summary["equity_after"] < json.loads(free.stdout)["equity_after"]
    assert summary["status"] in ("optimal", "feasible") and summary["gap"] >= 0


def test_contacts_need_the_parameter() -> None:
    proc = run("allocate", "--example", "--limit", "contacts<=1500")
    assert proc.returncode == 2 and "contacts" in proc.stderr


def test_exponential_response_emits_contacts_for_customers_and_pools() -> None:
    customers, prospects, plan = example(300)
    model = ExponentialResponse.from_params({"contacts_per_head": 2.0})
    options = model.build(Portfolio(customers=customers, prospects=prospects), plan)
    contacts = options.resource("contacts")
    assert contacts is not None and contacts.shape == options.cost.shape
    size = options.size[options.unit_of_option]
    np.testing.assert_array_equal(contacts, np.where(options.level > 0, 2.0 * size, 0.0))
    assert (options.fractional[options.unit_of_option] & (contacts > 2.0)).any()  # pools
    plain = ExponentialResponse.from_params({}).build(
        Portfolio(customers=customers, prospects=prospects), plan
    )
    assert plain.resource("contacts") is None and plain.extra == {}


def test_spend_table_contacts_and_conflict() -> None:
    table = pl.DataFrame({
        "customer_id": ["a", "a", "b", "b"], "level": [0.0, 5.0, 0.0, 5.0],
        "cost": [0.0, 5.0, 0.0, 5.0], "value": [1.0, 2.0, 1.0, 3.0],
    })
    options = SpendTable.from_params({"contacts_per_head": 1.0}).build(
        Portfolio(options=table), Plan()
    )
    np.testing.assert_array_equal(options.resource("contacts"), [0.0, 1.0, 0.0, 1.0])
    with pytest.raises(InvalidInputError) as err:
        SpendTable.from_params({"contacts_per_head": 1.0}).build(
            Portfolio(options=table.with_columns(contacts=pl.lit(1.0))), Plan()
        )
    assert err.value.violations[0].field == "plan.cost.params.contacts_per_head"


def test_concat_keeps_resource_columns() -> None:
    a = from_table(pl.DataFrame({
        "customer_id": ["a", "a"], "level": [0.0, 5.0], "cost": [0.0, 5.0],
        "value": [1.0, 2.0], "calls": [0.0, 3.0], "segment": ["s1", "s1"],
    }))
    b = from_table(pl.DataFrame({
        "customer_id": ["b", "b", "b"], "level": [0.0, 1.0, 2.0], "cost": [0.0, 1.0, 2.0],
        "value": [1.0, 2.0, 2.5], "segment": ["s2", "s2", "s2"],
    }))
    joined = OptionSet.concat([a, b])
    calls = joined.resource("calls")
    assert calls is not None
    np.testing.assert_array_equal(calls, [0.0, 3.0, 0.0, 0.0, 0.0])  # b uses none
    assert joined.segments == ["s1", "s2"]
