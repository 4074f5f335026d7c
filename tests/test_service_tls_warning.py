"""TLS on an address others can reach, without client certificates or tokens, starts with
a warning that names the fix; with either, or on loopback, it starts quietly."""

from __future__ import annotations

import logging

import pytest
from tls_certs import Authority

from engine.service.server import EquityServer, ServerConfig, ServerTls


@pytest.fixture(scope="module")
def tls() -> ServerTls:
    ca = Authority()
    pem = ca.issue("equity-server", server=True)
    return ServerTls(pem.cert, pem.key)


def _warnings(config: ServerConfig, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.service.server"):
        server = EquityServer(config)
        server.start()
        server.stop(grace=0.1)
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_tls_without_client_auth_on_the_network_warns(
        tls: ServerTls, caplog: pytest.LogCaptureFixture) -> None:
    base = ServerConfig(host="0.0.0.0", port=0, tls=tls, isolate_solves=False, grace=0.1)
    assert base.unauthenticated_network
    [message] = [m for m in _warnings(base, caplog) if "client authentication" in m]
    assert "--tls-client-ca" in message and "--token-file" in message
    tokens = ServerConfig(host="0.0.0.0", port=0, tls=tls, tokens=("a-token-of-16-chars",),
                          isolate_solves=False, grace=0.1)
    assert not tokens.unauthenticated_network
    assert not [m for m in _warnings(tokens, caplog) if "client authentication" in m]
    mutual = ServerTls(tls.certificate_chain, tls.private_key, Authority().pem)
    assert not ServerConfig(host="0.0.0.0", tls=mutual).unauthenticated_network
    assert not ServerConfig(host="127.0.0.1", tls=tls).unauthenticated_network
