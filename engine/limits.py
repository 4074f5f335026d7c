"""Resource limits of one allocation, with safe defaults; passing one is a clear error.

The CLI runs with the defaults; the server takes its own (``equity serve`` flags) so a
single request cannot take the machine. Each check raises ``LimitExceededError`` naming
the limit, which the gRPC layer maps to RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import LimitExceededError
from engine.options import OptionSet
from engine.plan import Plan
from engine.portfolio import Portfolio


@dataclass(frozen=True)
class Limits:
    max_units: int = 50_000_000
    max_levels_per_unit: int = 256
    max_segment_limits: int = 10_000
    max_transactions: int = 1_000_000_000
    solver_seconds: float | None = None  # per solver call; None: no limit

    def check_inputs(self, portfolio: Portfolio, plan: Plan) -> None:
        units = sum(
            t.height for t in (portfolio.customers, portfolio.prospects) if t is not None
        )
        if portfolio.options is not None and "customer_id" in portfolio.options.columns:
            units += portfolio.options["customer_id"].n_unique()
        if portfolio.transactions is not None:
            rows = portfolio.transactions.height
            if rows > self.max_transactions:
                raise LimitExceededError("max_transactions", rows, self.max_transactions)
            units += portfolio.transactions["customer_id"].n_unique() if rows else 0
        if units > self.max_units:
            raise LimitExceededError("max_units", units, self.max_units)
        levels = max(len(set(plan.retention_levels)), len(set(plan.acquisition_levels)))
        if levels > self.max_levels_per_unit:
            raise LimitExceededError("max_levels_per_unit", levels, self.max_levels_per_unit)
        if len(plan.segment_limits) > self.max_segment_limits:
            raise LimitExceededError(
                "max_segment_limits", len(plan.segment_limits), self.max_segment_limits
            )

    def check_options(self, options: OptionSet) -> None:
        if options.n_units == 0:
            return
        offsets = options.offsets
        most = int((offsets[1:] - offsets[:-1]).max())
        if most > self.max_levels_per_unit:
            raise LimitExceededError("max_levels_per_unit", most, self.max_levels_per_unit)

    def time_limit(self, requested: float | None) -> float | None:
        """The tighter of what the plan asks for and what the operator allows."""
        if self.solver_seconds is None:
            return requested
        return self.solver_seconds if requested is None else min(requested, self.solver_seconds)
