"""The integer proof split along the LP's binding limits.

A limit the LP leaves slack (price 0) is dropped first: what remains is a relaxation, whose
optimum is the whole problem's as soon as it keeps the dropped limits too. Without them the
customers fall apart into *components* — those linked by binding limits (a segment's
call-minute limit, a segment's cap; two limits sharing a cell are in one component) — and
*free* customers, in no binding limit, each at its best level. With the LP's prices ``y``
each component ``c`` has its own Lagrangian bound

    B_c = y_c . b_c + sum_{i in c} L_i   (L_i: the unit's best reduced value),

so reduced-cost fixing keeps only the levels whose gap is within ``B_c - z_c`` of the
component's own incumbent ``z_c`` (a share of the whole plan's ``B - z``), and the
component's MIP has only its own rows: a few hundred levels and one limit each instead of
thousands of levels under 51 rows at once. The incumbents start from the LP's plan with
each split customer at its level of lower priced use; a component's MIP improves it,
and its core grows until the MIP's optimum reaches ``B_c`` less the least gap left out.

The components' plans and the free customers' best levels together are checked against
every limit; a dropped limit they break is taken back (its dual 0 changes no bound), the
components it touches merge and are solved again. The proven bound is the sum of the
components' bounds and the free customers' best values (weak duality on the relaxation,
so on the whole problem). Prospect pools inside a limit are not handled here (the general
proof holds them at the LP's mix).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import highspy
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
)
from engine.errors import CancelledError, InfeasiblePlanError, SolverError
from engine.optimize import deadline, small, solvers
from engine.optimize.knapsack import solve_rows
from engine.options import OptionSet

FIRST_PICK = 32  # levels (besides the plan's own) per binding limit in a component's first MIP
# levels (besides the plan's own) in a component's later MIPs at most: 40,000 in the second,
# growing fourfold per round (engine.optimize.proof's FIRST_CORE and MAX_CORE)
NEXT_CORE, MAX_CORE = 40_000, 400_000
# a core MIP up to this many levels runs in this process under HiGHS' own clock (its root
# node takes milliseconds; a child costs tens of milliseconds to fork on a loaded machine)
IN_PROCESS = 1_000
MAX_SPLIT = 6  # split units at most whose levels are tried in turn for a first plan
MAX_LAZY_ROUNDS = 8  # times dropped limits are taken back before the general proof takes over


@dataclass
class _Component:
    rows: NDArray[np.int64]  # its binding limits
    units: NDArray[np.int64]
    plan: NDArray[np.int64] | None  # per unit its level (an option index), None: no plan yet
    value: float  # the plan's value (-inf without one)
    bound: float  # proven upper bound on the component's optimum (relaxed)
    levels: int = 0  # levels in its last MIP
    timed_out: bool = False


def prove_split(
    options: OptionSet,
    rows: list[Constraint],
    allocation: Allocation,
    duals: NDArray[np.float64],
    gap: float,
    time_limit: float | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """The proof by components (see the module): writes the plan, ``status``,
    ``integer_bound`` and a note into ``allocation`` and returns True; False (nothing
    changed) when it does not apply: a prospect pool in a limit, a component without a plan
    in time, or dropped limits taken back :data:`MAX_LAZY_ROUNDS` times."""
    started = time.perf_counter()
    matrix = sparse_row_matrix(rows, options.n_cells)
    rhs = normalized_rhs(rows)
    in_rows = np.asarray(abs(matrix).sum(axis=0)).ravel() > 0
    if (options.fractional & in_rows[options.cell]).any():
        return False
    # any prices y >= 0 give a bound; tiny ones (solver noise) are dropped with their rows
    y = np.clip(np.asarray(duals, dtype=np.float64), 0.0, None)
    y[y <= 1e-12 * max(1.0, float(y.max(initial=0.0)))] = 0.0
    reduced = options.value - resource_prices(rows, options, y)
    unit_opt = options.unit_of_option
    best = np.maximum.reduceat(reduced, options.offsets[:-1])
    gap_of = best[unit_opt] - reduced
    bound = float(y @ rhs + best.sum())
    tol = gap * max(1.0, abs(bound))
    slack = 1e-9 * np.maximum(1.0, np.abs(rhs))
    customer = ~options.fractional
    top = _argmax_levels(options, options.value)  # free customers: the best value
    lp_plan = _rounded(options, allocation, reduced)
    active = y > 0
    solved: dict[tuple[int, ...], _Component] = {}
    plan = top.copy()
    for lazy_round in range(MAX_LAZY_ROUNDS):
        label, row_label = _labels(matrix, active)
        unit_label = np.where(customer, label[options.cell], -1)
        groups = _groups(unit_label)
        comps: list[_Component] = []
        share = tol / (2 * max(1, len(groups)))
        for c, units in groups:
            mine = np.flatnonzero(active)[row_label == c]
            key = tuple(mine.tolist())
            comp = solved.get(key)
            if comp is None:
                comp = _solve(options, rows, mine, units, rhs, slack, y, best, gap_of,
                              plan[units, None] if lazy_round else lp_plan[units], share, started,
                              time_limit, should_stop)
                if comp is None:
                    return False
                solved[key] = comp
            comps.append(comp)
        plan = top.copy()
        for comp in comps:
            assert comp.plan is not None
            plan[comp.units] = comp.plan
        weight = np.zeros(options.cost.size)
        weight[plan[customer]] = 1.0
        pools = np.flatnonzero(options.fractional)
        np.add.at(weight, allocation.lo[pools], 1.0 - allocation.theta[pools])
        np.add.at(weight, allocation.hi[pools], allocation.theta[pools])
        broken = row_use(rows, options, matrix, weight) > rhs + slack
        if not broken.any():
            break
        if (broken & active).any():  # the components keep their own rows: not expected
            return False
        active = active | broken
    else:
        return False
    lo, hi, theta = allocation.lo, allocation.hi, allocation.theta
    lo[customer] = plan[customer]
    hi[customer] = plan[customer]
    theta[customer] = 0.0
    value = float(allocation.equity(options).sum())
    outside = np.ones(options.n_units, dtype=bool)
    for comp in comps:
        outside[comp.units] = False
    top_value = np.maximum.reduceat(options.value, options.offsets[:-1])
    proven = sum(comp.bound for comp in comps) + float(top_value[outside].sum())
    if allocation.bound is not None:
        proven = min(proven, float(allocation.bound))
    allocation.integer_bound = max(proven, value)
    optimal = allocation.integer_bound - value <= tol
    allocation.status = "optimal" if optimal else "feasible"
    why = "time limit" if any(c.timed_out for c in comps) else "core too large"
    how = "proven optimal" if optimal else f"not proven optimal ({why})"
    allocation.notes.append(
        f"integer plan {how}: {len(comps)} group{'s' if len(comps) != 1 else ''} of customers "
        f"under the binding limits, "
        f"{sum(c.levels for c in comps)} levels in their MIPs, proven bound "
        f"{allocation.integer_bound:.10g}"
    )
    return True


def _labels(
    matrix: sparse.csr_matrix, active: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per cell the component of the active rows over it (-1: in none), and per active row
    its component (two rows sharing a cell are in one)."""
    m = abs(matrix[np.flatnonzero(active)]).astype(bool).astype(np.float64).tocsr()
    label = np.full(matrix.shape[1], -1, dtype=np.int64)
    if m.shape[0] == 0:
        return label, np.zeros(0, dtype=np.int64)
    from scipy.sparse import csgraph  # ~0.06 s to import: only when limits are split

    _, row_label = csgraph.connected_components((m @ m.T).tocsr(), directed=False)
    for k in range(m.shape[0]):  # limits, not customers
        label[m.indices[m.indptr[k]:m.indptr[k + 1]]] = row_label[k]
    return label, row_label.astype(np.int64)


