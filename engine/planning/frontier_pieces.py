"""Linear stretches of the budget frontier and the limits that shape them.

The frontier of ``engine.planning.frontier`` is built from *pieces*: each moves one
(segment, kind) cell by some spend ``dc`` for net equity ``dv`` (a hull increment, or part
of one), or several cells at once (a step of the flow network in
``engine.planning.frontier_network``). A list of pieces sorted by decreasing ratio ``dv / dc``
is a concave curve; a limit on a group of cells keeps the group's best pieces up to its
cap and forces them up to its minimum (:func:`apply_limit`); two curves combine by merging
their slopes (:func:`combine`). The plan's rows, net of the cheapest levels, become
:class:`Group` limits (:func:`groups_of`); a *laminar* family of them (:func:`laminar`) is
handled by merging alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from engine.constraints import GE, Constraint
from engine.errors import InfeasiblePlanError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]




@dataclass
class Pieces:
    dc: FloatArray  # budget the piece consumes (> 0)
    dv: FloatArray  # net equity it adds
    forced: BoolArray  # taken before any budget is free (minimums)
    cell: IntArray  # the one cell it moves, -1 when it moves several (see moves)
    order: IntArray  # live pieces, best ratio first (forced ones are put first on demand)
    m_piece: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    m_cell: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    m_delta: FloatArray = field(default_factory=lambda: np.zeros(0))

    def effective(self) -> IntArray:
        """Frontier order: forced pieces first, then by decreasing ratio."""
        f = self.forced[self.order]
        if not f.any():
            return self.order
        return np.concatenate([self.order[f], self.order[~f]])

    def split(self, i: int, head: float) -> int:
        """Cut piece ``i`` after ``head`` of its spend; the tail becomes a new piece after it."""
        j = self.dc.size
        share = head / self.dc[i]
        self.dc = np.append(self.dc, self.dc[i] - head)
        self.dv = np.append(self.dv, self.dv[i] * (1.0 - share))
        self.forced = np.append(self.forced, self.forced[i])
        self.cell = np.append(self.cell, self.cell[i])
        self.dc[i] = head
        self.dv[i] *= share
        if self.cell[i] < 0:
            mine = np.flatnonzero(self.m_piece == i)
            self.m_piece = np.append(self.m_piece, np.full(mine.size, j))
            self.m_cell = np.append(self.m_cell, self.m_cell[mine])
            self.m_delta = np.append(self.m_delta, self.m_delta[mine] * (1.0 - share))
            self.m_delta[mine] *= share
        at = int(np.flatnonzero(self.order == i)[0])
        self.order = np.insert(self.order, at + 1, j)
        return j


def apply_limit(
    p: Pieces, cells: BoolArray | None, minimum: float, cap: float, name: str, tol: float
) -> None:
    """Impose ``minimum <= spend in cells <= cap`` on a concave list of pieces (``cells``
    None: every piece). The group keeps its best pieces up to the cap; the minimum forces its
    best pieces up to the minimum, splitting one piece at each boundary."""

    def members() -> tuple[IntArray, FloatArray]:
        eff = p.effective()
        if cells is not None:
            eff = eff[(p.cell[eff] >= 0) & cells[np.maximum(p.cell[eff], 0)]]
        return eff, np.cumsum(p.dc[eff])

    if minimum > tol:
        idx, cum = members()
        total = float(cum[-1]) if idx.size else 0.0
        if total < minimum - tol:
            raise InfeasiblePlanError(
                f"{name}: its units can spend at most {total:.6g} more than their cheapest "
                f"levels, below the minimum's {minimum:.6g}",
                [name],
            )
        k = min(int(np.searchsorted(cum, minimum - tol)), idx.size - 1)
        p.forced[idx[:k]] = True
        head = minimum - (float(cum[k]) - float(p.dc[idx[k]]))
        if head >= p.dc[idx[k]] - tol:
            p.forced[idx[k]] = True
        elif head > tol:
            p.split(int(idx[k]), head)
            p.forced[idx[k]] = True
    if math.isfinite(cap):
        idx, cum = members()
        forced_total = float(p.dc[idx][p.forced[idx]].sum())
        if forced_total > cap + tol:
            raise InfeasiblePlanError(
                f"{name}: the minimums inside it need {forced_total:.6g}, above its cap "
                f"{cap:.6g}",
                [name],
            )
        if idx.size and cum[-1] > cap + tol:
            k = int(np.searchsorted(cum, cap + tol, side="right"))
            head = cap - (float(cum[k]) - float(p.dc[idx[k]]))
            if head > tol:
                tail = p.split(int(idx[k]), head)
                drop = np.append(idx[k + 1:], tail)
            else:
                drop = idx[k:]
            dropped = np.zeros(p.dc.size, dtype=bool)
            dropped[drop] = True
            p.order = p.order[~dropped[p.order]]


# --------------------------------------------------------------------------------------------
# The structure of the rows.
# --------------------------------------------------------------------------------------------


@dataclass
class Group:
    cells: BoolArray
    cap: float
    minimum: float
    names: list[str]

    @property
    def size(self) -> int:
        return int(self.cells.sum())


def groups_of(
    rows: list[Constraint], nonempty: BoolArray, base_cell: FloatArray, tol: float
) -> list[Group]:
    """Rows other than the total budget, on non-empty cells, net of the cheapest levels' cost,
    rows over the same cells merged."""
    found: dict[bytes, Group] = {}
    for row in rows:
        if row.name == "budget":
            continue
        cells = row.cells & nonempty
        rhs = row.rhs - float(base_cell[cells].sum())
        if row.sense == GE:
            if rhs <= tol:
                continue
            if not cells.any():
                raise InfeasiblePlanError(f"{row.name}: no units can spend in it", [row.name])
        elif rhs < -tol:
            raise InfeasiblePlanError(
                f"{row.name} of {row.rhs:g} is below the least its units must spend "
                f"({row.rhs - rhs:g})",
                [row.name],
            )
        if not cells.any():
            continue
        key = cells.tobytes()
        group = found.setdefault(key, Group(cells, math.inf, 0.0, []))
        group.names.append(row.name)
        if row.sense == GE:
            group.minimum = max(group.minimum, rhs)
        else:
            group.cap = min(group.cap, max(rhs, 0.0))
    groups = sorted(found.values(), key=lambda g: g.size)
    for g in groups:
        if g.minimum > g.cap + tol:
            raise InfeasiblePlanError(f"{g.names}: minimum above cap", g.names)
    return groups


def laminar(groups: list[Group]) -> bool:
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            both = a.cells & b.cells
            if both.any() and not (np.array_equal(both, a.cells) or np.array_equal(both, b.cells)):
                return False
    return True


def merge_pieces(cell: IntArray, dc: FloatArray, dv: FloatArray, order: IntArray) -> Pieces:
    """Increments as pieces; ``order`` lists them by decreasing ratio (one sort, by the
    caller, of every increment)."""
    return Pieces(dc.copy(), dv.copy(), np.zeros(dc.size, dtype=bool), cell.astype(np.int64),
                   np.asarray(order, dtype=np.int64))


def combine(a: Pieces, b: Pieces) -> Pieces:
    """Sup-convolution of two concave curves: their pieces merged by ratio, each kept in order."""
    shift = a.dc.size
    ea, eb = a.effective(), b.effective()
    key_a = np.minimum.accumulate(np.where(a.forced[ea], np.inf, a.dv[ea] / a.dc[ea]))
    key_b = np.minimum.accumulate(np.where(b.forced[eb], np.inf, b.dv[eb] / b.dc[eb]))
    # Two sorted lists merged by binary search (a's piece first on equal keys).
    merged = np.empty(ea.size + eb.size, dtype=np.int64)
    merged[np.arange(ea.size) + np.searchsorted(-key_b, -key_a, side="left")] = ea
    merged[np.arange(eb.size) + np.searchsorted(-key_a, -key_b, side="right")] = eb + shift
    return Pieces(
        dc=np.concatenate([a.dc, b.dc]),
        dv=np.concatenate([a.dv, b.dv]),
        forced=np.concatenate([a.forced, b.forced]),
        cell=np.concatenate([a.cell, b.cell]),
        order=merged,
        m_piece=np.concatenate([a.m_piece, b.m_piece + shift]),
        m_cell=np.concatenate([a.m_cell, b.m_cell]),
        m_delta=np.concatenate([a.m_delta, b.m_delta]),
    )
