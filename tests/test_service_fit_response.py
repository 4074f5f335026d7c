"""The FitResponse RPC over a real loopback server: the same curves, standard errors and fit
statistics as the in-process fit (``equity fit-response``), in both table encodings and both
experiment layouts; the curves feed a plan sent to Allocate; errors name field, row, segment."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import polars as pl
import pytest

from engine.api.equity_engine.v1 import service_pb2, service_pb2_grpc
from engine.errors import InvalidInputError
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.response.experiments import aggregate, example_experiments, simulate
from engine.response.files import curves_from_document
from engine.response.fit import fit_experiments
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import customers
from tests.servers import connected, running


@pytest.fixture(scope="module")
def server() -> Iterator[EquityServer]:
    yield from running(ServerConfig(port=0), grace=1.0)


@pytest.fixture(scope="module", params=["arrow", "columns"])
def client(request: pytest.FixtureRequest, server: EquityServer) -> Iterator[Client]:
    yield from connected(server, timeout=60.0, table_format=request.param)


def _local(table: pl.DataFrame) -> dict[str, object]:
    return {"curves": [f.to_dict() for f in fit_experiments(aggregate(table))]}


def _same(remote: dict, local: dict) -> None:  # type: ignore[type-arg]
    assert [(c["segment"], c["kind"], c["model"]) for c in remote["curves"]] == [
        (c["segment"], c["kind"], c["model"]) for c in local["curves"]]
    for r, lo in zip(remote["curves"], local["curves"], strict=True):
        assert r["parameters"] == lo["parameters"]
        for name in r["parameters"]:
            assert r[name] == pytest.approx(lo[name], rel=1e-12)
            assert r["standard_errors"][name] == pytest.approx(lo["standard_errors"][name],
                                                               rel=1e-12)
        assert np.allclose(r["covariance"], lo["covariance"], rtol=1e-12, atol=0)
        assert r["log_likelihood"] == pytest.approx(lo["log_likelihood"], rel=1e-12)
        assert r["aic"] == pytest.approx(lo["aic"], rel=1e-12)
        assert (r["units"], r["successes"]) == (lo["units"], lo["successes"])
        assert r["goodness_of_fit"] == pytest.approx(lo["goodness_of_fit"])
        assert r["model_choice"]["chosen"] == lo["model_choice"]["chosen"]
        assert r["model_choice"]["exponential"] == pytest.approx(lo["model_choice"]["exponential"])
        assert len(r["fit_by_level"]) == len(lo["fit_by_level"])
        for a, b in zip(r["fit_by_level"], lo["fit_by_level"], strict=True):
            assert a == pytest.approx(b, rel=1e-12)


def test_aggregated_experiments_fit_as_in_process(client: Client) -> None:
    table = example_experiments()
    remote = client.fit_response(table)
    local = _local(table)
    assert len(remote["curves"]) == 8
    _same(remote, local)
    # standard errors are the covariance's diagonal, and they are not zero
    for curve in remote["curves"]:
        diagonal = np.sqrt(np.diag(np.asarray(curve["covariance"])))
        assert np.allclose(diagonal, [curve["standard_errors"][n] for n in curve["parameters"]])
        assert (diagonal > 0).all()


def test_unit_level_rows_fit_as_in_process(client: Client) -> None:
    arms = simulate({("gold", "retention"): {"base": 0.6, "ceiling": 0.8, "k": 0.1}},
                    {"retention": (0.0, 5.0, 10.0, 20.0, 40.0)}, units=400, seed=3)
    repeats = arms["units"].to_numpy()
    success = np.concatenate([np.r_[np.ones(y), np.zeros(n - y)]
                              for n, y in zip(repeats, arms["successes"], strict=True)])
    units = pl.DataFrame({
        "customer_id": [f"c{i}" for i in range(int(repeats.sum()))],
        "segment": np.repeat(arms["segment"].to_numpy(), repeats),
        "kind": np.repeat(arms["kind"].to_numpy(), repeats),
        "spend": np.repeat(arms["spend"].to_numpy(), repeats),
        "success": success.astype(np.int64),
    })
    remote = client.fit_response(units)
    _same(remote, _local(units))
    _same(remote, _local(arms))  # the same arms, one row per unit or aggregated


def test_fitted_curves_drive_an_allocation_over_the_service(client: Client) -> None:
    document = client.fit_response(example_experiments())
    curves = curves_from_document(document)
    assert all(c.source == "fitted" for c in curves)
    plan = Plan(total_budget=2000.0, response_curves=curves)
    result = client.allocate(Portfolio(customers(400, seed=2)), plan)
    sources = {(a["segment"], a["kind"]): a["source"]
               for a in result.summary.to_dict()["assumptions"]["responses"]}
    assert sources[("premium", "retention")] == "fitted"


def test_a_segment_that_cannot_be_fitted_is_named(client: Client) -> None:
    flat = pl.DataFrame({"segment": ["a", "a", "a", "b", "b", "b"],
                         "kind": ["retention"] * 6, "spend": [0.0, 10, 20] * 2,
                         "units": [100] * 6, "successes": [50, 60, 65, 70, 60, 50]})
    with pytest.raises(InvalidInputError) as err:
        client.fit_response(flat)
    (violation,) = err.value.violations
    assert violation.field == "experiments[segment='b', kind=retention]"
    assert "falls with spend" in violation.description


def test_a_bad_row_is_named(client: Client) -> None:
    table = example_experiments().with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.col("units") + 10_000)
        .otherwise(pl.col("successes")).alias("successes"))
    with pytest.raises(InvalidInputError) as err:
        client.fit_response(table)
    (violation,) = err.value.violations
    assert violation.field == "experiments.successes[4]"  # the row, in the field's path
    assert "exceeds units" in violation.description


def test_no_table_is_invalid_argument(server: EquityServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EquityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.FitResponse(service_pb2.FitResponseRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "experiments" in (err.value.details() or "")
