"""The CLI as a user runs it: a real process, real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example")
    proc = run("example", "--out", str(out), "--size", "800")
    assert proc.returncode == 0, proc.stderr
    return out


def test_allocate_from_files_writes_plan_and_json(example_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "plan.parquet"
    proc = run(
        "allocate",
        "--customers",
        str(example_dir / "customers.parquet"),
        "--prospects",
        str(example_dir / "prospects.parquet"),
        "--plan",
        str(example_dir / "plan.json"),
        "--budget",
        "4000",
        "--cap",
        "core=900",
        "--output",
        str(output),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in (
        "equity_before",
        "equity_after",
        "equity_gain",
        "total_spend",
        "bound",
        "gap",
        "status",
        "shadow_prices",
    ):
        assert key in summary
    assert summary["status"] == "optimal"
    assert summary["total_spend"] <= 4000 * (1 + 1e-9)
    assert summary["spend_by_segment"]["core"] <= 900 * (1 + 1e-9)
    assert summary["equity_after"] >= summary["equity_before"]
    assert set(summary["shadow_prices"]) >= {"budget", "cap:core"}
    plan = pl.read_parquet(output)
    assert {"customer_id", "level", "spend"} <= set(plan.columns)
    assert plan.height == 800 + 5
    assert plan["spend"].sum() == pytest.approx(summary["total_spend"])


def test_csv_output_and_options_table(tmp_path: Path) -> None:
    from engine.synthetic import options_table

    options_table(300, levels=4, segments=3).write_csv(tmp_path / "options.csv")
    proc = run(
        "allocate",
        "--options",
        str(tmp_path / "options.csv"),
        "--budget",
        "2000",
        "--solver",
        "cbc",
        "--output",
        str(tmp_path / "out.csv"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["solver"] == "cbc"
    assert pl.read_csv(tmp_path / "out.csv").height == 300


def test_human_summary_on_the_example() -> None:
    proc = run("allocate", "--example", "--example-size", "500")
    assert proc.returncode == 0, proc.stderr
    assert "equity gain" in proc.stdout and "shadow price" in proc.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--customers", "missing.parquet"], 2, "customers: missing.parquet: no such file"),
        (["--example", "--budget", "-1"], 2, "plan.budget.total: must be >= 0"),
        (["--example", "--allocator", "nope"], 2, "unknown allocation strategy 'nope'"),
        (["--example", "--cap", "atlantis=5"], 2, "unknown segment 'atlantis'"),
        (["--example", "--minimum", "new=1e12"], 3, "minimum:new"),
        (["--example", "--discount-rate", "nan"], 2, "plan.discount_rate"),
    ],
)
def test_errors_are_one_line_with_exit_code(args: list[str], code: int, message: str) -> None:
    proc = run("allocate", "--example-size", "200", *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_rows_in_a_file_name_the_row(tmp_path: Path) -> None:
    from engine.synthetic import customers

    df = customers(50).with_columns(
        pl.when(pl.int_range(pl.len()) == 17)
        .then(1.0)
        .otherwise(pl.col("retention"))
        .alias("retention")
    )
    df.write_csv(tmp_path / "c.csv")
    proc = run("allocate", "--customers", str(tmp_path / "c.csv"), "--budget", "10")
    assert proc.returncode == 2
    assert "customers.retention[17]: must be < 1" in proc.stderr


def test_truncated_parquet_is_an_input_error(tmp_path: Path) -> None:
    from engine.synthetic import customers

    path = tmp_path / "c.parquet"
    customers(100).write_parquet(path)
    path.write_bytes(path.read_bytes()[:200])
    proc = run("allocate", "--customers", str(path), "--budget", "10")
    assert proc.returncode == 2 and "cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plugins_lists_builtins_with_provenance() -> None:
    proc = run("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {(s["kind"], s["name"]): s for s in json.loads(proc.stdout)["strategies"]}
    for key in [
        ("metric", "clv"),
        ("metric", "roc"),
        ("cost", "exponential-response"),
        ("cost", "spend-table"),
        ("cost", "activity-based"),
        ("allocation", "lp"),
        ("allocation", "greedy"),
        ("allocation", "uniform"),
        ("allocation", "proportional"),
    ]:
        assert key in listed
        assert listed[key]["package"] == "equity-engine"
    assert "solver" in listed[("allocation", "lp")]["parameters"]


DATA = ROOT / "tests" / "data" / "CDNOW_sample.txt"


def test_allocate_from_a_transaction_log(tmp_path: Path) -> None:
    """Transactions -> BG/NBD/Gamma-Gamma -> margin and retention -> plan, in one command."""
    segments = tmp_path / "segments.csv"
    pl.DataFrame(
        {"customer_id": [f"{i:04d}" for i in range(1, 2358)],  # CDNOW's ids, as written
         "segment": ["odd" if i % 2 else "even" for i in range(1, 2358)]}
    ).write_csv(segments)
    proc = run(
        "allocate", "--transactions", str(DATA), "--calibration-end", "1997-09-30",
        "--customers", str(segments), "--budget", "2000", "--cap", "odd=600", "--json",
        "--output", str(tmp_path / "plan.parquet"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["customers"] == 2357
    assert summary["total_spend"] <= 2000 * (1 + 1e-9)
    assert summary["spend_by_segment"]["odd"] <= 600 * (1 + 1e-9)
    plan = pl.read_parquet(tmp_path / "plan.parquet")
    # the model's per-customer figures travel with the plan; equity before is the CLV
    assert {"p_alive", "clv", "expected_purchases"} <= set(plan.columns)
    assert plan["equity_before"].to_numpy() == pytest.approx(plan["clv"].to_numpy(), rel=1e-9)


def test_clv_command_prints_the_fitted_model() -> None:
    proc = run("clv", "--transactions", str(DATA), "--calibration-end", "1997-09-30",
               "--time-unit", "week", "--json")
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(proc.stdout)
    assert fit["bgnbd"]["r"] == pytest.approx(0.243, abs=5e-4)
    assert fit["gamma_gamma"]["p"] == pytest.approx(6.25, abs=5e-3)


def test_a_customers_metric_on_transactions_is_refused() -> None:
    proc = run("allocate", "--transactions", str(DATA), "--metric", "clv", "--budget", "10")
    assert proc.returncode == 2
    assert "plan.metric.name" in proc.stderr and "bgnbd" in proc.stderr
