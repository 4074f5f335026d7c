"""Load on one `equity serve` process over loopback: many concurrent clients, small and
large allocations mixed, for a fixed duration; repeated rounds against the same server.

    .venv/bin/python benchmarks/load.py --duration 30 --rounds 3

- The server is a separate process (`equity serve` with its default limits unless flags
  say otherwise); clients run in ``--processes`` processes of threads, one gRPC connection
  each, so client-side work does not share the server's GIL.
- ``--clients`` clients in all (default 64): ``--large-clients`` of them send large
  requests (``--large-customers``, default 100k customers + 5 pools) back to back; the
  others send small ones (``--small-customers``, default 100) every ``--small-interval``
  seconds, starting at random offsets (open loop per client: a slow answer is not
  followed by a burst).
- First a baseline phase with the small clients alone, then ``--rounds`` rounds of the
  full mix. Reported per class: calls, errors by status (RESOURCE_EXHAUSTED with the limit
  named counts as an intended limit, anything else as an error), p50/p95/p99 latency and
  throughput; and the server's RSS (from /proc) sampled every 0.25 s, at the end of each
  round after a short idle, to show memory is flat across rounds.
- ``--large-apart``: the large clients in one more process of their own instead of spread
  over the small clients' processes.
- Side by side: ``--against DIR`` serves another source tree of the engine beside this
  one, ``--against-flags "FLAGS"`` another `equity serve` configuration (e.g.
  ``"--worker-nice 0"``; with both, that tree with those flags). Both servers start first;
  each phase then runs against one and at once against the other (one loaded at a time),
  so both see the same load from other processes as near as can be.
- Exit status 1 if any unintended error happened.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from engine.api.equity_engine.v1 import service_pb2, service_pb2_grpc
from engine.cli.service import _free_port
from engine.portfolio import Portfolio
from engine.service.client import Client
from engine.synthetic import example

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.servers import serve_tree  # noqa: E402

INTENDED = {"RESOURCE_EXHAUSTED"}  # limits doing their job (named in QuotaFailure)


@dataclass
class Sample:
    kind: str  # "small" | "large"
    started: float
    seconds: float
    status: str  # "OK" or the gRPC status name
    detail: str = ""


def _request(customers: int, seed: int) -> bytes:
    data, pools, plan = example(customers, seed=seed)
    with Client("unused") as c:
        return c.allocate_request(Portfolio(data, pools), plan).SerializeToString()


def _client_thread(target: str, kind: str, request: service_pb2.AllocateRequest, until: float,
                   interval: float, timeout: float, out: list[Sample]) -> None:
    channel = grpc.insecure_channel(target, options=[
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own
        ("grpc.max_receive_message_length", 512 << 20),
        ("grpc.max_send_message_length", 512 << 20),
    ])
    stub = service_pb2_grpc.EquityServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=30)
    next_at = time.monotonic() + random.uniform(0, interval)  # clients out of step
    while True:
        now = time.monotonic()
        if interval:
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
        if time.monotonic() >= until:
            break
        t0 = time.perf_counter()
        started = time.time()
        try:
            response = stub.Allocate(request, timeout=timeout)
            status, detail = "OK", ""
            if response.summary.status != "optimal" or not response.units.arrow_ipc:
                status, detail = "BAD_RESPONSE", response.summary.status
        except grpc.RpcError as err:
            status, detail = err.code().name, (err.details() or "")[:120]
        out.append(Sample(kind, started, time.perf_counter() - t0, status, detail))
    channel.close()


def _client_process(target: str, plan: list[tuple[str, float]], requests: dict[str, bytes],
                    until_in: float, timeout: float, queue: Any) -> None:
    """One process of client threads; ``plan`` is (kind, interval) per thread."""
    messages = {k: service_pb2.AllocateRequest.FromString(v) for k, v in requests.items()}
    until = time.monotonic() + until_in
    out: list[Sample] = []
    threads = [threading.Thread(target=_client_thread, args=(target, kind, messages[kind], until,
                                                             interval, timeout, out))
               for kind, interval in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put([s.__dict__ for s in out])


def _own_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # gone (a recycled solve worker)
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _rss_mib(pid: int) -> float:
    """The server's RSS: its own process and its solve workers (children, recursively)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _own_rss_mib(p)
        todo += _children(p)
    return total


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Phase:
    name: str
    duration: float
    samples: list[Sample]
    rss: list[float] = field(default_factory=list)
    rss_after: float = float("nan")
    main_rss_after: float = float("nan")
    server: str = "this"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.name, "server": self.server,
                               "seconds": round(self.duration, 1)}
        for kind in ("small", "large"):
            mine = [s for s in self.samples if s.kind == kind]
            if not mine:
                continue
            ok = [s.seconds for s in mine if s.status == "OK"]
            codes = Counter(s.status for s in mine if s.status != "OK")
            out[kind] = {
                "calls": len(mine), "ok": len(ok),
                "intended_limits": sum(n for c, n in codes.items() if c in INTENDED),
                "errors": {c: n for c, n in codes.items() if c not in INTENDED},
                "p50_ms": round(1000 * _percentile(ok, 0.50), 1),
                "p95_ms": round(1000 * _percentile(ok, 0.95), 1),
                "p99_ms": round(1000 * _percentile(ok, 0.99), 1),
                "max_ms": round(1000 * max(ok, default=float("nan")), 1),
                "throughput_per_s": round(len(ok) / self.duration, 2),
            }
            details = Counter(s.detail for s in mine if s.status != "OK")
            if details:
                out[kind]["examples"] = dict(details.most_common(3))
        out["rss_mib_max"] = round(max(self.rss, default=float("nan")), 1)
        out["rss_mib_after"] = round(self.rss_after, 1)
        out["main_process_rss_mib_after"] = round(self.main_rss_after, 1)
        return out


