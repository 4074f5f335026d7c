"""Conformance kit for strategy plugins: call these functions from your own tests.

Each ``check_*`` function runs one strategy class against the contract the engine relies on
and raises ``AssertionError`` with a message naming the class and the broken rule, so it
works with pytest, unittest or a bare ``assert``-free script alike::

    from engine.testing import check_cost_model, check_metric, sample_portfolio

    def test_my_cost_model():
        portfolio, plan = sample_portfolio()
        check_cost_model(MyCostModel, portfolio, plan)

What is checked, for every kind (``check_params``):

- the class subclasses the right base, has a ``name`` (letters, digits, ``.``, ``_``, ``-``),
  a ``summary`` and documented ``Param`` declarations whose defaults pass their own checks;
- ``from_params({})`` fills every default, ``from_params`` rejects unknown parameters with
  ``InvalidInputError``, ``__init__`` stores every declared parameter on the instance and
  nothing else (scikit-learn's convention: no work, no hidden state in ``__init__``).

Then, by kind, on the inputs you pass (``check_metric``, ``check_cost_model``,
``check_allocator``): outputs have the right type, length and dtypes and are finite; the
strategy is vectorized over customers (each of a few single rows gives what it gets inside
the whole table, shuffled rows give shuffled results, and a table tiled to 100,000 rows is
handled in one call with the same per-row results); the same input gives the same output
from a fresh instance; the inputs are not modified. ``check_plugin`` and
``check_entry_point`` check that a plugin registers its strategies without failures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from importlib import metadata
from typing import Any, NoReturn

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.allocation import Allocation, violations
from engine.constraints import Constraint, build_constraints
from engine.errors import EquityError, InvalidInputError
from engine.options import KINDS, OptionSet
from engine.plan import Plan, SegmentLimit, StrategyChoice
from engine.plugins import ENTRY_POINT_GROUP, Registry, build_registry, default_registry
from engine.portfolio import Portfolio
from engine.strategies import BASES, Allocator, CostModel, Metric, Param, Problem, Strategy
from engine.valuation import Valuation

__all__ = [
    "COPY_SEPARATOR",
    "N_LARGE",
    "check_allocator",
    "check_cost_model",
    "check_entry_point",
    "check_metric",
    "check_params",
    "check_plugin",
    "make_problem",
    "sample_portfolio",
    "sample_problem",
    "tile_options",
    "tile_table",
]

N_LARGE = 100_000
"""Rows (customers, or units for allocators) of the large input every check runs once."""
COPY_SEPARATOR = "~copy"
"""Tiled copies of a row get ids ``<id>~copy<k>``."""
RTOL = 1e-9
"""Relative tolerance when comparing a row computed alone with the same row in a batch."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COPY_SUFFIX = re.escape(COPY_SEPARATOR) + r"\d+$"


def _label(cls: Any) -> str:
    kind = getattr(cls, "kind", "?")
    name = getattr(cls, "name", "?")
    return f"{getattr(cls, '__name__', repr(cls))} ({kind} {name!r})"


def _fail(cls: Any, message: str) -> NoReturn:
    raise AssertionError(f"{_label(cls)}: {message}")


# --- parameters ------------------------------------------------------------------------------


