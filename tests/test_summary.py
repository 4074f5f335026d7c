"""The typed plan summary: fields by name, the JSON form, and the mapping view agree."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import polars as pl
import pytest

from engine.pipeline import allocate
from engine.portfolio import Portfolio
from engine.result import SUM_BLOCK, sums_by_code
from engine.summary import ConstraintInfo, PlanSummary
from engine.synthetic import example


@pytest.fixture(scope="module")
def summary() -> PlanSummary:
    customers, prospects, plan = example(400)
    return allocate(Portfolio(customers, prospects), plan).summary


def test_summary_is_typed_and_reads_as_a_mapping(summary: PlanSummary) -> None:
    assert isinstance(summary, PlanSummary)
    assert summary["equity_gain"] == summary.equity_gain == pytest.approx(
        summary.equity_after - summary.equity_before)
    assert summary.get("gap") == summary.gap
    assert list(summary) == [f.name for f in dataclasses.fields(PlanSummary)]
    assert all(isinstance(c, ConstraintInfo) for c in summary.constraints)
    assert summary["constraints"][0] == dataclasses.asdict(summary.constraints[0])
    with pytest.raises(KeyError):
        summary["no_such_figure"]


def test_json_form_round_trips_and_has_no_nan(summary: PlanSummary) -> None:
    undefined = dataclasses.replace(summary, roc=math.nan)
    data = json.loads(json.dumps(undefined.to_dict()))
    assert data["roc"] is None
    back = PlanSummary.from_dict(data)
    assert back.constraints == summary.constraints
    assert back.equity_after == summary.equity_after
    with pytest.raises(ValueError, match="unknown summary fields"):
        PlanSummary.from_dict(data | {"typo": 1})


def test_sums_by_segment_and_kind_are_the_table_s_sums_in_a_fixed_order() -> None:
    """The summary's sums by segment and kind are the plan table's (to 1e-12 of polars'
    group-by) and the same bits on every run: row order within blocks of rows, then the
    blocks in order (polars' threaded sums differed in the last bit from run to run)."""
    customers, prospects, plan = example(3_000, seed=4)
    result = allocate(Portfolio(customers, prospects), plan)
    units, summary = result.units, result.summary
    by_segment = units.group_by("segment").agg(
        pl.col("spend").sum(), pl.col("equity_before").sum(), pl.col("equity_after").sum()
    ).sort("segment")
    assert list(summary.spend_by_segment) == by_segment["segment"].to_list()
    for segment, spend, before, after in by_segment.iter_rows():
        assert summary.spend_by_segment[segment] == pytest.approx(spend, rel=1e-12)
        equity = summary.equity_by_segment[segment]
        assert equity["before"] == pytest.approx(before, rel=1e-12)
        assert equity["after"] == pytest.approx(after, rel=1e-12)
    for kind, spend in summary.spend_by_kind.items():
        expected = units.filter(pl.col("kind") == kind)["spend"].sum()
        assert spend == pytest.approx(expected, rel=1e-12)
    again = allocate(Portfolio(customers, prospects), plan).summary
    assert again.equity_by_segment == summary.equity_by_segment  # bit for bit
    assert again.spend_by_segment == summary.spend_by_segment


@pytest.mark.parametrize("n", [0, 1, 100, SUM_BLOCK, SUM_BLOCK + 1, 3 * SUM_BLOCK + 17])
def test_sums_by_code_add_rows_in_order_within_blocks(n: int) -> None:
    rng = np.random.default_rng(n)
    groups = 7
    codes = rng.integers(0, groups - 1, n).astype(np.int32)  # the last code never occurs
    values = [rng.lognormal(3.0, 2.0, n), -rng.random(n)]
    present, sums = sums_by_code(codes, groups, values)
    assert present.tolist() == [bool((codes == g).any()) for g in range(groups)]
    for v, total in zip(values, sums, strict=True):
        expected = np.zeros(groups)  # the definition: row order in a block, then blocks
        for start in range(0, n, SUM_BLOCK):
            block = np.zeros(groups)
            for c, x in zip(codes[start:start + SUM_BLOCK].tolist(),
                            v[start:start + SUM_BLOCK].tolist(), strict=True):
                block[c] += x
            expected += block
        assert total.tobytes() == expected.tobytes()
        exact = [math.fsum(v[codes == g]) for g in range(groups)]
        assert total == pytest.approx(exact, rel=1e-13, abs=0.0)