def run_phase(name: str, target: str, server_pid: int, kinds: list[tuple[str, float]],
              requests: dict[str, bytes], duration: float, processes: int, timeout: float,
              settle: float, large_apart: bool = False) -> Phase:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shares: list[list[tuple[str, float]]] = [[] for _ in range(processes)]
    spread = [k for k in kinds if not (large_apart and k[0] == "large")]
    for i, item in enumerate(spread):
        shares[i % processes].append(item)
    shares.append([k for k in kinds if k not in spread])  # --large-apart: a process of theirs
    procs = [ctx.Process(target=_client_process, args=(target, share, requests, duration + 3.0,
                                                       timeout, queue))
             for share in shares if share]
    for p in procs:
        p.start()
    phase = Phase(name, duration, [])
    end = time.monotonic() + duration + 3.0 + timeout
    results: list[list[dict[str, Any]]] = []
    while len(results) < len(procs) and time.monotonic() < end:
        phase.rss.append(_rss_mib(server_pid))
        try:
            results.append(queue.get(timeout=0.25))
        except Exception:  # queue.Empty: keep sampling
            continue
    for p in procs:
        p.join(30)
    phase.samples = [Sample(**s) for batch in results for s in batch]
    if phase.samples:  # the measured window: first call to last answer
        first = min(s.started for s in phase.samples)
        last = max(s.started + s.seconds for s in phase.samples)
        phase.duration = max(last - first, 1e-9)
    time.sleep(settle)
    phase.rss_after = _rss_mib(server_pid)
    phase.main_rss_after = _own_rss_mib(server_pid)
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=float, default=10.0,
                        help="seconds of small clients alone first (0: skip)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--large-clients", type=int, default=4)
    parser.add_argument("--small-customers", type=int, default=100)
    parser.add_argument("--large-customers", type=int, default=100_000)
    parser.add_argument("--small-interval", type=float, default=5.0,
                        help="seconds between the calls of one small client")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--large-apart", action="store_true",
                        help="the large clients in a process of their own, so the small "
                        "clients' timings do not include waiting for the GIL of a process "
                        "that encodes and decodes 100k-customer messages")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline per call")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="idle seconds before the RSS reading that ends a round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--against", type=Path,
                        help="another source tree of the engine to serve beside this one")
    parser.add_argument("--against-flags",
                        help="`equity serve` flags of the other server, added to serve_flags")
    parser.add_argument("serve_flags", nargs="*", help="extra `equity serve` flags (after --)")
    args = parser.parse_args()

    print(f"building requests: {args.small_customers} and {args.large_customers:,} customers",
          flush=True)
    requests = {"small": _request(args.small_customers, 1),
                "large": _request(args.large_customers, 2)}
    servers: dict[str, tuple[list[str], Path | None]] = {"this": (args.serve_flags, None)}
    if args.against is not None or args.against_flags is not None:
        servers["against"] = ([*args.serve_flags, *shlex.split(args.against_flags or "")],
                              None if args.against is None else args.against.resolve())
    ports = {name: _free_port() for name in servers}
    procs = {name: serve_tree(ports[name], ["--max-message-mb", "256", *flags], tree)
             for name, (flags, tree) in servers.items()}
    phases: list[Phase] = []
    try:
        for name in servers:
            with Client(f"127.0.0.1:{ports[name]}") as probe:
                probe.wait_ready(60)
        small = [("small", args.small_interval)] * (args.clients - args.large_clients)
        large = [("large", 0.0)] * args.large_clients
        todo: list[tuple[str, list[tuple[str, float]], float]] = []
        if args.baseline > 0:
            todo.append(("baseline: small clients only", small, args.baseline))
        todo += [(f"round {r + 1}: {len(small)} small + {len(large)} large", small + large,
                  args.duration) for r in range(args.rounds)]
        for title, kinds, duration in todo:
            for name in servers:
                label = title if len(servers) == 1 else f"{name}: {title}"
                phases.append(run_phase(label, f"127.0.0.1:{ports[name]}", procs[name].pid,
                                        kinds, requests, duration, args.processes,
                                        args.timeout, args.settle, args.large_apart))
                phases[-1].server = name
                print(json.dumps(phases[-1].summary()), flush=True)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    summaries = [p.summary() for p in phases]
    load = os.getloadavg()
    print(f"\n{args.clients} clients ({args.large_clients} large: {args.large_customers:,} "
          f"customers; {args.clients - args.large_clients} small: {args.small_customers} "
          f"customers every {args.small_interval:g} s), {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} after the run")
    print(f"{'phase':<44} {'class':<6} {'calls':>6} {'ok':>6} {'limits':>6} {'errors':>6} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7} {'RSS max':>8} {'after':>7}")
    for s in summaries:
        for kind in ("small", "large"):
            if kind not in s:
                continue
            k = s[kind]
            print(f"{s['phase']:<44} {kind:<6} {k['calls']:>6} {k['ok']:>6} "
                  f"{k['intended_limits']:>6} {sum(k['errors'].values()):>6} {k['p50_ms']:>8} "
                  f"{k['p95_ms']:>8} {k['p99_ms']:>8} {k['throughput_per_s']:>7} "
                  f"{s['rss_mib_max']:>8} {s['rss_mib_after']:>7}")
    for name, (flags, tree) in servers.items():
        rounds = [s for s in summaries if s["server"] == name and "baseline" not in s["phase"]]
        after = [s["rss_mib_after"] for s in rounds]
        if len(after) > 1:
            print(f"{name} ({'this tree' if tree is None else 'another tree'}, flags "
                  f"{' '.join(flags) or 'none'}): server RSS after each round (MiB, process "
                  f"+ solve workers): {after}; main process alone: "
                  f"{[s['main_process_rss_mib_after'] for s in rounds]}; first round to last: "
                  f"{after[-1] - after[0]:+.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()
                                                  if k not in ("against", "json")},
                                         "servers": {n: {"flags": f, "tree": "this" if t is None
                                                         else "against"}
                                                     for n, (f, t) in servers.items()},
                                         "phases": summaries,
                                         "loadavg": load}, indent=2))
    errors = sum(sum(s[k]["errors"].values()) for s in summaries for k in ("small", "large")
                 if k in s)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
