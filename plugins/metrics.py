"""Built-in metrics: customer lifetime value and Return on Customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import polars as pl

from engine.hookspecs import hookimpl
from engine.strategies import Metric
from engine.valuation import Valuation, margin_multiplier, return_on_customer


class CustomerLifetimeValue(Metric):
    """CLV with no extra spend: (margin - service_cost) x margin multiplier (Gupta & Lehmann)."""

    name = "clv"
    summary = "Discounted value of each customer's future net margins at baseline retention."
    requires: ClassVar[tuple[str, ...]] = ("margin", "retention")
    produces: ClassVar[tuple[str, ...]] = ("clv",)

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        net = table["margin"].to_numpy()
        if "service_cost" in table.columns:
            net = net - table["service_cost"].to_numpy()
        clv = net * margin_multiplier(table["retention"].to_numpy(), valuation)
        return pl.Series("clv", clv).to_frame()


class ReturnOnCustomer(Metric):
    """ROC of each unit of a plan: (period cash flow + change in equity) / equity at start."""

    name = "roc"
    summary = "Return on Customer (Peppers & Rogers) of each row of a plan; NaN for prospects."
    requires: ClassVar[tuple[str, ...]] = ("equity_before", "equity_after", "spend")
    produces: ClassVar[tuple[str, ...]] = ("roc",)
    nullable: ClassVar[tuple[str, ...]] = ("roc",)

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        roc = return_on_customer(
            table["equity_before"].to_numpy(),
            table["equity_after"].to_numpy(),
            table["spend"].to_numpy(),
            valuation.discount_rate,
        )
        return pl.DataFrame({"roc": roc})


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    register(CustomerLifetimeValue)
    register(ReturnOnCustomer)
