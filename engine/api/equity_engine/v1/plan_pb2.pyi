from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    KIND_RETENTION: _ClassVar[Kind]
    KIND_ACQUISITION: _ClassVar[Kind]
KIND_UNSPECIFIED: Kind
KIND_RETENTION: Kind
KIND_ACQUISITION: Kind

class Budget(_message.Message):
    __slots__ = ("total", "acquisition", "retention")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    total: float
    acquisition: float
    retention: float
    def __init__(self, total: _Optional[float] = ..., acquisition: _Optional[float] = ..., retention: _Optional[float] = ...) -> None: ...

class SegmentLimit(_message.Message):
    __slots__ = ("segment", "kind", "cap", "minimum")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAP_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    segment: str
    kind: Kind
    cap: float
    minimum: float
    def __init__(self, segment: _Optional[str] = ..., kind: _Optional[_Union[Kind, str]] = ..., cap: _Optional[float] = ..., minimum: _Optional[float] = ...) -> None: ...

class ResourceLimit(_message.Message):
    __slots__ = ("resource", "segment", "kind", "max", "min")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    resource: str
    segment: str
    kind: Kind
    max: float
    min: float
    def __init__(self, resource: _Optional[str] = ..., segment: _Optional[str] = ..., kind: _Optional[_Union[Kind, str]] = ..., max: _Optional[float] = ..., min: _Optional[float] = ...) -> None: ...

class StrategySpec(_message.Message):
    __slots__ = ("name", "params")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("budget", "segment_limits", "discount_rate", "horizon", "margin_growth", "retention_levels", "acquisition_levels", "metric", "cost", "allocation", "response_curves", "resource_limits", "uncertainty_draws", "uncertainty_seed")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_LIMITS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_RATE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    MARGIN_GROWTH_FIELD_NUMBER: _ClassVar[int]
    RETENTION_LEVELS_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_LEVELS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CURVES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_DRAWS_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_SEED_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    segment_limits: _containers.RepeatedCompositeFieldContainer[SegmentLimit]
    discount_rate: float
    horizon: int
    margin_growth: float
    retention_levels: _containers.RepeatedScalarFieldContainer[float]
    acquisition_levels: _containers.RepeatedScalarFieldContainer[float]
    metric: StrategySpec
    cost: StrategySpec
    allocation: StrategySpec
    response_curves: _containers.RepeatedCompositeFieldContainer[ResponseCurve]
    resource_limits: _containers.RepeatedCompositeFieldContainer[ResourceLimit]
    uncertainty_draws: int
    uncertainty_seed: int
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ..., segment_limits: _Optional[_Iterable[_Union[SegmentLimit, _Mapping]]] = ..., discount_rate: _Optional[float] = ..., horizon: _Optional[int] = ..., margin_growth: _Optional[float] = ..., retention_levels: _Optional[_Iterable[float]] = ..., acquisition_levels: _Optional[_Iterable[float]] = ..., metric: _Optional[_Union[StrategySpec, _Mapping]] = ..., cost: _Optional[_Union[StrategySpec, _Mapping]] = ..., allocation: _Optional[_Union[StrategySpec, _Mapping]] = ..., response_curves: _Optional[_Iterable[_Union[ResponseCurve, _Mapping]]] = ..., resource_limits: _Optional[_Iterable[_Union[ResourceLimit, _Mapping]]] = ..., uncertainty_draws: _Optional[int] = ..., uncertainty_seed: _Optional[int] = ...) -> None: ...

class ResponseCurve(_message.Message):
    __slots__ = ("segment", "kind", "model", "base", "ceiling", "k", "shape", "parameters", "covariance")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    CEILING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    segment: str
    kind: Kind
    model: str
    base: float
    ceiling: float
    k: float
    shape: float
    parameters: _containers.RepeatedScalarFieldContainer[str]
    covariance: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, segment: _Optional[str] = ..., kind: _Optional[_Union[Kind, str]] = ..., model: _Optional[str] = ..., base: _Optional[float] = ..., ceiling: _Optional[float] = ..., k: _Optional[float] = ..., shape: _Optional[float] = ..., parameters: _Optional[_Iterable[str]] = ..., covariance: _Optional[_Iterable[float]] = ...) -> None: ...
