"""Limits on other resources (contacts, calls) over partitions held by workers.

The single machine's sifting loop (``engine.optimize.lagrange.sift``) runs on the driver with
:class:`PartsPricer`: the driver holds the row prices, the core LP and the core units'
columns; each partition keeps its units' sifting state on its worker
(``engine.optimize.pricing.UnitPricer``, the functions ``partition.sift_*``) and answers each
round with small things only: its Lagrangian sum, the held units' row use and value, and
its units most beaten or nearest a tie (capped at the round's room) with their columns.
Unit ids on the driver are ``partition << ID_SHIFT | local unit``.

The integer step (:func:`integral`): the LP plan leaves at most one customer per binding row
between two options; a MIP over them, every other unit at its LP plan, is the incumbent.
Then reduced-cost fixing at the LP's prices over the partitions, as the single machine's
proof does (``engine.optimize.proof``, in one pass, not its growing core): only customers
with two or more options losing less than the gap can move in a better plan; when they are
few, a MIP over them gives the integer optimum and its proven bound. The plan is "optimal"
only when its value is proven within ``GAP`` of that bound, else "feasible" with the gap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.constraints import Constraint, normalized_rhs
from engine.errors import InfeasiblePlanError, SolverError
from engine.optimize import partition, solvers
from engine.optimize.cluster import InProcess, Workers
from engine.optimize.lagrange import Context, sift
from engine.optimize.pricing import Joined, Priced
from engine.optimize.proof import FIRST_CORE, GAP
from engine.plan import Plan

ID_SHIFT = 40


@dataclass
class SiftLp:
    """The LP's answer in the shape the summary reads (``collect.summary``)."""

    primal: float
    bound: float
    duals: NDArray[np.float64]
    closed: bool
    rounds: int
    solver: str
    columns: list[int] = field(default_factory=list)


class PartsPricer:
    """The pricer interface of ``engine.optimize.lagrange`` over the partitions."""

    def __init__(self, workers: Workers | InProcess, units: list[int], multi: int) -> None:
        self.workers, self.units, self.multi = workers, units, multi
        self.joined: list[NDArray[np.int64]] = []  # per join, core columns per partition
        self.core_columns: list[int] = []  # core size after each join

    @property
    def n_units(self) -> int:
        return sum(self.units)

    @property
    def n_multi(self) -> int:
        return self.multi

    def stats(self) -> tuple[float, float, NDArray[np.float64]]:
        got = self.workers.map(partition.sift_query, "stats")
        least = np.min([g[2] for g in got], axis=0)
        return min(g[0] for g in got), max(g[1] for g in got), least

    def sample(self, size: int) -> None:
        return None  # the first prices are zero; the first core the nearest to a tie there

    def _ids(self, local: list[NDArray[np.int64]]) -> NDArray[np.int64]:
        return np.concatenate([np.asarray(a, dtype=np.int64) + (p << ID_SHIFT)
                               for p, a in enumerate(local)])

    def _split(self, ids: NDArray[np.int64]) -> list[tuple[NDArray[np.int64]]]:
        part = ids >> ID_SHIFT
        local = ids & ((1 << ID_SHIFT) - 1)
        return [(local[part == p],) for p in range(self.workers.n)]

    def open(self, y: NDArray[np.float64], k: int) -> NDArray[np.int64]:
        self.workers.update(partition.sift_open, y, k)
        got = self.workers.map(partition.sift_answer)
        ids = self._ids([g[0] for g in got])
        closeness = np.concatenate([g[1] for g in got])
        if ids.size > k:
            ids = ids[np.argpartition(closeness, k - 1)[:k]]
        return np.sort(ids)

    def join(self, ids: NDArray[np.int64]) -> Joined:
        self.workers.update(partition.sift_join, each=self._split(ids))
        got: list[Joined] = self.workers.map(partition.sift_answer)
        units = np.cumsum([0] + [g.fixed.size for g in got])
        cols = np.cumsum([0] + [g.value.size for g in got])
        nnz = np.cumsum([0] + [g.index.size for g in got])
        starts = np.concatenate([[0]] + [g.starts[1:] + nnz[p] for p, g in enumerate(got)])
        self.joined.append(np.diff(cols))
        return Joined(
            np.concatenate([g.value for g in got]),
            np.concatenate([g.unit + units[p] for p, g in enumerate(got)]),
            starts.astype(np.int64),
            np.concatenate([g.index for g in got]),
            np.concatenate([g.coef for g in got]),
            np.concatenate([g.fixed + cols[p] for p, g in enumerate(got)]),
            np.sum([g.held_use for g in got], axis=0),
            float(sum(g.held_value for g in got)),
        )

    def price(self, y: NDArray[np.float64], k: int) -> Priced:
        self.workers.update(partition.sift_price, y, k)
        got: list[Priced] = self.workers.map(partition.sift_answer)
        return Priced(float(sum(g.lagrangian for g in got)), max(g.absmax for g in got),
                      self._ids([g.units for g in got]),
                      np.concatenate([g.beaten for g in got]))

    def everyone(self) -> NDArray[np.int64]:
        return self._ids(self.workers.map(partition.sift_query, "everyone"))

    def settle(self, x: NDArray[np.float64]) -> None:
        """Hand each partition its core columns' share of ``x`` (in join order)."""
        counts = np.array(self.joined).reshape(-1, self.workers.n) if self.joined else (
            np.zeros((0, self.workers.n), dtype=np.int64))
        offsets = np.concatenate([[0], np.cumsum(counts.ravel())]).reshape(-1)
        pieces: list[list[NDArray[np.float64]]] = [[] for _ in range(self.workers.n)]
        for j in range(counts.shape[0]):
            for p in range(self.workers.n):
                at = offsets[j * self.workers.n + p]
                pieces[p].append(x[at:at + counts[j, p]])
        self.workers.update(partition.sift_settle,
                            each=[(np.concatenate(pp) if pp else np.zeros(0),) for pp in pieces])