def _alternative(spec: Param) -> Any:
    """A valid non-default value of a parameter, or None when there is no obvious one."""
    if spec.choices is not None:
        return next((c for c in spec.choices if c != spec.default), None)
    if spec.type is bool:
        return not spec.default
    if spec.type in (int, float) and isinstance(spec.default, int | float):
        for candidate in (spec.default + 1, spec.default - 1):
            if (spec.minimum is None or candidate >= spec.minimum) and (
                spec.maximum is None or candidate <= spec.maximum
            ):
                return spec.type(candidate)
        if spec.minimum is not None and spec.maximum is not None:
            middle = spec.type((spec.minimum + spec.maximum) / 2)
            return middle if middle != spec.default else None
    return None


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (3 is not 3.0: parameters are stored as validated)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def check_params(cls: type[Strategy], params: Mapping[str, Any] | None = None) -> Strategy:
    """Check the declaration and parameter handling of a strategy class; return an instance
    built from ``params`` (default: all defaults).

    ``params`` are non-default values you want checked too; they must pass validation.
    """
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise AssertionError(f"{cls!r} is not a subclass of engine.strategies.Strategy")
    base = BASES.get(cls.kind)
    if base is None or not issubclass(cls, base):
        _fail(cls, f"must subclass one of {', '.join(b.__name__ for b in BASES.values())} "
                   f"and keep its kind (got kind {cls.kind!r})")
    if not isinstance(cls.name, str) or not _NAME.fullmatch(cls.name):
        _fail(cls, "name must be a non-empty string of letters, digits, '.', '_' or '-' "
                   "(it is what plans and `equity plugins` use)")
    if not isinstance(cls.summary, str) or not cls.summary.strip():
        _fail(cls, "summary must be a one-line description (`equity plugins` shows it)")
    if not isinstance(cls.params, Mapping):
        _fail(cls, "params must be a mapping of parameter names to engine.strategies.Param")
    defaults: dict[str, Any] = {}
    for key, spec in cls.params.items():
        if not isinstance(key, str) or not key.isidentifier():
            _fail(cls, f"parameter name {key!r} must be a Python identifier")
        if not isinstance(spec, Param):
            _fail(cls, f"params[{key!r}] must be an engine.strategies.Param, got {spec!r}")
        if not isinstance(spec.doc, str) or not spec.doc.strip():
            _fail(cls, f"parameter {key!r} needs a doc string (`equity plugins` shows it)")
        try:
            checked = spec.check(f"params.{key}", spec.default)
        except InvalidInputError as exc:
            _fail(cls, f"default of parameter {key!r} fails its own declaration: {exc}")
        if not _same_value(checked, spec.default):
            _fail(cls, f"default of parameter {key!r} is {spec.default!r}, which validates "
                       f"as {checked!r}; declare it as {checked!r}")
        defaults[key] = spec.default

    instance = _construct(cls, {})
    _check_stored(cls, instance, defaults, "from_params({})")
    _check_stored(cls, _instantiate(cls, defaults), defaults, "__init__ with every default")

    try:
        cls.from_params({"__not_a_parameter__": 1})
    except InvalidInputError as exc:
        if not any("__not_a_parameter__" in v.field for v in exc.violations):
            _fail(cls, f"from_params rejected an unknown parameter without naming it: {exc}")
    except Exception as exc:
        _fail(cls, f"from_params must raise InvalidInputError for an unknown parameter, "
                   f"raised {exc!r}")
    else:
        _fail(cls, "from_params accepted an unknown parameter '__not_a_parameter__'")

    for key, spec in cls.params.items():
        alternative = _alternative(spec)
        if alternative is not None:
            expected = defaults | {key: alternative}
            _check_stored(cls, _construct(cls, {key: alternative}), expected,
                          f"from_params({{{key!r}: {alternative!r}}})")

    if params:
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            raise AssertionError(f"check_params: {unknown} are not parameters of {_label(cls)}")
        instance = _construct(cls, params)
        expected = defaults | {
            k: cls.params[k].check(f"params.{k}", v) for k, v in params.items()
        }
        _check_stored(cls, instance, expected, f"from_params({dict(params)!r})")
    return instance


def _construct(cls: type[Strategy], params: Mapping[str, Any]) -> Strategy:
    try:
        instance = cls.from_params(params)
    except Exception as exc:
        _fail(cls, f"from_params({dict(params)!r}) raised {exc!r}")
    if not isinstance(instance, cls):
        _fail(cls, f"from_params returned {type(instance).__name__}, not {cls.__name__}")
    return instance


def _instantiate(cls: type[Strategy], values: Mapping[str, Any]) -> Strategy:
    try:
        return cls(**values)
    except Exception as exc:
        _fail(cls, f"__init__ must accept every declared parameter as a keyword, "
                   f"raised {exc!r}")


def _check_stored(
    cls: type[Strategy], instance: Strategy, expected: Mapping[str, Any], how: str
) -> None:
    stored = vars(instance)
    for key, value in expected.items():
        if key not in stored:
            _fail(cls, f"after {how}, parameter {key!r} is not stored on the instance; "
                       f"__init__ must set self.{key}")
        if not _same_value(stored[key], value):
            _fail(cls, f"after {how}, self.{key} is {stored[key]!r}, expected {value!r}; "
                       "__init__ must store parameters unchanged")
    extra = sorted(set(stored) - set(cls.params))
    if extra:
        _fail(cls, f"after {how}, the instance has undeclared attributes {extra}; __init__ "
                   "stores declared parameters only (declare them as Param, or compute "
                   "them inside compute/build/allocate)")
    if instance.get_params() != dict(expected):
        _fail(cls, f"get_params() after {how} is {instance.get_params()!r}, expected "
                   f"{dict(expected)!r}")


