"""Coupling constraints of the allocation: budgets, segment caps and minimums.

Every constraint is a sum of spend over a set of (segment, kind) cells, which is the
structure the allocator exploits (see ``engine.optimize.lp``). Rows are kept in the caller's sense
(``<=`` for budgets and caps, ``>=`` for minimums) and named for the shadow-price report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine.errors import FieldViolation, InvalidInputError
from engine.options import KINDS, OptionSet
from engine.plan import Plan

LE, GE = 1, -1


@dataclass(frozen=True)
class Constraint:
    """``sum(spend in cells) <= rhs`` (sense LE) or ``>= rhs`` (GE)."""

    name: str
    cells: NDArray[np.bool_]
    sense: int
    rhs: float


def build_constraints(plan: Plan, options: OptionSet) -> list[Constraint]:
    n_cells = options.n_cells
    kind_of_cell = np.arange(n_cells) % len(KINDS)
    segment_of_cell = np.arange(n_cells) // len(KINDS)
    rows: list[Constraint] = []
    if plan.total_budget is not None:
        rows.append(Constraint("budget", np.ones(n_cells, dtype=bool), LE, plan.total_budget))
    for kind_index, kind in enumerate(KINDS):
        amount = plan.acquisition_budget if kind == "acquisition" else plan.retention_budget
        if amount is not None:
            rows.append(Constraint(f"budget:{kind}", kind_of_cell == kind_index, LE, amount))
    known = {name: i for i, name in enumerate(options.segments)}
    problems = []
    for i, lim in enumerate(plan.segment_limits):
        if lim.segment not in known:
            listed = ", ".join(repr(s) for s in options.segments[:20])
            problems.append(
                FieldViolation(
                    f"plan.segment_limits[{i}].segment",
                    f"unknown segment {lim.segment!r}; the portfolio has {listed}",
                )
            )
            continue
        cells = segment_of_cell == known[lim.segment]
        label = lim.segment
        if lim.kind is not None:
            cells &= kind_of_cell == KINDS.index(lim.kind)
            label += f"/{lim.kind}"
        if lim.cap is not None:
            rows.append(Constraint(f"cap:{label}", cells, LE, lim.cap))
        if lim.minimum is not None and lim.minimum > 0:
            rows.append(Constraint(f"minimum:{label}", cells, GE, lim.minimum))
    if problems:
        raise InvalidInputError(problems)
    names = [r.name for r in rows]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise InvalidInputError.single(
            "plan.segment_limits", f"limits given twice for {sorted(duplicates)}"
        )
    return rows


def row_matrix(rows: list[Constraint], n_cells: int) -> NDArray[np.float64]:
    """Rows in ``<=`` form over cells: +1 for a budget/cap cell, -1 for a minimum cell."""
    matrix = np.zeros((len(rows), n_cells))
    for k, row in enumerate(rows):
        matrix[k, row.cells] = row.sense
    return matrix


def sparse_row_matrix(rows: list[Constraint], n_cells: int) -> sparse.csr_matrix:
    """:func:`row_matrix` as a sparse (rows x cells) matrix: memory in the rows' cells, not
    rows times cells (10,000 capped segments have 20,000 cells)."""
    counts = [int(np.count_nonzero(row.cells)) for row in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = (
        np.concatenate([np.flatnonzero(row.cells) for row in rows])
        if rows else np.zeros(0, dtype=np.int64)
    )
    data = np.repeat(np.array([float(row.sense) for row in rows]), counts)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), n_cells))


def normalized_rhs(rows: list[Constraint]) -> NDArray[np.float64]:
    return np.array([row.sense * row.rhs for row in rows], dtype=np.float64)