def solve(workers: Workers | InProcess, rows: list[Constraint], solver: str, tolerance: float,
          should_stop: Callable[[], bool]) -> SiftLp:
    """The exact LP under ``rows`` by sifting over the partitions (``partition.attach`` has
    put them on the global segment codes); the LP plan stays on the workers."""
    workers.update(partition.sift_begin, rows)
    counts = workers.map(_counts)
    pricer = PartsPricer(workers, [c[0] for c in counts], sum(c[1] for c in counts))
    name = solvers.resolve(solver)
    resource_of_row = np.array([sorted({r.resource for r in rows}).index(r.resource)
                                for r in rows], dtype=np.int64)
    ctx = Context(resource_of_row, name, tolerance, 200, should_stop, None,
                  [r.name for r in rows])
    out = sift(ctx, pricer, normalized_rhs(rows), final=True)
    pricer.settle(out.x)
    bound = max(out.bound, out.objective)
    closed = bound - out.objective <= tolerance * max(1.0, abs(bound))
    return SiftLp(out.objective, bound, out.y, closed, out.rounds, name,
                  [int(c) for c in np.cumsum([j.sum() for j in pricer.joined])])


def _counts(part: partition.Part) -> tuple[int, int]:
    return part.sift.n_units, part.sift.n_multi


Moves = list[tuple[NDArray[np.int64], NDArray[np.int64]]]


