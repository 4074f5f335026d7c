"""The example plugin package installs into a fresh virtual environment next to the engine,
is found through its entry point, and runs an allocation from the command line.

How the environment is made (offline, a few seconds):

1. ``python -m venv --without-pip`` creates an empty environment (no pip bootstrap, no
   network).
2. A ``.pth`` file in its site-packages lists the site-packages directories of the Python
   running the tests. They are *appended* to ``sys.path`` as plain directories, so the
   engine's dependencies (numpy, polars, pluggy, PuLP, protobuf, ...) and the build tools
   (pip, setuptools) are importable, while the running environment's own install of the
   engine is not activated (an editable install's finder lives in a ``.pth`` file there,
   which Python does not process for directories added this way).
3. ``pip install --no-deps --no-build-isolation --no-index`` installs copies of the engine
   sources and of ``examples/nps-plugin`` (copies, so building never writes into the
   checkout). No index is contacted: nothing is downloaded, and the build backend is the
   setuptools already installed (the ``dev`` extra pins it).

The new environment's site-packages comes before the appended directories on ``sys.path``,
so its ``engine``, ``equity_nps`` and their metadata are the ones found; pip sees the
outer environment's engine too but leaves it alone ("outside environment").

The test then runs that environment's ``equity plugins --json``, ``equity allocate`` with
the NPS cost strategy and metric, the package's ``equity-nps`` command, and the package's
own tests (``examples/nps-plugin/tests``, which use ``engine.testing``). It takes 20-30 s
on a 2-core machine, well under a minute, so it runs in the normal suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from engine.synthetic import customers as synthetic_customers

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "nps-plugin"
PLUGIN_VERSION = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]["version"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                ".mypy_cache", ".ruff_cache")


@dataclass
class Venv:
    root: Path
    bin: Path
    env: dict[str, str]

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / program), *args], capture_output=True, text=True,
            env=self.env | env, timeout=300, check=False, cwd=self.root,
        )


def _site_dirs() -> list[str]:
    """Where the running Python finds its packages: every site-packages on sys.path."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    pytest.importorskip("setuptools", reason="the offline build needs setuptools (dev extra)")
    root = tmp_path_factory.mktemp("nps-venv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EQUITY_", "PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
                   check=True, env=env, timeout=120)
    bin_dir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout.strip()
    (Path(purelib) / "_equity_outer_site.pth").write_text("\n".join(_site_dirs()) + "\n")

    engine_src = root / "src" / "equity-engine"
    engine_src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, engine_src / name)
    for name in ("engine", "plugins"):
        shutil.copytree(ROOT / name, engine_src / name, ignore=IGNORE)
    plugin_src = root / "src" / "equity-nps"
    shutil.copytree(PLUGIN, plugin_src, ignore=IGNORE)

    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--quiet", str(engine_src), str(plugin_src)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return Venv(root, bin_dir, env)


def test_the_venv_uses_its_own_installs(venv: Venv) -> None:
    where = venv.run("python", "-c", "import engine, equity_nps; "
                     "print(engine.__file__); print(equity_nps.__file__)")
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv.root / "venv"), line


