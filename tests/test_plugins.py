"""Plugins found through the `equity_engine` entry-point group are loaded and used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.plugins import build_registry
from engine.portfolio import Portfolio
from engine.synthetic import customers

PLUGIN = """
import numpy as np
import polars as pl
from engine.hookspecs import hookimpl
from engine.strategies import Allocator, CostModel, Metric, Param
from engine.allocation import Allocation
from equity_plugins.costs import response_options


class DoubleMargin(Metric):
    name = "double-margin"
    requires = ("margin",)
    produces = ("margin",)

    def compute(self, table, valuation):
        return pl.DataFrame({"margin": table["margin"].to_numpy() * 2.0})


class FlatResponse(CostModel):
    name = "flat-response"
    params = {"response": Param(0.2, "k for every customer", minimum=0.0)}

    def build(self, portfolio, plan):
        plain = portfolio.customers.drop("retention_ceiling", "retention_response", strict=False)
        return response_options(plain, None, plan, 0.5, self.response)


class CheapestLevel(Allocator):
    name = "cheapest"

    def allocate(self, problem):
        return Allocation.single(problem.options.baseline, "feasible", self.name)


@hookimpl
def register_metrics(register):
    register(DoubleMargin)


@hookimpl
def register_costs(register):
    register(FlatResponse)


@hookimpl
def register_allocators(register):
    register(CheapestLevel)
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution `acme-equity` 1.2.3 on sys.path with an entry point, as pip leaves it."""
    (tmp_path / "acme_equity.py").write_text(PLUGIN)
    info = tmp_path / "acme_equity-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-equity\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[equity_engine]\nacme = acme_equity\n")
    broken = tmp_path / "broken_equity-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-equity\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text("[equity_engine]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugin_is_found_with_provenance(installed_plugin: Path) -> None:
    registry = build_registry()
    info = registry.info("allocation", "cheapest")
    assert (info.plugin, info.package, info.version) == ("acme", "acme-equity", "1.2.3")
    assert registry.info("metric", "double-margin").package == "acme-equity"
    assert registry.info("cost", "flat-response").cls.params["response"].default == 0.2
    # The broken package is reported, named, and did not stop anything else from loading.
    assert [f.plugin for f in registry.failures] == ["broken"]
    assert "no_such_module_xyz" in registry.failures[0].problem
    assert "lp" in registry.names("allocation")


def test_each_hook_of_the_plugin_is_used_in_an_allocation(installed_plugin: Path) -> None:
    registry = build_registry()
    portfolio = Portfolio(customers(200, seed=3))
    base = Plan(total_budget=500.0)
    plain = allocate(portfolio, base, registry)
    doubled = allocate(
        portfolio, Plan(total_budget=500.0, metric=StrategyChoice("double-margin")), registry
    )
    assert doubled.summary["equity_before"] == pytest.approx(
        2 * plain.summary["equity_before"], rel=0.2
    )
    flat = allocate(
        portfolio,
        Plan(total_budget=500.0, cost=StrategyChoice("flat-response", {"response": 0.4})),
        registry,
    )
    assert flat.summary["equity_after"] != pytest.approx(plain.summary["equity_after"])
    cheapest = allocate(
        portfolio, Plan(total_budget=500.0, allocation=StrategyChoice("cheapest")), registry
    )
    assert cheapest.summary["total_spend"] == 0.0
    assert cheapest.summary["allocator"] == "cheapest"
    assert np.allclose(cheapest.units["equity_after"], cheapest.units["equity_before"])


def test_allowlist_and_disable(installed_plugin: Path) -> None:
    assert ("allocation", "cheapest") not in build_registry(allow=[]).strategies
    assert not build_registry(allow=["acme"]).failures
    registry = build_registry(disable=["acme", "broken"])
    assert ("allocation", "cheapest") not in registry.strategies and not registry.failures