def _mip(got: list[dict[str, Any]], rows: list[Constraint], solver: str, what: str
         ) -> tuple[Moves, float, float] | None:
    """One option each for the units of ``got`` (per partition: ``units``, ``begin`` of each
    unit's run among its options, their ``value`` and limit-row columns, ``rest_use`` of
    every other unit), within the limits net of ``rest_use``. Per partition the units and
    the position of their option among their runs; the plan's value; the MIP's proven bound
    (nan when the solver does not give one). None when no such plan keeps every limit."""
    b = normalized_rhs(rows)
    rest = np.sum([g["rest_use"] for g in got], axis=0)
    base = float(sum(g["rest_value"] for g in got))
    n_units = sum(g["units"].size for g in got)
    empty = np.zeros(0, dtype=np.int64)
    if n_units == 0:
        if (rest > b + 1e-9 * np.maximum(1.0, np.abs(b))).any():
            return None
        return [(empty, empty) for _ in got], base, base
    values = np.concatenate([g["value"] for g in got])
    coef = np.zeros((len(rows), values.size))
    one_each: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
    at = 0
    for g in got:
        m = g["value"].size
        col = np.repeat(np.arange(m), np.diff(g["starts"]))
        np.add.at(coef, (g["index"], at + col), g["coef"])
        one_each += [(at + np.arange(s, e), np.ones(e - s))
                     for s, e in itertools.pairwise(g["begin"])]
        at += m
    slack = 1e-9 * np.maximum(1.0, np.abs(b))
    result = solvers.maximize(values, coef, b - rest + slack, a_eq=one_each,
                              b_eq=np.ones(n_units), integer=np.ones(values.size, dtype=bool),
                              solver=solver)
    if result.status == "infeasible":
        return None
    if result.status not in ("optimal", "feasible"):
        raise SolverError(f"{result.solver} stopped on the {what} MIP: {result.status}",
                          result.status)
    chosen = result.x > 0.5
    moves: Moves = []
    at = 0
    for g in got:
        begin = g["begin"]
        pick = np.flatnonzero(chosen[at:at + g["value"].size])
        local = pick - begin[np.searchsorted(begin, pick, side="right") - 1]
        moves.append((g["units"], g["offset"][pick] if "offset" in g else local))
        at += g["value"].size
    value = base + float(values[chosen].sum())
    bound = base + result.bound if result.status == "optimal" else float("nan")
    return moves, value, bound


def integral(workers: Workers | InProcess, rows: list[Constraint], lp: SiftLp, solver: str
             ) -> tuple[Moves, NDArray[np.float64] | None, float, list[str]]:
    """One level per customer. First a MIP over the customers the LP plan splits, every
    other unit at its LP plan: the incumbent. Then, when it is not within ``GAP`` of the LP
    bound, reduced-cost fixing at the LP's prices as on one machine: a better plan uses only
    options losing less than ``bound - incumbent`` against each unit's best; a MIP over the
    units with two or more such options (``FIRST_CORE`` levels at most, no pool among them), every
    other unit at its best option, gives the integer optimum with its proven bound.
    Returns per partition the units moved and their option, the prices whose best options
    are the base plan (None: the LP plan), the proven bound on the integer optimum, notes."""
    got = workers.map(partition.sift_split)
    settled = _mip(got, rows, solver, "split customers'")
    if settled is None:
        raise InfeasiblePlanError("no plan with one level per customer keeps every limit "
                                  "with the other customers at the LP plan",
                                  [r.name for r in rows])
    moves, value, _ = settled
    n_split = sum(g["units"].size for g in got)
    notes = [f"{n_split} customers split by the LP plan settled by a MIP"] if n_split else []
    tol = GAP * max(1.0, abs(lp.bound))
    if lp.bound - value <= tol:
        return moves, None, lp.bound, notes
    delta = lp.bound - value + tol
    found = workers.map(partition.sift_candidates, lp.duals, delta, FIRST_CORE)
    free, levels = sum(f["free"] for f in found), sum(f["levels"] for f in found)
    if levels > FIRST_CORE or any(f["pools"] for f in found):
        notes.append(f"integer plan not proven: {free} units can still move over {levels} "
                     f"levels (the core MIP takes {FIRST_CORE} levels at most, no pools); "
                     "gap to the LP bound")
        return moves, None, lp.bound, notes
    core = _mip(found, rows, solver, "core")
    if core is None or core[1] < value:
        notes.append("integer plan not proven: the core MIP found no better plan")
        return moves, None, lp.bound, notes
    core_moves, core_value, mip_bound = core
    proven = lp.bound if np.isnan(mip_bound) else min(lp.bound, max(mip_bound, core_value))
    notes.append(f"reduced-cost fixing left {free} customers free; their MIP, every other "
                 "customer at its best option, gives the integer plan")
    return core_moves, lp.duals, max(proven, core_value), notes


def write(workers: Workers | InProcess, moves: Moves, at: NDArray[np.float64] | None,
          output: str | Path | None, plan: Plan) -> tuple[list[dict[str, Any]], list[str]]:
    """Each partition writes its plan (or returns it); the sums and the file paths."""
    paths: list[str] = []
    if output is not None:
        paths = [str(Path(output) / f"part-{i:05d}.parquet") for i in range(workers.n)]
    written = workers.map(partition.sift_write, plan.discount_rate, at,
                          each=[(u, c, paths[i] if paths else None)
                                for i, (u, c) in enumerate(moves)])
    return written, paths

