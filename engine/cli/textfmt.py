"""Figures and counts as the command line prints them: no negative zero, correct plurals."""

from __future__ import annotations

import math
from typing import Any


def number(x: Any, spec: str = ",.2f") -> str:
    """``format(x, spec)``, with ``n/a`` for None or non-finite values and never ``-0.00``:
    a figure that rounds to zero prints without a sign."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    text = format(x, spec)
    if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 breakpoint``, ``2 breakpoints``; ``n`` with thousands separators."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