# --- comparing tables ------------------------------------------------------------------------


def _plain_dtype(dtype: pl.DataType) -> bool:
    return (
        dtype.is_numeric()
        or dtype.is_temporal()
        or dtype in (pl.Boolean, pl.String, pl.Categorical)
        or isinstance(dtype, pl.Enum)
    )


def _compare_columns(
    cls: Any, got: pl.DataFrame, want: pl.DataFrame, columns: Iterable[str], what: str,
    key: str | None = None,
) -> None:
    """Column by column, floats within RTOL (NaN equal to NaN), others exactly."""
    for column in columns:
        g, w = got[column], want[column]
        if g.dtype.is_numeric() and w.dtype.is_numeric():
            a = g.cast(pl.Float64).to_numpy()
            b = w.cast(pl.Float64).to_numpy()
            scale = np.maximum(np.abs(a), np.abs(b))
            close = np.isclose(a, b, rtol=RTOL, atol=RTOL * 1e-3) | (
                np.isnan(a) & np.isnan(b)
            )
            close |= (a == b) | (np.abs(a - b) <= RTOL * scale)  # equal infinities
            bad = np.flatnonzero(~close)
        else:
            bad = np.flatnonzero(
                g.cast(pl.String).ne_missing(w.cast(pl.String)).to_numpy()
            )
        if bad.size:
            i = int(bad[0])
            where = f"{key} {got[key][i]!r}" if key else f"row {i}"
            _fail(cls, f"{what}: column {column!r} differs at {where} ({bad.size} rows): "
                       f"{g[i]!r} vs {w[i]!r}")


