"""Answers a planner asks around one allocation: the exact frontier, scenarios, the report.

Layer: uses the SDK (``engine.pipeline`` builds the model), ``engine.optimize`` and
``engine.clv``; never the service or the command line.
"""
