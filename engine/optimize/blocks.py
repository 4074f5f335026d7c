"""The constrained hull increments grouped into ratio blocks: what the LP's columns are.

Within a (segment, kind) cell, increments compete only through their ratio ``dv / dc``, so
the LP sees *blocks* (a cell's increments whose ratio falls in one interval) instead of one
column per customer-level. A block's column has the block's summed cost and value; blocks
are cut at quantiles of a monotone integer key of the ratios' float bits
(:func:`float_key`: no binary search per increment), split where a cell's price falls,
and merged per cell once settled. :func:`fill` and :func:`expand` turn a block solution
into the share taken of every increment (exact within a cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine import parallel
from engine.optimize.increments import CHUNK, Increments, Shares

SHIFT = 48  # keep the sign, 11 exponent bits and 4 mantissa bits of a ratio's key
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)


def float_key(x: NDArray[np.float64]) -> NDArray[np.int64]:
    """An int64 key ordered as the floats ``x`` are (bit trick: flip the magnitude of
    negatives). Integer keys of ratios bin and compare exactly with shifts and integer
    ranges; ``engine.optimize.distributed`` cuts its blocks on them so that partitions agree
    on block bounds without sharing state. Pass ``-0.0`` as ``0.0`` (add ``0.0``): the key
    orders the two apart. ``x`` itself is left as it is."""
    bits = x.view(np.int64)
    key = bits >> 63
    key &= _SIGN_OFF
    key ^= bits
    return key


def key_float(key: NDArray[np.int64]) -> NDArray[np.float64]:
    """Inverse of :func:`float_key`: the floats whose keys are ``key``."""
    return np.asarray(key ^ ((key >> 63) & _SIGN_OFF), dtype=np.int64).view(np.float64)


@dataclass
class Blocks:
    """The constrained increments grouped into blocks, each a (cell, ratio interval) pair.

    Per increment (``idx`` into :class:`Increments`): its ratio, cost, value and block;
    per block: cell, interval ``[lo, hi)`` holding all of its ratios, sums and count.
    """

    idx: NDArray[np.int64] | None  # None: all increments, in order
    dc: NDArray[np.float64]
    dv: NDArray[np.float64]
    block: NDArray[np.integer]  # int32 from ``initial``: one per increment
    cell: NDArray[np.int64]
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    cost: NDArray[np.float64]
    value: NDArray[np.float64]
    count: NDArray[np.int64]
    splittable: NDArray[np.bool_]

    @classmethod
    def initial(
        cls, inc: Increments, constrained: NDArray[np.bool_], n_cells: int, bins: int
    ) -> Blocks:
        """One set of ratio quantiles for all cells, then (cell, bin) pairs. Ratios are
        binned on a monotone integer key of their bits (exponent and 4 mantissa bits), so
        binning millions of them costs a few integer passes, not a binary search each.
        Arrays are computed in place where possible: fresh memory is what costs most."""
        idx: NDArray[np.int64] | None = None
        if constrained.all():  # every cell constrained (a total budget): no copies
            dc, dv, cell = inc.dc, inc.dv, inc.cell
        else:
            idx = np.flatnonzero(constrained)
            dc, dv, cell = inc.dc[idx], inc.dv[idx], inc.cell[idx]
        # The ratios' coarse keys (16 bits: sign, exponent, 4 mantissa bits) in 32-bit
        # integers, in cache-sized pieces; then, in place, their (cell rank, bin) keys and
        # the block ids: one 32-bit array per increment (block ids are few).
        coarse = np.empty(dc.size, dtype=np.int32)

        def coarse_keys(lo: int, hi: int) -> None:  # each piece its own slice: on all cores
            ratio = np.divide(dv[lo:hi], dc[lo:hi])
            ratio += 0.0  # turns -0.0 into 0.0, which the key orders apart
            coarse[lo:hi] = float_key(ratio) >> SHIFT

        parallel.each(coarse_keys, dc.size, CHUNK)
        low, high = int(coarse.min()), int(coarse.max())
        step = max(1, coarse.size // 200_000)
        sample = coarse[::step]
        edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]).astype(np.int64))
        edges = edges[edges > low]
        table = np.searchsorted(edges, np.arange(low, high + 1), side="right").astype(np.int32)
        n_bins = edges.size + 1
        used = _sums(cell, None, n_cells) > 0  # in pieces: ``used[cell] = True`` made
        # numpy cast all 40M 16-bit cells to 64 bits first (320 MB at 10M customers)
        offset = ((np.cumsum(used) - 1) * n_bins).astype(np.int32)  # first key of each cell
        key = coarse  # (cell rank, bin) keys, in place and in cache-sized pieces

        def bins_of(lo: int, hi: int) -> None:
            piece = key[lo:hi]
            piece -= low
            np.take(table, piece, out=piece, mode="clip")
            piece += offset[cell[lo:hi]]

        parallel.each(bins_of, key.size, CHUNK)
        count = _sums(key, None, int(offset[-1]) + n_bins)
        present = count > 0
        ids = (np.cumsum(present) - 1).astype(np.int32)
        _relabel(ids, key)  # the block ids, in place
        block = key
        keys = np.flatnonzero(present)
        bounds = np.concatenate(([-np.inf], key_float(edges << SHIFT), [np.inf]))
        return cls(
            idx=idx,
            dc=dc,
            dv=dv,
            block=block,
            cell=np.flatnonzero(used)[keys // n_bins],
            lo=bounds[keys % n_bins],
            hi=bounds[keys % n_bins + 1],
            cost=_sums(block, dc, keys.size),
            value=_sums(block, dv, keys.size),
            count=count[present],
            splittable=np.ones(keys.size, dtype=bool),
        )

    @classmethod
    def by_cell(cls, inc: Increments, constrained: NDArray[np.bool_]) -> Blocks:
        """One block per cell (the grouping the full method's repair needs)."""
        idx = np.flatnonzero(constrained)
        cells, block = np.unique(inc.cell[idx], return_inverse=True)
        dc, dv = inc.dc[idx], inc.dv[idx]
        n = cells.size
        return cls(
            idx, dc, dv, block, cells, np.full(n, -np.inf), np.full(n, np.inf),
            np.bincount(block, weights=dc).astype(np.float64),
            np.bincount(block, weights=dv).astype(np.float64),
            np.bincount(block), np.ones(n, dtype=bool),
        )

    def ratio(self, positions: NDArray[np.int64]) -> NDArray[np.float64]:
        """Value per unit of spend of the increments at ``positions`` (no full-size copy)."""
        return self.dv[positions] / self.dc[positions] + 0.0

    def increments(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        """Indices into :class:`Increments` of positions in these arrays."""
        return positions if self.idx is None else self.idx[positions]

    def members(self, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Positions (into ``idx``) of the increments of the chosen blocks: one pass (in
        cache-sized pieces: numpy casts a 32-bit index array to 64 bits first)."""
        mask = np.empty(self.block.size, dtype=bool)

        def piece(lo: int, hi: int) -> None:
            np.take(chosen, self.block[lo:hi], out=mask[lo:hi])

        parallel.each(piece, mask.size, CHUNK)
        return np.flatnonzero(mask)

    def split(
        self,
        positions: NDArray[np.int64],
        prices: NDArray[np.float64],
        bins: int,
        owner: NDArray[np.integer] | None = None,
    ) -> None:
        """Split the blocks holding ``positions`` at quantiles of their own ratios and at
        their cell's price (a Python loop over blocks only, never over increments).
        ``owner``: the blocks of ``positions`` when the caller has them."""
        owner = self.block[positions] if owner is None else owner
        if self.cell.size <= np.iinfo(np.uint16).max:  # a stable sort of 16-bit keys is a
            owner = owner.astype(np.uint16)  # radix sort: linear, the same order
        order = np.argsort(owner, kind="stable")
        positions, owner = positions[order], owner[order]
        groups = np.split(positions, np.flatnonzero(np.diff(owner)) + 1)
        del order, owner
        cells, los, his = self.cell.tolist(), self.lo.tolist(), self.hi.tolist()
        flags = self.splittable.tolist()
        sums: list[tuple[NDArray[Any], ...]] = []  # per group: new blocks, cost, value, count
        for group in groups:
            old = int(self.block[group[0]])
            dc, dv = self.dc[group], self.dv[group]
            r = dv / dc + 0.0  # as ratio(): -0.0 as 0.0
            cut = np.append(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]), prices[cells[old]])
            cut = np.unique(cut)
            cut = cut[(cut > r.min()) & (cut <= r.max())]
            if cut.size == 0:  # all ratios equal: the fill already treats it exactly
                flags[old] = False
                one = np.zeros(group.size, dtype=np.intp)  # sums in order, as bincount adds
                sums.append((np.array([old]), np.bincount(one, weights=dc),
                             np.bincount(one, weights=dv), np.array([group.size])))
                continue
            sub = np.searchsorted(cut, r, side="right")
            bounds = np.concatenate(([los[old]], cut, [his[old]]))
            used = np.flatnonzero(np.bincount(sub, minlength=cut.size + 1))
            ids = np.empty(cut.size + 1, dtype=np.int64)
            ids[used[0]] = old
            ids[used[1:]] = np.arange(len(cells), len(cells) + used.size - 1)
            los[old], his[old] = float(bounds[used[0]]), float(bounds[used[0] + 1])
            for s in used[1:]:
                cells.append(cells[old])
                los.append(float(bounds[s]))
                his.append(float(bounds[s + 1]))
                flags.append(True)
            self.block[group] = ids[sub]
            # the new blocks' sums from this group alone (each block's members are in one
            # group, summed in the same order as one pass over all groups would)
            sums.append((ids[used], np.bincount(sub, weights=dc)[used],
                         np.bincount(sub, weights=dv)[used], np.bincount(sub)[used]))
        self.cell = np.array(cells, dtype=np.int64)
        self.lo, self.hi = np.array(los), np.array(his)
        self.splittable = np.array(flags, dtype=bool)
        n = self.cell.size
        cost, value, count = (np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64))
        old_n = self.cost.size
        cost[:old_n], value[:old_n], count[:old_n] = self.cost, self.value, self.count
        for ids_, c, v, k in sums:
            cost[ids_], value[ids_], count[ids_] = c, v, k
        self.cost, self.value, self.count = cost, value, count


    def next_to(self, chosen: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Blocks next to a chosen one in their cell's order of ratio intervals."""
        order = np.lexsort((self.lo, self.cell))
        same = self.cell[order][1:] == self.cell[order][:-1]
        hit = chosen[order]
        near = np.zeros(order.size, dtype=bool)
        near[1:] |= hit[:-1] & same
        near[:-1] |= hit[1:] & same
        out = np.zeros(order.size, dtype=bool)
        out[order] = near
        return out

    def merge(self, group: NDArray[np.int64]) -> None:
        """Merge the blocks sharing a ``group`` label >= 0 into one (-1: keep as it is)."""
        n = group.size
        keep = group < 0
        labels = np.unique(group[~keep])
        if labels.size == n - int(keep.sum()):  # nothing to merge
            return
        new_id = np.empty(n, dtype=self.block.dtype)  # np.take's out= takes its own dtype
        new_id[keep] = np.arange(int(keep.sum()))
        merged = np.searchsorted(labels, group[~keep])
        new_id[~keep] = int(keep.sum()) + merged
        m = int(keep.sum()) + labels.size
        _relabel(new_id, self.block)  # in place: no full-size copy
        cell = np.empty(m, dtype=np.int64)
        cell[new_id] = self.cell
        lo, hi = np.full(m, np.inf), np.full(m, -np.inf)
        np.minimum.at(lo, new_id, self.lo)
        np.maximum.at(hi, new_id, self.hi)
        self.cell, self.lo, self.hi = cell, lo, hi
        self.cost = np.bincount(new_id, weights=self.cost, minlength=m).astype(np.float64)
        self.value = np.bincount(new_id, weights=self.value, minlength=m).astype(np.float64)
        self.count = np.bincount(new_id, weights=self.count, minlength=m).astype(np.int64)
        splittable = np.ones(m, dtype=bool)
        splittable[new_id[keep]] = self.splittable[keep]
        self.splittable = splittable


def _relabel(table: NDArray[np.integer], ids: NDArray[np.integer]) -> None:
    """``ids[:] = table[ids]`` in place and in cache-sized pieces: ``np.take`` casts a whole
    32-bit index array to 64 bits first (320 MB at 10M customers, the LP's peak)."""
    def piece(lo: int, hi: int) -> None:
        np.take(table, ids[lo:hi], out=ids[lo:hi], mode="clip")

    parallel.each(piece, ids.size, CHUNK)


def _sums(
    block: NDArray[np.integer], weights: NDArray[np.float64] | None, n: int
) -> NDArray[Any]:
    """Per block, the sum of ``weights`` (None: the count) over its increments, in
    cache-sized pieces: ``np.bincount`` casts a whole 32-bit index array to 64 bits first
    (with weights, 15x slower than on 64-bit ids at 40M increments)."""
    def piece(lo: int, hi: int) -> NDArray[Any]:
        return np.bincount(block[lo:hi], weights=None if weights is None else weights[lo:hi],
                           minlength=n)

    out = np.zeros(n, dtype=np.float64 if weights is not None else np.int64)
    for part in parallel.results(piece, block.size, CHUNK):  # added in order: the same sums
        out += part
    return out


def expand(
    blocks: Blocks,
    full: NDArray[np.bool_],
    pos: NDArray[np.int64],
    taken: NDArray[np.float64],
    inc: Increments,
    constrained: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Share taken of every increment from a round's block solution."""
    if blocks.idx is None:
        taken_c = np.empty(blocks.block.size)

        def piece(lo: int, hi: int) -> None:  # no full-size boolean temporary
            taken_c[lo:hi] = full[blocks.block[lo:hi]]

        parallel.each(piece, taken_c.size, CHUNK)
        taken_c[pos] = taken
        return taken_c
    taken_c = full[blocks.block].astype(np.float64)
    taken_c[pos] = taken
    full_taken = (~constrained & (inc.dv > 0)).astype(np.float64)
    full_taken[blocks.idx] = taken_c
    return full_taken


def shares(
    blocks: Blocks,
    full: NDArray[np.bool_],
    pos: NDArray[np.int64],
    taken: NDArray[np.float64],
    inc: Increments,
    constrained: NDArray[np.bool_],
) -> NDArray[np.float64] | Shares:
    """:func:`expand`'s shares without the dense array when every increment is in a block
    (a total budget constrains every cell): the blocks' own ids, their full flags and the
    touched members' shares (``pos`` sorted, as ``Blocks.members`` gives them)."""
    if blocks.idx is None:
        return Shares(blocks.block, full, pos, taken)
    return expand(blocks, full, pos, taken, inc, constrained)


def fill(
    blocks: Blocks,
    pos: NDArray[np.int64],
    x: NDArray[np.float64],
    full: NDArray[np.bool_],
    partial: NDArray[np.bool_],
    n_cells: int,
    owner: NDArray[np.integer] | None = None,
) -> NDArray[np.float64]:
    """Share taken of each increment at ``pos``: 1 in full blocks; each cell's spend on its
    partly taken blocks refilled in decreasing ratio (exact within a cell). ``owner``: the
    blocks of ``pos`` when the caller has them."""
    b = blocks.block[pos] if owner is None else owner
    taken = full[b].astype(np.float64)
    part = np.flatnonzero(partial[b])
    if part.size:
        budget = np.bincount(
            blocks.cell[partial], weights=(blocks.cost * x)[partial], minlength=n_cells
        )
        p = pos[part]
        c = blocks.cell[blocks.block[p]]
        order = np.lexsort((-blocks.ratio(p), c))
        c, dc = c[order], blocks.dc[p[order]]
        cum = np.cumsum(dc)
        first_of_cell = np.r_[True, c[1:] != c[:-1]]
        starts = np.maximum.accumulate(np.where(first_of_cell, np.arange(order.size), 0))
        before = cum - dc - np.concatenate(([0.0], cum))[starts]
        taken[part[order]] = np.clip((budget[c] - before) / dc, 0.0, 1.0)
    return taken

