"""Where the partitions of a distributed allocation live: a Dask cluster, or this process.

``connect("local:N")`` starts a ``dask.distributed`` LocalCluster of N worker processes
(one thread each) and ``connect("tcp://HOST:PORT")`` joins an existing scheduler; both are
context managers that shut down what they started. :class:`Workers` keeps one state per
partition *on the workers* (a future each: the partition's options, hull increments and
ratio keys stay where they were built) and runs a function over all of them, gathering only
its small results. :class:`InProcess` is the same interface over a list, for one machine.

A worker that dies mid-run loses its partitions' states; the scheduler rebuilds them on the
workers left (each state is a task reading its own files) and the run goes on with the same
numbers, so the plan is the one a run without the fault gives. When that is not possible
(every worker gone, a task failing on worker after worker, the scheduler unreachable) the
run stops with :class:`ClusterError`, never with a partial plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from engine import parallel
from engine.errors import CancelledError, EquityError, InvalidInputError

_LOCAL = re.compile(r"^local:(\d+)$")
_TCP = re.compile(r"^(tcp|tls)://[^\s:/]+:\d+$")


class ClusterError(EquityError):
    """The cluster could not finish the run (workers lost beyond retry, scheduler gone)."""


def check_spec(spec: str, field: str = "--cluster") -> str:
    """``local:N`` (N >= 1) or ``tcp://HOST:PORT`` / ``tls://HOST:PORT``; else an input error
    naming ``field``."""
    match = _LOCAL.match(spec)
    if match and int(match.group(1)) >= 1:
        return spec
    if _TCP.match(spec):
        return spec
    raise InvalidInputError.single(
        field, f"{spec!r} is not local:N (N worker processes, N >= 1) or tcp://HOST:PORT "
        "(a running dask scheduler)"
    )


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:  # pragma: no cover - installed with the package's dev extra
        raise InvalidInputError.single(
            "--cluster", "needs dask.distributed: pip install 'equity-engine[distributed]'"
        ) from None
    return distributed


@contextmanager
def connect(spec: str, *, memory_limit: str | None = None, timeout: float = 10.0,
            field: str = "--cluster") -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``; on exit the client is closed and a cluster this
    call started is shut down (its worker processes end). ``memory_limit`` (e.g. ``"2GiB"``)
    is per worker of a local cluster; ``timeout`` is how long to try reaching a scheduler."""
    check_spec(spec, field)
    distributed = _distributed()
    match = _LOCAL.match(spec)
    if match:
        import dask

        kwargs: dict[str, Any] = {}
        if memory_limit is not None:
            kwargs["memory_limit"] = memory_limit
        # Worker processes of their own; no dashboard (no port to clash with); quiet logs.
        # The workers share this machine's cores: their elementwise passes (engine.parallel)
        # and polars' thread pool (reading, valuing, writing) take their share of them, not
        # each all of them.
        n = int(match.group(1))
        share = str(max(1, parallel.threads() // n))
        env = {"EQUITY_THREADS": share, "POLARS_MAX_THREADS": share}
        with dask.config.set({"distributed.worker.daemon": False}), distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=40, env=env, **kwargs,
        ) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(spec, timeout=timeout)
    except OSError as exc:
        raise ClusterError(f"cannot reach the dask scheduler at {spec}: {exc}") from None
    with client:
        yield client


class InProcess:
    """Partitions held in this process: the interface of :class:`Workers`, on one machine."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    @property
    def n(self) -> int:
        return len(self.parts)

    def start(self, fn: Callable[..., Any], sources: Sequence[Any], *args: Any) -> None:
        self.parts = [fn(source, *args) for source in sources]

    def update(self, fn: Callable[..., Any], *args: Any,
               each: Sequence[tuple[Any, ...]] | None = None) -> None:
        extra = each if each is not None else [()] * len(self.parts)
        self.parts = [fn(part, *e, *args) for part, e in zip(self.parts, extra, strict=True)]

    def map(self, fn: Callable[..., Any], *args: Any,
            each: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        extra = each if each is not None else [()] * len(self.parts)
        return [fn(part, *e, *args) for part, e in zip(self.parts, extra, strict=True)]

    def exchange(self, split: Callable[..., Sequence[Any]], n: int,
                 reduce: Callable[..., Any], *args: Any) -> list[Any]:
        """:meth:`Workers.exchange` in this process."""
        pieces = [split(part, n, *args) for part in self.parts]
        return [reduce(*(p[j] for p in pieces)) for j in range(n)]

    def close(self) -> None:
        self.parts = []


class Workers:
    """One state per partition, kept on the workers of ``client`` between calls.

    ``should_stop``: polled while the workers run a call; once true, the call's tasks are
    cancelled on the cluster and :class:`~engine.errors.CancelledError` is raised (a long
    stage, reading and valuing the partitions, stops within a fraction of a second)."""

    POLL = 0.1  # seconds between two looks at ``should_stop``

    def __init__(self, client: Any, should_stop: Callable[[], bool] | None = None) -> None:
        self.client = client
        self.should_stop = should_stop
        self.parts: list[Any] = []  # futures

    @property
    def n(self) -> int:
        return len(self.parts)

    def start(self, fn: Callable[..., Any], sources: Sequence[Any], *args: Any) -> None:
        """``fn(source, *args)`` per source; the results stay on the workers."""
        self.parts = [self.client.submit(fn, s, *args, pure=False) for s in sources]
        self._wait(self.parts)

    def update(self, fn: Callable[..., Any], *args: Any,
               each: Sequence[tuple[Any, ...]] | None = None) -> None:
        """Replace each state by ``fn(state, *each[i], *args)``, on the worker that holds
        it."""
        extra = each if each is not None else [()] * len(self.parts)
        new = [self.client.submit(fn, p, *e, *args, pure=False)
               for p, e in zip(self.parts, extra, strict=True)]
        self._wait(new)
        self.parts = new

    def map(self, fn: Callable[..., Any], *args: Any,
            each: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        """``fn(state, *each[i], *args)`` per partition, on its worker; results gathered."""
        extra = each if each is not None else [()] * len(self.parts)
        futures = [self.client.submit(fn, p, *e, *args, pure=False)
                   for p, e in zip(self.parts, extra, strict=True)]
        return self._gather(futures)

    def exchange(self, split: Callable[..., Sequence[Any]], n: int,
                 reduce: Callable[..., Any], *args: Any) -> list[Any]:
        """A shuffle among the workers: ``split(state, n, *args)`` cuts each partition's
        state into ``n`` pieces on its worker, then ``reduce(*pieces_j)`` combines the j-th
        piece of every partition on some worker; the pieces move from worker to worker,
        never through this process, which gathers only the ``n`` results."""
        getitem = _getitem
        splits = [self.client.submit(split, p, n, *args, pure=False) for p in self.parts]
        pieces = [[self.client.submit(getitem, s, j, pure=False) for s in splits]
                  for j in range(n)]
        out = [self.client.submit(reduce, *row, pure=False) for row in pieces]
        try:
            return self._gather(out)
        finally:
            for future in [*splits, *(f for row in pieces for f in row), *out]:
                future.release()

    def close(self) -> None:
        for future in self.parts:
            future.release()
        self.parts = []

    def _wait(self, futures: list[Any]) -> None:
        self._gather(futures, results=False)

    def _await(self, distributed: Any, futures: list[Any]) -> None:
        """Wait for ``futures``, cancelling them when ``should_stop`` says so."""
        if self.should_stop is None:
            return
        while True:
            try:
                distributed.wait(futures, timeout=self.POLL)
                return
            except TimeoutError:
                if self.should_stop():
                    self.client.cancel(futures)
                    raise CancelledError("allocation cancelled") from None

    def _gather(self, futures: list[Any], results: bool = True) -> list[Any]:
        distributed = _distributed()
        try:
            self._await(distributed, futures)
            if not results:
                distributed.wait(futures)
                bad = [f for f in futures if f.status == "error"]
                if bad:
                    bad[0].result()  # raises the task's own error
                return []
            out: list[Any] = self.client.gather(futures)
            return out
        except EquityError:
            raise
        except distributed.KilledWorker as exc:
            raise ClusterError(
                f"the cluster lost the workers running {exc.task!r} too many times "
                "(a worker ran out of memory or was killed); no plan was made"
            ) from None
        except (OSError, distributed.CancelledError, distributed.TimeoutError) as exc:
            raise ClusterError(
                f"the cluster stopped answering ({type(exc).__name__}: {exc}); no plan was made"
            ) from None


def _getitem(pieces: Sequence[Any], j: int) -> Any:
    return pieces[j]
