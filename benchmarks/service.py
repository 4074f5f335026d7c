"""Round trips through the gRPC service on loopback: Allocate and AllocateStream.

    .venv/bin/python benchmarks/service.py --customers 100000 --repeat 3

Starts `equity serve` as a separate process (client and server do not share a GIL), sends
the synthetic example portfolio (customers + 5 prospect pools, the README's plan scaled)
with the real client, and prints the median wall time of each call next to the engine's
own time for the same allocation in-process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from engine.cli.service import _free_port
from engine.pipeline import allocate
from engine.portfolio import Portfolio
from engine.service.client import AllocateResult, Client
from engine.synthetic import example


def median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time of ``fn`` and median engine time it reports (summary seconds)."""
    times, engine = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        engine.append(result.summary["seconds"]["total"])  # type: ignore[attr-defined]
    return statistics.median(times), statistics.median(engine)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (from /proc; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the server's solve workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ValueError, IndexError):
                continue
            if parent == pid:
                found.append(int(entry))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--max-message-mb", type=int, default=512)
    parser.add_argument("--only-stream", action="store_true",
                        help="AllocateStream in Arrow only (the 1M-in-and-back target), "
                        "beside the engine in-process")
    args = parser.parse_args()

    customers, prospects, plan = example(args.customers)
    portfolio = Portfolio(customers, prospects)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--log-level",
         "WARNING", "--max-message-mb", str(args.max_message_mb), "--max-rows", "50000000"],
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    rows = []
    try:
        local, _ = median_seconds(lambda: allocate(portfolio, plan), args.repeat)
        rows.append(("engine in-process (no gRPC)", local, ""))
        for fmt in ("arrow",) if args.only_stream else ("arrow", "columns"):
            with Client(f"127.0.0.1:{port}", table_format=fmt, timeout=600,
                        max_message_bytes=args.max_message_mb << 20) as client:
                client.wait_ready(30)
                warm = example(200)
                client.allocate(Portfolio(warm[0], warm[1]), warm[2])  # warm up
                request = client.allocate_request(portfolio, plan)
                size = request.ByteSize() / 1e6
                def unary(c: Client = client) -> AllocateResult:
                    return c.allocate(portfolio, plan)

                def stream(c: Client = client) -> AllocateResult:
                    return c.stream(portfolio, plan, batch_rows=args.batch_rows)

                if not args.only_stream:
                    t, e = median_seconds(unary, args.repeat)
                    rows.append((f"Allocate, {fmt}", t,
                                 f"(summary.seconds.total {e:.3f} s), request {size:.1f} MB"))
                stream()  # the solve worker has started and imported the engine
                pids = [server.pid, *children(server.pid)]
                before = [cpu_seconds(p) for p in pids]
                t, e = median_seconds(stream, args.repeat)
                used = [(cpu_seconds(p) - b) / args.repeat
                        for p, b in zip(pids, before, strict=True)]
                rows.append((f"AllocateStream, {fmt}, {args.batch_rows:,}-row batches", t,
                             f"(summary.seconds.total {e:.3f} s; CPU per call: server "
                             f"process {used[0]:.2f} s, solve workers {sum(used[1:]):.2f} s)"))
                if args.only_stream:
                    continue
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    client.score(customers)
                rows.append((f"Score (CLV only: the wire cost), {fmt}",
                             (time.perf_counter() - t0) / args.repeat, "mean"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    print(f"{args.customers:,} customers + {prospects.height} pools, median of {args.repeat}, "
          f"loopback, server in a separate process, load average {os.getloadavg()[0]:.2f}")
    for name, seconds, note in rows:
        print(f"  {name:<46} {seconds:7.3f} s  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