def test_equity_plugins_lists_the_nps_strategies(venv: Venv) -> None:
    listed = venv.run("equity", "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["failures"] == []
    nps = {(s["kind"], s["name"]): s for s in report["strategies"]
           if s["package"] == "equity-nps"}
    assert set(nps) == {("cost", "nps-response"), ("metric", "nps")}
    cost = nps[("cost", "nps-response")]
    assert cost["version"] == PLUGIN_VERSION
    assert cost["plugin"] == "nps"
    assert cost["parameters"]["detractor_retention_shift"]["default"] == -0.05
    assert "detractors" in cost["parameters"]["detractor_retention_shift"]["doc"]
    assert nps[("metric", "nps")]["capabilities"]["produces"] == ["nps_category", "segment_nps"]
    assert any(s["name"] == "lp" and s["package"] == "equity-engine"
               for s in report["strategies"])

    text = venv.run("equity", "plugins")
    assert "nps-response" in text.stdout and f"equity-nps {PLUGIN_VERSION}  (nps)" in text.stdout

    disabled = json.loads(venv.run("equity", "plugins", "--json",
                                   EQUITY_PLUGINS_DISABLE="nps").stdout)
    assert not [s for s in disabled["strategies"] if s["package"] == "equity-nps"]


def customers_with_scores(path: Path, score: int | None = None) -> pl.DataFrame:
    table = synthetic_customers(300, seed=11)
    scores = (np.random.default_rng(5).integers(0, 11, table.height) if score is None
              else np.full(table.height, score))
    table = table.with_columns(pl.Series("nps_score", scores))
    table.write_csv(path)
    return table


def allocate(venv: Venv, customers: Path, *args: str) -> dict[str, Any]:
    done = venv.run("equity", "allocate", "--customers", str(customers), "--budget", "1500",
                    "--json", *args)
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def test_equity_allocate_with_the_nps_cost_strategy(venv: Venv) -> None:
    path = venv.root / "customers.csv"
    customers_with_scores(path)
    units = venv.root / "units.csv"
    nps = allocate(venv, path, "--cost", "nps-response", "--metric", "nps",
                   "--output", str(units))
    assert nps["status"] == "optimal"
    assert nps["customers"] == 300
    assert nps["total_spend"] <= 1500 * (1 + 1e-9)
    assert nps["equity_after"] >= nps["equity_before"]
    assert pl.read_csv(units).height == 300

    plain = allocate(venv, path, "--cost", "exponential-response")
    assert nps["equity_before"] != pytest.approx(plain["equity_before"])

    neutral = {f"{c}_retention_shift": 0.0 for c in ("promoter", "passive", "detractor")}
    neutral |= {f"{c}_response_factor": 1.0 for c in ("promoter", "passive", "detractor")}
    plan = venv.root / "neutral.json"
    plan.write_text(json.dumps({"cost": {"name": "nps-response", "params": neutral}}))
    same = allocate(venv, path, "--plan", str(plan))
    assert same["equity_before"] == pytest.approx(plain["equity_before"], rel=1e-12)
    assert same["equity_after"] == pytest.approx(plain["equity_after"], rel=1e-9)

    promoters = venv.root / "promoters.csv"
    customers_with_scores(promoters, score=10)
    happy = allocate(venv, promoters, "--cost", "nps-response")
    assert happy["equity_before"] > plain["equity_before"]


def test_bad_input_and_bad_parameters_exit_2(venv: Venv) -> None:
    path = venv.root / "no-scores.csv"
    synthetic_customers(20, seed=2).write_csv(path)
    done = venv.run("equity", "allocate", "--customers", str(path), "--cost", "nps-response")
    assert done.returncode == 2
    assert "customers.nps_score: required column is missing" in done.stderr
    plan = venv.root / "bad.json"
    plan.write_text(json.dumps({"cost": {"name": "nps-response",
                                         "params": {"promoter_retention_shift": 2}}}))
    scored = venv.root / "scored.csv"
    customers_with_scores(scored)
    done = venv.run("equity", "allocate", "--customers", str(scored), "--plan", str(plan))
    assert done.returncode == 2
    assert "plan.cost.params.promoter_retention_shift: must be <= 1" in done.stderr


def test_equity_nps_reports_the_nps_per_segment(venv: Venv) -> None:
    path = venv.root / "summary.csv"
    table = customers_with_scores(path)
    done = venv.run("equity-nps", str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    score = table["nps_score"].to_numpy()
    expected = 100 * ((score >= 9).mean() - (score <= 6).mean())
    assert report["nps"] == pytest.approx(expected)
    assert sum(s["customers"] for s in report["segments"]) == 300
    assert {s["segment"] for s in report["segments"]} == set(table["segment"].unique())


def test_the_packages_own_tests_pass_against_the_installed_package(venv: Venv) -> None:
    done = venv.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W",
                    "ignore::DeprecationWarning", "-rs", str(venv.root / "src" / "equity-nps"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout  # the entry-point test ran too


def test_every_engine_package_is_in_the_built_distribution(venv: Venv) -> None:
    """pyproject lists packages by hand: a new subpackage missing there would be left out of
    the wheel and only users would notice. Every package of the source tree must import
    from the installed copy."""
    packages = sorted(
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "engine").rglob("__init__.py")
        if "__pycache__" not in p.parts
    )
    assert "engine.optimize" in packages and "engine.api.equity_engine.v1" in packages
    code = ("import importlib, sys\n"
            f"for name in {packages!r}:\n"
            "    print(name, importlib.import_module(name).__file__)\n")
    done = venv.run("python", "-c", code)
    assert done.returncode == 0, done.stderr
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert sorted(found) == packages
    for name, file in found.items():
        assert Path(file).is_relative_to(venv.root / "venv"), name
