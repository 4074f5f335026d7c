"""Plan.resource_limits over gRPC: a real server on a loopback port, the request's limits
reach the solver, the summary prices each one, and a bad limit names its field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from service_plugins import test_registry

from engine.errors import InvalidInputError
from engine.pipeline import allocate
from engine.plan import Plan, ResourceLimit, StrategyChoice
from engine.plugins import Registry
from engine.portfolio import Portfolio
from engine.service.client import Client
from engine.service.server import EquityServer, ServerConfig
from engine.synthetic import example

CONFIG = ServerConfig(port=0, workers=4, max_concurrent_solves=1, max_queued_solves=1,
                      max_rows=20_000, grace=2.0)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return test_registry()


@pytest.fixture(scope="module")
def client(registry: Registry) -> Iterator[Client]:
    server = EquityServer(CONFIG, registry)
    server.start()
    with Client(server.address, timeout=60.0) as c:
        yield c
    server.stop(grace=1.0)


def contacts_plan(plan: Plan, limits: tuple[ResourceLimit, ...]) -> Plan:
    cost = StrategyChoice("exponential-response", {"contacts_per_head": 1.0})
    return replace(plan, cost=cost, resource_limits=limits)


def test_allocate_with_resource_limits(client: Client, registry: Registry) -> None:
    customers, prospects, plan = example(2_000)
    limits = (ResourceLimit("contacts", max=600.0),
              ResourceLimit("contacts", segment="premium", kind="retention", max=80.0))
    limited = contacts_plan(plan, limits)
    portfolio = Portfolio(customers, prospects)
    request = client.allocate_request(portfolio, limited)
    assert [(r.resource, r.segment, r.max) for r in request.plan.resource_limits] == [
        ("contacts", "", 600.0), ("contacts", "premium", 80.0)
    ]
    remote = client.allocate(portfolio, limited)
    local = json.loads(allocate(portfolio, limited, registry).to_json())
    prices = remote.summary["shadow_prices"]
    assert {"max:contacts", "max:contacts:premium/retention"} <= prices.keys()
    assert prices["max:contacts"] > 0  # binds
    assert prices == pytest.approx(local["shadow_prices"], rel=1e-6, abs=1e-9)
    assert remote.summary["equity_after"] == pytest.approx(local["equity_after"], rel=1e-9)
    free = client.allocate(portfolio, contacts_plan(plan, ()))
    assert remote.summary["equity_after"] < free.summary["equity_after"]
    assert remote.summary["status"] in ("optimal", "feasible") and remote.summary["gap"] >= 0


def test_unknown_resource_is_invalid_argument(client: Client) -> None:
    customers, prospects, plan = example(500)
    bad = replace(plan, resource_limits=(ResourceLimit("calls", max=10.0),))
    with pytest.raises(InvalidInputError) as err:
        client.allocate(Portfolio(customers, prospects), bad)
    assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert err.value.violations[0].field == "plan.resource_limits[0].resource"
    assert "calls" in err.value.violations[0].description
