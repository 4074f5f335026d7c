"""Brute-force agreement of the allocator on tiny instances (the figure in the issue-2 note).

Run: PYTHONPATH=. .venv/bin/python benchmarks/bruteforce.py
"""

from __future__ import annotations

from engine.constraints import build_constraints
from engine.errors import InfeasiblePlanError
from engine.optimize import lp
from tests.conftest import random_options
from tests.reference import brute_force, reference_lp
from tests.test_lp import CASES, _plan


def main(seeds: int = 40) -> None:
    solved = exact = infeasible = 0
    worst_bound = worst_gap = 0.0
    for seed in range(seeds):
        for case in CASES:
            options = random_options(n=6, levels=3, segments=2, seed=seed)
            rows = build_constraints(_plan(*case), options)
            best = brute_force(options, rows)
            reference = reference_lp(options, rows)
            try:
                plan = lp.solve(options, rows)
            except InfeasiblePlanError:
                infeasible += 1
                assert best is None, "refused a plan brute force found"
                continue
            assert best is not None and reference is not None and plan.bound is not None
            value = float(plan.equity(options).sum())
            solved += 1
            exact += abs(value - best) <= 1e-7
            worst_bound = max(worst_bound, abs(plan.bound - reference) / abs(reference))
            worst_gap = max(worst_gap, (plan.bound - value) / abs(plan.bound))
    print(
        f"instances {solved} (+{infeasible} infeasible, agreed by brute force); "
        f"plan == brute-force optimum on {exact}/{solved}; "
        f"max |bound - LP| / LP {worst_bound:.2e}; max reported gap {worst_gap:.2e}"
    )


if __name__ == "__main__":
    main()