def _frame_equal(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.columns == b.columns and a.height == b.height and a.equals(b)


def tile_table(
    table: pl.DataFrame, copies: int, id_column: str = "customer_id"
) -> pl.DataFrame:
    """``copies`` copies of ``table`` one after the other; ids become ``<id>~copy<k>``."""
    h = table.height
    index = pl.Series(np.tile(np.arange(h, dtype=np.int64), copies))
    tiled = table.select(pl.all().gather(index))
    if id_column in table.columns:
        copy = pl.Series(np.repeat(np.arange(copies, dtype=np.int64), h)).cast(pl.String)
        tiled = tiled.with_columns(
            (pl.col(id_column).cast(pl.String) + COPY_SEPARATOR + copy).alias(id_column)
        )
    return tiled


def _copies(n_large: int, n: int) -> int:
    return max(1, -(-n_large // max(n, 1)))


def _picks(height: int, rows: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, height - 1, num=min(rows, height))})


def _permutation(height: int) -> NDArray[np.int64]:
    perm = np.random.default_rng(20240611).permutation(height).astype(np.int64)
    if height > 1 and (perm == np.arange(height)).all():
        perm = np.roll(perm, 1)
    return perm


# --- metrics ---------------------------------------------------------------------------------


def check_metric(
    cls: type[Metric],
    table: pl.DataFrame,
    *,
    valuation: Valuation | None = None,
    params: Mapping[str, Any] | None = None,
    allow_nan: Collection[str] = (),
    aggregate: Collection[str] = (),
    rows: int = 3,
    n_large: int = N_LARGE,
) -> pl.DataFrame:
    """Check a metric on ``table`` (a customers table, or the units of a plan); return its
    output.

    ``allow_nan``: produced columns where NaN is a documented value (e.g. ``roc`` of
    prospects). ``aggregate``: produced columns that depend on other rows too (e.g. a
    segment's NPS repeated on each of its rows); they are checked for shape, finiteness,
    determinism and row order, but not against single rows or tiled copies.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, Metric):
        _fail(cls, "check_metric expects a Metric subclass")
    assert isinstance(instance, Metric)
    for attr in ("requires", "produces"):
        value = getattr(cls, attr)
        if not isinstance(value, tuple) or not all(isinstance(c, str) for c in value):
            _fail(cls, f"{attr} must be a tuple of column names")
    if not cls.produces:
        _fail(cls, "produces must name at least one column")
    if table.height == 0:
        raise AssertionError("check_metric needs a table with at least one row")
    missing = [c for c in cls.requires if c not in table.columns]
    if missing:
        raise AssertionError(
            f"check_metric: the test table lacks {missing}, required by {_label(cls)}"
        )
    unknown = sorted((set(allow_nan) | set(aggregate)) - set(cls.produces))
    if unknown:
        raise AssertionError(f"check_metric: {unknown} are not produced by {_label(cls)}")
    valuation = valuation or Valuation()
    rowwise = [c for c in cls.produces if c not in aggregate]

    def run(t: pl.DataFrame, what: str) -> pl.DataFrame:
        fresh = cls.from_params(params or {})
        try:
            out = fresh.compute(t, valuation)
        except Exception as exc:
            raise AssertionError(f"{_label(cls)}: compute on {what} raised {exc!r}") from exc
        _check_metric_output(cls, out, t.height, allow_nan, what)
        return out

    before = table.clone()
    out = run(table, f"the table ({table.height} rows)")
    if not _frame_equal(table, before):
        _fail(cls, "compute modified its input table")
    again = run(table, "the same table again")
    if not _frame_equal(out, again):
        _fail(cls, "not deterministic: two runs on the same table differ")

    perm = _permutation(table.height)
    shuffled = run(table[perm], "the rows shuffled")
    _compare_columns(cls, shuffled, out[perm], cls.produces,
                     "rows shuffled must give the same per-row results, shuffled")

    for i in _picks(table.height, rows):
        one = run(table.slice(i, 1), f"row {i} alone")
        _compare_columns(cls, one, out.slice(i, 1), rowwise,
                         f"row {i} alone must give what it gets in the whole table "
                         "(vectorized over rows; list other columns in aggregate=)")

    copies = _copies(n_large, table.height)
    large = run(tile_table(table, copies), f"{copies} copies of the table "
                                           f"({copies * table.height} rows)")
    _compare_columns(cls, large.select(rowwise), tile_table(out.select(rowwise), copies),
                     rowwise, f"{copies} copies of the table must give copies of the results")
    return out


def _check_metric_output(
    cls: type[Metric], out: object, height: int, allow_nan: Collection[str], what: str
) -> None:
    if not isinstance(out, pl.DataFrame):
        _fail(cls, f"compute on {what} returned {type(out).__name__}, not a polars DataFrame")
    if out.height != height:
        _fail(cls, f"compute on {what} returned {out.height} rows for {height}")
    missing = [c for c in cls.produces if c not in out.columns]
    extra = [c for c in out.columns if c not in cls.produces]
    if missing or extra:
        _fail(cls, f"compute on {what} must return exactly the columns in produces "
                   f"{list(cls.produces)}; missing {missing}, extra {extra}")
    for column in out.columns:
        dtype = out[column].dtype
        if not _plain_dtype(dtype):
            _fail(cls, f"column {column!r} has dtype {dtype}; use a number, boolean, "
                       "string, categorical or date column")
        if dtype.is_float():
            values = out[column].to_numpy()
            bad = ~np.isfinite(values)
            if column in allow_nan:
                bad &= ~np.isnan(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                _fail(cls, f"compute on {what}: column {column!r} has {int(bad.sum())} "
                           f"non-finite values, first at row {i}: {values[i]}")
        if out[column].null_count() and column not in allow_nan:
            _fail(cls, f"compute on {what}: column {column!r} has nulls")


# --- cost models -----------------------------------------------------------------------------


def options_frame(options: OptionSet) -> pl.DataFrame:
    """One row per option (kind, unit_id, rank by cost, ...), independent of storage order."""
    counts = np.diff(options.offsets)
    unit = options.unit_of_option
    frame = pl.DataFrame(
        {
            "kind": pl.Series(np.array(KINDS, dtype=object)[options.kind[unit]], dtype=pl.String),
            "unit_id": options.unit_id.cast(pl.String).gather(pl.Series(unit)),
            "segment": pl.Series(
                np.array(options.segments, dtype=object)[options.segment[unit]], dtype=pl.String
            ),
            "fractional": options.fractional[unit],
            "size": options.size[unit],
            "n": counts[unit],
            "level": options.level,
            "cost": options.cost,
            "value": options.value,
        }
    )
    frame = frame.sort(["kind", "unit_id", "cost", "level", "value"], maintain_order=True)
    return frame.with_columns(pl.int_range(pl.len()).over(["kind", "unit_id"]).alias("rank"))


_OPTION_COLUMNS = ("n", "segment", "fractional", "size", "level", "cost", "value")


def _check_option_set(cls: Any, options: object, what: str) -> OptionSet:
    def bad(message: str) -> NoReturn:
        _fail(cls, f"on {what}: {message}")

    if not isinstance(options, OptionSet):
        bad(f"returned {type(options).__name__}, not engine.options.OptionSet")
    n = options.n_units
    if n < 1:
        bad("returned no units")
    offsets = np.asarray(options.offsets)
    if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or offsets[0] != 0:
        bad("offsets must be a 1-D integer array starting at 0")
    if (np.diff(offsets) < 1).any():
        bad("every unit needs at least one option (offsets must increase)")
    total = int(offsets[-1])
    for name in ("level", "cost", "value"):
        array = getattr(options, name)
        if not isinstance(array, np.ndarray) or array.dtype != np.float64 or array.shape != (
            total,
        ):
            bad(f"{name} must be a float64 array of shape ({total},) (one entry per option), "
                f"got {getattr(array, 'dtype', type(array))} {np.shape(array)}")
    for name, kind in (("kind", "integer"), ("segment", "integer"), ("fractional", "bool"),
                       ("size", "float64")):
        array = getattr(options, name)
        dtype = getattr(array, "dtype", None)
        ok = dtype is not None and (
            np.issubdtype(dtype, np.integer) if kind == "integer" else dtype == np.dtype(kind)
        )
        if not ok or np.shape(array) != (n,):
            bad(f"{name} must be a {kind} array of shape ({n},) (one entry per unit), got "
                f"{dtype} {np.shape(array)}")
    if not isinstance(options.unit_id, pl.Series) or options.unit_id.len() != n:
        bad(f"unit_id must be a polars Series of {n} ids")
    if options.unit_id.null_count():
        bad("unit_id has nulls")
    if not set(np.unique(options.kind).tolist()) <= {0, 1}:
        bad("kind must be 0 (retention) or 1 (acquisition)")
    if (options.segment < 0).any() or (options.segment >= len(options.segments)).any():
        bad("segment codes must index options.segments")
    if not np.isfinite(options.size).all() or (options.size <= 0).any():
        bad("size must be finite and > 0")
    try:
        options.validate()
    except InvalidInputError as exc:
        bad(f"options are invalid: {exc}")
    keys = pl.DataFrame({"kind": options.kind, "id": options.unit_id.cast(pl.String)})
    if keys.is_duplicated().any():
        i = int(np.flatnonzero(keys.is_duplicated().to_numpy())[0])
        bad(f"unit id {keys['id'][i]!r} appears more than once")
    return options


def _source_table(
    cls: type[CostModel], portfolio: Portfolio, unit_table: str | None
) -> tuple[str, pl.DataFrame] | None:
    """The table whose rows (customers) or id groups (options) become units."""
    names = [unit_table] if unit_table else [u for u in cls.uses if u in ("customers", "options")]
    for name in names:
        table = getattr(portfolio, name, None)
        if table is not None:
            return name, table
    return None


def _with_table(portfolio: Portfolio, name: str, table: pl.DataFrame) -> Portfolio:
    parts = {"customers": portfolio.customers, "prospects": portfolio.prospects,
             "options": portfolio.options} | {name: table}
    return Portfolio(**parts)


def check_cost_model(
    cls: type[CostModel],
    portfolio: Portfolio,
    plan: Plan,
    *,
    params: Mapping[str, Any] | None = None,
    unit_table: str | None = None,
    rows: int = 3,
    n_large: int = N_LARGE,
) -> OptionSet:
    """Check a cost model on a portfolio and plan; return the options it builds.

    The portfolio is validated first, as the engine does. Row-wise checks take single
    rows of, and tile, the first of ``cls.uses`` the portfolio has among ``customers`` and
    ``options`` (or ``unit_table``): a customer's options may depend only on its own row,
    the plan, the parameters and the other tables.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, CostModel):
        _fail(cls, "check_cost_model expects a CostModel subclass")
    assert isinstance(instance, CostModel)
    if not isinstance(cls.uses, tuple) or not set(cls.uses) <= {"customers", "prospects",
                                                                  "options"}:
        _fail(cls, "uses must be a tuple of 'customers', 'prospects', 'options'")
    portfolio = portfolio.validated()

    def run(p: Portfolio, what: str) -> tuple[OptionSet, pl.DataFrame]:
        fresh = cls.from_params(params or {})
        try:
            options = fresh.build(p, plan)
        except Exception as exc:
            raise AssertionError(f"{_label(cls)}: build on {what} raised {exc!r}") from exc
        return _check_option_set(cls, options, what), options_frame(options)

    tables = {n: getattr(portfolio, n) for n in ("customers", "prospects", "options")}
    before = {n: t.clone() for n, t in tables.items() if t is not None}
    options, full = run(portfolio, "the portfolio")
    for name, table in before.items():
        if not _frame_equal(getattr(portfolio, name), table):
            _fail(cls, f"build modified the portfolio's {name} table")
    _, again = run(portfolio, "the same portfolio again")
    if not _frame_equal(full, again):
        _fail(cls, "not deterministic: two builds of the same portfolio differ")

    source = _source_table(cls, portfolio, unit_table)
    if source is None:
        return options
    name, table = source
    ids = table["customer_id"].cast(pl.String)
    unique_ids = ids.unique(maintain_order=True)
    for i in _picks(unique_ids.len(), rows):
        one_id = unique_ids[i]
        subset = table.filter(ids == one_id)
        _, small = run(_with_table(portfolio, name, subset), f"{name} {one_id!r} alone")
        _compare_units(cls, small, full, f"{name} {one_id!r} alone must give the options "
                                         "it gets in the whole portfolio")

    copies = _copies(n_large, unique_ids.len())
    tiled = _with_table(portfolio, name, tile_table(table, copies))
    _, large = run(tiled, f"{copies} copies of {name} ({copies * table.height} rows)")
    _compare_units(cls, large, full, f"{copies} copies of {name} must give copies of the "
                                     "same options", strip_copies=True)
    from_source = int(full.filter(pl.col("rank") == 0)["unit_id"].is_in(
        unique_ids.implode()).sum())
    units = int((large["rank"] == 0).sum())
    expected = int((full["rank"] == 0).sum()) + (copies - 1) * from_source
    if units != expected:
        _fail(cls, f"{copies} copies of {name} gave {units} units, expected {expected}")
    return options


