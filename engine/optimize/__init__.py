"""Solving the allocation: the exact block LP, its integer repair, the solver door, scale-out.

Layer: uses the plugin SDK (``engine.options``, ``engine.constraints``, ``engine.allocation``)
and nothing above it. Built-in allocators reach it through ``engine.optimize.lp.solve``.
"""
