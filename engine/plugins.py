"""The plugin registry: built-ins plus third-party packages from entry points.

Built-ins (``DEFAULT_PLUGINS``) are registered exactly like external plugins, so they are
proof that the hooks suffice. A third-party plugin that fails to import or breaks the
hook contract is recorded in ``Registry.failures`` with its name and the problem; it never
stops the engine or the other plugins from loading.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import Any

import pluggy

from engine import __version__, hookspecs
from engine.errors import InvalidInputError, PluginError
from engine.plan import StrategyChoice
from engine.strategies import BASES, Param, Strategy

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "equity_engine"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "equity_plugins.metrics",
    "equity_plugins.costs",
    "equity_plugins.allocators",
    "equity_plugins.bgnbd",
    "equity_plugins.sbg",
)
HOOKS = {
    "metric": "register_metrics",
    "cost": "register_costs",
    "allocation": "register_allocators",
}
ALLOW_ENV = "EQUITY_PLUGINS_ALLOW"
"""Comma-separated entry-point names: only these third-party plugins load (built-ins always do)."""
DISABLE_ENV = "EQUITY_PLUGINS_DISABLE"
"""Comma-separated plugin names (entry-point names or built-in modules) not to load."""


@dataclass(frozen=True)
class StrategyInfo:
    kind: str
    name: str
    cls: type[Strategy]
    plugin: str
    package: str
    version: str

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.cls.summary,
            "plugin": self.plugin,
            "package": self.package,
            "version": self.version,
            "parameters": {
                key: {"default": p.default, "type": p.type.__name__, "doc": p.doc}
                | ({"choices": list(p.choices)} if p.choices else {})
                | ({"minimum": p.minimum} if p.minimum is not None else {})
                | ({"maximum": p.maximum} if p.maximum is not None else {})
                for key, p in self.cls.params.items()
            },
            "capabilities": {
                attr: list(value) if isinstance(value, tuple) else value
                for attr in CAPABILITIES[self.kind]
                if (value := getattr(self.cls, attr, None)) is not None
            },
        }


CAPABILITIES: dict[str, tuple[str, ...]] = {
    "metric": ("requires", "produces"),
    "cost": ("uses",),
    "allocation": ("exact", "supports_minimums"),
}


@dataclass
class Registry:
    strategies: dict[tuple[str, str], StrategyInfo] = field(default_factory=dict)
    failures: list[PluginError] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.strategies if k == kind)

    def info(self, kind: str, name: str) -> StrategyInfo:
        try:
            return self.strategies[(kind, name)]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise InvalidInputError.single(
                f"plan.{kind}.name", f"unknown {kind} strategy {name!r}; available: {known}"
            ) from None

    def create(self, kind: str, choice: StrategyChoice) -> Strategy:
        info = self.info(kind, choice.name)
        return info.cls.from_params(choice.params, path=f"plan.{kind}.params")

    def describe(self) -> list[dict[str, Any]]:
        return [self.strategies[key].describe() for key in sorted(self.strategies)]


def _validate_class(kind: str, cls: Any) -> str | None:
    base = BASES[kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"register_{kind} expects a subclass of {base.__name__}, got {cls!r}"
    if not isinstance(cls.name, str) or not cls.name:
        return f"{cls.__name__} has no name"
    if not all(isinstance(p, Param) for p in cls.params.values()):
        return f"{cls.__name__}.params must map names to engine.strategies.Param"
    return None


def _provenance(plugin: object, dists: dict[str, tuple[str, str]], name: str) -> tuple[str, str]:
    if name in dists:
        return dists[name]
    module = getattr(plugin, "__name__", "")
    if module.startswith(("equity_plugins", "engine")):
        return "equity-engine", __version__
    return module.split(".")[0] or "unknown", "unknown"


def build_registry(
    allow: Iterable[str] | None = None,
    disable: Iterable[str] = (),
    extra: Iterable[object] = (),
    entry_points: bool = True,
) -> Registry:
    """Load built-ins, entry-point plugins (optionally an allowlist of their names) and
    ``extra`` plugin objects (for tests and embedding), then collect their strategies."""
    allowed = None if allow is None else set(allow)
    disabled = set(disable)
    pm = pluggy.PluginManager("equity_engine")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    dists: dict[str, tuple[str, str]] = {}
    for module_name in DEFAULT_PLUGINS:
        if module_name not in disabled:
            pm.register(importlib.import_module(module_name), name=module_name)
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled or (allowed is not None and ep.name not in allowed):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken package must not take the engine down
                _failed(registry, ep.name, f"failed to load: {exc!r}")
                continue
            if ep.dist is not None:
                dists[ep.name] = (ep.dist.name, ep.dist.version)
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", f"extra-{i}")
        try:
            pm.register(plugin, name=name)
        except Exception as exc:
            _failed(registry, name, f"failed to register: {exc!r}")
    for name, plugin in pm.list_name_plugin():
        unknown = sorted(
            attr for attr in dir(plugin)
            if attr not in HOOKS.values() and pm.parse_hookimpl_opts(plugin, attr) is not None
        )
        if unknown:  # pluggy would silently never call a misspelt hook
            _failed(registry, name, f"unknown hooks {unknown}; the hooks are "
                                    f"{', '.join(HOOKS.values())}")
    for kind, hook_name in HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        # Built-ins first whatever tryfirst/trylast say, so no plugin can take their names.
        impls = sorted(hook.get_hookimpls(), key=lambda i: i.plugin_name not in DEFAULT_PLUGINS)
        for impl in impls:
            if impl.hookwrapper or impl.wrapper:
                _failed(registry, impl.plugin_name, f"{hook_name} must be a plain hook, "
                                                    "not a wrapper")
                continue
            package, version = _provenance(impl.plugin, dists, impl.plugin_name)
            register = partial(_register, registry, kind, impl.plugin_name, package, version)
            try:
                impl.function(register=register)
            except PluginError as exc:
                _failed(registry, impl.plugin_name, f"{hook_name}: {exc.problem}")
            except Exception as exc:
                _failed(registry, impl.plugin_name, f"{hook_name} raised {exc!r}")
    return registry


def _failed(registry: Registry, plugin: str, problem: str) -> None:
    registry.failures.append(PluginError(plugin, problem))
    log.warning("plugin %s: %s", plugin, problem)


def _register(
    registry: Registry, kind: str, plugin: str, package: str, version: str, cls: Any
) -> None:
    """The ``register`` callback: a refused class is recorded as a failure of ``plugin``
    and the hook goes on with its other classes."""
    problem = _validate_class(kind, cls)
    if problem is None and (kind, cls.name) in registry.strategies:
        other = registry.strategies[(kind, cls.name)].plugin
        problem = f"{kind} strategy {cls.name!r} is already registered by {other!r}"
    if problem is None and cls.kind != kind:
        problem = f"{cls.__name__}.kind is {cls.kind!r}, expected {kind!r}"
    if problem is not None:
        _failed(registry, plugin, f"{HOOKS[kind]}: {problem}")
        return
    registry.strategies[(kind, cls.name)] = StrategyInfo(
        kind, cls.name, cls, plugin, package, version
    )


_DEFAULT: Registry | None = None


def _env_names(variable: str) -> set[str] | None:
    """Names in a comma-separated environment variable; None when it is unset."""
    text = os.environ.get(variable)
    if text is None:
        return None
    return {name.strip() for name in text.split(",") if name.strip()}


def default_registry() -> Registry:
    """The process-wide registry (built once; strategies are stateless classes).

    ``EQUITY_PLUGINS_ALLOW`` (if set, even to nothing) lists the only third-party plugins
    to load; ``EQUITY_PLUGINS_DISABLE`` lists plugins not to load, built-in modules included.
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = build_registry(
            allow=_env_names(ALLOW_ENV), disable=_env_names(DISABLE_ENV) or ()
        )
    return _DEFAULT


def plugin_failure(strategy: Strategy, registry: Registry, problem: str) -> PluginError:
    """An error naming the plugin that provides ``strategy`` (for shape/contract checks)."""
    info = registry.strategies.get((strategy.kind, strategy.name))
    return PluginError(info.plugin if info else strategy.name, f"{strategy.name}: {problem}")


__all__ = [
    "ALLOW_ENV",
    "DEFAULT_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "Registry",
    "StrategyInfo",
    "build_registry",
    "default_registry",
]
