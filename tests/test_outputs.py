"""What the engine writes joins back to what it read: ids and levels keep their input types,
leading zeros survive, pools are named apart from customers and say how they mix levels.
Real allocations throughout, in process, through the CLI and over a gRPC server on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import engine.cli as cli
from engine.clv.transactions import read_transactions
from engine.clv.value import clv_from_transactions
from engine.io import read_table
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.plugins import build_registry
from engine.portfolio import Portfolio
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import example, prospects
from tests.servers import running

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
PLAN = Plan(total_budget=6000.0, acquisition_budget=2500.0)


def customers_with_ids(ids: list[object] | pl.Series, n: int = 300) -> pl.DataFrame:
    cust, _, _ = example(n, seed=3)
    return cust.with_columns(pl.Series("customer_id", ids))


def zero_padded(n: int) -> list[str]:
    return [f"{i:04d}" for i in range(n)]


def options_table() -> pl.DataFrame:
    """Three customers with integer ids and integer levels (Int64 both)."""
    return pl.DataFrame(
        {
            "customer_id": np.repeat(np.array([7, 8, 9], dtype=np.int64), 3),
            "level": np.tile(np.array([0, 5, 10], dtype=np.int64), 3),
            "cost": np.tile([0.0, 5.0, 10.0], 3),
            "value": [100.0, 112.0, 115.0, 50.0, 51.0, 52.0, 80.0, 95.0, 99.0],
        }
    )


# --- ids ------------------------------------------------------------------------------------


def test_int64_ids_stay_int64_and_pools_are_named_apart() -> None:
    ids = pl.Series(np.arange(1000, 1300, dtype=np.int64))
    _, pros, _ = example(300, seed=3)
    units = allocate(Portfolio(customers_with_ids(ids), pros), PLAN).units
    assert units.schema["customer_id"] == pl.Int64 and units.schema["pool"] == pl.String
    customers = units.filter(pl.col("kind") == "retention")
    pools = units.filter(pl.col("kind") == "acquisition")
    assert customers["customer_id"].sort().equals(ids.sort(), check_names=False)
    assert customers["pool"].is_null().all()
    assert pools["customer_id"].is_null().all()
    assert sorted(pools["pool"].to_list()) == sorted(pros["segment"].to_list())
    # the metric's columns join on the typed ids: every customer has its clv, no pool has
    assert customers["clv"].is_not_null().all() and pools["clv"].is_null().all()


def test_string_ids_keep_leading_zeros() -> None:
    ids = zero_padded(300)
    _, pros, _ = example(300, seed=3)
    units = allocate(Portfolio(customers_with_ids(ids), pros), PLAN).units
    assert units.schema["customer_id"] == pl.String
    got = units.filter(pl.col("pool").is_null())["customer_id"].to_list()
    assert sorted(got) == ids


def test_a_pool_named_like_a_customer_stays_a_pool() -> None:
    cust = customers_with_ids(["premium", *zero_padded(299)])
    _, pros, _ = example(300, seed=3)
    units = allocate(Portfolio(cust, pros), PLAN).units
    both = units.filter((pl.col("customer_id") == "premium") | (pl.col("pool") == "premium"))
    assert both.sort("kind")["kind"].to_list() == ["acquisition", "retention"]
    assert both.filter(pl.col("kind") == "retention")["clv"].is_not_null().all()


def test_options_table_keeps_id_and_level_types() -> None:
    result = allocate(Portfolio(options=options_table()), Plan(total_budget=12.0,
                      cost=StrategyChoice("spend-table")))
    units = result.units.sort("customer_id")
    assert units.schema["customer_id"] == pl.Int64 and units.schema["level"] == pl.Int64
    assert units["customer_id"].to_list() == [7, 8, 9]
    assert set(units["level"].to_list()) <= {0, 5, 10}
    assert units["spend"].sum() <= 12.0
    assert units.select("level_lower", "level_upper", "share_upper").null_count().row(0) == (
        3, 3, 3,
    )


def test_float_levels_stay_float() -> None:
    table = options_table().with_columns(pl.col("level").cast(pl.Float64) + 0.5)
    units = allocate(Portfolio(options=table), Plan(total_budget=12.0,
                     cost=StrategyChoice("spend-table"))).units
    assert units.schema["level"] == pl.Float64
    assert set(units["level"].to_list()) <= {0.5, 5.5, 10.5}


# --- pools ----------------------------------------------------------------------------------


def test_pools_name_the_two_levels_they_mix() -> None:
    pros = prospects()
    units = allocate(Portfolio(prospects=pros), Plan(total_budget=20_000.0)).units
    sizes = dict(zip(pros["segment"].to_list(), pros["prospects"].to_list(), strict=True))
    mixed = units.filter(pl.col("level").is_null())
    assert mixed.height >= 1  # the budget stops part-way through a pool
    for row in units.iter_rows(named=True):
        lower, upper, share = row["level_lower"], row["level_upper"], row["share_upper"]
        assert lower <= upper and 0.0 <= share < 1.0
        head = lower * (1 - share) + upper * share  # spend per prospect
        assert row["spend"] == pytest.approx(sizes[row["pool"]] * head)
        if row["level"] is None:
            assert lower < upper and share > 0.0
        else:
            assert lower == upper == row["level"] and share == 0.0


def test_customers_have_no_pool_columns() -> None:
    _, pros, _ = example(300, seed=3)
    units = allocate(Portfolio(customers_with_ids(zero_padded(300)), pros), PLAN).units
    customers = units.filter(pl.col("kind") == "retention")
    assert customers.select("pool", "level_lower", "level_upper", "share_upper").null_count().row(
        0
    ) == (300,) * 4
    assert customers["level"].is_not_null().all()


# --- files ----------------------------------------------------------------------------------


def test_csv_ids_are_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    for text, dtype, values in [
        ("0001\n0002\n", pl.String, ["0001", "0002"]),
        ("17\n-3\n", pl.Int64, [17, -3]),
        ("17\nC1\n", pl.String, ["17", "C1"]),
        ("1\n99999999999999999999\n", pl.String, ["1", "99999999999999999999"]),
        ("1\n\n", pl.Int64, [1, None]),
    ]:
        path.write_text("customer_id,margin\n" + "".join(f"{x},1\n" for x in text.splitlines()))
        table = read_table(path)
        assert table.schema["customer_id"] == dtype, text
        assert table["customer_id"].to_list() == values


@pytest.mark.parametrize(("ids", "dtype"), [(zero_padded(300), pl.String),
                                            (list(range(5, 305)), pl.Int64)])
def test_cli_output_keeps_csv_ids(tmp_path: Path, ids: list[object], dtype: pl.DataType) -> None:
    cust, pros, _ = example(300, seed=3)
    cust.with_columns(pl.Series("customer_id", ids)).write_csv(tmp_path / "customers.csv")
    pros.write_csv(tmp_path / "prospects.csv")
    for out in ("plan.parquet", "plan.csv"):
        code = cli.main(["allocate", "--customers", str(tmp_path / "customers.csv"),
                         "--prospects", str(tmp_path / "prospects.csv"), "--budget", "6000",
                         "--json", "--output", str(tmp_path / out)])
        assert code == 0
        plan = read_table(tmp_path / out)
        assert plan.schema["customer_id"] == dtype
        got = plan.filter(pl.col("pool").is_null())["customer_id"].to_list()
        assert sorted(got) == sorted(ids)  # type: ignore[type-var]
        assert plan["pool"].drop_nulls().sort().to_list() == sorted(pros["segment"].to_list())


def test_cdnow_ids_keep_leading_zeros_through_clv(tmp_path: Path) -> None:
    tx = read_transactions(CDNOW)
    assert tx.schema["customer_id"] == pl.String and tx["customer_id"][0] == "0001"
    result = clv_from_transactions(CDNOW, "1997-09-30", "week")
    assert result.customers.schema["customer_id"] == pl.String
    assert result.customers["customer_id"][0] == "0001"
    out = tmp_path / "clv.csv"
    code = cli.main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                     "--json", "--output", str(out)])
    assert code == 0
    assert out.read_text().splitlines()[1].startswith("0001,")
    assert read_table(out)["customer_id"][0] == "0001"


def test_csv_transactions_keep_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,date,amount\n007,2020-01-01,5\n007,2020-02-01,6\n"
                    "010,2020-01-05,3\n")
    tx = read_transactions(path)
    assert tx["customer_id"].to_list() == ["007", "007", "010"]


def test_transactions_join_customers_without_coercion() -> None:
    tx = read_transactions(CDNOW)  # ids "0001".."2357"
    n = int(tx["customer_id"].n_unique())
    plan = Plan(total_budget=2000.0, metric=StrategyChoice("bgnbd",
                {"calibration_end": "1997-09-30"}))
    # the same ids as text join; the segments travel with the plan
    same = pl.DataFrame({"customer_id": [f"{i:04d}" for i in range(1, n + 1)],
                         "segment": ["odd" if i % 2 else "even" for i in range(1, n + 1)]})
    units = allocate(Portfolio(customers=same, transactions=tx), plan).units
    assert units.schema["customer_id"] == pl.String
    first = units.filter(pl.col("customer_id") == "0001")
    assert first["segment"].to_list() == ["odd"] and first["clv"].is_not_null().all()
    # integer ids are compared as text: 1 is not 0001, and no id is rewritten to match
    ints = same.with_columns(pl.int_range(1, n + 1, dtype=pl.Int64).alias("customer_id"))
    units = allocate(Portfolio(customers=ints, transactions=tx), plan).units
    assert units.schema["customer_id"] == pl.String
    segment = dict(zip(units["customer_id"].to_list(), units["segment"].to_list(), strict=True))
    assert segment["0001"] == "" and segment["0999"] == ""  # no customer 0001 in the table
    assert segment["1000"] == "even"  # customer 1000 is written 1000 in both
    # Int64 transactions with Int64 customers join as integers
    tx_int = tx.with_columns(pl.col("customer_id").cast(pl.Int64))
    units = allocate(Portfolio(customers=ints, transactions=tx_int), plan).units
    assert units.schema["customer_id"] == pl.Int64
    assert units.filter(pl.col("customer_id") == 2)["segment"].to_list() == ["even"]


# --- over gRPC ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    config = ServerConfig(port=0, workers=4, max_concurrent_solves=1, max_queued_solves=1)
    yield from running(config, build_registry(entry_points=False), grace=1.0)


@pytest.mark.parametrize("fmt", ["arrow", "columns"])
@pytest.mark.parametrize("ids", [pl.Series(np.arange(10, 310, dtype=np.int64)),
                                 pl.Series(zero_padded(300))])
def test_grpc_units_keep_types(server: EquityServer, fmt: str, ids: pl.Series) -> None:
    _, pros, _ = example(300, seed=3)
    portfolio = Portfolio(customers_with_ids(ids), pros)
    local = allocate(portfolio, PLAN).units
    with Client(server.address, table_format=fmt, timeout=60) as client:
        unary = client.allocate(portfolio, PLAN).units
        streamed = client.stream(portfolio, PLAN, batch_rows=100, response_batch_rows=7).units
    assert unary.schema["customer_id"] == ids.dtype
    assert_frame_equal(unary, local)
    assert_frame_equal(streamed, local)


def test_grpc_options_keep_int_levels(server: EquityServer) -> None:
    portfolio = Portfolio(options=options_table())
    plan = Plan(total_budget=12.0, cost=StrategyChoice("spend-table"))
    for fmt in ("arrow", "columns"):
        with Client(server.address, table_format=fmt, timeout=60) as client:
            units = client.allocate(portfolio, plan).units
        assert units.schema["customer_id"] == pl.Int64 and units.schema["level"] == pl.Int64
        assert_frame_equal(units, allocate(portfolio, plan).units)


def test_summary_json_is_unchanged_by_id_types() -> None:
    _, pros, _ = example(300, seed=3)
    a = allocate(Portfolio(customers_with_ids(zero_padded(300)), pros), PLAN)
    b = allocate(Portfolio(customers_with_ids(list(range(300))), pros), PLAN)
    assert json.loads(a.to_json())["equity_after"] == pytest.approx(
        json.loads(b.to_json())["equity_after"]
    )