def _compare_units(
    cls: Any, got: pl.DataFrame, want: pl.DataFrame, what: str, strip_copies: bool = False
) -> None:
    if strip_copies:
        got = got.with_columns(pl.col("unit_id").str.replace(_COPY_SUFFIX, ""))
    joined = got.join(want, on=["kind", "unit_id", "rank"], how="left", suffix="_want",
                      maintain_order="left")
    unmatched = joined["n_want"].is_null()
    if unmatched.any():
        i = int(np.flatnonzero(unmatched.to_numpy())[0])
        _fail(cls, f"{what}: {joined['kind'][i]} unit {joined['unit_id'][i]!r} (option "
                   f"{joined['rank'][i]}) has no counterpart in the whole portfolio's options")
    wanted = joined.select([pl.col(f"{c}_want").alias(c) for c in _OPTION_COLUMNS]
                           + [pl.col("unit_id")])
    _compare_columns(cls, joined, wanted, _OPTION_COLUMNS, what, key="unit_id")


# --- allocators ------------------------------------------------------------------------------


def tile_options(options: OptionSet, copies: int) -> OptionSet:
    """``copies`` copies of every unit (ids ``<id>~copy<k>``), same segments and kinds."""
    n, total = options.n_units, int(options.offsets[-1])
    copy = pl.Series(np.repeat(np.arange(copies, dtype=np.int64), n)).cast(pl.String)
    ids = pl.concat([options.unit_id.cast(pl.String)] * copies) + COPY_SEPARATOR + copy
    shift = np.repeat(np.arange(copies, dtype=np.int64) * total, n)
    offsets = np.concatenate([np.tile(options.offsets[:-1], copies) + shift,
                              [copies * total]]).astype(np.int64)
    return OptionSet(
        unit_id=ids,
        kind=np.tile(options.kind, copies),
        segment=np.tile(options.segment, copies),
        segments=list(options.segments),
        fractional=np.tile(options.fractional, copies),
        size=np.tile(options.size, copies),
        offsets=offsets,
        level=np.tile(options.level, copies),
        cost=np.tile(options.cost, copies),
        value=np.tile(options.value, copies),
    )


