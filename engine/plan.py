"""The plan: budgets, limits, valuation assumptions and strategy choices of one allocation.

Its schema is the protobuf message ``equity_engine.v1.Plan`` (proto/equity_engine/v1/plan.proto);
the CLI's JSON file is that message in protobuf's JSON mapping, so the CLI and the gRPC
service accept exactly the same plans.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from engine.api.equity_engine.v1 import plan_pb2
from engine.errors import FieldViolation, InvalidInputError
from engine.valuation import Valuation

DEFAULT_RETENTION_LEVELS: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0, 40.0)
DEFAULT_ACQUISITION_LEVELS: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 20.0, 40.0)
MAX_AMOUNT = 1e15  # budgets and levels beyond this are typos and overflow equity sums
KIND_NAMES = {0: None, 1: "retention", 2: "acquisition"}


MAX_UNCERTAINTY_DRAWS = 10_000  # re-valuations of one plan in one request


@dataclass(frozen=True)
class StrategyChoice:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentLimit:
    """Cap and/or minimum on one segment's spend; ``kind`` None covers both kinds."""

    segment: str
    kind: str | None = None
    cap: float | None = None
    minimum: float | None = None


@dataclass(frozen=True)
class ResourceLimit:
    """Most and/or least of one resource (an options column; ``cost`` is spend) the chosen
    levels may use, over every customer or one segment (``segment`` None) and/or one kind."""

    resource: str
    segment: str | None = None
    kind: str | None = None
    max: float | None = None
    min: float | None = None

    @property
    def label(self) -> str:
        """``RESOURCE[:SEGMENT][/KIND]``, as the CLI's ``--limit`` writes it."""
        where = f":{self.segment}" if self.segment is not None else ""
        return f"{self.resource}{where}{'/' + self.kind if self.kind else ''}"


CURVE_MODELS = ("exponential", "hill")


def curve_parameters(kind: str, model: str) -> tuple[str, ...]:
    """The estimated parameters of a response curve, in covariance order."""
    head = ("base", "ceiling", "k") if kind == "retention" else ("ceiling", "k")
    return (*head, "shape") if model == "hill" else head


@dataclass(frozen=True)
class ResponseCurve:
    """How one segment's retention or acquisition responds to spend (docs/response.md).

    ``covariance`` (row-major over ``curve_parameters(kind, model)``) is present when the
    curve was estimated (source ``fitted``), empty when it was written by hand (``file``)."""

    segment: str
    kind: str
    base: float
    ceiling: float
    k: float
    model: str = "exponential"
    shape: float | None = None
    covariance: tuple[float, ...] = ()

    @property
    def source(self) -> str:
        return "fitted" if self.covariance else "file"

    @property
    def parameters(self) -> tuple[str, ...]:
        return curve_parameters(self.kind, self.model)

    def problems(self, path: str) -> list[FieldViolation]:
        out = []
        if self.kind not in ("retention", "acquisition"):
            out.append(FieldViolation(f"{path}.kind", "must be KIND_RETENTION or KIND_ACQUISITION"))
        if self.model not in CURVE_MODELS:
            out.append(FieldViolation(f"{path}.model", f"must be one of {CURVE_MODELS}"))
        if not (0 <= self.base < 1) or (self.kind == "acquisition" and self.base != 0):
            out.append(FieldViolation(
                f"{path}.base", "must be in [0, 1) for retention and 0 for acquisition"))
        if not (self.base <= self.ceiling <= 1):
            out.append(FieldViolation(f"{path}.ceiling", "must be in [base, 1]"))
        if not (math.isfinite(self.k) and self.k > 0):
            out.append(FieldViolation(f"{path}.k", "must be a finite number > 0"))
        if self.model == "hill" and not (self.shape is not None and 0 < self.shape < 1e3):
            out.append(FieldViolation(f"{path}.shape", "a hill curve needs a shape > 0"))
        size = len(self.parameters) if self.model in CURVE_MODELS else 0
        if self.covariance and len(self.covariance) != size * size:
            out.append(FieldViolation(
                f"{path}.covariance", f"needs {size * size} values ({size} parameters squared), "
                f"got {len(self.covariance)}"))
        elif self.covariance and not all(math.isfinite(v) for v in self.covariance):
            out.append(FieldViolation(f"{path}.covariance", "must be finite"))
        return out


