"""A plan for every unit: which option(s) it takes, and what that is worth and costs.

Integral units (customers) take one option (``lo == hi``); prospect pools may mix two
adjacent hull options, ``theta`` being the share of the pool at ``hi``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from engine.constraints import Constraint, sparse_row_matrix
from engine.options import OptionSet


@dataclass
class Allocation:
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    theta: NDArray[np.float64]
    status: str
    solver: str
    method: str
    lp_objective: float | None = None
    bound: float | None = None  # the LP's bound (its certificate)
    # A proven upper bound on the best plan giving every customer one level (<= bound);
    # equal to the plan's value within 1e-9 when status is "optimal"
    integer_bound: float | None = None
    shadow_prices: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def single(cls, choice: NDArray[np.int64], status: str, method: str) -> Allocation:
        """A plan with exactly one option per unit (baselines, heuristics)."""
        return cls(choice, choice.copy(), np.zeros(choice.size), status, "none", method)

    def mix(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per unit ``(1 - theta) values[lo] + theta values[hi]``: computed only where theta
        > 0 (a few pools and customers), so one full-size array instead of five (10M
        units: 0.3 GB less at the plan's peak); the same numbers (a zero may lose its sign)."""
        out = values[self.lo]
        mixed = np.flatnonzero(self.theta > 0.0)
        if mixed.size:
            t = self.theta[mixed]
            out[mixed] = (1.0 - t) * out[mixed] + t * values[self.hi[mixed]]
        return out

    def spend(self, options: OptionSet) -> NDArray[np.float64]:
        return self.mix(options.cost)

    def equity(self, options: OptionSet) -> NDArray[np.float64]:
        return self.mix(options.value)

    def level(self, options: OptionSet) -> NDArray[np.float64]:
        return self.mix(options.level)


def row_usage(
    options: OptionSet, rows: list[Constraint], spend: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Spend counted by each row, in the row's own sense (positive amounts)."""
    per_cell = np.bincount(options.cell, weights=spend, minlength=options.n_cells)
    return np.asarray(abs(sparse_row_matrix(rows, options.n_cells)) @ per_cell, dtype=np.float64)


def violations(
    options: OptionSet, rows: list[Constraint], allocation: Allocation, tolerance: float = 1e-7
) -> list[str]:
    """Rows the plan breaks, beyond a relative tolerance for floating-point sums."""
    per_cell: dict[str, NDArray[np.float64]] = {}  # one pass over the units per resource
    for row in rows:
        if row.resource not in per_cell:
            per_cell[row.resource] = np.bincount(
                options.cell, weights=allocation.mix(_use(options, row)), minlength=options.n_cells
            ).astype(np.float64, copy=False)
    used = np.array([float(per_cell[row.resource][row.cells].sum()) for row in rows])
    broken = []
    for row, amount in zip(rows, used, strict=True):
        slack = tolerance * max(1.0, abs(row.rhs))
        if row.sense > 0 and amount > row.rhs + slack:
            broken.append(f"{row.name}: {_what(row)} {amount:.6g} > {row.rhs:.6g}")
        if row.sense < 0 and amount < row.rhs - slack:
            broken.append(f"{row.name}: {_what(row)} {amount:.6g} < {row.rhs:.6g}")
    return broken


def _use(options: OptionSet, row: Constraint) -> NDArray[np.float64]:
    use = options.resource(row.resource)
    if use is None:
        raise KeyError(f"{row.name}: the options have no column {row.resource!r}")
    return use


def _what(row: Constraint) -> str:
    return "spend" if row.resource == "cost" else row.resource
