"""FitClv over loopback gRPC: the CDNOW sample valued by the service is the in-process run
(``equity clv``) bit for bit, in both table formats; published figures; per-customer
intervals; errors as INVALID_ARGUMENT with BadRequest naming the field or column and row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import polars as pl
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2, service_pb2_grpc
from engine.clv.run import ClvOptions, run_clv
from engine.errors import InvalidInputError
from engine.service import wire
from engine.service.client import Client

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CAL, HOLDOUT = "1997-09-30", "1998-06-30"


@pytest.fixture(params=["arrow", "columns"])
def client(address: str, request: pytest.FixtureRequest) -> Iterator[Client]:
    with Client(address, timeout=120.0, table_format=request.param) as c:
        yield c


def test_fit_clv_is_the_cli_run_with_the_published_figures(
    client: Client, cdnow: pl.DataFrame
) -> None:
    got = client.fit_clv(cdnow, CAL, holdout_end=HOLDOUT, models=["pareto-nbd"])
    local = run_clv(cdnow, ClvOptions(CAL, holdout_end=HOLDOUT, models=("pareto-nbd",)))
    assert list(got.fits) == ["bgnbd", "gamma_gamma", "pareto_nbd"]
    bg = got.fits["bgnbd"]
    assert bg["parameters"] == {k: local.summary["bgnbd"][k] for k in ("r", "alpha", "a", "b")}
    assert bg["standard_errors"] == local.summary["bgnbd"]["standard_errors"]
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert bg["parameters"][name] == pytest.approx(value, rel=2e-3)
    gg = got.fits["gamma_gamma"]["parameters"]
    assert (round(gg["p"], 2), round(gg["q"], 2), round(gg["gamma"], 2)) == (6.25, 3.74, 15.44)
    pnbd = got.fits["pareto_nbd"]
    assert pnbd["parameters"]["r"] == pytest.approx(0.553, rel=2e-3)
    assert pnbd["parameters"]["s"] == pytest.approx(0.606, rel=2e-3)
    assert pnbd["log_likelihood"] == pytest.approx(-9595.0, abs=0.1)
    assert all(f["converged"] and f["customers"] > 0 for f in got.fits.values())
    # the per-customer table: same ids (CDNOW's are text, "0001"), same values
    assert local.customers is not None
    assert got.customers.columns == local.customers.columns
    assert got.customers["customer_id"].to_list() == local.customers["customer_id"].to_list()
    for name in ("p_alive", "expected_purchases", "clv", "pareto_nbd_p_alive"):
        assert np.array_equal(got.customers[name].to_numpy(), local.customers[name].to_numpy())
    # the summary is equity clv --json's (a Struct: numbers come back as floats)
    holdout = got.summary["holdout"]
    assert round(holdout["predicted"], 1) == 1653.4
    assert holdout["actual"] == 1882
    assert [round(r["predicted_mean"], 3) for r in holdout["by_frequency"]] == [
        0.225, 0.523, 1.044, 1.520, 2.164, 2.654, 3.504, 6.157]
    assert got.summary["cleaning"] == pytest.approx(local.summary["cleaning"])
    assert [r["model"] for r in got.summary["comparison"]] == ["bgnbd", "pareto_nbd"]


def test_intervals_and_prediction_horizon(address: str, cdnow: pl.DataFrame) -> None:
    with Client(address, timeout=120.0) as client:
        got = client.fit_clv(cdnow, CAL, interval_draws=40, interval_level=0.8,
                             prediction_horizon=39, horizon=52, time_unit="week")
    c = got.customers
    for name in ("p_alive", "expected_purchases", "clv"):
        lower, upper = c[f"{name}_lower"].to_numpy(), c[f"{name}_upper"].to_numpy()
        assert np.all(lower <= upper)
        assert np.mean(upper - lower) > 0  # the estimates' uncertainty shows
    assert got.summary["prediction_horizon"]["length"] == 39
    assert got.summary["prediction_horizon"]["source"] == "given"
    assert got.summary["valuation"]["horizon"] == 52


def _violations(err: grpc.RpcError) -> list[str]:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    return [v.field for v in bad.field_violations]


@pytest.fixture(scope="module")
def stub(address: str) -> Iterator[service_pb2_grpc.EquityServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield service_pb2_grpc.EquityServiceStub(channel)


def _request(table: pl.DataFrame, **fields: object) -> service_pb2.FitClvRequest:
    return service_pb2.FitClvRequest(
        transactions=wire.encode_table(table, portfolio_pb2.TABLE_FORMAT_COLUMNS),
        **fields,  # type: ignore[arg-type]
    )


def test_errors_name_the_field_or_the_column_and_row(
    stub: service_pb2_grpc.EquityServiceStub, cdnow: pl.DataFrame
) -> None:
    log = cdnow.select("customer_id", pl.col("date").cast(pl.String), "amount").head(400)
    bad_date = log.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("1997-02-30")).otherwise("date")
        .alias("date")
    )
    cases = [
        (_request(bad_date, calibration_end=CAL), ["transactions.date[3]"]),
        (_request(log.drop("amount"), calibration_end=CAL), ["transactions.amount"]),
        (_request(log), ["calibration_end"]),
        (_request(log, calibration_end="30/09/1997"), ["calibration_end"]),
        (_request(log, calibration_end=CAL, models=["bgnbd", "pareto"]), ["models[1]"]),
        (_request(log, calibration_end=CAL, interval_draws=5), ["interval_draws"]),
        (_request(log, calibration_end=CAL, time_unit="month"), ["time_unit"]),
        (_request(log, calibration_end=CAL, value_model="pnbd"), ["value_model"]),
        (_request(log, calibration_end=CAL, value_model="mbg-nbd", interval_draws=20),
         ["interval_draws"]),
        (_request(log, calibration_end=CAL, response_format=7), ["response_format"]),
        (service_pb2.FitClvRequest(calibration_end=CAL), ["transactions"]),
    ]
    for request, fields in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.FitClv(request, timeout=60)
        assert _violations(err.value) == fields, request.calibration_end


def test_client_raises_invalid_input_naming_the_row(address: str, cdnow: pl.DataFrame) -> None:
    log = cdnow.select("customer_id", "date", "amount").head(300).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("amount"))
        .alias("amount")
    )
    with Client(address, timeout=60.0) as client, pytest.raises(InvalidInputError) as err:
        client.fit_clv(log, CAL)
    assert [(v.field, v.row) for v in err.value.violations] == [("transactions.amount", 7)]


def test_value_model_over_grpc(address: str, cdnow: pl.DataFrame) -> None:
    with Client(address, timeout=120.0) as client:
        got = client.fit_clv(cdnow, CAL, value_model="pareto-nbd")
    local = run_clv(cdnow, ClvOptions(CAL, value_model="pareto-nbd"))
    assert list(got.fits) == ["bgnbd", "gamma_gamma", "pareto_nbd"]
    assert got.summary["clv"]["model"] == "pareto-nbd"
    assert local.customers is not None
    assert np.array_equal(got.customers["clv"].to_numpy(), local.customers["clv"].to_numpy())
    assert np.array_equal(got.customers["p_alive"].to_numpy(),
                          got.customers["pareto_nbd_p_alive"].to_numpy())
