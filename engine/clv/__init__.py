"""Customer lifetime value from transaction logs: data policy, BG/NBD, Gamma-Gamma, values.

Layer: uses the plugin SDK (errors, io, valuation) only. The public entry points are
re-exported here; each model lives in a module of its own so more can join.
"""

from engine.clv.value import (
    CLVResult,
    clv_from_transactions,
    customer_values,
    default_discount_rate,
)

__all__ = ["CLVResult", "clv_from_transactions", "customer_values", "default_discount_rate"]
