"""Small plans: the full per-customer model solved directly in HiGHS, LP and MIP.

For a portfolio of a few thousand options, building the block LP, the repair MIP and the
proof through PuLP costs far more than the problem itself. Here the whole model goes to
HiGHS as arrays (one column per option, CSR rows, no PuLP):

* columns: ``x[o]`` for every option, binary for integral units (customers), in [0, 1] for
  fractional ones (prospect pools);
* one row per unit: its options' weights sum to 1;
* one row per constraint, in ``<=`` form (a minimum is negated): the row's resource used by
  the options of the row's cells.

The LP relaxation of that model is the hull LP the block method solves (each unit's options
mixed is its concave hull), so its optimum and row duals are the plan's LP certificate:
``bound`` is the Lagrangian at those duals, recomputed here over every option (a valid
upper bound for any non-negative duals, equal to the LP optimum at optimal ones), and the
shadow prices are the duals. The MIP, at a relative and absolute gap of 1e-9, gives the
plan; it is "optimal" only when HiGHS proves it so, with HiGHS' dual bound as
``integer_bound``. It runs over a core: at the LP's prices each option has a gap (its unit's
best net value minus its own), every plan is worth at most ``bound`` minus its options'
gaps, so a customer's option whose gap exceeds ``bound`` minus a plan found is in no better
plan; customers left with one option take it and the MIP sees the few others (a core too
small for the optimum is widened and solved again); the first plan, which sizes the core,
is the best combination of the options the LP mixes for the customers it splits. The
core's MIP is a small best-first branch and bound over its LP (a dense dual simplex,
``engine.optimize.small_simplex``, warm-started node to node from the LP's optimum basis;
each node's LP rounded for an incumbent, reduced-cost fixing, a node bounded by its
Lagrangian at its LP's prices, and closed without a solve when its Lagrangian at the latest
nodes' prices is within the gap of the incumbent): HiGHS' MIP solver spends 5-15 ms
setting up a model it closes at its root, and a HiGHS run per node 115-280 us. Past
``NODE_LIMIT`` nodes the core goes to HiGHS' MIP.

Anything out of the ordinary (infeasible, a time limit, a pool spread over more than two of
its options) returns ``None``: the caller then takes the general path, which explains
infeasibility by row and handles time limits. The solver objects (one per thread, kept
from solve to solve) and the models passed as arrays: ``engine.optimize.small_highs``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import highspy
import numpy as np
from numpy.typing import NDArray

from engine.allocation import Allocation
from engine.constraints import Constraint, normalized_rhs, spend_only
from engine.optimize.small_highs import GAP
from engine.optimize.small_highs import borrow as _highs
from engine.optimize.small_highs import give_back as _give_back
from engine.optimize.small_highs import pass_model as _pass
from engine.optimize.small_plans import (
    best_rounding,
    fits,
    fixed_by_reduced_costs,
    heaviest,
    is_plan,
    rounded_core,
)
from engine.optimize.small_simplex import Tableau
from engine.options import OptionSet

MAX_OPTIONS = 5_000  # options at most for the direct model (100 customers x 5 levels: 500)
MAX_ROWS = 200  # constraint rows at most


def eligible(options: OptionSet, rows: list[Constraint]) -> bool:
    """Small enough for the direct model, and a model whose pools stay exact: with limits on
    resources besides spend, a pool's LP mix is left to the general path."""
    if options.cost.size == 0 or options.cost.size > MAX_OPTIONS or len(rows) > MAX_ROWS:
        return False
    return spend_only(rows) or not bool(options.fractional.any())


