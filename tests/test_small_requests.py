"""Small requests do no large-request housekeeping: an allocation of a few hundred options
does not hand the heap back to the system (``malloc_trim`` costs more than such a plan's
pages, and takes malloc's locks from the server's other threads); a large one does."""

from __future__ import annotations

import pytest

from engine import memory, pipeline
from engine.pipeline import allocate
from engine.portfolio import Portfolio
from engine.synthetic import example


def _releases(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(memory, "release", lambda: calls.append(1))
    return calls


def test_a_small_allocation_keeps_its_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _releases(monkeypatch)
    customers, pools, plan = example(100, seed=1)
    result = allocate(Portfolio(customers, pools), plan)
    assert result.summary.status == "optimal"
    assert calls == []


def test_a_large_allocation_returns_its_free_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _releases(monkeypatch)
    monkeypatch.setattr(pipeline, "RELEASE_OPTIONS", 100)  # these 500 options count as large
    customers, pools, plan = example(100, seed=1)
    allocate(Portfolio(customers, pools), plan)
    assert calls == [1]
