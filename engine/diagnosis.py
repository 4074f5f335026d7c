"""Why a plan spends nothing although it may: notes for the summary, from the options and
the plan's limits alone (no solver).

Three causes are told apart, in this order:

* no spend level of any customer or pool adds equity: each unit's equity net of its spend
  is highest at its cheapest level, so the optimum is to do nothing;
* every level that adds equity sits in a (segment, kind) cell that a budget or cap holds
  at 0;
* the cheapest level that adds equity costs more than the limits let its cell spend:
  the levels are too coarse for the budget (a pool may mix levels, so this concerns
  customers and individual prospects, whose levels are all or nothing).
"""

from __future__ import annotations

import numpy as np

from engine.constraints import LE, Constraint
from engine.options import OptionSet


def nothing_spent_notes(options: OptionSet, rows: list[Constraint], spend: float) -> list[str]:
    """Notes explaining a plan with zero spend; empty when something is spent or the
    cause is none of the above (a minimum forces spend, a heuristic allocator)."""
    if spend > 0 or options.n_units == 0 or options.cost.size == 0:
        return []
    if any(r.sense != LE and r.rhs > 0 for r in rows):
        return []  # a minimum would have forced spend
    unit = options.unit_of_option
    base = options.baseline[unit]
    extra_cost = options.cost - options.cost[base]
    gain = options.value - options.value[base]
    tolerance = 1e-9 * np.maximum(1.0, np.abs(options.value[base]))
    improving = (extra_cost > 0) & (gain > tolerance)
    if not improving.any():
        return [
            "nothing is spent: no spend level returns more than it costs (every customer's "
            "and pool's equity, net of spend, is highest at its cheapest level)"
        ]
    allowance = np.full(options.n_cells, np.inf)
    tightest = np.full(options.n_cells, "", dtype=object)
    for row in rows:
        if row.sense != LE:
            continue
        tighter = row.cells & (row.rhs < allowance)
        allowance[tighter] = row.rhs
        tightest[tighter] = row.name
    cell = options.cell[unit]
    room = allowance[cell]
    if not (room[improving] > 0).any():
        names = sorted({str(n) for n in tightest[cell[improving]]})
        return [
            "nothing is spent: every spend that would add equity is capped at 0 by "
            + ", ".join(names)
        ]
    whole = ~options.fractional[unit]  # pools may take part of a level
    coarse = improving & whole
    if improving[~whole].any() or not (extra_cost[coarse] > room[coarse]).all():
        return []
    widest = float(room[coarse].max())
    roomiest = np.flatnonzero(coarse & (room == widest))  # the cells the limits leave most
    cheapest = int(roomiest[np.argmin(extra_cost[roomiest])])
    return [
        f"nothing is spent: levels too coarse for the budget; the cheapest level that adds "
        f"equity costs {extra_cost[cheapest]:,.2f} (level {options.level[cheapest]:g}), more "
        f"than the {widest:,.2f} the budget and caps allow ({tightest[cell[cheapest]]}); "
        "add smaller spend levels (e.g. --retention-levels 0,0.5,1,2) or raise the budget"
    ]
