"""Start-up: the plugin registry every command builds loads no model fitting (scipy.optimize,
scipy.special: ~0.5 s of each command's start on a loaded machine); the CLV fits and the
Hill curves load them when they are used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("scipy.optimize", "scipy.special", "scipy.stats")


def _loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_the_registry_and_a_plan_model_load_no_fitting() -> None:
    assert _loaded(
        "from engine.plugins import default_registry\n"
        "from engine.pipeline import build_model\n"
        "from engine.portfolio import Portfolio\n"
        "from engine.synthetic import example\n"
        "c, p, plan = example(500)\n"
        "build_model(Portfolio(c, p), plan, default_registry())"
    ) == []


def test_the_fits_still_load_when_used() -> None:
    assert "scipy.optimize" in _loaded("from engine.clv import clv_from_transactions")
    assert "scipy.special" in _loaded(
        "from engine.response.curves import lift\nlift('hill', [1.0, 2.0], 0.5, 2.0)")
    assert _loaded("from engine.clv.choices import VALUE_MODELS\n"
                   "from engine.clv.transactions import UNIT_DAYS") == []
