"""Old import paths of modules that moved into subpackages keep working.

``import engine.lp`` returns the very module ``engine.optimize.lp`` (not a copy), so code and
pickles written against the flat layout of 0.1 run unchanged. New code imports the new
paths; this table is the one place that remembers the old ones.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

MOVED: dict[str, str] = {
    "engine.lp": "engine.optimize.lp",
    "engine.solvers": "engine.optimize.solvers",
    "engine.distributed": "engine.optimize.distributed",
    "engine.transactions": "engine.clv.transactions",
    "engine.bgnbd": "engine.clv.bgnbd",
    "engine.gamma_gamma": "engine.clv.gamma_gamma",
    "engine.frontier": "engine.planning.frontier",
    "engine.scenarios": "engine.planning.scenarios",
    "engine.report": "engine.planning.report",
    "engine.server": "engine.service.server",
    "engine.solve_pool": "engine.service.solve_pool",
    "engine.wire": "engine.service.wire",
    "engine.client": "engine.service.client",
    "engine.cli_clv": "engine.cli.clv",
    "engine.cli_planning": "engine.cli.planning",
    "engine.cli_service": "engine.cli.service",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed once, under its new name."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old module name to the module now living at its new name."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> ModuleSpec | None:
        new = MOVED.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
