"""The block LP's rounds and the hull at scale: the cheaper paths give the same answers.

The few-levels hull tests each chord with differences shared between chords (the same
numbers, so the same points as the general hull); block ids are 32-bit; settled blocks are
merged only past ``MERGE_ABOVE`` columns, and merging or not reaches the same optimum."""

from __future__ import annotations

import numpy as np
import pytest

from engine.hull import _few_levels_hull, _general_hull
from engine.optimize import lp
from engine.optimize.blocks import Blocks
from engine.optimize.increments import HullIncrements
from engine.pipeline import build_model
from engine.portfolio import Portfolio
from engine.synthetic import example


@pytest.mark.parametrize("width", [3, 4, 5, 6, 8])
def test_few_levels_hull_equals_the_general_hull_with_ties_and_points_on_chords(
    width: int,
) -> None:
    rng = np.random.default_rng(width)
    n = 40_000
    cost = np.cumsum(rng.integers(1, 4, (n, width)).astype(float), axis=1)
    value = np.cumsum(rng.normal(1.0, 1.0, (n, width)).round(1), axis=1)  # ties, chords
    value[: n // 4] = 2.0 * cost[: n // 4]  # every level on one line: only the two ends stay
    offsets = np.arange(0, n * width + 1, width, dtype=np.int64)
    fast = _few_levels_hull(n, width, cost.ravel(), value.ravel())
    slow = _general_hull(offsets, cost.ravel(), value.ravel())
    assert np.array_equal(fast.offsets, slow.offsets)
    assert np.array_equal(fast.points, slow.points)
    assert (np.diff(fast.offsets)[: n // 4] == 2).all()
    assert (np.diff(fast.offsets)[n // 4:] < width).any()  # some points dropped elsewhere too


def _model(n: int):  # type: ignore[no-untyped-def]
    customers, prospects, plan = example(n)
    return build_model(Portfolio(customers, prospects), plan)


def test_block_ids_are_32_bit_and_sum_to_the_increments() -> None:
    model = _model(20_000)
    inc = HullIncrements(model.options).apply()
    constrained = np.ones(inc.dc.size, dtype=bool)
    blocks = Blocks.initial(inc, constrained, model.options.n_cells, 32)
    assert blocks.block.dtype == np.int32
    assert blocks.block.min() == 0 and blocks.block.max() == blocks.cell.size - 1
    assert np.allclose(blocks.cost, np.bincount(blocks.block, weights=inc.dc), rtol=1e-12)
    assert np.array_equal(blocks.count, np.bincount(blocks.block))
    ratio = inc.dv / inc.dc + 0.0
    assert (ratio >= blocks.lo[blocks.block]).all() and (ratio < blocks.hi[blocks.block]).all()
    assert (blocks.cell[blocks.block] == inc.cell).all()


def test_merging_settled_blocks_or_not_reaches_the_same_optimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model(8_000)
    settings = lp.LpSettings(method="blocks")
    kept = lp.solve(model.options, model.rows, settings)
    monkeypatch.setattr(lp, "MERGE_ABOVE", 0)  # merge every round, as before the cap
    merged = lp.solve(model.options, model.rows, settings)
    full = lp.solve(model.options, model.rows, lp.LpSettings(method="full"))
    assert kept.iterations > 1 and merged.iterations > 1  # rounds that split (and merge)
    for a in (kept, merged):
        assert a.status == "optimal"
        assert a.bound == pytest.approx(full.bound, rel=1e-9)
        assert a.lp_objective == pytest.approx(full.lp_objective, rel=1e-9)
        assert float(a.equity(model.options).sum()) == pytest.approx(
            float(full.equity(model.options).sum()), rel=1e-9)
