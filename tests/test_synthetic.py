"""The example portfolio's columns built columnar are the ones a per-customer construction
gives: the same ids, segment names and dtypes for every size and segment list."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.synthetic import SEGMENTS, customers


@pytest.mark.parametrize("n", [1, 9, 10_001])
@pytest.mark.parametrize("segments", [SEGMENTS, ("a", "b"), tuple("abcdefg")])
def test_ids_and_segments_as_one_per_customer(n: int, segments: tuple[str, ...]) -> None:
    table = customers(n, seed=3, segments=segments)
    assert table["customer_id"].to_list() == [f"C{i:07d}" for i in range(n)]
    rng = np.random.default_rng(3)  # the segment draw is the generator's first
    share = np.array([0.08, 0.35, 0.30, 0.12, 0.15])
    share = share[: len(segments)] if len(segments) <= 5 else np.ones(len(segments))
    drawn = rng.choice(len(segments), size=n, p=share / share.sum())
    assert table["segment"].to_list() == [segments[i] for i in drawn]
    assert table.schema["customer_id"] == pl.String
    assert table.schema["segment"] == pl.String


def test_ids_past_seven_digits_keep_every_digit() -> None:
    ids = customers(10_000_001)["customer_id"]
    assert ids[-2:].to_list() == ["C9999999", "C10000000"]
    assert ids.n_unique() == ids.len()
