"""The integer optimum, proven when it can be: reduced-cost fixing, then a MIP over the core.

The LP's row prices ``y`` (duals, in ``<=`` form) give every option ``j`` of a unit ``i``
its reduced value ``r_j = v_j - p_c c_j`` (``p_c`` the price of the unit's cell) and every
unit its best ``L_i = max_j r_j``. For any plan ``x`` meeting the rows, weak duality gives

    value(x) <= y . b + sum_i r_{x_i} = B - sum_i (L_i - r_{x_i}),

``B`` being the Lagrangian bound. So a customer-level whose *reduced-cost gap*
``L_i - r_j`` exceeds ``B - z`` (``z`` an incumbent's value) is in no plan better than the
incumbent, and a customer left with one level is fixed. A MIP over the remaining *core*
(every other customer at the incumbent's level; prospect pools free, as shares of their
hull increments) then finds the optimum. When the core is too large for one MIP, only
levels with a gap up to some ``d < B - z`` enter it; a plan using a level left out is
worth at most ``B - d``, so the MIP's optimum ``z*`` is proven once ``z* >= B - d``, and
otherwise ``d`` grows to ``B - z*`` and the MIP runs again, seeded by the better plan.

The proven upper bound on the integer optimum is ``max(MIP bound, B - d)``. The plan is
"optimal" only when that bound is within :data:`GAP` (relative) of it; otherwise it is
"feasible" with that gap (a time limit, or a core too large to finish).

With limits on resources besides spend the proof is first split along the LP's binding
limits (``engine.optimize.split``: the same fixing per group of customers under the same
binding limits, against that group's own share of the bound); this module's core MIP over
every limit is the fallback (a prospect pool under a limit, a group without a plan).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from engine.allocation import Allocation
from engine.constraints import (
    Constraint,
    normalized_rhs,
    option_matrix,
    resource_prices,
    sparse_row_matrix,
    spend_only,
)
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import solvers
from engine.optimize.increments import Increments
from engine.optimize.split import highs_core, kth_gap, prove_split, row_use
from engine.options import OptionSet

GAP = 1e-9  # relative gap within which a plan counts as proven optimal
FIRST_CORE = 40_000  # levels in the first core MIP at most
MAX_CORE = 400_000  # levels in any core MIP at most: beyond, the plan is reported feasible
# levels besides the plan's own in the first MIP without an incumbent: a quick first plan
# (with 51 limits, a core of 5,000 such levels stalled HiGHS' root node for 4-6 s, one of
# 1,000 gave a plan within 1e-5 in under 2 s)
FIRST_PICK = 1_000


def prove(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    inc: Increments,
    duals: NDArray[np.float64],
    solver: str,
    time_limit: float | None,
    have_incumbent: bool,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Improve ``allocation`` (in place) to the integer optimum and say whether it is proven.

    ``duals`` are the LP's row prices in ``<=`` form, ``inc`` its hull increments (the pools'
    levels in the MIP). ``have_incumbent``: whether ``allocation`` gives every customer one
    level and keeps every row (else it is the LP's plan: the first core is the levels
    nearest their price, every other customer at the LP's lower level). Sets ``status`` ("optimal"
    or "feasible"), ``integer_bound`` and a note; raises ``InfeasiblePlanError`` when no
    plan giving every customer one level keeps the rows."""
    started = time.perf_counter()
    matrix = sparse_row_matrix(rows, options.n_cells)
    rhs = normalized_rhs(rows)
    general = not spend_only(rows)  # a limit on a resource besides spend
    if general and prove_split(
        options, rows, allocation, duals, GAP, time_limit, should_stop
    ):  # the components under the binding limits, each proven on its own
        return
    unit_opt = options.unit_of_option
    starts = options.offsets[:-1]
    reduced = options.value - resource_prices(rows, options, duals)
    best = np.maximum.reduceat(reduced, starts)
    bound = float(duals @ rhs + best.sum())
    gap_of = best[unit_opt] - reduced
    in_rows = np.asarray(abs(matrix).sum(axis=0)).ravel() > 0
    customer = ~options.fractional & in_rows[options.cell]
    pool = options.fractional & in_rows[options.cell]
    # with limits on other resources, pools keep the LP's mix (the MIP's bound is then not
    # one on every plan: the proven bound stays the LP's)
    held_pools = general and bool(pool.any())
    if general:
        pool = np.zeros_like(pool)
    choice = allocation.lo.copy()
    value = float(allocation.equity(options).sum()) if have_incumbent else -np.inf
    integral = ~options.fractional
    cand = customer[unit_opt]
    tol = GAP * max(1.0, abs(bound))
    proven_bound = np.inf
    rounds = core_size = 0
    cut = bound - value if have_incumbent else 0.0
    timed_out = False
    while True:
        rounds += 1
        if should_stop():
            raise CancelledError("allocation cancelled")
        held = np.zeros(unit_opt.size, dtype=bool)
        held[choice[integral]] = True
        cand_gap = np.where(cand & ~held, gap_of, np.inf)
        if rounds == 1 and not have_incumbent:  # the levels nearest their price (besides
            # the plan's own), FIRST_PICK of them: a first plan to fix against
            cut = kth_gap(cand_gap, FIRST_PICK, 0.0)
        # at most FIRST_CORE levels in the first MIP, growing fourfold per round
        room = min(FIRST_CORE * 4 ** (rounds - 1), MAX_CORE)
        within = np.flatnonzero(cand_gap <= cut + tol)
        if within.size > room:
            cut = float(np.partition(cand_gap[within], room - 1)[room - 1])
        keep = (cand_gap <= cut + tol) | held
        left_out = cand_gap[~keep & np.isfinite(cand_gap)]
        floor = float(left_out.min()) if left_out.size else np.inf  # least gap left out
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - started)
        if remaining is not None and remaining <= 0:
            timed_out = True
            break
        result = _core_mip(options, rows, inc, matrix, rhs, allocation, choice, keep, customer,
                           pool, solver, remaining, should_stop, abs_gap=0.5 * tol)
        core_size = int(keep.sum())
        if result is None:  # the core has no plan keeping the rows
            if not np.isfinite(floor):
                raise InfeasiblePlanError(
                    "no plan giving every customer exactly one level meets the limits "
                    f"(the LP relaxation does, with bound {bound:.6g})",
                    [r.name for r in rows if r.sense < 0],
                )
            if room >= MAX_CORE:
                break
            cut = kth_gap(cand_gap, 4 * core_size, floor)  # four times the levels
            continue
        z_core, mip_bound, solved = result
        if not np.isfinite(z_core):  # stopped before it found a plan
            timed_out = True
            break
        value = float(allocation.equity(options).sum())
        choice[integral] = allocation.lo[integral]
        proven_bound = max(value + mip_bound - z_core, bound - floor)
        if proven_bound - value <= tol:
            break
        if not solved:  # the MIP stopped at its time limit
            timed_out = True
            break
        if room >= MAX_CORE and within.size > room:
            break
        cut = max(bound - value, cut)
    if not np.isfinite(value):
        raise SolverError(
            "no plan giving every customer exactly one level was found "
            + ("within the time limit" if timed_out else f"among {MAX_CORE} levels")
        )
    if held_pools:
        proven_bound = bound
    proven_bound = max(proven_bound, value) if np.isfinite(proven_bound) else bound
    allocation.integer_bound = min(proven_bound, bound)
    optimal = allocation.integer_bound - value <= tol
    allocation.status = "optimal" if optimal else "feasible"
    how = (
        "proven optimal" if optimal
        else f"not proven optimal ({'time limit' if timed_out else 'core too large'})"
    )
    allocation.notes.append(
        f"integer plan {how}: reduced-cost fixing left {core_size} levels for the MIP "
        f"({rounds} round{'s' if rounds > 1 else ''}), proven bound {allocation.integer_bound:.10g}"
    )


