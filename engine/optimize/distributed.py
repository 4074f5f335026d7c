"""The exact allocation over partitions held by workers (a Dask cluster, or this process).

The same method as ``engine.optimize.lp``, arranged so that no per-customer array leaves
its partition (``engine.optimize.partition`` is what runs on a worker, next to its data;
``engine.optimize.cluster`` is where the partitions live):

1. Each worker reads its partition's files, values them with the plan's metric and cost
   strategies, and reduces them once to hull increments and their ratio keys
   (``engine.optimize.increments.HullIncrements``, ``engine.optimize.blocks.float_key``).
   That state stays on the worker for the whole run.
2. Each round, every partition returns per-(cell, ratio bin) sums of cost, value and count
   for the key ranges the driver asks about; bins are ranges of the monotone integer key of
   each ratio's float bits, so partitions agree on them without sharing state and their sums
   simply add up. The driver solves the block LP over those sums (PuLP, a few hundred
   columns); its duals price every cell.
3. Blocks that straddle a cell's price or are partly taken are refined (8 more key bits per
   round) and the Lagrangian terms of the straddling blocks' increments come back exact, so
   the bound is exact each round; rounds stop when it meets the block LP's value and every
   partly taken block holds a single ratio.
4. A partly taken block's spend is handed out in partition order (a prefix sum of each
   partition's share), so at most one customer per such block is left between two levels.
   Those customers and, per constrained cell, each partition's few customers nearest the
   cell's price are sent to the driver with their options, and ``engine.optimize.repair``
   settles them by its MIP, the rest of the plan fixed: the single machine's repair over
   the same neighbourhood (a superset of it).
5. Each worker writes its own partition of the plan (the single machine's units table) to a
   partitioned Parquet dataset, or returns it when no output is asked for; the driver adds
   up the per-partition sums into the summary and re-checks every limit.

The driver holds only per-cell block sums, prices, the block LP and the repair's few
customers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint, build_constraints, normalized_rhs, row_matrix
from engine.errors import (
    CancelledError,
    InfeasiblePlanError,
    InvalidInputError,
    SolverError,
)
from engine.optimize import collect, partition, sifting_cluster, solvers
from engine.optimize.blocks import float_key
from engine.optimize.cluster import InProcess, Workers
from engine.optimize.increments import SNAP, HullIncrements
from engine.optimize.partition import Fill, Ranges, Source
from engine.optimize.proof import FIRST_CORE, MAX_CORE
from engine.optimize.repair import repair
from engine.options import KINDS, OptionSet
from engine.plan import Plan
from engine.summary import PlanSummary

FIRST_SHIFT = 52  # the first blocks: one per cell and power of two of the ratio
STEP = 8  # key bits added per refinement: a refined block becomes at most 256 blocks
NEIGHBOURS = 8  # per constrained cell and partition: customers the repair may move
GAP = 1e-9  # relative gap within which the integer plan counts as proven optimal
_KEY_MIN = np.iinfo(np.int64).min
_KEY_MAX = np.iinfo(np.int64).max
EPS = SNAP
PARQUET = (".parquet", ".pq")


def sources(customers: str | Path | None = None, prospects: str | Path | None = None,
            options: str | Path | None = None) -> list[Source]:
    """One partition per file of a partitioned dataset (a directory of Parquet files, read
    recursively in name order, or a single file), plus one for the prospect pools.

    With customers, an options table is a small shared one (``segment-spend-table``);
    without, the options dataset is partitioned itself (all rows of a customer in one file).
    """
    def files(path: str | Path, field: str) -> list[str]:
        p = Path(path)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix in PARQUET and f.is_file())
            if not found:
                raise InvalidInputError.single(field, f"{p} holds no .parquet files")
            return found
        if not p.exists():
            raise InvalidInputError.single(field, f"{p} does not exist")
        return [str(p)]

    out: list[Source] = []
    if customers is not None:
        shared = str(options) if options is not None else None
        out += [Source(customers=f, shared_options=shared)
                for f in files(customers, "--customers")]
    elif options is not None:
        out += [Source(options=f) for f in files(options, "--options")]
    if prospects is not None:
        out.append(Source(prospects=str(prospects)))
    if not out:
        raise InvalidInputError.single("--customers", "the cluster needs --customers, "
                                       "--options or --prospects files")
    return out


@dataclass
class ClusterResult:
    summary: PlanSummary  # the single machine's, with ``partitions`` and ``lp_columns``
    units: pl.DataFrame | None  # None when the workers wrote the plan to ``paths``
    paths: list[str]


def _stub(names: list[str], resources: Sequence[str] = ()) -> OptionSet:
    """No units, the global segment names (and the limited resources): enough to build the
    plan's rows."""
    return OptionSet(extra={r: np.zeros(0) for r in resources if r != "cost"},
        unit_id=pl.Series([], dtype=pl.String), kind=np.zeros(0, dtype=np.int8),
        segment=np.zeros(0, dtype=np.int32), segments=names, fractional=np.zeros(0, dtype=bool),
        size=np.zeros(0), offsets=np.zeros(1, dtype=np.int64), level=np.zeros(0),
        cost=np.zeros(0), value=np.zeros(0),
    )


