"""The summary of a plan: one typed record, the one place its figures are named.

``PlanSummary`` is what ``PlanResult.summary`` holds, what ``equity allocate --json``
prints, and what the wire module maps field by field onto the ``PlanSummary`` message
(same names). It reads like a mapping too (``summary["equity_gain"]``,
``summary.get("gap")``), so code that treats a summary as JSON keeps working; ``to_dict``
gives the JSON-ready form (NaN, which JSON lacks, becomes null).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConstraintInfo:
    """A limit of the plan: its name (``budget``, ``cap:premium``, ...), ``<=`` or ``>=``,
    and its right-hand side."""

    name: str
    sense: str
    rhs: float


@dataclass
class PlanSummary(Mapping[str, Any]):
    """Figures of one allocation with its certificate.

    Equity is at t = 0, net of spend; ``bound`` is the LP optimum (an upper bound on any
    plan), ``gap`` the plan's proven relative distance to the best plan giving every customer
    one level ((B - equity_after) / B, B the proven bound on that optimum, at most the LP
    bound), ``shadow_prices`` the equity per extra unit of each limit. ``status`` is
    ``optimal`` only when the plan is proven optimal within 1e-9; otherwise ``feasible``
    (or ``time_limit`` when the LP itself was cut short), with its gap.
    """

    status: str
    allocator: str
    method: str
    solver: str
    customers: int
    pools: int
    equity_before: float
    equity_after: float
    equity_gain: float
    total_spend: float
    spend_by_kind: dict[str, float]
    spend_by_segment: dict[str, float]
    equity_by_segment: dict[str, dict[str, float]]
    roc: float | None
    roc_do_nothing: float | None
    lp_objective: float | None
    bound: float | None
    gap: float | None
    shadow_prices: dict[str, float] = field(default_factory=dict)
    constraints: list[ConstraintInfo] = field(default_factory=list)
    fractional_pools: int = 0
    iterations: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # where each segment's response came from and the valuation basis (engine.assumptions)
    assumptions: dict[str, Any] = field(default_factory=dict)
    # with --uncertainty N: percentiles p5, p50, p95 of the plan's equity gain over N draws
    # of the estimated parameters, and the share of draws in which the plan gains (> 0)
    equity_gain_interval: dict[str, float] = field(default_factory=dict)
    probability_beats_nothing: float | None = None
    uncertainty_draws: int = 0
    # with --uncertainty N and --current-plan: the current plan's gain over the same draws
    # (p5, p50, p95) and the share of draws in which this plan gains more than it
    current_gain_interval: dict[str, float] = field(default_factory=dict)
    probability_beats_current: float | None = None
    # with --stability N: the plan re-solved under N draws; "draws", "mean" (over customers,
    # of the share of draws keeping each one's level) and "share_stable_at_80pct"
    choice_stability: dict[str, float] = field(default_factory=dict)
    # the proven upper bound on the best plan giving every customer one level (``gap`` is
    # measured to it); None when nothing was proven (a heuristic allocator)
    integer_bound: float | None = None
    # where it ran: 1 on one machine; on a cluster the partitions (engine.optimize.distributed)
    # and the block LP's columns in each round
    partitions: int = 1
    lp_columns: list[int] = field(default_factory=list)

    # -- mapping view: the JSON form, key by key ------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _NAMES:
            raise KeyError(key)
        value = getattr(self, key)
        if key == "constraints":
            return [dataclasses.asdict(c) for c in value]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every figure by name, undefined figures (NaN) as None."""
        return {name: _finite(self[name]) for name in _NAMES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSummary:
        """The inverse of ``to_dict`` (unknown keys are refused, missing ones defaulted)."""
        unknown = set(data) - set(_NAMES)
        if unknown:
            raise ValueError(f"unknown summary fields: {sorted(unknown)}")
        values = dict(data)
        values["constraints"] = [
            c if isinstance(c, ConstraintInfo) else ConstraintInfo(**c)
            for c in values.get("constraints", [])
        ]
        return cls(**values)


_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PlanSummary))


def _finite(obj: Any) -> Any:
    """JSON has no NaN: undefined figures (ROC of an empty base, no bound) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