def _core_mip(
    options: OptionSet,
    rows: list[Constraint],
    inc: Increments,
    matrix: sparse.csr_matrix,
    rhs: NDArray[np.float64],
    allocation: Allocation,
    choice: NDArray[np.int64],
    keep: NDArray[np.bool_],
    customer: NDArray[np.bool_],
    pool: NDArray[np.bool_],
    solver: str,
    time_limit: float | None,
    should_stop: Callable[[], bool] = lambda: False,
    abs_gap: float = GAP,
) -> tuple[float, float, bool] | None:
    """The MIP over the kept levels of the core customers (those with two or more kept) and
    the hull increments of the constrained pools; every other unit as ``choice`` and
    ``allocation`` hold it. Writes the plan into ``allocation`` and returns (the core's
    value, its proven bound, whether solved to the gap), or None when infeasible."""
    unit_opt = options.unit_of_option
    n_kept = np.bincount(unit_opt[keep], minlength=options.n_units)
    core = customer & (n_kept >= 2)
    opt = np.flatnonzero(keep & core[unit_opt])
    owner_unit = unit_opt[opt]
    # the pools' increments, after each pool's cheapest hull point
    pools = np.flatnonzero(pool)
    counts = np.diff(inc.start)[pools]
    pinc = (
        np.concatenate([np.arange(inc.start[p], inc.start[p + 1]) for p in pools])
        if pools.size else np.zeros(0, dtype=np.int64)
    )
    # spend and value of every unit outside the MIP, per cell
    fixed_units = ~core & ~pool
    n_cells = options.n_cells
    spend = np.zeros(options.n_units)
    held = np.where(options.fractional, 0, choice)
    spend[~options.fractional] = options.cost[held[~options.fractional]]
    other = fixed_units & options.fractional  # unconstrained pools keep their mix
    spend[other] = allocation.spend(options)[other]
    spend[pool] = options.cost[inc.first[pool]]
    spend[core] = 0.0
    general = not spend_only(rows)
    if general:  # what the units outside the MIP use of each row's resource
        weight = np.zeros(options.cost.size)
        outside = np.flatnonzero(~core & ~options.fractional)
        weight[choice[outside]] = 1.0
        mixed = np.flatnonzero(options.fractional)
        np.add.at(weight, allocation.lo[mixed], 1.0 - allocation.theta[mixed])
        np.add.at(weight, allocation.hi[mixed], allocation.theta[mixed])
        used = row_use(rows, options, matrix, weight)
    else:
        used = matrix @ np.bincount(options.cell, weights=spend, minlength=n_cells)
    residual = rhs - used
    slack = 1e-9 * np.maximum(1.0, np.abs(rhs))
    # columns: core levels, then pool increments
    col_cell = np.concatenate([options.cell[owner_unit], inc.cell[pinc].astype(np.int64)])
    col_cost = np.concatenate([options.cost[opt], inc.dc[pinc]])
    col_value = np.concatenate([options.value[opt], inc.dv[pinc]])
    binary = np.concatenate([np.ones(opt.size, dtype=bool), np.zeros(pinc.size, dtype=bool)])
    if general:
        a = option_matrix(rows, options, opt)
    else:
        a = (matrix[:, col_cell].multiply(col_cost[None, :])).tocsr()
    nonempty = np.diff(a.indptr) > 0
    if (residual[~nonempty] < -slack[~nonempty]).any():  # broken by the fixed units alone
        return None
    live = np.flatnonzero(nonempty)
    ub_rows = [
        (a.indices[a.indptr[k]:a.indptr[k + 1]].astype(np.int64),
         a.data[a.indptr[k]:a.indptr[k + 1]])
        for k in live.tolist()
    ]
    core_units = np.flatnonzero(core)
    bounds_eq = np.searchsorted(owner_unit, core_units)
    ends_eq = np.append(bounds_eq[1:], opt.size)
    eq_rows = [
        (np.arange(s, e, dtype=np.int64), np.ones(e - s)) for s, e in zip(bounds_eq, ends_eq,
                                                                          strict=True)
    ]
    if not opt.size and not pinc.size:
        ok = bool((residual >= -slack).all())
        if not ok:
            return None
        x = np.zeros(0)
        mip_obj = mip_bound = 0.0
        solved = True
    else:
        limit = residual + slack
        first_bound = np.inf
        ends = None if time_limit is None else time.perf_counter() + time_limit
        direct = solvers.resolve(solver) == "highs" and not pinc.size
        start = (opt == choice[owner_unit]).astype(np.float64)  # the incumbent's levels
        for attempt in range(3):
            left = None if ends is None else max(ends - time.perf_counter(), 1e-3)
            if direct:  # arrays straight to HiGHS, started from the incumbent
                result = highs_core(col_value, a[live], limit[live], bounds_eq, start, left,
                                    should_stop, abs_gap)
            else:
                result = solvers.maximize(
                    col_value, ub_rows, limit[live],
                    a_eq=eq_rows if eq_rows else None,
                    b_eq=np.ones(len(eq_rows)) if eq_rows else None,
                    integer=binary, solver=solver, time_limit=left,
                )
            if result.status == "infeasible":
                return None
            x = np.clip(np.nan_to_num(result.x), 0.0, 1.0)
            x[:opt.size] = np.round(x[:opt.size])
            solved = result.status == "optimal"
            mip_obj = float(col_value @ x)
            if attempt == 0:  # the bound of the model as posed (later ones are tighter);
                # an unfinished MIP without a dual bound (CBC's, a killed run) proves nothing
                first_bound = (result.bound if np.isfinite(result.bound)
                               else mip_obj if solved else np.inf)
            mip_bound = max(first_bound, mip_obj)
            one_each = np.bincount(owner_unit, weights=x[:opt.size], minlength=options.n_units)
            answered = result.status in ("optimal", "time_limit") and bool(
                (one_each[core_units] == 1).all()
            )
            if not answered:
                if solved:
                    return None
                return -np.inf, np.inf, False  # stopped without a plan: the incumbent stays
            # A solver's feasibility tolerance is absolute (CBC's breaks a row by 1e-5 at
            # times): check the rows exactly; a broken row is tightened by twice the excess.
            excess = a @ x - (residual + 2 * slack)
            if (excess > 0).any():  # CBC writes shares with 8 digits: shave the pools' spend
                x = _shave(a, x, excess + slack, ~binary)
                excess = a @ x - (residual + 2 * slack)
            if not (excess > 0).any():
                mip_obj = float(col_value @ x)
                break
            limit = limit - 2 * np.maximum(excess, 0.0) - slack * (excess > 0)
        else:
            return None  # the rows cannot be kept: a core broken in all but tolerance
    taken = opt[x[:opt.size] > 0.5]
    lo, hi, theta = allocation.lo, allocation.hi, allocation.theta
    lo[customer & ~core] = choice[customer & ~core]
    hi[customer & ~core] = choice[customer & ~core]
    theta[customer] = 0.0
    lo[unit_opt[taken]] = taken
    hi[unit_opt[taken]] = taken
    if pools.size:
        _set_pools(options, inc, allocation, pools, counts, x[opt.size:])
    pool_base = float(options.value[inc.first[pool]].sum())
    return mip_obj + pool_base, mip_bound + pool_base, solved