def allocate(
    parts: Sequence[Source],
    plan: Plan,
    workers: Workers | InProcess,
    *,
    output: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ClusterResult:
    """The exact LP of ``plan`` over the partitions ``parts`` (read by the workers), its
    integer repair, and the plan: written by the workers under ``output`` (one Parquet file
    per partition) or returned."""
    started = time.perf_counter()
    if plan.allocation.name != "lp":
        raise InvalidInputError.single(
            "plan.allocation.name",
            f"a cluster runs the exact 'lp' allocator, not {plan.allocation.name!r}")
    plan.validate()
    params = dict(plan.allocation.params)
    solver, tolerance = str(params.get("solver", "auto")), float(params.get("tolerance", 1e-12))

    def checkpoint() -> None:
        if should_stop():
            raise CancelledError("allocation cancelled")

    timings: dict[str, float] = {}
    workers.start(partition.load, parts, plan)
    collect.check_unique_ids(workers)
    names = sorted({s for found in workers.map(partition.segment_names) for s in found})
    rows = build_constraints(plan, _stub(names, [r.resource for r in plan.resource_limits]))
    matrix = row_matrix(rows, 2 * len(names))
    cells = (matrix != 0).any(axis=0)
    workers.update(partition.attach, names, cells)
    timings["load"] = time.perf_counter() - started
    checkpoint()
    if plan.resource_limits:
        return _allocate_resources(workers, rows, plan, output, solver, tolerance,
                                   should_stop, timings, started)

    mark = time.perf_counter()
    lp = _solve(workers, rows, matrix, cells, solver, tolerance, checkpoint)
    timings["lp"] = time.perf_counter() - mark
    checkpoint()

    mark = time.perf_counter()
    fills = _fills(workers, lp)
    notes, integer_bound = _integral(workers, fills, rows, cells, names, lp, solver, checkpoint)
    timings["repair"] = time.perf_counter() - mark
    checkpoint()

    mark = time.perf_counter()
    paths: list[str] = []
    if output is not None:
        out = Path(output)
        paths = [str(out / f"part-{i:05d}.parquet") for i in range(workers.n)]
    written = workers.map(partition.write, plan.discount_rate,
                          each=[(f, paths[i] if paths else None) for i, f in enumerate(fills)])
    units = _align(written, paths)
    timings["write"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    summary = collect.summary(written, rows, lp, notes, timings, plan, integer_bound,
                              workers.n)
    summary.assumptions, more = collect.assumptions(workers, plan)
    summary.notes.extend(more)
    return ClusterResult(summary, units, paths)


def _allocate_resources(workers: Workers | InProcess, rows: list[Constraint], plan: Plan,
                        output: str | Path | None, solver: str, tolerance: float,
                        should_stop: Callable[[], bool], timings: dict[str, float],
                        started: float) -> ClusterResult:
    """Limits on other resources: sifting over the partitions
    (``engine.optimize.sifting_cluster``), the split customers' MIP, the plan written."""
    mark = time.perf_counter()
    lp = sifting_cluster.solve(workers, rows, solver, tolerance, should_stop)
    timings["lp"] = time.perf_counter() - mark
    mark = time.perf_counter()
    moves, at, integer_bound, notes = sifting_cluster.integral(workers, rows, lp, lp.solver)
    timings["repair"] = time.perf_counter() - mark
    if should_stop():
        raise CancelledError("allocation cancelled")
    mark = time.perf_counter()
    written, paths = sifting_cluster.write(workers, moves, at, output, plan)
    units = _align(written, paths)
    timings["write"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    row_use = np.sum([w["row_use"] for w in written], axis=0)
    summary = collect.summary(written, rows, lp, notes, timings, plan, integer_bound,
                              workers.n, row_use=row_use, method="lagrange")
    summary.assumptions, more = collect.assumptions(workers, plan)
    summary.notes.extend(more)
    return ClusterResult(summary, units, paths)


@dataclass
class BlockLp:
    blocks: _Blocks
    x: NDArray[np.float64]
    duals: NDArray[np.float64]
    prices: NDArray[np.float64]
    primal: float
    bound: float
    closed: bool
    rounds: int
    solver: str
    columns: list[int]  # the block LP's columns, per round


def _solve(workers: Workers | InProcess, rows: list[Constraint], matrix: NDArray[np.float64],
           cells: NDArray[np.bool_], solver: str, tolerance: float,
           checkpoint: Callable[[], None]) -> BlockLp:
    """Block LP rounds until the exact Lagrangian bound meets the block LP's value."""
    no_lag, no_price = np.zeros((0, 4), dtype=np.int64), np.zeros(0)
    everything = np.array([[c, _KEY_MIN, _KEY_MAX, FIRST_SHIFT] for c in np.flatnonzero(cells)],
                          dtype=np.int64).reshape(-1, 4)
    parts = workers.map(partition.summary, everything, no_lag, no_price)
    base_cost = np.sum([p["base_cost"] for p in parts], axis=0)
    base = float(sum(p["base_value"] for p in parts)) + float(sum(p["free_value"] for p in parts))
    rhs_eff = normalized_rhs(rows) - matrix @ base_cost
    blocks = _blocks_from(parts, everything)
    duals = np.zeros(len(rows))
    prices = duals @ matrix
    x = np.zeros(blocks.cell.size)
    rounds, bound, primal, closed, name = 0, base, base, True, "none"
    columns: list[int] = []
    if not blocks.cell.size and (rhs_eff < -1e-9 * np.maximum(1.0, np.abs(rhs_eff))).any():
        raise InfeasiblePlanError("the budgets, caps and minimums cannot all be met",
                                  [r.name for r in rows])
    while blocks.cell.size:
        checkpoint()
        rounds += 1
        columns.append(int(blocks.cell.size))
        result = solvers.maximize(blocks.value, matrix[:, blocks.cell] * blocks.cost, rhs_eff,
                                  solver=solver)
        name = result.solver
        if result.status == "infeasible":
            raise InfeasiblePlanError("the budgets, caps and minimums cannot all be met",
                                      [r.name for r in rows])
        if result.status != "optimal":
            raise SolverError(f"{result.solver} stopped: {result.status}", result.status)
        x = np.clip(result.x, 0.0, 1.0)
        duals = np.maximum(result.shadow_prices, 0.0)
        prices = duals @ matrix
        primal = base + float(x @ blocks.value)
        price = prices[blocks.cell] + 0.0
        pkey = float_key(price)
        exact = (blocks.shift == 0) | (blocks.count <= 1)
        straddle = (blocks.lo < pkey) & (pkey < blocks.hi) & ~exact
        above = blocks.lo >= pkey
        terms = np.where(above, blocks.value - price * blocks.cost, 0.0)
        terms = np.where(exact, np.maximum(blocks.value - price * blocks.cost, 0.0), terms)
        partial = (x > EPS) & (x < 1 - EPS)
        refine = (straddle | partial) & ~exact
        finer = np.maximum(blocks.shift[refine] - STEP, 0)
        parts = workers.map(partition.summary, blocks.ranges(refine, finer),
                            blocks.ranges(straddle), price[straddle])
        lag = np.sum([p["lagrangian"] for p in parts], axis=0) if straddle.any() else 0.0
        bound = (base + float(duals @ rhs_eff) + float(terms[~straddle].sum())
                 + float(np.sum(lag)))
        closed = bound - primal <= tolerance * max(1.0, abs(bound))
        if (closed and not (partial & ~exact).any()) or not refine.any() or rounds >= 24:
            break
        blocks = _concat(blocks, ~refine, _blocks_from(parts, blocks.ranges(refine, finer)))
    return BlockLp(blocks, x, duals, prices, primal, max(bound, primal), closed, rounds, name,
               columns)


def _fills(workers: Workers | InProcess, lp: BlockLp) -> list[Fill]:
    """Per partition: the wholly taken blocks, and its share of each partly taken block's
    spend (handed out in partition order)."""
    blocks, x = lp.blocks, lp.x
    part_taken = (x > EPS) & (x < 1 - EPS)
    full = blocks.ranges(x >= 1 - EPS)
    partial = blocks.ranges(part_taken)
    wanted = x[part_taken] * blocks.cost[part_taken]
    shares = np.array(workers.map(partition.partial_spend, partial)).reshape(workers.n, -1)
    before = np.cumsum(shares, axis=0) - shares  # spend of each block before each partition
    return [Fill(full, partial, wanted - before[i]) for i in range(workers.n)]


def _integral(workers: Workers | InProcess, fills: list[Fill], rows: list[Constraint],
              cells: NDArray[np.bool_], names: list[str], lp: BlockLp, solver: str,
              checkpoint: Callable[[], None]) -> tuple[list[str], float]:
    """One level for every customer, proven optimal when it can be.

    First the single machine's repair (``engine.optimize.repair``) over the customers left
    between two levels and each partition's neighbours of the prices, every other customer
    fixed: the incumbent. Then reduced-cost fixing over the partitions: only customers with
    a level within ``bound - incumbent`` of their best reduced value can be in a better
    plan; a MIP over those levels and the pools (every other customer fixed) gives the
    integer optimum, proven when its answer is at least the bound less the least gap left
    out; otherwise the core grows fourfold (``FIRST_CORE`` levels over all partitions at
    first, ``MAX_CORE`` at most, as on one machine: ``engine.optimize.proof``) and the MIP
    runs again from the better plan. The choices go back to the partitions as patches.
    Returns the notes and the proven bound on the integer optimum."""
    infos = workers.map(partition.settle, lp.prices, cells, NEIGHBOURS,
                        each=[(f,) for f in fills])
    notes: list[str] = []
    equity = float(sum(i["equity"] for i in infos))
    if any((info["theta"] > 0).any() for info in infos):
        small, owner, alloc, shifted = _movable(infos, rows, names)
        old = alloc.equity(small)
        inc = HullIncrements(small).apply()
        repair(small, shifted, alloc, inc, cells[inc.cell], None, lp.prices, solver, None)
        equity += float(alloc.equity(small).sum() - old.sum())
        _patch(fills, infos, owner, alloc)
        notes += alloc.notes
    tol = GAP * max(1.0, abs(lp.bound))
    if lp.bound - equity <= tol:
        return notes, lp.bound
    proven, rounds, size, units = lp.bound, 0, 0, 0
    while True:  # the core grows fourfold per round, as engine.optimize.proof's does
        checkpoint()
        rounds += 1
        room = min(FIRST_CORE * 4 ** (rounds - 1), MAX_CORE)
        found = workers.map(partition.candidates, lp.prices, cells, lp.bound - equity + tol,
                            max(1, room // workers.n), each=[(f,) for f in fills])
        floor = min(f["floor"] for f in found)
        if not any(f["units"].size for f in found):
            proven = max(equity, lp.bound - floor)
            break
        small, owner, alloc, shifted = _movable(found, rows, names)
        size, units = small.cost.size, small.n_units
        old = alloc.equity(small)
        solved = _core_mip(small, shifted, alloc, solver)
        gain = float(alloc.equity(small).sum() - old.sum())
        if solved is not None and gain > 0:
            equity += gain
            _patch(fills, found, owner, alloc)
        if solved:  # the core's optimum: only a level left out could do better
            proven = max(equity, lp.bound - floor)
        if proven - equity <= tol or solved is False or room >= MAX_CORE:
            break
    done = "proven optimal" if proven - equity <= tol else "not proven optimal"
    notes.append(f"integer plan {done}: reduced-cost fixing over the partitions left "
                 f"{size} levels of {units} units for the MIP ({rounds} round"
                 f"{'s' if rounds > 1 else ''})")
    return notes, min(proven, lp.bound)


def _movable(infos: list[dict[str, Any]], rows: list[Constraint], names: list[str]
             ) -> tuple[OptionSet, NDArray[np.int64], Allocation, list[Constraint]]:
    """The partitions' movable units as one small problem: their options, their current
    choice, and the rows as they bind them (every other unit's spend fixed)."""
    owner = np.concatenate([np.full(i["units"].size, p) for p, i in enumerate(infos)])
    counts = np.concatenate([i["counts"] for i in infos])
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cell = np.concatenate([i["cell"] for i in infos]).astype(np.int64)

    def cat(key: str) -> NDArray[Any]:
        return np.concatenate([i[key] for i in infos])

    small = OptionSet(
        unit_id=pl.Series("unit_id", np.arange(counts.size).astype(str)),
        kind=(cell % len(KINDS)).astype(np.int8), segment=(cell // len(KINDS)).astype(np.int32),
        segments=list(names), fractional=cat("fractional").astype(bool),
        size=np.ones(counts.size), offsets=offsets, level=cat("level"), cost=cat("cost"),
        value=cat("value"), extra={"pos": cat("pos")},
    )
    alloc = Allocation(offsets[:-1] + cat("lo"), offsets[:-1] + cat("hi"), cat("theta"),
                       "optimal", "", "blocks")
    other = np.sum([i["cell_spend"] for i in infos], axis=0) - np.bincount(
        cell, weights=cat("spend"), minlength=small.n_cells)
    shifted = [Constraint(r.name, r.cells, r.sense, r.rhs - float(other[r.cells].sum()))
               for r in rows]
    return small, owner, alloc, shifted


def _patch(fills: list[Fill], infos: list[dict[str, Any]], owner: NDArray[np.int64],
           alloc: Allocation) -> None:
    """Send each partition its units' new choices (a later patch of a unit wins)."""
    pos = np.concatenate([i["pos"] for i in infos])
    for p, fill in enumerate(fills):
        mine = owner == p
        units = np.concatenate([fill.patch_units, infos[p]["units"]])
        lo = np.concatenate([fill.patch_lo, pos[alloc.lo[mine]]])
        hi = np.concatenate([fill.patch_hi, pos[alloc.hi[mine]]])
        theta = np.concatenate([fill.patch_theta, alloc.theta[mine]])
        last = units.size - 1 - np.unique(units[::-1], return_index=True)[1]
        fill.patch_units, fill.patch_lo = units[last], lo[last]
        fill.patch_hi, fill.patch_theta = hi[last], theta[last]


def _core_mip(small: OptionSet, rows: list[Constraint], alloc: Allocation, solver: str
              ) -> bool | None:
    """One level per customer of ``small`` (pools: shares of their levels) maximizing value
    within ``rows``; ``alloc`` takes the answer. None when no answer keeping every row was
    found, else whether the MIP was solved to optimality."""
    unit = small.unit_of_option
    matrix = row_matrix(rows, small.n_cells)
    coef = matrix[:, small.cell[unit]] * small.cost
    rhs = normalized_rhs(rows)
    slack = 1e-9 * np.maximum(1.0, np.abs(np.array([r.rhs for r in rows])))
    one_each = [(np.arange(s, e), np.ones(e - s))
                for s, e in zip(small.offsets[:-1], small.offsets[1:], strict=True)]
    result = solvers.maximize(small.value, coef, rhs + slack, a_eq=one_each,
                              b_eq=np.ones(small.n_units), integer=~small.fractional[unit],
                              solver=solver)
    if result.status not in ("optimal", "feasible"):
        return None
    x = np.where(small.fractional[unit], np.clip(result.x, 0.0, 1.0), result.x > 0.5)
    x[x < 1e-12] = 0.0
    lo, hi, theta = alloc.lo.copy(), alloc.hi.copy(), np.zeros(small.n_units)
    for u in range(small.n_units):  # a few hundred units at most; pools mix two levels
        s, e = small.offsets[u], small.offsets[u + 1]
        nz = s + np.flatnonzero(x[s:e])
        if nz.size == 0 or nz.size > 2 or (nz.size == 2 and small.fractional[u] == 0):
            return None
        lo[u], hi[u] = nz[0], nz[-1]
        theta[u] = x[nz[-1]] / x[nz].sum() if nz.size == 2 else 0.0
    spend = (1 - theta) * small.cost[lo] + theta * small.cost[hi]
    used = matrix @ np.bincount(small.cell, weights=spend, minlength=small.n_cells)
    if (used > rhs + 2 * slack).any():  # the MIP's tolerance is absolute: check exactly
        return None
    alloc.lo, alloc.hi, alloc.theta = lo, hi, theta
    return result.status == "optimal"


def _align(written: list[dict[str, Any]], paths: list[str]) -> pl.DataFrame | None:
    """The partitions' units as one table (in memory), or their files on one schema (a
    pools-only partition has no metric columns and null customer ids of its own type)."""
    if not paths:
        frames = [w["units"] for w in written]
        return pl.concat(frames, how="diagonal_relaxed") if frames else None
    schemas = [pl.read_parquet_schema(p) for p in paths]
    full: dict[str, pl.DataType] = {}
    by_customers = sorted(range(len(paths)), key=lambda i: -written[i]["customers"])
    for i in by_customers:  # the columns and types of partitions with customers first
        for name, dtype in schemas[i].items():
            full.setdefault(name, dtype)
    for path, schema in zip(paths, schemas, strict=True):
        if dict(schema) != full:  # small: only a partition without customers differs
            table = pl.read_parquet(path)
            table.select(
                pl.col(n).cast(t) if n in table.columns else pl.lit(None, t).alias(n)
                for n, t in full.items()
            ).write_parquet(path)
    return None


# --- ratio blocks over partitions -------------------------------------------------------------


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
    return _Blocks(cell=ranges[rid, 0], lo=lo, hi=hi, shift=shift, cost=total("cost"),
                   value=total("value"), count=total("count").astype(np.int64))


def _concat(a: _Blocks, keep: NDArray[np.bool_], b: _Blocks) -> _Blocks:
    return _Blocks(*(np.concatenate([getattr(a, f)[keep], getattr(b, f)]) for f in (
        "cell", "lo", "hi", "shift", "cost", "value", "count")))
