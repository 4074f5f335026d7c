from engine.api.equity_engine.v1 import plan_pb2 as _plan_pb2
from engine.api.equity_engine.v1 import portfolio_pb2 as _portfolio_pb2
from engine.api.equity_engine.v1 import result_pb2 as _result_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StrategyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_KIND_UNSPECIFIED: _ClassVar[StrategyKind]
    STRATEGY_KIND_METRIC: _ClassVar[StrategyKind]
    STRATEGY_KIND_COST: _ClassVar[StrategyKind]
    STRATEGY_KIND_ALLOCATION: _ClassVar[StrategyKind]
STRATEGY_KIND_UNSPECIFIED: StrategyKind
STRATEGY_KIND_METRIC: StrategyKind
STRATEGY_KIND_COST: StrategyKind
STRATEGY_KIND_ALLOCATION: StrategyKind

class AllocateRequest(_message.Message):
    __slots__ = ("portfolio", "plan", "response_format")
    PORTFOLIO_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    portfolio: _portfolio_pb2.Portfolio
    plan: _plan_pb2.Plan
    response_format: _portfolio_pb2.TableFormat
    def __init__(self, portfolio: _Optional[_Union[_portfolio_pb2.Portfolio, _Mapping]] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., response_format: _Optional[_Union[_portfolio_pb2.TableFormat, str]] = ...) -> None: ...

class AllocateResponse(_message.Message):
    __slots__ = ("summary", "units")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    summary: _result_pb2.PlanSummary
    units: _portfolio_pb2.Table
    def __init__(self, summary: _Optional[_Union[_result_pb2.PlanSummary, _Mapping]] = ..., units: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ...) -> None: ...

class AllocateStreamHeader(_message.Message):
    __slots__ = ("plan", "response_format", "response_batch_rows")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    plan: _plan_pb2.Plan
    response_format: _portfolio_pb2.TableFormat
    response_batch_rows: int
    def __init__(self, plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., response_format: _Optional[_Union[_portfolio_pb2.TableFormat, str]] = ..., response_batch_rows: _Optional[int] = ...) -> None: ...