def solve(
    options: OptionSet,
    rows: list[Constraint],
    time_limit: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Allocation | None:
    """The proven integer optimum with its LP certificate, or ``None`` (see the module)."""
    started = time.perf_counter()
    h = _highs(time_limit)  # this thread's solver object, given back when done
    found = _solve(h, options, rows, should_stop, started)
    _give_back(h)  # not after an exception: an object in a state not known is dropped
    return found


def _solve(
    h: highspy.Highs,
    options: OptionSet,
    rows: list[Constraint],
    should_stop: Callable[[], bool],
    started: float,
) -> Allocation | None:
    n = options.cost.size
    units = options.n_units
    integral = ~options.fractional[options.unit_of_option]
    coupling = _coupling(options, rows)
    rhs = normalized_rhs(rows)
    if not _pass(h, options.value, coupling, rhs, options.offsets, None):
        return None

    # the LP relaxation: its duals price the rows (no presolve: faster on these models),
    # from the basis of every unit at its best option (dual feasible: 155 -> 16 simplex
    # iterations, 1.3 -> 0.5 ms at 100 customers)
    h.setOptionValue("presolve", "off")
    _start_at_best(h, options, len(rows))
    if h.run() != highspy.HighsStatus.kOk:
        return None
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = h.getSolution()
    lp_x = np.asarray(solution.col_value)
    # HiGHS' duals of a maximization: d objective / d bound, >= 0 on a binding upper bound
    duals = np.maximum(np.asarray(solution.row_dual)[: len(rows)], 0.0)
    lp_objective = float(options.value @ lp_x)
    bound, net, best = _lagrangian(options, coupling, rhs, duals)
    if bound < lp_objective - 1e-7 * max(1.0, abs(lp_objective)):
        return None  # duals that do not certify the LP: let the general path decide
    if should_stop():
        return None

    # the MIP on the same model, over the options that can be in a better plan than an
    # incumbent (reduced-cost fixing): every plan is worth at most bound - the sum of its
    # options' gaps, so an option whose gap exceeds bound - incumbent is in none of them
    gaps = best[options.unit_of_option] - net
    if integral.any():
        found = _core_mip(h, options, coupling, rhs, integral, lp_x, gaps, bound)
        if found is None:
            return None
        x, integer_bound = found
    else:
        x, integer_bound = lp_x, lp_objective
    allocation = _allocation(options, x, integral)
    if allocation is None:
        return None
    value = float(allocation.equity(options).sum())
    integer_bound = min(integer_bound, bound)
    if integer_bound - value > GAP * max(1.0, abs(integer_bound)):
        return None
    allocation.lp_objective = lp_objective
    allocation.bound = max(bound, lp_objective)
    allocation.integer_bound = max(integer_bound, value)
    allocation.shadow_prices = {
        row.name: float(duals[k] * row.sense) + 0.0 for k, row in enumerate(rows)
    }
    allocation.iterations = 1
    allocation.notes.append(
        f"integer plan proven optimal: the full model ({n} options of {units} units) solved "
        f"directly by HiGHS, LP relaxation then MIP, proven bound {allocation.integer_bound:.10g}"
    )
    allocation.seconds = time.perf_counter() - started
    return allocation


def _core_mip(
    h: highspy.Highs,
    options: OptionSet,
    coupling: NDArray[np.float64],
    rhs: NDArray[np.float64],
    integral: NDArray[np.bool_],
    lp_x: NDArray[np.float64],
    gaps: NDArray[np.float64],
    bound: float,
) -> tuple[NDArray[np.float64], float] | None:
    """The MIP over a core of options (gap <= delta), widened until its optimum is within
    delta of the bound: then no option left out can be in a better plan. The first delta
    comes from the LP plan rounded (each customer at its heaviest option) when that keeps
    every row, else from the smallest gaps. A plan with weights w is worth at most
    bound - sum(w * gap), so a customer's option with gap > delta is in no plan better than
    one within delta of the bound."""
    slack = 1e-9 * max(1.0, abs(bound))
    limit = rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))
    rounded = best_rounding(options, coupling, limit, lp_x, integral)
    if rounded is None:
        rounded = heaviest(options, lp_x, integral)
    rounded_fits = bool((coupling @ rounded <= limit).all())
    if rounded_fits:
        rounded_value = float(options.value @ rounded)
        if bound - rounded_value <= slack:  # the LP's plan is integral already: proven
            return rounded, rounded_value
        # a quarter of the rounded plan's gap: a smaller core, widened when it falls short
        delta = (bound - rounded_value) / 4 + slack
    else:
        positive = np.sort(gaps[gaps > slack])
        delta = float(positive[min(positive.size - 1, max(8, (gaps <= slack).sum()))]) \
            if positive.size else slack
    unit = options.unit_of_option
    starts = options.offsets[:-1]
    while True:
        # a pool's weights are continuous: a small weight on an option costs only that share
        # of its gap, so every pool option stays in the core
        core = (gaps <= delta) | ~integral
        # customers with one option in the core take it; the MIP is over the others
        free = (np.add.reduceat(core, starts) > 1)[unit]
        fixed = (core & ~free).astype(np.float64)
        cols = np.flatnonzero(core & free)
        x = fixed
        sub_bound = 0.0
        complete = bool(core.all())
        if cols.size:
            counts = np.bincount(unit[cols], minlength=options.n_units)
            offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])])
            sub = (options.value[cols], coupling[:, cols], rhs - coupling @ fixed, offsets)
            start = rounded[cols] if rounded_fits else None
            searched = _branch_and_bound(h, *sub, integral[cols], start, lp_x[cols]) \
                if integral[cols].any() else None
            if searched is not None:  # proven (or proven infeasible) by the small search
                status, sub_x, sub_bound = searched
            else:  # past the search's node limit (or an LP it could not take): HiGHS' MIP
                if not _pass(h, *sub, integral[cols]):
                    return None
                h.setOptionValue("presolve", "choose")
                if h.run() != highspy.HighsStatus.kOk:
                    return None
                status = h.getModelStatus()
                if status == highspy.HighsModelStatus.kOptimal:
                    sub_x = np.asarray(h.getSolution().col_value)
                    if integral[cols].any():  # HiGHS' proven bound, as a gap to its plan
                        found = float(options.value[cols] @ sub_x)
                        sub_bound = float(h.getInfo().mip_dual_bound) - found
            if status == highspy.HighsModelStatus.kOptimal:
                x = fixed.copy()
                x[cols] = sub_x
            elif status == highspy.HighsModelStatus.kInfeasible and not complete:
                delta = 2 * delta + float(np.median(gaps[~core]))
                continue
            else:
                return None
        elif (coupling @ x > rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))).any():
            if complete:
                return None
            delta = 2 * delta + float(np.median(gaps[~core]))
            continue
        value = float(options.value @ x)
        if complete or bound - value <= delta:
            return x, value + max(sub_bound, 0.0)
        delta = max(2 * delta, bound - value + slack)


