"""Chunked passes on threads (``engine.parallel``): every piece once, errors raised, the
same bits as one thread, and a forked child that makes its own pool."""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import pytest

from engine import parallel
from engine.optimize import lp
from engine.pipeline import build_model
from engine.portfolio import Portfolio
from engine.synthetic import example


def test_every_piece_runs_once_on_more_than_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EQUITY_THREADS", "2")
    out = np.zeros(1000, dtype=np.int64)
    names: set[str] = set()

    def piece(lo: int, hi: int) -> None:
        names.add(threading.current_thread().name)
        out[lo:hi] += np.arange(lo, hi)

    parallel.each(piece, out.size, 7)  # 143 pieces, the last shorter
    assert np.array_equal(out, np.arange(1000))
    assert all(n.startswith("equity-pass") for n in names)


def test_small_passes_and_one_thread_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def piece(lo: int, hi: int) -> None:
        seen.append(threading.current_thread().name)

    monkeypatch.setenv("EQUITY_THREADS", "2")
    parallel.each(piece, 10, 5)  # 2 pieces: fewer than MIN_PIECES
    monkeypatch.setenv("EQUITY_THREADS", "1")
    parallel.each(piece, 100, 1)
    assert set(seen) == {threading.current_thread().name}


def test_an_error_in_a_piece_is_raised_and_a_pass_inside_a_pass_runs_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EQUITY_THREADS", "2")

    def bad(lo: int, hi: int) -> None:
        if lo == 50:
            raise ValueError("piece 50")

    with pytest.raises(ValueError, match="piece 50"):
        parallel.each(bad, 100, 10)
    inner = np.zeros(100)

    def outer(lo: int, hi: int) -> None:  # would wait on itself if it took the pool's threads
        def fill(a: int, b: int) -> None:
            inner[lo + a:lo + b] = 1.0

        parallel.each(fill, hi - lo, 1)

    parallel.each(outer, 100, 10)
    assert inner.sum() == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_makes_its_own_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EQUITY_THREADS", "2")
    parallel.each(lambda lo, hi: None, 100, 1)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are gone; a new pool or a hang
        ok = np.zeros(100)

        def piece(lo: int, hi: int) -> None:
            ok[lo:hi] = 1.0

        parallel.each(piece, 100, 1)
        os._exit(0 if ok.sum() == 100 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _digest(monkeypatch: pytest.MonkeyPatch, threads: str) -> str:
    monkeypatch.setenv("EQUITY_THREADS", threads)
    customers, prospects, plan = example(600_000)
    model = build_model(Portfolio(customers, prospects), plan)
    o = model.options
    a = lp.solve(o, model.rows, lp.LpSettings(repair=False))
    arrays = (o.level, o.cost, o.value, o.hull.points, o.hull.offsets, a.lo, a.hi, a.theta,
              np.array([a.bound, a.lp_objective]))
    return hashlib.sha256(b"".join(x.tobytes() for x in arrays)).hexdigest()


def test_options_hull_and_lp_are_the_same_bits_on_one_thread_and_on_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _digest(monkeypatch, "1") == _digest(monkeypatch, "3")


def test_a_local_cluster_s_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    from engine.optimize.cluster import connect

    monkeypatch.setenv("EQUITY_THREADS", "4")
    with connect("local:2") as client:
        found = client.run(lambda: os.environ.get("EQUITY_THREADS"))
    assert sorted(found.values()) == ["2", "2"]
