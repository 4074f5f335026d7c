"""The frontier as a result: its breakpoints, the split of spend along it, its summary.

:class:`Frontier` holds the breakpoints of the LP's equity as a function of the total
budget and the spend of every (segment, kind) cell at each; it interpolates them exactly
(``equity_at``, ``slope_at``, ``split_at``) and tabulates them (``table``, ``summary``).
:func:`assemble` builds one from the final list of pieces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engine.options import ACQUISITION, KINDS, RETENTION, OptionSet
from engine.planning.frontier_pieces import FloatArray, Pieces


@dataclass
class Frontier:
    """The LP's equity as a function of the total budget, at every breakpoint.

    ``points``: one row per breakpoint, in increasing budget: ``budget``, ``equity`` (total
    equity net of spend, the LP objective), ``equity_gain`` (over doing nothing), ``slope``
    (net equity per unit of budget on the stretch ending at this point; null at the start),
    ``retention`` and ``acquisition`` (spend by kind). ``moves``: the spend of each
    (segment, kind) cell at every breakpoint where it changes (``point`` indexes ``points``;
    point 0 lists every cell), so the split by segment is known at every breakpoint;
    ``split_at`` interpolates it (exact: spend moves linearly between breakpoints).
    """

    points: pl.DataFrame
    moves: pl.DataFrame
    segments: list[str]
    equity_before: float
    min_budget: float
    optimal_budget: float
    optimal_equity: float
    plan_budget: float | None
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    model_seconds: float = 0.0  # of ``seconds``: building the options and rows (as allocate)
    # method "solves" (limits on resources besides spend): every row's shadow price at every
    # solved budget (point, budget, limit, shadow_price), and how far above the drawn line
    # equity can be between two solved budgets (0 for the exact methods)
    prices: pl.DataFrame | None = None
    max_gap: float = 0.0

    @property
    def n_breakpoints(self) -> int:
        return self.points.height

    @property
    def chosen_budget(self) -> float:
        """What the plan spends on the frontier: its total budget, capped at the optimal one."""
        if self.plan_budget is None:
            return self.optimal_budget
        return float(min(max(self.plan_budget, self.min_budget), self.optimal_budget))

    def _arrays(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return (
            self.points["budget"].to_numpy(),
            self.points["equity"].to_numpy(),
            self.points["slope"].fill_null(math.inf).to_numpy(),
        )

    def equity_at(self, budgets: Sequence[float] | FloatArray) -> FloatArray:
        """LP equity at each budget (NaN below the least feasible budget)."""
        b = np.asarray(budgets, dtype=np.float64)
        budget, equity, _ = self._arrays()
        out = np.interp(b, budget, equity)
        return np.where(b < self.min_budget * (1 - 1e-12) - 1e-9, np.nan, out)

    def slope_at(self, budgets: Sequence[float] | FloatArray) -> FloatArray:
        """Net equity of the next unit of budget at each budget (0 past the optimal budget);
        at a budget solved by the "solves" method, that solve's shadow price of the budget."""
        b = np.asarray(budgets, dtype=np.float64)
        budget, _, slope = self._arrays()
        k = np.searchsorted(budget, b, side="right")
        padded = np.append(slope, 0.0)
        out = padded[np.minimum(k, padded.size - 1)]
        if "shadow_price" in self.points.columns:  # solved budgets: the solve's own price
            at = np.clip(np.searchsorted(budget, b), 0, budget.size - 1)
            hit = budget[at] == b
            out = np.where(hit, self.points["shadow_price"].to_numpy()[at], out)
        return np.where(b < self.min_budget, np.nan, out)

    def split_at(self, budgets: Sequence[float] | FloatArray) -> pl.DataFrame:
        """Spend of every (segment, kind) cell at each budget: columns budget, segment, kind,
        spend (exact: linear between breakpoints)."""
        b = np.clip(np.asarray(budgets, dtype=np.float64), self.min_budget, self.optimal_budget)
        budget = self.points["budget"].to_numpy()
        k = np.clip(np.searchsorted(budget, b, side="right"), 1, max(budget.size - 1, 1))
        if budget.size > 1:
            width = budget[k] - budget[k - 1]
            t = np.where(width > 0, (b - budget[k - 1]) / np.where(width > 0, width, 1.0), 0.0)
            t = np.clip(t, 0.0, 1.0)
        else:
            k, t = np.zeros(b.size, dtype=np.int64), np.zeros(b.size)
        frames = []
        for _, part in self.moves.group_by(["cell"], maintain_order=True):
            cell = int(part["cell"][0])
            pts = part["point"].to_numpy()
            spend = part["spend"].to_numpy()
            i_prev = np.searchsorted(pts, k - 1, side="right") - 1
            i_next = np.searchsorted(pts, k, side="right") - 1
            prev = spend[np.maximum(i_prev, 0)]
            nxt = spend[np.maximum(i_next, 0)]
            frames.append(pl.DataFrame({
                "budget": np.asarray(budgets, dtype=np.float64),
                "cell": np.full(b.size, cell, dtype=np.int64),
                "spend": prev + t * (nxt - prev),
            }))
        out = pl.concat(frames) if frames else pl.DataFrame(
            {"budget": [], "cell": [], "spend": []},
            schema={"budget": pl.Float64, "cell": pl.Int64, "spend": pl.Float64},
        )
        labels = self._cell_labels()
        return (
            out.join(labels, on="cell", how="left")
            .select("budget", "segment", "kind", "spend")
            .sort(["budget", "segment", "kind"])
        )

    def _cell_labels(self) -> pl.DataFrame:
        n = len(self.segments) * len(KINDS)
        return pl.DataFrame({
            "cell": np.arange(n, dtype=np.int64),
            "segment": [self.segments[c // len(KINDS)] for c in range(n)],
            "kind": [KINDS[c % len(KINDS)] for c in range(n)],
        })

    def display_budgets(self, rows: int = 12) -> FloatArray:
        """A readable set of budgets: evenly spaced, plus the start, optimum and plan's."""
        lo, hi = self.min_budget, self.optimal_budget
        grid = np.linspace(lo, hi, max(rows, 2))
        extra = [self.chosen_budget]
        return np.unique(np.concatenate([grid, extra]))

    def table(self, rows: int = 12) -> pl.DataFrame:
        """Budgets (see ``display_budgets``) with equity, slope and spend by kind and segment."""
        b = self.display_budgets(rows)
        split = self.split_at(b)
        by_kind = split.pivot(on="kind", index="budget", values="spend", aggregate_function="sum")
        by_segment = split.group_by(["budget", "segment"]).agg(pl.col("spend").sum()).pivot(
            on="segment", index="budget", values="spend"
        )
        seg_cols = [s for s in self.segments if s in by_segment.columns]
        by_segment = by_segment.select("budget", *[pl.col(s).alias(f"segment:{s}")
                                                   for s in seg_cols])
        head = pl.DataFrame({
            "budget": b,
            "equity": self.equity_at(b),
            "equity_gain": self.equity_at(b) - self.equity_before,
            "slope": self.slope_at(b),
        })
        kinds = [k for k in KINDS if k in by_kind.columns]
        return (
            head.join(by_kind.select("budget", *kinds), on="budget", how="left")
            .join(by_segment, on="budget", how="left")
            .sort("budget")
        )

    def summary(self) -> dict[str, Any]:
        chosen = self.chosen_budget
        return {
            "method": self.method,
            "exact": self.method != "solves",
            "breakpoints": self.n_breakpoints,
            "max_gap": self.max_gap,
            "equity_before": self.equity_before,
            "min_budget": self.min_budget,
            "optimal_budget": self.optimal_budget,
            "optimal_equity": self.optimal_equity,
            "optimal_gain": self.optimal_equity - self.equity_before,
            "plan_budget": self.plan_budget,
            "chosen_budget": chosen,
            "chosen_equity": float(self.equity_at([chosen])[0]),
            "chosen_slope": float(self.slope_at([chosen])[0]),
            "seconds": self.seconds,
            "model_seconds": self.model_seconds,
            "notes": list(self.notes),
        }


def assemble(
    options: OptionSet,
    p: Pieces,
    base_cell: FloatArray,
    base_value: float,
    equity_before: float,
    plan_budget: float | None,
    method: str,
    notes: list[str],
    started: float,
) -> Frontier:
    n_cells = options.n_cells
    eff = p.effective()
    forced = eff[p.forced[eff]]
    rest = eff[~p.forced[eff]]
    rest = rest[p.dv[rest] > 0]
    rank = np.full(p.dc.size, -1, dtype=np.int64)  # point index of each live piece's end
    rank[forced] = 0
    rank[rest] = np.arange(1, rest.size + 1)
    # Per-piece moves in long form, in point order: single-cell pieces move their cell by dc
    # (live ones taken in frontier order), the others by their listed moves.
    live = np.concatenate([forced, rest])
    single = live[p.cell[live] >= 0]
    m_point = rank[p.m_piece]
    m_keep = np.flatnonzero(m_point >= 0)
    if m_keep.size > 1 and bool((np.diff(m_point[m_keep]) < 0).any()):
        m_keep = m_keep[np.argsort(m_point[m_keep], kind="stable")]
    mv_point = np.concatenate([rank[single], m_point[m_keep]])
    mv_cell = np.concatenate([p.cell[single], p.m_cell[m_keep]])
    mv_delta = np.concatenate([p.dc[single], p.m_delta[m_keep]])

    start_cell = base_cell + np.bincount(mv_cell[mv_point == 0], weights=mv_delta[mv_point == 0],
                                         minlength=n_cells)
    min_budget = float(base_cell.sum() + p.dc[forced].sum())
    start_equity = base_value + float(p.dv[forced].sum())
    budget = np.concatenate(([min_budget], min_budget + np.cumsum(p.dc[rest])))
    equity = np.concatenate(([start_equity], start_equity + np.cumsum(p.dv[rest])))
    slope = np.concatenate(([np.nan], p.dv[rest] / p.dc[rest]))

    later = mv_point > 0
    lp, lc, ld = mv_point[later], mv_cell[later], mv_delta[later]
    kind_delta = np.zeros((len(KINDS), rest.size + 1))
    for k in (RETENTION, ACQUISITION):
        mine = lc % len(KINDS) == k
        kind_delta[k] = np.bincount(lp[mine], weights=ld[mine], minlength=rest.size + 1)
    kind_start = [float(start_cell[k::len(KINDS)].sum()) for k in range(len(KINDS))]
    spend_kind = np.array(kind_start)[:, None] + np.cumsum(kind_delta, axis=1)

    nonempty = np.flatnonzero(np.bincount(options.cell, minlength=n_cells) > 0)
    # Every cell at point 0, then each change, ordered by (cell, point): the moves are in point
    # order within each of the two lists, and a cell is moved by one list only (free cells by
    # single-cell pieces, network cells by the network's), so a stable radix sort by cell
    # suffices; checked, else a sort on both keys.
    all_point = np.concatenate([np.zeros(nonempty.size, dtype=np.int64), lp])
    all_cell = np.concatenate([nonempty, lc]).astype(np.int64)
    all_delta = np.concatenate([start_cell[nonempty], ld])
    narrow = np.int16 if n_cells < (1 << 15) else np.int32
    by_cell = np.argsort(all_cell.astype(narrow), kind="stable")
    sorted_cell, sorted_point = all_cell[by_cell], all_point[by_cell]
    if bool(((np.diff(sorted_point) < 0) & (np.diff(sorted_cell) == 0)).any()):
        by_cell = np.lexsort((all_point, all_cell))
    all_point, all_cell = all_point[by_cell], all_cell[by_cell]
    all_spend = np.cumsum(all_delta[by_cell])
    first_of_cell = np.r_[True, all_cell[1:] != all_cell[:-1]]
    starts = np.maximum.accumulate(np.where(first_of_cell, np.arange(all_cell.size), 0))
    all_spend -= np.concatenate(([0.0], all_spend))[starts]  # start spend + moves so far
    moves = pl.DataFrame({"point": all_point, "cell": all_cell, "spend": all_spend})
    segment_names = pl.Enum(options.segments)
    kind_names = pl.Enum(list(KINDS))
    cells = moves["cell"].to_numpy()
    moves = moves.with_columns(
        pl.Series("segment", [options.segments[c // len(KINDS)] for c in range(n_cells)],
                  dtype=segment_names).gather(cells),
        pl.Series("kind", [KINDS[c % len(KINDS)] for c in range(n_cells)],
                  dtype=kind_names).gather(cells),
    ).select("point", "cell", "segment", "kind", "spend")
    points = pl.DataFrame({
        "budget": budget,
        "equity": equity,
        "equity_gain": equity - equity_before,
        "slope": slope,
        "retention": spend_kind[RETENTION],
        "acquisition": spend_kind[ACQUISITION],
    }).with_columns(pl.col("slope").fill_nan(None))
    if plan_budget is not None and plan_budget < min_budget * (1 - 1e-12) - 1e-9:
        notes.append(f"the plan's budget {plan_budget:g} is below the least feasible "
                     f"{min_budget:g}")
    return Frontier(
        points=points,
        moves=moves,
        segments=list(options.segments),
        equity_before=equity_before,
        min_budget=min_budget,
        optimal_budget=float(budget[-1]),
        optimal_equity=float(equity[-1]),
        plan_budget=plan_budget,
        method=method,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
