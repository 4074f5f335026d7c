"""Built-in metric: subscription customers valued by the shifted-beta-geometric (sBG) model.

``sbg`` reads a customers table of subscribers (``customer_id``, ``renewals`` made so far,
``active``, ``payment`` per period) and returns the columns the engine values customers by,
``margin`` and ``retention``, with each customer's ``renewal_probability`` and ``clv``. The
model's alpha and beta are fitted on the table itself (churned and active subscribers,
``engine.clv.sbg.fit_sbg_tenure``; one fit per value of the ``by`` column if given), or taken
from the parameters (for example a cohort fit of ``equity clv --survival``). Churned rows get
margin, retention and value 0, so no plan spends on them. The bridge (``engine.clv.sbg_value``,
docs/clv.md) is exact for the plan's valuation: ``margin * margin_multiplier(retention)`` is
the sBG CLV at the plan's discount rate, horizon and margin growth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import polars as pl

from engine.errors import FieldViolation, InvalidInputError
from engine.hookspecs import hookimpl
from engine.strategies import Metric, Param
from engine.valuation import Valuation


class SubscriptionCLV(Metric):
    """sBG retention and CLV of subscribers; margin and retention that reproduce it."""

    name = "sbg"
    summary = (
        "Subscribers (renewals, active, payment) -> customers: sBG (Fader & Hardie) renewal "
        "probability and CLV, with margin and retention that reproduce it in the engine's "
        "CLV formula."
    )
    requires: ClassVar[tuple[str, ...]] = ("renewals", "active", "payment")
    produces: ClassVar[tuple[str, ...]] = ("margin", "retention", "renewal_probability", "clv")
    params: ClassVar = {
        "alpha": Param(0.0, "sBG alpha (> 0) with beta; 0: fit alpha and beta on the table's "
                       "churned and active subscribers.", minimum=0.0),
        "beta": Param(0.0, "sBG beta (> 0) with alpha; 0: fit them on the table.",
                      minimum=0.0),
        "by": Param("", "Column whose values get one sBG fit each (a cohort, a plan type); "
                    "empty: one fit for the whole table.", str),
        "bridge": Param(
            "exact",
            "exact: margin and retention reproduce the sBG CLV (retention is the effective "
            "geometric rate of the rising sBG curve); next: retention is the next renewal's "
            "probability and margin the payment.",
            str, choices=("exact", "next"),
        ),
    }  # fmt: skip
    alpha: float
    beta: float
    by: str
    bridge: str

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        from engine.clv.sbg_value import customer_values  # the fits (scipy) load when used

        renewals, active, payment = _columns(table)
        alpha = np.zeros(table.height)
        beta = np.zeros(table.height)
        if self.alpha > 0 and self.beta > 0:
            alpha[:], beta[:] = self.alpha, self.beta
        elif self.alpha > 0 or self.beta > 0:
            given = "alpha" if self.alpha > 0 else "beta"
            raise InvalidInputError.single(
                f"plan.metric.params.{given}", "give both alpha and beta, or neither (fit them)"
            )
        else:
            for rows, label in _groups(table, self.by):
                fit = self._fit(renewals[rows], active[rows], rows, label)
                alpha[rows], beta[rows] = fit
        out = {name: np.zeros(table.height) for name in self.produces}
        for a, b in np.unique(np.stack([alpha, beta], axis=1), axis=0):  # one per fit
            rows = np.flatnonzero((alpha == a) & (beta == b) & active)
            values = customer_values(a, b, renewals[rows], payment[rows], valuation, self.bridge)
            for name, column in values.items():
                out[name][rows] = column
        return pl.DataFrame(out).select(self.produces)

    def _fit(
        self, renewals: np.ndarray, active: np.ndarray, rows: np.ndarray, label: str
    ) -> tuple[float, float]:
        where = f" of {self.by} {label!r}" if self.by else ""
        if active.all():
            raise InvalidInputError.single(
                "customers.active",
                f"no churned subscriber{where}: sBG cannot be fitted on active ones only; add "
                "churned subscribers (active false) or give alpha and beta "
                "(--param metric.alpha=... --param metric.beta=...)",
                int(rows[0]),
            )
        from engine.clv.sbg import fit_sbg_tenure

        fit = fit_sbg_tenure(renewals, active, cohort=label)
        return fit.alpha, fit.beta


def _columns(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """renewals (integers >= 0), active (bool or 0/1), payment (finite), naming bad rows."""
    problems: list[FieldViolation] = []
    renewals = table["renewals"].cast(pl.Float64, strict=False).to_numpy()
    bad = ~np.isfinite(renewals) | (renewals < 0) | (renewals != np.round(renewals))
    problems += [FieldViolation("customers.renewals", "must be a whole number >= 0", int(i))
                 for i in np.flatnonzero(bad)[:20]]
    raw = table["active"]
    if raw.dtype == pl.Boolean:
        flags = raw.cast(pl.Float64).to_numpy()
    else:
        flags = raw.cast(pl.Float64, strict=False).to_numpy()
    bad = ~np.isin(flags, (0.0, 1.0))
    problems += [FieldViolation("customers.active", "must be true/false or 1/0", int(i))
                 for i in np.flatnonzero(bad)[:20]]
    payment = table["payment"].cast(pl.Float64, strict=False).to_numpy()
    bad = ~np.isfinite(payment)
    problems += [FieldViolation("customers.payment", "must be a finite number", int(i))
                 for i in np.flatnonzero(bad)[:20]]
    if problems:
        raise InvalidInputError(problems[:20])
    return renewals.astype(np.int64), flags == 1.0, payment


def _groups(table: pl.DataFrame, by: str) -> list[tuple[np.ndarray, str]]:
    """Row indices of each group of ``by`` (in order of first appearance), or all rows."""
    if not by:
        return [(np.arange(table.height), "")]
    if by not in table.columns:
        raise InvalidInputError.single(
            "plan.metric.params.by", f"the customers table has no column {by!r}"
        )
    keys = table[by].cast(pl.String)
    if keys.null_count():
        raise InvalidInputError.single(
            f"customers.{by}", "must not be null (it names the sBG fit)",
            int(np.flatnonzero(keys.is_null().to_numpy())[0]),
        )
    codes = keys.rank("dense").to_numpy().astype(np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = np.split(order, bounds)
    groups.sort(key=lambda rows: int(rows[0]))
    return [(rows, str(keys[int(rows[0])])) for rows in groups]


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(SubscriptionCLV)
