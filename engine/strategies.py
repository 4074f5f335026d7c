"""Base classes of the three strategy kinds plugins provide: metric, cost, allocation.

Strategies follow scikit-learn's estimator convention: ``__init__`` stores parameters and
does nothing else, every declared parameter has a default and a doc string (what
``equity plugins`` shows), and the work is done on whole columns, never per customer.
Capabilities are class attributes so the engine can check them before running anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import polars as pl

from engine.errors import FieldViolation, InvalidInputError

if TYPE_CHECKING:
    from engine.allocation import Allocation
    from engine.constraints import Constraint
    from engine.options import OptionSet
    from engine.plan import Plan
    from engine.portfolio import Portfolio
    from engine.valuation import Valuation


@dataclass(frozen=True)
class Param:
    """A declared strategy parameter: default, documentation, type and allowed range."""

    default: Any
    doc: str
    type: type = float
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, path: str, value: Any) -> Any:
        if self.type is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        elif self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise InvalidInputError.single(
                path, f"must be of type {self.type.__name__}, got {type(value).__name__}"
            )
        if self.choices is not None and value not in self.choices:
            raise InvalidInputError.single(
                path, f"must be one of {list(self.choices)}, got {value!r}"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                raise InvalidInputError.single(path, "must be finite")
            if self.minimum is not None and value < self.minimum:
                raise InvalidInputError.single(path, f"must be >= {self.minimum:g}, got {value:g}")
            if self.maximum is not None and value > self.maximum:
                raise InvalidInputError.single(path, f"must be <= {self.maximum:g}, got {value:g}")
        return value


class Strategy:
    """Common to all strategies: a registered name, declared parameters, stored as given."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        for key, value in params.items():
            setattr(self, key, value)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], path: str = "params") -> Self:
        """Validate ``params`` against the declaration, fill defaults, construct."""
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            known = ", ".join(sorted(cls.params)) or "none"
            raise InvalidInputError(
                FieldViolation(f"{path}.{k}", f"unknown parameter of {cls.name!r}; known: {known}")
                for k in unknown
            )
        values = {}
        for key, spec in cls.params.items():
            values[key] = (
                spec.check(f"{path}.{key}", params[key])
                if key in params
                else copy.deepcopy(spec.default)  # a mutable default is never shared
            )
        return cls(**values)

    def get_params(self) -> dict[str, Any]:
        return {key: getattr(self, key, spec.default) for key, spec in self.params.items()}


class Metric(Strategy):
    """Values rows of a table (customers, or the units of a plan) in new columns.

    ``compute`` receives the whole table and returns a DataFrame with the same number of
    rows holding only the new columns (named in ``produces``); the engine joins them.
    """

    kind: ClassVar[str] = "metric"
    # "customers": adds columns to the customers table (one row in, one row out).
    # "transactions": turns a transaction log into the customers table (one row per customer).
    input_table: ClassVar[str] = "customers"
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    nullable: ClassVar[tuple[str, ...]] = ()  # produced columns that may hold NaN

    def compute(self, table: pl.DataFrame, valuation: Valuation) -> pl.DataFrame:
        raise NotImplementedError


class CostModel(Strategy):
    """Turns a portfolio and the plan's spend levels into options: cost and value per level."""

    kind: ClassVar[str] = "cost"
    uses: ClassVar[tuple[str, ...]] = ("customers", "prospects")

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        raise NotImplementedError


@dataclass
class Problem:
    """What an allocator receives: options, coupling rows, the plan, a stop signal."""

    options: OptionSet
    rows: list[Constraint]
    plan: Plan
    should_stop: Callable[[], bool] = field(default=lambda: False)
    time_limit: float | None = None  # seconds per solver call the operator allows


class Allocator(Strategy):
    """Chooses a level (or, for pools, a mix of two) for every unit.

    ``exact``: the result carries an LP bound and shadow prices; ``supports_minimums``:
    the allocator honours ``>=`` rows (others raise a clear error when the plan has them);
    ``supports_resources``: it honours limits on resources besides spend (``Constraint.resource``).
    """

    kind: ClassVar[str] = "allocation"
    exact: ClassVar[bool] = False
    supports_minimums: ClassVar[bool] = False
    supports_resources: ClassVar[bool] = False

    def allocate(self, problem: Problem) -> Allocation:
        raise NotImplementedError


BASES: dict[str, type[Strategy]] = {"metric": Metric, "cost": CostModel, "allocation": Allocator}
