"""BG/NBD purchase model (Fader, Hardie & Lee 2005) fitted on sufficient statistics.

While alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after
each repeat purchase they drop out with probability p ~ Beta(a, b). The likelihood of one
customer depends only on (x, t_x, T), so customers sharing them collapse into one weighted
row: the fit costs O(distinct rows), not O(customers), and the log-likelihood and its analytic
gradient are a handful of vectorised special functions per evaluation.

Per-customer log-likelihood, with D = ln a - ln(b+x-1) + (r+x) [ln(alpha+T) - ln(alpha+t_x)]:

    ln L = ln G(r+x) - ln G(r) + r ln alpha + ln B(a, b+x) - ln B(a, b) - (r+x) ln(alpha+T)
           + [x > 0] softplus(D)

softplus keeps it finite where the two terms of the paper's sum differ by hundreds of orders
of magnitude. P(alive) = 1 / (1 + [x > 0] e^D).

Conditional expectation. Given alive at T the posterior is lambda ~ Gamma(r+x, alpha+T),
p ~ Beta(a, b+x), so E[Y(t) | x, t_x, T] = P(alive) * E_alive(t) with E_alive the
unconditional BG/NBD expectation under the updated parameters:

    E_alive(t) = (a+b+x-1)/(a-1) [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],  z = t/(alpha+T+t).

2F1 with parameters growing in x and z near 1 is where naive code loses digits; Euler's
transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns the product into
(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose upper parameters do not grow with x.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from engine.clv.special import hyp2f1_fast
from engine.clv.transactions import validate_rfm
from engine.errors import InvalidInputError, SolverError

Array = NDArray[np.float64]
PARAM_NAMES = ("r", "alpha", "a", "b")
_LOG_BOUND = 25.0  # parameters live in [e^-25, e^25]; reaching it means a degenerate fit
MIN_CUSTOMERS = 10  # four parameters: fewer customers than this cannot identify them
WARM_START_SAMPLE = 50_000  # larger fits start from a fit on this many random customers
# A rise of the per-customer objective this small (relative) is rounding in a sum over
# hundreds of thousands of rows, not a worse point: a Newton step is not refused for it.
_F_NOISE = 1e-13


class ModelFitError(SolverError):
    """A maximum-likelihood fit did not converge or its optimum is degenerate; no numbers."""

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"{model} fit did not converge: {message}", status="not_converged")


# ------------------------------------------------------------------------ generic ML driver


@dataclass(frozen=True)
class MLEResult:
    params: Array
    log_likelihood: float
    standard_errors: Array
    covariance: Array
    iterations: int
    message: str


def maximize_log_likelihood(
    model: str,
    loglik: Callable[[Array], tuple[float, Array]],
    start: Array,
    names: Sequence[str],
    weight: float,
    polish: bool = True,
    hessian: Array | None = None,
    central: bool = True,
) -> MLEResult:
    """Maximise a log-likelihood with analytic gradient over positive parameters.

    L-BFGS-B runs on log-parameters (positivity for free, better scaling), then Newton steps
    on the numerical Hessian of the analytic gradient polish the optimum to machine precision.
    Raises :class:`ModelFitError` unless the optimum is interior, stationary and has a
    positive-definite Hessian: the standard errors would otherwise be meaningless.
    ``polish=False`` returns L-BFGS-B's point unchecked, without standard errors (warm starts).
    ``hessian`` (of the per-unit-weight objective in log-parameters, e.g. from a fit on a
    sample) starts with Newton steps on it instead of L-BFGS-B, which runs only if they do not
    reach a stationary point; ``central=False`` differentiates the gradient forward (half the
    gradients, about 1e-5 relative error in the standard errors).
    """
    scale = 1.0 / weight
    last: list[tuple[bytes, float, Array]] = []  # the last evaluation, asked for again often

    def objective(phi: Array) -> tuple[float, Array]:
        key = np.asarray(phi, dtype=np.float64).tobytes()
        if last and last[0][0] == key:
            return last[0][1], last[0][2].copy()
        theta = np.exp(phi)
        with np.errstate(all="ignore"):
            ll, grad = loglik(theta)
        if not np.isfinite(ll) or not np.all(np.isfinite(grad)):
            out = (1e100, np.zeros_like(phi))
        else:
            out = (-ll * scale, -grad * theta * scale)
        last[:] = [(key, out[0], out[1])]
        return out[0], out[1].copy()

    phi0 = np.log(np.asarray(start, dtype=np.float64))
    message = "Newton steps from the start"
    phi, iterations, stationary = phi0, 0, False
    if hessian is not None:
        phi, iterations, stationary = _chord_newton(
            objective, phi0, np.asarray(hessian, dtype=np.float64)
        )
    if not stationary:
        bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(phi0)
        res = minimize(
            objective,
            phi,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5000, "ftol": 1e-13, "gtol": 1e-7, "maxcor": 20},
        )
        phi = np.asarray(res.x, dtype=np.float64)
        iterations += int(res.nit)
        message = str(res.message)
    if not polish:
        nan = np.full(phi.size, np.nan)
        return MLEResult(
            np.exp(phi), float(-objective(phi)[0] * weight), nan, np.diag(nan), iterations, message
        )
    f, g = objective(phi)
    hess = _hessian_log(objective, phi, central, g)
    phi_lbfgs = phi
    for _ in range(8):  # Newton (chord) polish: L-BFGS-B stops a few digits short
        if np.max(np.abs(g)) < 1e-12 or not _positive_definite(hess):
            break
        trial = np.clip(phi - np.linalg.solve(hess, g), -_LOG_BOUND, _LOG_BOUND)
        f_trial, g_trial = objective(trial)
        if f_trial > f + _F_NOISE * (1.0 + abs(f)) or np.max(np.abs(g_trial)) >= np.max(
            np.abs(g)
        ):  # worse, or the gradient is down to its rounding noise
            break
        phi, f, g = trial, f_trial, g_trial
    if np.max(np.abs(phi - phi_lbfgs)) > 1e-4:
        hess = _hessian_log(objective, phi, central, g)
    theta = np.exp(phi)
    ll = -f * weight
    problems = []
    if not np.isfinite(ll) or f >= 1e99:
        problems.append("log-likelihood is not finite at the optimum")
    at_bound = [n for n, v in zip(names, phi, strict=True) if abs(v) > _LOG_BOUND - 1.0]
    if at_bound:
        problems.append(f"{', '.join(at_bound)} ran to the edge of the parameter space")
    if np.max(np.abs(g)) > 1e-6:
        problems.append(
            f"gradient not zero at the optimum (max {np.max(np.abs(g)):.2e}; {message})"
        )
    # Hessian of the total negative log-likelihood in natural parameters (delta method).
    h_theta = (hess - np.diag(g)) / np.outer(theta, theta) * weight
    if not problems and not _positive_definite(h_theta):
        problems.append("Hessian is not positive definite (parameters not identified)")
    if problems:
        raise ModelFitError(model, "; ".join(problems))
    cov = np.linalg.inv(h_theta)
    cov = (cov + cov.T) / 2.0
    return MLEResult(theta, float(ll), np.sqrt(np.diag(cov)), cov, iterations, message)


def inner(a: ArrayLike, b: ArrayLike) -> float:
    """Inner product without BLAS: OpenBLAS threads its ddot, and on a busy 2-core machine
    waking and spinning those threads costs milliseconds per call (a 20k-customer fit: 0.8 s
    instead of 0.016 s with OPENBLAS_NUM_THREADS=1)."""
    return float(
        np.einsum("i,i->", np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    )


def warm_start_sample(n: int, size: int = WARM_START_SAMPLE, seed: int = 0) -> pl.Series:
    """A reproducible random mask of about ``size`` of ``n`` rows."""
    rng = np.random.default_rng(seed)
    return pl.Series(rng.random(n) < size / n)


def warm_start(
    model: str, sub: Any, start: Array, names: Sequence[str]
) -> tuple[Array, Array | None]:
    """The optimum of a fit on a sample (``sub``: ``n`` and ``loglik``) and its Hessian per
    unit of weight in log-parameters, for chord Newton steps on the full data; ``start`` and
    no Hessian when the sample's fit fails."""
    with contextlib.suppress(ModelFitError, ValueError, np.linalg.LinAlgError):
        warm = maximize_log_likelihood(model, sub.loglik, start, names, sub.n, central=False)
        return warm.params, np.linalg.inv(warm.covariance) * np.outer(
            warm.params, warm.params
        ) / sub.n
    return start, None


