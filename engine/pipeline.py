"""One allocation end to end: validate, value, build options, allocate, check, report.

Plugin code runs inside ``_guard`` so that an exception or a wrong shape from a strategy
becomes a ``PluginError`` naming its plugin, while the engine's own input errors pass
through unchanged. Every plan returned has been re-checked against every constraint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine import memory
from engine.allocation import Allocation, violations
from engine.assumptions import plan_assumptions
from engine.constraints import Constraint, build_constraints
from engine.errors import (
    CancelledError,
    EquityError,
    FieldViolation,
    InvalidInputError,
    MemoryLimitError,
)
from engine.limits import Limits
from engine.options import LevelsAfter, OptionSet
from engine.plan import Plan
from engine.plugins import Registry, default_registry, plugin_failure
from engine.portfolio import Portfolio
from engine.result import PlanResult, build_result
from engine.strategies import Allocator, CostModel, Metric, Problem, Strategy

RELEASE_OPTIONS = 100_000  # options above which an allocation returns its free heap pages


@contextmanager
def _guard(strategy: Strategy, registry: Registry) -> Iterator[None]:
    try:
        yield
    except EquityError:
        raise
    except MemoryError:  # out of memory is a resource limit (exit 4), not the plugin's fault
        raise MemoryLimitError(f"{strategy.kind} {strategy.name!r}") from None
    except Exception as exc:
        raise plugin_failure(strategy, registry, f"raised {exc!r}") from exc


def apply_metric(
    metric: Metric, table: pl.DataFrame, plan: Plan, registry: Registry, name: str = "customers"
) -> pl.DataFrame:
    """Run a metric on a table and join its columns, checking the metric's contract."""
    missing = [c for c in metric.requires if c not in table.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"{name}.{c}", f"required by metric {metric.name!r}") for c in missing
        )
    with _guard(metric, registry):
        out = metric.compute(table, plan.valuation)
    if not isinstance(out, pl.DataFrame) or out.height != table.height:
        got = out.height if isinstance(out, pl.DataFrame) else type(out).__name__
        raise plugin_failure(metric, registry, f"returned {got} rows for {table.height}")
    if "customer_id" in out.columns and "customer_id" in table.columns:
        _check_same_ids(metric, registry, out["customer_id"], table["customer_id"])
    for column in out.columns:
        values = out[column]
        # A metric may declare columns that can be undefined (ROC of a row without equity).
        exempt = column in metric.nullable or not values.dtype.is_float()
        if not exempt and not np.isfinite(values.to_numpy()).all():
            raise plugin_failure(metric, registry, f"column {column!r} has non-finite values")
    if set(out.columns).isdisjoint(table.columns):  # new columns only: appended as they
        return table.hstack(out)  # are (with_columns is a lazy select, ~20-40 us any size)
    return table.with_columns(out)


@dataclass
class Model:
    """The optimization model of a plan on a portfolio: what every consumer of it needs.

    ``allocate`` solves it; the frontier, scenarios and reports reuse it as built here, so
    there is one place where metric, cost model, limits and constraints come together.
    """

    options: OptionSet
    rows: list[Constraint]
    metric_columns: pl.DataFrame | None
    portfolio: Portfolio
    timings: dict[str, float]
    id_dtype: pl.DataType | None = None  # the input's customer_id type, kept in the plan
    level_dtype: pl.DataType | None = None  # the options table's level type, likewise


def _customers_from_transactions(
    metric: Metric, portfolio: Portfolio, plan: Plan, registry: Registry
) -> tuple[Portfolio, pl.DataFrame]:
    """A transactions metric (e.g. ``bgnbd``) derives margin and retention per customer; a
    customers table given alongside contributes its other columns (segment, cost-to-serve,
    response parameters), joined on ``customer_id``."""
    transactions = portfolio.transactions
    assert transactions is not None
    derived = derive_customers(metric, transactions, plan, registry)
    customers = derived
    if portfolio.customers is not None:
        extra = portfolio.customers.drop(
            [c for c in portfolio.customers.columns if c in derived.columns and c != "customer_id"]
        )
        customers = _join_on_ids(derived, extra)
    metric_columns = derived.drop("margin", "retention")
    return Portfolio(customers, portfolio.prospects, portfolio.options), metric_columns