def _shave(
    a: sparse.csr_matrix,
    x: NDArray[np.float64],
    excess: NDArray[np.float64],
    continuous: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Lower the continuous shares that spend the most on each row broken by ``excess``
    (> 0) until the row holds: float noise of a solver's answer, a few 1e-5 at most."""
    x = x.copy()
    for k in np.flatnonzero(excess > 0).tolist():
        cols = a.indices[a.indptr[k]:a.indptr[k + 1]]
        coef = a.data[a.indptr[k]:a.indptr[k + 1]]
        use = coef * x[cols]
        mine = (coef > 0) & continuous[cols] & (use > 0)
        if not mine.any():
            continue
        j = int(np.argmax(np.where(mine, use, -np.inf)))
        x[cols[j]] = max(0.0, x[cols[j]] - float(excess[k]) / float(coef[j]))
    return x


def _set_pools(
    options: OptionSet,
    inc: Increments,
    allocation: Allocation,
    pools: NDArray[np.int64],
    counts: NDArray[np.int64],
    shares: NDArray[np.float64],
) -> None:
    """Each pool's mix of two adjacent hull levels from the shares of its increments (taken
    in order: same spend, at least the value on a concave hull)."""
    hull = options.hull
    begin = 0
    for p, k in zip(pools.tolist(), counts.tolist(), strict=True):
        dc = inc.dc[inc.start[p]:inc.start[p + 1]]
        spend = float(dc @ shares[begin:begin + k])
        begin += k
        cum = np.cumsum(dc)
        whole = int(np.searchsorted(cum, spend * (1 + 1e-12), side="right"))
        whole = min(whole, k)
        before = float(cum[whole - 1]) if whole else 0.0
        share = 0.0 if whole >= k else max(0.0, min(1.0, (spend - before) / float(dc[whole])))
        if share < 1e-12:
            share = 0.0
        base = int(hull.offsets[p])
        allocation.lo[p] = hull.points[base + whole]
        allocation.hi[p] = hull.points[base + whole + (1 if share > 0 else 0)]
        allocation.theta[p] = share
