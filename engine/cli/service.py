"""``equity serve`` (run the gRPC service) and ``equity demo`` (a round trip through it)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.service.config import MiB, ServerConfig, ServerTls

_DEFAULTS = ServerConfig()


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the gRPC service (equity_engine.v1.EquityService, health, reflection)",
        description="Serve until SIGTERM/SIGINT; then health turns NOT_SERVING, new calls are "
        "refused and calls in flight get --grace seconds to finish. One JSON log line per "
        "request on stderr.",
    )
    p.add_argument("--host", default=_DEFAULTS.host,
                   help="address to bind (default 127.0.0.1: loopback only; 0.0.0.0 for all, "
                   "which needs --tls-cert/--tls-key or --insecure)")
    p.add_argument("--port", type=int, default=_DEFAULTS.port, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=None,
                   help="RPC threads (default: solves + queue + 6)")
    p.add_argument("--max-concurrent-solves", type=int, default=_DEFAULTS.max_concurrent_solves,
                   help="solves running at once")
    p.add_argument("--max-queued-solves", type=int, default=_DEFAULTS.max_queued_solves,
                   help="solves waiting for a slot; more are refused (RESOURCE_EXHAUSTED)")
    p.add_argument("--queue-timeout", type=float, default=_DEFAULTS.queue_timeout,
                   help="seconds a solve may wait for a slot")
    p.add_argument("--small-solve-rows", type=int, default=_DEFAULTS.small_solve_rows,
                   help="solves of at most this many rows never wait for a slot")
    p.add_argument("--small-solve-cells", type=int, default=_DEFAULTS.small_solve_cells,
                   help="...and at most this many rows x spend levels")
    p.add_argument("--small-segment-limits", type=int, default=_DEFAULTS.small_segment_limits,
                   help="...and at most this many segment limits")
    p.add_argument("--small-solve-seconds", type=float, default=_DEFAULTS.small_solve_seconds,
                   help="a small solve still running after this many seconds is solved "
                   "again in a worker, as a large one (0: never)")
    p.add_argument("--max-message-mb", type=float, default=_DEFAULTS.max_message_bytes / MiB,
                   help="largest message either way, MiB")
    p.add_argument("--max-rows", type=int, default=_DEFAULTS.max_rows,
                   help="rows per table per request")
    p.add_argument("--max-units", type=int, default=_DEFAULTS.limits.max_units,
                   help="customers + pools per allocation")
    p.add_argument("--max-levels", type=int, default=_DEFAULTS.limits.max_levels_per_unit,
                   help="spend levels per customer")
    p.add_argument("--solver-seconds", type=float, default=_DEFAULTS.limits.solver_seconds,
                   help="time limit per solver call")
    p.add_argument("--max-solve-seconds", type=float, default=_DEFAULTS.max_solve_seconds,
                   help="wall time of one solve; then RESOURCE_EXHAUSTED (0: no limit)")
    p.add_argument("--max-concurrent-rpcs", type=int, default=_DEFAULTS.max_concurrent_rpcs,
                   help="calls in flight; more are refused by gRPC (RESOURCE_EXHAUSTED)")
    p.add_argument("--max-metrics", type=int, default=_DEFAULTS.max_metrics,
                   help="metrics per Score call")
    p.add_argument("--max-decoded-mb", type=float, default=_DEFAULTS.max_decoded_bytes / MiB,
                   help="largest Arrow table once decompressed, MiB (checked before)")
    p.add_argument("--stream-idle-timeout", type=float, default=_DEFAULTS.stream_idle_timeout,
                   help="seconds a stream may wait between two messages")
    p.add_argument("--max-stream-messages", type=int, default=_DEFAULTS.max_stream_messages,
                   help="request messages per stream")
    p.add_argument("--max-stream-mb", type=float, default=_DEFAULTS.max_stream_bytes / MiB,
                   help="request bytes per stream, MiB")
    p.add_argument("--max-stream-seconds", type=float, default=_DEFAULTS.max_stream_seconds,
                   help="seconds a stream may take to send its requests")
    p.add_argument("--max-receiving-streams", type=int,
                   default=_DEFAULTS.max_receiving_streams, help="streams uploading at once")
    p.add_argument("--max-error-details", type=int, default=_DEFAULTS.max_error_details,
                   help="field violations listed in one error (the rest are counted)")
    p.add_argument("--worker-memory-mib", type=int, default=None,
                   help="memory (address space, MiB) a solve worker may add once started; a "
                   "solve needing more is refused with RESOURCE_EXHAUSTED (default: no cap)")
    p.add_argument("--worker-nice", type=int, default=_DEFAULTS.worker_nice, metavar="N",
                   help="niceness solve workers add to the server's, 0 to 19 (0: the same "
                   "priority), so health checks and small calls get the cores first")
    p.add_argument("--in-process-solves", action="store_true",
                   help="solve large requests in the server's own process instead of worker "
                   "processes (which keep them from holding up health checks and small calls)")
    sec = p.add_argument_group("security")
    sec.add_argument("--tls-cert",
                     help="server certificate chain (PEM file): serve TLS (default: plaintext)")
    sec.add_argument("--tls-key", help="private key of --tls-cert (PEM file) (default: none)")
    sec.add_argument("--tls-client-ca", help="CA (PEM file) that signs client certificates: "
                     "mutual TLS, clients without a valid certificate cannot connect "
                     "(default: none, no client certificates)")
    sec.add_argument("--token-file", help="file with the accepted bearer tokens, one per line "
                     "(several allow rotation); every call but health checks needs one "
                     "(default: none, no token needed unless --token-env)")
    sec.add_argument("--token-env", metavar="VAR",
                     help="environment variable holding an accepted bearer token (default: none)")
    sec.add_argument("--insecure", action="store_true",
                     help="allow plaintext on a non-loopback --host (refused otherwise)")
    sec.add_argument("--plugins-allow", metavar="NAMES",
                     help="comma-separated entry-point plugins to load (built-ins always "
                     "load; empty: none); default: all installed, or $EQUITY_PLUGINS_ALLOW")
    p.add_argument("--grace", type=float, default=_DEFAULTS.grace,
                   help="seconds calls in flight may take to finish on shutdown")
    p.add_argument("--drain", type=float, default=_DEFAULTS.drain,
                   help="seconds health reports NOT_SERVING before new calls are refused")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port, /metrics (default: off; "
                   "needs the 'metrics' extra)")
    p.add_argument("--metrics-host", default=_DEFAULTS.metrics_host,
                   help="address of the metrics endpoint")
    clu = p.add_argument_group("cluster (docs/scaling.md)")
    clu.add_argument("--cluster", metavar="SPEC",
                     help="run large Allocate and AllocateStream solves on a Dask cluster: "
                     "local:N (N worker processes on this machine) or tcp://HOST:PORT (a "
                     "running scheduler whose workers see --cluster-dir) (default: none)")
    clu.add_argument("--cluster-dir", metavar="DIR",
                     help="where each request's tables are written for the workers (with "
                     "tcp://: a shared filesystem, same path on every worker) (default: the "
                     "system's temporary directory)")
    clu.add_argument("--cluster-partition-rows", type=int,
                     default=_DEFAULTS.cluster_partition_rows,
                     help="rows per partition at most (at least one partition per worker)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="log lines on stderr")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser(
        "demo",
        help="start a server on a free port, allocate the example portfolio through the "
        "gRPC client, print the plan summary, shut down",
    )
    p.add_argument("--size", type=int, default=5_000, help="customers in the example")
    p.add_argument("--stream", action="store_true", help="use AllocateStream instead of Allocate")
    p.add_argument("--subprocess", action="store_true",
                   help="run the server as a separate `equity serve` process")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verbose", action="store_true", help="show the server's log lines")
    p.set_defaults(func=cmd_demo)


def _tls(args: argparse.Namespace) -> ServerTls | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    try:
        return ServerTls.from_files(args.tls_cert, args.tls_key, args.tls_client_ca)
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename}: {exc.strerror}") from None


def _tokens(args: argparse.Namespace) -> tuple[str, ...]:
    tokens: list[str] = []
    if args.token_file is not None:
        try:
            text = Path(args.token_file).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {args.token_file}: {exc.strerror}") from None
        lines = [line.strip() for line in text.splitlines()]
        found = [line for line in lines if line and not line.startswith("#")]
        if not found:
            raise ValueError(f"{args.token_file} holds no token")
        tokens += found
    if args.token_env is not None:
        value = os.environ.get(args.token_env, "").strip()
        if not value:
            raise ValueError(f"environment variable {args.token_env} is unset or empty")
        tokens.append(value)
    return tuple(tokens)


def _allow(args: argparse.Namespace) -> tuple[str, ...] | None:
    text = args.plugins_allow
    if text is None:
        text = os.environ.get("EQUITY_PLUGINS_ALLOW")
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    workers = args.workers
    if workers is None:
        workers = args.max_concurrent_solves + args.max_queued_solves + 6
    try:
        return ServerConfig(
            host=args.host,
            port=args.port,
            workers=workers,
            max_concurrent_solves=args.max_concurrent_solves,
            max_queued_solves=args.max_queued_solves,
            queue_timeout=args.queue_timeout,
            small_solve_rows=args.small_solve_rows,
            small_solve_cells=args.small_solve_cells,
            small_segment_limits=args.small_segment_limits,
            small_solve_seconds=args.small_solve_seconds or None,
            max_message_bytes=int(args.max_message_mb * MiB),
            max_rows=args.max_rows,
            max_solve_seconds=args.max_solve_seconds or None,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            max_metrics=args.max_metrics,
            max_decoded_bytes=int(args.max_decoded_mb * MiB),
            stream_idle_timeout=args.stream_idle_timeout,
            max_stream_messages=args.max_stream_messages,
            max_stream_bytes=int(args.max_stream_mb * MiB),
            max_stream_seconds=args.max_stream_seconds,
            max_receiving_streams=args.max_receiving_streams,
            max_error_details=args.max_error_details,
            isolate_solves=not args.in_process_solves,
            worker_memory_mib=args.worker_memory_mib,
            worker_nice=args.worker_nice,
            grace=args.grace,
            drain=args.drain,
            limits=replace(
                _DEFAULTS.limits,
                max_units=args.max_units,
                max_levels_per_unit=args.max_levels,
                solver_seconds=args.solver_seconds,
            ),
            tls=_tls(args),
            tokens=_tokens(args),
            insecure=args.insecure,
            plugins_allow=_allow(args),
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            cluster=args.cluster,
            cluster_dir=args.cluster_dir,
            cluster_partition_rows=args.cluster_partition_rows,
        )
    except ValueError as exc:
        raise SystemExit(f"equity serve: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.service.server import configure_logging, serve

    config = config_from_args(args)
    configure_logging(args.log_level.upper(), json_lines=args.log_format == "json")
    return serve(config)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.cli.allocation import print_summary
    from engine.portfolio import Portfolio
    from engine.service.client import Client
    from engine.service.server import EquityServer, configure_logging
    from engine.synthetic import example

    configure_logging("INFO" if args.verbose else "WARNING")
    customers, prospects, plan = example(args.size)
    portfolio = Portfolio(customers, prospects)
    server: EquityServer | None = None
    process: subprocess.Popen[bytes] | None = None
    if args.subprocess:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--grace", "5",
             "--log-level", "INFO" if args.verbose else "WARNING"],
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        how = f"`equity serve` subprocess (pid {process.pid})"
    else:
        server = EquityServer(ServerConfig(port=0, grace=5.0))
        port = server.start()
        how = "in-process server"
    target = f"127.0.0.1:{port}"
    try:
        with Client(target, timeout=120.0) as client:
            client.wait_ready(timeout=30.0)
            health = client.health()
            started = time.perf_counter()
            if args.stream:
                result = client.stream(portfolio, plan, batch_rows=max(1, args.size // 4))
            else:
                result = client.allocate(portfolio, plan)
            seconds = time.perf_counter() - started
        rpc = "AllocateStream" if args.stream else "Allocate"
        if args.json:
            print(result.to_json())
        else:
            print(f"server           {how} at {target}, health {health}")
            print(f"call             {rpc}: {customers.height:,} customers and "
                  f"{prospects.height} prospect pools in {seconds:.3f} s round trip")
            print_summary(result.summary)
    finally:
        if server is not None:
            server.stop(grace=5.0)
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if not args.json:
        print("shutdown         server stopped")
    return 0
