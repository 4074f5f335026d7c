"""Jobs for the chart process' tests (``tests/test_chart_process.py``), imported by the
child by module and name like the report's own drawing functions."""

from __future__ import annotations

import sys
import time
import warnings


def warn_and_draw(message: str) -> bytes:
    warnings.warn(message, UserWarning, stacklevel=1)
    warnings.warn(message, UserWarning, stacklevel=1)  # twice: reported once
    return b"drawn"


def talk_and_draw() -> bytes:
    print("a stray print in a chart")  # must not reach the replies' stream
    sys.stdout.flush()
    return b"drawn"


def sleep_and_draw(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"drawn"


def not_a_png() -> None:
    return None
