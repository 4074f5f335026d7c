"""The gRPC server: ``equity_engine.v1.EquityService`` plus health checking and reflection.

``EquityServer`` builds one grpc server with a thread pool (``ServerConfig``), the
interceptors (``AuthInterceptor`` when tokens are configured, then ``ServiceInterceptor``),
the servicer (``EquityServicer``), health and reflection; ``start`` binds (TLS with
``ServerTls``, mutual TLS with ``client_ca``; plaintext on loopback only unless
``insecure``), starts the solve workers and marks the service SERVING; ``stop`` turns health
NOT_SERVING first and gives calls in flight a grace period. ``serve`` adds SIGTERM/SIGINT
handling.

The parts, each in its own module of ``engine.service``: ``config`` (ServerConfig,
ServerTls), ``logs`` (JSON logs, the access log), ``status`` (errors as gRPC statuses),
``wire`` (messages), ``admission`` (solve slots and queue), ``solve_pool`` (worker
processes), ``servicer`` (the five RPCs), ``interceptors`` (auth, statuses, access log).
The names tests and callers use are re-exported here.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from engine.api.equity_engine.v1 import service_pb2_grpc
from engine.plugins import Registry
from engine.service.admission import SolveGate, stopper
from engine.service.cluster import ClusterSolver
from engine.service.config import (
    SERVICE_NAME,
    MiB,
    ServerConfig,
    ServerTls,
    is_loopback,
    server_registry,
)
from engine.service.interceptors import AuthInterceptor, ServiceInterceptor
from engine.service.logs import JsonFormatter, configure_logging, json_lines_configured, log
from engine.service.metrics import Metrics
from engine.service.reflection import enable_reflection
from engine.service.servicer import EquityServicer
from engine.service.solve_pool import SolvePool, WorkerSpec, limit_malloc_arenas


class EquityServer:
    """The service, health and reflection on one grpc server with a thread pool."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        registry: Registry | None = None,
        registry_factory: Callable[[], Registry] | None = None,
    ) -> None:
        """``registry``: strategies to use (solves then stay in this process, since a
        registry cannot be sent to a worker); ``registry_factory``: a picklable function
        that builds one, in this process and in each solve worker. Neither: built-ins plus
        the installed entry-point plugins ``config.plugins_allow`` admits."""
        self.config = config or ServerConfig()
        limit_malloc_arenas()  # before the RPC threads allocate: keeps RSS flat under load
        self._factory = registry_factory
        if registry_factory is not None:
            self.registry = registry_factory()
        else:
            self.registry = registry or server_registry(self.config)
        self._isolate = self.config.isolate_solves and (registry is None or
                                                        registry_factory is not None)
        self.pool: SolvePool | None = None
        self.cluster: ClusterSolver | None = None  # with config.cluster
        self.gate = SolveGate(self.config)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.interceptor = ServiceInterceptor(trim_rows=self.config.small_solve_rows,
                                              max_details=self.config.max_error_details)
        interceptors: list[grpc.ServerInterceptor] = [self.interceptor]
        if self.config.tokens:
            interceptors.insert(0, AuthInterceptor(self.config.tokens))
        self._pool = futures.ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="equity-rpc"
        )
        self._server = grpc.server(
            self._pool, interceptors=interceptors, options=self.config.channel_options(),
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        self.servicer = EquityServicer(self.registry, self.config, self.gate)
        service_pb2_grpc.add_EquityServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), self._server)  # v1, v1alpha
        self.metrics: Metrics | None = None
        self.metrics_port: int | None = None
        if self.config.metrics_port is not None:
            gate, inflight = self.gate, self.interceptor.inflight
            self.metrics = Metrics({
                "equity_calls_in_flight": ("EquityService calls in flight",
                                           lambda: inflight.count),
                "equity_solves_running": ("solves running", lambda: gate.running),
                "equity_solves_queued": ("large solves waiting for a slot",
                                         lambda: gate.waiting),
                "equity_streams_receiving": ("AllocateStream calls uploading",
                                             lambda: gate.receiving),
            })
            self.interceptor.metrics = self.metrics
            self.servicer.metrics = self.metrics
        self.port: int | None = None
        self._stopped = threading.Event()

    def _bind(self) -> int:
        """Listen on the configured address: TLS when configured, else plaintext (which
        ``ServerConfig`` allows on loopback only, unless ``insecure``)."""
        if self.config.tls is not None:
            return self._server.add_secure_port(self.config.target, self.config.tls.credentials())
        return self._server.add_insecure_port(self.config.target)

    def start(self) -> int:
        """Bind, start serving, mark the service SERVING; returns the port bound."""
        try:
            port = self._bind()
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.config.target}: {exc}") from None
        if not port:
            raise OSError(f"cannot listen on {self.config.target}")
        self.port = port
        if self._isolate:
            self.pool = SolvePool(self.config.max_concurrent_solves, WorkerSpec(
                self.config.plugins_allow, self._factory, logging.getLogger().level,
                json_lines_configured(), nice=self.config.worker_nice,
                memory_mib=self.config.worker_memory_mib))
            self.servicer.pool = self.pool
        if self.config.cluster is not None:
            self.cluster = ClusterSolver(self.config)
            self.cluster.start()
            self.servicer.cluster = self.cluster
        self._server.start()
        if self.metrics is not None and self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.config.metrics_port,
                                                   self.config.metrics_host)
            log.info("metrics on http://%s:%d/metrics", self.config.metrics_host,
                     self.metrics_port)
        if self.config.unauthenticated_network:
            log.warning(
                "TLS on %s without client authentication: anyone who can reach port %d may "
                "call the service; give --tls-client-ca (mutual TLS) or --token-file",
                self.config.host, port, extra={"fields": {"host": self.config.host,
                                                          "port": port,
                                                          "client_auth": "none"}})
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        tls = self.config.tls
        log.info("serving on %s:%d", self.config.host, port, extra={"fields": {
            "host": self.config.host, "port": port, "workers": self.config.workers,
            "max_concurrent_solves": self.config.max_concurrent_solves,
            "max_message_bytes": self.config.max_message_bytes,
            "max_solve_seconds": self.config.max_solve_seconds,
            "transport": "plaintext" if tls is None else "mutual-tls" if tls.mutual else "tls",
            "solve_workers": 0 if self.pool is None else self.pool.size,
            "tokens": len(self.config.tokens),
            "strategies": len(self.registry.strategies),
            "plugin_failures": len(self.registry.failures),
        }})
        return port

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return replace(self.config, port=self.port).target

    @property
    def active_solves(self) -> int:
        """Solves running now; drops to 0 once cancelled solves have stopped."""
        return self.gate.running

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: health NOT_SERVING, wait ``drain``, refuse new calls, let calls
        in flight finish for up to ``grace`` seconds, then cancel what is left (solves see
        ``should_stop`` and stop). Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        log.info("shutting down", extra={"fields": {"grace": grace, "in_flight":
                                                    self.interceptor.inflight.count}})
        if self.config.drain > 0:
            time.sleep(self.config.drain)  # let load balancers see NOT_SERVING
        done = self._server.stop(grace)
        # Health watches never end on their own: once the service's calls are done, stop now.
        self.interceptor.inflight.wait_idle(grace)
        self._server.stop(0)
        done.wait()
        self.gate.wait_idle(5.0)
        if self.pool is not None:
            self.pool.close()
        if self.cluster is not None:
            self.cluster.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped")

    def cancel_all(self) -> None:
        """Cancel every call now (their solves stop); for a second shutdown signal."""
        self._server.stop(0)

    def wait(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> EquityServer:
        if self.port is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    config: ServerConfig,
    registry: Registry | None = None,
    registry_factory: Callable[[], Registry] | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully (``EquityServer.stop``)."""
    server = EquityServer(config, registry, registry_factory)
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():  # a second signal: do not wait for the grace period
            log.warning("received %s again: cancelling calls in flight", name)
            server.cancel_all()
            return
        log.info("received %s", name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop.wait()
        server.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


__all__ = [
    "SERVICE_NAME",
    "AuthInterceptor",
    "EquityServer",
    "EquityServicer",
    "JsonFormatter",
    "MiB",
    "ServerConfig",
    "ServerTls",
    "ServiceInterceptor",
    "SolveGate",
    "configure_logging",
    "is_loopback",
    "serve",
    "server_registry",
    "stopper",
]