def check_allocator(
    cls: type[Allocator],
    problem: Problem,
    *,
    params: Mapping[str, Any] | None = None,
    n_large: int = N_LARGE,
    tolerance: float = 1e-7,
) -> Allocation:
    """Check an allocator on a problem (see ``make_problem``/``sample_problem``); return
    its allocation.

    Checked: the allocation's shapes and dtypes, that it picks each unit's own options,
    honours every budget, cap and (if ``supports_minimums``) minimum, carries an LP bound
    when ``exact``, is deterministic, leaves the problem untouched, answers a stop request
    with a valid allocation or an engine error, and handles the problem tiled to
    ``n_large`` units (budgets scaled alike) in one call.
    """
    instance = check_params(cls, params)
    if not issubclass(cls, Allocator):
        _fail(cls, "check_allocator expects an Allocator subclass")
    assert isinstance(instance, Allocator)
    for attr in ("exact", "supports_minimums"):
        if not isinstance(getattr(cls, attr), bool):
            _fail(cls, f"{attr} must be a bool class attribute")
    if any(r.sense < 0 for r in problem.rows) and not cls.supports_minimums:
        raise AssertionError(
            f"check_allocator: the problem has minimum rows, which {_label(cls)} does not "
            "support (supports_minimums = False; the engine refuses such plans before "
            "calling it); pass a problem without minimums, e.g. sample_problem(minimums=False)"
        )
    options = problem.options

    def run(p: Problem, what: str) -> Allocation:
        fresh = cls.from_params(params or {})
        try:
            allocation = fresh.allocate(p)
        except Exception as exc:
            raise AssertionError(f"{_label(cls)}: allocate on {what} raised {exc!r}") from exc
        _check_allocation(cls, p, allocation, what, tolerance)
        return allocation

    arrays = {n: getattr(options, n).copy() for n in ("offsets", "level", "cost", "value",
                                                       "kind", "segment", "size")}
    allocation = run(problem, f"the problem ({options.n_units} units)")
    for name, array in arrays.items():
        if not np.array_equal(getattr(options, name), array):
            _fail(cls, f"allocate modified problem.options.{name}")
    again = run(problem, "the same problem again")
    for name in ("lo", "hi", "theta"):
        if not np.array_equal(getattr(allocation, name), getattr(again, name)):
            _fail(cls, f"not deterministic: two runs on the same problem differ in {name}")

    stop = replace(problem, should_stop=lambda: True)
    fresh = cls.from_params(params or {})
    try:
        stopped = fresh.allocate(stop)
    except EquityError:
        pass  # CancelledError / SolverError: the documented ways to give up
    except Exception as exc:
        _fail(cls, f"with should_stop() True, allocate must return a valid allocation or "
                   f"raise CancelledError, raised {exc!r}")
    else:
        _check_allocation(cls, stop, stopped, "a stop request", tolerance)

    copies = _copies(n_large, options.n_units)
    rows = [Constraint(r.name, r.cells, r.sense, r.rhs * copies) for r in problem.rows]
    large = replace(problem, options=tile_options(options, copies), rows=rows)
    run(large, f"{copies} copies of the problem ({large.options.n_units} units, "
               "budgets scaled alike)")
    return allocation


