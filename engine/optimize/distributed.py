"""The exact allocation over a Dask DataFrame of options, for portfolios beyond one machine.

Optional (``pip install 'equity-engine[distributed]'``). The same method as ``engine.optimize.lp``,
arranged so that no per-customer array ever leaves its partition:

1. Each partition builds its own options (``options.from_table``) and reduces them to hull
   increments (``engine.optimize.increments.HullIncrements``), and returns per-(cell, ratio
   bin) sums of cost, value and count; bins are ranges of the monotone integer key of each
   ratio's float bits (``engine.optimize.blocks.float_key``), so partitions need no shared
   state to agree on them and their sums simply add up.
2. The driver solves the block LP over those sums (PuLP, a few hundred columns); the
   duals price every cell.
3. The blocks that straddle a cell's price or are partly taken are refined: one more pass
   over the partitions returns their sums at a 16-bit finer key resolution, and the exact
   Lagrangian terms of their increments at the current prices. The Lagrangian bound is
   thus exact each round; rounds stop when it meets the block LP's value and every partly
   taken block holds a single ratio (four resolutions at most, 16 key bits each).
4. A partly taken block's spend is handed out in partition order (a prefix sum of each
   partition's share, computed on the driver), so at most one customer per such block is
   left between two levels; those few customers are settled by a small MIP on the driver.
5. The per-customer plan is built per partition (``HullIncrements.invert``) and returned
   as a Dask DataFrame.

Input: a Dask DataFrame with the columns of an options table (``customer_id``, ``level``,
``cost``, ``value``, optional ``segment`` and ``kind``), partitioned by customer (all rows
of a customer in one partition, for instance indexed by ``customer_id``), and a Plan whose
limits are budgets, caps and minimums. Each pass recomputes a partition's hull from its
rows rather than keeping state on the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.constraints import build_constraints, normalized_rhs, row_matrix
from engine.errors import InfeasiblePlanError, InvalidInputError, SolverError
from engine.optimize import solvers
from engine.optimize.blocks import float_key
from engine.optimize.increments import SNAP, HullIncrements, Increments
from engine.options import OptionSet, from_table
from engine.plan import Plan

SHIFTS = (48, 32, 16, 0)  # key resolutions: 16 more bits per refinement
_KEY_MIN = np.iinfo(np.int64).min
_KEY_MAX = np.iinfo(np.int64).max
EPS = SNAP
Ranges = NDArray[np.int64]  # rows of (cell, first key, end key, shift), end exclusive


def _dask() -> Any:
    try:
        import dask
        import dask.dataframe
    except ImportError:
        raise InvalidInputError.single(
            "distributed", "needs dask: pip install 'equity-engine[distributed]'"
        ) from None
    return dask


# --- per partition ----------------------------------------------------------------------------


@dataclass
class _Part:
    hull: HullIncrements
    inc: Increments
    key: NDArray[np.int64]
    constrained: NDArray[np.bool_]

    @property
    def options(self) -> OptionSet:
        return self.hull.options


def _part(frame: Any, names: list[str], constrained_cells: NDArray[np.bool_]) -> _Part:
    """A partition's options on the global segment codes, its hull increments and keys."""
    table = pl.from_pandas(frame.reset_index() if "customer_id" not in frame else frame)
    options = from_table(table.select([c for c in table.columns if c != "index"]))
    glob = np.array([names.index(s) for s in options.segments], dtype=np.int32)
    options.segment = glob[options.segment]
    options.segments = list(names)
    hull = HullIncrements(options)
    inc = hull.apply()
    key = float_key(inc.dv / inc.dc + 0.0)
    return _Part(hull, inc, key, constrained_cells[inc.cell])