class AllocateStreamRequest(_message.Message):
    __slots__ = ("header", "batch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    header: AllocateStreamHeader
    batch: _portfolio_pb2.Portfolio
    def __init__(self, header: _Optional[_Union[AllocateStreamHeader, _Mapping]] = ..., batch: _Optional[_Union[_portfolio_pb2.Portfolio, _Mapping]] = ...) -> None: ...

class AllocateStreamResponse(_message.Message):
    __slots__ = ("units", "summary")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    units: _portfolio_pb2.Table
    summary: _result_pb2.PlanSummary
    def __init__(self, units: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., summary: _Optional[_Union[_result_pb2.PlanSummary, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("customers", "plan", "metrics", "response_format")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    customers: _portfolio_pb2.Table
    plan: _plan_pb2.Plan
    metrics: _containers.RepeatedScalarFieldContainer[str]
    response_format: _portfolio_pb2.TableFormat
    def __init__(self, customers: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., metrics: _Optional[_Iterable[str]] = ..., response_format: _Optional[_Union[_portfolio_pb2.TableFormat, str]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _portfolio_pb2.Table
    def __init__(self, scores: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ...) -> None: ...

class FrontierRequest(_message.Message):
    __slots__ = ("portfolio", "plan", "response_format")
    PORTFOLIO_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    portfolio: _portfolio_pb2.Portfolio
    plan: _plan_pb2.Plan
    response_format: _portfolio_pb2.TableFormat
    def __init__(self, portfolio: _Optional[_Union[_portfolio_pb2.Portfolio, _Mapping]] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., response_format: _Optional[_Union[_portfolio_pb2.TableFormat, str]] = ...) -> None: ...

class FrontierResponse(_message.Message):
    __slots__ = ("points", "moves", "summary")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    points: _portfolio_pb2.Table
    moves: _portfolio_pb2.Table
    summary: _struct_pb2.Struct
    def __init__(self, points: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., moves: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FitResponseRequest(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _portfolio_pb2.Table
    def __init__(self, experiments: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ...) -> None: ...

class FitResponseResponse(_message.Message):
    __slots__ = ("curves",)
    CURVES_FIELD_NUMBER: _ClassVar[int]
    curves: _containers.RepeatedCompositeFieldContainer[FittedCurve]
    def __init__(self, curves: _Optional[_Iterable[_Union[FittedCurve, _Mapping]]] = ...) -> None: ...

class FittedCurve(_message.Message):
    __slots__ = ("curve", "standard_errors", "log_likelihood", "aic", "units", "successes", "model_choice", "goodness_of_fit", "fit_by_level")
    class StandardErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CURVE_FIELD_NUMBER: _ClassVar[int]
    STANDARD_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    AIC_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    GOODNESS_OF_FIT_FIELD_NUMBER: _ClassVar[int]
    FIT_BY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    curve: _plan_pb2.ResponseCurve
    standard_errors: _containers.ScalarMap[str, float]
    log_likelihood: float
    aic: float
    units: int
    successes: int
    model_choice: _struct_pb2.Struct
    goodness_of_fit: GoodnessOfFit
    fit_by_level: _containers.RepeatedCompositeFieldContainer[LevelFit]
    def __init__(self, curve: _Optional[_Union[_plan_pb2.ResponseCurve, _Mapping]] = ..., standard_errors: _Optional[_Mapping[str, float]] = ..., log_likelihood: _Optional[float] = ..., aic: _Optional[float] = ..., units: _Optional[int] = ..., successes: _Optional[int] = ..., model_choice: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., goodness_of_fit: _Optional[_Union[GoodnessOfFit, _Mapping]] = ..., fit_by_level: _Optional[_Iterable[_Union[LevelFit, _Mapping]]] = ...) -> None: ...

class GoodnessOfFit(_message.Message):
    __slots__ = ("test", "statistic", "df", "p_value")
    TEST_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    DF_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    test: str
    statistic: float
    df: int
    p_value: float
    def __init__(self, test: _Optional[str] = ..., statistic: _Optional[float] = ..., df: _Optional[int] = ..., p_value: _Optional[float] = ...) -> None: ...

class LevelFit(_message.Message):
    __slots__ = ("spend", "units", "successes", "observed", "predicted", "pearson_residual", "p_value")
    SPEND_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    PEARSON_RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    spend: float
    units: int
    successes: int
    observed: float
    predicted: float
    pearson_residual: float
    p_value: float
    def __init__(self, spend: _Optional[float] = ..., units: _Optional[int] = ..., successes: _Optional[int] = ..., observed: _Optional[float] = ..., predicted: _Optional[float] = ..., pearson_residual: _Optional[float] = ..., p_value: _Optional[float] = ...) -> None: ...

class FitClvRequest(_message.Message):
    __slots__ = ("transactions", "calibration_end", "holdout_end", "models", "time_unit", "prediction_horizon", "interval_draws", "interval_level", "discount_rate", "horizon", "period_length", "margin_ratio", "refunds", "dedupe", "response_format", "value_model")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_END_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_END_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_HORIZON_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_DRAWS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVEL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_RATE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    PERIOD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MARGIN_RATIO_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    VALUE_MODEL_FIELD_NUMBER: _ClassVar[int]
    transactions: _portfolio_pb2.Table
    calibration_end: str
    holdout_end: str
    models: _containers.RepeatedScalarFieldContainer[str]
    time_unit: str
    prediction_horizon: float
    interval_draws: int
    interval_level: float
    discount_rate: float
    horizon: int
    period_length: float
    margin_ratio: float
    refunds: str
    dedupe: bool
    response_format: _portfolio_pb2.TableFormat
    value_model: str
    def __init__(self, transactions: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., calibration_end: _Optional[str] = ..., holdout_end: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., time_unit: _Optional[str] = ..., prediction_horizon: _Optional[float] = ..., interval_draws: _Optional[int] = ..., interval_level: _Optional[float] = ..., discount_rate: _Optional[float] = ..., horizon: _Optional[int] = ..., period_length: _Optional[float] = ..., margin_ratio: _Optional[float] = ..., refunds: _Optional[str] = ..., dedupe: _Optional[bool] = ..., response_format: _Optional[_Union[_portfolio_pb2.TableFormat, str]] = ..., value_model: _Optional[str] = ...) -> None: ...

class FitClvResponse(_message.Message):
    __slots__ = ("fits", "customers", "summary")
    FITS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    fits: _containers.RepeatedCompositeFieldContainer[ClvModelFit]
    customers: _portfolio_pb2.Table
    summary: _struct_pb2.Struct
    def __init__(self, fits: _Optional[_Iterable[_Union[ClvModelFit, _Mapping]]] = ..., customers: _Optional[_Union[_portfolio_pb2.Table, _Mapping]] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ClvModelFit(_message.Message):
    __slots__ = ("model", "parameters", "estimates", "standard_errors", "log_likelihood", "customers", "converged")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    STANDARD_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    model: str
    parameters: _containers.RepeatedScalarFieldContainer[str]
    estimates: _containers.RepeatedScalarFieldContainer[float]
    standard_errors: _containers.RepeatedScalarFieldContainer[float]
    log_likelihood: float
    customers: int
    converged: bool
    def __init__(self, model: _Optional[str] = ..., parameters: _Optional[_Iterable[str]] = ..., estimates: _Optional[_Iterable[float]] = ..., standard_errors: _Optional[_Iterable[float]] = ..., log_likelihood: _Optional[float] = ..., customers: _Optional[int] = ..., converged: _Optional[bool] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StrategyParameter(_message.Message):
    __slots__ = ("name", "type", "doc", "default_value", "choices", "minimum", "maximum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    doc: str
    default_value: _struct_pb2.Value
    choices: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    minimum: float
    maximum: float
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., doc: _Optional[str] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., choices: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., minimum: _Optional[float] = ..., maximum: _Optional[float] = ...) -> None: ...

class Strategy(_message.Message):
    __slots__ = ("kind", "name", "summary", "plugin", "package", "version", "parameters", "capabilities")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    kind: StrategyKind
    name: str
    summary: str
    plugin: str
    package: str
    version: str
    parameters: _containers.RepeatedCompositeFieldContainer[StrategyParameter]
    capabilities: _struct_pb2.Struct
    def __init__(self, kind: _Optional[_Union[StrategyKind, str]] = ..., name: _Optional[str] = ..., summary: _Optional[str] = ..., plugin: _Optional[str] = ..., package: _Optional[str] = ..., version: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[StrategyParameter, _Mapping]]] = ..., capabilities: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PluginFailure(_message.Message):
    __slots__ = ("plugin", "problem")
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    plugin: str
    problem: str
    def __init__(self, plugin: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("strategies", "failures")
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedCompositeFieldContainer[Strategy]
    failures: _containers.RepeatedCompositeFieldContainer[PluginFailure]
    def __init__(self, strategies: _Optional[_Iterable[_Union[Strategy, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[PluginFailure, _Mapping]]] = ...) -> None: ...
