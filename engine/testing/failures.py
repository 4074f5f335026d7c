"""How every check fails: an ``AssertionError`` naming the strategy class, its kind and
name, then the broken rule.
"""

from __future__ import annotations

from typing import Any, NoReturn


def label(cls: Any) -> str:
    """``ClassName (kind 'name')``: how a failure names the strategy."""
    kind = getattr(cls, "kind", "?")
    name = getattr(cls, "name", "?")
    return f"{getattr(cls, '__name__', repr(cls))} ({kind} {name!r})"


def fail(cls: Any, message: str) -> NoReturn:
    """Raise the ``AssertionError`` of a broken rule, naming ``cls``."""
    raise AssertionError(f"{label(cls)}: {message}")