@dataclass(frozen=True)
class Plan:
    total_budget: float | None = None
    acquisition_budget: float | None = None
    retention_budget: float | None = None
    segment_limits: tuple[SegmentLimit, ...] = ()
    discount_rate: float = 0.10
    horizon: int | None = None
    margin_growth: float = 0.0
    retention_levels: tuple[float, ...] = DEFAULT_RETENTION_LEVELS
    acquisition_levels: tuple[float, ...] = DEFAULT_ACQUISITION_LEVELS
    metric: StrategyChoice = StrategyChoice("clv")
    cost: StrategyChoice = StrategyChoice("exponential-response")
    allocation: StrategyChoice = StrategyChoice("lp")
    response_curves: tuple[ResponseCurve, ...] = ()
    resource_limits: tuple[ResourceLimit, ...] = ()
    # the solved plan re-valued under this many draws of the estimates (docs/response.md)
    uncertainty_draws: int = 0
    uncertainty_seed: int = 0

    @property
    def valuation(self) -> Valuation:
        return Valuation(self.discount_rate, self.horizon, self.margin_growth)

    def with_overrides(self, **changes: Any) -> Plan:
        plan = replace(self, **changes)
        plan.validate()
        return plan

    def validate(self) -> None:
        """Check every field at once so a caller sees all problems in one answer."""
        problems: list[FieldViolation] = []

        def number(path: str, value: float | None, minimum: float = 0.0) -> None:
            if value is None:
                return
            if not math.isfinite(value):
                problems.append(FieldViolation(path, f"must be finite, got {value}"))
            elif abs(value) > MAX_AMOUNT:
                problems.append(FieldViolation(path, f"must be at most {MAX_AMOUNT:g}"))
            elif value < minimum:
                problems.append(FieldViolation(path, f"must be >= {minimum:g}, got {value:g}"))

        number("plan.budget.total", self.total_budget)
        number("plan.budget.acquisition", self.acquisition_budget)
        number("plan.budget.retention", self.retention_budget)
        for i, lim in enumerate(self.segment_limits):
            base = f"plan.segment_limits[{i}]"
            if not lim.segment:
                problems.append(FieldViolation(f"{base}.segment", "must name a segment"))
            if lim.cap is None and lim.minimum is None:
                problems.append(FieldViolation(base, "needs a cap, a minimum or both"))
            number(f"{base}.cap", lim.cap)
            number(f"{base}.minimum", lim.minimum)
            if lim.cap is not None and lim.minimum is not None and lim.minimum > lim.cap:
                problems.append(
                    FieldViolation(
                        f"{base}.minimum", f"{lim.minimum:g} exceeds the cap {lim.cap:g}"
                    )
                )
        for i, rl in enumerate(self.resource_limits):
            base = f"plan.resource_limits[{i}]"
            if not rl.resource:
                problems.append(FieldViolation(f"{base}.resource", "must name a resource column"))
            if rl.max is None and rl.min is None:
                problems.append(FieldViolation(base, "needs a max, a min or both"))
            number(f"{base}.max", rl.max)
            number(f"{base}.min", rl.min)
            if rl.max is not None and rl.min is not None and rl.min > rl.max:
                problems.append(
                    FieldViolation(f"{base}.min", f"{rl.min:g} exceeds the max {rl.max:g}")
                )
        for name in ("retention_levels", "acquisition_levels"):
            levels = getattr(self, name)
            if not levels:
                problems.append(FieldViolation(f"plan.{name}", "needs at least one level"))
            for j, level in enumerate(levels):
                number(f"plan.{name}[{j}]", level)
        rate_ok = not math.isfinite(self.discount_rate) or 0 <= self.discount_rate <= 1
        if not rate_ok:  # a percent by mistake (10 for 10%)
            problems.append(FieldViolation(
                "plan.discount_rate",
                f"must be a per-period rate between 0 and 1 (10% is 0.10), "
                f"got {self.discount_rate:g}",
            ))
        try:
            # the valuation's own checks (horizon, growth), the rate's reported above
            Valuation(self.discount_rate if rate_ok else 0.10, self.horizon, self.margin_growth)
        except InvalidInputError as exc:
            problems.extend(exc.violations)
        for name in ("metric", "cost", "allocation"):
            if not getattr(self, name).name:
                problems.append(FieldViolation(f"plan.{name}.name", "must name a strategy"))
        seen: set[tuple[str, str]] = set()
        for i, curve in enumerate(self.response_curves):
            problems.extend(curve.problems(f"plan.response_curves[{i}]"))
            if (curve.segment, curve.kind) in seen:
                problems.append(FieldViolation(
                    f"plan.response_curves[{i}]",
                    f"a second {curve.kind} curve for segment {curve.segment!r}"))
            seen.add((curve.segment, curve.kind))
        if not 0 <= self.uncertainty_draws <= MAX_UNCERTAINTY_DRAWS:
            problems.append(FieldViolation(
                "plan.uncertainty_draws", f"must be between 0 and {MAX_UNCERTAINTY_DRAWS:,}"))
        if problems:
            raise InvalidInputError(problems)

    # --- protobuf / JSON -------------------------------------------------------------------

    @classmethod
    def from_proto(cls, msg: plan_pb2.Plan) -> Plan:
        budget = msg.budget
        defaults = cls  # the fields' defaults, as class attributes (no plan built for them)
        unknown = [
            FieldViolation(
                f"plan.segment_limits[{i}].kind",
                f"unknown kind {lim.kind}; use KIND_RETENTION, KIND_ACQUISITION or leave unset",
            )
            for i, lim in enumerate(msg.segment_limits)
            if lim.kind not in KIND_NAMES  # proto3 enums are open: any number parses
        ] + [
            FieldViolation(
                f"plan.resource_limits[{i}].kind",
                f"unknown kind {lim.kind}; use KIND_RETENTION, KIND_ACQUISITION or leave unset",
            )
            for i, lim in enumerate(msg.resource_limits)
            if lim.kind not in KIND_NAMES
        ]
        if unknown:
            raise InvalidInputError(unknown)

        def strategy(spec: plan_pb2.StrategySpec, default: StrategyChoice) -> StrategyChoice:
            params = json_format.MessageToDict(spec.params) if spec.HasField("params") else {}
            return StrategyChoice(spec.name or default.name, params)

        plan = cls(
            total_budget=budget.total if budget.HasField("total") else None,
            acquisition_budget=budget.acquisition if budget.HasField("acquisition") else None,
            retention_budget=budget.retention if budget.HasField("retention") else None,
            segment_limits=tuple(
                SegmentLimit(
                    segment=lim.segment,
                    kind=KIND_NAMES[lim.kind],
                    cap=lim.cap if lim.HasField("cap") else None,
                    minimum=lim.minimum if lim.HasField("minimum") else None,
                )
                for lim in msg.segment_limits
            ),
            discount_rate=msg.discount_rate
            if msg.HasField("discount_rate")
            else defaults.discount_rate,
            horizon=msg.horizon if msg.HasField("horizon") else None,
            margin_growth=msg.margin_growth,
            retention_levels=tuple(msg.retention_levels) or DEFAULT_RETENTION_LEVELS,
            acquisition_levels=tuple(msg.acquisition_levels) or DEFAULT_ACQUISITION_LEVELS,
            metric=strategy(msg.metric, defaults.metric),
            cost=strategy(msg.cost, defaults.cost),
            allocation=strategy(msg.allocation, defaults.allocation),
            response_curves=tuple(
                ResponseCurve(
                    segment=c.segment,
                    kind=KIND_NAMES.get(c.kind) or "unspecified",
                    base=c.base,
                    ceiling=c.ceiling,
                    k=c.k,
                    model=c.model or "exponential",
                    shape=c.shape if c.HasField("shape") else None,
                    covariance=tuple(c.covariance),
                )
                for c in msg.response_curves
            ),
            resource_limits=tuple(
                ResourceLimit(
                    resource=rl.resource,
                    segment=rl.segment or None,
                    kind=KIND_NAMES[rl.kind],
                    max=rl.max if rl.HasField("max") else None,
                    min=rl.min if rl.HasField("min") else None,
                )
                for rl in msg.resource_limits
            ),
            uncertainty_draws=msg.uncertainty_draws,
            uncertainty_seed=msg.uncertainty_seed,
        )
        if msg.HasField("horizon") and msg.horizon == 0:
            raise InvalidInputError.single("plan.horizon", "must be >= 1 (omit for infinite)")
        plan.validate()
        return plan

    def to_proto(self) -> plan_pb2.Plan:
        kinds: dict[str | None, Any] = {v: k for k, v in KIND_NAMES.items()}
        msg = plan_pb2.Plan(
            segment_limits=[
                plan_pb2.SegmentLimit(
                    segment=lim.segment, kind=kinds[lim.kind], cap=lim.cap, minimum=lim.minimum
                )
                for lim in self.segment_limits
            ],
            resource_limits=[
                plan_pb2.ResourceLimit(
                    resource=rl.resource, segment=rl.segment or "", kind=kinds[rl.kind],
                    max=rl.max, min=rl.min,
                )
                for rl in self.resource_limits
            ],
            discount_rate=self.discount_rate,
            horizon=self.horizon,
            margin_growth=self.margin_growth,
            retention_levels=list(self.retention_levels),
            acquisition_levels=list(self.acquisition_levels),
            response_curves=[
                plan_pb2.ResponseCurve(
                    segment=c.segment, kind=kinds.get(c.kind, 0), model=c.model, base=c.base,
                    ceiling=c.ceiling, k=c.k, shape=c.shape,
                    parameters=list(c.parameters) if c.covariance else [],
                    covariance=list(c.covariance),
                )
                for c in self.response_curves
            ],
            uncertainty_draws=self.uncertainty_draws,
            uncertainty_seed=self.uncertainty_seed,
        )
        for name, value in (
            ("total", self.total_budget),
            ("acquisition", self.acquisition_budget),
            ("retention", self.retention_budget),
        ):
            if value is not None:
                setattr(msg.budget, name, value)
        for name in ("metric", "cost", "allocation"):
            choice: StrategyChoice = getattr(self, name)
            spec = getattr(msg, name)
            spec.name = choice.name
            if choice.params:
                spec.params.update(dict(choice.params))
        return msg

    @classmethod
    def from_json(cls, text: str) -> Plan:
        msg = plan_pb2.Plan()
        try:
            json_format.Parse(text, msg)
        except json_format.ParseError as exc:
            raise InvalidInputError.single("plan", f"not a valid Plan JSON: {exc}") from None
        return cls.from_proto(msg)

    @classmethod
    def from_file(cls, path: str | Path) -> Plan:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InvalidInputError.single("plan", f"cannot read {path}: {exc.strerror}") from None
        return cls.from_json(text)

    def to_json(self) -> str:
        return json.dumps(
            json_format.MessageToDict(self.to_proto(), preserving_proto_field_name=True), indent=2
        )