def _hessian_log(
    objective: Callable[[Array], tuple[float, Array]],
    phi: Array,
    central: bool = True,
    g0: Array | None = None,
) -> Array:
    """Central (or forward, from the gradient ``g0`` at ``phi``) differences of the analytic
    gradient; symmetrised."""
    n = phi.size
    h = 1e-5
    hess = np.empty((n, n))
    for j in range(n):  # n <= 4: a loop over parameters, not customers
        e = np.zeros(n)
        e[j] = h
        if central or g0 is None:
            hess[:, j] = (objective(phi + e)[1] - objective(phi - e)[1]) / (2 * h)
        else:
            hess[:, j] = (objective(phi + e)[1] - g0) / h
    return (hess + hess.T) / 2.0


def _chord_newton(
    objective: Callable[[Array], tuple[float, Array]], phi: Array, hess: Array
) -> tuple[Array, int, bool]:
    """Newton steps on a fixed Hessian, halved until the objective does not rise.

    Returns (point, steps, whether the gradient got below 1e-9); when it did not, the caller
    continues with L-BFGS-B from the point reached.
    """
    if not _positive_definite(hess):
        return phi, 0, False
    f, g = objective(phi)
    for k in range(12):
        if np.max(np.abs(g)) < 1e-9:
            return phi, k, True
        step = np.linalg.solve(hess, g)
        for _ in range(30):
            trial = np.clip(phi - step, -_LOG_BOUND, _LOG_BOUND)
            f_trial, g_trial = objective(trial)
            if f_trial <= f + _F_NOISE * (1.0 + abs(f)):
                break
            step = step / 2.0
        else:
            return phi, k, False
        phi, f, g = trial, f_trial, g_trial
    return phi, 12, bool(np.max(np.abs(g)) < 1e-9)


