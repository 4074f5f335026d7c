"""The typed plan summary: fields by name, the JSON form, and the mapping view agree."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from engine.pipeline import allocate
from engine.portfolio import Portfolio
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