NODE_LIMIT = 60  # the small search's nodes at most; past them HiGHS' MIP takes the core
DENSE_ENTRIES = 10_000  # a core's tableau entries at most for the dense simplex: a 25 x 93 core
# solves 2-3x faster dense than in HiGHS, a 94 x 231 one (example(100, seed=7): 21,700 entries)
# 2.5x slower


def _branch_and_bound(
    h: highspy.Highs,
    value: NDArray[np.float64],
    coupling: NDArray[np.float64],
    rhs: NDArray[np.float64],
    offsets: NDArray[np.int64],
    integral: NDArray[np.bool_],
    start: NDArray[np.float64] | None = None,
    relaxed: NDArray[np.float64] | None = None,
) -> tuple[highspy.HighsModelStatus, NDArray[np.float64], float] | None:
    """The core's MIP by a best-first branch and bound over its LP relaxation (HiGHS'
    simplex, warm-started from the parent's basis, bounds changed in place), for the tiny
    cores the LP's prices leave: HiGHS' MIP solver costs 5-15 ms of set-up on a model it
    closes at its root. Returns (status, x, proven bound minus the plan's value): kOptimal
    with the best plan, every node closed by infeasibility, integrality or an LP bound
    within GAP of it; kInfeasible when no node has an integral solution; ``None`` past
    ``NODE_LIMIT`` nodes or on any LP status besides optimal and infeasible. ``start``: a
    plan to begin from (the LP's plan rounded), taken when it is one (one option per
    customer, weights summing to 1, every row kept); ``relaxed``: an optimum of the core's
    LP (the whole model's LP on the core's columns), its basis the first node's.

    Each node's LP is solved by a dense dual simplex (``engine.optimize.small_simplex``:
    a pivot or two from its parent's tableau, a few microseconds each, where a HiGHS run
    costs 115-280 us however small) while the core's tableau stays within
    ``DENSE_ENTRIES``; a larger core (a tableau too big to copy node to node) is solved by
    HiGHS, warm-started, its bounds changed in place. Either way a node's bound is the
    Lagrangian at its row prices, recomputed from the model: an upper bound on its LP
    whatever the solver's rounding."""
    n, m = value.size, rhs.size
    dense = (m + offsets.size - 1) * (n + m + 1) <= DENSE_ENTRIES
    root: Tableau | None = None
    if dense:
        root = Tableau.at(value, coupling, rhs, offsets, relaxed) if relaxed is not None \
            else None
        root = root or Tableau.start(value, coupling, rhs, offsets)
    else:
        if not _pass(h, value, coupling, rhs, offsets, None):
            return None
        h.setOptionValue("presolve", "off")
    columns = np.arange(n, dtype=np.int32)
    binary = np.flatnonzero(integral)
    # what every node's checks share, computed once: the rows' limits with their tolerance,
    # each column's customer, the first column of each customer
    limit = rhs + 1e-9 * np.maximum(1.0, np.abs(rhs))
    counts = np.diff(offsets)
    unit = np.repeat(np.arange(offsets.size - 1), counts)
    starts = offsets[:-1]
    prices = _Prices(value, coupling, rhs, starts, counts)
    pivots = 10 * (m + offsets.size - 1) + 20  # a node's pivots at most (a few are usual)
    best_x: NDArray[np.float64] | None = None
    best = -np.inf
    if start is not None and is_plan(start, coupling, rhs, offsets, integral):
        best_x, best = start, float(value @ start)
    # nodes left, best parent bound first: (-parent's LP bound, order, lower and upper
    # bounds of every column, the parent's final tableau with the count of its children
    # not yet popped: the last to be popped takes it as it is, an earlier one a copy)
    heap: list[tuple[float, int, NDArray[np.float64], NDArray[np.float64], _Shared]] \
        = [(-np.inf, 0, np.zeros(n), np.ones(n), _Shared(root, 1))]
    closed = -np.inf  # the largest LP bound of a node closed by its bound (not integral)
    nodes = 0
    while heap:
        parent, _, lower, upper, shared = heapq.heappop(heap)
        shared.users -= 1
        tableau = shared.tableau
        if best_x is not None and -parent - best <= GAP * max(1.0, abs(best)) / 2:
            closed = max(closed, -parent)  # every node left is bounded by its parent
            break
        allowed = prices.allowed(lower, upper)
        if best_x is not None:
            # the node's Lagrangian at the prices of the latest nodes solved: an upper
            # bound on its LP for any prices >= 0, no run needed when it closes the node
            priced = prices.bound(lower, upper, allowed)
            if priced - best <= GAP * max(1.0, abs(best)) / 2:
                closed = max(closed, priced)
                continue
        nodes += 1
        if nodes > NODE_LIMIT:
            return None
        if tableau is not None:  # the dense simplex, from the parent's tableau
            if shared.users:
                tableau = tableau.copy()  # the parent's other child starts from it too
            solved = tableau.solve(lower, upper, pivots)
            if solved is None:
                return None
            feasible, x = solved
            if not feasible:
                continue
            duals, reduced = tableau.duals(), tableau.reduced_costs()
        else:  # HiGHS, warm-started from the last node it solved
            if nodes > 1:
                h.changeColsBounds(n, columns, lower, upper)
            if h.run() != highspy.HighsStatus.kOk:
                return None
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kInfeasible:
                continue
            if status != highspy.HighsModelStatus.kOptimal:
                return None
            solution = h.getSolution()
            x = np.asarray(solution.col_value)
            duals = np.asarray(solution.row_dual)[:m]
            reduced = np.asarray(solution.col_dual)
        objective = prices.at(duals, allowed)  # its prices kept for the nodes after it
        if best_x is not None and objective - best <= GAP * max(1.0, abs(best)) / 2:
            closed = max(closed, objective)
            continue
        xb = x[binary]
        frac = np.abs(xb - np.round(xb))
        k = int(np.argmax(frac)) if binary.size else 0
        if not binary.size or frac[k] <= 1e-9:  # integral: a plan, and this node's best
            plan = x.copy()
            plan[binary] = np.round(plan[binary])
            # the LP keeps rows within its tolerance; a plan here keeps them within 1e-9
            # (as HiGHS' MIP does at its feasibility tolerance): else HiGHS' MIP decides
            if not fits(plan, coupling, limit, starts, integral):
                return None
            closed = max(closed, objective)
            found = float(value @ plan)
            if found > best:
                best, best_x = found, plan
            continue
        # the node's LP rounded (each customer at its heaviest option): a plan when it
        # keeps every row, an incumbent that closes other nodes early
        rounded = rounded_core(x, unit, starts, integral, lower)
        rounded_value = float(value @ rounded)  # checked only when it would be the best
        if rounded_value > best and fits(rounded, coupling, limit, starts, integral):
            best, best_x = rounded_value, rounded
            if objective - best <= GAP * max(1.0, abs(best)) / 2:
                closed = max(closed, objective)
                continue
        if best_x is not None:  # reduced-cost fixing (see below)
            lower, upper, cut = fixed_by_reduced_costs(reduced, xb, objective, best, binary,
                                                       lower, upper)
            closed = max(closed, cut)
        col = binary[k]
        down_upper = upper.copy()
        down_upper[col] = 0.0
        up_lower = lower.copy()
        up_lower[col] = 1.0
        children = _Shared(tableau, 2)
        heapq.heappush(heap, (-objective, 2 * nodes, up_lower, upper, children))
        heapq.heappush(heap, (-objective, 2 * nodes + 1, lower, down_upper, children))
    if best_x is None:
        return highspy.HighsModelStatus.kInfeasible, np.zeros(n), 0.0
    found = float(value @ best_x)
    return highspy.HighsModelStatus.kOptimal, best_x, max(best, closed, found) - found


