"""Plans from the direct path's LP weights (engine.optimize.small): the LP's plan rounded
(each customer at its heaviest option, or the best combination of the options the LP mixes
for the customers it splits), the checks that a weight vector is a plan that keeps the rows
at the direct path's tolerance (1e-9), and the search's reduced-cost fixing."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.optimize.small_highs import GAP
from engine.options import OptionSet


def is_plan(
    x: NDArray[np.float64],
    coupling: NDArray[np.float64],
    rhs: NDArray[np.float64],
    offsets: NDArray[np.int64],
    integral: NDArray[np.bool_],
) -> bool:
    """Binary where integral, within [0, 1], each unit's weights summing to 1, every row
    kept (the rows' tolerance of the direct path, 1e-9)."""
    return fits(x, coupling, rhs + 1e-9 * np.maximum(1.0, np.abs(rhs)), offsets[:-1],
                 integral)


def fits(
    x: NDArray[np.float64],
    coupling: NDArray[np.float64],
    limit: NDArray[np.float64],
    starts: NDArray[np.int64],
    integral: NDArray[np.bool_],
) -> bool:
    """``is_plan`` with the rows' limits (tolerance included) and the customers' first
    columns given: the search checks several plans per node against the same ones."""
    xi = x[integral]
    return bool(
        (xi == np.round(xi)).all()
        and ((x >= 0.0) & (x <= 1.0)).all()
        and (np.abs(np.add.reduceat(x, starts) - 1.0) <= 1e-9).all()
        and (coupling @ x <= limit).all()
    )


def fixed_by_reduced_costs(
    reduced: NDArray[np.float64],
    xb: NDArray[np.float64],
    objective: float,
    best: float,
    binary: NDArray[np.int64],
    lower: NDArray[np.float64],
    upper: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """A node's binary columns at a bound whose reduced cost d is at least the node's LP
    objective minus the incumbent, fixed at that bound for the node's subtree: moving one
    to its other bound costs the LP at least |d|, so no plan there beats the incumbent by
    more than the slack. Returns the new bounds and the largest LP bound of what was cut
    off (objective - |d|), -inf when nothing was; ``reduced``: the node's LP's reduced
    costs, ``xb``: its binary columns' values."""
    d = np.abs(reduced[binary])
    free = upper[binary] > lower[binary]
    slack = GAP * max(1.0, abs(best)) / 2
    cut = free & (objective - d <= best + slack) & ((xb <= 1e-9) | (xb >= 1 - 1e-9))
    if not cut.any():
        return lower, upper, -np.inf
    lower, upper = lower.copy(), upper.copy()
    at_zero = binary[cut & (xb <= 1e-9)]
    at_one = binary[cut & (xb >= 1 - 1e-9)]
    upper[at_zero] = 0.0
    lower[at_one] = 1.0
    return lower, upper, float((objective - d[cut]).max())


def rounded_core(
    x: NDArray[np.float64],
    unit: NDArray[np.int64],
    starts: NDArray[np.int64],
    integral: NDArray[np.bool_],
    lower: NDArray[np.float64],
) -> NDArray[np.float64]:
    """A core's LP weights with every customer at its heaviest option, the first of equal
    ones (one already fixed at 1 by the search keeps it); ``unit``: each column's
    customer, ``starts``: each customer's first column."""
    weight = np.maximum(x, lower)
    top = weight == np.maximum.reduceat(weight, starts)[unit]
    heaviest = np.minimum.reduceat(np.where(top, np.arange(x.size), x.size), starts)
    rounded = np.where(integral, 0.0, x)
    chosen = heaviest[integral[heaviest]]
    rounded[chosen] = 1.0
    return rounded


def heaviest(
    options: OptionSet, x: NDArray[np.float64], integral: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """The LP's weights with every customer at its heaviest option."""
    unit = options.unit_of_option
    heaviest = np.lexsort((-x, unit))[options.offsets[:-1]]
    rounded = np.where(integral, 0.0, x)
    chosen = heaviest[integral[heaviest]]
    rounded[chosen] = 1.0
    return rounded


ROUNDINGS = 256  # the LP's split customers' combinations tried at most


def best_rounding(
    options: OptionSet,
    coupling: NDArray[np.float64],
    limit: NDArray[np.float64],
    x: NDArray[np.float64],
    integral: NDArray[np.bool_],
) -> NDArray[np.float64] | None:
    """The LP's plan with each customer it splits (at a vertex, at most one per row) at
    one of the options it mixes: of every such combination, the best that keeps every row
    (``limit``: the rows' limits with their tolerance), the first of equal ones. A better
    first plan than each at its heaviest option (one of the combinations), and one where
    that breaks a row: the core, sized by the plan's gap to the bound, is then small.
    ``None`` when no combination keeps the rows, or past ``ROUNDINGS`` of them."""
    unit = options.unit_of_option
    used = integral & (x > 1e-9)
    per_unit = np.bincount(unit[used], minlength=options.n_units)
    split_option = used & (per_unit[unit] > 1)
    split_units = np.flatnonzero(per_unit > 1)
    sizes = per_unit[split_units]
    if not split_units.size or int(np.prod(sizes)) > ROUNDINGS:
        return None
    base = np.where(integral, np.where(split_option, 0.0, np.round(x)), x)
    # each combination as its options' indices: combination c takes, for split customer i,
    # the (c // stride_i) % size_i -th of its options
    options_of = np.flatnonzero(split_option)  # grouped by customer, in unit order
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    count = int(np.prod(sizes))
    stride = np.concatenate([[1], np.cumprod(sizes)[:-1]])
    picks = options_of[first + (np.arange(count)[:, None] // stride) % sizes]  # (combos, k)
    use = (coupling @ base)[:, None] + coupling[:, picks].sum(axis=2)
    fits = (use <= limit[:, None]).all(axis=0)
    if not fits.any():
        return None
    worth = np.where(fits, options.value[picks].sum(axis=1), -np.inf)
    plan = base.copy()
    plan[picks[int(np.argmax(worth))]] = 1.0
    return plan
