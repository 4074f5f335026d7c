from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.options import OptionSet, from_table


def random_options(
    n: int, levels: int, segments: int, seed: int, kinds: bool = True, pools: int = 0
) -> OptionSet:
    """Random customers with non-concave value curves; optionally a few pools."""
    rng = np.random.default_rng(seed)
    cost = np.sort(rng.choice(np.arange(0, 60, 2.5), size=(n, levels), replace=True), axis=1)
    cost[:, 0] = 0.0
    value = 50 + np.cumsum(rng.normal(2, 8, (n, levels)), axis=1)
    rows = pl.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n), levels),
            "level": cost.ravel(),
            "cost": cost.ravel(),
            "value": value.ravel(),
            "segment": np.repeat(
                np.char.add("s", rng.permutation(np.arange(n) % segments).astype(str)), levels
            ),
            "kind": np.repeat(
                np.where(rng.random(n) < (0.3 if kinds else 0.0), "acquisition", "retention"),
                levels,
            ),
        }
    ).unique(subset=["customer_id", "level"], keep="first", maintain_order=True)
    options = from_table(rows)
    if pools:
        seg = pl.Series([f"s{i % segments}" for i in range(pools)])
        a = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
        size = rng.uniform(100, 1000, pools)
        share = 0.3 * -np.expm1(-0.2 * a)
        val = size[:, None] * (share * rng.uniform(20, 80, pools)[:, None] - a[None, :])
        pool_set = OptionSet.uniform(
            pl.Series([f"pool{i}" for i in range(pools)]),
            np.ones(pools, np.int8),
            seg,
            np.ones(pools, bool),
            size,
            np.tile(a, (pools, 1)),
            size[:, None] * a,
            val,
        )
        options = OptionSet.concat([options, pool_set])
    return options


@pytest.fixture(autouse=True)
def _root_logging_kept() -> Iterator[None]:
    """Commands run in process (``equity demo``, ``serve``) point the root logger at the
    stderr of their moment, which pytest closes after the test: a server thread logging
    later would then write to a closed stream. Their handler (a plain ``StreamHandler``;
    pytest's own are subclasses, attached and removed by pytest around each phase) goes
    after each test, and the root logger's level comes back."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in root.handlers[:]:
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def options_factory():
    return random_options


@pytest.fixture(scope="session")
def cdnow() -> pl.DataFrame:
    """The CDNOW sample's transaction log as read (modules fitting at the RFM level
    override it with their RFM table)."""
    from engine.clv.transactions import read_transactions

    return read_transactions(Path(__file__).parent / "data" / "CDNOW_sample.txt")


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A server with the default configuration on loopback, one per test module (a module
    that needs another configuration defines its own ``address``)."""
    from engine.service.server import EquityServer, ServerConfig

    server = EquityServer(ServerConfig(port=0))
    server.start()
    yield server.address
    server.stop(grace=1.0)
