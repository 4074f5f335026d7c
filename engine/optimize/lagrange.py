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

import numpy as np
from numpy.typing import NDArray

from engine.constraints import Constraint
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import solvers
from engine.optimize.core_lp import HighsCore, PulpCore
from engine.optimize.pricing import RowPricer, View, best_two, options_of, subset, whole
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
class _Sifted:
    weights: NDArray[np.float64]  # per option of the view
    y: NDArray[np.float64]
    objective: float
    bound: float
    rounds: int
    overrun: NDArray[np.bool_]  # rows the plan overruns (a sample's, never the answer's)


@dataclass
class _Context:
    options: OptionSet
    pricer: RowPricer
    solver: str
    penalty: NDArray[np.float64]
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
) -> LagrangeResult:
    """The LP over option weights (one set per unit summing to 1) under ``rows``."""
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    name = solvers.resolve(solver)
    pricer = RowPricer(rows, options)
    ctx = _Context(options, pricer, name, _penalties(options, pricer), tolerance, max_rounds,
                   should_stop, deadline, [r.name for r in rows])
    out = _sift(ctx, whole(options), pricer.b, final=True)
    return LagrangeResult(out.weights, out.y, out.objective, max(out.bound, out.objective),
                          out.rounds, name)


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


def _penalties(options: OptionSet, pricer: RowPricer) -> NDArray[np.float64]:
    """Per row, the price of an elastic unit: ten times the widest spread of values per
    least positive use of the row's resource (above any price the LP needs, as a rule;
    raised at the end when an overrun is left)."""
    value = options.value
    spread = float(value.max() - value.min()) if value.size else 0.0
    least = []
    for use in pricer.use:
        positive = use[use > 0]
        least.append(float(positive.min()) if positive.size else 1.0)
    per_row = np.array(least)[pricer.resource_of_row] if least else np.zeros(0)
    return 10.0 * (spread + 1.0) / per_row


def _sample_prices(ctx: _Context, view: View, b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row prices from the LP of a random sample of ``view``'s units, limits scaled by its
    share (a limit the sample cannot keep gets price 0)."""
    size = max(MIN_SAMPLE, int(SAMPLE_SHARE * view.n))
    rng = np.random.default_rng(0)
    local = np.sort(rng.choice(view.n, size, replace=False))
    units = local if view.units is None else view.units[local]
    part = _sift(ctx, subset(ctx.options, units), b * (size / view.n), final=False)
    return np.where(part.overrun, 0.0, part.y)


def _sift(ctx: _Context, view: View, b: NDArray[np.float64], final: bool) -> _Sifted:
    """The LP over ``view``'s units under right-hand sides ``b``. ``final``: the answer
    (an overrun is resolved, or the limits are infeasible); else a sample's prices."""
    options, pricer = ctx.options, ctx.pricer
    value = options.value
    n = view.n
    multi = view.counts >= 2
    first = max(MIN_CORE, int(CORE_SHARE * n))
    y = np.zeros(b.size)
    if first < int(multi.sum()) and n > 2 * MIN_SAMPLE:
        y = _sample_prices(ctx, view, b)
    reduced = pricer.reduced(y, view)
    pick, top, second = best_two(view, reduced)
    fixed = pick  # per unit, the (local) option it is held at outside the core
    in_core = np.zeros(n, dtype=bool)
    joining = _nearest(np.where(multi, top - second, np.inf), first)
    penalty = ctx.penalty.copy()
    core = (HighsCore(b, penalty, ctx.left()) if ctx.solver == "highs"
            else PulpCore(b, penalty, ctx.solver, ctx.left()))
    core_opt = np.zeros(0, dtype=np.int64)  # local options, in column order
    overrun_allowed = 1e-9 * np.maximum(1.0, np.abs(b))
    rounds = raised = 0
    exact = False  # everyone with a choice in the core, no overrun allowed
    while True:
        rounds += 1
        if ctx.should_stop():
            raise CancelledError("allocation cancelled")
        if joining.size:
            fixed[joining] = pick[joining]  # at its best: the basis stays dual feasible
            in_core[joining] = True
            opt, unit, begin = options_of(view.offsets, joining)
            glob = view.glob(opt)
            starts, index, coef = pricer.columns(glob)
            core.add_units(value[glob], unit, starts, index, coef,
                           begin[:-1] + fixed[joining] - view.offsets[joining])
            core_opt = np.concatenate([core_opt, opt])
        held = np.flatnonzero(~in_core)
        core.set_residual(b - pricer.usage(view.glob(fixed[held])))
        solution = core.solve()
        if solution.status == "infeasible" and exact:
            raise InfeasiblePlanError("the limits cannot all be met", ctx.names)
        if solution.status != "optimal":
            raise SolverError(f"{ctx.solver} stopped on the core LP: {solution.status}",
                              solution.status)
        y = solution.prices
        reduced = pricer.reduced(y, view)
        pick, top, _ = best_two(view, reduced)
        objective = float(value[view.glob(fixed[held])].sum()
                          + value[view.glob(core_opt)] @ solution.x)
        bound = float(y @ b + top.sum())
        beaten = np.zeros(n)
        beaten[held] = top[held] - reduced[fixed[held]]
        loose = 1e-11 * max(1.0, float(np.abs(top).max()))
        changed = np.flatnonzero(beaten > loose)
        over = solution.slack > overrun_allowed
        if over.any() and final:
            if changed.size:  # the units the overrun's price beats join, most beaten first
                joining = _most(beaten, changed, _room(first, in_core))
                continue
            if raised < 2:  # raise its price; at last, everyone and no overrun
                raised += 1
                penalty *= 1e3
                core.set_penalty(penalty)
            else:
                core.forbid_elastic()
                exact = True
                joining = np.flatnonzero(multi & ~in_core)
            continue
        closed = not over.any() and bound - objective <= ctx.tolerance * max(1.0, abs(bound))
        if closed or changed.size == 0 or rounds >= ctx.max_rounds:
            weights = np.zeros(view.offsets[-1])
            weights[fixed[held]] = 1.0
            weights[core_opt] = solution.x
            return _Sifted(weights, y, objective, bound, rounds, over)
        joining = _most(beaten, changed, _room(first, in_core))


def _room(first: int, in_core: NDArray[np.bool_]) -> int:
    """Units to join in one round at most: small steps keep each re-solve short."""
    return int(JOIN_SHARE * max(first, int(in_core.sum())))


def _most(beaten: NDArray[np.float64], candidates: NDArray[np.int64], k: int
          ) -> NDArray[np.int64]:
    """The (at most) ``k`` candidates most beaten, sorted."""
    if candidates.size > k:
        candidates = candidates[np.argpartition(-beaten[candidates], k - 1)[:k]]
    return np.sort(candidates)


def _nearest(closeness: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """The (at most) ``k`` units of smallest finite closeness, sorted."""
    finite = np.flatnonzero(np.isfinite(closeness))
    if finite.size > k:
        finite = finite[np.argpartition(closeness[finite], k - 1)[:k]]
    return np.sort(finite)
