"""Every option priced at once: reduced values, row use and LP columns in numpy.

Row prices ``y`` (``<=`` form, >= 0) give each (segment, kind) cell, per resource ``r``,
the price ``P_r = sum of y_k over the rows k on r covering the cell``, and an option its
reduced value ``v_j - sum_r a_rj P_r[cell(j)]``: options x resources, no pass per row.
A :class:`View` is a set of units (all, or a sample) as contiguous runs of their options.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine.constraints import Constraint, normalized_rhs, sparse_row_matrix
from engine.options import OptionSet


@dataclass(frozen=True)
class View:
    """Units and their options: ``opt`` (global option per local one, None for all),
    ``units`` (global unit per local one, None for all), ``offsets`` (local, per unit)."""

    opt: NDArray[np.int64] | None
    units: NDArray[np.int64] | None
    offsets: NDArray[np.int64]

    @property
    def n(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def counts(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    def glob(self, local: NDArray[np.int64]) -> NDArray[np.int64]:
        """Global option indices of local ones."""
        return local if self.opt is None else self.opt[local]


def whole(options: OptionSet) -> View:
    return View(None, None, options.offsets)


def subset(options: OptionSet, units: NDArray[np.int64]) -> View:
    """The view of ``units`` (sorted global unit indices)."""
    opt, _, begin = options_of(options.offsets, units)
    return View(opt, units, begin)


def options_of(offsets: NDArray[np.int64], units: NDArray[np.int64]
               ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """All options of ``units`` (in order), for each the position of its unit in ``units``,
    and the offsets of each unit's run among them."""
    counts = offsets[units + 1] - offsets[units]
    local = np.repeat(np.arange(units.size), counts)
    begin = np.zeros(units.size + 1, dtype=np.int64)
    np.cumsum(counts, out=begin[1:])
    opt = np.repeat(offsets[units], counts) + np.arange(int(begin[-1])) - begin[local]
    return opt, local, begin


class RowPricer:
    """The limit rows over options, by resource."""

    def __init__(self, rows: list[Constraint], options: OptionSet) -> None:
        self.options = options
        self.b = normalized_rhs(rows)
        matrix = sparse_row_matrix(rows, options.n_cells)  # rows x cells, signed by sense
        self.names = sorted({row.resource for row in rows})
        self.resource_of_row = np.array([self.names.index(r.resource) for r in rows],
                                        dtype=np.int64)
        self.use: list[NDArray[np.float64]] = []
        self.by_resource: list[sparse.csr_matrix] = []
        for i, name in enumerate(self.names):
            use = options.resource(name)
            assert use is not None
            self.use.append(use)
            keep = sparse.diags((self.resource_of_row == i).astype(np.float64))
            self.by_resource.append((keep @ matrix).tocsr())
        self.cells = matrix.tocsc()  # per cell, the rows covering it
        self.cell_of_option = options.cell[options.unit_of_option]

    def reduced(self, y: NDArray[np.float64], view: View) -> NDArray[np.float64]:
        """Per option of ``view``, ``v_j - y . a_j``."""
        opt = view.opt
        out = self.options.value.copy() if opt is None else self.options.value[opt]
        counts = view.counts
        grid = int(counts[0]) if view.n and bool((counts == counts[0]).all()) else 0
        if grid:  # one price per unit and resource, broadcast over its options
            units = view.units
            unit_cell = self.options.cell if units is None else self.options.cell[units]
            shaped = out.reshape(view.n, grid)
        else:
            cell = self.cell_of_option if opt is None else self.cell_of_option[opt]
        for use, part in zip(self.use, self.by_resource, strict=True):
            per_cell = part.T @ y
            if not per_cell.any():
                continue
            amount = use if opt is None else use[opt]
            if grid:
                shaped -= per_cell[unit_cell][:, None] * amount.reshape(view.n, grid)
            else:
                price = per_cell[cell]
                price *= amount
                out -= price
        return out

    def usage(self, opt: NDArray[np.int64], weight: NDArray[np.float64] | None = None
              ) -> NDArray[np.float64]:
        """Per row (``<=`` form), what the options ``opt`` (with ``weight``, else 1) use."""
        cell = self.cell_of_option[opt]
        n_cells = self.options.n_cells
        total = np.zeros(self.b.size)
        for use, part in zip(self.use, self.by_resource, strict=True):
            amount = use[opt] if weight is None else use[opt] * weight
            total += part @ np.bincount(cell, weights=amount, minlength=n_cells)
        return total

    def columns(self, opt: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                                        NDArray[np.float64]]:
        """The limit-row entries of options ``opt`` in CSC form (starts, row, coefficient),
        zeros dropped."""
        cell = self.cell_of_option[opt]
        ptr = self.cells.indptr
        count = ptr[cell + 1] - ptr[cell]
        starts = np.zeros(opt.size + 1, dtype=np.int64)
        np.cumsum(count, out=starts[1:])
        col = np.repeat(np.arange(opt.size), count)
        pos = np.arange(int(starts[-1])) - np.repeat(starts[:-1] - ptr[cell], count)
        row = self.cells.indices[pos].astype(np.int64)
        uses = np.vstack([use[opt] for use in self.use]) if self.use else np.zeros((0, 0))
        coef = self.cells.data[pos] * uses[self.resource_of_row[row], col]
        nonzero = coef != 0
        starts[1:] = np.cumsum(np.bincount(col[nonzero], minlength=opt.size))
        return starts, row[nonzero], coef[nonzero]


def best_two(view: View, reduced: NDArray[np.float64]
             ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per unit of ``view``: its first option (local index) of greatest reduced value, that
    value, and the second greatest (-inf for a unit with one option)."""
    n = view.n
    counts = view.counts
    starts = view.offsets[:-1]
    if n and counts[0] > 0 and bool((counts == counts[0]).all()):  # a grid
        grid = reduced.reshape(n, int(counts[0]))
        local = np.argmax(grid, axis=1)
        pick = starts + local
        top = reduced[pick]
        if grid.shape[1] < 2:
            return pick, top, np.full(n, -np.inf)
        rest = grid.copy()
        rest[np.arange(n), local] = -np.inf
        return pick, top, rest.max(axis=1)
    unit = np.repeat(np.arange(n), counts)
    top = np.maximum.reduceat(reduced, starts)
    hit = np.flatnonzero(reduced == top[unit])
    first = np.ones(hit.size, dtype=bool)
    first[1:] = unit[hit[1:]] != unit[hit[:-1]]
    pick = hit[first]
    rest = reduced.copy()
    rest[pick] = -np.inf
    return pick, top, np.maximum.reduceat(rest, starts)
