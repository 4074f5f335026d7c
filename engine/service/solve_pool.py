"""Large solves in worker processes, so that they never hold the server's GIL.

The LP solver (HiGHS through PuLP) and the model building around it hold the GIL for long
stretches; in the server's own process a 100k-customer solve would stall health checks
and small requests for seconds. ``SolvePool`` keeps one worker process per solve slot
(``max_concurrent_solves``), started with ``spawn`` when the first large solve needs it
and niced by the server as it starts (``WorkerSpec.nice``, ``--worker-nice``), each with
its own registry (built-ins plus the allowed entry-point plugins, or a picklable factory).

One task: the portfolio, plan and limits go down a pipe; the plan's table and summary or
the error come back (invalid input and limits as the exception itself, so a client gets
exactly the status the server's process would have given; any other error as a
``google.rpc.Status``, the same mapping the service uses). Tables cross the pipe as
uncompressed Arrow IPC (about three times faster than pickling polars frames), and only
what the service sends back returns: the options and the allocation behind the plan
(several times the table's size at a million customers) stay in the worker.

``respond`` is the unary ``Allocate``'s task: the request's tables go as they came
(``wire.RequestTables``: the server's process has read only their row counts from the
Arrow metadata), the worker decodes and checks them exactly as the server's process does
for a small request (``wire.read_portfolio``), solves, and answers with the serialized
``AllocateResponse``. Each table and the answer cross as one buffer
(``Connection.send_bytes``), not pickled.

The caller's ``should_stop`` is relayed through a shared event that the worker's solve
polls; a worker that does not stop within ``kill_after`` seconds of being told, or that
dies, is killed and replaced, and the call fails with a clear status. Workers are
replaced after ``max_tasks`` tasks, which keeps memory flat.

With ``memory_mib`` each worker caps its address space (``RLIMIT_AS``) at its size once
started plus that much: a solve that needs more fails inside the worker (``MemoryError``)
or takes it down (native code aborts when an allocation fails); either way the call gets
RESOURCE_EXHAUSTED naming ``worker_memory_mib`` and the worker is replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import io
import multiprocessing as mp
import os
import queue
import resource
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import polars as pl
from google.rpc import status_pb2

from engine import memory
from engine.api.equity_engine.v1 import portfolio_pb2, service_pb2
from engine.errors import (
    CancelledError,
    EquityError,
    InvalidInputError,
    LimitExceededError,
    MemoryLimitError,
    SolverError,
)
from engine.limits import Limits
from engine.plan import Plan
from engine.plugins import Registry
from engine.portfolio import Portfolio
from engine.service import wire
from engine.service.cluster import ClusterPlan
from engine.service.config import ServerConfig, server_registry
from engine.service.logs import configure_logging, log, request_id_var
from engine.service.status import error_from_status, grpc_code, status_from_error
from engine.summary import PlanSummary


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


_LIBC = _libc()
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Few glibc malloc arenas: with one per thread (the default, up to 8 per core) the
    freed buffers of large requests stay spread over arenas and RSS ratchets up.

    And the engine's malloc settings (``engine.memory.configure``: freed blocks kept in the
    heap for reuse, not unmapped) from the start rather than from the first solve in this
    process: without them every buffer of a large request (some 50 MB through the
    server's process for a 100k-customer Allocate, in and out) was mapped afresh and
    faulted in page by page, about 12,000 page faults per call. ``Trimmer`` hands the
    kept memory back once large calls pause."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_ARENA_MAX, arenas)
    memory.configure()


def release_memory() -> None:
    """Give freed heap memory back to the system (after a large request)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class Trimmer:
    """Hands freed heap memory back to the system once large calls pause, off their path.

    ``malloc_trim`` takes 1-9 ms after a 100k-customer request; called where a call ends
    (gRPC runs a call's done-callbacks on the server's one polling thread, which also
    starts every new call) it delayed every call arriving meanwhile. ``request`` only wakes
    a background thread, which trims once for all the requests made before it starts.
    (Trimming only past some growth of RSS since the last trim kept memory high: RSS read
    while other large requests were in flight set the mark too high.)

    The thread trims when no large call has ended for ``quiet`` seconds, and at least every
    ``longest`` seconds while they keep ending: every page a trim hands back is faulted in
    and zeroed again by the next large request. With a trim after every 100k-customer
    Allocate the server's own process spent 61-67 ms of system CPU per call, 29-32 ms
    without; at five such calls a second that was a fifth of a core, taken from the small
    calls beside them. Memory is still handed back when the large calls stop, so it stays
    flat from one burst of them to the next."""

    def __init__(self, quiet: float = 1.0, longest: float = 10.0) -> None:
        self.quiet, self.longest = quiet, longest
        self.trims = 0
        self._last = 0.0  # when the latest request was made (time.monotonic)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        with self._lock:
            self._last = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="equity-trim",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            first = time.monotonic()  # the first request since the last trim
            while True:  # until `quiet` without a request, or `longest` since the first
                self._wake.clear()
                due = min(self._last + self.quiet, first + self.longest)
                now = time.monotonic()
                if now >= due:
                    break
                self._wake.wait(due - now)  # a new request wakes it: the time is reckoned again
            release_memory()
            self.trims += 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its registry and log like the server."""

    plugins_allow: tuple[str, ...] | None
    registry_factory: Callable[[], Registry] | None
    log_level: int
    json_logs: bool
    nice: int  # niceness added to the server's (0: none); see ``priority``
    memory_mib: int | None = None  # address space a worker may add once started
    # the workers' niceness: None until ``SolvePool`` sets it to the server's plus ``nice``
    priority: int | None = None


class WorkerMemoryError(LimitExceededError):
    """A solve needed more memory than a worker's cap (``worker_memory_mib``)."""

    def __init__(self, mib: int, how: str) -> None:
        EquityError.__init__(
            self, f"worker_memory_mib: the solve needed more than the {mib} MiB a solve worker "
            f"may use ({how}); use a smaller portfolio or raise --worker-memory-mib")
        self.limit, self.value, self.maximum = "worker_memory_mib", float("nan"), float(mib)


