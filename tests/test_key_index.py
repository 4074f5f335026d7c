"""engine.optimize.key_index against a full sort: the same members, the same neighbours of a
price, and members in an order that does not depend on the buckets sorted before."""

from __future__ import annotations

import numpy as np
import pytest

from engine.optimize.blocks import float_key
from engine.optimize.key_index import BUCKET_SHIFT, KeyIndex

KEY_MIN, KEY_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def _case(seed: int, n: int = 20_000, cells: int = 4):
    rng = np.random.default_rng(seed)
    ratio = np.exp(rng.normal(0.0, 3.0, n)) * rng.choice([-1.0, 1.0], n, p=[0.2, 0.8])
    ratio[rng.random(n) < 0.1] = 1.5  # ties
    key = float_key(ratio + 0.0)
    cell = rng.integers(0, cells, n).astype(np.int16)
    constrained = ((cell != 1) & (rng.random(n) < 0.9) if seed % 3
                   else np.ones(n, dtype=bool))  # every increment: no selection
    return rng, key, cell, constrained, KeyIndex(key, cell, constrained, cells)


def _ranges(rng: np.random.Generator, key: np.ndarray, cells: int, shift: int) -> np.ndarray:
    """Disjoint ranges per cell cut at ``shift`` bits around random keys, some of them whole
    buckets, some ending inside one, the first round's whole cells."""
    rows = []
    for c in range(cells):
        picks = np.unique(rng.choice(key, 12) >> shift)
        for sub in picks[rng.random(picks.size) < 0.7]:
            rows.append([c, int(sub) << shift, (int(sub) + 1) << shift if sub < (
                KEY_MAX >> shift) else KEY_MAX])
    rows.append([cells - 1, KEY_MIN, KEY_MAX])
    out = np.array(rows, dtype=np.int64)
    return out[out[:, 0] != cells - 1] if len(out) > 1 and rng.random() < 0.5 else out


def _brute(key, cell, constrained, ranges):
    idx, rid = [], []
    for r, (c, lo, hi) in enumerate(ranges[:, :3]):
        hit = np.flatnonzero(constrained & (cell == c) & (key >= lo) & (key < hi))
        idx.append(hit)
        rid.append(np.full(hit.size, r))
    return np.concatenate(idx), np.concatenate(rid)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shift", [BUCKET_SHIFT + 4, BUCKET_SHIFT, 48, 40, 20])
@pytest.mark.parametrize("cells", [4, 40])  # one radix pass (cell and bucket in 16 bits), two
def test_members_are_those_of_a_full_sort(seed: int, shift: int, cells: int) -> None:
    rng, key, cell, constrained, index = _case(seed, cells=cells)
    ranges = _ranges(rng, key, cells, shift)
    got_idx, got_rid = index.members(ranges)
    want_idx, want_rid = _brute(key, cell, constrained, ranges)
    assert got_idx.size == want_idx.size
    got = np.lexsort((got_idx, got_rid))
    want = np.lexsort((want_idx, want_rid))
    assert np.array_equal(got_idx[got], want_idx[want])
    assert np.array_equal(got_rid[got], want_rid[want])


def test_members_order_does_not_depend_on_earlier_calls() -> None:
    rng, key, cell, constrained, index = _case(8)
    ranges = _ranges(rng, key, 4, 44)
    fresh = KeyIndex(key, cell, constrained, 4)
    index.members(_ranges(np.random.default_rng(1), key, 4, 36))  # sorts other buckets
    for c in range(4):
        index.near(c, int(key[0]), 50)
    a, b = index.members(ranges), fresh.members(ranges)
    assert len(index._sorted) > len(fresh._sorted)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("seed", range(4))
def test_near_is_the_window_of_a_full_sort(seed: int) -> None:
    rng, key, cell, constrained, index = _case(seed)
    for c in range(4):
        own = np.flatnonzero(constrained & (cell == c))
        if not own.size:
            continue
        order = own[np.lexsort((own, key[own]))]
        for price in [*rng.choice(key[own], 5), KEY_MIN, KEY_MAX - 1,
                      int(float_key(np.array([1.5]))[0])]:
            at = int(np.searchsorted(key[order], price, side="left"))
            for n in (1, 40, 5000):
                want = order[max(0, at - n):at + n]
                got = index.near(c, int(price), n)
                assert np.array_equal(got, want), (c, price, n)
    if seed % 3:
        assert index.near(1, 0, 10).size == 0  # a cell without constrained increments
