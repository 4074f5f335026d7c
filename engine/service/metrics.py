"""Metrics for operators, on an opt-in Prometheus endpoint (``equity serve --metrics-port``;
needs the ``metrics`` extra, prometheus-client).

- ``equity_requests_total{method, code}``: calls of ``EquityService`` by outcome;
- ``equity_request_seconds{method}``: their latency, a histogram (from the first byte to
  the status);
- ``equity_solve_seconds{where}``: solve durations, ``where`` = ``server`` (a small solve in
  the server's process) or ``worker``;
- ``equity_calls_in_flight``, ``equity_solves_running``, ``equity_solves_queued`` (large
  solves waiting for a slot) and ``equity_streams_receiving``: gauges read when scraped.

Each server has a registry of its own (no process-wide state); without ``--metrics-port``
nothing is created and the hooks cost one ``None`` check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# from 1 ms (a health check) to 10 minutes (the largest solves)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The server's metrics and the HTTP endpoint that serves them."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        try:
            import prometheus_client as prom
        except ImportError:  # pragma: no cover (the extra is part of dev)
            raise RuntimeError("metrics need prometheus-client: pip install "
                               "'equity-engine[metrics]'") from None
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("equity_requests", "EquityService calls by outcome",
                                     ("method", "code"), registry=self.registry)
        self.latency = prom.Histogram("equity_request_seconds", "EquityService call latency",
                                      ("method",), buckets=BUCKETS, registry=self.registry)
        self.solves = prom.Histogram("equity_solve_seconds", "solve durations",
                                     ("where",), buckets=BUCKETS, registry=self.registry)
        for name, (doc, read) in gauges.items():
            prom.Gauge(name, doc, registry=self.registry).set_function(read)
        self._http: Any = None

    def call(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)

    def solve(self, where: str, seconds: float) -> None:
        self.solves.labels(where).observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP; returns the port (``0`` picks a free one)."""
        server, _thread = self._prom.start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_address[1])

    def text(self) -> str:
        return str(self._prom.generate_latest(self.registry).decode())

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


__all__ = ["BUCKETS", "Metrics"]
