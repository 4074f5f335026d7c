"""The exact allocation LP for limits on any resource: sifting over a core of units.

With a row on contacts or calls, a cell's units no longer compete through one ratio, so the
block method does not apply. The LP (one weight per customer-level, a customer's weights
summing to 1, the limit rows) is solved by *sifting*, a column generation over units:

1. Prices. Row prices ``y`` (``<=`` form, >= 0) price every option at once in numpy
   (``engine.optimize.pricing``). A unit's best reduced value there gives the dual
   function ``g(y) = y . b + sum_i max_j (v_j - y . a_j)``, an upper bound on the LP for
   any ``y >= 0`` (weak duality over all customers).
2. Warm start. The same method on a random sample of the units (limits scaled by the
   sample's share) gives first prices; below a few thousand units the first core is
   everyone and no sample is needed.
3. Sifting. The units whose two best options are nearest at ``y`` form the *core*; every
   other unit is held at its best option. The core LP (held in HiGHS and re-solved from its
   last basis, ``engine.optimize.core_lp``; right-hand sides net of the held units' use)
   gives a plan meeting every limit and prices ``y'``. Every unit is priced at ``y'``; a
   held unit whose option is beaten there moves to its best option, and joins the core
   when it is beaten a second time. When no held unit is beaten, the core LP's optimum
   with the held units is the LP optimum: ``y'`` and each unit's best reduced value are a
   dual solution of the same value, so ``g(y') = objective`` certifies it. A vertex splits
   at most one unit per binding row. Each unit moves at most once before joining, so the
   rounds end.
4. A limit the core cannot keep is overrun (elastic, at a high price) instead of making
   the core LP infeasible; the units its price beats then join the core. An overrun left
   when no unit is beaten raises the price, and at last everyone with a choice joins and
   no overrun is allowed: then an infeasible LP means the limits cannot be met.

No model is ever built with a column per customer-level of the whole portfolio. With the
CBC solver the core LP is rebuilt through PuLP at each solve (the same rounds, slower).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from engine.constraints import Constraint
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import solvers
from engine.optimize.core_lp import HighsCore, PulpCore
from engine.optimize.pricing import (
    Joined,
    Priced,
    RowPricer,
    UnitPricer,
    best_two,
    options_of,
    whole,
)
from engine.options import OptionSet

MIN_CORE = 2_000  # units in the first core at least,
CORE_SHARE = 0.005
MIN_SAMPLE = 5_000  # units in the warm-start sample at least,
SAMPLE_SHARE = 0.05  # ... and this share of the units
JOIN_SHARE = 0.25  # units joining per round at most: this share of the core (or first)


@dataclass
class LagrangeResult:
    weights: NDArray[np.float64]  # per option, its share in the LP plan
    duals: NDArray[np.float64]  # row prices, <= form
    objective: float
    bound: float
    rounds: int
    solver: str


@dataclass
class Sifted:
    x: NDArray[np.float64]  # per core column, in the order the units joined
    y: NDArray[np.float64]
    objective: float
    bound: float
    rounds: int
    overrun: NDArray[np.bool_]  # rows the plan overruns (a sample's, never the answer's)


class Pricer(Protocol):
    """Where the units are priced: :class:`~engine.optimize.pricing.UnitPricer` over an
    option set in this process, or the partitions of a cluster
    (``engine.optimize.distributed``). The sifting loop sees only these small answers."""

    @property
    def n_units(self) -> int: ...
    @property
    def n_multi(self) -> int: ...
    def stats(self) -> tuple[float, float, NDArray[np.float64]]: ...
    def sample(self, size: int) -> Pricer | None: ...
    def open(self, y: NDArray[np.float64], k: int) -> NDArray[np.int64]: ...
    def join(self, ids: NDArray[np.int64]) -> Joined: ...
    def price(self, y: NDArray[np.float64], k: int) -> Priced: ...
    def everyone(self) -> NDArray[np.int64]: ...


@dataclass
class Context:
    """What the sifting loop needs besides its pricer."""

    resource_of_row: NDArray[np.int64]
    solver: str
    tolerance: float
    max_rounds: int
    should_stop: Callable[[], bool]
    deadline: float | None
    names: list[str]

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()


def solve_lagrange(
    options: OptionSet,
    rows: list[Constraint],
    solver: str = "auto",
    tolerance: float = 1e-12,
    max_rounds: int = 200,
    should_stop: Callable[[], bool] = lambda: False,
    time_limit: float | None = None,
    start: NDArray[np.float64] | None = None,
) -> LagrangeResult:
    """The LP over option weights (one set per unit summing to 1) under ``rows``.
    ``start``: row prices to start from (``<=`` form, one per row; a neighbouring LP's
    ``duals``, as the frontier's solves at budgets pass): the sample's LP starts from them
    (without a sample, the first core); the answer is the same LP optimum, certified the
    same way."""
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    name = solvers.resolve(solver)
    row_pricer = RowPricer(rows, options)
    pricer = UnitPricer(row_pricer, whole(options))
    ctx = Context(row_pricer.resource_of_row, name, tolerance, max_rounds, should_stop,
                  deadline, [r.name for r in rows])
    out = sift(ctx, pricer, row_pricer.b, final=True, start=start)
    return LagrangeResult(pricer.weights(out.x), out.y, out.objective,
                          max(out.bound, out.objective), out.rounds, name)


def two_largest(options: OptionSet, weights: NDArray[np.float64]
                ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Per unit its option of largest weight (``lo``), its option of second largest weight
    (``hi``, ``lo`` when that weight is below 1e-12) and ``hi``'s share of the two: no sort,
    the few split units only looked at twice."""
    lo, _, second = best_two(whole(options), weights)
    hi = lo.copy()
    theta = np.zeros(lo.size)
    split = np.flatnonzero(second >= 1e-12)
    if split.size:
        opt, local, begin = options_of(options.offsets, split)
        rest = weights[opt]
        rest[begin[:-1] + lo[split] - options.offsets[split]] = -np.inf
        best = np.maximum.reduceat(rest, begin[:-1])
        hits = np.flatnonzero(rest == best[local])
        first = np.ones(hits.size, dtype=bool)
        first[1:] = local[hits[1:]] != local[hits[:-1]]
        hi[split] = opt[hits[first]]
        theta[split] = second[split] / (weights[lo[split]] + second[split])
    return lo, hi, theta


def _penalties(ctx: Context, pricer: Pricer) -> NDArray[np.float64]:
    """Per row, the price of an elastic unit: ten times the widest spread of values per
    least positive use of the row's resource (above any price the LP needs, as a rule;
    raised at the end when an overrun is left)."""
    lo, hi, least = pricer.stats()
    spread = hi - lo if np.isfinite(lo) and np.isfinite(hi) else 0.0
    least = np.where(np.isfinite(least), least, 1.0)
    per_row = least[ctx.resource_of_row] if least.size else np.zeros(0)
    return 10.0 * (spread + 1.0) / per_row


def _sample_prices(ctx: Context, pricer: Pricer, b: NDArray[np.float64],
                   start: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Row prices from the LP of a random sample of the units, limits scaled by its share
    (a limit the sample cannot keep gets price 0); zeros when the pricer has no sample."""
    size = max(MIN_SAMPLE, int(SAMPLE_SHARE * pricer.n_units))
    sample = pricer.sample(size)
    if sample is None:
        return np.zeros(b.size)
    part = sift(ctx, sample, b * (size / pricer.n_units), final=False, start=start)
    return np.where(part.overrun, 0.0, part.y)


def sift(ctx: Context, pricer: Pricer, b: NDArray[np.float64], final: bool,
         start: NDArray[np.float64] | None = None) -> Sifted:
    """The LP over ``pricer``'s units under right-hand sides ``b``. ``final``: the answer
    (an overrun is resolved, or the limits are infeasible); else a sample's prices. The
    plan: every held unit at its held option, the core's columns at ``x``. ``start``: prices
    the sample's LP (or, without a sample, the first core) starts from."""
    n = pricer.n_units
    first = max(MIN_CORE, int(CORE_SHARE * n))
    y = np.zeros(b.size)
    if start is not None:
        y = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
        if y.shape != b.shape:
            raise ValueError(f"start: {y.size} prices for {b.size} rows")
    if first < pricer.n_multi and n > 2 * MIN_SAMPLE:
        y = _sample_prices(ctx, pricer, b, None if start is None else y)
    joining = pricer.open(y, first)
    penalty = _penalties(ctx, pricer)
    core = (HighsCore(b, penalty, ctx.left()) if ctx.solver == "highs"
            else PulpCore(b, penalty, ctx.solver, ctx.left()))
    core_value = np.zeros(0)  # per core column, its value
    in_core = 0
    overrun_allowed = 1e-9 * np.maximum(1.0, np.abs(b))
    rounds = raised = 0
    exact = False  # everyone with a choice in the core, no overrun allowed
    while True:
        rounds += 1
        if ctx.should_stop():
            raise CancelledError("allocation cancelled")
        joined = pricer.join(joining)
        if joining.size:
            core.add_units(joined.value, joined.unit, joined.starts, joined.index,
                           joined.coef, joined.fixed)
            core_value = np.concatenate([core_value, joined.value])
            in_core += joining.size
        joining = np.zeros(0, dtype=np.int64)
        core.set_residual(b - joined.held_use)
        solution = core.solve()
        if solution.status == "infeasible" and exact:
            raise InfeasiblePlanError("the limits cannot all be met", ctx.names)
        if solution.status != "optimal":
            raise SolverError(f"{ctx.solver} stopped on the core LP: {solution.status}",
                              solution.status)
        y = solution.prices
        room = _room(first, in_core)
        priced = pricer.price(y, room)
        objective = float(joined.held_value + core_value @ solution.x)
        bound = float(y @ b + priced.lagrangian)
        loose = 1e-11 * max(1.0, priced.absmax)
        keep = priced.beaten > loose
        changed, beaten = priced.units[keep], priced.beaten[keep]
        over = solution.slack > overrun_allowed
        if over.any() and final:
            if changed.size:  # the units the overrun's price beats join, most beaten first
                joining = _most(beaten, changed, room)
                continue
            if raised < 2:  # raise its price; at last, everyone and no overrun
                raised += 1
                penalty *= 1e3
                core.set_penalty(penalty)
            else:
                core.forbid_elastic()
                exact = True
                joining = pricer.everyone()
            continue
        closed = not over.any() and bound - objective <= ctx.tolerance * max(1.0, abs(bound))
        if closed or changed.size == 0 or rounds >= ctx.max_rounds:
            return Sifted(solution.x, y, objective, bound, rounds, over)
        joining = _most(beaten, changed, room)


def _room(first: int, in_core: int) -> int:
    """Units to join in one round at most: small steps keep each re-solve short."""
    return int(JOIN_SHARE * max(first, in_core))


def _most(beaten: NDArray[np.float64], candidates: NDArray[np.int64], k: int
          ) -> NDArray[np.int64]:
    """The (at most) ``k`` candidates most beaten, sorted."""
    if candidates.size > k:
        candidates = candidates[np.argpartition(-beaten, k - 1)[:k]]
    return np.sort(candidates)
