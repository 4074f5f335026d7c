"""--response and --uncertainty on every command that plans: frontier, compare and report take
them as allocate does (engine/cli/arguments.py), and show the gain's interval."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from engine.planning.report import CHARTS, build_report, render_html
from engine.planning.uncertainty import uncertainty_at_budgets
from engine.portfolio import Portfolio
from engine.response.files import read_curves
from engine.synthetic import example

EXPERIMENTS = Path(__file__).parent / "data" / "experiments.csv"
SMALL = ["--example", "--example-size", "1200", "--budget", "8000", "--quiet"]


@pytest.fixture(scope="module")
def curves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("curves") / "curves.json"
    assert main(["fit-response", "--experiments", str(EXPERIMENTS), "--output", str(path)]) == 0
    return path


def _json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def _ordered(band: dict[str, float]) -> None:
    assert set(band) == {"p5", "p50", "p95"}
    assert band["p5"] < band["p50"] < band["p95"]


def test_frontier_takes_the_curves_and_states_the_gain_interval_at_two_budgets(
        curves: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _json(capsys, ["frontier", *SMALL, "--json"])
    fitted = _json(capsys, ["frontier", *SMALL, "--response", str(curves), "--uncertainty",
                            "40", "--seed", "2", "--json"])
    assert plain["uncertainty"] is None
    # the fitted curves put less lift at each spend than the example's columns
    assert fitted["frontier"]["optimal_gain"] < plain["frontier"]["optimal_gain"]
    sure = fitted["uncertainty"]
    assert sure["draws"] == 40
    rows = sure["budgets"]
    assert [r["budget"] for r in rows] == sorted({8000.0, fitted["frontier"]["optimal_budget"]})
    for row in rows:
        _ordered({k: row[k] for k in ("p5", "p50", "p95")})
        assert row["p5"] < row["equity_gain"] < row["p95"]
        assert 0.0 <= row["probability_beats_nothing"] <= 1.0
    capsys.readouterr()
    assert main(["frontier", *SMALL, "--response", str(curves), "--uncertainty", "10"]) == 0
    assert "how sure: the integral plan's gain under 10 draws" in capsys.readouterr().out


def test_compare_states_the_optimums_interval_and_beats_the_current_plan(
        curves: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "current.csv"
    customers, _, _ = example(1200)
    ids = customers["customer_id"].head(200)
    pl.DataFrame({"customer_id": ids, "spend": [5.0] * ids.len()}).write_csv(current)
    out = _json(capsys, ["compare", *SMALL, "--response", str(curves), "--uncertainty", "40",
                         "--current-plan", str(current), "--no-scenarios", "--json"])
    sure = out["uncertainty"]
    assert sure["uncertainty_draws"] == 40
    _ordered(sure["equity_gain_interval"])
    _ordered(sure["current_gain_interval"])
    optimum = next(p for p in out["plans"] if p["plan"] == "optimum")
    assert sure["equity_gain_interval"]["p5"] < optimum["equity_after"] - optimum[
        "equity_before"] < sure["equity_gain_interval"]["p95"]
    assert sure["probability_beats_current"] == 1.0  # 1,000 spent blindly vs the optimum
    again = _json(capsys, ["compare", *SMALL, "--response", str(curves), "--uncertainty", "40",
                           "--current-plan", str(current), "--no-scenarios", "--json"])
    assert again["uncertainty"] == sure  # the seed fixes the draws
    assert _json(capsys, ["compare", *SMALL, "--no-scenarios", "--json"])["uncertainty"] is None
    capsys.readouterr()
    assert main(["compare", *SMALL, "--response", str(curves), "--uncertainty", "10",
                 "--no-scenarios"]) == 0
    assert "how sure (10 draws of the estimated parameters)" in capsys.readouterr().out


def test_report_shows_the_interval_and_where_the_curves_came_from(
        curves: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["report", *SMALL, "--response", str(curves), "--uncertainty", "30",
                         "--no-scenarios", "--format", "json"])
    decision = out["decision"]
    _ordered(decision["gain_vs_nothing_interval"])
    assert 0.0 <= decision["probability_beats_nothing"] <= 1.0
    assert any(line.startswith("retention: fitted") for line in out["assumptions"]["response"])
    assert out["assumptions"]["inputs"]["response"] == curves.name
    plain = _json(capsys, ["report", *SMALL, "--no-scenarios", "--format", "json"])
    assert plain["decision"]["gain_vs_nothing_interval"] is None


def test_report_page_renders_the_interval_and_the_chance_of_beating_the_current_plan(
        curves: Path) -> None:
    customers, prospects, plan = example(800)
    plan = plan.with_overrides(response_curves=read_curves(curves), total_budget=5000.0)
    ids = customers["customer_id"].head(100)
    current = pl.DataFrame({"customer_id": ids, "spend": [5.0] * ids.len()})
    data = build_report(Portfolio(customers, prospects), plan, current, uncertainty=30,
                        seed=1)
    page = render_html(data, {name: b"png" for name in CHARTS})
    assert "interval p5-p95" in page and "P(plan beats current)" in page
    assert data.decision["current_gain_interval"] is not None


def test_the_budgets_share_their_draws() -> None:
    customers, prospects, plan = example(600)
    portfolio = Portfolio(customers, prospects)
    one = uncertainty_at_budgets(portfolio, plan, [3000.0], 20, seed=4)
    two = uncertainty_at_budgets(portfolio, plan, [3000.0, 6000.0], 20, seed=4)
    assert one.row(0) == two.row(0)
    assert two["equity_gain"][1] >= two["equity_gain"][0]


def test_uncertainty_flags_are_refused_clearly(curves: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["frontier", *SMALL, "--uncertainty", "-3"])
    assert "must be >= 0" in capsys.readouterr().err
    for command in ("frontier", "compare", "report"):
        code = main([command, *SMALL, "--uncertainty", "5", "--cost", "segment-spend-table",
                     "--no-scenarios"] if command != "frontier" else
                    [command, *SMALL, "--uncertainty", "5", "--cost", "segment-spend-table"])
        assert code == 2, command
        assert "--uncertainty: needs a response-curve cost strategy" in capsys.readouterr().err
    assert main(["allocate", "--customers", "c.parquet", "--cluster", "local:1",
                 "--uncertainty", "5"]) == 2
    assert "--uncertainty: is not supported with --cluster yet" in capsys.readouterr().err
    missing = curves.parent / "missing.json"
    assert main(["frontier", *SMALL, "--response", str(missing)]) == 2
    assert f"--response: cannot read {missing}" in capsys.readouterr().err


# --- pools whose acquisition response comes from the curves alone --------------------------


def _pools_without_response_columns(tmp_path: Path) -> tuple[Path, Path, Path]:
    customers, prospects, _ = example(600)
    c, p = tmp_path / "customers.csv", tmp_path / "prospects.csv"
    customers.write_csv(c)
    prospects.drop("acquisition_ceiling", "acquisition_response").write_csv(p)
    segments = prospects["segment"].to_list()
    curves = tmp_path / "pools.json"
    curves.write_text(json.dumps({"curves": [
        {"segment": s, "kind": "acquisition", "ceiling": 0.2 + 0.05 * i, "k": 0.15,
         "parameters": ["ceiling", "k"], "covariance": [[1e-4, 0], [0, 1e-4]]}
        for i, s in enumerate(segments)]}))
    return c, p, curves


def test_curves_stand_in_for_the_pools_response_columns(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    c, p, curves = _pools_without_response_columns(tmp_path)
    common = ["allocate", "--customers", str(c), "--prospects", str(p), "--budget", "4000"]
    out = _json(capsys, [*common, "--response", str(curves), "--uncertainty", "20", "--json"])
    assert out["spend_by_kind"]["acquisition"] > 0
    _ordered(out["equity_gain_interval"])
    pools = [r for r in out["assumptions"]["responses"] if r["kind"] == "acquisition"]
    assert pools and {r["source"] for r in pools} == {"fitted"}
    # the same pools with the columns set to the curves' values: the same plan
    _, prospects, _ = example(600)
    table = prospects.with_columns(
        acquisition_ceiling=pl.Series([0.2 + 0.05 * i for i in range(prospects.height)]),
        acquisition_response=pl.lit(0.15))
    both = tmp_path / "both.csv"
    table.write_csv(both)
    same = _json(capsys, ["allocate", "--customers", str(c), "--prospects", str(both),
                          "--budget", "4000", "--json"])
    assert same["equity_gain"] == pytest.approx(out["equity_gain"], rel=1e-9)


def test_a_pool_neither_curves_nor_columns_cover_is_named(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    c, p, curves = _pools_without_response_columns(tmp_path)
    document = json.loads(curves.read_text())
    dropped = document["curves"].pop(1)["segment"]
    curves.write_text(json.dumps(document))
    capsys.readouterr()
    code = main(["allocate", "--customers", str(c), "--prospects", str(p), "--budget", "4000",
                 "--response", str(curves)])
    assert code == 2
    err = capsys.readouterr().err
    assert (f"prospects.acquisition_ceiling[1]: required column is missing, and no "
            f"acquisition curve in the plan's response_curves (--response) covers pool "
            f"'{dropped}'") in err
    assert "prospects.acquisition_response[1]" in err
    assert main(["allocate", "--customers", str(c), "--prospects", str(p)]) == 2
    assert "covers pool" in capsys.readouterr().err
