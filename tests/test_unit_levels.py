"""The plan table's level columns (``engine.result.unit_levels``) against their definition,
unit by unit, on random customers and prospect pools: a customer's level; a pool's one
level, or its two levels and the share at the upper one when it is split."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from engine.result import unit_levels


def _expected(levels, pool, lo, hi, theta):  # type: ignore[no-untyped-def]
    rows = []
    for i in range(pool.size):  # the definition, one unit at a time
        low, high = float(levels[lo[i]]), float(levels[hi[i]])
        taken = high if theta[i] > 0 else low
        if not pool[i]:
            rows.append((taken, None, None, None))
        elif 0 < theta[i] < 1 and low != high:
            rows.append((None, low, high, float(theta[i])))
        else:
            rows.append((taken, taken, taken, 0.0))
    return rows


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("level_dtype", [None, pl.Int64, pl.Float64])
def test_level_columns_follow_their_definition(seed: int, level_dtype: pl.DataType | None
                                               ) -> None:
    rng = np.random.default_rng(seed)
    n, width = int(rng.integers(1, 300)), 5
    pool = rng.random(n) < [0.0, 0.05, 0.5, 1.0][seed % 4]
    levels = rng.choice([0.0, 5.0, 10.0, 20.0, 40.0] if seed % 2 else [0.0, 2.5, 7.5, 10.0, 30.0],
                        n * width)
    first = np.arange(n) * width
    lo = first + rng.integers(0, width, n)
    hi = np.where(pool, first + rng.integers(0, width, n), lo)
    theta = np.where(pool, rng.choice([0.0, 0.25, 0.5, 1.0], n),
                     np.where(rng.random(n) < 0.2, 1.0, 0.0))
    options = SimpleNamespace(fractional=pool, level_at=levels.__getitem__)
    allocation = SimpleNamespace(lo=lo, hi=hi, theta=theta)
    out = unit_levels(options, allocation, level_dtype)  # type: ignore[arg-type]
    assert list(out) == ["level", "level_lower", "level_upper", "share_upper"]
    got = list(zip(*(out[k].cast(pl.Float64).to_list() for k in out), strict=True))
    assert got == _expected(levels, pool, lo, hi, theta)
    whole = seed % 2 == 1  # these levels are whole numbers: an Int64 input stays Int64
    for k in ("level", "level_lower", "level_upper"):
        assert out[k].dtype == (pl.Int64 if level_dtype == pl.Int64 and whole else pl.Float64)
    assert out["share_upper"].dtype == pl.Float64
