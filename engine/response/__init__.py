"""Spend-response curves estimated from the user's experiments (docs/response.md).

``experiments`` reads and checks aggregated or unit-level experiment tables, ``curves``
holds the curve shapes and their derivatives, ``fit`` estimates them by binomial maximum
likelihood with standard errors, and ``uncertainty`` re-values a fixed plan under parameter
draws. The package uses the plugin SDK only (it sits beside ``engine.clv``).
"""
