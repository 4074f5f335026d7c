"""``equity serve`` (run the gRPC service) and ``equity demo`` (a round trip through it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from engine.server import MiB, ServerConfig

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
                   help="address to bind (default 127.0.0.1: loopback only; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=_DEFAULTS.port, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=None,
                   help="RPC threads (default: solves + queue + 6)")
    p.add_argument("--max-concurrent-solves", type=int, default=_DEFAULTS.max_concurrent_solves)
    p.add_argument("--max-queued-solves", type=int, default=_DEFAULTS.max_queued_solves)
    p.add_argument("--queue-timeout", type=float, default=_DEFAULTS.queue_timeout,
                   help="seconds a solve may wait for a slot")
    p.add_argument("--small-solve-rows", type=int, default=_DEFAULTS.small_solve_rows,
                   help="solves of at most this many rows never wait for a slot")
    p.add_argument("--max-message-mb", type=float, default=_DEFAULTS.max_message_bytes / MiB,
                   help="largest message either way, MiB")
    p.add_argument("--max-rows", type=int, default=_DEFAULTS.max_rows,
                   help="rows per table per request")
    p.add_argument("--max-units", type=int, default=_DEFAULTS.limits.max_units,
                   help="customers + pools per allocation")
    p.add_argument("--max-levels", type=int, default=_DEFAULTS.limits.max_levels_per_unit,
                   help="spend levels per customer")
    p.add_argument("--solver-seconds", type=float, default=_DEFAULTS.limits.solver_seconds,
                   help="time limit per solver call (default: none)")
    p.add_argument("--grace", type=float, default=_DEFAULTS.grace,
                   help="seconds calls in flight may take to finish on shutdown")
    p.add_argument("--drain", type=float, default=_DEFAULTS.drain,
                   help="seconds health reports NOT_SERVING before new calls are refused")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
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
            max_message_bytes=int(args.max_message_mb * MiB),
            max_rows=args.max_rows,
            grace=args.grace,
            drain=args.drain,
            limits=replace(
                _DEFAULTS.limits,
                max_units=args.max_units,
                max_levels_per_unit=args.max_levels,
                solver_seconds=args.solver_seconds,
            ),
        )
    except ValueError as exc:
        raise SystemExit(f"equity serve: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.server import configure_logging, serve

    config = config_from_args(args)
    configure_logging(args.log_level.upper(), json_lines=args.log_format == "json")
    return serve(config)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.cli import print_summary
    from engine.client import Client
    from engine.portfolio import Portfolio
    from engine.server import EquityServer, configure_logging
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
            print(json.dumps(result.summary, indent=2))
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
