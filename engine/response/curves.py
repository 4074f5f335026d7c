"""Response curves: the probability of success (kept, acquired) at spend s.

Retention (Blattberg & Deighton), per customer per period:
    r(s) = base + (ceiling - base) L(s)
Acquisition, per prospect:
    a(A) = ceiling L(A)                    (no spend, no acquisition: a(0) = 0)
with the lift L rising from 0 at s = 0 to 1:
    exponential  L(s) = 1 - exp(-k s)                     (diminishing returns)
    hill         L(s) = (k s)^n / (1 + (k s)^n)           (S-shaped for n > 1; L(1/k) = 1/2)

Parameters, in the order of every vector, Jacobian and covariance of this package:
retention (base, ceiling, k[, shape]); acquisition (ceiling, k[, shape]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
MODELS = ("exponential", "hill")
KINDS = ("retention", "acquisition")


@dataclass(frozen=True)
class Shape:
    """A curve family for one kind: which parameters it has."""

    kind: str
    model: str

    @property
    def parameters(self) -> tuple[str, ...]:
        head = ("base", "ceiling", "k") if self.kind == "retention" else ("ceiling", "k")
        return (*head, "shape") if self.model == "hill" else head

    @property
    def size(self) -> int:
        return len(self.parameters)


def lift(model: str, spend: ArrayLike, k: ArrayLike, shape: ArrayLike = 1.0) -> Array:
    """L(s) in [0, 1): the share of the possible response reached at spend s."""
    s = np.asarray(spend, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if model == "exponential":
        return np.asarray(-np.expm1(-k * s))
    return _hill(s, k, np.asarray(shape, dtype=np.float64))


def _hill(s: Array, k: Array, n: Array) -> Array:
    """(k s)^n / (1 + (k s)^n) as expit(n log(k s)): no overflow for any k, s, n."""
    from scipy import special  # only for Hill curves: not loaded with every cost model

    positive = s > 0
    with np.errstate(divide="ignore"):
        log_ks = np.log(np.where(positive, k * s, 1.0))
    return np.asarray(np.where(positive, special.expit(n * log_ks), 0.0))


def lift_gradient(model: str, spend: Array, k: float, shape: float = 1.0) -> Array:
    """dL/dk (and dL/dshape for hill), one row per spend level."""
    s = np.asarray(spend, dtype=np.float64)
    if model == "exponential":
        return (s * np.exp(-k * s))[:, None]
    from scipy import special

    positive = s > 0
    log_ks = np.log(np.where(positive, k * s, 1.0))
    level = np.where(positive, special.expit(shape * log_ks), 0.0)
    slope = level * (1.0 - level)
    return np.column_stack([slope * shape / k, slope * log_ks])


def probability(shape: Shape, theta: ArrayLike, spend: ArrayLike) -> Array:
    """Success probability at each spend level under parameters ``theta``."""
    t = np.asarray(theta, dtype=np.float64)
    s = np.asarray(spend, dtype=np.float64)
    n = t[-1] if shape.model == "hill" else 1.0
    if shape.kind == "retention":
        base, ceiling, k = t[0], t[1], t[2]
        return base + (ceiling - base) * lift(shape.model, s, k, n)
    ceiling, k = t[0], t[1]
    return ceiling * lift(shape.model, s, k, n)


def jacobian(shape: Shape, theta: ArrayLike, spend: ArrayLike) -> Array:
    """d probability / d theta: (levels x parameters)."""
    t = np.asarray(theta, dtype=np.float64)
    s = np.asarray(spend, dtype=np.float64)
    n = float(t[-1]) if shape.model == "hill" else 1.0
    if shape.kind == "retention":
        base, ceiling, k = float(t[0]), float(t[1]), float(t[2])
        level = lift(shape.model, s, k, n)
        grad = lift_gradient(shape.model, s, k, n) * (ceiling - base)
        return np.column_stack([1.0 - level, level, grad])
    ceiling, k = float(t[0]), float(t[1])
    level = lift(shape.model, s, k, n)
    return np.column_stack([level, lift_gradient(shape.model, s, k, n) * ceiling])


def share_of_gap(base: float, ceiling: float) -> float:
    """The share of the gap to 1 a retention curve closes at saturation: (c - b) / (1 - b).

    A segment's curve applies to each customer through this share and its k (and shape): a
    customer with baseline r0 reaches r0 + share (1 - r0) L(s) (docs/response.md)."""
    return (ceiling - base) / (1.0 - base)
