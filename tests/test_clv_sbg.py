"""sBG contractual churn: Fader & Hardie (2007) cohorts, DERL against brute-force sums,
customer-level data, input errors naming rows, and ``equity clv --survival``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli.clv import main
from engine.clv.sbg import fit_sbg, fit_sbg_tenure, fit_survival_table, validate_survival
from engine.errors import InvalidInputError

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


def table() -> pl.DataFrame:
    rows = [("regular", t, n) for t, n in enumerate(REGULAR)]
    rows += [("high end", t, n) for t, n in enumerate(HIGH_END)]
    return pl.DataFrame(rows, schema=["cohort", "period", "alive"], orient="row")


def test_fader_hardie_cohorts() -> None:
    regular, high = fit_survival_table(table())
    assert (regular.fit.model, regular.cohort, high.cohort) == ("sBG", "regular", "high end")
    assert (round(regular.alpha, 3), round(regular.beta, 3)) == (0.704, 1.182)
    assert (round(high.alpha, 3), round(high.beta, 3)) == (0.668, 3.806)
    for f in (regular, high):
        assert f.fit.converged and all(v > 0 for v in f.fit.standard_errors.values())
    # Retention rises with tenure (the survivors are the loyal ones).
    r = regular.retention(np.arange(1, 8))
    assert np.all(np.diff(r) > 0)
    assert r[0] == pytest.approx(regular.beta / (regular.alpha + regular.beta))
    # The fitted survival curve is close to the data it was fitted on.
    assert regular.survival(np.arange(8)) * 1000 == pytest.approx(REGULAR, abs=25)


def test_derl_and_del_against_long_sums() -> None:
    fit = fit_sbg(REGULAR)
    s = fit.survival(np.arange(40_000))
    delta = np.exp(-np.log(1.1) * np.arange(39_000))
    assert fit.del_(0.1) == pytest.approx(float(np.sum(delta * s[:39_000])), rel=1e-9)
    for n in (0, 3, 10):
        want = float(np.sum(delta * s[n + 1 : n + 1 + 39_000])) / s[n]
        assert float(fit.derl(0.1, n)) == pytest.approx(want, rel=1e-9)
    with pytest.raises(InvalidInputError, match="discount_rate"):
        fit.derl(0.0, 1)


def test_customer_level_data_gives_the_same_fit() -> None:
    counts = np.array(REGULAR)
    lost = counts[:-1] - counts[1:]  # churned in period t = 1..7: made t - 1 renewals
    renewals = np.concatenate([np.repeat(np.arange(7), lost), np.full(counts[-1], 7)])
    active = np.concatenate([np.zeros(lost.sum(), bool), np.ones(counts[-1], bool)])
    by_customer = fit_sbg_tenure(renewals, active)
    by_cohort = fit_sbg(REGULAR)
    assert by_customer.alpha == pytest.approx(by_cohort.alpha, rel=1e-6)
    assert by_customer.fit.log_likelihood == pytest.approx(by_cohort.fit.log_likelihood)


def test_survival_table_errors_name_the_rows() -> None:
    bad = table().with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(900).otherwise(pl.col("alive")).alias("alive")
    )
    with pytest.raises(InvalidInputError) as err:
        validate_survival(bad)
    assert [(v.field, v.row) for v in err.value.violations] == [("survival.alive", 3)]
    gap = table().filter(pl.col("period") != 2)
    with pytest.raises(InvalidInputError, match="0, 1, 2"):
        validate_survival(gap)
    with pytest.raises(InvalidInputError, match="cohort"):
        validate_survival(table().drop("cohort"))
    with pytest.raises(InvalidInputError, match="nobody churned"):
        fit_sbg([100, 100, 100])


def test_cli_survival(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cohorts.csv"
    table().write_csv(path)
    assert main(["clv", "--survival", str(path), "--json", "--discount-rate", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)["sbg"]
    assert [c["cohort"] for c in out] == ["regular", "high end"]
    assert {"alpha", "beta", "log_likelihood", "standard_errors", "retention", "derl"} <= set(
        out[0]
    )
    assert (round(out[1]["alpha"], 3), round(out[1]["beta"], 3)) == (0.668, 3.806)
    assert main(["clv", "--survival", str(path)]) == 0
    assert "sBG regular" in capsys.readouterr().out
    assert main(["clv", "--survival", str(tmp_path / "missing.csv")]) == 2