def _check_allocation(
    cls: Any, problem: Problem, allocation: object, what: str, tolerance: float
) -> None:
    def bad(message: str) -> NoReturn:
        _fail(cls, f"on {what}: {message}")

    if not isinstance(allocation, Allocation):
        bad(f"returned {type(allocation).__name__}, not engine.allocation.Allocation")
    options = problem.options
    n = options.n_units
    for name in ("lo", "hi"):
        array = getattr(allocation, name)
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
            bad(f"{name} must be an integer numpy array (flat option indices)")
        if array.shape != (n,):
            bad(f"{name} has shape {array.shape}, expected ({n},)")
        if (array < 0).any() or (array >= options.cost.size).any():
            bad(f"{name} has indices outside the options")
        wrong = options.unit_of_option[array] != np.arange(n)
        if wrong.any():
            bad(f"{name} points at another unit's options (first at unit {int(np.argmax(wrong))})")
    theta = allocation.theta
    if not isinstance(theta, np.ndarray) or theta.dtype != np.float64 or theta.shape != (n,):
        bad(f"theta must be a float64 array of shape ({n},)")
    if not np.isfinite(theta).all() or (theta < 0).any() or (theta > 1).any():
        bad("theta must be in [0, 1]")
    if (~options.fractional & (theta > 0) & (allocation.lo != allocation.hi)).any():
        bad("a customer (not a pool) was given two levels")
    if not isinstance(allocation.status, str) or not allocation.status:
        bad("status must be a non-empty string")
    broken = violations(options, problem.rows, allocation, tolerance)
    if broken:
        bad(f"the plan breaks {broken}")
    equity = float(allocation.equity(options).sum())
    if not math.isfinite(equity):
        bad("the plan's equity is not finite")
    if cls.exact:
        bound = allocation.bound
        if bound is None or not math.isfinite(bound):
            bad("exact allocators must report a finite LP bound")
        if bound < equity - tolerance * max(1.0, abs(equity)):
            bad(f"LP bound {bound} is below the plan's equity {equity}")


