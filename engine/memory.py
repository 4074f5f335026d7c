"""Fresh memory for large arrays: fewer page faults, none stalled on compaction.

An allocation over millions of customers creates and frees gigabytes of arrays, and every
page of a fresh array costs a page fault. Two process settings decide how many faults and
how dear (at 10M customers, ``benchmarks/bench_cluster.py`` one machine: 13.2 s of system
time with neither change, 7.4 s with the first, 3.2 s with both; the same plan bit for bit;
docs/scaling.md, "Where the time goes"):

* numpy advises the kernel to back every array of 4 MiB or more with transparent huge
  pages (``madvise(MADV_HUGEPAGE)``). Where the kernel then compacts memory synchronously
  to find each free 2 MiB page (``/sys/kernel/mm/transparent_hugepage/defrag`` set to
  ``madvise``, the usual default, ``defer+madvise`` or ``always``), a fault can wait
  milliseconds. :func:`configure` turns that advice off there (with ``defer`` or ``never``
  numpy keeps it).
* glibc's malloc maps every block above its threshold (at most 32 MiB) afresh and unmaps it
  when freed, so the next array of that size faults all its pages again. :func:`configure`
  raises the threshold to :data:`MMAP_THRESHOLD` (per-customer arrays at 10M are 80 MB)
  so such blocks are reused from the heap; :func:`release` hands the heap's free pages back
  to the system when an allocation ends.

``EQUITY_MEMORY_DEFAULTS=1`` in the environment keeps numpy's and malloc's defaults.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import threading
from pathlib import Path

DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")
STALLS = frozenset({"always", "madvise", "defer+madvise"})
MMAP_THRESHOLD = 128 << 20  # blocks up to this size come from (and return to) the heap
TRIM_THRESHOLD = 1 << 30  # free memory kept at the heap's top between arrays
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)

_lock = threading.Lock()
_done = False


def compacts_on_fault(setting: str) -> bool:
    """Whether a ``defrag`` setting (the file's text: the chosen value in brackets) makes a
    huge-page fault in an advised region compact memory synchronously."""
    chosen = [w[1:-1] for w in setting.split() if w.startswith("[") and w.endswith("]")]
    return bool(chosen) and chosen[0] in STALLS


def configure() -> bool:
    """Set this process's memory settings (above) once; later calls return at once.
    Returns whether numpy's huge-page advice is off."""
    global _done
    with _lock:
        if _done:
            return _advice_off()
        _done = True
        if os.environ.get("EQUITY_MEMORY_DEFAULTS") == "1":
            return False
        libc = _glibc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        try:
            setting = DEFRAG.read_text()
        except OSError:  # not Linux, or no transparent huge pages: nothing to turn off
            return False
        if not compacts_on_fault(setting):
            return False
        _set_advice(False)
        return True


def release() -> None:
    """Return the heap's free pages to the system (after an allocation: a server keeps
    only what it holds)."""
    if _done and os.environ.get("EQUITY_MEMORY_DEFAULTS") != "1":
        libc = _glibc()
        if libc is not None:
            libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _set_advice(enabled: bool) -> None:
    setter = getattr(_multiarray(), "_set_madvise_hugepage", None)
    if setter is not None:  # numpy's switch (private, stable since 1.20); absent: no advice
        setter(enabled)


def _advice_off() -> bool:
    getter = getattr(_multiarray(), "_get_madvise_hugepage", None)
    return getter is None or not bool(getter())


def _multiarray() -> object:
    return importlib.import_module("numpy._core.multiarray")
