"""What the driver of a distributed allocation adds up from its partitions
(``engine.optimize.distributed``): that every customer id is in one partition only, the
plan's summary (the single machine's ``PlanSummary``) and its assumptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.constraints import Constraint
from engine.errors import InvalidInputError, SolverError
from engine.optimize import partition
from engine.optimize.cluster import InProcess, Workers
from engine.optimize.proof import GAP
from engine.options import KINDS
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.summary import ConstraintInfo, PlanSummary
from engine.valuation import return_on_customer

if TYPE_CHECKING:
    from engine.optimize.distributed import BlockLp as Lp
    from engine.optimize.sifting_cluster import SiftLp


ID_RANGES = 64  # ranges of the hash space at most: partitions x ranges tasks in all


def check_unique_ids(workers: Workers | InProcess) -> None:
    """Every customer id in one partition only, exactly, checked among the workers: each
    partition cuts its sorted 64-bit id hashes into one range of the hash space per
    partition (``ID_RANGES`` at most), and each range is merged on a worker
    (``Workers.exchange``: the hashes move from worker to worker, 8 bytes per customer in
    all, none through the driver, and a merge holds one range of every partition, about
    ``1 / ranges`` of the ids, at once). Only hashes found twice come back; those are
    looked up as ids in their partitions (a collision of two different ids is no
    duplicate), and the first id found twice is an input error naming it and both
    files."""
    n = max(1, min(workers.n, ID_RANGES))
    found = workers.exchange(partition.id_ranges, n, partition.repeated)
    twice = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)
    if twice.size:
        seen: dict[str, tuple[str, str, int]] = {}
        for source, field, hits in workers.map(partition.ids_of, twice[:1000]):
            for value, row in hits:
                if value in seen:
                    first, _, first_row = seen[value]
                    raise InvalidInputError.single(
                        field, f"customer id {value!r} is in two partitions: row {first_row} "
                        f"of {first} and row {row} of {source} (each customer must be in "
                        "one partition only)", row)
                seen[value] = (source, field, row)


def assumptions(workers: Workers | InProcess, plan: Plan) -> tuple[dict[str, Any], list[str]]:
    """The single machine's ``assumptions`` and their notes, from the partitions' columns
    and segments (``engine.assumptions.plan_assumptions`` on a stand-in of each table)."""
    from engine.assumptions import plan_assumptions
    from engine.plugins import default_registry

    shapes: dict[str, tuple[set[str], set[str]]] = {}
    for shape in workers.map(partition.table_shape):
        for name, (columns, segments) in shape.items():
            cols, segs = shapes.setdefault(name, (set(), set()))
            cols.update(columns)
            segs.update(segments)
    stand_in = {}
    for name, (cols, segs) in shapes.items():
        rows = sorted(segs) or [""]
        stand_in[name] = pl.DataFrame(
            {c: pl.Series(c, rows if c == "segment" else [None] * len(rows))
             for c in sorted(cols)})
    registry = default_registry()
    return plan_assumptions(
        Portfolio(**stand_in), plan, registry.create("metric", plan.metric),
        registry.create("cost", plan.cost), False)


def summary(written: list[dict[str, Any]], rows: list[Constraint], lp: Lp | SiftLp,
            notes: list[str], timings: dict[str, float], plan: Plan, integer_bound: float,
            n_parts: int, row_use: NDArray[np.float64] | None = None, method: str = "blocks"
            ) -> PlanSummary:
    """The single machine's summary, added up from the partitions; every limit re-checked
    (``row_use``: per row, ``<=`` form, its use when the rows are not all on spend)."""
    cell_spend = np.sum([w["cell_spend"] for w in written], axis=0)
    broken = []
    for k, row in enumerate(rows):
        used = (float(cell_spend[row.cells].sum()) if row_use is None
                else float(row_use[k] * row.sense))
        slack = 1e-7 * max(1.0, abs(row.rhs))
        if (row.sense > 0 and used > row.rhs + slack) or (row.sense < 0 and
                                                          used < row.rhs - slack):
            broken.append(f"{row.name}: {row.resource} {used:.6g} vs {row.rhs:.6g}")
    if broken:  # never hand out a plan that breaks a limit
        raise SolverError(f"the cluster's plan breaks {broken}; refused", "error")
    before = float(sum(w["equity_before"] for w in written))
    after = float(sum(w["equity_after"] for w in written))
    spend = float(cell_spend.sum())
    segments: dict[str, list[float]] = {}
    for w in written:
        for s, values in w["by_segment"].items():
            acc = segments.setdefault(s, [0.0, 0.0, 0.0])
            for k in range(3):
                acc[k] += values[k]
    bound = max(lp.bound, after)
    best = max(min(integer_bound, bound), after)  # as engine.result: the proven bound
    proven = best - after <= GAP * max(1.0, abs(lp.bound))
    rate = plan.discount_rate
    return PlanSummary(
        status="optimal" if lp.closed and proven else "feasible",
        allocator="lp",
        method=method,
        solver=lp.solver,
        customers=sum(w["customers"] for w in written),
        pools=sum(w["pools"] for w in written),
        equity_before=before,
        equity_after=after,
        equity_gain=after - before,
        total_spend=spend,
        spend_by_kind={k: float(sum(w["spend_by_kind"][k] for w in written)) for k in KINDS},
        spend_by_segment={s: v[0] for s, v in sorted(segments.items())},
        equity_by_segment={s: {"before": v[1], "after": v[2]}
                           for s, v in sorted(segments.items())},
        roc=float(return_on_customer(before, after, spend, rate)),
        roc_do_nothing=float(return_on_customer(before, before, 0.0, rate)),
        lp_objective=lp.primal,
        bound=bound,
        gap=max(0.0, (best - after) / max(abs(best), 1e-12)),
        shadow_prices={r.name: float(lp.duals[k] * r.sense) for k, r in enumerate(rows)},
        constraints=[ConstraintInfo(r.name, "<=" if r.sense > 0 else ">=", r.rhs)
                     for r in rows],
        fractional_pools=sum(w["fractional_pools"] for w in written),
        iterations=lp.rounds,
        notes=notes,
        seconds=timings,
        integer_bound=best,
        partitions=n_parts,
        lp_columns=lp.columns,
    )
