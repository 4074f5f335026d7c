"""The package's architecture, checked over its import graph.

Layers, from the bottom: the error model and the generated schema; the plugin SDK at the top
of ``engine``; ``engine.optimize`` and ``engine.clv``; ``engine.planning``;
``engine.service``; ``engine.cli``. A module imports only from its own layer or lower ones
(imports inside functions count: they are dependencies too, only later), the two middle
siblings do not import each other, built-in plugins use only the SDK, optimize and clv, and
no two modules import each other, directly or round a longer cycle.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600  # a hand-written module longer than this does more than one job

BASE = ("engine.errors", "engine.api", "engine._moved", "engine.stdio")
LAYERS: dict[str, int] = {
    "engine.optimize": 2,
    "engine.clv": 2,
    "engine.response": 2,
    "engine.planning": 3,
    "engine.service": 4,
    "engine.cli": 5,
}
PLUGINS_MAY_USE = (1, 2)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    for path in sorted((ROOT / "plugins").glob("*.py")):
        name = "equity_plugins" if path.stem == "__init__" else f"equity_plugins.{path.stem}"
        found[name] = path
    return found


MODULES = _modules()


def layer(module: str) -> int:
    """0 base, 1 SDK, 2 optimize/clv, 3 planning, 4 service, 5 cli; -1 built-in plugins."""
    if module.startswith("equity_plugins"):
        return -1
    if module == "engine" or any(module == b or module.startswith(b + ".") for b in BASE):
        return 0
    for package, rank in LAYERS.items():
        if module == package or module.startswith(package + "."):
            return rank
    return 1


def _group(module: str) -> str:
    for package in LAYERS:
        if module == package or module.startswith(package + "."):
            return package
    return module


def _resolve(name: str) -> str | None:
    """The project module an imported name refers to (the longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from engine.optimize import lp`` names a module
                target = _resolve(f"{node.module}.{alias.name}") or _resolve(node.module)
                if target:
                    yield target, node.lineno


def _type_checking_lines(module: str) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: annotations only, never run."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        skip = _type_checking_lines(module)
        for target, line in imports(module):
            if target != module and line not in skip:
                graph[module].add(target)
    return graph


def test_layers_import_only_downward() -> None:
    wrong = []
    for module in MODULES:
        if module == "engine":  # the facade: its names load lazily, on first use
            continue
        skip = _type_checking_lines(module)
        for target, line in imports(module):
            if line in skip or target == module:
                continue
            mine, theirs = layer(module), layer(target)
            if mine == -1:
                ok = theirs in (0, *PLUGINS_MAY_USE) or target.startswith("equity_plugins")
            elif theirs == -1:
                ok = False  # the engine never imports a plugin; the registry loads them
            else:
                same = theirs == mine and (mine <= 1 or _group(module) == _group(target))
                ok = theirs < mine or same
            if not ok:
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = _edges()
    graph["engine"] = {"engine._moved"}  # the facade's lazy names are not imports
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    # a package re-exporting its own submodule is not a cycle (engine.clv -> engine.clv.value)
    real = [c for c in cycles if not any(a in packages and b.startswith(a + ".")
                                         for a, b in itertools.pairwise(c))]
    assert not real, "\n".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("engine.api")))
def test_module_size(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_the_checks_see_a_wrong_import() -> None:
    """The rule is not vacuous: an SDK module importing the service would be caught."""
    assert layer("engine.pipeline") == 1 and layer("engine.service.server") == 4
    assert layer("engine.clv.bgnbd") == 2 and layer("equity_plugins.costs") == -1
    assert _resolve("engine.optimize.lp") == "engine.optimize.lp"
    assert any(t == "engine.pipeline" for t, _ in imports("engine.planning.frontier"))


def test_cli_parser_loads_no_grpc() -> None:
    """Building the ``equity`` parser must not pay for the service (grpc takes ~1 s)."""
    import subprocess
    import sys

    code = ("import sys; from engine.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_old_import_paths_are_the_new_modules() -> None:
    import importlib

    from engine._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old


def test_the_facade_names_resolve() -> None:
    import engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    with pytest.raises(AttributeError):
        _ = engine.no_such_name  # type: ignore[attr-defined]
