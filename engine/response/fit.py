"""Response curves by binomial maximum likelihood, per segment and kind.

At spend level j, n_j units were tried and y_j succeeded; with p_j = p(s_j; theta) from
``engine.response.curves`` the log-likelihood is

    l(theta) = sum_j y_j log p_j + (n_j - y_j) log(1 - p_j)

(the binomial coefficients do not depend on theta and are left out). It is maximised with
scipy's BFGS over unconstrained coordinates (logits of base and of the ceiling's share of the
gap above base, logs of k and shape) from several starts; standard errors and the covariance
are the inverse of the observed information -d2 l / dtheta2 at the estimate, in the natural
parameters (exact first derivatives of p, central differences of them for the second).

The exponential curve is always fitted; the S-shaped Hill curve too when there are more
spend levels than its parameters, and it is chosen when its AIC is at least ``AIC_MARGIN``
below the exponential's and the two curves' success rates differ at some tested spend level
by at least ``LIFT_MARGIN`` of the lift spend buys (the exponential's ceiling - base). The
likelihood-ratio statistic is reported beside it; the two families are not nested, so it is
descriptive, not a test. Goodness of fit per level is the
Pearson residual (y - n p) / sqrt(n p (1 - p)) with its two-sided normal p-value, overall the
Pearson chi-square on levels - parameters degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special, stats

from engine.errors import FieldViolation, InvalidInputError
from engine.response.curves import Shape, jacobian, probability

AIC_MARGIN = 4.0  # Hill must beat the exponential's AIC by this much to be chosen
# ... and predict, at some tested spend level, a success rate differing from the
# exponential's by at least this share of the lift spend buys (the exponential's ceiling -
# base): with very many units an AIC margin is reached by differences too small to change
# any allocation (docs/response.md)
LIFT_MARGIN = 0.05
_EPS = 1e-12


class Unidentified(Exception):
    """The data cannot identify the curve; the message says why and what would help."""


@dataclass
class ModelFit:
    shape: Shape
    theta: np.ndarray
    covariance: np.ndarray
    log_likelihood: float
    coordinates: np.ndarray  # the optimiser's unconstrained coordinates at the estimate

    @property
    def aic(self) -> float:
        return 2.0 * self.shape.size - 2.0 * self.log_likelihood

    @property
    def standard_errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))


@dataclass
class CurveFit:
    """The chosen curve of one (segment, kind) with its statistics (``to_dict``: the JSON)."""

    segment: str
    kind: str
    chosen: ModelFit
    spend: np.ndarray
    units: np.ndarray
    successes: np.ndarray
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.chosen.shape.model

    @property
    def parameters(self) -> dict[str, float]:
        return dict(zip(self.chosen.shape.parameters, map(float, self.chosen.theta), strict=True))

    def level_table(self) -> list[dict[str, float]]:
        p = probability(self.chosen.shape, self.chosen.theta, self.spend)
        expected = self.units * p
        var = np.maximum(expected * (1.0 - p), _EPS)
        z = (self.successes - expected) / np.sqrt(var)
        pvalue = 2.0 * stats.norm.sf(np.abs(z))
        return [
            {"spend": float(s), "units": int(n), "successes": int(y), "observed": float(y / n),
             "predicted": float(q), "pearson_residual": float(r), "p_value": float(pv)}
            for s, n, y, q, r, pv in zip(self.spend, self.units, self.successes, p, z, pvalue,
                                         strict=True)
        ]

    def goodness_of_fit(self) -> dict[str, Any]:
        residuals = np.array([row["pearson_residual"] for row in self.level_table()])
        # an acquisition arm at spend 0 is fitted exactly (a(0) = 0): it carries no information
        free = int((self.spend == 0).sum()) if self.kind == "acquisition" else 0
        informative = self.spend.size - free
        df = informative - self.chosen.shape.size
        statistic = float((residuals**2).sum())
        return {"test": "pearson chi-square", "statistic": statistic, "df": int(df),
                "p_value": float(stats.chi2.sf(statistic, df)) if df > 0 else None}

    def to_dict(self) -> dict[str, Any]:
        params = self.parameters
        names = list(self.chosen.shape.parameters)
        return {
            "segment": self.segment,
            "kind": self.kind,
            "model": self.model,
            "base": params.get("base", 0.0),
            "ceiling": params["ceiling"],
            "k": params["k"],
            "shape": params.get("shape"),
            "parameters": names,
            "standard_errors": dict(zip(names, map(float, self.chosen.standard_errors),
                                        strict=True)),
            "covariance": self.chosen.covariance.tolist(),
            "log_likelihood": self.chosen.log_likelihood,
            "aic": self.chosen.aic,
            "units": int(self.units.sum()),
            "successes": int(self.successes.sum()),
            "model_choice": self.alternatives,
            "goodness_of_fit": self.goodness_of_fit(),
            "fit_by_level": self.level_table(),
        }


def log_likelihood(shape: Shape, theta: np.ndarray, spend: np.ndarray, units: np.ndarray,
                   successes: np.ndarray) -> float:
    p = np.clip(probability(shape, theta, spend), _EPS, 1.0 - _EPS)
    return float((successes * np.log(p) + (units - successes) * np.log1p(-p)).sum())


# --- unconstrained coordinates -----------------------------------------------------------


def _natural(shape: Shape, x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """theta(x) and d theta / d x (parameters x coordinates)."""
    size = shape.size
    theta = np.empty(size)
    t = np.zeros((size, size))
    i = 0
    if shape.kind == "retention":
        b, g = special.expit(x[0]), special.expit(x[1])
        theta[0], theta[1] = b, b + (1.0 - b) * g
        t[0, 0] = b * (1.0 - b)
        t[1, 0] = (1.0 - g) * t[0, 0]
        t[1, 1] = (1.0 - b) * g * (1.0 - g)
        i = 2
    else:
        c = special.expit(x[0])
        theta[0] = c
        t[0, 0] = c * (1.0 - c)
        i = 1
    theta[i] = np.exp(x[i]) / scale
    t[i, i] = theta[i]
    if shape.model == "hill":
        theta[i + 1] = np.exp(x[i + 1])
        t[i + 1, i + 1] = theta[i + 1]
    return theta, t


def _objective(shape: Shape, spend: np.ndarray, units: np.ndarray, successes: np.ndarray,
               scale: float):  # type: ignore[no-untyped-def]
    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, t = _natural(shape, x, scale)
        p = np.clip(probability(shape, theta, spend), _EPS, 1.0 - _EPS)
        ll = (successes * np.log(p) + (units - successes) * np.log1p(-p)).sum()
        w = successes / p - (units - successes) / (1.0 - p)
        score = jacobian(shape, theta, spend).T @ w
        return -float(ll), -(t.T @ score)

    return f


def _start(shape: Shape, rates: np.ndarray, f: Any, previous: np.ndarray | None) -> np.ndarray:
    """A starting point: the exponential's estimate for hill (shape 1 or 2.5), else rates at
    the lowest and highest spend with the best of a grid of k (cheap: no optimisation)."""
    if previous is not None:
        candidates = [np.append(previous, log_n) for log_n in (0.0, np.log(2.5))]
    else:
        top = float(np.clip(rates.max(), 0.02, 0.98))
        if shape.kind == "retention":
            b = float(np.clip(rates[0], 0.01, top - 0.01))
            head = [special.logit(b), special.logit(np.clip((top - b) / (1 - b) * 1.2, 0.02, 0.98))]
        else:
            head = [special.logit(top)]
        tail = [0.0] if shape.model == "hill" else []
        candidates = [np.array([*head, log_k, *tail]) for log_k in np.linspace(-3.0, 3.0, 13)]
    values = [f(x)[0] for x in candidates]
    return candidates[int(np.argmin(values))]


def observed_information(shape: Shape, theta: np.ndarray, spend: np.ndarray,
                         units: np.ndarray, successes: np.ndarray) -> np.ndarray:
    """-d2 l / d theta2: sum_j a_j g_j g_j' - w_j H_j with g, H the gradient and Hessian of
    p_j, a_j = y/p^2 + (n-y)/(1-p)^2, w_j = y/p - (n-y)/(1-p)."""
    p = np.clip(probability(shape, theta, spend), _EPS, 1.0 - _EPS)
    g = jacobian(shape, theta, spend)
    a = successes / p**2 + (units - successes) / (1.0 - p) ** 2
    w = successes / p - (units - successes) / (1.0 - p)
    info = (g * a[:, None]).T @ g
    for i in range(shape.size):
        h = 1e-6 * max(abs(theta[i]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        d_g = (jacobian(shape, up, spend) - jacobian(shape, down, spend)) / (2.0 * h)
        info[:, i] -= d_g.T @ w
    return 0.5 * (info + info.T)


def fit_model(shape: Shape, spend: np.ndarray, units: np.ndarray, successes: np.ndarray,
              start: np.ndarray | None = None) -> ModelFit:
    """Maximum likelihood for one curve family; ``Unidentified`` when the data cannot pin it.
    ``start``: the exponential's coordinates, from which a hill fit starts."""
    positive = spend[spend > 0]
    scale = float(positive.mean())
    f = _objective(shape, spend, units, successes, scale)
    x0 = _start(shape, successes / units, f, start)
    best = optimize.minimize(f, x0, jac=True, method="BFGS",
                             options={"gtol": 1e-7, "maxiter": 2000})
    theta, _ = _natural(shape, best.x, scale)
    _check_boundary(shape, theta, positive)
    info = observed_information(shape, theta, spend, units, successes)
    try:
        eigen = np.linalg.eigvalsh(info)
        if not np.isfinite(eigen).all() or eigen.min() <= 1e-10 * max(eigen.max(), 1.0):
            raise np.linalg.LinAlgError
        covariance = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        raise Unidentified(
            "the information matrix is singular: the spend levels cannot tell the parameters "
            "apart (test more, and more widely spaced, spend levels)") from None
    return ModelFit(shape, theta, covariance, -float(best.fun), best.x)