# --- inputs for the checks -------------------------------------------------------------------


def sample_portfolio(
    n: int = 200, seed: int = 7, prospects: bool = True, minimums: bool = True
) -> tuple[Portfolio, Plan]:
    """The built-in example (customers with segments, margins, retention, cost-to-serve,
    activity counts, response columns; prospect pools; a plan with budgets and caps)."""
    from engine.synthetic import example

    customers, pools, plan = example(n, seed)
    if not minimums:
        limits = tuple(lim for lim in plan.segment_limits if lim.cap is not None)
        plan = plan.with_overrides(segment_limits=tuple(
            SegmentLimit(lim.segment, lim.kind, lim.cap, None) for lim in limits
        ))
    return Portfolio(customers, pools if prospects else None), plan


def make_problem(
    portfolio: Portfolio,
    plan: Plan,
    cost: type[CostModel] | str | None = None,
    registry: Registry | None = None,
) -> Problem:
    """The problem the engine would hand an allocator: options from ``cost`` (a class, a
    registered name, or the plan's cost strategy) and the plan's constraint rows."""
    portfolio = portfolio.validated()
    if cost is None or isinstance(cost, str):
        registry = registry or default_registry()
        model = registry.create("cost", plan.cost if cost is None else StrategyChoice(cost))
    else:
        model = cost.from_params({})
    assert isinstance(model, CostModel)
    options = model.build(portfolio, plan)
    return Problem(options, build_constraints(plan, options), plan)


def sample_problem(n: int = 200, seed: int = 7, minimums: bool = False) -> Problem:
    """``make_problem`` on ``sample_portfolio`` with the exponential-response cost model."""
    portfolio, plan = sample_portfolio(n, seed, minimums=minimums)
    return make_problem(portfolio, plan, "exponential-response")


# --- plugins ---------------------------------------------------------------------------------


def check_plugin(
    plugin: object, expect: Mapping[str, Iterable[str]] | None = None
) -> Registry:
    """Register ``plugin`` (a module or object with ``@hookimpl`` functions) next to the
    built-ins, without entry points; fail on any registration problem; return the registry
    (use it as ``allocate(portfolio, plan, registry=...)``).

    ``expect`` maps kinds to the strategy names the plugin must provide, e.g.
    ``{"cost": ["nps-response"], "metric": ["nps"]}``.
    """
    registry = build_registry(entry_points=False, extra=[plugin])
    name = getattr(plugin, "__name__", "extra-0")
    _check_registered(registry, name, expect)
    return registry


def check_entry_point(
    name: str, expect: Mapping[str, Iterable[str]] | None = None
) -> Registry:
    """Check an installed package's entry point ``name`` in group ``equity_engine``: it is
    found, loads, and registers ``expect`` without failures. Returns the registry."""
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise AssertionError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r}; is "
                             "the package installed (pip install -e .)?")
    registry = build_registry(allow=[name])
    _check_registered(registry, name, expect)
    return registry


def _check_registered(
    registry: Registry, plugin: str, expect: Mapping[str, Iterable[str]] | None
) -> None:
    failures = [f for f in registry.failures if f.plugin == plugin]
    if failures:
        raise AssertionError("; ".join(str(f) for f in failures))
    provided = {key for key, info in registry.strategies.items() if info.plugin == plugin}
    if not provided:
        raise AssertionError(f"plugin {plugin!r} registered no strategies")
    for kind, names in (expect or {}).items():
        for strategy in names:
            if (kind, strategy) not in provided:
                got = sorted(n for k, n in provided if k == kind)
                raise AssertionError(f"plugin {plugin!r} did not register {kind} strategy "
                                     f"{strategy!r}; it registered {got}")