def cap_address_space(mib: int) -> int:
    """Limit this process's address space to its current size plus ``mib`` MiB (soft
    RLIMIT_AS, within the hard limit); returns the limit in bytes."""
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + mib * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


@dataclass
class EncodedPlan:
    """A worker's answer when the caller said how to encode the plan's table: the summary
    and the table as the response carries it (so the server's process does not encode)."""

    summary: PlanSummary
    tables: list[portfolio_pb2.Table]


def _to_ipc(table: pl.DataFrame) -> bytes | pl.DataFrame:
    """A table as Arrow IPC bytes (a column type Arrow cannot carry: the table, pickled)."""
    buffer = io.BytesIO()
    try:
        table.write_ipc(buffer, compression="uncompressed")
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        return table
    return buffer.getvalue()


def _from_ipc(data: bytes | pl.DataFrame) -> pl.DataFrame:
    return data if isinstance(data, pl.DataFrame) else pl.read_ipc(io.BytesIO(data))


def pack_portfolio(portfolio: Portfolio) -> dict[str, bytes | pl.DataFrame | None]:
    return {f.name: None if (t := getattr(portfolio, f.name)) is None else _to_ipc(t)
            for f in dataclasses.fields(portfolio)}


def unpack_portfolio(tables: dict[str, bytes | pl.DataFrame | None]) -> Portfolio:
    return Portfolio(**{name: None if t is None else _from_ipc(t)
                        for name, t in tables.items()})


