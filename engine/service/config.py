"""How the server is configured: address, threads, limits, TLS, tokens and plugins.

- ``ServerConfig``: one frozen dataclass, checked when built; each field is an ``equity
  serve`` flag (see docs/api.md, "Limits and concurrency").
- ``ServerTls``: the server's certificate and key, and the client CA for mutual TLS.
- ``server_registry``: the strategies a server (and each of its solve workers) loads.

Nothing here loads grpc, so the command line can build its parser from these defaults.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.api.equity_engine.v1 import service_pb2
from engine.limits import Limits
from engine.plugins import DISABLE_ENV, Registry, _env_names, build_registry, default_registry

if TYPE_CHECKING:
    import grpc

SERVICE_NAME: str = service_pb2.DESCRIPTOR.services_by_name["EquityService"].full_name
MiB = 1 << 20
MIN_TOKEN_LENGTH = 16
SERVER_LIMITS = Limits(solver_seconds=60.0)


def _read(value: bytes | str | Path) -> bytes:
    """PEM given as bytes, or a path to a file holding it."""
    return value if isinstance(value, bytes) else Path(value).read_bytes()


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key (PEM); with ``client_ca`` also mutual TLS:
    every client must present a certificate signed by that CA (checked in the handshake,
    so a client without one cannot connect at all, health checks included)."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls, cert: str | Path | bytes, key: str | Path | bytes,
        client_ca: str | Path | bytes | None = None,
    ) -> ServerTls:
        return cls(_read(cert), _read(key), None if client_ca is None else _read(client_ca))

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        import grpc  # not at the top: ``equity``'s parser reads this module without the service

        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.mutual,
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); not for 0.0.0.0."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: could resolve anywhere


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens, how many threads it uses, the limits it enforces and who
    may call it."""

    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 50051  # 0 = any free port (``EquityServer.start`` returns it)
    workers: int = 16  # RPC threads; > max_concurrent_solves + max_queued_solves
    max_concurrent_solves: int = 2  # large solves running at once
    max_queued_solves: int = 8  # large solves waiting for a slot; more: RESOURCE_EXHAUSTED
    queue_timeout: float = 60.0  # seconds a solve may wait for a slot; then RESOURCE_EXHAUSTED
    small_solve_rows: int = 10_000  # solves of at most this many rows never wait for a slot
    small_solve_cells: int = 64_000  # ...and at most this many rows x spend levels
    small_segment_limits: int = 100  # ...and at most this many segment limits
    # a small solve still running in the server's process after this many seconds (its
    # solver calls bounded alike) is dropped and solved again as a large one: in a worker,
    # with a slot (a few hundred customers whose options nearly tie can keep an exact
    # search busy for minutes); None: small solves stay in the server's process
    small_solve_seconds: float | None = 2.0
    max_message_bytes: int = 64 * MiB  # per message, both directions
    max_rows: int = 10_000_000  # rows per table per request (streams: across batches)
    max_decoded_bytes: int = 256 * MiB  # one Arrow table once decompressed, checked before
    max_receiving_streams: int = 8  # AllocateStream calls uploading at once; more: refused
    stream_idle_timeout: float = 30.0  # seconds a stream may wait between two messages
    max_stream_messages: int = 10_000  # request messages of one stream (header included)
    max_stream_bytes: int = 1024 * MiB  # request bytes of one stream
    max_stream_seconds: float = 600.0  # from a stream's first byte to its last request message
    max_error_details: int = 50  # field violations in one status; the rest are counted
    max_solve_seconds: float | None = 300.0  # wall time of one solve; then RESOURCE_EXHAUSTED
    max_concurrent_rpcs: int | None = 1024  # calls in flight; more: gRPC's RESOURCE_EXHAUSTED
    max_metrics: int = 16  # metrics per Score call
    isolate_solves: bool = True  # large solves in worker processes (engine.service.solve_pool)
    # address space a solve worker may add to what it has once started (RLIMIT_AS); a solve
    # needing more is RESOURCE_EXHAUSTED naming worker_memory_mib; None: no cap
    worker_memory_mib: int | None = None
    # niceness solve workers add to the server's (0: none), so health checks, small calls
    # and streaming I/O in the server's process get the cores first while large ones solve
    worker_nice: int = 15
    grace: float = 10.0  # seconds requests in flight may take to finish on shutdown
    drain: float = 0.0  # seconds health says NOT_SERVING before new requests are refused
    limits: Limits = SERVER_LIMITS  # per allocation: units, levels, segment limits, solver time
    tls: ServerTls | None = None  # None: plaintext (loopback only unless ``insecure``)
    tokens: tuple[str, ...] = field(default=(), repr=False)  # bearer tokens; () = none needed
    insecure: bool = False  # allow plaintext on a non-loopback address
    plugins_allow: tuple[str, ...] | None = None  # entry-point plugins to load; None = all
    metrics_port: int | None = None  # Prometheus /metrics over HTTP; None = off, 0 = any port
    metrics_host: str = "127.0.0.1"  # where /metrics listens
    # large allocations on a Dask cluster (engine.service.cluster): local:N or tcp://HOST:PORT
    cluster: str | None = None
    cluster_dir: str | None = None  # the requests' datasets; None = the system's temp dir
    cluster_partition_rows: int = 1_000_000  # rows per partition at most (>= one per worker)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in [0, 65535], got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            problems.append(f"metrics_port must be in [0, 65535], got {self.metrics_port}")
        if self.tls is None and not self.insecure and not is_loopback(self.host):
            problems.append(
                f"refusing to listen on {self.host} without TLS: anyone on the network could "
                "call the service and read its data; give a certificate (--tls-cert, "
                "--tls-key) or say --insecure"
            )
        for token in self.tokens:
            if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() \
                    or any(c.isspace() for c in token):
                problems.append(f"tokens must be at least {MIN_TOKEN_LENGTH} printable ASCII "
                                "characters without spaces")
                break
        if self.small_solve_seconds is not None and not self.small_solve_seconds > 0:
            problems.append(f"small_solve_seconds must be > 0, got {self.small_solve_seconds}")
        if self.max_solve_seconds is not None and not self.max_solve_seconds > 0:
            problems.append(f"max_solve_seconds must be > 0, got {self.max_solve_seconds}")
        if self.max_concurrent_rpcs is not None and self.max_concurrent_rpcs < self.workers:
            problems.append(f"max_concurrent_rpcs ({self.max_concurrent_rpcs}) must be at "
                            f"least workers ({self.workers})")
        if self.cluster is not None:
            from engine.errors import InvalidInputError
            from engine.optimize.cluster import check_spec

            try:
                check_spec(self.cluster, "cluster")
            except InvalidInputError as exc:
                problems.append(str(exc))
        if self.cluster_partition_rows < 1:
            problems.append(f"cluster_partition_rows must be >= 1, got "
                            f"{self.cluster_partition_rows}")
        if self.worker_memory_mib is not None and self.worker_memory_mib < 64:
            problems.append(f"worker_memory_mib must be >= 64, got {self.worker_memory_mib}")
        if not 0 <= self.worker_nice <= 19:
            problems.append(f"worker_nice must be in [0, 19], got {self.worker_nice}")
        if self.max_metrics < 1:
            problems.append(f"max_metrics must be >= 1, got {self.max_metrics}")
        for name in ("max_concurrent_solves", "max_message_bytes", "max_rows",
                     "max_decoded_bytes", "max_stream_messages", "max_receiving_streams",
                     "max_stream_bytes", "max_error_details"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_queued_solves", "small_solve_rows", "small_solve_cells",
                     "small_segment_limits"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("stream_idle_timeout", "max_stream_seconds"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        for name in ("queue_timeout", "grace", "drain"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        spare = self.workers - self.max_concurrent_solves - self.max_queued_solves
        if spare < 2:
            problems.append(
                f"workers ({self.workers}) must exceed max_concurrent_solves + "
                f"max_queued_solves ({self.max_concurrent_solves + self.max_queued_solves}) "
                "by at least 2, so health checks and small requests always find a thread"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def unauthenticated_network(self) -> bool:
        """TLS on an address others can reach, with neither client certificates nor
        tokens: the traffic is private, but anyone who can connect may call the service
        (``EquityServer.start`` logs a warning; add --tls-client-ca or --token-file)."""
        return (self.tls is not None and not self.tls.mutual and not self.tokens
                and not is_loopback(self.host))

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    def channel_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


def server_registry(config: ServerConfig) -> Registry:
    """Built-ins plus installed entry-point plugins: all of them, or only those named by
    ``config.plugins_allow`` (``EQUITY_PLUGINS_DISABLE`` still applies). Plugins come
    from installed distributions only; nothing is loaded from a path or a request."""
    if config.plugins_allow is None:
        return default_registry()
    return build_registry(allow=config.plugins_allow, disable=_env_names(DISABLE_ENV) or ())


__all__ = [
    "MIN_TOKEN_LENGTH",
    "SERVER_LIMITS",
    "SERVICE_NAME",
    "MiB",
    "ServerConfig",
    "ServerTls",
    "is_loopback",
    "server_registry",
]