def _positive_definite(m: Array) -> bool:
    if not np.all(np.isfinite(m)):
        return False
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


# --------------------------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class BGNBDParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class BGNBDFit:
    """A converged fit: parameters, their standard errors and the maximised log-likelihood."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    standard_errors: dict[str, float]
    n_customers: int
    n_rows: int
    iterations: int
    converged: bool = True
    covariance: list[list[float]] = field(default_factory=list)

    @property
    def params(self) -> BGNBDParams:
        return BGNBDParams(self.r, self.alpha, self.a, self.b)

    def as_dict(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
            "standard_errors": dict(self.standard_errors),
            "converged": self.converged,
            "customers": self.n_customers,
            "distinct_rows": self.n_rows,
            "iterations": self.iterations,
        }

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        return p_alive(self.params, frequency, recency, T)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        return conditional_expected_purchases(self.params, t, frequency, recency, T)

    def expected_purchases(self, t: ArrayLike) -> Array:
        return expected_purchases(self.params, t)


def sufficient_statistics(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[Array, Array, Array, Array]:
    """Distinct (x, t_x, T) rows and how many customers share each one."""
    (ux, ix), (utx, itx), (ut, it) = (
        codes(np.asarray(v, dtype=np.float64)) for v in (frequency, recency, T)
    )
    if ux.size * utx.size * ut.size >= 2**62:  # too many distinct values to pack a key
        g = pl.DataFrame({"x": ux[ix], "tx": utx[itx], "T": ut[it]})
        g = g.group_by(["x", "tx", "T"], maintain_order=True).len()
        return tuple(g[c].cast(pl.Float64).to_numpy() for c in ("x", "tx", "T", "len"))  # type: ignore[return-value]
    # One integer per row, distinct keys sorted: the rows come out in (x, t_x, T) order,
    # so every fit sums in the same order and gives the same bits on every run.
    key, counts = np.unique((ix * utx.size + itx) * ut.size + it, return_counts=True)
    rest, k_t = np.divmod(key, ut.size)
    k_x, k_tx = np.divmod(rest, utx.size)
    return ux[k_x], utx[k_tx], ut[k_t], counts.astype(np.float64)


def codes(values: Array) -> tuple[Array, NDArray[np.int64]]:
    """Sorted distinct values and the index of each value among them: a hashed distinct
    (polars) and a binary search, O(n log k) for k distinct values instead of a sort of n."""
    uniq = np.sort(pl.Series(values, dtype=pl.Float64).unique().to_numpy())
    return uniq, np.searchsorted(uniq, values).astype(np.int64, copy=False)


class _Data:
    """The log-likelihood's sufficient statistics, precomputed once per fit.

    Terms that depend on x or on T alone are summed over distinct values with aggregated
    weights; only the softplus(D) term of repeat customers is evaluated per distinct row,
    with logarithms of alpha + T and alpha + t_x looked up from their distinct values.
    """

    def __init__(self, x: Array, tx: Array, T: Array, w: Array) -> None:
        self.n = float(w.sum())
        self.xs, xi = codes(x)  # hashed distinct values: no sort of the rows
        self.w_x = np.bincount(xi, weights=w, minlength=self.xs.size)
        self.ts, ti = codes(T)
        self.w_t = np.bincount(ti, weights=w, minlength=self.ts.size)
        self.wx_t = np.bincount(ti, weights=w * x, minlength=self.ts.size)
        rep = x > 0
        self.txs, txi = codes(tx[rep])
        self.rep_x = x[rep]
        self.rep_w = w[rep]
        self.rep_xi = xi[rep]
        self.rep_ti = ti[rep]
        self.rep_txi = txi
        self.xs_pos = self.xs > 0

    def loglik(self, theta: ArrayLike) -> tuple[float, Array]:
        r, alpha, a, b = (float(v) for v in np.asarray(theta, dtype=np.float64))
        xs = self.xs
        log_alpha = np.log(alpha)
        log_at = np.log(alpha + self.ts)
        inv_at = 1.0 / (alpha + self.ts)
        log_atx = np.log(alpha + self.txs)
        inv_atx = 1.0 / (alpha + self.txs)
        bx1 = np.where(self.xs_pos, b + xs - 1.0, 1.0)
        log_bx1 = np.log(bx1)
        # Terms of every customer, summed over distinct x and distinct T.
        ll = float(
            inner(self.w_x, gammaln(r + xs) + betaln(a, b + xs))
            + self.n * (r * log_alpha - gammaln(r) - betaln(a, b))
            - inner(r * self.w_t + self.wx_t, log_at)
        )
        psi_abx = digamma(a + b + xs)
        psi_ab = digamma(a + b)
        g_r = (
            inner(self.w_x, digamma(r + xs))
            + self.n * (log_alpha - digamma(r))
            - inner(self.w_t, log_at)
        )
        g_alpha = self.n * r / alpha - inner(r * self.w_t + self.wx_t, inv_at)
        g_a = inner(self.w_x, psi_ab - psi_abx)
        g_b = inner(self.w_x, digamma(b + xs) - psi_abx - digamma(b) + psi_ab)
        # softplus(D) of the repeat customers, one evaluation per distinct row.
        if self.rep_x.size:
            rx = r + self.rep_x
            dlog = log_at[self.rep_ti] - log_atx[self.rep_txi]
            d = np.log(a) - log_bx1[self.rep_xi] + rx * dlog
            e = np.exp(-np.abs(d))
            ll += float(inner(self.rep_w, np.maximum(d, 0.0) + np.log1p(e)))
            s = self.rep_w * np.where(d >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
            g_r += float(inner(s, dlog))
            g_alpha += float(inner(s, rx * (inv_at[self.rep_ti] - inv_atx[self.rep_txi])))
            g_a += float(s.sum()) / a
            g_b -= float(inner(np.bincount(self.rep_xi, weights=s, minlength=xs.size), 1.0 / bx1))
        return ll, np.array([g_r, g_alpha, g_a, g_b])


def log_likelihood(
    theta: ArrayLike, x: ArrayLike, tx: ArrayLike, T: ArrayLike, w: ArrayLike | None = None
) -> tuple[float, Array]:
    """Weighted BG/NBD log-likelihood and its gradient in (r, alpha, a, b)."""
    x = np.asarray(x, dtype=np.float64)
    weights = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    data = _Data(x, np.asarray(tx, dtype=np.float64), np.asarray(T, dtype=np.float64), weights)
    return data.loglik(theta)


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    start: Sequence[float] | None = None,
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD on per-customer (frequency, recency, T).

    Raises :class:`ModelFitError` when the fit does not converge to an interior optimum.
    """
    rfm = pl.DataFrame(
        {
            "frequency": np.asarray(frequency, dtype=np.float64),
            "recency": np.asarray(recency, dtype=np.float64),
            "T": np.asarray(T, dtype=np.float64),
        }
    )
    if rfm.height == 0:
        raise InvalidInputError.single("rfm", "no customers to fit")
    validate_rfm(rfm)
    x, tx, t_age, w = sufficient_statistics(rfm["frequency"], rfm["recency"], rfm["T"])
    n = float(w.sum())
    if not np.any(x > 0):
        raise InvalidInputError.single(
            "rfm.frequency", "no customer made a repeat purchase; BG/NBD is not identified"
        )
    if n < MIN_CUSTOMERS:
        raise InvalidInputError.single(
            "transactions",
            f"too few customers to fit BG/NBD: {n:.0f}, at least {MIN_CUSTOMERS} needed "
            "(customers with a purchase on or before the calibration end)",
        )
    hessian = None
    if start is None:
        rate = float(inner(w, x)) / max(float(inner(w, t_age)), 1e-12)
        start = (1.0, 1.0 / max(rate, 1e-12), 1.0, 1.0)
        if n > 4 * WARM_START_SAMPLE:  # Newton steps from a sample's optimum, with its Hessian
            sample = warm_start_sample(rfm.height)
            sub = _Data(
                *sufficient_statistics(
                    rfm["frequency"].filter(sample),
                    rfm["recency"].filter(sample),
                    rfm["T"].filter(sample),
                )
            )
            warm, hessian = warm_start("BG/NBD", sub, np.asarray(start), PARAM_NAMES)
            start = tuple(float(v) for v in warm)
    data = _Data(x, tx, t_age, w)
    res = maximize_log_likelihood(
        "BG/NBD",
        data.loglik,
        np.asarray(start, dtype=np.float64),
        PARAM_NAMES,
        n,
        hessian=hessian,
        central=hessian is None,
    )
    r, alpha, a, b = (float(v) for v in res.params)
    return BGNBDFit(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        log_likelihood=res.log_likelihood,
        standard_errors=dict(
            zip(PARAM_NAMES, (float(s) for s in res.standard_errors), strict=True)
        ),
        n_customers=int(n),
        n_rows=int(x.size),
        iterations=res.iterations,
        covariance=res.covariance.tolist(),
    )