def _check_boundary(shape: Shape, theta: np.ndarray, positive: np.ndarray) -> None:
    i = 2 if shape.kind == "retention" else 1
    k, ceiling = theta[i], theta[i - 1]
    lowest, highest = float(positive.min()), float(positive.max())
    if k * lowest > 8.0:  # L(lowest) > 0.9997: the rest of the curve is out of sight
        raise Unidentified(
            f"the whole response is reached at the lowest positive spend ({lowest:g}): k is "
            "not identified (test smaller spend levels)")
    if ceiling > 1.0 - 1e-6 or k * highest < 1e-3:
        raise Unidentified(
            f"the response does not level off up to the highest spend ({highest:g}): the "
            "ceiling and k are not separately identified (test larger spend levels)")
    if shape.model == "hill" and not 0.05 < theta[-1] < 50.0:
        raise Unidentified(f"the Hill shape ran to {theta[-1]:.3g}")


def _screen(kind: str, spend: np.ndarray, units: np.ndarray, successes: np.ndarray) -> None:
    """Data that can identify no curve, said in the user's terms."""
    rates = successes / units
    if kind == "retention":
        if spend.size < 3:
            raise Unidentified(
                f"{_levels(spend)}; a retention curve (base, ceiling, k) needs at least 3")
    else:
        free = successes[spend == 0].sum()
        if free:
            raise Unidentified(
                f"{int(free)} acquisitions at spend 0: the acquisition curve a(A) = "
                "a_c (1 - e^(-kA)) has a(0) = 0; leave organic sign-ups out of the experiment")
        if (spend > 0).sum() < 2:
            raise Unidentified(f"{_levels(spend[spend > 0], 'positive ')}; an acquisition curve "
                               "(ceiling, k) needs at least 2")
    total, tried = int(successes.sum()), int(units.sum())
    if total in (0, tried):
        raise Unidentified(
            f"no variation: {'none' if total == 0 else 'all'} of the {tried} units succeeded")
    centred = spend - np.average(spend, weights=units)
    slope = float((units * centred * (rates - np.average(rates, weights=units))).sum())
    if slope <= 0:
        raise Unidentified(
            f"success falls with spend ({rates[0]:.3f} at {spend[0]:g}, {rates[-1]:.3f} at "
            f"{spend[-1]:g}); a response curve rises with spend")


