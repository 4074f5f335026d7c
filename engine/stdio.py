"""Keeping native libraries' output off standard output.

Standard output belongs to the engine's own results: ``equity allocate --json`` prints one
JSON document and programs parse it. Native libraries write to file descriptor 1 directly,
past Python's ``sys.stdout``: HiGHS 1.16 prints a copyright banner whenever a solver object
is made, whatever its options say afterwards. Two guards, used together:

* ``native_stdout_silenced()`` wraps a solver call: file descriptor 1 points at the null
  device while it runs. It is reference-counted, so concurrent solves in threads share one
  redirection instead of restoring each other's descriptors in the wrong order.
* ``reserve_stdout()`` is called once by the command line before any command runs: Python's
  ``sys.stdout`` moves to a private duplicate of descriptor 1, and descriptor 1 itself is
  pointed at standard error. Whatever any library writes natively, now or in a future
  version, ends up on stderr; only what the engine prints reaches stdout.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_saved: int | None = None


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Point file descriptor 1 at the null device for the duration (nested and thread-safe)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _flush_python_stdout()
            try:
                _saved = os.dup(1)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.close(null)
            except OSError:  # no descriptor 1 (embedded interpreters): nothing to protect
                _saved = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                os.dup2(_saved, 1)
                os.close(_saved)
                _saved = None


def reserve_stdout() -> None:
    """Give ``sys.stdout`` a private copy of descriptor 1 and send descriptor 1 to stderr.

    Idempotent; a no-op when stdout is not a real file (pytest's capture, a StringIO).
    """
    stream = sys.stdout
    if getattr(stream, "_equity_reserved", False):
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    if fd != 1:
        return
    stream.flush()
    line_buffering = bool(getattr(stream, "line_buffering", False))
    private = os.dup(1)
    os.dup2(2, 1)
    replacement = io.TextIOWrapper(
        os.fdopen(private, "wb", buffering=0 if line_buffering else -1),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=line_buffering,
        write_through=line_buffering,
    )
    replacement._equity_reserved = True  # type: ignore[attr-defined]
    sys.stdout = replacement


def _flush_python_stdout() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
