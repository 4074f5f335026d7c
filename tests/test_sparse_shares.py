"""The LP's shares kept sparse (``engine.optimize.increments.Shares``) and 32-bit hull
indices: the same plan as the dense shares and 64-bit indices, with less memory."""

from __future__ import annotations

import numpy as np
import pytest

from engine.hull import index_dtype, upper_hull
from engine.optimize import lp
from engine.optimize.blocks import expand
from engine.optimize.increments import HullIncrements, Shares
from engine.pipeline import build_model
from engine.portfolio import Portfolio
from engine.synthetic import example


def _random_shares(rng: np.random.Generator, n: int, n_blocks: int) -> Shares:
    block = rng.integers(0, n_blocks, n).astype(np.int32)
    full = rng.random(n_blocks) < 0.5
    pos = np.sort(rng.choice(n, n // 10, replace=False)).astype(np.int64)
    values = rng.choice([0.0, 1.0, 0.25, 1e-13, 1 - 1e-13], pos.size)
    return Shares(block, full, pos, values)


def _dense(s: Shares) -> np.ndarray:
    out = s.full[s.block].astype(np.float64)
    out[s.pos] = s.values
    return out


@pytest.mark.parametrize("seed", range(4))
def test_shares_read_as_the_dense_array(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = _random_shares(rng, 300_000, 50)  # more than one piece (CHUNK) of increments
    dense = _dense(s)
    assert np.array_equal(s.dense(), dense)
    for lo, hi in ((0, 10), (5, 131_073), (131_072, 300_000), (299_999, 300_000)):
        assert np.array_equal(s.piece(lo, hi), dense[lo:hi])
    at = rng.integers(0, s.size, 5_000)
    assert np.array_equal(s.at(at), dense[at])
    assert np.array_equal(s.at(s.pos), s.values)
    x = rng.normal(size=s.size)
    assert s.dot(x) == pytest.approx(float(x @ dense), rel=1e-12)
    empty = Shares(s.block, s.full, s.pos[:0], s.values[:0])
    assert np.array_equal(empty.at(at), s.full[s.block[at]].astype(np.float64))


def _model(n: int):  # type: ignore[no-untyped-def]
    customers, prospects, plan = example(n)
    return build_model(Portfolio(customers, prospects), plan)


def test_prefix_fill_and_invert_on_shares_equal_the_dense_path() -> None:
    model = _model(20_000)
    options = model.options
    inc = HullIncrements(options).apply()
    rng = np.random.default_rng(7)
    # shares in order per unit: whole increments first, one partial, then none
    counts = np.diff(inc.start)
    whole = rng.integers(0, counts + 1)
    j = np.arange(inc.dc.size) - np.repeat(inc.start[:-1], counts)
    dense = (j < np.repeat(whole, counts)).astype(np.float64)
    partial = np.flatnonzero(j == np.repeat(whole, counts))[::7]
    dense[partial] = rng.random(partial.size)
    s = _from_dense(dense)
    assert np.array_equal(s.dense(), dense)
    filled = inc.prefix_fill(s)
    assert isinstance(filled, Shares)  # in order: stays sparse
    reference = inc.prefix_fill(dense.copy())
    assert isinstance(reference, np.ndarray) and np.array_equal(filled.dense(), reference)
    hull = HullIncrements(options)
    a, b = hull.invert(inc, filled), hull.invert(inc, reference)
    assert np.array_equal(a.lo, b.lo) and np.array_equal(a.hi, b.hi)
    assert np.array_equal(a.theta, b.theta)
    # out of order (a unit's second step whole, its first not): the dense refill, the same
    u = int(np.flatnonzero(counts >= 2)[0])
    shuffled = dense.copy()
    shuffled[inc.start[u]], shuffled[inc.start[u] + 1] = 0.0, 1.0
    out = inc.prefix_fill(_from_dense(shuffled))
    assert isinstance(out, np.ndarray)
    assert np.array_equal(out, np.asarray(inc.prefix_fill(shuffled.copy())))
    assert out[inc.start[u]] == 1.0  # refilled in order


def _from_dense(dense: np.ndarray) -> Shares:
    block = np.zeros(dense.size, dtype=np.int32)
    block[dense >= 1.0] = 1
    pos = np.flatnonzero((dense > 0) & (dense < 1))
    return Shares(block, np.array([False, True]), pos, dense[pos].copy())


def test_the_lp_on_sparse_shares_gives_the_dense_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(30_000)
    settings = lp.LpSettings(method="blocks")
    sparse = lp.solve(model.options, model.rows, settings)
    seen: list[object] = []

    def dense(*args: object) -> np.ndarray:
        out = expand(*args)  # type: ignore[arg-type]
        seen.append(out)
        return out

    monkeypatch.setattr(lp, "shares", dense)
    full = lp.solve(model.options, model.rows, settings)
    assert seen, "the dense path did not run"
    assert np.array_equal(sparse.lo, full.lo) and np.array_equal(sparse.hi, full.hi)
    assert np.array_equal(sparse.theta, full.theta)
    assert sparse.bound == full.bound and sparse.status == full.status == "optimal"
    assert sparse.integer_bound == full.integer_bound
    assert sparse.lp_objective == pytest.approx(full.lp_objective, rel=1e-14)


def test_hull_indices_are_32_bit_and_the_same_points() -> None:
    options = _model(5_000).options
    hull = options.hull
    assert hull.points.dtype == np.int32 and hull.offsets.dtype == np.int32
    general = upper_hull(options.offsets, options.cost, options.value)
    assert np.array_equal(general.points, hull.points)
    # the same points through the 64-bit general path (a width the grid path does not take)
    from engine.hull import _general_hull

    reference = _general_hull(options.offsets, options.cost, options.value)
    assert reference.points.dtype == np.int64
    assert np.array_equal(reference.points, hull.points)
    assert np.array_equal(reference.offsets, hull.offsets)
    assert index_dtype(2**31 - 2) is np.int32 and index_dtype(2**31) is np.int64