def fit_bgnbd_rfm(rfm: pl.DataFrame) -> BGNBDFit:
    """Fit on a table from :func:`engine.clv.transactions.rfm_statistics`."""
    return fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["T"])


# ----------------------------------------------------------------------------- predictions


def p_alive(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
    """P(still alive at T | x, t_x, T); 1 for customers without a repeat purchase."""
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    t_age = np.asarray(T, dtype=np.float64)
    pos = x > 0
    bx1 = np.where(pos, params.b + x - 1.0, 1.0)
    d = np.where(
        pos,
        np.log(params.a)
        - np.log(bx1)
        + (params.r + x) * (np.log(params.alpha + t_age) - np.log(params.alpha + tx)),
        -np.inf,
    )
    return np.asarray(expit(-d), dtype=np.float64)


def expected_purchases_alive(
    params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, T: ArrayLike
) -> Array:
    """E[purchases in (T, T+t] | alive at T, x repeats by T]; depends on (x, T) only."""
    a = params.a
    if abs(a - 1.0) < _A_NEAR_ONE:  # removable singularity: interpolate across it
        lo, hi = 1.0 - 2 * _A_NEAR_ONE, 1.0 + 2 * _A_NEAR_ONE
        f_lo = _expected_alive(params.r, params.alpha, lo, params.b, t, frequency, T)
        f_hi = _expected_alive(params.r, params.alpha, hi, params.b, t, frequency, T)
        return f_lo + (a - lo) / (hi - lo) * (f_hi - f_lo)
    return _expected_alive(params.r, params.alpha, a, params.b, t, frequency, T)


_A_NEAR_ONE = 1e-6


def _expected_alive(
    r: float, alpha: float, a: float, b: float, t: ArrayLike, frequency: ArrayLike, T: ArrayLike
) -> Array:
    x = np.asarray(frequency, dtype=np.float64)
    t_age = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    at = alpha + t_age
    z = t / (at + t)
    log1mz = np.log(at) - np.log(at + t)
    f = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    # 1 - (1-z)^(a-1) F without cancellation for a near 1 or small t.
    bracket = -np.expm1((a - 1.0) * log1mz + np.log(f))
    return np.asarray((a + b + x - 1.0) / (a - 1.0) * bracket, dtype=np.float64)


def conditional_expected_purchases(
    params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Array:
    """E[Y(t) | x, t_x, T]: expected purchases in the next t time units (FHL 2005 eq. 10)."""
    return p_alive(params, frequency, recency, T) * expected_purchases_alive(
        params, t, frequency, T
    )


def expected_purchases(params: BGNBDParams, t: ArrayLike) -> Array:
    """E[X(t)]: expected purchases of a new customer in (0, t] (FHL 2005 eq. 7)."""
    t = np.asarray(t, dtype=np.float64)
    return expected_purchases_alive(params, t, np.zeros_like(t), np.zeros_like(t))


def purchase_rate_alive(
    params: BGNBDParams, s: ArrayLike, frequency: ArrayLike, T: ArrayLike
) -> Array:
    """d/ds E_alive(s): expected purchase rate s time units after T, given alive at T.

    E[lambda exp(-lambda p s)] under the posterior, written with Pfaff's transformation so
    the 2F1 argument s/(alpha+T+s) stays in [0, 1).
    """
    x = np.asarray(frequency, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    r1 = params.r + x
    at = params.alpha + np.asarray(T, dtype=np.float64)
    bb = params.b + x
    a = params.a
    w = s / (at + s)
    f = hyp2f1_fast(a, a + bb - r1 - 1.0, a + bb, w)  # w near 1 in an infinite horizon's tail
    return np.asarray(r1 / at * np.exp(-a * np.log1p(s / at)) * f, dtype=np.float64)
