"""Customer lifetime value from transaction logs: data policy, BG/NBD, Gamma-Gamma, values.

Layer: uses the plugin SDK (errors, io, valuation) only. The public entry points are
re-exported here; each model lives in a module of its own so more can join.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.clv.value import (
        CLVResult,
        clv_from_transactions,
        customer_values,
        default_discount_rate,
    )

__all__ = ["CLVResult", "clv_from_transactions", "customer_values", "default_discount_rate"]


def __getattr__(name: str) -> Any:
    """The entry points load the fits (scipy) when first used, not when a light module of
    the package (its constants, the transactions' cleaning) is imported."""
    if name in __all__:
        from engine.clv import value

        return getattr(value, name)
    raise AttributeError(f"module 'engine.clv' has no attribute {name!r}")