def _groups(unit_label: NDArray[np.int64]) -> list[tuple[int, NDArray[np.int64]]]:
    """Each component's label and its units (ascending); units labelled -1 in none."""
    order = np.argsort(unit_label, kind="stable")
    sorted_labels = unit_label[order]
    first = int(np.searchsorted(sorted_labels, 0))
    order, sorted_labels = order[first:], sorted_labels[first:]
    if not order.size:
        return []
    cuts = np.flatnonzero(np.diff(sorted_labels)) + 1
    return [(int(part_labels[0]), part) for part, part_labels
            in zip(np.split(order, cuts), np.split(sorted_labels, cuts), strict=True)]


def _argmax_levels(options: OptionSet, score: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per unit the option (global index) of the largest ``score``, the first on ties."""
    starts = options.offsets[:-1]
    top = np.maximum.reduceat(score, starts)
    hit = score >= top[options.unit_of_option]
    idx = np.flatnonzero(hit)
    first = np.searchsorted(options.unit_of_option[idx], np.arange(options.n_units))
    return idx[first].astype(np.int64)


def _rounded(options: OptionSet, allocation: Allocation,
             reduced: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per unit three levels to start from: of the LP's two, the one whose use is priced
    lower (the larger reduced value less the value: less of the binding resources), the
    other, and the unit's level of least priced use (the same three for an unsplit one)."""
    lo, hi = allocation.lo, allocation.hi
    priced = options.value - reduced
    cheaper = np.where(priced[hi] < priced[lo], hi, lo)
    other = np.where(priced[hi] < priced[lo], lo, hi)
    least = _argmax_levels(options, -priced)
    split_unit = lo != hi
    return np.stack([cheaper, np.where(split_unit, other, cheaper),
                     np.where(split_unit, least, cheaper)], axis=1).astype(np.int64)


def _start(
    a: sparse.csc_matrix,
    b: NDArray[np.float64],
    value: NDArray[np.float64],
    position: NDArray[np.int64],
) -> NDArray[np.bool_] | None:
    """The best plan keeping the rows among the LP's rounded plans (``position``: per unit
    its three levels to start from, see :func:`_rounded`): every unit at its first, or the
    few split ones (at most one per binding limit) at each of theirs in turn."""
    held = np.zeros(value.size, dtype=bool)
    held[position[:, 0]] = True
    if _keeps(a, held, b):
        return held
    split_units = np.flatnonzero((position != position[:, :1]).any(axis=1))
    if not 0 < split_units.size <= MAX_SPLIT:
        return None
    rest = held.copy()
    rest[position[split_units, 0]] = False
    base = np.asarray(a[:, np.flatnonzero(rest)].sum(axis=1)).ravel()
    levels = position[split_units]  # split units x 3
    use = a[:, levels.ravel()].toarray().reshape(b.size, *levels.shape)
    best, found = -np.inf, None
    for choice in itertools.product(range(3), repeat=split_units.size):  # 3^6 at most
        pick = levels[np.arange(split_units.size), list(choice)]
        worth = float(value[pick].sum())
        total = base + use[:, np.arange(split_units.size), list(choice)].sum(axis=1)
        if worth > best and bool((total <= b).all()):
            best, found = worth, pick
    if found is None:
        return None
    rest[found] = True
    return rest


def _options_of(options: OptionSet, units: NDArray[np.int64]) -> NDArray[np.int64]:
    counts = np.diff(options.offsets)[units]
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return (np.repeat(options.offsets[units], counts) + within).astype(np.int64)


def _solve(
    options: OptionSet,
    rows: list[Constraint],
    mine: NDArray[np.int64],
    units: NDArray[np.int64],
    rhs: NDArray[np.float64],
    slack: NDArray[np.float64],
    y: NDArray[np.float64],
    best: NDArray[np.float64],
    gap_of: NDArray[np.float64],
    start: NDArray[np.int64],
    tol: float,
    started: float,
    time_limit: float | None,
    should_stop: Callable[[], bool],
) -> _Component | None:
    """One component to its proven optimum (within ``tol``) or the time limit: reduced-cost
    fixing against its own bound, its MIP over the rest, the core growing until proven.
    None when no plan was found in time."""
    opt = _options_of(options, units)
    counts = np.diff(options.offsets)[units]
    local_unit = np.repeat(np.arange(units.size), counts)
    a_all = option_matrix([rows[k] for k in mine.tolist()], options, opt).tocsc()
    b = rhs[mine] + slack[mine]
    value = options.value[opt]
    gaps = gap_of[opt]
    b_c = float(y[mine] @ rhs[mine] + best[units].sum())
    comp = _Component(mine, units, None, -np.inf, b_c)
    # the starting levels among opt
    position = np.searchsorted(opt, start).reshape(units.size, -1)
    found = _start(a_all, b, value, position)
    held = np.zeros(opt.size, dtype=bool)
    held[position[:, 0]] = True
    if found is not None:
        held = found
        comp.plan, comp.value = opt[held], float(value[held].sum())
    # first the levels nearest their price: a MIP over a few hundred levels gives a plan
    # near the optimum, whose gap to B_c then fixes the rest
    first = FIRST_PICK * mine.size
    cut = min(b_c - comp.value, kth_gap(np.where(held, np.inf, gaps), first))
    room = 0
    rounds = 0
    while True:
        if should_stop():
            raise CancelledError("allocation cancelled")
        keep = (gaps <= cut + tol) | held
        left_out = gaps[~keep]
        floor = float(left_out.min()) if left_out.size else np.inf
        n_kept = np.bincount(local_unit[keep], minlength=units.size)
        free = keep & (n_kept >= 2)[local_unit]
        fixed = keep & ~free
        cols = np.flatnonzero(free)
        limit = b - np.asarray(a_all[:, np.flatnonzero(fixed)].sum(axis=1)).ravel()
        fixed_value = float(value[fixed].sum())
        left = None if time_limit is None else time_limit - (time.perf_counter() - started)
        if left is not None and left <= 0:
            comp.timed_out = True
            break
        comp.levels = int(cols.size)
        a = a_all[:, cols].tocsr()
        unit_start = np.flatnonzero(np.diff(np.concatenate([[-1], local_unit[cols]])))
        result = _core(value[cols], a, limit, unit_start, held[cols], y[mine], left,
                       should_stop, tol)
        if result.status == "infeasible":
            if not np.isfinite(floor):
                raise InfeasiblePlanError(
                    "no plan giving every customer exactly one level meets the limits",
                    [rows[k].name for k in mine.tolist() if rows[k].sense < 0],
                )
            room = max(4 * max(cols.size, room), 4 * first)
            cut = kth_gap(np.where(keep, np.inf, gaps), room - cols.size, floor)
            continue
        if result.status not in ("optimal", "time_limit") or not np.isfinite(result.objective):
            comp.timed_out = True  # stopped before a plan: the component keeps its own
            break
        x = np.nan_to_num(result.x)
        chosen = np.zeros(opt.size, dtype=bool)
        chosen[cols[x > 0.5]] = True
        chosen |= fixed
        one_each = np.bincount(local_unit[chosen], minlength=units.size) == 1
        if not one_each.all() or not _keeps(a_all, chosen, b + slack[mine]):
            comp.timed_out = True  # beyond the solver's tolerance: the plan before stays
            break
        z = float(value[chosen].sum())
        if z > comp.value:
            comp.value = z
            comp.plan = opt[chosen][np.argsort(local_unit[chosen], kind="stable")]
            held = chosen
        core_bound = (result.bound if np.isfinite(result.bound)
                      else result.objective if result.status == "optimal" else np.inf)
        mip_bound = fixed_value + max(core_bound, result.objective)
        comp.bound = min(b_c, max(mip_bound, b_c - floor, comp.value))
        if comp.bound - comp.value <= tol or result.status != "optimal":
            comp.timed_out = result.status != "optimal"
            break
        if not np.isfinite(floor):
            break
        rounds += 1
        # at most NEXT_CORE levels besides the plan's in the next MIP, fourfold per round
        most = min(NEXT_CORE * 4 ** (rounds - 1), MAX_CORE)
        grown = min(max(b_c - comp.value, cut + tol),
                    kth_gap(np.where(held, np.inf, gaps), most, 0.0))
        if grown <= cut:  # MAX_CORE levels already: the core too large to finish
            break
        cut = grown
    if comp.plan is None:
        return None
    return comp


def _core(
    value: NDArray[np.float64],
    a: sparse.csr_matrix,
    limit: NDArray[np.float64],
    unit_start: NDArray[np.int64],
    start: NDArray[np.bool_],
    price: NDArray[np.float64],
    time_limit: float | None,
    should_stop: Callable[[], bool],
    tol: float,
) -> solvers.LpResult:
    """A component's core: under one or two limits by its Pareto states (exact), else (or
    past their number) HiGHS' MIP. ``start``: the plan to begin from."""
    if limit.size <= 2 and value.size:
        began = time.perf_counter()
        use = a.toarray()
        one_each = np.add.reduceat(start.astype(np.int64), unit_start)
        fits = bool((one_each == 1).all()) and bool((use[:, start].sum(axis=1) <= limit).all())
        incumbent = float(value[start].sum()) if fits else -np.inf
        found = solve_rows(value, use, unit_start, limit, price, incumbent)
        if found is not None:
            chosen, worth = found
            if not np.isfinite(worth) and fits:  # nothing better than the start: it is best
                chosen, worth = start.copy(), incumbent
            status = "optimal" if np.isfinite(worth) else "infeasible"
            return solvers.LpResult(status, chosen.astype(np.float64), worth,
                                    np.zeros(limit.size), "pareto",
                                    time.perf_counter() - began, worth)
    return highs_core(value, a, limit, unit_start, start.astype(np.float64), time_limit,
                      should_stop, tol)


def _keeps(a: sparse.csc_matrix, chosen: NDArray[np.bool_], b: NDArray[np.float64]) -> bool:
    return bool((np.asarray(a[:, np.flatnonzero(chosen)].sum(axis=1)).ravel() <= b).all())


def kth_gap(gaps: NDArray[np.float64], k: int, at_least: float = 0.0) -> float:
    """The k-th smallest finite gap (the largest when fewer), and at least ``at_least``: the
    reduced-cost cut that lets about k levels into a core."""
    finite = gaps[np.isfinite(gaps)]
    if finite.size == 0:
        return at_least
    k = min(max(k, 1), finite.size)
    return max(float(np.partition(finite, k - 1)[k - 1]), at_least)


def row_use(
    rows: list[Constraint],
    options: OptionSet,
    matrix: sparse.csr_matrix,
    weight: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Each row's use (``<=`` form) by options at ``weight``: per resource, its use summed
    per cell, then the rows x cells matrix (``option_matrix @ weight`` without building
    it over every option)."""
    cell = options.cell[options.unit_of_option]
    used = np.zeros(len(rows))
    for name in sorted({row.resource for row in rows}):  # resources, not customers
        mine = np.array([row.resource == name for row in rows])
        use = options.resource(name)
        assert use is not None
        per_cell = np.bincount(cell, weights=use * weight, minlength=options.n_cells)
        used[mine] = (matrix @ per_cell)[mine]
    return used


def highs_core(
    value: NDArray[np.float64],
    coupling: sparse.csr_matrix,
    limit: NDArray[np.float64],
    unit_start: NDArray[np.int64],
    start: NDArray[np.float64],
    time_limit: float | None,
    should_stop: Callable[[], bool],
    abs_gap: float,
) -> solvers.LpResult:
    """A core MIP in HiGHS from arrays (``engine.optimize.small``'s builder): every column
    binary, the columns of a unit from ``unit_start`` on, ``start`` the plan to begin from
    (ignored by HiGHS when it breaks a row)."""
    began = time.perf_counter()
    # HiGHS ends near four fifths of the time left as a rule; its root node does not check
    # the clock, so the run is held to the whole time left by ``engine.optimize.deadline``
    h = small._highs(None if time_limit is None else 0.8 * time_limit)
    # the core need be closed only as far as the whole plan's proof needs (in currency),
    # not to 1e-9 of the core's own value
    h.setOptionValue("mip_abs_gap", max(1e-9, abs_gap))
    # RINS, RENS and the root reduced-cost sub-MIPs search for plans these cores start
    # with: on a 9,400-level core under 51 limits they took 9 of its 11.4 s
    h.setOptionValue("mip_heuristic_run_rins", False)
    h.setOptionValue("mip_heuristic_run_rens", False)
    h.setOptionValue("mip_heuristic_run_root_reduced_cost", False)
    offsets = np.append(unit_start, value.size).astype(np.int64)
    if value.size == 0:
        ok = bool((limit >= 0).all())
        return solvers.LpResult("optimal" if ok else "infeasible", np.zeros(0),
                                0.0 if ok else np.nan, np.zeros(limit.size), "highs", 0.0, 0.0)
    if not small._pass(h, value, coupling, limit, offsets, np.ones(value.size, dtype=bool)):
        raise SolverError("HiGHS refused the core MIP")
    sol = highspy.HighsSolution()
    sol.col_value = start.tolist()
    h.setSolution(sol)
    answer = deadline.run(h, None if value.size <= IN_PROCESS else time_limit, should_stop)
    if answer.status in ("optimal", "time_limit"):
        x = np.zeros(value.size)
        x[answer.chosen] = 1.0
    else:
        x = np.full(value.size, np.nan)
    return solvers.LpResult(answer.status, x, float(value @ np.nan_to_num(x)),
                            np.zeros(limit.size), "highs", time.perf_counter() - began,
                            answer.bound)
