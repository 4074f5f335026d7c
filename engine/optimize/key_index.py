"""A partition's constrained hull increments indexed by (cell, ratio key), sorted lazily.

A distributed allocation asks each partition, round after round, for the increments whose
ratio keys (``engine.optimize.blocks.float_key``) fall in given key ranges of a cell. A full
sort of the keys answers by binary search but costs a comparison sort of every increment
(0.25 s for a partition of 2.5M increments: most of the partition's set-up). :class:`KeyIndex`
instead groups the increments by cell and *bucket* (the key's sign and exponent, ``key >>
BUCKET_SHIFT``: one power of two of the ratio) with two 16-bit radix passes, and sorts a
bucket by key only the first time a range ends inside it (a few buckets per cell: those
near the cell's price). A bucket wholly inside a range is a slice, in increment order.

What :meth:`KeyIndex.members` returns does not depend on which buckets were sorted before:
per cell, the members in whole buckets (by range, bucket, then increment), then those in
partly covered buckets (by bucket, range, then the bucket's own sorted order: key, then
increment, the same whenever it is sorted). A worker rebuilt mid-run from its files
(``engine.optimize.cluster``) therefore sums the same numbers in the same order.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BUCKET_SHIFT = 52  # a bucket: the key's sign and 11 exponent bits (int16 after the shift)


class KeyIndex:
    """The increments with ``constrained`` set, grouped by (cell, bucket of ``key``)."""

    def __init__(self, key: NDArray[np.int64], cell: NDArray[np.integer],
                 constrained: NDArray[np.bool_], n_cells: int) -> None:
        self.key = key
        every = bool(constrained.all())
        idx = None if every else np.flatnonzero(constrained)
        k = key if idx is None else key[idx]
        c = cell if idx is None else cell[idx]
        bucket = ((k >> BUCKET_SHIFT) + 2048).astype(np.uint16)  # 0 .. 4095
        if n_cells <= 16:  # (cell, bucket) in 16 bits: one stable radix pass
            code = (c.astype(np.uint16) << 12) | bucket
            order = np.argsort(code, kind="stable")
        else:  # two stable radix passes (16-bit keys): by bucket, then by cell
            order = np.argsort(bucket, kind="stable")
            order = order[np.argsort(c[order].astype(np.uint16), kind="stable")]
            code = c.astype(np.int64) << 12 | bucket
        code = code[order]
        dtype = np.int32 if key.size < np.iinfo(np.int32).max else np.int64
        self.pos = (order if idx is None else idx[order]).astype(dtype)  # by (cell, bucket)
        first = (np.r_[0, np.flatnonzero(code[1:] != code[:-1]) + 1] if code.size
                 else np.zeros(0, dtype=np.int64))
        self.start = np.r_[first, code.size].astype(np.int64)  # group g: start[g]:start[g+1]
        g_key = k[order]
        self.low = (np.minimum.reduceat(g_key, first) if first.size
                    else np.zeros(0, dtype=np.int64))  # each group's least and largest key
        self.high = (np.maximum.reduceat(g_key, first) if first.size
                     else np.zeros(0, dtype=np.int64))
        g_cell = code[first].astype(np.int64) >> 12
        self.cell_group = np.searchsorted(g_cell, np.arange(n_cells + 1)).astype(np.int64)
        self._sorted: dict[int, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}

    def sorted_group(self, g: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Group ``g``'s increments by (key, index) and their keys (sorted once, kept)."""
        found = self._sorted.get(g)
        if found is None:
            pos = self.pos[self.start[g]:self.start[g + 1]].astype(np.int64)
            keys = self.key[pos]
            order = np.argsort(keys, kind="stable")
            found = (pos[order], keys[order])
            self._sorted[g] = found
        return found

    def count(self, c: int) -> int:
        """How many increments cell ``c`` has."""
        return int(self.start[self.cell_group[c + 1]] - self.start[self.cell_group[c]])

    def members(self, ranges: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Increments with key in one of ``ranges`` (rows of cell, first key, end key, ...;
        end exclusive; disjoint within a cell): (index, range), in the order above."""
        found, which = [], []
        for c in np.unique(ranges[:, 0]):
            own = np.flatnonzero(ranges[:, 0] == c)
            g0, g1 = int(self.cell_group[c]), int(self.cell_group[c + 1])
            if g0 == g1:
                continue
            low, high = self.low[g0:g1], self.high[g0:g1]
            lo, hi = ranges[own, 1], ranges[own, 2]
            a = np.searchsorted(high, lo, side="left")  # first group with a key >= lo
            b = np.searchsorted(low, hi, side="left")  # groups before b have a key < hi
            a_part = (a < b) & (low[np.minimum(a, g1 - g0 - 1)] < lo)
            b_part = (a < b) & (high[np.maximum(b - 1, 0)] >= hi)
            fa = a + a_part  # whole groups [fa, fb)
            fb = np.maximum(b - b_part, fa)
            start = self.start[g0 + fa]
            count = self.start[g0 + fb] - start
            total = int(count.sum())
            if total:
                before = np.cumsum(count) - count
                at = np.repeat(start - before, count) + np.arange(total)
                found.append(self.pos[at].astype(np.int64))
                which.append(np.repeat(own, count))
            # groups a range ends inside: their sorted keys, by binary search
            b_only = b_part & ~(a_part & (b - 1 == a))  # a range within one group: once
            part_g = np.concatenate([a[a_part], b[b_only] - 1])
            part_r = np.concatenate([own[a_part], own[b_only]])
            if not part_g.size:
                continue
            idx_parts, rid_parts = [], []
            for g in np.unique(part_g):
                rows = part_r[part_g == g]
                pos, keys = self.sorted_group(g0 + int(g))
                s = np.searchsorted(keys, ranges[rows, 1], side="left")
                e = np.maximum(np.searchsorted(keys, ranges[rows, 2], side="left"), s)
                n = e - s
                k = int(n.sum())
                if k:
                    before = np.cumsum(n) - n
                    idx_parts.append(pos[np.repeat(s - before, n) + np.arange(k)])
                    rid_parts.append(np.repeat(rows, n))
            found.extend(idx_parts)
            which.extend(rid_parts)
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(found), np.concatenate(which)

    def near(self, c: int, k: int, n: int) -> NDArray[np.int64]:
        """Cell ``c``'s increments at places ``[at - n, at + n)`` in its (key, index) order,
        ``at`` being the first place whose key is ``k`` or more."""
        g0, g1 = int(self.cell_group[c]), int(self.cell_group[c + 1])
        if g0 == g1:
            return np.zeros(0, dtype=np.int64)
        g = g0 + min(int(np.searchsorted(self.high[g0:g1], k, side="left")), g1 - g0 - 1)
        keys = self.sorted_group(g)[1]
        at = int(self.start[g]) + int(np.searchsorted(keys, k, side="left"))
        lo = max(int(self.start[g0]), at - n)
        hi = min(int(self.start[g1]), at + n)
        out = []
        for h in range(g0, g1):  # the groups the window covers, each in key order
            s, e = int(self.start[h]), int(self.start[h + 1])
            if e <= lo or s >= hi:
                continue
            own = self.sorted_group(h)[0]
            out.append(own[max(lo, s) - s:min(hi, e) - s])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