def _portable(exc: BaseException) -> tuple[str, Any] | None:
    """Invalid input and limits as picklable parts, so the caller raises the same exception
    (the same status, violations and message) as if the work had run in its process."""
    if type(exc) is InvalidInputError:
        return "invalid", exc.violations
    if type(exc) is LimitExceededError:
        return "limit", (exc.limit, exc.value, exc.maximum)
    return None


def _rebuilt(kind: str, parts: Any) -> EquityError:
    if kind == "invalid":
        return InvalidInputError(parts)
    return LimitExceededError(*parts)


def interruptible_highs(stop: Any) -> bool:
    """Make this process's HiGHS solves stop when ``stop`` (an event) is set: every
    ``highspy.Highs`` made from now on (PuLP makes one per solve) handles user interrupts,
    and a thread calls ``cancelSolve`` on the live ones while ``stop`` is set. HiGHS runs
    without the GIL and checks for the interrupt between iterations, so a cancelled solve
    ends in milliseconds and the worker takes the next task (no kill, no restart).
    False when highspy is not installed (CBC: ``should_stop`` between phases only)."""
    try:
        import highspy
    except ImportError:
        return False
    live: weakref.WeakSet[Any] = weakref.WeakSet()
    base = highspy.Highs

    class Highs(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.HandleUserInterrupt = True
            live.add(self)

    highspy.Highs = Highs  # type: ignore[misc]  # PuLP looks it up at each solve

    def cancel() -> None:
        while True:
            stop.wait()
            for model in list(live):
                model.cancelSolve()
            time.sleep(0.02)  # models made later in the same task are cancelled too

    threading.Thread(target=cancel, name="equity-solve-stop", daemon=True).start()
    return True


def _worker_main(conn: Connection, stop: Any, spec: WorkerSpec) -> None:
    """A worker: solve tasks from ``conn`` until it closes (or the parent goes away)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if spec.nice:  # the parent niced this process as it started; in case it could not:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0),
                                                   spec.priority or 0))
    importlib.import_module("engine.planning.uncertainty")  # before the first task, not in it
    limit_malloc_arenas()
    configure_logging(spec.log_level, json_lines=spec.json_logs)
    interruptible_highs(stop)
    if spec.registry_factory is not None:
        registry = spec.registry_factory()
    else:
        registry = server_registry(ServerConfig(plugins_allow=spec.plugins_allow))
    if spec.memory_mib is not None:
        cap_address_space(spec.memory_mib)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
            if task is None:
                return
            # a request's tables follow its task, one buffer each
            buffers = [conn.recv_bytes() for _ in task[1]] if task[0] == "request" else []
        except (EOFError, OSError):
            return
        request_id = task[4]
        request_id_var.set(request_id)  # the worker's log lines name the call too
        body = b""
        try:
            try:
                reply, body = _work(task, buffers, registry, stop)
            except (MemoryError, MemoryLimitError) as exc:
                if spec.memory_mib is None:
                    raise
                raise WorkerMemoryError(spec.memory_mib, "out of memory") from exc
        except Exception as exc:
            if not isinstance(exc, EquityError):
                log.error("internal error in a solve worker (request %s)", request_id,
                          exc_info=exc, extra={"fields": {"request_id": request_id}})
            portable = _portable(exc)
            if portable is not None:
                reply = ("raise", *portable)
            else:
                status = status_from_error(exc, request_id=request_id)
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                reply = ("error", status.SerializeToString(), text)
        try:
            conn.send(reply)
            if reply[0] == "response":
                conn.send_bytes(body)
        except (BrokenPipeError, OSError):
            return
        del task, buffers, reply, body
        release_memory()


def _work(task: tuple[Any, ...], buffers: list[bytes], registry: Registry,
          stop: Any) -> tuple[tuple[Any, ...], bytes]:
    """One task in a worker: the reply, and the serialized response that follows it."""
    from engine.planning.uncertainty import allocate_with_uncertainty

    if task[0] == "request":
        _, names, plan, limits, _, encoding, checks = task
        tables = wire.RequestTables({name: (kind, data) for (name, kind), data
                                     in zip(names, buffers, strict=True)}, {})
        buffers.clear()
        message = tables.message()
        del tables
        portfolio = wire.read_portfolio(message, **checks)  # the server's own checks
        del message
    else:
        _, packed, plan, limits, _, encoding = task
        portfolio = unpack_portfolio(packed)
    result = allocate_with_uncertainty(portfolio, plan, registry, stop.is_set, limits)
    del portfolio
    if task[0] == "request":
        response = service_pb2.AllocateResponse(
            summary=wire.summary_to_proto(result.summary),
            units=wire.encode_units(result.units, encoding)[0])
        return ("response",), response.SerializeToString()
    if encoding is None:
        return ("ok", _to_ipc(result.units), result.summary), b""
    encoded = [t.SerializeToString() for t in wire.encode_units(result.units, encoding)]
    return ("encoded", encoded, result.summary), b""


class _Worker:
    def __init__(self, ctx: Any, spec: WorkerSpec) -> None:
        self.stop = ctx.Event()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, self.stop, spec),
                                   name="equity-solve", daemon=True)
        self.process.start()
        if spec.nice and spec.priority is not None and self.process.pid is not None:
            # at once, so the worker's start-up (imports, registry: about a second of CPU)
            # already runs behind the server's process; threads it starts inherit this
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.process.pid, spec.priority)
        child.close()
        self.ready = False
        self.tasks = 0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class SolvePool:
    """``size`` worker processes; ``solve`` runs one allocation in one of them."""

    def __init__(self, size: int, spec: WorkerSpec, *, kill_after: float = 3.0,
                 max_tasks: int = 200) -> None:
        self.size = size
        if spec.priority is None:  # niceness is relative to the server's, which stays
            own = os.getpriority(os.PRIO_PROCESS, 0)
            spec = dataclasses.replace(spec, priority=min(own + spec.nice, 19))
        self.spec = spec
        self.kill_after = kill_after
        self.max_tasks = max_tasks
        self._ctx = mp.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()
        self._closed = False  # workers start with the first large solve, then stay

    def _spawn(self) -> _Worker:
        """A new worker (call with ``_lock`` held)."""
        worker = _Worker(self._ctx, self.spec)
        self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all if w.process.pid is not None]

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if self._closed:
            self._retire(worker)
            return
        if not healthy or worker.tasks >= self.max_tasks:
            self._retire(worker)
            with self._lock:
                worker = self._spawn()
        self._idle.put(worker)

    def solve(
        self, portfolio: Portfolio, plan: Plan, limits: Limits, should_stop: Callable[[], bool],
        request_id: str = "", encoding: wire.UnitsEncoding | None = None,
    ) -> ClusterPlan | EncodedPlan:
        """The plan's table and summary (what the service sends back) of one solve; with
        ``encoding``, the table encoded by the worker as the response carries it."""
        task = ("portfolio", pack_portfolio(portfolio), plan, limits, request_id, encoding)
        result = self._task(task, [], should_stop, request_id)
        assert not isinstance(result, bytes)
        return result

    def respond(
        self, tables: wire.RequestTables, plan: Plan, limits: Limits,
        should_stop: Callable[[], bool], request_id: str, encoding: wire.UnitsEncoding,
        checks: dict[str, int],
    ) -> bytes:
        """The serialized ``AllocateResponse`` to a request whose tables the worker decodes
        (``wire.read_portfolio`` with ``checks``: ``max_rows``, ``max_bytes``,
        ``max_levels_per_unit``) and solves; its plan's table encoded as ``encoding``
        says. The tables go down the pipe one buffer each, as they came."""
        names = tuple((name, kind) for name, (kind, _) in tables.payloads.items())
        task = ("request", names, plan, limits, request_id, encoding, checks)
        result = self._task(task, [data for _, data in tables.payloads.values()],
                            should_stop, request_id)
        assert isinstance(result, bytes)
        return result

    def _task(self, task: tuple[Any, ...], buffers: list[bytes],
              should_stop: Callable[[], bool],
              request_id: str) -> ClusterPlan | EncodedPlan | bytes:
        if self._closed:
            raise CancelledError("the server is stopping")
        # The solve gate admits at most ``size`` at once, so a worker is idle or can start.
        with self._lock:
            fresh = self._spawn() if len(self._all) < self.size and self._idle.empty() else None
        worker = fresh or self._idle.get()
        healthy = False
        try:
            result = self._run(worker, task, buffers, should_stop, request_id)
            healthy = True
            return result
        except EquityError as exc:
            # a worker that ran out of memory may keep a fragmented heap: replaced
            healthy = not isinstance(exc, _WorkerLost) and not (
                isinstance(exc, LimitExceededError) and exc.limit == "worker_memory_mib")
            if isinstance(exc, _WorkerLost):
                raise exc.error from None
            raise
        finally:
            self._release(worker, healthy)

    def _run(self, worker: _Worker, task: tuple[Any, ...], buffers: list[bytes],
             should_stop: Callable[[], bool],
             request_id: str) -> ClusterPlan | EncodedPlan | bytes:
        worker.stop.clear()
        worker.tasks += 1
        try:
            worker.conn.send(task)
            for data in buffers:
                worker.conn.send_bytes(data)
        except (BrokenPipeError, OSError):
            raise _WorkerLost(SolverError("the solve worker is gone; try again",
                                          "worker lost")) from None
        told: float | None = None
        while True:
            if worker.conn.poll(0.05):
                try:
                    reply = worker.conn.recv()
                    if reply[0] == "response":  # the serialized response follows
                        return worker.conn.recv_bytes()
                except (EOFError, OSError):
                    worker.process.join(1.0)
                    raise _WorkerLost(self._death(worker)) from None
                if reply[0] == "ready":
                    worker.ready = True
                    continue
                break
            if not worker.process.is_alive():
                raise _WorkerLost(self._death(worker))
            if told is None and should_stop():
                worker.stop.set()
                told = time.monotonic()
            elif told is not None and time.monotonic() - told > self.kill_after:
                log.warning("solve worker %s did not stop within %.1f s: killed",
                            worker.process.pid, self.kill_after,
                            extra={"fields": {"request_id": request_id}})
                raise _WorkerLost(CancelledError("the solve was stopped (worker killed)"))
        if reply[0] == "ok":
            return ClusterPlan(_from_ipc(reply[1]), reply[2])
        if reply[0] == "encoded":
            return EncodedPlan(reply[2], [portfolio_pb2.Table.FromString(b) for b in reply[1]])
        if reply[0] == "raise":
            raise _rebuilt(reply[1], reply[2])
        status = status_pb2.Status.FromString(reply[1])
        raise error_from_status(grpc_code(status.code), status.message, status.details)

    def _death(self, worker: _Worker) -> EquityError:
        """What the caller of a solve whose worker died gets: with a memory cap, an abort
        (native code failing an allocation) or a kill by signal is the cap."""
        code = worker.process.exitcode
        mib = self.spec.memory_mib
        if mib is not None and code is not None and code < 0 and -code in (
                signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS):
            return WorkerMemoryError(mib, f"the worker stopped with signal {-code}")
        return SolverError(f"the solve worker died during the solve (exit code {code})",
                           "worker died")

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker: idle ones are told to exit, busy ones are killed."""
        self._closed = True
        with self._lock:
            workers = list(self._all)
        for w in workers:
            w.stop.set()
        while True:
            try:
                w = self._idle.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(OSError):
                w.conn.send(None)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            self._retire(w)


class _WorkerLost(EquityError):
    """Internal: the worker must be replaced; ``error`` is what the caller gets."""

    def __init__(self, error: EquityError) -> None:
        self.error = error
        super().__init__(str(error))
