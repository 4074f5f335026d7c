"""Response curves from experiments: recovery of known curves, interval coverage, model
choice, goodness of fit, the errors for data that cannot identify a curve, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.cli import main
from engine.errors import InvalidInputError
from engine.response.curves import Shape, probability
from engine.response.experiments import aggregate, simulate
from engine.response.fit import fit_curve, fit_experiments, fit_model, log_likelihood

RETENTION = {"base": 0.6, "ceiling": 0.8, "k": 0.08}
ACQUISITION = {"ceiling": 0.1, "k": 0.1}
LEVELS = {"retention": (0.0, 5.0, 10.0, 20.0, 40.0),
          "acquisition": (0.0, 2.0, 5.0, 10.0, 20.0, 40.0)}


def _arrays(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(table[c].to_numpy().astype(np.float64)  # type: ignore[return-value]
                 for c in ("spend", "units", "successes"))


def _units(truth: dict[str, float], kind: str, per_level: int, seed: int,
           segment: str = "s") -> pl.DataFrame:
    """One row per unit: each unit gets a spend level and succeeds with the curve's p."""
    rng = np.random.default_rng(seed)
    shape = Shape(kind, "exponential")
    spend = np.repeat(np.asarray(LEVELS[kind]), per_level)
    p = probability(shape, [truth[n] for n in shape.parameters], spend)
    return pl.DataFrame({"segment": segment, "kind": kind, "spend": spend,
                         "success": (rng.random(spend.size) < p).astype(np.int8)})


def test_unit_rows_recover_the_curve_within_its_standard_errors() -> None:
    table = pl.concat([_units(RETENTION, "retention", 4000, 1, "gold"),
                       _units(ACQUISITION, "acquisition", 4000, 2, "new")])
    fits = {f.kind: f for f in fit_experiments(aggregate(table))}
    for kind, truth in (("retention", RETENTION), ("acquisition", ACQUISITION)):
        fit = fits[kind].to_dict()
        assert fit["model"] == "exponential"
        assert fit["units"] == 4000 * len(LEVELS[kind])
        for name, value in truth.items():
            se = fit["standard_errors"][name]
            assert 0 < se < 0.5 * value
            assert abs(fit[name] - value) < 3.5 * se, (kind, name, fit[name], se)
        cov = np.array(fit["covariance"])
        assert np.allclose(np.sqrt(np.diag(cov)), list(fit["standard_errors"].values()))
        assert np.all(np.linalg.eigvalsh(cov) > 0)


@pytest.mark.parametrize("kind,truth", [("retention", RETENTION), ("acquisition", ACQUISITION)])
def test_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time(
    kind: str, truth: dict[str, float]
) -> None:
    shape = Shape(kind, "exponential")
    runs = 200
    covered = np.zeros(shape.size)
    for seed in range(runs):
        spend, units, successes = _arrays(
            simulate({("s", kind): truth}, LEVELS, 2000, seed=seed))
        fit = fit_model(shape, spend, units, successes)
        true = np.array([truth[n] for n in shape.parameters])
        covered += np.abs(fit.theta - true) <= 1.959964 * fit.standard_errors
    share = covered / runs
    # 200 runs: the share's standard deviation is 1.5 points; 95% +- 3.5 sd
    assert np.all((share >= 0.895) & (share <= 0.995)), dict(zip(shape.parameters, share,
                                                                 strict=True))


def test_observed_information_is_the_negative_hessian_of_the_log_likelihood() -> None:
    spend, units, successes = _arrays(simulate({("s", "retention"): RETENTION}, LEVELS, 900,
                                               seed=5))
    shape = Shape("retention", "exponential")
    fit = fit_model(shape, spend, units, successes)
    theta, h = fit.theta, 1e-4
    numeric = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            def ll(di: float, dj: float, i: int = i, j: int = j) -> float:
                t = theta.copy()
                t[i] += di
                t[j] += dj
                return log_likelihood(shape, t, spend, units, successes)
            numeric[i, j] = -(ll(h, h) - ll(h, -h) - ll(-h, h) + ll(-h, -h)) / (4 * h * h)
    assert np.allclose(np.linalg.inv(fit.covariance), numeric, rtol=2e-3)


