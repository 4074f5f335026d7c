"""A HiGHS MIP held to a hard deadline.

HiGHS checks its clock only between the steps of its search: its root node (presolve,
cuts, conflict propagation) runs to its end however long it takes — 6 s on a core of
8,500 levels and 41 limits against a 2 s limit. A time limit the user sets must hold, so
the MIP runs in a child forked from this process, with the model already passed: the
child sends back each improving plan as HiGHS finds it (with the dual bound at that
moment) and its final answer; at the deadline the parent kills it and answers with the
best plan received. Forking shares the model without copying or pickling it; HiGHS'
thread pool, global to a process, is rebuilt in the child (its worker threads do not
survive the fork).

The child is used only from the main thread of a process (a fork from another thread
would carry a server's locks into the child) and where the platform forks; elsewhere the
MIP runs in this process under HiGHS' own time limit, as before. So it does when the child
cannot rebuild HiGHS' thread pool (HiGHS refuses at times, "Invalid argument", when the
parent's pool was mid-task at the fork): the child says it is ready only once it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import struct
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

# the slack past the deadline for the child's last words, before it is killed
GRACE = 0.05
_HEAD = struct.Struct("<Bqdd")  # kind, number of chosen columns, objective, dual bound
_READY, _PLAN, _FINAL = 0, 1, 2
_WORDS = ("optimal", "infeasible", "time_limit", "error")  # a final message's status codes
_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
}


@dataclass
class MipAnswer:
    """What a bounded run found: ``status`` is "optimal" (proven within the gaps set),
    "infeasible", "time_limit" (a plan, not proven) or "error" (no plan); ``chosen`` the
    columns at 1 (every column binary); ``bound`` the proven dual bound (nan unknown)."""

    status: str
    chosen: NDArray[np.int64]
    objective: float
    bound: float
    killed: bool = False


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.current_thread() is threading.main_thread()


def run(
    h: highspy.Highs,
    seconds: float | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> MipAnswer:
    """Run the binary MIP passed to ``h``, answering by ``seconds`` from now at the latest
    (plus :data:`GRACE`), in a forked child when :func:`can_fork` (else in process)."""
    if seconds is None or not can_fork():
        h.run()
        return _final(h)
    deadline = time.perf_counter() + seconds
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns of forks beside other threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup of the parent's objects on exit
        os.close(read_end)
        code = 1
        try:
            _child(h, write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        answer = _parent(read_end, deadline, should_stop)
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if answer is not None:
        return answer
    log.debug("the MIP's child could not start HiGHS; solved in this process")
    h.run()  # HiGHS' own limit (set by the caller) as the only clock
    return _final(h)


def _child(h: highspy.Highs, out: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this one stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    highspy.Highs.resetGlobalScheduler(False)  # the parent's pool threads are not here
    _send(out, _READY, np.zeros(0, dtype=np.int64), float("nan"), float("nan"))

    def improving(event: highspy.HighsCallbackEvent) -> None:
        data = event.data_out
        x = np.asarray(data.mip_solution)
        _send(out, _PLAN, np.flatnonzero(x > 0.5), float(data.objective_function_value),
              float(data.mip_dual_bound))

    h.cbMipImprovingSolution.subscribe(improving)
    h.run()
    answer = _final(h)
    _send(out, _FINAL, answer.chosen, answer.objective, answer.bound,
          status=_WORDS.index(answer.status))


def _send(out: int, kind: int, chosen: NDArray[np.int64], objective: float, bound: float,
          status: int = 0) -> None:
    body = np.ascontiguousarray(chosen, dtype=np.int64).tobytes()
    data = _HEAD.pack(kind | (status << 4), chosen.size, objective, bound) + body
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _final(h: highspy.Highs) -> MipAnswer:
    status = h.getModelStatus()
    info = h.getInfo()
    has_plan = info.primal_solution_status == 2  # a feasible plan found
    word = _STATUS.get(status, "time_limit" if has_plan else "error")
    if word == "infeasible":
        has_plan = False
    chosen = (np.flatnonzero(np.asarray(h.getSolution().col_value) > 0.5) if has_plan
              else np.zeros(0, dtype=np.int64))
    objective = float(info.objective_function_value) if has_plan else float("nan")
    bound = float(info.mip_dual_bound) if has_plan else float("nan")
    return MipAnswer(word, chosen, objective, bound)


def _parent(
    fd: int,
    deadline: float,
    should_stop: Callable[[], bool],
) -> MipAnswer | None:
    """The child's answer, or its best plan at the deadline; None when the child ended
    before it was ready (the MIP is then solved in this process)."""
    best = MipAnswer("error", np.zeros(0, dtype=np.int64), float("nan"), float("nan"),
                     killed=True)
    started = False
    buffer = bytearray()
    while True:
        left = deadline + GRACE - time.perf_counter()
        if left <= 0 or should_stop():
            return best
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:  # the child ended without its final answer (killed, crashed)
            return best if started else None
        buffer += chunk
        while len(buffer) >= _HEAD.size:
            kind, n, objective, bound = _HEAD.unpack_from(buffer)
            size = _HEAD.size + 8 * n
            if len(buffer) < size:
                break
            chosen = np.frombuffer(bytes(buffer[_HEAD.size:size]), dtype=np.int64)
            del buffer[:size]
            if kind & 0xF == _READY:
                started = True
            elif kind & 0xF == _FINAL:
                return MipAnswer(_WORDS[kind >> 4], chosen, objective, bound)
            else:
                best = MipAnswer("time_limit", chosen, objective, bound, killed=True)