def _levels(spend: np.ndarray, what: str = "") -> str:
    n = spend.size
    shown = ", ".join(f"{s:g}" for s in spend)
    return f"{n} {what}spend level{'s' if n != 1 else ''}" + (f" ({shown})" if n else "")


def fit_curve(segment: str, kind: str, spend: np.ndarray, units: np.ndarray,
              successes: np.ndarray) -> CurveFit:
    """The curve of one segment and kind from its aggregated arms (sorted by spend)."""
    _screen(kind, spend, units, successes)
    exponential = fit_model(Shape(kind, "exponential"), spend, units, successes)
    alternatives: dict[str, Any] = {
        "rule": f"hill when its AIC is at least {AIC_MARGIN:g} below the exponential's and "
                f"the two predict success rates at some tested spend level at least "
                f"{LIFT_MARGIN:g} of the lift (ceiling - base) apart",
        "exponential": {"log_likelihood": exponential.log_likelihood, "aic": exponential.aic},
    }
    chosen = exponential
    hill_shape = Shape(kind, "hill")
    levels = int((spend > 0).sum()) + (1 if kind == "retention" and (spend == 0).any() else 0)
    if levels > hill_shape.size:
        try:
            hill = fit_model(hill_shape, spend, units, successes, exponential.coordinates)
        except Unidentified as exc:
            alternatives["hill"] = {"fitted": False, "reason": str(exc)}
        else:
            alternatives["hill"] = {"log_likelihood": hill.log_likelihood, "aic": hill.aic}
            alternatives["lr_statistic"] = 2.0 * (hill.log_likelihood
                                                  - exponential.log_likelihood)
            apart = float(np.abs(probability(hill.shape, hill.theta, spend)
                                 - probability(exponential.shape, exponential.theta,
                                               spend)).max())
            lift_range = float(exponential.theta[1] - exponential.theta[0]
                               if kind == "retention" else exponential.theta[0])
            share = apart / max(lift_range, _EPS)
            alternatives["max_rate_difference"] = apart
            alternatives["max_difference_share_of_lift"] = share
            if hill.aic <= exponential.aic - AIC_MARGIN and share >= LIFT_MARGIN:
                chosen = hill
    else:
        alternatives["hill"] = {"fitted": False, "reason": f"needs more than {hill_shape.size} "
                                "spend levels"}
    alternatives["chosen"] = chosen.shape.model
    return CurveFit(segment, kind, chosen, spend, units, successes, alternatives)


def fit_experiments(experiments: pl.DataFrame) -> list[CurveFit]:
    """Every (segment, kind) of an aggregated experiments table (``experiments.aggregate``);
    all groups that cannot be fitted are reported together, each naming its segment."""
    fits: list[CurveFit] = []
    problems: list[FieldViolation] = []
    for (segment, kind), group in experiments.group_by("segment", "kind", maintain_order=True):
        spend = group["spend"].to_numpy().astype(np.float64)
        units = group["units"].to_numpy().astype(np.float64)
        successes = group["successes"].to_numpy().astype(np.float64)
        try:
            fits.append(fit_curve(str(segment), str(kind), spend, units, successes))
        except Unidentified as exc:
            problems.append(FieldViolation(
                f"experiments[segment={segment!r}, kind={kind}]", str(exc)))
    if problems:
        raise InvalidInputError(problems)
    return fits
