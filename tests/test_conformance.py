"""The conformance kit (engine.testing): every built-in strategy passes it, and it catches
strategies that break the contract, with a message naming the class and the rule."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from equity_plugins import allocators, costs, metrics, sbg

from engine.allocation import Allocation
from engine.hookspecs import hookimpl
from engine.options import OptionSet
from engine.pipeline import allocate
from engine.plan import Plan
from engine.plugins import DEFAULT_PLUGINS, build_registry
from engine.portfolio import Portfolio
from engine.strategies import Allocator, CostModel, Metric, Param, Problem
from engine.synthetic import options_table
from engine.testing import (
    check_allocator,
    check_cost_model,
    check_metric,
    check_params,
    check_plugin,
    sample_portfolio,
    sample_problem,
    tile_table,
)
from engine.valuation import Valuation

CHECKED: set[tuple[str, str]] = set()


def checked(cls: Any) -> None:
    CHECKED.add((cls.kind, cls.name))


# --- built-ins ------------------------------------------------------------------------------


def test_clv() -> None:
    portfolio, _ = sample_portfolio()
    assert portfolio.customers is not None
    out = check_metric(metrics.CustomerLifetimeValue, portfolio.customers,
                       valuation=Valuation(0.08, horizon=10))
    assert out["clv"].dtype == pl.Float64
    checked(metrics.CustomerLifetimeValue)


def test_roc() -> None:
    portfolio, plan = sample_portfolio()
    units = allocate(portfolio, plan).units
    check_metric(metrics.ReturnOnCustomer, units, allow_nan=("roc",))
    checked(metrics.ReturnOnCustomer)


def test_sbg() -> None:
    # With alpha and beta given the metric is row-wise (a fit on the table is not: one row
    # cannot identify the sBG; tests/test_clv_sbg_metric.py covers the fits).
    rng = np.random.default_rng(3)
    table = pl.DataFrame({"customer_id": np.arange(200), "renewals": rng.integers(0, 30, 200),
                          "active": rng.random(200) < 0.8, "payment": rng.uniform(5, 20, 200)})
    for params in ({"alpha": 0.704, "beta": 1.182}, {"alpha": 0.668, "beta": 3.806,
                                                      "bridge": "next"}):
        out = check_metric(sbg.SubscriptionCLV, table, params=params,
                           valuation=Valuation(0.1, horizon=24))
        assert (out["retention"] < 1).all() and (out["clv"] >= 0).all()
    checked(sbg.SubscriptionCLV)


def test_exponential_response() -> None:
    portfolio, plan = sample_portfolio()
    check_cost_model(costs.ExponentialResponse, portfolio, plan,
                     params={"ceiling_share": 0.5, "response": 0.2})
    assert portfolio.customers is not None
    bare = portfolio.customers.drop("retention_ceiling", "retention_response", "service_cost")
    check_cost_model(costs.ExponentialResponse, Portfolio(bare, None), plan)
    checked(costs.ExponentialResponse)


def test_activity_based() -> None:
    portfolio, plan = sample_portfolio()
    check_cost_model(costs.ActivityBased, portfolio, plan,
                     params={"unit_costs": {"calls": 4.0, "orders": 0.8}})
    checked(costs.ActivityBased)


def test_spend_table() -> None:
    _, plan = sample_portfolio()
    check_cost_model(costs.SpendTable, Portfolio(options=options_table(300, seed=5)), plan)
    checked(costs.SpendTable)


def test_segment_spend_table() -> None:
    portfolio, plan = sample_portfolio(prospects=False)
    assert portfolio.customers is not None
    segments = portfolio.customers["segment"].unique().sort().to_list()
    levels = [0.0, 5.0, 10.0, 20.0]
    table = pl.DataFrame({
        "segment": [s for s in segments for _ in levels],
        "level": levels * len(segments),
        "retention": [0.6 + 0.05 * i + 0.01 * j for i in range(len(segments))
                      for j in range(len(levels))],
    })
    check_cost_model(costs.SegmentSpendTable, Portfolio(portfolio.customers, None, table), plan)
    checked(costs.SegmentSpendTable)


@pytest.mark.parametrize("cls", [allocators.LinearProgram, allocators.Greedy,
                                 allocators.Uniform, allocators.Proportional])
def test_allocators(cls: type[Allocator]) -> None:
    check_allocator(cls, sample_problem())
    if cls.supports_minimums:
        check_allocator(cls, sample_problem(minimums=True), n_large=20_000)
    checked(cls)


def test_lp_parameters() -> None:
    check_allocator(allocators.LinearProgram, sample_problem(n=150),
                    params={"solver": "highs", "time_limit": 30.0}, n_large=10_000)


def test_every_builtin_was_checked() -> None:
    # Transaction metrics (bgnbd) turn a log into customers rather than adding columns row
    # by row, which is what check_metric verifies; tests/test_bgnbd.py covers them.
    builtins = {key for key, info in build_registry(entry_points=False).strategies.items()
                if info.package == "equity-engine"
                and getattr(info.cls, "input_table", "customers") == "customers"}
    if len(CHECKED) < len(builtins):
        pytest.skip("run the whole module to see which built-ins were checked")
    assert builtins <= CHECKED


def test_builtin_plugins_register_cleanly() -> None:
    registry = build_registry(entry_points=False)
    assert registry.failures == []
    assert {info.plugin for info in registry.strategies.values()} == set(DEFAULT_PLUGINS)


def test_check_plugin_reports_registration_failures() -> None:
    class Plugin:
        __name__ = "half-broken"

        @hookimpl
        def register_metrics(self, register: Any) -> None:
            register(GoodMetric)
            register(dict)

    with pytest.raises(AssertionError, match=r"plugin 'half-broken'.*subclass of Metric"):
        check_plugin(Plugin())


# --- the kit catches broken strategies ------------------------------------------------------


def customers(n: int = 50) -> pl.DataFrame:
    portfolio, _ = sample_portfolio(n)
    assert portfolio.customers is not None
    return portfolio.customers


class GoodMetric(Metric):
    name = "good"
    summary = "Margin times two."
    requires: ClassVar[tuple[str, ...]] = ("margin",)
    produces: ClassVar[tuple[str, ...]] = ("double",)
    params: ClassVar = {"factor": Param(2.0, "Multiplier.", minimum=0.0)}
    factor: float

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return pl.DataFrame({"double": table["margin"].to_numpy() * self.factor})


def test_a_good_metric_passes() -> None:
    check_metric(GoodMetric, customers(), n_large=5_000)


def broken_metric(compute: Any, **attrs: Any) -> type[Metric]:
    return type("Broken", (GoodMetric,), {"compute": compute, **attrs})


@pytest.mark.parametrize(("compute", "message"), [
    (lambda self, t, v: pl.DataFrame({"double": t["margin"].to_numpy() / t.height}),
     "row 0 alone must give what it gets in the whole table"),
    (lambda self, t, v: pl.DataFrame({"double": np.sort(t["margin"].to_numpy())}),
     "rows shuffled"),
    (lambda self, t, v: pl.DataFrame({"double": t["margin"].to_numpy()[:-1]}),
     "returned 49 rows for 50"),
    (lambda self, t, v: pl.DataFrame({"double": t["margin"].to_numpy(), "x": 1.0}),
     r"extra \['x'\]"),
    (lambda self, t, v: pl.DataFrame({"double": t["margin"].to_numpy() * np.nan}),
     "non-finite"),
    (lambda self, t, v: pl.DataFrame({"double": np.random.default_rng().random(t.height)}),
     "not deterministic"),
    (lambda self, t, v: pl.DataFrame({"double": [[1.0]] * t.height}), "has dtype"),
    (lambda self, t, v: t["margin"].to_numpy(), "not a polars DataFrame"),
    (lambda self, t, v: pl.DataFrame({"double": t["margin"].to_numpy()[: min(t.height, 60)]}),
     "copies of the table"),
])
def test_the_kit_catches_broken_metrics(compute: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message) as err:
        check_metric(broken_metric(compute), customers(), n_large=5_000)
    assert "Broken (metric 'good')" in str(err.value)


def test_the_kit_accepts_declared_aggregate_columns() -> None:
    def share(self: Any, t: pl.DataFrame, v: Valuation) -> pl.DataFrame:
        margin = t["margin"].to_numpy()
        return pl.DataFrame({"double": margin / margin.sum()})

    with pytest.raises(AssertionError, match="alone"):
        check_metric(broken_metric(share), customers(), n_large=1_000)
    check_metric(broken_metric(share), customers(), aggregate=("double",), n_large=1_000)


def test_the_kit_checks_parameter_handling() -> None:
    class Forgets(GoodMetric):
        def __init__(self, **params: Any) -> None:
            pass

    class Hoards(GoodMetric):
        def __init__(self, **params: Any) -> None:
            super().__init__(**params)
            self.cache: dict[str, float] = {}

    class Converts(GoodMetric):
        def __init__(self, factor: float = 2.0) -> None:
            self.factor = round(factor)

    class Undocumented(GoodMetric):
        params: ClassVar = {"factor": Param(2.0, "")}

    class BadDefault(GoodMetric):
        params: ClassVar = {"factor": Param(-1.0, "Multiplier.", minimum=0.0)}

    class Nameless(GoodMetric):
        name = "has space"

    cases: list[tuple[type[Metric], str]] = [
        (Forgets, "parameter 'factor' is not stored on the instance"),
        (Hoards, r"undeclared attributes \['cache'\]"),
        (Converts, r"self.factor is 2, expected 2.0"),
        (Undocumented, "needs a doc string"),
        (BadDefault, "fails its own declaration"),
        (Nameless, "name must be"),
    ]
    for cls, message in cases:
        with pytest.raises(AssertionError, match=message):
            check_params(cls)
    with pytest.raises(AssertionError, match="not parameters"):
        check_params(GoodMetric, {"nope": 1})
    assert check_params(GoodMetric, {"factor": 3}).get_params() == {"factor": 3.0}


class GoodCost(CostModel):
    name = "good-cost"
    summary = "Exponential response."

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        return costs.response_options(portfolio.customers, portfolio.prospects, plan, 0.3, 0.05)


def test_a_good_cost_model_passes() -> None:
    portfolio, plan = sample_portfolio(60)
    check_cost_model(GoodCost, portfolio, plan, n_large=3_000)


def scaled_by_portfolio(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
    options = GoodCost.build(self, portfolio, plan)
    options.value = options.value / options.n_units
    return options


def with_nan(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
    options = GoodCost.build(self, portfolio, plan)
    options.value = options.value.copy()
    options.value[3] = np.nan
    return options


def same_ids(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
    options = GoodCost.build(self, portfolio, plan)
    options.unit_id = pl.Series(["x"] * options.n_units)
    return options


def float32(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
    options = GoodCost.build(self, portfolio, plan)
    options.cost = options.cost.astype(np.float32)
    return options


def short_offsets(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
    options = GoodCost.build(self, portfolio, plan)
    options.kind = options.kind[:-1]
    return options


@pytest.mark.parametrize(("build", "message"), [
    (scaled_by_portfolio, "alone must give the options it gets in the whole portfolio"),
    (with_nan, "non-finite"),
    (same_ids, "appears more than once"),
    (float32, "cost must be a float64 array"),
    (short_offsets, "kind must be a integer array of shape"),
    (lambda self, p, plan: None, "returned NoneType"),
])
def test_the_kit_catches_broken_cost_models(build: Any, message: str) -> None:
    portfolio, plan = sample_portfolio(60)
    broken = type("BrokenCost", (GoodCost,), {"build": build})
    with pytest.raises(AssertionError, match=message) as err:
        check_cost_model(broken, portfolio, plan, n_large=3_000)
    assert "BrokenCost (cost 'good-cost')" in str(err.value)


def test_tile_table_renames_ids() -> None:
    table = pl.DataFrame({"customer_id": [1, 2], "x": [0.5, 1.5]})
    tiled = tile_table(table, 3)
    assert tiled["customer_id"].to_list() == ["1~copy0", "2~copy0", "1~copy1", "2~copy1",
                                              "1~copy2", "2~copy2"]
    assert tiled["x"].to_list() == [0.5, 1.5] * 3


class Spendthrift(Allocator):
    name = "spendthrift"
    summary = "Everyone gets the most expensive level."

    def allocate(self, problem: Problem) -> Allocation:
        return Allocation.single(problem.options.offsets[1:] - 1, "feasible", self.name)


def test_the_kit_catches_broken_allocators() -> None:
    problem = sample_problem(60)
    with pytest.raises(AssertionError, match="breaks"):
        check_allocator(Spendthrift, problem, n_large=1_000)

    class Meddler(allocators.Greedy):
        def allocate(self, problem: Problem) -> Allocation:
            problem.options.value[:] = 0.0
            return super().allocate(problem)

    with pytest.raises(AssertionError, match=r"modified problem\.options\.value"):
        check_allocator(Meddler, sample_problem(60), n_large=1_000)

    class Short(allocators.Greedy):
        def allocate(self, problem: Problem) -> Allocation:
            a = super().allocate(problem)
            return Allocation(a.lo[:-1], a.hi[:-1], a.theta[:-1], a.status, "", "")

    with pytest.raises(AssertionError, match="lo has shape"):
        check_allocator(Short, problem, n_large=1_000)

    class Boastful(allocators.Greedy):
        exact = True

    with pytest.raises(AssertionError, match="finite LP bound"):
        check_allocator(Boastful, problem, n_large=1_000)

    class Crashes(allocators.Greedy):
        def allocate(self, problem: Problem) -> Allocation:
            if problem.should_stop():
                raise RuntimeError("no")
            return super().allocate(problem)

    with pytest.raises(AssertionError, match="should_stop"):
        check_allocator(Crashes, problem, n_large=1_000)

    with pytest.raises(AssertionError, match="minimum rows"):
        check_allocator(allocators.Greedy, sample_problem(60, minimums=True))