class _Shared:
    """A node's final tableau and how many of its children still start from it."""

    __slots__ = ("tableau", "users")

    def __init__(self, tableau: Tableau | None, users: int) -> None:
        self.tableau, self.users = tableau, users

    def __lt__(self, other: _Shared) -> bool:  # never reached: the heap's orders differ
        return False


PRICES = 8  # the latest nodes' prices a node's Lagrangian is taken at, at most (0: none)


class _Prices:
    """The rows' duals (>= 0) of the latest nodes solved, each kept as its options' values
    net of their use at those prices and its prices . rhs: a node's Lagrangian at each is
    then one masked maximum per unit."""

    def __init__(self, value: NDArray[np.float64], coupling: NDArray[np.float64],
                 rhs: NDArray[np.float64], starts: NDArray[np.int64],
                 counts: NDArray[np.int64]) -> None:
        self.value, self.coupling, self.rhs = value, coupling, rhs
        self.starts, self.counts = starts, counts
        self.keep = PRICES
        self.net = np.empty((self.keep, value.size))
        self.const = np.empty(self.keep)
        self.size = 0
        self.next = 0

    def add(self, duals: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
        """Keeps the prices ``duals`` (clipped at 0) among the latest; returns the options'
        values net of their use at them, and their value of the rows' limits."""
        y = np.maximum(duals, 0.0)
        net = self.value - y @ self.coupling
        const = float(y @ self.rhs)
        if self.keep:
            self.net[self.next] = net
            self.const[self.next] = const
            self.next = (self.next + 1) % self.keep
            self.size = min(self.size + 1, self.keep)
        return net, const

    def bound(self, lower: NDArray[np.float64], upper: NDArray[np.float64],
              allowed: NDArray[np.bool_] | None = None) -> float:
        """The least of a node's Lagrangians at the prices kept (+inf when none):
        prices . rhs plus per unit its best option net of its use at those prices, among
        the options the node's bounds allow (a customer fixed at an option: that one).
        Each is an upper bound on the node's LP, whatever the prices (>= 0): a node whose
        least is within the gap of the incumbent holds no better plan."""
        if not self.size:
            return np.inf
        if allowed is None:
            allowed = self.allowed(lower, upper)
        net = np.where(allowed, self.net[: self.size], -np.inf)
        best = np.maximum.reduceat(net, self.starts, axis=1).sum(axis=1)
        return float((self.const[: self.size] + best).min())

    def at(self, duals: NDArray[np.float64], allowed: NDArray[np.bool_]) -> float:
        """A node's Lagrangian at its own LP's duals (clipped at 0; kept, ``add``): its LP
        bound, equal to its LP optimum at optimal duals and above it at any others;
        ``allowed``: the node's options (``allowed``)."""
        net, const = self.add(duals)
        return const + float(np.maximum.reduceat(np.where(allowed, net, -np.inf),
                                                 self.starts).sum())

    def allowed(self, lower: NDArray[np.float64],
                 upper: NDArray[np.float64]) -> NDArray[np.bool_]:
        """The options a node's bounds allow: not at an upper bound of 0, and the one a
        customer is fixed at (lower bound 1) when it is."""
        allowed = upper > 0.0
        forced = lower > 0.0
        if forced.any():
            allowed &= forced | ~np.repeat(np.logical_or.reduceat(forced, self.starts),
                                           self.counts)
        return allowed


_STATUS = np.array([highspy.HighsBasisStatus.kLower, highspy.HighsBasisStatus.kBasic],
                   dtype=object)


def _start_at_best(h: highspy.Highs, options: OptionSet, m: int) -> None:
    """A starting basis for the LP: per unit its first option of highest value basic, every
    other column at 0, the rows' slacks basic, the units' rows at their bound. Every column's
    reduced cost is then its value minus its unit's best (<= 0): dual feasible, and the dual
    simplex only restores the rows this plan breaks. A basis HiGHS refuses is left out."""
    n, starts = options.cost.size, options.offsets[:-1]
    best = np.maximum.reduceat(options.value, starts)
    # each unit's first option at its best value (none for a unit of NaN values: n)
    first = np.minimum.reduceat(
        np.where(options.value == best[options.unit_of_option], np.arange(n), n), starts)
    first = first[first < n]
    basic = np.zeros(n, dtype=np.int64)
    basic[first] = 1
    basis = highspy.HighsBasis()
    basis.col_status = _STATUS[basic].tolist()
    basis.row_status = [highspy.HighsBasisStatus.kBasic] * m + \
        [highspy.HighsBasisStatus.kUpper] * options.n_units
    basis.valid = True
    h.setBasis(basis)  # an error leaves HiGHS without a basis: it then starts its own


def _coupling(options: OptionSet, rows: list[Constraint]) -> NDArray[np.float64]:
    """Rows (dense, rows x options) in ``<=`` form: the row's sense times the option's use
    of the row's resource where the option's cell is in the row."""
    cell = options.cell[options.unit_of_option]
    out = np.empty((len(rows), options.cost.size))
    for k, row in enumerate(rows):  # rows, not customers: at most MAX_ROWS
        use = options.resource(row.resource)
        assert use is not None
        np.multiply(use, row.cells[cell] * float(row.sense), out=out[k])
    return out


def _lagrangian(
    options: OptionSet,
    coupling: NDArray[np.float64],
    rhs: NDArray[np.float64],
    duals: NDArray[np.float64],
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """duals . rhs + per unit the best option's value net of its use at those prices: an
    upper bound on the LP (and on every plan) for any duals >= 0; with the options' values
    net of their use and each unit's best of them (the options' gaps come from both)."""
    net = options.value - duals @ coupling
    best = np.maximum.reduceat(net, options.offsets[:-1])
    return float(duals @ rhs) + float(best.sum()), net, best


def _allocation(
    options: OptionSet, x: NDArray[np.float64], integral: NDArray[np.bool_]
) -> Allocation | None:
    """Per unit its option(s): the chosen option of a customer, the (at most two) options a
    pool mixes, ``theta`` the share at ``hi``; None when a pool mixes more than two."""
    unit = options.unit_of_option
    starts = options.offsets[:-1]
    w = np.where(integral, np.round(x), np.clip(x, 0.0, 1.0))
    w[w < 1e-9] = 0.0
    if (np.add.reduceat(w > 0, starts) > 2).any() or (np.add.reduceat(
            (w > 0) & integral, starts) > 1).any():
        return None
    order = np.lexsort((-w, unit))
    lo = order[starts]
    counts = np.diff(options.offsets)
    second = np.where(counts > 1, order[np.minimum(starts + 1, order.size - 1)], lo)
    share = np.where(counts > 1, w[second], 0.0)
    hi = np.where(share > 0, second, lo)
    total = w[lo] + share
    if (np.abs(total - 1.0) > 1e-6).any():
        return None
    theta = np.where(share > 0, share / total, 0.0)
    return Allocation(lo.astype(np.int64), hi.astype(np.int64), theta, "optimal", "highs",
                      "direct")
