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


@dataclass(frozen=True)
class Priced:
    """One pricing pass: ``lagrangian`` (the sum over units of their best reduced value),
    ``absmax`` (the largest of those in absolute value), and the held units most beaten
    (``units`` as ids, ``beaten`` by how much), at most the number asked for."""

    lagrangian: float
    absmax: float
    units: NDArray[np.int64]
    beaten: NDArray[np.float64]


@dataclass(frozen=True)
class Joined:
    """The columns of the units that joined the core (value, position of the unit among
    them, CSC limit-row entries, the column each unit is held at), and what every unit
    still held outside the core uses per row and is worth."""

    value: NDArray[np.float64]
    unit: NDArray[np.int64]
    starts: NDArray[np.int64]
    index: NDArray[np.int64]
    coef: NDArray[np.float64]
    fixed: NDArray[np.int64]
    held_use: NDArray[np.float64]
    held_value: float


class UnitPricer:
    """The sifting state of one set of units (``view``, ids ``base + local unit``): each
    unit's best option at the last prices, the option it is held at outside the core, and
    whether it is in the core. Arrays are replaced, never written in place, so a shallow
    copy is a snapshot (a cluster keeps each round's state as a new value)."""

    def __init__(self, rows: RowPricer, view: View, base: int = 0) -> None:
        self.rows, self.view, self.base = rows, view, base
        n = view.n
        self.pick = view.offsets[:-1].copy()
        self.fixed = self.pick
        self.in_core = np.zeros(n, dtype=bool)
        self.core_opt = np.zeros(0, dtype=np.int64)  # local options, in column order
        self.opened = np.zeros(0)  # the closeness of the units the last ``open`` chose

    @property
    def n_units(self) -> int:
        return self.view.n

    @property
    def n_multi(self) -> int:
        return int((self.view.counts >= 2).sum())

    def stats(self) -> tuple[float, float, NDArray[np.float64]]:
        """Least and greatest value, and per resource the least positive use (inf: none)."""
        value = self.rows.options.value[self.view.glob(np.arange(int(self.view.offsets[-1])))]
        least = []
        for use in self.rows.use:
            part = use if self.view.opt is None else use[self.view.opt]
            positive = part[part > 0]
            least.append(float(positive.min()) if positive.size else np.inf)
        lo = float(value.min()) if value.size else np.inf
        hi = float(value.max()) if value.size else -np.inf
        return lo, hi, np.array(least)

    def sample(self, size: int) -> UnitPricer:
        """A new state over a random sample of ``size`` of the units."""
        rng = np.random.default_rng(0)
        local = np.sort(rng.choice(self.view.n, size, replace=False))
        units = local if self.view.units is None else self.view.units[local]
        return UnitPricer(self.rows, subset(self.rows.options, units))

    def open(self, y: NDArray[np.float64], k: int) -> NDArray[np.int64]:
        """Price at ``y``, hold every unit at its best option; the (at most) ``k`` units with
        a choice whose two best options are nearest (ids, sorted)."""
        reduced = self.rows.reduced(y, self.view)
        self.pick, top, second = best_two(self.view, reduced)
        self.fixed = self.pick
        closeness = np.where(self.view.counts >= 2, top - second, np.inf)
        finite = np.flatnonzero(np.isfinite(closeness))
        if finite.size > k:
            finite = finite[np.argpartition(closeness[finite], k - 1)[:k]]
        finite = np.sort(finite)
        self.opened = closeness[finite]
        return finite + self.base

    def join(self, ids: NDArray[np.int64]) -> Joined:
        """The units ``ids`` (sorted) join the core at their best option at the last
        prices; their columns, and the use and value of the units still held."""
        view = self.view
        joining = ids - self.base
        opt, unit, begin = options_of(view.offsets, joining)
        if joining.size:
            fixed = self.fixed.copy()
            fixed[joining] = self.pick[joining]  # at its best: the basis stays dual feasible
            in_core = self.in_core.copy()
            in_core[joining] = True
            self.fixed, self.in_core = fixed, in_core
            self.core_opt = np.concatenate([self.core_opt, opt])
        glob = view.glob(opt)
        starts, index, coef = self.rows.columns(glob)
        held = view.glob(self.fixed[~self.in_core])
        return Joined(self.rows.options.value[glob], unit, starts, index, coef,
                      begin[:-1] + self.fixed[joining] - view.offsets[joining],
                      self.rows.usage(held), float(self.rows.options.value[held].sum()))

    def price(self, y: NDArray[np.float64], k: int) -> Priced:
        """Price at ``y``: the Lagrangian sum and the (at most) ``k`` held units most beaten
        by their best option (a positive margin)."""
        reduced = self.rows.reduced(y, self.view)
        self.pick, top, _ = best_two(self.view, reduced)
        held = np.flatnonzero(~self.in_core)
        beaten = top[held] - reduced[self.fixed[held]]
        loose = 1e-11 * max(1.0, float(np.abs(top).max()) if top.size else 0.0)
        hit = np.flatnonzero(beaten > loose)
        if hit.size > k:
            hit = hit[np.argpartition(-beaten[hit], k - 1)[:k]]
        absmax = float(np.abs(top).max()) if top.size else 0.0
        return Priced(float(top.sum()), absmax, held[hit] + self.base, beaten[hit])

    def everyone(self) -> NDArray[np.int64]:
        """Every unit with a choice not in the core (ids)."""
        return np.flatnonzero((self.view.counts >= 2) & ~self.in_core) + self.base

    def weights(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per option of the view, its weight: held units at 1, the core's ``x``."""
        weights = np.zeros(int(self.view.offsets[-1]))
        weights[self.fixed[~self.in_core]] = 1.0
        weights[self.core_opt] = x
        return weights