def derive_customers(
    metric: Metric, transactions: pl.DataFrame, plan: Plan, registry: Registry
) -> pl.DataFrame:
    """A transactions metric's customers table (one row per customer, ``customer_id``,
    ``margin``, ``retention`` and the metric's own columns), its contract checked."""
    if metric.input_table != "transactions":
        raise InvalidInputError.single(
            "plan.metric.name",
            f"metric {metric.name!r} values a customers table, not transactions; "
            "choose a transactions metric such as 'bgnbd'",
        )
    missing = [c for c in metric.requires if c not in transactions.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"transactions.{c}", f"required by metric {metric.name!r}")
            for c in missing
        )
    with _guard(metric, registry):
        derived = metric.compute(transactions, plan.valuation)
    if not isinstance(derived, pl.DataFrame) or not {"customer_id", "margin", "retention"} <= set(
        derived.columns
    ):
        raise plugin_failure(metric, registry, "must return customer_id, margin and retention")
    _check_derived(metric, registry, derived)
    return derived


def _derives_contract(metric: Metric) -> bool:
    """A customers metric producing ``margin`` or ``retention`` derives the columns the
    customers table is validated by, so it runs before validation."""
    return metric.input_table == "customers" and bool({"margin", "retention"} & set(
        metric.produces))


def _customers_from_metric(
    metric: Metric, portfolio: Portfolio, plan: Plan, registry: Registry
) -> tuple[Portfolio, pl.DataFrame]:
    """Run such a metric on the raw customers table (one row in, one row out); its columns
    replace the table's, and the result is then validated as the customers table."""
    customers = portfolio.customers
    assert customers is not None
    if "customer_id" not in customers.columns:
        raise InvalidInputError.single("customers.customer_id", "required column is missing")
    valued = apply_metric(metric, customers, plan, registry)
    derived = valued.select("customer_id", *(c for c in metric.produces
                                             if c not in ("margin", "retention")))
    return Portfolio(valued, portfolio.prospects, portfolio.options), derived


def _checkpoint(should_stop: Callable[[], bool]) -> None:
    """Between stages: a caller that went away stops the work here, not at the end."""
    if should_stop():
        raise CancelledError("allocation cancelled")


