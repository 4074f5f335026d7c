"""``check_plugin`` and ``check_entry_point``: a plugin registers its strategies without
failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata

from engine.plugins import ENTRY_POINT_GROUP, Registry, build_registry


def check_plugin(
    plugin: object, expect: Mapping[str, Iterable[str]] | None = None
) -> Registry:
    """Register ``plugin`` (a module or object with ``@hookimpl`` functions) next to the
    built-ins, without entry points; fail on any registration problem; return the registry
    (use it as ``allocate(portfolio, plan, registry=...)``).

    ``expect`` maps kinds to the strategy names the plugin must provide, e.g.
    ``{"cost": ["nps-response"], "metric": ["nps"]}``.
    """
    registry = build_registry(entry_points=False, extra=[plugin])
    name = getattr(plugin, "__name__", "extra-0")
    _check_registered(registry, name, expect)
    return registry


def check_entry_point(
    name: str, expect: Mapping[str, Iterable[str]] | None = None
) -> Registry:
    """Check an installed package's entry point ``name`` in group ``equity_engine``: it is
    found, loads, and registers ``expect`` without failures. Returns the registry."""
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise AssertionError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r}; is "
                             "the package installed (pip install -e .)?")
    registry = build_registry(allow=[name])
    _check_registered(registry, name, expect)
    return registry


def _check_registered(
    registry: Registry, plugin: str, expect: Mapping[str, Iterable[str]] | None
) -> None:
    failures = [f for f in registry.failures if f.plugin == plugin]
    if failures:
        raise AssertionError("; ".join(str(f) for f in failures))
    provided = {key for key, info in registry.strategies.items() if info.plugin == plugin}
    if not provided:
        raise AssertionError(f"plugin {plugin!r} registered no strategies")
    for kind, names in (expect or {}).items():
        for strategy in names:
            if (kind, strategy) not in provided:
                got = sorted(n for k, n in provided if k == kind)
                raise AssertionError(f"plugin {plugin!r} did not register {kind} strategy "
                                     f"{strategy!r}; it registered {got}")
