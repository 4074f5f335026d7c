"""Built-in cost strategies: response curves, spend tables, activity-based cost-to-serve."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar, NamedTuple, cast

import numpy as np
import polars as pl

from engine import parallel
from engine.errors import FieldViolation, InvalidInputError
from engine.hookspecs import hookimpl
from engine.options import (
    ACQUISITION,
    RETENTION,
    LevelsAfter,
    OptionSet,
    encode_segments,
    from_table,
    merge_codes,
)
from engine.plan import Plan, ResponseCurve
from engine.portfolio import Portfolio
from engine.response.curves import lift
from engine.strategies import CostModel, Param
from engine.valuation import (
    customer_equity,
    new_customer_equity,
    retention_response,
)

RETENTION_NAME, ACQUISITION_NAME = "retention", "acquisition"
_CHUNK = 1 << 16  # customers per block of the vectorised closed forms


def _levels(plan_levels: tuple[float, ...]) -> np.ndarray:
    """The plan's distinct levels, sorted (read-only: kept for the next plan that has them)."""
    return _distinct_levels(np.asarray(plan_levels, dtype=np.float64).tobytes())


@functools.lru_cache(maxsize=64)
def _distinct_levels(levels: bytes) -> np.ndarray:
    # keyed by the bytes: 0.0 and -0.0 (equal as floats) stay apart
    out = np.unique(np.frombuffer(levels, dtype=np.float64))
    out.setflags(write=False)
    return out


def _net_margin(table: pl.DataFrame) -> np.ndarray:
    net = table["margin"].to_numpy()
    if "service_cost" in table.columns:
        net = net - table["service_cost"].to_numpy()
    return net


def _segments(table: pl.DataFrame) -> pl.Series:
    if "segment" in table.columns:
        text = table["segment"].cast(pl.String)
        # fill_null is a lazy select (~50 us whatever the size): only when there are nulls
        return text.fill_null("") if text.null_count() else text
    return pl.Series("segment", [""] * table.height, dtype=pl.String)


def _curves(
    plan: Plan, kind: str, segments: pl.Series
) -> list[tuple[ResponseCurve, np.ndarray]]:
    """The plan's curves of one kind with the rows of their segment (a loop over curves)."""
    out = []
    for curve in plan.response_curves:
        if curve.kind == kind:
            rows = (segments == curve.segment).to_numpy()
            if rows.any():
                out.append((curve, rows))
    return out


def _response(
    s: np.ndarray, low: np.ndarray, high: np.ndarray, k: np.ndarray, shape: np.ndarray
) -> np.ndarray:
    """low + (high - low) L(s): rows (units, one column each) by spend levels (one row); L is
    exponential where shape is 0 and hill elsewhere."""
    out = retention_response(s, low, high, k)
    rows = np.flatnonzero(shape[:, 0] > 0)
    if rows.size:
        level = lift("hill", s, k[rows], shape[rows])
        out[rows] = low[rows] + (high[rows] - low[rows]) * level
    return out


