"""Standard output is the engine's: every ``--json`` command prints exactly one JSON document.

Each command runs as a real process with real files; stdout is parsed strictly (one document,
nothing before or after it), so a banner from a native library (HiGHS 1.16 prints one when a
solver object is made) or a stray log line fails here first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
CDNOW = ROOT / "tests" / "data" / "CDNOW_sample.txt"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def strict_json(stdout: str) -> object:
    """One JSON document and nothing else (json.loads allows only surrounding whitespace)."""
    assert stdout.strip(), "nothing on stdout"
    return json.loads(stdout)


def _json_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {
        name
        for name, p in sub.choices.items()  # type: ignore[union-attr]
        if any("--json" in a.option_strings for a in p._actions)
    }


CASES: dict[str, list[str]] = {
    "allocate": ["allocate", "--example", "--example-size", "600", "--json"],
    "plugins": ["plugins", "--json"],
    "clv": ["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30", "--json"],
    "frontier": ["frontier", "--example", "--example-size", "400", "--json", "--quiet"],
    "compare": ["compare", "--example", "--example-size", "400", "--json", "--quiet"],
    "report": ["report", "--example", "--example-size", "300", "--json", "--quiet"],
    "demo": ["demo", "--size", "400", "--json"],
    "fit-response": ["fit-response", "--experiments",
                     str(ROOT / "tests" / "data" / "experiments.csv"), "--json"],
}


def test_every_json_command_is_covered() -> None:
    assert _json_commands() <= set(CASES), _json_commands() - set(CASES)


@pytest.mark.parametrize("command", sorted(CASES))
def test_json_command_prints_one_document(command: str, tmp_path: Path) -> None:
    args = list(CASES[command])
    if command == "report":
        args += ["--out", str(tmp_path / "report")]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    document = strict_json(proc.stdout)
    assert isinstance(document, dict) and document


def test_solver_leaves_stdout_alone() -> None:
    """A HiGHS solve through the engine's solver door writes nothing to descriptor 1."""
    code = textwrap.dedent(
        """
        import numpy as np
        from engine.optimize.solvers import maximize
        r = maximize(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]), np.array([1.0]),
                     solver="highs")
        r2 = maximize(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]), np.array([1.0]),
                      integer=True, solver="highs")
        import sys
        sys.stderr.write(f"{r.status} {r.objective} {r2.status}")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("optimal 2.0 optimal")


def test_cli_sends_native_writes_to_stderr() -> None:
    """Whatever a library writes to descriptor 1 during a command lands on stderr."""
    code = textwrap.dedent(
        """
        import os
        from engine.stdio import reserve_stdout
        reserve_stdout()
        os.write(1, b"native banner\\n")
        print('{"ok": true}')
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout) == {"ok": True}
    assert "native banner" in proc.stderr
