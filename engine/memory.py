"""Fresh memory for large arrays: numpy's transparent huge pages, off where they stall.

numpy advises the kernel to back every array of 4 MiB or more with transparent huge pages
(``madvise(MADV_HUGEPAGE)``). Where the kernel then compacts memory synchronously to find
each free 2 MiB page (``/sys/kernel/mm/transparent_hugepage/defrag`` set to ``madvise``,
``defer+madvise`` or ``always``: the usual default is ``madvise``), a page fault on a fresh
array can wait milliseconds, and an allocation over millions of customers touches gigabytes
of fresh arrays. At 10M customers (``benchmarks/bench_cluster.py``, one machine) the run
spent 13.2 s of system time with the advice and 7.4 s without, the same plan bit for bit
(docs/scaling.md, "Where the time goes").

:func:`configure` turns the advice off once per process when the kernel would compact
synchronously; with ``defer`` or ``never`` (no stall) numpy keeps its default. The
environment variable ``EQUITY_NUMPY_HUGEPAGES=1`` keeps numpy's default in any case.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path

DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")
STALLS = frozenset({"always", "madvise", "defer+madvise"})

_lock = threading.Lock()
_done = False


def compacts_on_fault(setting: str) -> bool:
    """Whether a ``defrag`` setting (the file's text: the chosen value in brackets) makes a
    huge-page fault in an advised region compact memory synchronously."""
    chosen = [w[1:-1] for w in setting.split() if w.startswith("[") and w.endswith("]")]
    return bool(chosen) and chosen[0] in STALLS


def configure() -> bool:
    """Turn numpy's huge-page advice off for this process when faults would stall on
    compaction; the first call decides, later ones return at once. Returns whether the
    advice is off."""
    global _done
    with _lock:
        if _done:
            return _advice_off()
        _done = True
        if os.environ.get("EQUITY_NUMPY_HUGEPAGES") == "1":
            return False
        try:
            setting = DEFRAG.read_text()
        except OSError:  # not Linux, or no transparent huge pages: nothing to turn off
            return False
        if not compacts_on_fault(setting):
            return False
        _set_advice(False)
        return True


def _set_advice(enabled: bool) -> None:
    setter = getattr(_multiarray(), "_set_madvise_hugepage", None)
    if setter is not None:  # numpy's switch (private, stable since 1.20); absent: no advice
        setter(enabled)


def _advice_off() -> bool:
    getter = getattr(_multiarray(), "_get_madvise_hugepage", None)
    return getter is None or not bool(getter())


def _multiarray() -> object:
    return importlib.import_module("numpy._core.multiarray")
