"""Access control: TLS with a server certificate, mutual TLS, bearer tokens, loopback-only
plaintext, and plugins only from installed entry points with an allowlist. Certificates
are made in the test (tests/tls_certs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tls_certs import Authority, Pem

from engine import plugins
from engine.cli import build_parser
from engine.cli.service import _free_port, config_from_args
from engine.plan import Plan
from engine.service.client import Client, ClientTls, ServiceError
from engine.service.server import (
    SERVICE_NAME,
    AuthInterceptor,
    EquityServer,
    ServerConfig,
    ServerTls,
    is_loopback,
    server_registry,
)
from engine.synthetic import customers as make_customers

CUSTOMERS = make_customers(200, seed=2)
PLAN = Plan(total_budget=100.0)
TOKEN = "s3cret-token-0123456789abcdef"
BASE = ServerConfig(port=0, grace=0.5, isolate_solves=False)  # solves in-process: quick


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority()


@pytest.fixture(scope="module")
def server_pem(ca: Authority) -> Pem:
    return ca.issue("equity-server", server=True)


@pytest.fixture(scope="module")
def client_pem(ca: Authority) -> Pem:
    return ca.issue("billing-service", server=False)


@pytest.fixture(scope="module")
def rogue() -> Authority:
    return Authority("Rogue CA")


def _works(client: Client) -> None:
    """Every kind of call goes through."""
    assert client.allocate(CUSTOMERS, PLAN).units.height == CUSTOMERS.height
    assert client.stream(CUSTOMERS, PLAN, batch_rows=50).units.height == CUSTOMERS.height
    assert client.score(CUSTOMERS).height == CUSTOMERS.height
    assert client.list_plugins()["strategies"]
    assert client.health() == "SERVING"


def _refused(client: Client, code: grpc.StatusCode) -> None:
    for call in (lambda: client.allocate(CUSTOMERS, PLAN, timeout=3),
                 lambda: client.stream(CUSTOMERS, PLAN, batch_rows=50, timeout=3),
                 lambda: client.score(CUSTOMERS, timeout=3),
                 lambda: client.list_plugins(timeout=3)):
        with pytest.raises(ServiceError) as err:
            call()
        assert err.value.code == code, err.value


# --- TLS ------------------------------------------------------------------------------------


def test_tls_with_a_server_certificate(ca: Authority, server_pem: Pem, rogue: Authority) -> None:
    tls = ServerTls(server_pem.cert, server_pem.key)
    with EquityServer(replace(BASE, tls=tls)) as srv:
        with Client(srv.address, tls=ClientTls(ca.pem), timeout=10) as client:
            _works(client)
        with Client(f"localhost:{srv.port}", tls=ClientTls(ca.pem), timeout=10) as client:
            assert client.health() == "SERVING"  # the certificate names localhost too
        with Client(srv.address, timeout=3) as plaintext:  # no TLS: cannot talk to it
            _refused(plaintext, grpc.StatusCode.UNAVAILABLE)
        with Client(srv.address, tls=ClientTls(rogue.pem), timeout=3) as wrong_ca:
            _refused(wrong_ca, grpc.StatusCode.UNAVAILABLE)  # the server is not trusted


def test_mutual_tls(ca: Authority, server_pem: Pem, client_pem: Pem, rogue: Authority,
                    caplog: pytest.LogCaptureFixture) -> None:
    tls = ServerTls(server_pem.cert, server_pem.key, client_ca=ca.pem)
    caplog.set_level("INFO", logger="engine.service.server.access")
    with EquityServer(replace(BASE, tls=tls)) as srv:
        good = ClientTls(ca.pem, client_pem.cert, client_pem.key)
        with Client(srv.address, tls=good, timeout=10) as client:
            _works(client)
        names = {getattr(r, "fields", {}).get("client") for r in caplog.records}
        assert "billing-service" in names  # the access log names the client certificate
        with Client(srv.address, tls=ClientTls(ca.pem), timeout=3) as no_cert:
            _refused(no_cert, grpc.StatusCode.UNAVAILABLE)  # refused in the handshake
            with pytest.raises(ServiceError):  # health too: TLS comes before any call
                no_cert.health(timeout=3)
        stranger = rogue.issue("mallory", server=False)
        with Client(srv.address, tls=ClientTls(ca.pem, stranger.cert, stranger.key),
                    timeout=3) as mallory:
            _refused(mallory, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(ValueError, match="certificate needs its key"):
        ClientTls(ca.pem, client_pem.cert).credentials()


# --- bearer tokens --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server() -> Iterator[EquityServer]:
    with EquityServer(replace(BASE, tokens=(TOKEN, "second-token-for-rotation"))) as srv:
        yield srv


def test_a_valid_token_is_let_in(token_server: EquityServer) -> None:
    with Client(token_server.address, token=TOKEN, timeout=10) as client:
        _works(client)
    with Client(token_server.address, token="second-token-for-rotation", timeout=10) as client:
        assert client.score(CUSTOMERS).height == CUSTOMERS.height


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", TOKEN[:-1], TOKEN + "x"])
def test_no_or_a_wrong_token_is_unauthenticated(token_server: EquityServer, token: str | None
                                                ) -> None:
    with Client(token_server.address, token=token, timeout=5) as client:
        _refused(client, grpc.StatusCode.UNAUTHENTICATED)
        assert client.health() == "SERVING"  # the documented exception: probes need no token


def test_the_scheme_must_be_bearer(token_server: EquityServer) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        stub = Client(token_server.address, channel=channel).stub
        for header in (f"Basic {TOKEN}", TOKEN, f"Bearer  {TOKEN}", f"bearer {TOKEN}"):
            try:
                stub.ListPlugins(plugins_request(), metadata=[("authorization", header)],
                                 timeout=5)
                outcome = grpc.StatusCode.OK
            except grpc.RpcError as err:
                outcome = err.code()
            expected = grpc.StatusCode.OK if header == f"bearer {TOKEN}" else \
                grpc.StatusCode.UNAUTHENTICATED
            assert outcome == expected, header


def plugins_request() -> Any:
    from engine.api.equity_engine.v1 import service_pb2

    return service_pb2.ListPluginsRequest()


def test_reflection_needs_the_token_and_health_does_not(token_server: EquityServer) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            list(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_check_is_constant_time_and_names_no_token() -> None:
    auth = AuthInterceptor([TOKEN])
    assert auth.authorized([("authorization", f"Bearer {TOKEN}")])
    assert not auth.authorized([("authorization", f"Bearer {TOKEN[:4]}")])
    assert not auth.authorized([])
    assert not auth.authorized(None)
    assert TOKEN not in repr(ServerConfig(tokens=(TOKEN,)))
    with pytest.raises(ValueError, match="at least 16"):
        ServerConfig(tokens=("short",))
    with pytest.raises(ValueError, match="without spaces"):
        ServerConfig(tokens=("a token with spaces in it",))


def test_tls_and_token_together(ca: Authority, server_pem: Pem, client_pem: Pem) -> None:
    tls = ServerTls(server_pem.cert, server_pem.key, client_ca=ca.pem)
    with EquityServer(replace(BASE, tls=tls, tokens=(TOKEN,))) as srv:
        creds = ClientTls(ca.pem, client_pem.cert, client_pem.key)
        with Client(srv.address, tls=creds, token=TOKEN, timeout=10) as client:
            _works(client)
        with Client(srv.address, tls=creds, timeout=5) as no_token:
            _refused(no_token, grpc.StatusCode.UNAUTHENTICATED)


# --- where the server listens ---------------------------------------------------------------


def test_plaintext_only_on_loopback(server_pem: Pem) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "example.com", ""):
        assert not is_loopback(host), host
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0 without TLS"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", insecure=True).insecure  # said explicitly
    assert ServerConfig(host="0.0.0.0", tls=ServerTls(server_pem.cert, server_pem.key)).tls


def _serve_config(*flags: str) -> ServerConfig:
    return config_from_args(build_parser().parse_args(["serve", *flags]))


def test_serve_flags(tmp_path: Path, ca: Authority, server_pem: Pem,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="without TLS"):
        _serve_config("--host", "0.0.0.0")
    assert _serve_config("--host", "0.0.0.0", "--insecure").insecure
    cert, key, client_ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.write_bytes(server_pem.cert)
    key.write_bytes(server_pem.key)
    client_ca.write_bytes(ca.pem)
    config = _serve_config("--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key),
                           "--tls-client-ca", str(client_ca))
    assert config.tls == ServerTls(server_pem.cert, server_pem.key, ca.pem)
    assert config.tls is not None and config.tls.mutual
    with pytest.raises(SystemExit, match="go together"):
        _serve_config("--tls-cert", str(cert))
    with pytest.raises(SystemExit, match="needs --tls-cert"):
        _serve_config("--tls-client-ca", str(client_ca))
    with pytest.raises(SystemExit, match="cannot read"):
        _serve_config("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# rotated monthly\n{TOKEN}\n\nsecond-token-for-rotation\n")
    monkeypatch.setenv("EQUITY_TEST_TOKEN", "token-from-the-environment")
    config = _serve_config("--token-file", str(tokens), "--token-env", "EQUITY_TEST_TOKEN")
    assert config.tokens == (TOKEN, "second-token-for-rotation", "token-from-the-environment")
    with pytest.raises(SystemExit, match="unset or empty"):
        _serve_config("--token-env", "EQUITY_NO_SUCH_VARIABLE")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(SystemExit, match="holds no token"):
        _serve_config("--token-file", str(tmp_path / "empty"))
    monkeypatch.setenv("EQUITY_TEST_TOKEN", "short")
    with pytest.raises(SystemExit, match="at least 16"):
        _serve_config("--token-env", "EQUITY_TEST_TOKEN")


def test_equity_serve_with_mutual_tls_and_a_token_file(
    tmp_path: Path, ca: Authority, server_pem: Pem, client_pem: Pem
) -> None:
    """The real command: certificates and token from files, then calls with and without."""
    for name, data in (("cert.pem", server_pem.cert), ("key.pem", server_pem.key),
                       ("ca.pem", ca.pem), ("tokens", TOKEN.encode())):
        (tmp_path / name).write_bytes(data)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port),
         "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
         "--tls-client-ca", str(tmp_path / "ca.pem"), "--token-file", str(tmp_path / "tokens"),
         "--grace", "1"],
        stderr=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        creds = ClientTls(ca.pem, client_pem.cert, client_pem.key)
        with Client(f"127.0.0.1:{port}", tls=creds, token=TOKEN, timeout=20) as client:
            client.wait_ready(20)
            assert client.score(CUSTOMERS).height == CUSTOMERS.height
        with Client(f"127.0.0.1:{port}", tls=creds, timeout=5) as anonymous:
            with pytest.raises(ServiceError) as err:
                anonymous.score(CUSTOMERS)
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert anonymous.health() == "SERVING"
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    start = next(r for r in records if r["message"].startswith("serving on"))
    assert start["transport"] == "mutual-tls" and start["tokens"] == 1
    assert TOKEN not in log
    assert any(r.get("status") == "UNAUTHENTICATED" for r in records)


# --- plugins --------------------------------------------------------------------------------


@pytest.fixture
def installed_plugin(monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed third-party plugin (an entry point in group ``equity_engine``)."""
    ep = metadata.EntryPoint(name="acme-strategies", value="service_plugins:TEST_PLUGINS",
                             group=plugins.ENTRY_POINT_GROUP)

    def entry_points(**selection: Any) -> Any:
        return [ep] if selection.get("group") == plugins.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    return ep.name


