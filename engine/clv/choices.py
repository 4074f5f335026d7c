"""Constants the CLV parameters are declared with (the ``bgnbd`` metric's, ``equity clv``'s),
in a module that imports nothing: reading them does not load the fits (scipy)."""

from __future__ import annotations

VALUE_MODELS = ("bgnbd", "pareto-nbd", "mbg-nbd")  # purchase models that value customers
MAX_INTERVAL_DRAWS = 10_000
