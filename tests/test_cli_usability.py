"""First use of the command line: pipes, mistaken flags, bad files, and what it prints."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from engine.cli import build_parser, main
from engine.cli.textfmt import number, plural
from engine.errors import InvalidInputError
from engine.plan import Plan
from engine.synthetic import customers as example_customers

EQUITY = Path(sys.executable).with_name("equity")
SMALL = ("--example", "--example-size", "200")


def equity(*args: str) -> list[str]:
    """The installed ``equity`` command, or the module when it is not installed."""
    if EQUITY.exists():
        return [str(EQUITY), *args]
    return [sys.executable, "-m", "engine.cli", *args]


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- pipes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("frontier", *SMALL, "--rows", "3000", "--quiet"),
        ("plugins",),
        ("allocate", *SMALL, "--json"),
    ],
)
def test_closed_pipe_exits_quietly(args: tuple[str, ...]) -> None:
    """``equity ... | head -0``: the reader is gone before the command writes."""
    proc = subprocess.Popen(
        equity(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=os.environ | {"PYTHONUNBUFFERED": "0"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting at once
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=300)
    assert code == 141, err
    assert "BrokenPipe" not in err and "internal error" not in err and "Exception" not in err


def test_pipe_closed_after_two_lines() -> None:
    proc = subprocess.run(
        " ".join(equity("frontier", *SMALL, "--rows", "3000", "--quiet"))
        + " | head -2; echo \"status ${PIPESTATUS[0]}\" >&2",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300,
    )
    assert len(proc.stdout.splitlines()) == 2
    assert "BrokenPipe" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] in ("status 141", "status 0")


# --- discount rate ----------------------------------------------------------------------


def test_discount_rate_as_percent_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "allocate", *SMALL, "--discount-rate", "10")
    assert code == 2
    assert "--discount-rate" in err and "--discount-rate 0.10" in err
    code, _, err = run_main(capsys, "allocate", *SMALL, "--discount-rate", "-0.1")
    assert code == 2 and "--discount-rate" in err


def test_plan_json_discount_rate_above_one_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as exc:
        Plan.from_json('{"discount_rate": 10}')
    assert [v.field for v in exc.value.violations] == ["plan.discount_rate"]
    assert "0.10" in str(exc.value)
    plan = tmp_path / "plan.json"
    plan.write_text('{"discount_rate": 12}')
    proc = subprocess.run(equity("allocate", *SMALL, "--plan", str(plan)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "plan.discount_rate" in proc.stderr


# --- --example with files ---------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--customers", "--prospects", "--options", "--transactions"])
def test_example_and_files_are_exclusive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    code, out, err = run_main(capsys, "allocate", *SMALL, flag, str(path))
    assert code == 2
    assert "--example" in err and flag in err and "cannot be combined" in err
    assert out == ""


# --- bad cells in files -----------------------------------------------------------------


def test_text_in_a_numeric_column_names_table_column_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    df = example_customers(20).with_columns(pl.col("margin").cast(pl.String))
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("abc")).otherwise(pl.col("margin"))
        .alias("margin")
    )
    path = tmp_path / "customers.csv"
    df.write_csv(path)
    code, _, err = run_main(capsys, "allocate", "--customers", str(path), "--budget", "10")
    assert code == 2
    assert "customers.margin[3]: 'abc' is not a number" in err


def test_unparseable_transaction_date_shows_value_row_and_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        "customer_id,date,amount\n1,2024-01-02,5\n1,2024-02-03,6\n2,31/01/2024,7\n"
    )
    code, _, err = run_main(capsys, "clv", "--transactions", str(path),
                            "--calibration-end", "2024-03-01")
    assert code == 2
    assert "transactions.date[2]: '31/01/2024' is not a date" in err
    assert "YYYY-MM-DD" in err


@pytest.mark.parametrize("command", ["clv", "allocate"])
def test_unparseable_calibration_end_shows_value_and_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,date,amount\n1,2024-01-02,5\n1,2024-02-03,6\n")
    code, _, err = run_main(capsys, command, "--transactions", str(path),
                            "--calibration-end", "01.03.2024")
    assert code == 2
    assert "--calibration-end" in err or "calibration_end" in err
    assert "'01.03.2024' is not a date" in err and "YYYY-MM-DD" in err


# --- the plan from flags ----------------------------------------------------------------


def test_levels_and_params_from_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "plan.csv"
    code, out, err = run_main(
        capsys, "allocate", *SMALL, "--retention-levels", "0,1,2,5",
        "--acquisition-levels", "0,0.5,1", "--param", "cost.response=0.1",
        "--param", "allocation.solver=cbc", "--output", str(out_file), "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["solver"] == "cbc"
    units = pl.read_csv(out_file)
    retention = units.filter(pl.col("kind") == "retention")["level"].unique().to_list()
    acquisition = units.filter(pl.col("kind") == "acquisition")["level"]
    assert set(retention) <= {0.0, 1.0, 2.0, 5.0}
    assert float(acquisition.max()) <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "cost.nope=1"], "--param cost.nope: cost strategy 'exponential-response' "
                                     "has no parameter 'nope'; known: ceiling_share, "
                                     "contacts_per_head, response"),
        (["--param", "cost.response=abc"], "--param cost.response: must be of type float"),
        (["--param", "cost.response=-1"], "--param cost.response: must be >= 0"),
        (["--param", "allocation.solver=xx"], "--param allocation.solver: must be one of"),
        (["--param", "budget=3"], "argument --param: expected KIND.NAME=VALUE"),
        (["--retention-levels", "0,a,2"], "argument --retention-levels: 'a'"),
        (["--acquisition-levels", "0,-1"], "argument --acquisition-levels: levels must be"),
    ],
)
def test_bad_flags_name_the_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_main(capsys, "allocate", *SMALL, *args)
    assert code == 2
    assert message in err


def test_param_bool_and_text_values() -> None:
    from engine.cli.arguments import _param

    assert _param("allocation.solver=cbc") == ("allocation", "solver", "cbc")
    assert _param("cost.response=0.1") == ("cost", "response", 0.1)
    assert _param("metric.flag=True") == ("metric", "flag", True)
    with pytest.raises(argparse.ArgumentTypeError):
        _param("nope.x=1")


# --- help and example -------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_shows_its_default_in_help() -> None:
    missing = []
    for name, sub in _subcommands(build_parser()).items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.required:
                continue  # positional, or an on/off switch (off by default)
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_help_prints_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("allocate", "frontier", "compare", "report", "clv", "serve", "demo",
                    "example"):
        code, out, _ = run_main(capsys, command, "--help")
        assert code == 0
        assert "(default:" in out, command


def test_example_as_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_main(capsys, "example", "--out", str(tmp_path), "--size", "30",
                              "--format", "csv")
    assert code == 0, err
    assert pl.read_csv(tmp_path / "customers.csv").height == 30
    assert (tmp_path / "prospects.csv").is_file() and (tmp_path / "plan.json").is_file()
    assert "customers.csv (30 rows)" in out
    code, out, err = run_main(capsys, "allocate", "--customers", str(tmp_path / "customers.csv"),
                              "--prospects", str(tmp_path / "prospects.csv"),
                              "--plan", str(tmp_path / "plan.json"), "--json")
    assert code == 0, err


# --- printed figures --------------------------------------------------------------------


def test_numbers_never_print_negative_zero() -> None:
    assert number(-0.0) == "0.00"
    assert number(-1e-9, ".6f") == "0.000000"
    assert number(-1e-9, "+.6f") == "+0.000000"
    assert number(-1.5) == "-1.50"
    assert number(-1e-20, ".3e") == "-1.000e-20"
    assert number(None) == "n/a" and number(float("nan")) == "n/a"


def test_plurals() -> None:
    assert plural(1, "breakpoint") == "1 breakpoint"
    assert plural(2, "breakpoint") == "2 breakpoints"
    assert plural(1200, "pool") == "1,200 pools"


# --- other separators, tiny logs --------------------------------------------------------


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sep: str
) -> None:
    path = tmp_path / "customers.csv"
    example_customers(40).write_csv(path, separator=sep)
    code, out, err = run_main(capsys, "allocate", "--customers", str(path), "--budget", "50",
                              "--json")
    assert code == 0, err
    assert json.loads(out)["customers"] == 40


def test_decimal_comma_is_named_with_the_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("customer_id;margin;retention\n1;15;0.8\n2;2,5;0.7\n")
    code, _, err = run_main(capsys, "allocate", "--customers", str(path), "--budget", "5")
    assert code == 2
    assert "customers.margin[1]: '2,5' is not a number (decimal comma?" in err


def test_semicolon_transaction_log(tmp_path: Path) -> None:
    from engine.clv.transactions import read_transactions

    path = tmp_path / "tx.csv"
    path.write_text("customer_id;date;amount\n1;2024-01-01;5\n1;2024-01-05;5.5\n")
    assert read_transactions(path)["amount"].to_list() == [5.0, 5.5]


def test_too_few_customers_to_fit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(
        "customer_id,date,amount\n1,2024-01-01,5\n1,2024-02-05,7\n2,2024-01-03,5\n"
        "2,2024-03-01,9\n3,2024-01-10,4\n4,2024-02-01,3\n4,2024-02-20,6\n"
    )
    for args in (("clv", "--calibration-end", "2024-04-01"), ("allocate", "--budget", "10")):
        code, _, err = run_main(capsys, *args, "--transactions", str(path))
        assert code == 2, err
        assert "too few customers to fit BG/NBD: 4, at least 10 needed" in err
        assert "did not converge" not in err


# --- why nothing is spent ---------------------------------------------------------------


@pytest.fixture(scope="module")
def customers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("customers") / "customers.csv"
    example_customers(50).write_csv(path)
    return path


@pytest.mark.parametrize(
    "args, note",
    [
        (["--retention-levels", "0,500", "--budget", "100"],
         "no spend level returns more than it costs"),
        (["--retention-levels", "0,20", "--budget", "5"], "levels too coarse for the budget"),
        (["--budget", "0"], "every spend that would add equity is capped at 0 by budget"),
    ],
)
def test_nothing_spent_says_why(
    capsys: pytest.CaptureFixture[str], customers_csv: Path, args: list[str], note: str
) -> None:
    code, out, err = run_main(capsys, "allocate", "--customers", str(customers_csv), *args,
                              "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["total_spend"] == 0
    assert any(note in n for n in summary["notes"]), summary["notes"]
    code, out, err = run_main(capsys, "allocate", "--customers", str(customers_csv), *args)
    assert code == 0, err
    assert note in out
    assert "-0.00" not in out


def test_no_note_when_money_is_spent(
    capsys: pytest.CaptureFixture[str], customers_csv: Path
) -> None:
    code, out, err = run_main(capsys, "allocate", "--customers", str(customers_csv),
                              "--budget", "100", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["total_spend"] > 0
    assert not any("nothing is spent" in n for n in summary["notes"])


# --- quiet reports and clean text -------------------------------------------------------


def test_report_on_a_plan_worth_nothing_warns_nothing(
    customers_csv: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        equity("report", "--customers", str(customers_csv), "--retention-levels", "0,500",
               "--budget", "100", "--out", str(tmp_path / "r"), "--quiet"),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "r" / "uplift.png").is_file()


def test_report_charts_raise_no_matplotlib_warning(customers_csv: Path, tmp_path: Path) -> None:
    import warnings

    from engine.plan import Plan
    from engine.planning.report import build_report, write_report
    from engine.portfolio import Portfolio

    portfolio = Portfolio(pl.read_csv(customers_csv))
    for plan in (Plan(total_budget=100, retention_levels=(0, 500)), Plan(total_budget=0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = build_report(portfolio, plan, None, discount_rates=[0.05],
                                response_factors=[0.5])
            write_report(data, tmp_path / "r")
        ours = [w for w in caught if "pulp" not in w.filename]  # PuLP's API deprecations
        assert not ours, [str(w.message) for w in ours]


def test_text_output_has_no_negative_zero_and_correct_plurals(
    capsys: pytest.CaptureFixture[str], customers_csv: Path
) -> None:
    args = ("--customers", str(customers_csv), "--retention-levels", "0,500", "--budget", "100",
            "--quiet")
    code, out, err = run_main(capsys, "frontier", *args)
    assert code == 0, err
    assert "1 breakpoint," in out
    code, out2, err = run_main(capsys, "compare", *args, "--no-scenarios")
    assert code == 0, err
    for text in (out, out2):
        assert "-0.00" not in text
