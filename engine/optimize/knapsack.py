"""A core under one limit, solved exactly by its Pareto states (Nemhauser and Ullmann).

The core of a component with one binding limit is a multiple-choice knapsack: each unit
takes one of its levels, the levels' use of the limit's resource summed stays within the
limit. Taking the units one after another, the plans of the units so far that can still be
best are those no other plan beats in both use and value: per step every state is extended
by every level of the next unit, states that cannot end within the limit are dropped, the
rest sorted by use, and a state is kept only when it is worth more than every state using
less. A state whose value, plus the Lagrangian bound of the units still to come at the
limit's price, is below the incumbent cannot lead to a better plan and is dropped too. The
best state at the end is the core's optimum: exact, so its bound is its value.

Branch and bound in HiGHS needs ~1,000 nodes (0.1-0.5 s) on such a core of 32 customers
and 64 levels, where the states number in the hundreds; past :data:`MAX_STATES` states the
caller leaves the core to HiGHS.
"""

from __future__ import annotations

import bisect

import numpy as np
from numpy.typing import NDArray

MAX_STATES = 200_000  # states in one step at most under one limit; past it, a MIP
# the same under two limits: their dominance is checked state by state (Python), so past
# a few hundred states HiGHS is as fast (at 10,000 customers under 41 binding limits, the
# whole proof 0.40-0.45 s with 500, 0.71-0.73 s with 2,000, 0.87-1.28 s with 20,000)
MAX_STATES_TWO = 500


def solve_rows(
    value: NDArray[np.float64],
    use: NDArray[np.float64],
    unit_start: NDArray[np.int64],
    limit: NDArray[np.float64],
    price: NDArray[np.float64],
    incumbent: float,
) -> tuple[NDArray[np.bool_], float] | None:
    """max value.x with use @ x <= limit (``use``: limits x columns, one or two limits), one
    column per unit (``unit_start``: each unit's first column) at 1: the chosen columns and
    their value; no column chosen and value -inf when no plan keeps the limits or is worth
    more than ``incumbent`` (a plan's value, or -inf); None past the states' cap or with
    more than two limits. ``price`` >= 0 (the limits' LP prices) bounds what the units still
    to come can add."""
    rows = limit.size
    if rows not in (1, 2):
        return None
    cap = MAX_STATES if rows == 1 else MAX_STATES_TWO
    n_units = unit_start.size
    ends = np.append(unit_start[1:], value.size)
    # what the units from each one on can add at most, at the limits' prices
    reduced = value - price @ use
    best_rest = np.zeros(n_units + 1)
    best_rest[:-1] = np.maximum.reduceat(reduced, unit_start)[::-1].cumsum()[::-1]
    # the least use the units from each one on can add (a minimum's uses are negative)
    least_rest = np.zeros((rows, n_units + 1))
    least_rest[:, :-1] = np.minimum.reduceat(use, unit_start, axis=1)[:, ::-1].cumsum(
        axis=1)[:, ::-1]
    scale = max(1.0, abs(incumbent)) if np.isfinite(incumbent) else 1.0
    floor = incumbent - 1e-12 * scale  # ties with the incumbent are kept
    spent = np.zeros((rows, 1))
    worth = np.zeros(1)
    parents: list[NDArray[np.int64]] = []
    columns: list[NDArray[np.int64]] = []
    for u in range(n_units):
        cols = np.arange(unit_start[u], ends[u])
        new_spent = (spent[:, :, None] + use[:, cols][:, None, :]).reshape(rows, -1)
        new_worth = (worth[:, None] + value[cols][None, :]).ravel()
        parent = np.repeat(np.arange(worth.size), cols.size)
        col = np.tile(cols, worth.size)
        ok = (new_spent + least_rest[:, u + 1:u + 2] <= limit[:, None]).all(axis=0)
        if np.isfinite(incumbent):
            ok &= (new_worth + best_rest[u + 1] + price @ (limit[:, None] - new_spent)
                   >= floor)
        order = np.flatnonzero(ok)
        if not order.size:
            return np.zeros(value.size, dtype=bool), -np.inf
        order = order[np.lexsort((-new_worth[order], *new_spent[::-1, order]))]
        if rows == 1:
            kept_worth = new_worth[order]
            before = np.maximum.accumulate(np.concatenate([[-np.inf], kept_worth[:-1]]))
            order = order[kept_worth > before]  # worth more than every state using less
        elif order.size <= 4 * cap:
            order = order[_undominated(new_spent[1, order], new_worth[order])]
        if order.size > cap:
            return None
        spent, worth = new_spent[:, order], new_worth[order]
        parents.append(parent[order])
        columns.append(col[order])
    k = int(np.argmax(worth))
    if worth[k] < floor:  # states pruned by their bound only: none beats the incumbent
        return np.zeros(value.size, dtype=bool), -np.inf
    chosen = np.zeros(value.size, dtype=bool)
    for u in range(n_units - 1, -1, -1):  # back through the steps: units, not states
        chosen[columns[u][k]] = True
        k = int(parents[u][k])
    return chosen, float(value[chosen].sum())


def _undominated(second: NDArray[np.float64], worth: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Of states sorted by their use of the first limit (then the second, then worth
    falling), those no earlier state beats in both the second limit's use and worth: a
    sweep keeping the earlier states' staircase (use of the second limit rising, worth
    rising), one state at a time."""
    uses: list[float] = []
    values: list[float] = []
    keep = np.zeros(second.size, dtype=bool)
    for i, (b, v) in enumerate(zip(second.tolist(), worth.tolist(), strict=True)):
        j = bisect.bisect_right(uses, b)
        if j and values[j - 1] >= v:
            continue  # an earlier state uses no more of either limit and is worth as much
        keep[i] = True
        start = bisect.bisect_left(uses, b)
        end = j
        while end < len(uses) and values[end] <= v:
            end += 1
        uses[start:end] = [b]  # the steps this state beats leave the staircase
        values[start:end] = [v]
    return keep
