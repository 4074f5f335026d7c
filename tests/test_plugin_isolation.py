"""A broken plugin gets an error naming it and never takes the engine down.

Covered: a strategy that raises; one that returns a wrong shape or non-finite values; a
register hook that passes a non-Strategy, raises, or reuses a registered name; an entry
point whose module fails to import; allowlists and disabling (arguments and environment);
and the CLI (``equity plugins`` lists failures, ``equity allocate`` exits 5 naming the
plugin, and keeps working for healthy strategies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
from equity_plugins.allocators import Greedy
from equity_plugins.costs import ExponentialResponse

from engine import plugins
from engine.allocation import Allocation
from engine.errors import InvalidInputError, LimitExceededError, PluginError
from engine.hookspecs import hookimpl
from engine.options import OptionSet
from engine.pipeline import allocate
from engine.plan import Plan, StrategyChoice
from engine.plugins import Registry, build_registry
from engine.portfolio import Portfolio
from engine.strategies import Allocator, Metric, Problem
from engine.testing import sample_portfolio
from engine.valuation import Valuation

# --- plugins built in the test --------------------------------------------------------------


class Plugin:
    """A plugin object: ``costs``/``metrics``/``allocators`` are the classes it registers."""

    def __init__(self, name: str, costs: tuple[Any, ...] = (), metrics: tuple[Any, ...] = (),
                 allocators: tuple[Any, ...] = ()) -> None:
        self.__name__ = name
        self.costs, self.metrics, self.allocators = costs, metrics, allocators

    @hookimpl
    def register_costs(self, register: Callable[[Any], None]) -> None:
        for cls in self.costs:
            register(cls)

    @hookimpl
    def register_metrics(self, register: Callable[[Any], None]) -> None:
        for cls in self.metrics:
            register(cls)

    @hookimpl
    def register_allocators(self, register: Callable[[Any], None]) -> None:
        for cls in self.allocators:
            register(cls)


class Exploding(ExponentialResponse):
    name = "exploding"

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        raise RuntimeError("boom")


class NaNValues(ExponentialResponse):
    name = "nan-values"

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        options = super().build(portfolio, plan)
        options.value = np.full_like(options.value, np.nan)
        return options


class NotOptions(ExponentialResponse):
    name = "not-options"

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        return [1, 2, 3]  # type: ignore[return-value]


class Picky(ExponentialResponse):
    name = "picky"

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        raise InvalidInputError.single("customers.loyalty", "required column is missing")


class ShortMetric(Metric):
    name = "short"
    summary = "One row too few."
    requires: ClassVar[tuple[str, ...]] = ("margin",)
    produces: ClassVar[tuple[str, ...]] = ("x",)

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        return pl.DataFrame({"x": np.zeros(table.height - 1)})


class RaisingMetric(ShortMetric):
    name = "raising"

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        raise ZeroDivisionError("division by zero")


class WrongShape(Allocator):
    name = "wrong-shape"
    summary = "Returns one level too few."

    def allocate(self, problem: Problem) -> Allocation:
        first = problem.options.offsets[:-2]
        return Allocation.single(first, "feasible", self.name)


class ForeignOptions(Allocator):
    name = "foreign"
    summary = "Points every unit at unit 0's option."

    def allocate(self, problem: Problem) -> Allocation:
        return Allocation.single(np.zeros(problem.options.n_units, dtype=np.int64), "ok", "x")


class CrashingAllocator(Greedy):
    name = "crashing"

    def allocate(self, problem: Problem) -> Allocation:
        raise MemoryError("out of memory")


BAD = Plugin("acme-bad", costs=(Exploding, NaNValues, NotOptions, Picky),
             metrics=(ShortMetric, RaisingMetric),
             allocators=(WrongShape, ForeignOptions, CrashingAllocator))


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = build_registry(entry_points=False, extra=[BAD])
    assert registry.failures == []
    return registry


@pytest.fixture(scope="module")
def inputs() -> tuple[Portfolio, Plan]:
    return sample_portfolio(100, minimums=False)


def run(registry: Registry, inputs: tuple[Portfolio, Plan], **choice: str) -> Any:
    portfolio, plan = inputs
    changes = {kind: StrategyChoice(name) for kind, name in choice.items()}
    return allocate(portfolio, plan.with_overrides(**changes), registry)


# --- strategies that break at run time ------------------------------------------------------


@pytest.mark.parametrize(("choice", "problem"), [
    ({"cost": "exploding"}, "exploding: raised RuntimeError('boom')"),
    ({"cost": "nan-values"}, "non-finite values"),
    ({"cost": "not-options"}, "returned list, not OptionSet"),
    ({"metric": "short"}, "short: returned 99 rows for 100"),
    ({"metric": "raising"}, "raising: raised ZeroDivisionError"),
    ({"allocation": "wrong-shape"}, "lo has shape (104,), expected (105,)"),
    ({"allocation": "foreign"}, "points at another unit's options"),
])
def test_a_broken_strategy_gets_a_plugin_error_and_the_engine_keeps_working(
    registry: Registry, inputs: tuple[Portfolio, Plan], choice: dict[str, str], problem: str
) -> None:
    with pytest.raises(PluginError) as err:
        run(registry, inputs, **choice)
    assert err.value.plugin == "acme-bad"
    assert problem in err.value.problem
    assert str(err.value).startswith("plugin 'acme-bad': ")
    result = run(registry, inputs)  # the same registry, healthy strategies: still fine
    assert result.summary["status"] == "optimal"


def test_a_strategy_out_of_memory_is_a_resource_error_not_a_plugin_error(
    registry: Registry, inputs: tuple[Portfolio, Plan]
) -> None:
    with pytest.raises(LimitExceededError, match="ran out of memory") as err:
        run(registry, inputs, allocation="crashing")
    assert err.value.limit == "memory"
    assert run(registry, inputs).summary["status"] == "optimal"  # the engine keeps working


def test_a_plugins_input_errors_reach_the_caller_as_input_errors(
    registry: Registry, inputs: tuple[Portfolio, Plan]
) -> None:
    with pytest.raises(InvalidInputError, match=r"customers\.loyalty"):
        run(registry, inputs, cost="picky")


# --- registration problems ------------------------------------------------------------------


def test_a_non_strategy_is_refused_and_the_rest_of_the_plugin_loads() -> None:
    registry = build_registry(entry_points=False, extra=[
        Plugin("acme-mixed", costs=(dict,), metrics=(ShortMetric,)),
    ])
    [failure] = registry.failures
    assert failure.plugin == "acme-mixed"
    assert "register_costs: register_cost expects a subclass of CostModel" in failure.problem
    assert registry.info("metric", "short").plugin == "acme-mixed"
    assert "lp" in registry.names("allocation")


def test_a_refused_class_does_not_stop_the_rest_of_the_hook() -> None:
    registry = build_registry(entry_points=False, extra=[
        Plugin("acme-first-bad", costs=(dict, Exploding)),
    ])
    assert [f.plugin for f in registry.failures] == ["acme-first-bad"]
    assert registry.info("cost", "exploding").plugin == "acme-first-bad"


def test_no_hook_order_lets_a_plugin_take_a_builtin_name() -> None:
    class Lp(Greedy):
        name = "lp"

    class Sneaky:
        __name__ = "acme-sneaky"

        @hookimpl(trylast=True)  # called first by pluggy; the engine still loads built-ins first
        def register_allocators(self, register: Callable[[Any], None]) -> None:
            register(Lp)

    registry = build_registry(entry_points=False, extra=[Sneaky()])
    assert [f.plugin for f in registry.failures] == ["acme-sneaky"]
    assert registry.info("allocation", "lp").plugin == "equity_plugins.allocators"
    assert registry.names("allocation") == ["greedy", "lp", "proportional", "uniform"]


def test_misspelt_hooks_and_wrappers_are_reported() -> None:
    class Typo:
        __name__ = "acme-typo"

        @hookimpl
        def register_cost(self, register: Callable[[Any], None]) -> None:
            register(Exploding)

        @hookimpl(wrapper=True)
        def register_metrics(self, register: Callable[[Any], None]) -> Any:
            return (yield)

    registry = build_registry(entry_points=False, extra=[Typo()])
    problems = sorted(f.problem for f in registry.failures)
    assert all(f.plugin == "acme-typo" for f in registry.failures)
    assert problems[0].startswith("register_metrics must be a plain hook")
    assert problems[1].startswith("unknown hooks ['register_cost']")


def test_an_extra_plugin_with_a_bad_hook_signature_is_recorded() -> None:
    class BadSignature:
        __name__ = "acme-signature"

        @hookimpl
        def register_costs(self, callback: Callable[[Any], None]) -> None:
            callback(Exploding)

    registry = build_registry(entry_points=False, extra=[BadSignature()])
    [failure] = registry.failures
    assert failure.plugin == "acme-signature" and "failed to register" in failure.problem
    assert "exponential-response" in registry.names("cost")


def test_a_strategy_of_the_wrong_kind_is_refused() -> None:
    registry = build_registry(entry_points=False, extra=[
        Plugin("acme-kind", costs=(ShortMetric,)),
    ])
    assert [f.plugin for f in registry.failures] == ["acme-kind"]
    assert "short" not in registry.names("metric")


def test_a_hook_that_raises_is_recorded() -> None:
    class Raises:
        __name__ = "acme-raises"

        @hookimpl
        def register_allocators(self, register: Callable[[Any], None]) -> None:
            raise ImportError("missing optional dependency 'torch'")

    registry = build_registry(entry_points=False, extra=[Raises()])
    [failure] = registry.failures
    assert failure.plugin == "acme-raises"
    assert "register_allocators raised ImportError" in failure.problem
    assert registry.names("allocation") == ["greedy", "lp", "proportional", "uniform"]


def test_a_duplicate_name_is_refused_and_the_first_registration_stays() -> None:
    class Lp(Greedy):
        name = "lp"

    registry = build_registry(entry_points=False, extra=[Plugin("acme-dup", allocators=(Lp,))])
    [failure] = registry.failures
    assert failure.plugin == "acme-dup"
    assert "allocation strategy 'lp' is already registered by 'equity_plugins.allocators'" in (
        failure.problem
    )
    assert registry.info("allocation", "lp").plugin == "equity_plugins.allocators"


# --- entry points ---------------------------------------------------------------------------


def write_distribution(root: Path, name: str, version: str, entry_points: dict[str, str],
                       modules: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata sees it: a dist-info directory
    with METADATA and entry_points.txt, next to its modules, in a directory on sys.path."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[equity_engine]\n" + "\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_MODULE = """
    from engine.hookspecs import hookimpl
    from equity_plugins.costs import ExponentialResponse

    class Exploding(ExponentialResponse):
        name = "acme-exploding"
        summary = "Raises."

        def build(self, portfolio, plan):
            raise RuntimeError("boom")

    @hookimpl
    def register_costs(register):
        register(Exploding)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path holding three plugin distributions: one fine, one whose
    entry point names a missing module, one whose module raises on import."""
    write_distribution(tmp_path, "acme-good", "1.2.3", {"acme": "acme_plugin"},
                       {"acme_plugin": GOOD_MODULE})
    write_distribution(tmp_path, "acme-missing", "0.1", {"missing": "acme_no_such_module"}, {})
    write_distribution(tmp_path, "acme-crash", "0.1", {"crash": "acme_crash"},
                       {"acme_crash": "raise RuntimeError('cannot start: no licence')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("acme_plugin", "acme_crash"):
        sys.modules.pop(module, None)
    return tmp_path


def test_entry_points_that_fail_to_import_are_recorded(site: Path) -> None:
    registry = build_registry()
    failures = {f.plugin: f.problem for f in registry.failures}
    assert "failed to load: ModuleNotFoundError" in failures["missing"]
    assert "acme_no_such_module" in failures["missing"]
    assert "failed to load: RuntimeError('cannot start: no licence')" in failures["crash"]
    info = registry.info("cost", "acme-exploding")
    assert (info.plugin, info.package, info.version) == ("acme", "acme-good", "1.2.3")
    assert "lp" in registry.names("allocation")


def test_allowlist_and_disable(site: Path) -> None:
    only = build_registry(allow=["acme"])
    assert only.failures == []
    assert "acme-exploding" in only.names("cost")
    assert "exponential-response" in only.names("cost")  # built-ins are not third-party
    none = build_registry(allow=[])
    assert none.failures == [] and "acme-exploding" not in none.names("cost")
    quiet = build_registry(disable=["missing", "crash", "equity_plugins.allocators"])
    assert quiet.failures == []
    assert quiet.names("allocation") == []


def test_environment_variables_configure_the_default_registry(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "_DEFAULT", None)
    monkeypatch.setenv("EQUITY_PLUGINS_DISABLE", "missing, crash")
    registry = plugins.default_registry()
    assert registry.failures == [] and "acme-exploding" in registry.names("cost")
    monkeypatch.setattr(plugins, "_DEFAULT", None)
    monkeypatch.delenv("EQUITY_PLUGINS_DISABLE")
    monkeypatch.setenv("EQUITY_PLUGINS_ALLOW", "")
    registry = plugins.default_registry()
    assert registry.failures == [] and "acme-exploding" not in registry.names("cost")
    monkeypatch.setattr(plugins, "_DEFAULT", None)


# --- the command line -----------------------------------------------------------------------


def equity(*args: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("equity")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EQUITY_")}
    environ |= {"PYTHONPATH": str(site)} | env
    return subprocess.run(command + list(args), capture_output=True, text=True, env=environ,
                          timeout=120, check=False)


def test_cli_lists_failures_exits_5_naming_the_plugin_and_keeps_working(site: Path) -> None:
    listed = equity("plugins", "--json", site=site)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert {f["plugin"] for f in report["failures"]} == {"missing", "crash"}
    acme = [s for s in report["strategies"] if s["name"] == "acme-exploding"]
    assert acme and acme[0]["package"] == "acme-good" and acme[0]["version"] == "1.2.3"

    text = equity("plugins", site=site)
    assert text.returncode == 0
    assert "FAILED      crash: failed to load: RuntimeError" in text.stdout

    broken = equity("allocate", "--example", "--example-size", "200", "--cost",
                    "acme-exploding", site=site)
    assert broken.returncode == 5
    assert broken.stderr.strip().splitlines()[-1] == (
        "error: plugin 'acme': acme-exploding: raised RuntimeError('boom')"
    )
    assert "plugin crash: failed to load" in broken.stderr  # load failures are warned about

    healthy = equity("allocate", "--example", "--example-size", "200", "--json", site=site)
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["status"] == "optimal"

    disabled = equity("plugins", "--json", site=site, EQUITY_PLUGINS_DISABLE="missing,crash")
    assert json.loads(disabled.stdout)["failures"] == []