def build_model(
    portfolio: Portfolio,
    plan: Plan,
    registry: Registry | None = None,
    limits: Limits | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Model:
    """Validate, run the plan's metric and cost strategies, and build the constraint rows."""
    registry = registry or default_registry()
    limits = limits or Limits()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    memory.configure()  # fresh arrays without huge-page stalls (engine.memory)
    plan.validate()
    metric = registry.create("metric", plan.metric)
    cost = registry.create("cost", plan.cost)
    assert isinstance(metric, Metric) and isinstance(cost, CostModel)
    limits.check_inputs(portfolio, plan)
    level_dtype = None  # validation makes levels Float64; the plan gives them back as given
    if portfolio.options is not None and "level" in portfolio.options.columns:
        level_dtype = portfolio.options.schema["level"]
    mark = time.perf_counter()
    metric_columns = None
    if portfolio.transactions is not None:
        portfolio, metric_columns = _customers_from_transactions(metric, portfolio, plan, registry)
        timings["transactions"] = time.perf_counter() - mark
    derives = _derives_contract(metric) and portfolio.customers is not None
    if derives and portfolio.transactions is None:  # e.g. sbg: margin, retention from tenure
        portfolio, metric_columns = _customers_from_metric(metric, portfolio, plan, registry)
    derived_seconds = time.perf_counter() - mark if derives else 0.0
    portfolio = portfolio.validated()
    timings["validate"] = time.perf_counter() - started - derived_seconds
    _checkpoint(should_stop)

    mark = time.perf_counter() - derived_seconds
    if portfolio.customers is not None and metric.input_table == "customers" and not derives:
        before = set(portfolio.customers.columns) - set(metric.produces)
        valued = apply_metric(metric, portfolio.customers, plan, registry)
        portfolio = Portfolio(valued, portfolio.prospects, portfolio.options)
        added = [c for c in valued.columns if c not in before]
        # the columns as they are, without a lazy select's fixed cost
        metric_columns = pl.DataFrame([valued[c] for c in ("customer_id", *added)]) if (
            added) else None
    timings["metric"] = time.perf_counter() - mark
    _checkpoint(should_stop)

    mark = time.perf_counter()
    with _guard(cost, registry):
        options = cost.build(portfolio, plan)
    if not isinstance(options, OptionSet):
        raise plugin_failure(cost, registry, f"returned {type(options).__name__}, not OptionSet")
    problem = option_set_problem(options)
    if problem is not None:
        raise plugin_failure(cost, registry, problem)
    try:
        options.validate()
    except EquityError as exc:
        if portfolio.options is None:  # inputs were valid, so the cost model produced this
            raise plugin_failure(cost, registry, str(exc)) from None
        raise
    limits.check_options(options)
    rows = build_constraints(plan, options)
    _ = options.hull  # the hull is part of building the model; time it here
    timings["options"] = time.perf_counter() - mark
    _checkpoint(should_stop)
    return Model(
        options, rows, metric_columns, portfolio, timings, _id_dtype(cost, portfolio), level_dtype
    )


def allocate(
    portfolio: Portfolio,
    plan: Plan,
    registry: Registry | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    limits: Limits | None = None,
    model: Model | None = None,
) -> PlanResult:
    """The plan's allocation; ``model``: ``build_model``'s result for these inputs, when the
    caller built it already (it is then not built again)."""
    registry = registry or default_registry()
    limits = limits or Limits()
    started = time.perf_counter()
    allocator = registry.create("allocation", plan.allocation)
    assert isinstance(allocator, Allocator)
    if model is None:
        model = build_model(portfolio, plan, registry, limits, should_stop)
    options, rows, timings = model.options, model.rows, model.timings

    mark = time.perf_counter()
    if any(r.sense < 0 for r in rows) and not allocator.supports_minimums:
        raise InvalidInputError.single(
            "plan.allocation.name",
            f"{allocator.name!r} does not support segment minimums; use 'lp'",
        )
    off_spend = sorted({r.resource for r in rows if r.resource != "cost"})
    if off_spend and not allocator.supports_resources:
        raise InvalidInputError.single(
            "plan.allocation.name",
            f"{allocator.name!r} limits spend only, not {off_spend}; use 'lp'",
        )
    with _guard(allocator, registry):
        problem = Problem(options, rows, plan, should_stop, limits.time_limit(None))
        allocation = allocator.allocate(problem)
    _check_allocation(allocator, registry, options, allocation)
    broken = violations(options, rows, allocation)
    if broken:
        raise plugin_failure(allocator, registry, f"its plan breaks {broken}; refused")
    timings["allocate"] = time.perf_counter() - mark
    _checkpoint(should_stop)
    mark = time.perf_counter()
    result = build_result(
        options,
        allocation,
        rows,
        plan.discount_rate,
        allocator.name,
        allocator.exact,
        timings,
        model.metric_columns,
        model.id_dtype,
        model.level_dtype,
    )
    assumptions, notes = plan_assumptions(
        model.portfolio, plan, registry.create("metric", plan.metric),
        registry.create("cost", plan.cost), portfolio.transactions is not None,
    )
    result.summary.assumptions = assumptions
    result.summary.notes.extend(notes)
    timings["report"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started  # the same dict the summary holds
    if options.cost.size > RELEASE_OPTIONS:  # a small plan's few pages are reused as they
        memory.release()  # are; malloc_trim costs more than that (engine.memory)
    return result


def _check_allocation(
    allocator: Allocator, registry: Registry, options: OptionSet, allocation: object
) -> None:
    if not isinstance(allocation, Allocation):
        raise plugin_failure(allocator, registry, f"returned {type(allocation).__name__}")
    n = options.n_units
    for name in ("lo", "hi", "theta"):
        if np.shape(getattr(allocation, name)) != (n,):
            raise plugin_failure(
                allocator,
                registry,
                f"{name} has shape {np.shape(getattr(allocation, name))}, expected ({n},)",
            )
    start, stop = options.offsets[:-1], options.offsets[1:]  # no option-to-unit array
    for name in ("lo", "hi"):
        idx = getattr(allocation, name)
        if (idx < start).any() or (idx >= stop).any():
            raise plugin_failure(allocator, registry, f"{name} points at another unit's options")
    theta = allocation.theta
    if not np.isfinite(theta).all() or (theta < 0).any() or (theta > 1).any():
        raise plugin_failure(allocator, registry, "theta must be in [0, 1]")
    if (~options.fractional & (theta > 0) & (allocation.lo != allocation.hi)).any():
        raise plugin_failure(allocator, registry, "a customer was given two levels")


def _id_dtype(cost: CostModel, portfolio: Portfolio) -> pl.DataType | None:
    """The type of the ids the units come from: the first table of the cost model's ``uses``
    that the portfolio has (customers, or an options table)."""
    for name in (*cost.uses, "customers", "options"):
        table = getattr(portfolio, name, None) if name in ("customers", "options") else None
        if table is not None and "customer_id" in table.columns:
            dtype: pl.DataType = table.schema["customer_id"]
            return dtype
    return None


def _join_on_ids(derived: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    """A transactions metric's customers, left-joined with the customers table on
    ``customer_id``. Ids of different types are compared as text (``1`` matches ``1``, never
    ``0001``), so no id is changed to fit; the result keeps the transactions' ids."""
    left, right = derived["customer_id"].dtype, customers["customer_id"].dtype
    if left == right:
        return derived.join(customers, on="customer_id", how="left", maintain_order="left")
    key = "__customer_id_text"
    return (
        derived.with_columns(pl.col("customer_id").cast(pl.String).alias(key))
        .join(
            customers.with_columns(pl.col("customer_id").cast(pl.String)).rename(
                {"customer_id": key}
            ),
            on=key,
            how="left",
            maintain_order="left",
        )
        .drop(key)
    )


def _first_repeat(ids: pl.Series) -> tuple[int, object] | None:
    """The number of ids that repeat an earlier one and the first of them, or None."""
    repeated = ~ids.is_first_distinct()
    if not repeated.any():
        return None
    return int(repeated.sum()), ids.filter(repeated)[0]


def _check_same_ids(
    metric: Metric, registry: Registry, out: pl.Series, given: pl.Series
) -> None:
    """A metric that returns ``customer_id`` must return the rows' own ids, in order."""
    if out.dtype == given.dtype and out.equals(given):
        return
    repeat = _first_repeat(out)
    if repeat is not None:
        raise plugin_failure(
            metric, registry, f"returned duplicate customer_id values ({repeat[0]} rows "
            f"repeat an earlier id, first {repeat[1]!r})",
        )
    raise plugin_failure(metric, registry, "returned a customer_id column that differs from "
                         "its input's (ids must come back unchanged, in order)")


def _check_derived(metric: Metric, registry: Registry, derived: pl.DataFrame) -> None:
    """A transactions metric's customers: one row per customer, finite numbers."""
    ids = derived["customer_id"]
    if ids.null_count():
        raise plugin_failure(metric, registry, "returned a null customer_id")
    repeat = _first_repeat(ids)
    if repeat is not None:
        raise plugin_failure(
            metric, registry, f"returned duplicate customer_id values ({repeat[0]} rows "
            f"repeat an earlier id, first {repeat[1]!r})",
        )
    for column in derived.columns:
        values = derived[column]
        if column in ("margin", "retention"):
            if not values.dtype.is_numeric():
                raise plugin_failure(metric, registry, f"column {column!r} is {values.dtype}, "
                                     "not numeric")
            if values.null_count():
                raise plugin_failure(metric, registry, f"column {column!r} has null values")
        exempt = column in metric.nullable or not values.dtype.is_float()
        if not exempt and not bool(values.drop_nulls().is_finite().all()):
            raise plugin_failure(metric, registry, f"column {column!r} has non-finite values")


def option_set_problem(options: OptionSet) -> str | None:
    """What is wrong with the structure of an ``OptionSet`` a cost model returned (shapes,
    dtypes, offsets, codes, sizes, duplicate unit ids), or None. Values (finite, costs >= 0)
    are ``OptionSet.validate``'s."""
    if not isinstance(options.unit_id, pl.Series):
        return f"unit_id is {type(options.unit_id).__name__}, not a polars Series"
    n = options.unit_id.len()
    stored = options.stored_level  # levels kept as the cost's (LevelsAfter): not copied here
    level = stored.tail if isinstance(stored, LevelsAfter) else stored
    arrays = ("kind", "segment", "fractional", "size", "offsets", "level", "cost", "value")
    for name in arrays:
        array = level if name == "level" else getattr(options, name)
        if not isinstance(array, np.ndarray):
            return f"{name} is {type(array).__name__}, not a numpy array"
    for name in ("kind", "segment", "fractional", "size"):
        shape = getattr(options, name).shape
        if shape != (n,):
            return f"{name} has shape {shape}; {n} units (unit_id) need ({n},)"
    offsets = options.offsets
    if offsets.shape != (n + 1,):
        return f"offsets has shape {offsets.shape}; {n} units need ({n + 1},)"
    if offsets.dtype.kind not in _INTEGER:
        return f"offsets has dtype {offsets.dtype}, not an integer type"
    total = options.cost.shape
    if len(total) != 1:
        return f"cost has shape {total}, not one dimension"
    shape = (stored.start + level.size,) if isinstance(stored, LevelsAfter) else level.shape
    if shape != total or level.ndim != 1:
        return f"level has shape {shape}, cost has {total}"
    if options.value.shape != total:
        return f"value has shape {options.value.shape}, cost has {total}"
    if n == 0:
        return "no units"
    if offsets[0] != 0 or offsets[-1] != total[0]:
        return f"offsets run from {offsets[0]} to {offsets[-1]}; need 0 to {total[0]} (options)"
    empty = offsets[1:] <= offsets[:-1]
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        return f"unit {options.unit_id[first]!r} has no options (offsets must increase)"
    for name in ("level", "cost", "value", "size"):
        dtype = level.dtype if name == "level" else getattr(options, name).dtype
        if dtype.kind not in _NUMBER:
            return f"{name} has dtype {dtype}, not numeric"
    kind = options.kind
    if ((kind != 0) & (kind != 1)).any():
        return "kind must be 0 (retention) or 1 (acquisition)"
    segment = options.segment
    if (
        segment.dtype.kind not in _INTEGER
        or (segment.size and (segment.min() < 0 or segment.max() >= len(options.segments)))
    ):
        return f"segment codes must index the {len(options.segments)} segment names"
    size = options.size
    if not size.min() >= 0 or not np.isfinite(size.max()):  # (a NaN fails both) an empty
        # pool (0 prospects) is fine
        return "size must be finite and >= 0"
    if options.unit_id.null_count():
        return "unit_id has nulls"
    mixed = bool((kind != kind[0]).any())
    # kinds in two runs (customers, then pools: as cost models build them): slices, no mask
    runs = mixed and bool((kind[1:] >= kind[:-1]).all())
    first_pool = int(np.searchsorted(kind, 1)) if runs else 0
    for code, label in ((0, "retention"), (1, "acquisition")):
        if not mixed and kind[0] != code:
            continue
        if runs:
            ids = options.unit_id.slice(0, first_pool) if code == 0 else options.unit_id.slice(
                first_pool)
        else:
            ids = options.unit_id.filter(pl.Series(kind == code)) if mixed else options.unit_id
        if _distinct(ids):
            continue
        repeat = _first_repeat(ids)
        assert repeat is not None
        return (f"duplicate unit_id among {label} units ({repeat[0]} repeat an earlier "
                f"unit, first {repeat[1]!r})")
    return None


_INTEGER, _NUMBER = "iu", "iufc"  # numpy dtype kinds: np.integer, np.number


def _distinct(ids: pl.Series) -> bool:
    """Whether no id repeats; linear (no hashing) for ids already sorted, as most are."""
    if ids.len() < 2:
        return True
    if ids.is_sorted():
        return not bool((ids.slice(1) == ids.slice(0, ids.len() - 1)).any())
    return bool(ids.n_unique() == ids.len())
