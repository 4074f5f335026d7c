"""``equity serve`` for the service benchmarks, from this checkout or another source tree,
so that two versions of the engine can be measured side by side under the same load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def serve_tree(port: int, flags: list[str], tree: Path | None,
               env_vars: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``equity serve`` on ``port``; with ``tree``, the engine of that source tree (run from
    it, its ``engine`` package first on the path); ``env_vars`` added to its environment."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env_vars or {})
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--log-level",
         "WARNING", *flags], env=env, cwd=tree)
