"""CLV data policy and prediction horizon: the published fits from a plain CSV, the horizon
stated in the output."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engine.cli.clv import main
from engine.clv.transactions import read_cdnow, read_transactions, rfm_statistics
from engine.clv.value import clv_from_transactions
from engine.errors import InvalidInputError

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CDNOW sample as a practitioner holds it: customer_id,date,amount, no order id."""
    path = tmp_path_factory.mktemp("clv") / "cdnow.csv"
    read_cdnow(CDNOW).select("customer_id", "date", "amount").write_csv(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["clv", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plain_csv_reproduces_the_published_gamma_gamma(
    cdnow_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = run(capsys, "--transactions", str(cdnow_csv), "--calibration-end", "1997-09-30")
    gg = s["gamma_gamma"]
    assert (round(gg["p"], 2), round(gg["q"], 2), round(gg["gamma"], 2)) == (6.25, 3.74, 15.44)
    assert gg["customers"] == 946 and gg["converged"] is True
    assert s["cleaning"]["identical_rows"] == 9 and s["cleaning"]["duplicate_rows"] == 0
    bg = s["bgnbd"]
    assert (round(bg["r"], 3), round(bg["alpha"], 2), round(bg["a"], 3), round(bg["b"], 2)) == (
        0.243, 4.41, 0.793, 2.43,
    )  # fmt: skip
    # --dedupe: identical rows are double exports; the old, unpublished numbers.
    s = run(capsys, "--transactions", str(cdnow_csv), "--calibration-end", "1997-09-30",
            "--dedupe")  # fmt: skip
    gg = s["gamma_gamma"]
    assert (round(gg["p"], 3), round(gg["gamma"], 2)) == (6.276, 15.35)
    assert s["cleaning"]["duplicate_rows"] == 9 and s["cleaning"]["identical_rows"] == 0


def test_csv_with_transaction_ids_drops_double_exports(tmp_path: Path) -> None:
    log = read_cdnow(CDNOW).select("customer_id", "date", "amount", "transaction_id")
    doubled = pl.concat([log, log.head(100)])  # the first 100 orders exported twice
    path = tmp_path / "doubled.csv"
    doubled.write_csv(path)
    rfm, report = rfm_statistics(read_transactions(path), "1997-09-30", "week")
    reference, _ = rfm_statistics(log, "1997-09-30", "week")
    assert report.duplicate_rows == 100 and report.input_rows == log.height + 100
    assert rfm.equals(reference)


def test_prediction_horizon_is_stated(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--transactions", str(CDNOW), "--calibration-end", "1997-09-30"]
    default = run(capsys, *base)["prediction_horizon"]
    assert default["source"] == "one period" and default["length"] == 1.0
    weeks = run(capsys, *base, "--prediction-horizon", "39")["prediction_horizon"]
    assert (weeks["length"], weeks["time_unit"], weeks["source"]) == (39.0, "week", "given")
    # 39 weeks ahead of the calibration end: the holdout prediction of the published check.
    assert round(weeks["expected_purchases"], 1) == 1653.4
    same = run(capsys, *base, "--prediction-horizon", "273d")["prediction_horizon"]
    assert same["length"] == pytest.approx(39.0) and same["expected_purchases"] == pytest.approx(
        weeks["expected_purchases"]
    )
    year = run(capsys, *base, "--prediction-horizon", "12m")["prediction_horizon"]
    assert year["length"] == pytest.approx(365.25 / 7)
    valued = run(capsys, *base, "--horizon", "10")["prediction_horizon"]
    assert (valued["length"], valued["source"]) == (10.0, "valued horizon")
    with pytest.raises(SystemExit) as stop:
        main(["clv", *base, "--prediction-horizon=-3w"])
    assert stop.value.code == 2
    assert "horizon must be > 0" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="prediction_horizon"):
        clv_from_transactions(CDNOW, "1997-09-30", prediction_horizon=0.0)


def test_text_output_names_the_horizon(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["clv", "--transactions", str(CDNOW), "--calibration-end", "1997-09-30",
                 "--prediction-horizon", "39w"])  # fmt: skip
    assert code == 0
    assert "1,653.41 purchases in the next 39 weeks (given)" in capsys.readouterr().out
