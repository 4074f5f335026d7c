"""Progress reports of the long planning computations (frontier, scenarios, report).

``Progress`` is the callback they take: ``progress(phase, done)`` with ``done`` in [0, 1];
``no_progress`` is the default that ignores them.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


def no_progress(phase: str, done: float) -> None:
    """Ignore a progress report."""
    del phase, done


__all__ = ["Progress", "no_progress"]