def acquisition_parameters(
    prospects: pl.DataFrame, plan: Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pool the acquisition ceiling, k and Hill shape (0: exponential): the plan's curve
    for the pool's segment, else the table's ``acquisition_ceiling`` / ``acquisition_response``
    columns, which may be left out when curves cover every pool; a pool with neither is an
    error naming it."""
    m = prospects.height
    columns = ("acquisition_ceiling", "acquisition_response")
    a_ceiling, a_k = (prospects[c].to_numpy().astype(np.float64) if c in prospects.columns
                      else np.full(m, np.nan) for c in columns)
    a_shape = np.zeros(m)
    covered = np.zeros(m, dtype=bool)
    curves = _curves(plan, ACQUISITION_NAME, prospects["segment"].cast(pl.String)) if (
        plan.response_curves) else []  # no curves: no labels to compare
    for curve, rows in curves:
        a_ceiling[rows], a_k[rows] = curve.ceiling, curve.k
        a_shape[rows] = (curve.shape or 0.0) if curve.model == "hill" else 0.0
        covered |= rows
    problems = []
    for column in columns:
        if column in prospects.columns:
            continue
        rows = np.flatnonzero(~covered)
        if rows.size:
            names = prospects["segment"].cast(pl.String).gather(rows[:5]).to_list()
            more = f" and {rows.size - 5} more" if rows.size > 5 else ""
            problems.append(FieldViolation(
                f"prospects.{column}",
                f"required column is missing, and no acquisition curve in the plan's "
                f"response_curves (--response) covers pool {', '.join(map(repr, names))}{more}",
                int(rows[0])))
    if problems:
        raise InvalidInputError(problems)
    return a_ceiling, a_k, a_shape


def response_options(
    customers: pl.DataFrame | None,
    prospects: pl.DataFrame | None,
    plan: Plan,
    ceiling_share: float,
    response: float,
) -> OptionSet:
    """Options from the exponential response curves (README, "Model"), whole arrays at once."""
    valuation = plan.valuation
    blocks: list[_Block] = []
    # One buffer per array for customers and pools alike, each part filling its slice, so
    # that the options are these buffers, not a copy (10M customers: 400 MB per array).
    s, a_levels = _levels(plan.retention_levels), _levels(plan.acquisition_levels)
    head = customers.height * s.size if customers is not None else 0
    tail = prospects.height * a_levels.size if prospects is not None else 0
    cost_buf, value_buf = np.empty(head + tail), np.empty(head + tail)
    # the customers' levels are their cost: only the pools' own levels are kept
    # (engine.options.LevelsAfter), not a third full-size array
    level_buf = np.empty(tail)
    if customers is not None:
        segments = _segments(customers)
        r0 = customers["retention"].to_numpy()
        if "retention_ceiling" in customers.columns:
            ceiling = customers["retention_ceiling"].to_numpy()
        else:
            ceiling = r0 + ceiling_share * (1.0 - r0)
        if "retention_response" in customers.columns:
            k = customers["retention_response"].to_numpy()
        else:
            k = np.full(r0.size, response)
        ceiling, k = np.array(ceiling, dtype=np.float64), np.array(k, dtype=np.float64)
        shape = np.zeros(r0.size)
        # A segment's curve: its k and shape, and the same share of each customer's gap to 1
        # that it closes at its own base (docs/response.md).
        for curve, rows in _curves(plan, RETENTION_NAME, segments):
            gap_share = (curve.ceiling - curve.base) / (1.0 - curve.base)
            ceiling[rows] = r0[rows] + gap_share * (1.0 - r0[rows])
            k[rows] = curve.k
            shape[rows] = (curve.shape or 0.0) if curve.model == "hill" else 0.0
        net = _net_margin(customers)
        n = customers.height
        value = value_buf[:head].reshape(n, s.size)
        cost = cost_buf[:head].reshape(n, s.size)

        # In chunks: the closed forms' temporaries stay small (cache-sized, reused memory)
        # however many customers there are; only the results are allocated at full size.
        # Each chunk writes its own rows, so chunks run on the machine's cores.
        def chunk(lo: int, hi: int) -> None:
            r = _response(
                s[None, :], r0[lo:hi, None], ceiling[lo:hi, None], k[lo:hi, None],
                shape[lo:hi, None],
            )
            value[lo:hi] = customer_equity(net[lo:hi, None], r, s[None, :], valuation)
            cost[lo:hi] = s

        parallel.each(chunk, n, _CHUNK)
        blocks.append(_Block(customers["customer_id"], RETENTION, segments, np.ones(n), s.size))
    if prospects is not None:
        pool = prospects["prospects"].to_numpy()
        a_ceiling, a_k, a_shape = acquisition_parameters(prospects, plan)
        share = _response(
            a_levels[None, :], np.zeros((prospects.height, 1)), a_ceiling[:, None],
            a_k[:, None], a_shape[:, None],
        )
        clv_new = new_customer_equity(
            _net_margin(prospects), prospects["retention"].to_numpy(), valuation
        )
        m = prospects.height
        value = value_buf[head:].reshape(m, a_levels.size)
        value[:] = pool[:, None] * (share * clv_new[:, None] - a_levels[None, :])
        level_buf.reshape(m, a_levels.size)[:] = a_levels
        cost = cost_buf[head:].reshape(m, a_levels.size)
        cost[:] = pool[:, None] * a_levels[None, :]
        blocks.append(_Block(prospects["segment"].cast(pl.String), ACQUISITION,
                             prospects["segment"], pool.astype(np.float64), a_levels.size))
    return _assemble(blocks, cost_buf, value_buf, level_buf)


class _Block(NamedTuple):
    """Units of one kind, each with ``width`` levels, in consecutive rows of the buffers."""

    unit_id: pl.Series
    kind: int
    labels: pl.Series  # segment labels
    size: np.ndarray
    width: int


def _assemble(
    blocks: list[_Block], cost: np.ndarray, value: np.ndarray, pool_levels: np.ndarray
) -> OptionSet:
    """The customers' and the pools' units as one OptionSet over the buffers they filled:
    ``OptionSet.concat`` of each block's ``OptionSet.uniform`` (ids as text when both kinds
    are there, segment codes over the union of names, the customers' levels their cost), bit
    for bit, without the parts' arrays and checks (a few dozen calls at any size)."""
    blocks = [b for b in blocks if b.unit_id.len()]
    if not blocks:
        raise InvalidInputError.single("portfolio", "has no customers, prospects or options")
    coded = [encode_segments(b.labels) for b in blocks]
    segment, names = coded[0] if len(blocks) == 1 else merge_codes(coded)
    counts = [b.unit_id.len() for b in blocks]
    kind = np.repeat(np.array([b.kind for b in blocks], dtype=np.int8), counts)
    offsets = np.zeros(len(kind) + 1, dtype=np.int64)
    np.cumsum(np.repeat(np.array([b.width for b in blocks], dtype=np.int64), counts),
              out=offsets[1:])
    head = counts[0] * blocks[0].width if blocks[0].kind == RETENTION else 0
    level: np.ndarray | LevelsAfter = cost  # customers' levels are their cost
    if head == 0:
        level = pool_levels
    elif len(blocks) > 1:
        level = LevelsAfter(head, pool_levels)
    return OptionSet(
        unit_id=blocks[0].unit_id if len(blocks) == 1 else pl.concat(
            [b.unit_id.cast(pl.String) for b in blocks]),
        kind=kind,
        segment=segment,
        segments=names,
        fractional=kind == ACQUISITION,  # pools may mix levels, customers take one
        size=np.concatenate([b.size for b in blocks]) if len(blocks) > 1 else blocks[0].size,
        offsets=offsets,
        level=cast("np.ndarray", level),  # the property's setter takes LevelsAfter too
        cost=cost,
        value=value,
    )


def with_contacts(options: OptionSet, per_head: float) -> OptionSet:
    """Add the resource column ``contacts``: ``per_head`` per customer (per prospect of a
    pool) at every non-zero spend level, 0 at zero spend; unchanged when ``per_head`` is 0."""
    if per_head > 0:
        size = options.size[options.unit_of_option]
        options.extra["contacts"] = np.where(options.level > 0, per_head * size, 0.0)
    return options


class ExponentialResponse(CostModel):
    """Retention and acquisition respond to spend with diminishing returns (Blattberg-Deighton)."""

    name = "exponential-response"
    summary = (
        "r(s) = r0 + (r_ceil - r0)(1 - e^-ks) per customer; a(A) = a_ceil (1 - e^-kA) per pool."
    )
    params: ClassVar = {
        "ceiling_share": Param(
            0.3,
            "Default retention ceiling as the share of the gap to 1 spend can close, "
            "for customers without a retention_ceiling column: r_ceil = r0 + share (1 - r0).",
            minimum=0.0,
            maximum=0.999,
        ),
        "response": Param(
            0.05,
            "Default k (per currency unit) for customers without retention_response.",
            minimum=0.0,
        ),
        "contacts_per_head": Param(
            0.0,
            "Contacts each customer (each prospect of a pool) uses at every non-zero spend "
            "level, emitted as the resource column `contacts` that limits such as "
            "--limit 'contacts<=1500' bound; 0 emits no column.",
            minimum=0.0,
        ),
    }
    ceiling_share: float
    response: float
    contacts_per_head: float

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        if portfolio.customers is None and portfolio.prospects is None:
            raise InvalidInputError.single(
                "portfolio", "exponential-response needs customers and/or prospects"
            )
        options = response_options(
            portfolio.customers, portfolio.prospects, plan, self.ceiling_share, self.response
        )
        return with_contacts(options, self.contacts_per_head)


class SpendTable(CostModel):
    """Explicit spend levels: per customer (cost, value) or per segment (retention per level)."""

    name = "spend-table"
    summary = (
        "Options given directly: rows (customer_id, level, cost, value) per customer, or a "
        "per-segment table (segment, level, retention) applied to every customer of the segment."
    )
    uses: ClassVar[tuple[str, ...]] = ("options", "customers")
    params: ClassVar = {"contacts_per_head": ExponentialResponse.params["contacts_per_head"]}
    contacts_per_head: float

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        table = portfolio.options
        if table is None:
            raise InvalidInputError.single("options", "spend-table needs an options table")
        if self.contacts_per_head > 0 and "contacts" in table.columns:
            raise InvalidInputError.single(
                "plan.cost.params.contacts_per_head",
                "the options table has its own contacts column; set one or the other",
            )
        return with_contacts(from_table(table), self.contacts_per_head)


class SegmentSpendTable(CostModel):
    """Per-segment response tables: retention reached at each spend level, by segment."""

    name = "segment-spend-table"
    summary = (
        "A table (segment, level, retention) measured per segment; each customer of the "
        "segment gets those levels, valued with its own margin and cost-to-serve."
    )
    uses: ClassVar[tuple[str, ...]] = ("customers", "options")

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        table, customers = portfolio.options, portfolio.customers
        if table is None or customers is None:
            raise InvalidInputError.single(
                "options", "segment-spend-table needs customers and an options table"
            )
        missing = [c for c in ("segment", "level", "retention") if c not in table.columns]
        if missing:
            raise InvalidInputError(
                FieldViolation(f"options.{c}", "required column is missing") for c in missing
            )
        levels = table.select(
            pl.col("segment").cast(pl.String),
            pl.col("level").cast(pl.Float64),
            pl.col("retention").cast(pl.Float64).alias("__r"),
        )
        bad = (levels["__r"] < 0) | (levels["__r"] >= 1) | levels["__r"].is_nan()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InvalidInputError.single("options.retention", "must be in [0, 1)", row)
        base = customers.with_columns(_segments(customers).alias("segment")).with_row_index("__i")
        long = base.join(levels, on="segment", how="inner").sort(["__i", "level"])
        covered = long["__i"].unique()
        if covered.len() != customers.height:
            lost = base.filter(~pl.col("__i").is_in(covered.implode()))
            raise InvalidInputError.single(
                "customers.segment",
                f"segment {lost['segment'][0]!r} has no rows in the spend table",
                int(lost["__i"][0]),
            )
        net = long["margin"].to_numpy()
        if "service_cost" in long.columns:
            net = net - long["service_cost"].to_numpy()
        spend = long["level"].to_numpy()
        value = customer_equity(net, long["__r"].to_numpy(), spend, plan.valuation)
        table_long = pl.DataFrame(
            {
                "customer_id": long["customer_id"],
                "level": spend,
                "cost": spend,
                "value": value,
                "segment": long["segment"],
            }
        )
        return from_table(table_long)


class ActivityBased(CostModel):
    """Cost-to-serve from activity counts x unit costs, then the response curves."""

    name = "activity-based"
    summary = (
        "service_cost = sum over activities of customers.activity_<name> x unit_costs[name] "
        "(per period), replacing any service_cost column; spend response as exponential-response."
    )
    params: ClassVar = {
        "unit_costs": Param({}, 'Cost per unit of each activity, e.g. {"calls": 4.5}.', dict),
        "ceiling_share": ExponentialResponse.params["ceiling_share"],
        "response": ExponentialResponse.params["response"],
        "contacts_per_head": ExponentialResponse.params["contacts_per_head"],
    }
    unit_costs: dict[str, float]
    ceiling_share: float
    response: float
    contacts_per_head: float

    def build(self, portfolio: Portfolio, plan: Plan) -> OptionSet:
        customers = portfolio.customers
        if customers is None:
            raise InvalidInputError.single("customers", "activity-based needs customers")
        if not self.unit_costs:
            raise InvalidInputError.single(
                "plan.cost.params.unit_costs", "name at least one activity and its unit cost"
            )
        problems = []
        cost = np.zeros(customers.height)
        for activity, unit_cost in self.unit_costs.items():
            column = f"activity_{activity}"
            if (
                not isinstance(unit_cost, int | float)
                or not np.isfinite(unit_cost)
                or unit_cost < 0
            ):
                problems.append(
                    FieldViolation(
                        f"plan.cost.params.unit_costs.{activity}", "must be a number >= 0"
                    )
                )
                continue
            if column not in customers.columns:
                problems.append(FieldViolation(f"customers.{column}", "required column is missing"))
                continue
            counts = customers[column].cast(pl.Float64, strict=False).to_numpy()
            bad = ~np.isfinite(counts) | (counts < 0)
            if bad.any():
                problems.append(
                    FieldViolation(
                        f"customers.{column}",
                        "must be a finite count >= 0",
                        int(np.flatnonzero(bad)[0]),
                    )
                )
                continue
            cost += counts * float(unit_cost)
        if problems:
            raise InvalidInputError(problems)
        served = customers.with_columns(pl.Series("service_cost", cost))
        options = response_options(
            served, portfolio.prospects, plan, self.ceiling_share, self.response
        )
        return with_contacts(options, self.contacts_per_head)


@hookimpl
def register_costs(register: Callable[[type[CostModel]], None]) -> None:
    register(ExponentialResponse)
    register(SpendTable)
    register(SegmentSpendTable)
    register(ActivityBased)