def test_an_s_shaped_response_chooses_hill_and_an_exponential_one_does_not() -> None:
    levels = {"retention": (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0)}
    hill = {("s", "retention"): {"base": 0.5, "ceiling": 0.8, "k": 0.08, "shape": 3.0}}
    fit = fit_curve("s", "retention", *_arrays(simulate(hill, levels, 2000, seed=3,
                                                         model="hill")))
    doc = fit.to_dict()
    assert doc["model"] == "hill" and doc["model_choice"]["chosen"] == "hill"
    assert doc["model_choice"]["hill"]["aic"] <= doc["model_choice"]["exponential"]["aic"] - 4
    assert doc["model_choice"]["lr_statistic"] > 4
    assert abs(doc["shape"] - 3.0) < 3.5 * doc["standard_errors"]["shape"]
    exponential = [fit_curve("s", "retention", *_arrays(
        simulate({("s", "retention"): RETENTION}, levels, 2000, seed=s))).model
        for s in range(20)]
    assert exponential.count("hill") <= 2


def test_goodness_of_fit_flags_a_level_the_curve_cannot_follow() -> None:
    table = pl.DataFrame({"segment": "s", "kind": "retention",
                          "spend": [0.0, 5, 10, 20, 40], "units": 5000,
                          "successes": [3000, 3400, 3300, 3900, 4000]})  # a dip at 10
    doc = fit_experiments(aggregate(table))[0].to_dict()
    assert doc["goodness_of_fit"]["df"] == 2
    assert doc["goodness_of_fit"]["p_value"] < 1e-6
    worst = min(doc["fit_by_level"], key=lambda row: row["p_value"])
    assert worst["spend"] in (5.0, 10.0, 20.0) and abs(worst["pearson_residual"]) > 3
    good = fit_experiments(aggregate(simulate({("s", "retention"): RETENTION}, LEVELS, 2000,
                                              seed=1)))[0].to_dict()
    assert good["goodness_of_fit"]["p_value"] > 0.05
    level = good["fit_by_level"][0]
    assert set(level) == {"spend", "units", "successes", "observed", "predicted",
                          "pearson_residual", "p_value"}


def _arms(segment: str, kind: str, spend: list[float], units: list[int],
          successes: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"segment": segment, "kind": kind, "spend": spend, "units": units,
                         "successes": successes})


@pytest.mark.parametrize("arms,phrase", [
    (_arms("vip", "retention", [10.0], [500], [300]), "1 spend level (10)"),
    (_arms("vip", "retention", [0.0, 10.0], [500, 500], [300, 350]), "needs at least 3"),
    (_arms("vip", "retention", [0.0, 5, 10], [500] * 3, [0] * 3), "no variation"),
    (_arms("vip", "retention", [0.0, 5, 10], [500] * 3, [500] * 3), "no variation"),
    (_arms("vip", "retention", [0.0, 5, 10], [500] * 3, [400, 350, 300]), "falls with spend"),
    (_arms("vip", "acquisition", [0.0, 5], [500] * 2, [0, 40]), "1 positive spend level"),
    (_arms("vip", "acquisition", [0.0, 5, 10], [500] * 3, [7, 40, 60]), "at spend 0"),
    (_arms("vip", "retention", [0.0, 100, 200, 400], [5000] * 4, [2500, 4000, 4000, 4000]),
     "lowest positive spend"),
    (_arms("vip", "retention", [0.0, 1, 2, 3], [5000] * 4, [2500, 2550, 2600, 2650]),
     "does not level off"),
])
def test_data_that_cannot_identify_a_curve_is_refused_naming_the_segment(
    arms: pl.DataFrame, phrase: str
) -> None:
    good = simulate({("ok", "retention"): RETENTION}, LEVELS, 1000, seed=0)
    with pytest.raises(InvalidInputError) as info:
        fit_experiments(aggregate(pl.concat([good, arms], how="vertical_relaxed")))
    [violation] = info.value.violations  # the good segment fits; only the bad one is named
    assert violation.field == f"experiments[segment='vip', kind={arms['kind'][0]}]"
    assert phrase in violation.description, violation.description


