"""Acquisition versus retention: where the next unit of budget should go.

``kind_split`` answers it at an optimum: with one shared budget, the split and the marginal
equity of one more (and of the last) unit of each kind; with separate budgets, the shadow
price of each and what moving one unit from one to the other gains (first order from the
shadow prices, and exactly by re-solving the LP). ``engine.planning.scenarios`` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.constraints import LE, Constraint
from engine.errors import EquityError
from engine.options import KINDS, OptionSet
from engine.result import PlanResult


def _solve_lp(options: OptionSet, rows: list[Constraint]) -> float:
    from engine.optimize import lp

    allocation = lp.solve(options, rows, lp.LpSettings(repair=False))
    return float(allocation.lp_objective or 0.0)


def _with_rhs(rows: list[Constraint], changes: dict[str, float], n_cells: int,
              kind_of_cell: NDArray[np.int64]) -> list[Constraint]:
    out = [replace(r, rhs=changes[r.name]) if r.name in changes else r for r in rows]
    names = {r.name for r in rows}
    for name, rhs in changes.items():
        if name in names:
            continue
        if name == "budget":
            out.append(Constraint(name, np.ones(n_cells, dtype=bool), LE, rhs))
        else:
            kind = KINDS.index(name.split(":")[1])
            out.append(Constraint(name, kind_of_cell == kind, LE, rhs))
    return out


def kind_split(result: PlanResult, rows: list[Constraint], delta: float = 1.0) -> dict[str, Any]:
    """Acquisition versus retention at the optimum ``result`` of the rows ``rows``.

    Shared budget: per kind, the marginal equity (net, per unit of budget) of one more unit
    spent on that kind and of the last unit spent on it, each by re-solving the LP with the
    kinds' spends pinned at the optimum's split and one of them moved by ``delta``.
    Separate budgets: each kind budget's shadow price and the gain of moving ``delta`` from one
    kind to the other, first order (difference of shadow prices) and exact (LP re-solve).
    """
    options = result.options
    spend = result.summary["spend_by_kind"]
    base = float(result.summary["lp_objective"])
    n_cells = options.n_cells
    kind_of_cell = np.arange(n_cells) % len(KINDS)
    names = {r.name for r in rows}
    separate = [k for k in KINDS if f"budget:{k}" in names]
    present = [k for k in KINDS if (options.kind == KINDS.index(k)).any()]
    out: dict[str, Any] = {
        "spend": {k: float(spend.get(k, 0.0)) for k in KINDS},
        "equity_gain": {
            k: float(result.units.filter(pl.col("kind") == k)["uplift"].sum()) for k in KINDS
        },
        "budgets": "separate" if separate else "shared",
        "delta": delta,
    }
    total = float(sum(spend.values()))
    out["share"] = {k: (float(spend.get(k, 0.0)) / total if total > 0 else math.nan)
                    for k in KINDS}
    if not separate:
        marginal: dict[str, dict[str, float]] = {}
        pinned = {f"budget:{k}": float(spend.get(k, 0.0)) for k in KINDS}
        budget_total = float(sum(pinned.values()))
        for k in present:
            up = dict(pinned, **{f"budget:{k}": pinned[f"budget:{k}"] + delta,
                                 "budget": budget_total + delta})
            try:
                nxt = (_solve_lp(options, _with_rhs(rows, up, n_cells, kind_of_cell))
                       - base) / delta
            except EquityError as exc:  # reported, not fatal: the rest of the answer stands
                nxt = math.nan
                out.setdefault("notes", []).append(f"{k}: next unit not priced ({exc})")
            last = math.nan
            if pinned[f"budget:{k}"] >= delta:
                down = dict(pinned, **{f"budget:{k}": pinned[f"budget:{k}"] - delta,
                                       "budget": budget_total - delta})
                try:
                    last = (base - _solve_lp(options, _with_rhs(rows, down, n_cells,
                                                                kind_of_cell))) / delta
                except EquityError:
                    last = math.nan
            marginal[k] = {"next_unit": nxt, "last_unit": last}
        out["marginal"] = marginal
        if len(present) == 2:
            out["gain_moving_one_unit"] = {
                f"{a}->{b}": marginal[b]["next_unit"] - marginal[a]["last_unit"]
                for a, b in (("retention", "acquisition"), ("acquisition", "retention"))
            }
        return out
    prices = result.summary.get("shadow_prices", {})
    shadow = {k: float(prices.get(f"budget:{k}", 0.0)) for k in KINDS}
    out["shadow_price"] = shadow
    budgets = {r.name: r.rhs for r in rows if r.name.startswith("budget:")}
    moves: dict[str, dict[str, float]] = {}
    for a, b in (("retention", "acquisition"), ("acquisition", "retention")):
        first_order = shadow[b] - shadow[a]
        change: dict[str, float] = {}
        if f"budget:{b}" in budgets:
            change[f"budget:{b}"] = budgets[f"budget:{b}"] + delta
        if f"budget:{a}" in budgets:
            change[f"budget:{a}"] = max(budgets[f"budget:{a}"] - delta, 0.0)
        try:
            exact = (_solve_lp(options, _with_rhs(rows, change, n_cells, kind_of_cell))
                     - base) / delta
        except EquityError:
            exact = math.nan
        moves[f"{a}->{b}"] = {"first_order": first_order, "exact": exact}
    out["gain_moving_one_unit"] = moves
    return out