def _allocators(config: ServerConfig) -> set[str]:
    return set(server_registry(config).names("allocation"))


def test_plugins_allowlist(installed_plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "spin" in _allocators(replace(BASE, plugins_allow=(installed_plugin,)))
    assert "spin" not in _allocators(replace(BASE, plugins_allow=()))
    assert "spin" not in _allocators(replace(BASE, plugins_allow=("someone-else",)))
    assert {"lp", "greedy"} <= _allocators(replace(BASE, plugins_allow=()))  # built-ins stay
    assert _serve_config("--plugins-allow", "").plugins_allow == ()
    assert _serve_config("--plugins-allow", f"{installed_plugin}, x").plugins_allow == (
        installed_plugin, "x")
    monkeypatch.setenv(plugins.ALLOW_ENV, installed_plugin)
    assert _serve_config().plugins_allow == (installed_plugin,)  # the variable as default
    config = _serve_config("--plugins-allow", "")
    with EquityServer(replace(config, port=0)) as srv, Client(srv.address) as client:
        listed = {s["name"] for s in client.list_plugins()["strategies"]}
    assert "spin" not in listed and "lp" in listed


def test_unlisted_plugins_are_never_imported(installed_plugin: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    real_load = metadata.EntryPoint.load

    def spy(self: metadata.EntryPoint) -> Any:
        loaded.append(self.name)
        return real_load(self)

    monkeypatch.setattr(metadata.EntryPoint, "load", spy)
    server_registry(replace(BASE, plugins_allow=()))
    assert loaded == []
    server_registry(replace(BASE, plugins_allow=(installed_plugin,)))
    assert loaded == [installed_plugin]


def test_a_plugin_that_fails_to_load_leaves_the_server_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ep = metadata.EntryPoint(name="broken", value="no_such_module_here:plugin",
                             group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda **s: [ep] if s.get("group") == plugins.ENTRY_POINT_GROUP else [])
    with EquityServer(replace(BASE, plugins_allow=("broken",))) as srv, \
            Client(srv.address, timeout=10) as client:
        failures = client.list_plugins()["failures"]
        assert [f["plugin"] for f in failures] == ["broken"]
        assert "no_such_module_here" in failures[0]["problem"]
        assert client.allocate(CUSTOMERS, PLAN).summary["status"] == "optimal"
