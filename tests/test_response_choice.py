"""Model choice with very many units: the Hill curve needs a practically meaningful
difference from the exponential (LIFT_MARGIN of the lift), not only a better AIC."""

from __future__ import annotations

import numpy as np

from engine.response.experiments import EXAMPLE_LEVELS, EXAMPLE_TRUTH, simulate
from engine.response.fit import AIC_MARGIN, LIFT_MARGIN, fit_curve, fit_experiments

PER_ARM = 232_558  # the example's 43 arms at 10M units in all


def test_exponential_truth_at_ten_million_units_stays_exponential() -> None:
    aic_alone = 0
    for seed in range(3):
        for fit in fit_experiments(simulate(EXAMPLE_TRUTH, EXAMPLE_LEVELS, PER_ARM, seed=seed)):
            choice = fit.alternatives
            assert choice["chosen"] == "exponential", (seed, fit.segment, fit.kind, choice)
            if "aic" in choice["hill"]:
                gap = choice["hill"]["aic"] - choice["exponential"]["aic"]
                aic_alone += gap <= -AIC_MARGIN
                # the curves stay within a few percent of the lift at every tested level
                assert choice["max_difference_share_of_lift"] < LIFT_MARGIN
    assert aic_alone >= 1  # an AIC rule alone would have picked Hill here (seed 1, 'value')


def test_an_s_shaped_truth_at_the_same_size_is_still_hill() -> None:
    truth = {("s", "retention"): {"base": 0.5, "ceiling": 0.8, "k": 0.08, "shape": 3.0}}
    levels = {"retention": (0.0, 5.0, 10.0, 20.0, 40.0)}
    table = simulate(truth, levels, PER_ARM, seed=5, model="hill")
    fit = fit_curve("s", "retention", *(table[c].to_numpy().astype(np.float64)
                                        for c in ("spend", "units", "successes")))
    choice = fit.alternatives
    assert choice["chosen"] == "hill"
    assert choice["max_difference_share_of_lift"] >= LIFT_MARGIN
    assert abs(fit.parameters["shape"] - 3.0) < 5 * float(fit.chosen.standard_errors[-1])
