"""BG/NBD diagnostics: period-transactions histogram, P(alive) matrix, P(X(t) = n).

Fader, Hardie & Lee (2005) accept a fit by how well it reproduces the calibration data
before any holdout: the number of customers with 0, 1, ..., 7+ repeat purchases against the
number the model expects (each customer observed for their own T), and P(alive) over
(frequency, recency). The count distribution of a new customer over (0, t] is their eq. 8:

    P(X(t) = x) = B(a, b+x)/B(a, b) NB(x; r, alpha/(alpha+t))
                  + [x > 0] B(a+1, b+x-1)/B(a, b) P(NB(r, alpha/(alpha+t)) >= x)

with NB(j; r, p) = G(r+j)/(G(r) j!) p^r (1-p)^j, the Poisson-gamma count of a customer who
never drops out (the first term: alive throughout, x purchases; the second: dropped out
after the x-th). The tail P(NB >= x) is scipy's survival function, so no cancellation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln
from scipy.stats import nbinom

from engine.clv.bgnbd import BGNBDParams, p_alive
from engine.errors import InvalidInputError

Array = NDArray[np.float64]
CAP = 7  # the histogram's last bin is 7+ as in Fader, Hardie & Lee (2005)


def count_probabilities(params: BGNBDParams, t: ArrayLike, max_count: int) -> Array:
    """P(X(t) = x) for x = 0..max_count, one row per t (shape ``t.shape + (max_count+1,)``)."""
    t = np.asarray(t, dtype=np.float64)
    if np.any(~np.isfinite(t) | (t < 0)):
        raise InvalidInputError.single("t", "must be finite and >= 0")
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.arange(max_count + 1, dtype=np.float64)
    p = (alpha / (alpha + t))[..., None]
    alive = np.exp(betaln(a, b + x) - betaln(a, b)) * nbinom.pmf(x, r, p)
    xd = np.maximum(x, 1.0)
    dropped = np.exp(betaln(a + 1.0, b + xd - 1.0) - betaln(a, b)) * nbinom.sf(x - 1.0, r, p)
    return np.asarray(alive + np.where(x > 0, dropped, 0.0))


def period_transactions(
    params: BGNBDParams, frequency: ArrayLike, T: ArrayLike, cap: int = CAP
) -> list[dict[str, Any]]:
    """Customers with 0, 1, ..., cap+ repeat purchases in calibration: actual against
    expected (sum over customers of P(X(T_i) = k), computed once per distinct T)."""
    x = np.asarray(frequency, dtype=np.float64)
    t_age = np.asarray(T, dtype=np.float64)
    ts, inverse = np.unique(t_age, return_inverse=True)
    weight = np.bincount(inverse.reshape(-1), minlength=ts.size).astype(np.float64)
    probs = count_probabilities(params, ts, cap - 1)
    expected = weight @ probs
    expected = np.append(expected, weight.sum() - expected.sum())  # cap and above
    actual = np.bincount(np.minimum(x, cap).astype(np.int64), minlength=cap + 1)
    return [
        {"frequency": k, "and_above": k == cap, "actual": int(actual[k]),
         "expected": float(expected[k])}
        for k in range(cap + 1)
    ]


def p_alive_matrix(
    params: BGNBDParams, T: float, max_frequency: int, recency_points: int = 0
) -> dict[str, Any]:
    """P(alive at T) for frequency 0..max_frequency and recency from 0 to T (``T + 1``
    points by default, whole time units, T included); null where no history has them (x = 0
    with t_x > 0, x > 0 with t_x = 0)."""
    if not (np.isfinite(T) and T > 0):
        raise InvalidInputError.single("T", "must be a finite number > 0")
    points = recency_points or int(np.floor(T)) + 1
    recency = np.linspace(0.0, T, points) if recency_points else np.append(
        np.arange(points - 1, dtype=np.float64), T)[:points]
    recency = np.unique(np.minimum(recency, T))
    x = np.arange(max_frequency + 1, dtype=np.float64)
    grid = p_alive(params, x[:, None], recency[None, :], T)
    possible = (x[:, None] > 0) == (recency[None, :] > 0)
    return {
        "T": float(T),
        "frequency": [int(v) for v in x],
        "recency": [float(v) for v in recency],
        "p_alive": [[float(v) if ok else None for v, ok in zip(row, mask, strict=True)]
                    for row, mask in zip(grid, possible, strict=True)],
    }


def count_distribution(params: BGNBDParams, t: float, cap: int = CAP) -> dict[str, Any]:
    """P(X(t) = n) of a new customer for n = 0..cap-1 and n >= cap, with the mean."""
    probs = count_probabilities(params, np.array([t]), cap - 1)[0]
    return {
        "t": float(t),
        "probabilities": [{"n": k, "and_above": False, "probability": float(v)}
                          for k, v in enumerate(probs)]
        + [{"n": cap, "and_above": True, "probability": float(max(0.0, 1.0 - probs.sum()))}],
    }


def diagnostics(
    params: BGNBDParams, frequency: ArrayLike, T: ArrayLike, t: float, cap: int = CAP
) -> dict[str, Any]:
    """The ``--diagnostics`` JSON: histogram, P(alive) matrix at the largest T (frequency
    up to the 99th percentile, at least cap), P(X(t) = n) at the prediction horizon t."""
    x = np.asarray(frequency, dtype=np.float64)
    t_age = np.asarray(T, dtype=np.float64)
    top = max(cap, int(np.quantile(x, 0.99))) if x.size else cap
    return {
        "period_transactions": period_transactions(params, x, t_age, cap),
        "p_alive_matrix": p_alive_matrix(params, float(t_age.max()), top),
        "count_distribution": count_distribution(params, t, cap),
    }