def _members(part: _Part, ranges: Ranges) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Increments falling in one of ``ranges`` (disjoint within a cell): (index, range)."""
    found, which = [], []
    for c in np.unique(ranges[:, 0]):
        own = np.flatnonzero(ranges[:, 0] == c)
        own = own[np.argsort(ranges[own, 1])]
        idx = np.flatnonzero((part.inc.cell == c) & part.constrained)
        k = part.key[idx]
        r = np.searchsorted(ranges[own, 1], k, side="right") - 1
        ok = (r >= 0) & (k < ranges[own[np.maximum(r, 0)], 2])
        found.append(idx[ok])
        which.append(own[r[ok]])
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found), np.concatenate(which)


def _summary(
    frame: Any,
    names: list[str],
    constrained_cells: NDArray[np.bool_],
    ranges: Ranges,
    lag: Ranges,
    lag_price: NDArray[np.float64],
) -> dict[str, Any]:
    """Sums of the increments in ``ranges`` per (range, key >> the range's shift), the
    Lagrangian terms of those in ``lag`` at ``lag_price``, and the partition's totals."""
    part = _part(frame, names, constrained_cells)
    inc, options = part.inc, part.options
    idx, rid = _members(part, ranges)
    sub = part.key[idx] >> ranges[rid, 3]
    pairs = np.stack([rid, sub], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True) if idx.size else (
        np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    )
    inverse = inverse.ravel()
    lag_idx, lag_rid = _members(part, lag)
    reduced = inc.dv[lag_idx] - lag_price[lag_rid] * inc.dc[lag_idx]
    free = inc.dv[~part.constrained]
    return {
        "groups": uniq,
        "cost": np.bincount(inverse, weights=inc.dc[idx], minlength=len(uniq)),
        "value": np.bincount(inverse, weights=inc.dv[idx], minlength=len(uniq)),
        "count": np.bincount(inverse, minlength=len(uniq)),
        "lagrangian": np.bincount(lag_rid, weights=np.maximum(reduced, 0.0), minlength=len(lag)),
        "base_cost": np.bincount(
            options.cell, weights=options.cost[inc.first], minlength=options.n_cells
        ),
        "base_value": float(options.value[inc.first].sum()),
        "free_value": float(free[free > 0].sum()),
        "units": options.n_units,
    }


@dataclass
class _Blocks:
    cell: NDArray[np.int64]
    lo: NDArray[np.int64]  # key range [lo, hi)
    hi: NDArray[np.int64]
    shift: NDArray[np.int64]  # the resolution they were cut at
    cost: NDArray[np.float64]
    value: NDArray[np.float64]
    count: NDArray[np.int64]

    def ranges(self, chosen: NDArray[np.bool_], shift: NDArray[np.int64] | None = None) -> Ranges:
        """The chosen blocks as ranges, to be cut at ``shift`` (default: their own)."""
        cut = self.shift[chosen] if shift is None else shift
        return np.stack([self.cell[chosen], self.lo[chosen], self.hi[chosen], cut], axis=1)


def _blocks_from(parts: Sequence[dict[str, Any]], ranges: Ranges) -> _Blocks:
    groups = np.concatenate([p["groups"] for p in parts])
    if groups.size == 0:
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return _Blocks(empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, empty_i)
    uniq, inverse = np.unique(groups, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = len(uniq)

    def total(name: str) -> NDArray[np.float64]:
        weights = np.concatenate([np.asarray(p[name], dtype=np.float64) for p in parts])
        return np.bincount(inverse, weights=weights, minlength=n).astype(np.float64)

    rid, sub = uniq[:, 0], uniq[:, 1]
    shift = ranges[rid, 3]
    lo = np.maximum(sub << shift, ranges[rid, 1])
    with np.errstate(over="ignore"):
        top = np.where(sub >= (_KEY_MAX >> shift), _KEY_MAX, (sub + 1) << shift)
    hi = np.minimum(top, ranges[rid, 2])
    return _Blocks(
        cell=ranges[rid, 0],
        lo=lo,
        hi=hi,
        shift=shift,
        cost=total("cost"),
        value=total("value"),
        count=total("count").astype(np.int64),
    )


def _concat(a: _Blocks, keep: NDArray[np.bool_], b: _Blocks) -> _Blocks:
    return _Blocks(*(np.concatenate([getattr(a, f)[keep], getattr(b, f)]) for f in (
        "cell", "lo", "hi", "shift", "cost", "value", "count")))


# --- the fill, per partition -----------------------------------------------------------------


@dataclass
class _Fill:
    """The driver's answer, enough for any partition to fill its customers exactly."""

    full: Ranges  # wholly taken blocks
    partial: Ranges  # partly taken blocks (each a single ratio)
    budget: NDArray[np.float64]  # per partial block: its spend left for this partition
    patch: dict[Any, float] = field(default_factory=dict)  # customer_id -> level (repair)


def _taken(part: _Part, fill: _Fill) -> NDArray[np.float64]:
    inc = part.inc
    taken = (~part.constrained & (inc.dv > 0)).astype(np.float64)
    idx, _ = _members(part, fill.full)
    taken[idx] = 1.0
    idx, rid = _members(part, fill.partial)
    if idx.size:
        order = np.lexsort((idx, rid))
        idx, rid = idx[order], rid[order]
        dc = inc.dc[idx]
        cum = np.cumsum(dc)
        first = np.r_[True, rid[1:] != rid[:-1]]
        starts = np.maximum.accumulate(np.where(first, np.arange(idx.size), 0))
        before = cum - dc - np.concatenate(([0.0], cum))[starts]
        taken[idx] = np.clip((fill.budget[rid] - before) / dc, 0.0, 1.0)
    return inc.prefix_fill(taken)


def _partial_spend(
    frame: Any, names: list[str], constrained_cells: NDArray[np.bool_], partial: Ranges
) -> NDArray[np.float64]:
    part = _part(frame, names, constrained_cells)
    idx, rid = _members(part, partial)
    return np.bincount(rid, weights=part.inc.dc[idx], minlength=len(partial)).astype(np.float64)


def _plan(
    frame: Any, names: list[str], constrained_cells: NDArray[np.bool_], fill: _Fill
) -> tuple[Any, dict[str, Any]]:
    """The partition's per-customer plan (pandas) and what the driver needs from it: spend
    per cell and the customers left between two levels, with their options."""
    part = _part(frame, names, constrained_cells)
    options = part.options
    allocation = part.hull.invert(part.inc, _taken(part, fill))
    ids = options.unit_id.to_list()
    if fill.patch:
        at = {cid: i for i, cid in enumerate(ids)}
        for cid, level in fill.patch.items():
            if cid in at:
                i = at[cid]
                own = np.arange(options.offsets[i], options.offsets[i + 1])
                choice = int(own[np.argmin(np.abs(options.level[own] - level))])
                allocation.lo[i] = allocation.hi[i] = choice
                allocation.theta[i] = 0.0
    spend = allocation.spend(options)
    split = np.flatnonzero(allocation.theta > 0)
    frame_out = pl.DataFrame(
        {
            "customer_id": options.unit_id,
            "segment": np.array(names, dtype=object)[options.segment].astype(str),
            "level": allocation.level(options),
            "spend": spend,
            "equity_after": allocation.equity(options),
        }
    ).to_pandas()
    info = {
        "cell_spend": np.bincount(options.cell, weights=spend, minlength=options.n_cells),
        "equity": float(allocation.equity(options).sum()),
        "split": [
            (
                ids[i],
                int(options.cell[i]),
                options.level[options.offsets[i]:options.offsets[i + 1]].copy(),
                options.cost[options.offsets[i]:options.offsets[i + 1]].copy(),
                options.value[options.offsets[i]:options.offsets[i + 1]].copy(),
                float(spend[i]),
                float(allocation.equity(options)[i]),
            )
            for i in split
        ],
    }
    return frame_out, info


# --- the driver -------------------------------------------------------------------------------


@dataclass
class DistributedResult:
    units: Any  # dask.dataframe: customer_id, segment, level, spend, equity_after
    summary: dict[str, Any]


def allocate(
    options: Any,
    plan: Plan,
    *,
    tolerance: float = 1e-12,
    solver: str = "auto",
    compute: Callable[..., Any] | None = None,
) -> DistributedResult:
    """The exact LP over ``options`` (a Dask DataFrame), then its integer repair."""
    dask = _dask()
    run = compute or dask.compute
    delayed = dask.delayed
    frames = options.to_delayed()
    names = [""]
    if "segment" in options.columns:  # null segments are the segment "" (as from_table has)
        found = run(options["segment"].unique())[0].tolist()
        names = sorted({"" if s is None or s != s else str(s) for s in found})
    stub = OptionSet(
        unit_id=pl.Series([], dtype=pl.String),
        kind=np.zeros(0, dtype=np.int8),
        segment=np.zeros(0, dtype=np.int32),
        segments=names,
        fractional=np.zeros(0, dtype=bool),
        size=np.zeros(0),
        offsets=np.zeros(1, dtype=np.int64),
        level=np.zeros(0),
        cost=np.zeros(0),
        value=np.zeros(0),
    )
    rows = build_constraints(plan, stub)
    matrix = row_matrix(rows, stub.n_cells)
    cells = (matrix != 0).any(axis=0)

    def summaries(ranges: Ranges, lag: Ranges, price: NDArray[np.float64]) -> Any:
        return run(*[delayed(_summary)(f, names, cells, ranges, lag, price) for f in frames])

    no_lag, no_price = np.zeros((0, 4), dtype=np.int64), np.zeros(0)
    everything = np.array([[c, _KEY_MIN, _KEY_MAX, SHIFTS[0]] for c in np.flatnonzero(cells)],
                          dtype=np.int64).reshape(-1, 4)
    parts = summaries(everything, no_lag, no_price)
    base_cost = np.sum([p["base_cost"] for p in parts], axis=0)
    base_value = float(sum(p["base_value"] for p in parts))
    free_value = float(sum(p["free_value"] for p in parts))
    rhs_eff = normalized_rhs(rows) - matrix @ base_cost
    blocks = _blocks_from(parts, everything)
    duals = np.zeros(len(rows))
    x = np.zeros(blocks.cell.size)
    rounds, bound, primal = 0, base_value + free_value, base_value + free_value
    closed = True
    while blocks.cell.size:
        rounds += 1
        result = solvers.maximize(blocks.value, matrix[:, blocks.cell] * blocks.cost, rhs_eff,
                                  solver=solver)
        if result.status == "infeasible":
            raise InfeasiblePlanError("the budgets, caps and minimums cannot all be met",
                                      [r.name for r in rows])
        if result.status != "optimal":
            raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
        x = np.clip(result.x, 0.0, 1.0)
        duals = np.maximum(result.shadow_prices, 0.0)
        prices = duals @ matrix
        primal = base_value + free_value + float(x @ blocks.value)
        price = prices[blocks.cell] + 0.0
        pkey = float_key(price)
        exact = (blocks.shift == 0) | (blocks.count <= 1)
        straddle = (blocks.lo < pkey) & (pkey < blocks.hi) & ~exact
        above = blocks.lo >= pkey
        terms = np.where(above, blocks.value - price * blocks.cost, 0.0)
        terms = np.where(exact, np.maximum(blocks.value - price * blocks.cost, 0.0), terms)
        partial = (x > EPS) & (x < 1 - EPS)
        refine = (straddle | partial) & ~exact
        finer = np.maximum(blocks.shift[refine] - 16, 0)
        lag = blocks.ranges(straddle)
        parts = summaries(blocks.ranges(refine, finer), lag, price[straddle])
        lag_terms = np.sum([p["lagrangian"] for p in parts], axis=0) if straddle.any() else 0.0
        bound = (base_value + free_value + float(duals @ rhs_eff)
                 + float(terms[~straddle].sum()) + float(np.sum(lag_terms)))
        closed = bound - primal <= tolerance * max(1.0, abs(bound))
        if (closed and not (partial & ~exact).any()) or not refine.any() or rounds >= 12:
            break
        blocks = _concat(blocks, ~refine, _blocks_from(parts, blocks.ranges(refine, finer)))
    full = blocks.ranges(x >= 1 - EPS)
    partial_ranges = blocks.ranges((x > EPS) & (x < 1 - EPS))
    wanted = x[(x > EPS) & (x < 1 - EPS)] * blocks.cost[(x > EPS) & (x < 1 - EPS)]
    shares = np.array(run(*[
        delayed(_partial_spend)(f, names, cells, partial_ranges) for f in frames
    ])).reshape(len(frames), -1)
    offsets = np.cumsum(shares, axis=0) - shares  # spend of each block before each partition
    fills = [_Fill(full, partial_ranges, wanted - offsets[i]) for i in range(len(frames))]
    planned = run(*[delayed(_plan)(f, names, cells, fills[i]) for i, f in enumerate(frames)])
    infos = [p[1] for p in planned]
    split = [s for info in infos for s in info["split"]]
    cell_spend = np.sum([info["cell_spend"] for info in infos], axis=0)
    equity = float(sum(info["equity"] for info in infos))
    patch: dict[Any, float] = {}
    if split:
        patch, equity = _repair(split, cell_spend, matrix, rows, equity, solver)
        for fill in fills:
            fill.patch = patch
    outputs = [delayed(_plan)(f, names, cells, fills[i])[0] for i, f in enumerate(frames)]
    meta = planned[0][0].iloc[:0]
    units = dask.dataframe.from_delayed(outputs, meta=meta)
    summary = {
        "status": "optimal" if closed else "gap_open",
        "lp_objective": primal,
        "bound": max(bound, primal),
        "equity_after": equity,
        "gap": max(0.0, (max(bound, primal) - equity) / max(abs(bound), 1e-12)),
        "iterations": rounds,
        "partitions": len(frames),
        "repaired_customers": len(patch),
        "shadow_prices": {r.name: float(duals[k] * r.sense) for k, r in enumerate(rows)},
    }
    return DistributedResult(units, summary)


def _repair(
    split: list[tuple[Any, ...]],
    cell_spend: NDArray[np.float64],
    matrix: NDArray[np.float64],
    rows: list[Any],
    equity: float,
    solver: str,
) -> tuple[dict[Any, float], float]:
    """One level for each customer left between two: a MIP over their options, the rest of
    the plan fixed (at most one such customer per partly taken block)."""
    fixed = cell_spend.copy()
    for _, cell, _, _, _, spend, _ in split:
        fixed[cell] -= spend
    rhs = normalized_rhs(rows)
    residual = rhs - matrix @ fixed + 1e-9 * np.maximum(1.0, np.abs(rhs))
    owner = np.concatenate([np.full(len(s[3]), i) for i, s in enumerate(split)])
    cost = np.concatenate([s[3] for s in split])
    value = np.concatenate([s[4] for s in split])
    level = np.concatenate([s[2] for s in split])
    cell = np.array([s[1] for s in split])[owner]
    one_each = np.zeros((len(split), owner.size))
    one_each[owner, np.arange(owner.size)] = 1.0
    result = solvers.maximize(value, matrix[:, cell] * cost, residual, a_eq=one_each,
                              b_eq=np.ones(len(split)), integer=True, solver=solver)
    if result.status not in ("optimal", "feasible"):
        raise InfeasiblePlanError(
            "no plan giving every customer exactly one level meets the limits",
            [r.name for r in rows],
        )
    chosen = result.x > 0.5
    patch = {split[int(i)][0]: float(lv) for i, lv in zip(owner[chosen], level[chosen],
                                                          strict=True)}
    before = sum(s[6] for s in split)
    return patch, equity - before + float(value[chosen].sum())
