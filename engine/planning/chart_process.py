"""The report's charts drawn in a process of their own, beside the work that feeds them.

``equity report`` starts a ``ChartProcess`` first thing: a child Python that imports
matplotlib (the charts' module, ``engine.planning.report_charts``) while this process reads
the inputs and solves the plan, then draws each chart it is sent while this process solves
the scenarios. matplotlib holds the interpreter lock as it draws, so a thread would not
overlap it; a process on the other core does.

The protocol is pickle over the child's stdin and stdout: a job is ``(name, pickle of
(module, function, arguments))`` (``engine.planning.report_chart_data.Job``: plain arrays,
lists and numbers; pickled apart so the child can name the chart it cannot read), a reply
``(name, ok, png or traceback, warnings)``. Jobs are written by a thread of this process,
which also computes those given as a function. The child's stdout carries nothing else (its
own prints go to its stderr), its stderr is kept for the error message; warnings raised while
drawing are raised again here, under this process' filters.

Failures surface as ``ChartError`` naming the chart: a job whose input fails or cannot be
pickled, a drawing that raises (with the child's traceback), a child that ends or cannot
start (with its exit code and the end of its stderr); a child never leaves ``result`` waiting
once it has ended, and ``result`` takes a timeout. Closing the process (or this one
ending) closes the child's stdin, which ends it.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

Job = tuple[str, str, tuple[Any, ...]]  # (module, function, arguments): function(*arguments)
STDERR_KEPT = 4000  # characters of the child's stderr kept for an error message


class ChartError(RuntimeError):
    """A chart could not be drawn in the chart process."""


class ChartProcess:
    """A child process that draws charts: ``submit`` sends a job, ``result`` waits for its
    PNG. Use as a context manager (or ``close``)."""

    def __init__(self, preload: str = "engine.planning.report_charts") -> None:
        import engine

        root = str(Path(engine.__file__).resolve().parent.parent)  # this engine, not another
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "engine.planning.chart_process", preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"})
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._done: dict[str, tuple[bool, Any, list[tuple[str, str]]]] = {}
        self._sent: list[str] = []
        self._ended = False
        self._stderr = ""
        self._cond = threading.Condition()
        # jobs go out from a thread of their own: a job (the frontier's points: megabytes) does
        # not wait in submit() for the child to finish loading matplotlib and read it, and a
        # job given as a function is computed there, beside the caller's own work
        self._outbox: queue.SimpleQueue[tuple[str, Job | Callable[[], Job]] | None] = \
            queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._read, args=(self._proc.stdout,),
                             name="chart-process-out", daemon=True),
            threading.Thread(target=self._drain, name="chart-process-err", daemon=True)]
        self._writer = threading.Thread(target=self._write, name="chart-process-in",
                                        daemon=True)
        for thread in (*self._readers, self._writer):
            thread.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def submitted(self) -> list[str]:
        """The charts sent so far, in order."""
        return list(self._sent)

    def submit(self, name: str, job: Job | Callable[[], Job]) -> None:
        """Send ``job`` to be drawn as chart ``name``; a function returning the job is called
        in the thread that sends it (an error there is the chart's error in ``result``)."""
        if name in self._sent:
            raise ValueError(f"chart {name!r} was already sent to the chart process")
        self._sent.append(name)
        self._outbox.put((name, job))

    def result(self, name: str, timeout: float | None = None) -> bytes:
        """The PNG of chart ``name``; raises ``ChartError`` when it failed or the child
        ended before drawing it, and after ``timeout`` seconds (None: no limit)."""
        if name not in self._sent:
            raise ValueError(f"chart {name!r} was not sent to the chart process")
        with self._cond:
            finished = self._cond.wait_for(lambda: name in self._done or self._ended,
                                           timeout=timeout)
            reply = self._done.get(name)
        if reply is None:
            if not finished:
                raise ChartError(f"chart {name!r}: no reply from the chart process (pid "
                                 f"{self.pid}) within {timeout:g} s")
            raise ChartError(self._ended_message(name))
        ok, value, caught = reply
        for category, message in caught:
            kind = getattr(builtins, category, None)
            if not (isinstance(kind, type) and issubclass(kind, Warning)):
                kind, message = UserWarning, f"{category}: {message}"
            warnings.warn(message, kind, stacklevel=2)
        if not ok:
            raise ChartError(f"chart {name!r} failed in the chart process:\n{value}")
        if not isinstance(value, bytes):
            raise ChartError(f"chart {name!r}: the chart process drew a "
                             f"{type(value).__name__}, not an image")
        return value

    def close(self) -> None:
        """End the child: its stdin closes, so it leaves its loop once its charts are drawn;
        killed at once when a chart sent is still undrawn (no one will read it), or when it
        does not end within a few seconds."""
        with self._cond:
            pending = not self._ended and any(n not in self._done for n in self._sent)
        if pending:
            self._proc.kill()
        self._outbox.put(None)  # the writer closes the child's stdin
        self._writer.join(timeout=5)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for thread in self._readers:
            thread.join(timeout=5)

    def __enter__(self) -> ChartProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------------------- internals

    def _write(self) -> None:
        try:
            while (item := self._outbox.get()) is not None:
                name, job = item
                try:
                    made = job() if callable(job) else job
                    # the job pickled apart: the child knows the chart's name even when the
                    # job cannot be read there
                    payload = pickle.dumps(
                        (name, pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL)),
                        protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:
                    with self._cond:
                        self._done[name] = (False, "its input could not be made or sent:\n"
                                            + traceback.format_exc(), [])
                        self._cond.notify_all()
                    continue
                self._stdin.write(payload)
                self._stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child has ended: result() says why, with its exit code and stderr
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._stdin.close()

    def _read(self, stream: IO[bytes]) -> None:
        try:
            while True:
                name, ok, value, caught = pickle.load(stream)
                with self._cond:
                    self._done[name] = (ok, value, caught)
                    self._cond.notify_all()
        except Exception:  # EOF or a torn reply: the child has ended
            pass
        finally:
            stream.close()
            # the exit code for the message (stdout closes just before the end)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _drain(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        for line in iter(stream.readline, b""):
            with self._cond:
                self._stderr = (self._stderr + line.decode(errors="replace"))[-STDERR_KEPT:]
        stream.close()

    def _ended_message(self, name: str) -> str:
        code = self._proc.poll()
        for thread in self._readers[1:]:
            thread.join(timeout=2)  # the whole of stderr
        with self._cond:
            err = self._stderr.strip()
        return (f"chart {name!r}: the chart process (pid {self.pid}) ended before drawing it "
                f"(exit code {code})" + (f":\n{err}" if err else ""))


# -------------------------------------------------------------------------------- the child


def serve(jobs: IO[bytes], replies: IO[bytes]) -> None:
    """Draw each job read from ``jobs`` and write its reply to ``replies`` until ``jobs``
    ends."""
    import importlib

    while True:
        try:
            name, job = pickle.load(jobs)
        except EOFError:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                module, function, args = pickle.loads(job)
                value: Any = getattr(importlib.import_module(module), function)(*args)
                ok = True
            except Exception:
                value, ok = traceback.format_exc(), False
        seen = list(dict.fromkeys((w.category.__name__, str(w.message)) for w in caught))
        pickle.dump((name, ok, value, seen), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def main(argv: list[str]) -> None:
    # the replies get stdout's descriptor to themselves; print() in a chart goes to stderr
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if argv:  # loaded before the first job arrives
        import importlib

        importlib.import_module(argv[0])
    serve(sys.stdin.buffer, replies)
    replies.close()
    sys.stderr.flush()
    # nothing left to keep: no interpreter teardown (matplotlib's modules take ~0.2 s to
    # unload), which the parent would wait for when it closes the process
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
