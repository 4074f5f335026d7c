"""What a strategy returns is checked when the engine runs it, not only by the conformance
kit: duplicate ids from a metric or a transactions metric, an OptionSet whose arrays do not
fit together, non-finite numbers. Each is a ``PluginError`` naming the plugin (CLI exit 5),
never a silent plan or an internal error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from equity_plugins.costs import ExponentialResponse

import engine.cli as cli
from engine import plugins
from engine.clv.transactions import normalize_transactions
from engine.errors import PluginError
from engine.options import OptionSet
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.plugins import Registry, build_registry
from engine.portfolio import Portfolio
from engine.strategies import Metric
from engine.testing import sample_portfolio
from engine.valuation import Valuation
from tests.test_plugin_isolation import Plugin

N = 100


# --- metrics --------------------------------------------------------------------------------


class SameIdMetric(Metric):
    name = "same-id"
    summary = "Gives every row the first row's id."
    produces: ClassVar[tuple[str, ...]] = ("customer_id", "score")

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        first = table["customer_id"][0]
        return pl.DataFrame({"customer_id": [first] * table.height,
                             "score": np.ones(table.height)})


class ShuffledIdMetric(SameIdMetric):
    name = "shuffled-id"

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return pl.DataFrame({"customer_id": table["customer_id"].reverse(),
                             "score": np.ones(table.height)})


class InfiniteMetric(SameIdMetric):
    name = "infinite"
    produces: ClassVar[tuple[str, ...]] = ("score",)

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return pl.DataFrame({"score": np.full(table.height, np.inf)})


class TransactionsMetric(Metric):
    """A transactions metric: one customer per id in the log, margin and retention."""

    name = "tx-good"
    summary = "One customer per id."
    input_table: ClassVar[str] = "transactions"
    requires: ClassVar[tuple[str, ...]] = ("customer_id", "date", "amount")
    produces: ClassVar[tuple[str, ...]] = ("customer_id", "margin", "retention", "p_alive")

    def customers(self, ids: pl.Series) -> pl.DataFrame:
        n = ids.len()
        return pl.DataFrame({"customer_id": ids, "margin": np.full(n, 50.0),
                             "retention": np.full(n, 0.7), "p_alive": np.full(n, 0.9)})

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return self.customers(table["customer_id"].unique(maintain_order=True))


class DuplicateTransactionsMetric(TransactionsMetric):
    name = "tx-duplicates"

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return self.customers(pl.Series("customer_id", ["c1"] * 5000))


class NaNTransactionsMetric(TransactionsMetric):
    name = "tx-nan"

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        out = super().compute(table, valuation)
        return out.with_columns(pl.lit(float("nan")).alias("p_alive"))


class NullMarginTransactionsMetric(TransactionsMetric):
    name = "tx-null-margin"

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        out = super().compute(table, valuation)
        return out.with_columns(pl.lit(None, dtype=pl.Float64).alias("margin"))


# --- cost models ----------------------------------------------------------------------------


def _broken(name: str, change: Callable[[OptionSet], dict[str, Any]]) -> type:
    def build(self: Any, portfolio: Portfolio, plan: Plan) -> OptionSet:
        options = ExponentialResponse.build(self, portfolio, plan)
        return replace(options, **change(options))

    return type(name.title().replace("-", ""), (ExponentialResponse,), {"name": name,
                                                                         "build": build})


COSTS = (
    _broken("short-cost", lambda o: {"cost": o.cost[:-1]}),
    _broken("wide-value", lambda o: {"value": np.stack([o.value, o.value], axis=1)}),
    _broken("short-kind", lambda o: {"kind": o.kind[:-1]}),
    _broken("bad-offsets", lambda o: {"offsets": o.offsets[:-1]}),
    _broken("empty-unit", lambda o: {"offsets": np.concatenate([[0, 0], o.offsets[2:]])}),
    _broken("bad-segment", lambda o: {"segment": o.segment + len(o.segments)}),
    _broken("same-unit", lambda o: {"unit_id": pl.Series("u", ["x"] * o.n_units)}),
    _broken("inf-cost", lambda o: {"cost": np.where(np.arange(o.cost.size) == 3, np.inf,
                                                     o.cost)}),
    _broken("nan-value", lambda o: {"value": np.full_like(o.value, np.nan)}),
    _broken("negative-size", lambda o: {"size": -o.size}),
)

PLUGIN = Plugin(
    "acme-out",
    costs=COSTS,
    metrics=(SameIdMetric, ShuffledIdMetric, InfiniteMetric, TransactionsMetric,
             DuplicateTransactionsMetric, NaNTransactionsMetric, NullMarginTransactionsMetric),
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = build_registry(entry_points=False, extra=[PLUGIN])
    assert registry.failures == []
    return registry


@pytest.fixture(scope="module")
def inputs() -> tuple[Portfolio, Plan]:
    portfolio, plan = sample_portfolio(N, minimums=False)
    return portfolio, plan


def transactions(n_customers: int = 50) -> pl.DataFrame:
    ids = [f"{i:04d}" for i in range(n_customers)]
    return normalize_transactions(pl.DataFrame({
        "customer_id": ids * 2,
        "date": ["2020-01-01"] * n_customers + ["2020-03-01"] * n_customers,
        "amount": [10.0] * (2 * n_customers),
    }))


@pytest.mark.parametrize(("choice", "problem"), [
    ({"metric": "same-id"}, "same-id: returned duplicate customer_id values (99 rows repeat "
                            "an earlier id, first "),
    ({"metric": "shuffled-id"}, "shuffled-id: returned a customer_id column that differs"),
    ({"metric": "infinite"}, "infinite: column 'score' has non-finite values"),
    ({"cost": "short-cost"}, "level has shape (530,), cost has (529,)"),
    ({"cost": "wide-value"}, "value has shape (530, 2), cost has (530,)"),
    ({"cost": "short-kind"}, "kind has shape (104,); 105 units (unit_id) need (105,)"),
    ({"cost": "bad-offsets"}, "offsets has shape (105,); 105 units need (106,)"),
    ({"cost": "empty-unit"}, "has no options (offsets must increase)"),
    ({"cost": "bad-segment"}, "segment codes must index the"),
    ({"cost": "same-unit"}, "duplicate unit_id among retention units (99 repeat an earlier "
                            "unit, first 'x')"),
    ({"cost": "inf-cost"}, "options.cost: 1 non-finite values"),
    ({"cost": "nan-value"}, "options.value: 530 non-finite values"),
    ({"cost": "negative-size"}, "size must be finite and >= 0"),
])
def test_broken_output_is_a_plugin_error(
    registry: Registry, inputs: tuple[Portfolio, Plan], choice: dict[str, str], problem: str
) -> None:
    portfolio, plan = inputs
    changes = {kind: StrategyChoice(name) for kind, name in choice.items()}
    with pytest.raises(PluginError) as caught:
        allocate(portfolio, plan.with_overrides(**changes), registry)
    assert caught.value.plugin == "acme-out"
    assert problem in caught.value.problem, caught.value.problem
    # the engine keeps working for healthy strategies
    assert allocate(portfolio, plan, registry).summary["status"] == "optimal"


@pytest.mark.parametrize(("metric", "problem"), [
    ("tx-duplicates", "tx-duplicates: returned duplicate customer_id values (4999 rows repeat "
                      "an earlier id, first 'c1')"),
    ("tx-nan", "tx-nan: column 'p_alive' has non-finite values"),
    ("tx-null-margin", "tx-null-margin: column 'margin' has null values"),
])
def test_broken_transactions_metric_is_a_plugin_error(
    registry: Registry, metric: str, problem: str
) -> None:
    plan = Plan(total_budget=100.0, metric=StrategyChoice(metric))
    with pytest.raises(PluginError) as caught:
        allocate(Portfolio(transactions=transactions()), plan, registry)
    assert caught.value.plugin == "acme-out" and problem in caught.value.problem


def test_a_good_transactions_metric_plans_every_customer_once(registry: Registry) -> None:
    plan = Plan(total_budget=100.0, metric=StrategyChoice("tx-good"))
    units = allocate(Portfolio(transactions=transactions()), plan, registry).units
    assert units.height == 50 and units["customer_id"].is_unique().all()
    assert units["customer_id"][0] == "0000" and units["p_alive"].is_not_null().all()


def test_cli_exits_5_naming_the_plugin(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plugins, "_DEFAULT", registry)
    for args, message in [
        (["--metric", "same-id"], "error: plugin 'acme-out': same-id: returned duplicate "
                                  "customer_id values"),
        (["--cost", "short-cost"], "error: plugin 'acme-out': short-cost: level has shape"),
    ]:
        code = cli.main(["allocate", "--example", "--example-size", "200", *args])
        err = capsys.readouterr().err
        assert code == 5, err
        assert err.strip().splitlines()[-1].startswith(message), err
        assert "internal error" not in err and "Traceback" not in err
