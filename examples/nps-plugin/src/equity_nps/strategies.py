"""The plugin's two strategies: cost ``nps-response`` and metric ``nps``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
from engine.errors import InvalidInputError
from engine.options import OptionSet
from engine.plan import Plan
from engine.portfolio import Portfolio
from engine.strategies import CostModel, Metric, Param
from engine.valuation import Valuation
from equity_plugins.costs import ExponentialResponse, response_options

from equity_nps import nps

_MISSING = Param(
    "error",
    "A customer without an nps_score: 'error' rejects the input, 'passive' counts the "
    "customer as a passive (score 7).",
    str,
    choices=nps.MISSING,
)


def _shift(doc_who: str, default: float) -> Param:
    return Param(
        default,
        f"Added to the baseline retention of {doc_who}, in retention points per period "
        "(0.03 = +3 points; negative lowers it). The retention ceiling, when the customers "
        "table has one, moves by the same amount.",
        minimum=-1.0,
        maximum=1.0,
    )


def _factor(doc_who: str, default: float) -> Param:
    return Param(
        default,
        f"Multiplies the spend response k of {doc_who} (how fast spend lifts retention "
        "toward its ceiling): 1 keeps it, 0 makes spend useless.",
        minimum=0.0,
    )


class NpsResponse(CostModel):
    """Retention and its response to spend shifted by each customer's NPS category."""

    name = "nps-response"
    summary = (
        "exponential-response with each customer's baseline retention, ceiling and spend "
        "response adjusted by NPS category (promoter 9-10, passive 7-8, detractor 0-6) "
        "from the customers column nps_score."
    )
    params: ClassVar = {
        "promoter_retention_shift": _shift("promoters (scores 9-10)", 0.03),
        "passive_retention_shift": _shift("passives (scores 7-8)", 0.0),
        "detractor_retention_shift": _shift("detractors (scores 0-6)", -0.05),
        "promoter_response_factor": _factor("promoters", 1.25),
        "passive_response_factor": _factor("passives", 1.0),
        "detractor_response_factor": _factor("detractors", 0.75),
        "max_retention": Param(
            0.99,
            "Upper limit of shifted retention and ceiling (a customer already above it "
            "keeps its own value); keeps customer value finite.",
            minimum=0.5,
            maximum=0.999,
        ),
        "ceiling_share": ExponentialResponse.params["ceiling_share"],
        "response": ExponentialResponse.params["response"],
        "missing": _MISSING,
    }
    promoter_retention_shift: float
    passive_retention_shift: float
    detractor_retention_shift: float
    promoter_response_factor: float
    passive_response_factor: float
    detractor_response_factor: float
    max_retention: float
    ceiling_share: float
    response: float
    missing: str

    def adjusted(self, customers: pl.DataFrame) -> pl.DataFrame:
        """The customers with retention, retention_ceiling (if given) and retention_response
        adjusted for their NPS category; what the response curves then use."""
        codes = nps.categorize(nps.scores(customers, self.missing))
        shift = np.array([self.detractor_retention_shift, self.passive_retention_shift,
                          self.promoter_retention_shift])[codes]
        factor = np.array([self.detractor_response_factor, self.passive_response_factor,
                           self.promoter_response_factor])[codes]
        r0 = customers["retention"].cast(pl.Float64).to_numpy()
        retention = np.clip(r0 + shift, 0.0, np.maximum(r0, self.max_retention))
        if "retention_response" in customers.columns:
            k = customers["retention_response"].cast(pl.Float64).to_numpy()
        else:
            k = np.full(customers.height, self.response)
        columns = [
            pl.Series("retention", retention),
            pl.Series("retention_response", k * factor),
        ]
        if "retention_ceiling" in customers.columns:
            ceiling = customers["retention_ceiling"].cast(pl.Float64).to_numpy()
            top = np.maximum(ceiling, self.max_retention)
            columns.append(pl.Series("retention_ceiling", np.clip(ceiling + shift, retention, top)))
        return customers.with_columns(columns)

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        if portfolio.customers is None:
            raise InvalidInputError.single(
                "customers", "nps-response needs customers with an nps_score column"
            )
        return response_options(
            self.adjusted(portfolio.customers),
            portfolio.prospects,
            plan,
            self.ceiling_share,
            self.response,
        )


class NetPromoterScore(Metric):
    """Each customer's NPS category and its segment's NPS."""

    name = "nps"
    summary = (
        "Per customer: nps_category (promoter 9-10, passive 7-8, detractor 0-6 from "
        "nps_score) and segment_nps, the NPS (% promoters - % detractors, -100..100) of the "
        "customer's segment; `equity-nps` prints the table per segment."
    )
    requires: ClassVar[tuple[str, ...]] = (nps.SCORE_COLUMN,)
    produces: ClassVar[tuple[str, ...]] = ("nps_category", "segment_nps")
    params: ClassVar = {"missing": _MISSING}
    missing: str

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        codes = nps.categorize(nps.scores(table, self.missing))
        return pl.DataFrame(
            [
                nps.category_names(codes),
                pl.Series("segment_nps", nps.segment_nps_per_row(table, "segment", self.missing)),
            ]
        )
