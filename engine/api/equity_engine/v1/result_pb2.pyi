from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConstraintSense(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSTRAINT_SENSE_UNSPECIFIED: _ClassVar[ConstraintSense]
    CONSTRAINT_SENSE_AT_MOST: _ClassVar[ConstraintSense]
    CONSTRAINT_SENSE_AT_LEAST: _ClassVar[ConstraintSense]
CONSTRAINT_SENSE_UNSPECIFIED: ConstraintSense
CONSTRAINT_SENSE_AT_MOST: ConstraintSense
CONSTRAINT_SENSE_AT_LEAST: ConstraintSense

class ConstraintSummary(_message.Message):
    __slots__ = ("name", "sense", "rhs", "shadow_price")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SENSE_FIELD_NUMBER: _ClassVar[int]
    RHS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_PRICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    sense: ConstraintSense
    rhs: float
    shadow_price: float
    def __init__(self, name: _Optional[str] = ..., sense: _Optional[_Union[ConstraintSense, str]] = ..., rhs: _Optional[float] = ..., shadow_price: _Optional[float] = ...) -> None: ...

class SegmentEquity(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: float
    after: float
    def __init__(self, before: _Optional[float] = ..., after: _Optional[float] = ...) -> None: ...

class PlanSummary(_message.Message):
    __slots__ = ("status", "allocator", "method", "solver", "customers", "pools", "equity_before", "equity_after", "equity_gain", "total_spend", "spend_by_kind", "spend_by_segment", "equity_by_segment", "roc", "roc_do_nothing", "lp_objective", "bound", "gap", "constraints", "fractional_pools", "iterations", "notes", "seconds", "assumptions", "equity_gain_interval", "probability_beats_nothing", "uncertainty_draws", "current_gain_interval", "probability_beats_current", "choice_stability", "integer_bound", "partitions", "lp_columns")
    class SpendByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SpendBySegmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EquityBySegmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SegmentEquity
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SegmentEquity, _Mapping]] = ...) -> None: ...
    class SecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EquityGainIntervalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CurrentGainIntervalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ChoiceStabilityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SOLVER_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    EQUITY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EQUITY_AFTER_FIELD_NUMBER: _ClassVar[int]
    EQUITY_GAIN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SPEND_FIELD_NUMBER: _ClassVar[int]
    SPEND_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    SPEND_BY_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    EQUITY_BY_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    ROC_FIELD_NUMBER: _ClassVar[int]
    ROC_DO_NOTHING_FIELD_NUMBER: _ClassVar[int]
    LP_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    FRACTIONAL_POOLS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ASSUMPTIONS_FIELD_NUMBER: _ClassVar[int]
    EQUITY_GAIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_BEATS_NOTHING_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_DRAWS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_GAIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_BEATS_CURRENT_FIELD_NUMBER: _ClassVar[int]
    CHOICE_STABILITY_FIELD_NUMBER: _ClassVar[int]
    INTEGER_BOUND_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    LP_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    status: str
    allocator: str
    method: str
    solver: str
    customers: int
    pools: int
    equity_before: float
    equity_after: float
    equity_gain: float
    total_spend: float
    spend_by_kind: _containers.ScalarMap[str, float]
    spend_by_segment: _containers.ScalarMap[str, float]
    equity_by_segment: _containers.MessageMap[str, SegmentEquity]
    roc: float
    roc_do_nothing: float
    lp_objective: float
    bound: float
    gap: float
    constraints: _containers.RepeatedCompositeFieldContainer[ConstraintSummary]
    fractional_pools: int
    iterations: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    seconds: _containers.ScalarMap[str, float]
    assumptions: PlanAssumptions
    equity_gain_interval: _containers.ScalarMap[str, float]
    probability_beats_nothing: float
    uncertainty_draws: int
    current_gain_interval: _containers.ScalarMap[str, float]
    probability_beats_current: float
    choice_stability: _containers.ScalarMap[str, float]
    integer_bound: float
    partitions: int
    lp_columns: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, status: _Optional[str] = ..., allocator: _Optional[str] = ..., method: _Optional[str] = ..., solver: _Optional[str] = ..., customers: _Optional[int] = ..., pools: _Optional[int] = ..., equity_before: _Optional[float] = ..., equity_after: _Optional[float] = ..., equity_gain: _Optional[float] = ..., total_spend: _Optional[float] = ..., spend_by_kind: _Optional[_Mapping[str, float]] = ..., spend_by_segment: _Optional[_Mapping[str, float]] = ..., equity_by_segment: _Optional[_Mapping[str, SegmentEquity]] = ..., roc: _Optional[float] = ..., roc_do_nothing: _Optional[float] = ..., lp_objective: _Optional[float] = ..., bound: _Optional[float] = ..., gap: _Optional[float] = ..., constraints: _Optional[_Iterable[_Union[ConstraintSummary, _Mapping]]] = ..., fractional_pools: _Optional[int] = ..., iterations: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., seconds: _Optional[_Mapping[str, float]] = ..., assumptions: _Optional[_Union[PlanAssumptions, _Mapping]] = ..., equity_gain_interval: _Optional[_Mapping[str, float]] = ..., probability_beats_nothing: _Optional[float] = ..., uncertainty_draws: _Optional[int] = ..., current_gain_interval: _Optional[_Mapping[str, float]] = ..., probability_beats_current: _Optional[float] = ..., choice_stability: _Optional[_Mapping[str, float]] = ..., integer_bound: _Optional[float] = ..., partitions: _Optional[int] = ..., lp_columns: _Optional[_Iterable[int]] = ...) -> None: ...

class PlanAssumptions(_message.Message):
    __slots__ = ("valuation", "responses")
    VALUATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    valuation: ValuationBasis
    responses: _containers.RepeatedCompositeFieldContainer[ResponseSource]
    def __init__(self, valuation: _Optional[_Union[ValuationBasis, _Mapping]] = ..., responses: _Optional[_Iterable[_Union[ResponseSource, _Mapping]]] = ...) -> None: ...

class ValuationBasis(_message.Message):
    __slots__ = ("period_days", "period", "discount_rate_per_period", "horizon_periods", "margin_growth_per_period")
    PERIOD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_RATE_PER_PERIOD_FIELD_NUMBER: _ClassVar[int]
    HORIZON_PERIODS_FIELD_NUMBER: _ClassVar[int]
    MARGIN_GROWTH_PER_PERIOD_FIELD_NUMBER: _ClassVar[int]
    period_days: float
    period: str
    discount_rate_per_period: float
    horizon_periods: int
    margin_growth_per_period: float
    def __init__(self, period_days: _Optional[float] = ..., period: _Optional[str] = ..., discount_rate_per_period: _Optional[float] = ..., horizon_periods: _Optional[int] = ..., margin_growth_per_period: _Optional[float] = ...) -> None: ...

class ResponseSource(_message.Message):
    __slots__ = ("segment", "kind", "source", "model", "defaults")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    segment: str
    kind: str
    source: str
    model: str
    defaults: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, segment: _Optional[str] = ..., kind: _Optional[str] = ..., source: _Optional[str] = ..., model: _Optional[str] = ..., defaults: _Optional[_Iterable[str]] = ...) -> None: ...
