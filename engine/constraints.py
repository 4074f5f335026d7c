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
    """``sum(resource in cells) <= rhs`` (sense LE) or ``>= rhs`` (GE); the resource is
    spend (``cost``) unless a plan's resource limit names another options column."""

    name: str
    cells: NDArray[np.bool_]
    sense: int
    rhs: float
    resource: str = "cost"


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
    for i, rl in enumerate(plan.resource_limits):
        base = f"plan.resource_limits[{i}]"
        if options.resource(rl.resource) is None:
            listed = ", ".join(["cost", *options.extra])
            problems.append(FieldViolation(
                f"{base}.resource",
                f"unknown resource {rl.resource!r}; the options have {listed}",
            ))
            continue
        cells = np.ones(n_cells, dtype=bool)
        if rl.segment is not None:
            if rl.segment not in known:
                problems.append(FieldViolation(f"{base}.segment",
                                               f"unknown segment {rl.segment!r}"))
                continue
            cells &= segment_of_cell == known[rl.segment]
        if rl.kind is not None:
            cells &= kind_of_cell == KINDS.index(rl.kind)
        if rl.max is not None:
            rows.append(Constraint(f"max:{rl.label}", cells, LE, rl.max, rl.resource))
        if rl.min is not None and rl.min > 0:
            rows.append(Constraint(f"min:{rl.label}", cells, GE, rl.min, rl.resource))
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


def spend_only(rows: list[Constraint]) -> bool:
    """Whether every row limits spend (the block method's structure)."""
    return all(row.resource == "cost" for row in rows)


def option_matrix(
    rows: list[Constraint], options: OptionSet, opt: NDArray[np.int64] | None = None
) -> sparse.csr_matrix:
    """Rows in ``<=`` form over options (all, or those at ``opt``): the row's sense times the
    option's use of the row's resource, where the option's cell is in the row."""
    idx = np.arange(options.cost.size) if opt is None else opt
    cell = options.cell[options.unit_of_option[idx]]
    matrix = sparse_row_matrix(rows, options.n_cells)
    parts = []
    for k, row in enumerate(rows):
        use = options.resource(row.resource)
        assert use is not None
        parts.append(matrix[k][:, cell].multiply(use[idx][None, :]))
    if not parts:
        return sparse.csr_matrix((0, idx.size))
    return sparse.vstack(parts).tocsr()


def resource_prices(
    rows: list[Constraint], options: OptionSet, duals: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per option, the price of what it uses at row prices ``duals`` (``<=`` form)."""
    matrix = sparse_row_matrix(rows, options.n_cells)
    cell = options.cell[options.unit_of_option]
    total = np.zeros(options.cost.size)
    for name in sorted({row.resource for row in rows}):
        mine = np.array([row.resource == name for row in rows])
        per_cell = matrix.T @ np.where(mine, duals, 0.0)
        use = options.resource(name)
        assert use is not None
        total += per_cell[cell] * use
    return total


def normalized_rhs(rows: list[Constraint]) -> NDArray[np.float64]:
    return np.array([row.sense * row.rhs for row in rows], dtype=np.float64)
