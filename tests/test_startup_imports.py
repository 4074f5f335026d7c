"""Start-up: the plugin registry every command builds loads no model fitting (scipy.optimize,
scipy.special: ~0.5 s of each command's start on a loaded machine); the CLV fits and the
Hill curves load them when they are used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


CLI_HEAVY = (*HEAVY, "scipy.sparse.csgraph", "matplotlib", "pyarrow", "dask", "distributed", "grpc")


def _loaded_by(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_the_command_line_starts_without_the_fits_charts_or_services() -> None:
    # every ``equity`` command imports engine.cli and builds the whole parser first
    assert _loaded_by("import engine.cli\nengine.cli.build_parser()", CLI_HEAVY) == []


def test_frontier_and_allocate_load_only_what_they_use(tmp_path: Path) -> None:
    plan = tmp_path / "plan.parquet"
    for argv in (["frontier", "--example", "--example-size", "300", "--quiet", "--json"],
                 ["allocate", "--example", "--example-size", "300", "--json", "--output",
                  str(plan)]):
        code = ("import contextlib, io\nfrom engine.cli import main\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                f"    assert main({argv!r}) == 0")
        assert _loaded_by(code, CLI_HEAVY) == [], argv
    assert plan.exists()


def test_the_probe_sees_a_heavy_import() -> None:
    # the check above fails when a command loads one of them (here: the CLV fit's module)
    assert _loaded_by("import engine.cli\nimport engine.cli.clv\nimport engine.clv.run",
                      CLI_HEAVY) == ["scipy.optimize", "scipy.special"]


def test_the_clv_command_keeps_its_model_choices() -> None:
    from engine.cli.clv import LOG_MODELS
    from engine.clv.run import LOG_MODELS as FITTED

    assert LOG_MODELS == FITTED


def test_a_report_without_a_holdout_loads_no_fits() -> None:
    # the CLV section's fit (scipy.optimize) loads only when the plan has a holdout to check
    assert _loaded("import engine.planning.report") == []


def test_the_report_loads_matplotlib_for_its_charts_only() -> None:
    # its figures are computed without it; the charts' module loads when a chart is drawn (in
    # the chart process for ``equity report``: tests/test_chart_process.py)
    assert _loaded_by("import engine.planning.report", ("matplotlib",)) == []
    assert _loaded_by("import engine.planning.report_chart_data as d\n"
                      "d.run_job((d.CHARTS_MODULE, 'draw_uplift', ({'concentration': "
                      "{'share_customers': []}},)))", ("matplotlib",)) == ["matplotlib"]