@pytest.mark.parametrize("change,field,row", [
    ({"successes": [10, 600, 20]}, "experiments.successes", 1),
    ({"kind": ["retention", "churn", "retention"]}, "experiments.kind", 1),
    ({"units": [10, 0, 10]}, "experiments.units", 1),
    ({"spend": [0.0, -1.0, 2.0]}, "experiments.spend", 1),
    ({"units": [10.0, 10.5, 10.0]}, "experiments.units", 1),
])
def test_bad_aggregated_rows_are_named(change: dict[str, list[object]], field: str,
                                       row: int) -> None:
    base = {"segment": ["a"] * 3, "kind": ["retention"] * 3, "spend": [0.0, 1.0, 2.0],
            "units": [10, 500, 10], "successes": [1, 2, 3]}
    with pytest.raises(InvalidInputError) as info:
        aggregate(pl.DataFrame(base | change))
    assert (info.value.violations[0].field, info.value.violations[0].row) == (field, row)


def test_unit_rows_are_checked_and_pooled() -> None:
    rows = pl.DataFrame({"customer_id": [1, 2, 3, 4], "kind": ["retention"] * 4,
                         "spend": [0.0, 0.0, 5.0, 5.0], "success": [1, 0, 1, 1]})
    out = aggregate(rows)
    assert out.to_dicts() == [
        {"segment": "", "kind": "retention", "spend": 0.0, "units": 2, "successes": 1},
        {"segment": "", "kind": "retention", "spend": 5.0, "units": 2, "successes": 2}]
    with pytest.raises(InvalidInputError) as info:
        aggregate(rows.with_columns(pl.Series("success", [1, 0, 2, 1])))
    assert str(info.value) == "experiments.success[2]: must be 0 or 1"
    with pytest.raises(InvalidInputError) as info:
        aggregate(rows.with_columns(pl.Series("customer_id", [1, 2, 1, 4])))
    assert info.value.violations[0].row == 2 and "appears twice" in str(info.value)
    with pytest.raises(InvalidInputError, match=r"experiments.segment: required column"):
        aggregate(rows.drop("customer_id"))


def test_cli_writes_the_curves_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "experiments.csv"
    simulate({("gold", "retention"): RETENTION, ("new", "acquisition"): ACQUISITION}, LEVELS,
             2000, seed=4).write_csv(path)
    out = tmp_path / "curves.json"
    assert main(["fit-response", "--experiments", str(path), "--json", "--output",
                 str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    by_segment = {c["segment"]: c for c in printed["curves"]}
    gold, new = by_segment["gold"], by_segment["new"]
    assert set(gold) >= {"segment", "kind", "model", "base", "ceiling", "k", "standard_errors",
                         "covariance", "log_likelihood", "fit_by_level"}
    assert gold["kind"] == "retention" and set(gold["standard_errors"]) == {"base", "ceiling",
                                                                            "k"}
    assert new["base"] == 0.0 and set(new["standard_errors"]) == {"ceiling", "k"}
    assert len(new["fit_by_level"]) == len(LEVELS["acquisition"])
    assert main(["fit-response", "--experiments", str(path)]) == 0
    text = capsys.readouterr().out
    assert "gold retention: exponential" in text and "Pearson chi-square" in text


def test_cli_error_names_the_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "experiments.csv"
    _arms("vip", "retention", [10.0], [500], [300]).write_csv(path)
    assert main(["fit-response", "--experiments", str(path)]) == 2
    err = capsys.readouterr().err
    assert "experiments[segment='vip', kind=retention]" in err and "1 spend level" in err


def test_equity_example_writes_experiments_that_fit(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from engine.response.experiments import EXAMPLE_TRUTH

    assert main(["example", "--out", str(tmp_path), "--size", "200", "--format", "csv"]) == 0
    assert "experiments.csv (43 arms)" in capsys.readouterr().out
    assert main(["fit-response", "--experiments", str(tmp_path / "experiments.csv"),
                 "--json"]) == 0
    curves = json.loads(capsys.readouterr().out)["curves"]
    assert {(c["segment"], c["kind"]) for c in curves} == set(EXAMPLE_TRUTH)
    for curve in curves:
        truth = EXAMPLE_TRUTH[(curve["segment"], curve["kind"])]
        assert abs(curve["ceiling"] - truth["ceiling"]) < 4 * curve["standard_errors"]["ceiling"]
