"""HiGHS for the direct path (engine.optimize.small) and the split proof: solver objects
with its options, and models passed as arrays.

A model here is ``max value.x`` subject to ``coupling x <= rhs`` and each unit's weights
summing to 1, ``0 <= x <= 1``, binary where asked: the per-customer model of
``engine.optimize.small``, passed in HiGHS' C-style ``passModel`` (CSR rows, no PuLP).
"""

from __future__ import annotations

import os
import threading

import highspy
import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine.stdio import native_stdout_silenced

GAP = 1e-9  # relative and absolute MIP gap; the proof's GAP (engine.optimize.proof)
INF = highspy.kHighsInf


_quiet = False  # HiGHS (1.16) prints its banner on the first solver object of a process


def solver(time_limit: float | None) -> highspy.Highs:
    """A silent solver object with the direct path's options (its MIP gaps, tolerance,
    thread pool size and ``time_limit``)."""
    global _quiet
    if _quiet:
        h = highspy.Highs()
    else:
        with native_stdout_silenced():
            h = highspy.Highs()
        _quiet = True
    h.setOptionValue("output_flag", False)
    take_pool_size(h)
    # the feasibility-jump heuristic costs ~8 ms per MIP however small (HiGHS 1.16); these
    # MIPs start from a core that the LP's prices leave, where it finds nothing the
    # branch-and-bound does not find at once
    h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
    h.setOptionValue("mip_rel_gap", GAP)
    h.setOptionValue("mip_abs_gap", GAP)
    # absolute by default (1e-6): tightened so that a small minimum is met, not left short
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    return h


_idle = threading.local()  # per thread: the solver object its last direct solve gave back


def borrow(time_limit: float | None) -> highspy.Highs:
    """``solver(time_limit)``, made once per thread: the object the thread's last direct
    solve gave back (``give_back``) when there is one, its model cleared (making and
    dropping one costs ~50 us, and a solve runs faster in one whose memory is warm: 0.14-0.18
    ms a 100-customer solve). HiGHS' run clock counts every run of an object since it was
    made (a new model, ``clearModel`` or ``clear`` leave it as it is) and the time limit is
    read against it: the limit is set that far past what the clock shows now."""
    h: highspy.Highs | None = getattr(_idle, "h", None)
    if h is None:
        return solver(time_limit)
    _idle.h = None  # one user at a time: a second borrow meanwhile makes its own
    h.clearModel()
    h.setOptionValue("time_limit", INF if time_limit is None
                     else float(h.getRunTime()) + float(time_limit))
    return h


def give_back(h: highspy.Highs) -> None:
    """``h`` (from ``borrow``, done with) kept for the thread's next direct solve; not when
    a caller replaced its ``run`` (a benchmark or a test counting runs)."""
    if "run" not in vars(h):
        _idle.h = h


def take_pool_size(h: highspy.Highs) -> None:
    """``h`` asks for HiGHS' thread pool at its own size. The pool is global to the process
    and made by the first solve; a solver object asking for another size fails to run at
    all. Left unset, every run counts the machine's cores from /sys (~35 us of each ~75 us
    run of a tiny LP, a branch and bound's nodes included); set to the pool's own size, it
    does not. (The general path's solver objects, ``engine.optimize.solvers`` and
    ``engine.optimize.core_lp``, ask the same.)"""
    threads = _pool_threads()
    if threads:
        h.setOptionValue("threads", threads)


_threads: int | None = None  # the size of HiGHS' thread pool in this process, 0: not known


def _pool_threads() -> int:
    """The size of HiGHS' thread pool (made first, at its default size, by a run without
    the option, if no solve of the process made it yet): the one ``threads`` value a
    solver object can take. Found once per process by asking for each size in turn on a
    one-column model (a wrong size only makes that run fail); 0 when none fits (the
    option then stays unset)."""
    global _threads
    if _threads is None:
        found = 0
        sizes = [0, *range(1, max(os.cpu_count() or 1, 1) * 2 + 1)]
        for size in sizes:
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            if size:
                h.setOptionValue("threads", size)
            h.passModel(1, 0, 0, int(highspy.MatrixFormat.kColwise),
                        int(highspy.ObjSense.kMaximize), 0.0, np.ones(1), np.zeros(1),
                        np.ones(1), np.zeros(0), np.zeros(0), np.zeros(2, dtype=np.int32),
                        np.zeros(0, dtype=np.int32), np.zeros(0), np.zeros(1, dtype=np.int32))
            if h.run() == highspy.HighsStatus.kOk and size:
                found = size
                break
        _threads = found
    return _threads


def pass_model(
    h: highspy.Highs,
    value: NDArray[np.float64],
    coupling: NDArray[np.float64] | sparse.spmatrix,
    rhs: NDArray[np.float64],
    offsets: NDArray[np.int64],
    integral: NDArray[np.bool_] | None,
) -> bool:
    """max value.x s.t. coupling x <= rhs (dense, or sparse for the proof's cores), each
    unit's weights (columns offsets[u] to offsets[u+1]) summing to 1, 0 <= x <= 1, binary
    where ``integral``."""
    n, m, units = value.size, rhs.size, offsets.size - 1
    if sparse.issparse(coupling):  # the proof's core (engine.optimize.proof): CSR rows
        csr = sparse.csr_matrix(coupling)
        k_rows = np.repeat(np.arange(m), np.diff(csr.indptr))
        cols, entries = csr.indices.astype(np.int64), csr.data
    else:
        k_rows, cols = np.nonzero(coupling)  # row-major: the coupling rows' CSR order
        entries = coupling[k_rows, cols]
    start = np.concatenate([np.searchsorted(k_rows, np.arange(m + 1)), k_rows.size + offsets[1:]])
    index = np.concatenate([cols, np.arange(n)]).astype(np.int32)
    # integer where ``integral`` (the core's columns), else continuous: an LP
    kinds = np.zeros(n, dtype=np.int32) if integral is None else integral.astype(np.int32)
    # the model as arrays (HiGHS' C-style passModel): a HighsLp's matrix takes its vectors
    # element by element (0.17 ms of 0.2 ms per model at 530 options)
    status = h.passModel(
        n, m + units, index.size, int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMaximize), 0.0,
        np.ascontiguousarray(value, dtype=np.float64), np.zeros(n), np.ones(n),
        np.concatenate([np.full(m, -INF), np.ones(units)]),
        np.concatenate([rhs, np.ones(units)]).astype(np.float64),
        start.astype(np.int32), index, np.concatenate([entries, np.ones(n)]), kinds)
    # a warning is a model HiGHS took, with entries below 1e-9 dropped as it does through
    # PuLP too (a level costing 4e-215 once stopped the proof here)
    return bool(status != highspy.HighsStatus.kError)
