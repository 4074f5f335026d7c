"""The README's two commands are the project's contract with a fresh machine."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    python3 -m venv .venv &&")]


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    commands = _commands()
    assert len(commands) == 2
    assert commands[0].endswith("equity demo")
    assert commands[1].endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in [line.strip() for line in ci]


def test_readme_commands_install_the_lock() -> None:
    for command in _commands():
        assert "-c requirements/lock.txt" in command
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    pins = [line for line in lock.splitlines() if "==" in line and not line.startswith("#")]
    for package in ("numpy", "polars", "pulp", "highspy", "grpcio", "protobuf", "dask"):
        assert any(line.startswith(f"{package}==") for line in pins), package


def test_readme_documents_a_run_with_the_newest_versions() -> None:
    readme = (ROOT / "README.md").read_text()
    newest = [line.strip() for line in readme.splitlines() if "--upgrade -e '.[dev]'" in line]
    assert newest and newest[0].endswith("python -m pytest")
    assert "requirements/lock.txt" not in newest[0]
