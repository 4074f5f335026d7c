"""Transaction logs to per-customer RFM sufficient statistics for BG/NBD and Gamma-Gamma.

A log has one row per purchase: ``customer_id``, ``date``, ``amount`` (Parquet or CSV), an
optional ``transaction_id``, or the raw CDNOW layout (whitespace separated: master id,
sample id, yyyymmdd, CDs, dollars).

Per customer, over the calibration window (every date <= ``calibration_end``):

* ``frequency``: number of repeat purchase *days* (all purchases on one day are one
  transaction, their amounts summed), i.e. purchase days - 1;
* ``recency``: time from the first to the last purchase day, in the time unit (day or week);
* ``T``: time from the first purchase day to the calibration end (the customer's age);
* ``monetary``: mean amount of the repeat purchase days with a positive amount (the first
  day excluded: the Gamma-Gamma model is fitted on repeat spend); null when there is none;
* ``spend_frequency``: how many days ``monetary`` averages (the Gamma-Gamma's x).

Dirty-data policy (the table in ``docs/clv.md``); every drop is counted in
:class:`CleaningReport`:

* missing customer id, date or amount, unparseable dates, non-finite amounts: error
  (:class:`~engine.errors.InvalidInputError` naming the rows), since guessing would bias the fit;
* dates after the calibration end: excluded from calibration (``rows_after_calibration_end``);
* identical rows (same customer, date and amount): without a ``transaction_id`` they are
  purchases (two identical CDs bought on one day are two orders; the published CDNOW fits
  count them), counted in ``identical_rows``; ``dedupe=True`` treats them as double exports
  instead and keeps the first (``duplicate_rows``);
* with a ``transaction_id``, a repeated id is a double export: the first row is kept and the
  repeats are dropped (``duplicate_rows``); a repeated id with another customer, date or
  amount is an error naming the rows (two different orders cannot share an id);
* zero amounts: purchase events without spend (``zero_amount_rows``): free items are
  purchases (CDNOW's published fits count its 8 free first purchases);
* negative amounts (refunds): ``refunds="drop"`` (default) drops them (``refund_rows``,
  ``refund_amount``): a refund does not undo the purchase *event* the BG/NBD counts, and
  without order ids it cannot be matched to the purchase it reverses; ``"net_same_day"``
  nets them against the same customer's same day, and a day with a refund netting to <= 0
  is no purchase (``nonpositive_days``); ``"error"`` rejects them, naming the rows;
* customers left with no purchase in the window: dropped
  (``customers_without_calibration_purchase``);
* customers with one purchase day only: kept (frequency 0 is most of a BG/NBD sample),
  counted in ``customers_without_repeat``, excluded from the Gamma-Gamma fit;
* repeat purchases whose spend averages zero (free repeat days only): kept for BG/NBD,
  ``monetary`` null, excluded from the Gamma-Gamma fit (``customers_zero_repeat_spend``);
  :func:`engine.clv.gamma_gamma.fit_gamma_gamma` rejects such rows, naming them, if handed them.

The work is one sort of the log by customer (stable, when the log is in date order) and
segment reductions over the sorted arrays; nothing loops over customers in Python.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from engine.errors import FieldViolation, InvalidInputError
from engine.io import csv_separator, read_csv

TimeUnit = Literal["day", "week"]
RefundPolicy = Literal["drop", "net_same_day", "error"]
FileFormat = Literal["auto", "csv", "parquet", "cdnow"]

UNIT_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0}
REQUIRED_COLUMNS = ("customer_id", "date", "amount")
TRANSACTION_ID = "transaction_id"  # optional: a repeated id is a double export
MAX_ROWS_NAMED = 20

_CDNOW_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d{8})\s+(\d+)\s+(-?[\d.]+)\s*$")


@dataclass(frozen=True)
class CleaningReport:
    """What the cleaning did to the log, so a fit can be audited against its input."""

    input_rows: int
    rows_after_calibration_end: int
    duplicate_rows: int
    identical_rows: int
    zero_amount_rows: int
    refund_rows: int
    refund_amount: float
    nonpositive_days: int
    customers_without_calibration_purchase: int
    customers: int
    customers_without_repeat: int
    customers_zero_repeat_spend: int
    rows_used: int
    purchase_days: int

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


# --------------------------------------------------------------------------------- reading


def read_cdnow(path: str | Path) -> pl.DataFrame:
    """Read the raw CDNOW layout; ``customer_id`` is the sample id (the id the papers quote),
    kept as written (text, ``0001``), as is ``master_id`` (``00004``).

    Each line of the file is one order, so ``transaction_id`` is the 0-based line number:
    identical lines (the sample has 20 pairs) are separate orders, not duplicates, and the
    published Gamma-Gamma estimates count them. ``master_id`` and ``quantity`` (CDs) are kept.
    """
    lines = pl.read_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema_overrides={"line": pl.String},
    )
    lines = lines.with_row_index("row").filter(pl.col("line").str.strip_chars() != "")
    parts = lines.with_columns(
        pl.col("line").str.extract_groups(_CDNOW_LINE.pattern).alias("g")
    ).unnest("g")
    bad = parts.filter(pl.col("1").is_null())
    if bad.height:
        _raise_rows(
            "transactions", "not a CDNOW line (master id, sample id, yyyymmdd, CDs, $)", bad["row"]
        )
    out = parts.select(
        pl.col("2").alias("customer_id"),
        pl.col("3").str.to_date("%Y%m%d", strict=False).alias("date"),
        pl.col("5").cast(pl.Float64).alias("amount"),
        pl.col("1").alias("master_id"),
        pl.col("4").cast(pl.Int64).alias("quantity"),
        pl.col("row").cast(pl.Int64).alias(TRANSACTION_ID),
    )
    bad_dates = out.filter(pl.col("date").is_null())
    if bad_dates.height:
        _raise_rows("transactions.date", "not a valid yyyymmdd date", bad_dates[TRANSACTION_ID])
    return out


def read_transactions(path: str | Path, fmt: FileFormat = "auto") -> pl.DataFrame:
    """Read a transaction log and normalise it to ``customer_id``, ``date`` (Date), ``amount``.

    ``fmt="auto"`` picks Parquet for ``.parquet``/``.pq``, CDNOW when the first line looks
    like one, CSV otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError.single("transactions", f"file not found: {path}")
    if fmt == "auto":
        fmt = _sniff_format(path)
    if fmt == "cdnow":
        return read_cdnow(path)
    if fmt == "parquet":
        df = pl.read_parquet(path)
    elif fmt == "csv":
        df = read_csv(path, infer_schema_length=10_000, separator=csv_separator(path))
    else:
        raise InvalidInputError.single(
            "format", f"unknown format {fmt!r} (auto, csv, parquet, cdnow)"
        )
    return normalize_transactions(df)


def _sniff_format(path: Path) -> FileFormat:
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    with path.open("rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace")
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    return "cdnow" if _CDNOW_LINE.match(first) else "csv"


def normalize_transactions(df: pl.DataFrame) -> pl.DataFrame:
    """Check the required columns and coerce ``date`` to Date and ``amount`` to Float64.

    Missing ids, dates or amounts, unparseable dates and non-finite amounts are errors naming
    the rows: dropping them silently would bias frequency and spend.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"transactions.{c}", "required column is missing") for c in missing
        )
    date = pl.col("date")
    dtype = df.schema["date"]
    if dtype == pl.Date:
        date_expr = date
    elif isinstance(dtype, pl.Datetime):
        date_expr = date.dt.date()
    elif dtype.is_integer():
        date_expr = date.cast(pl.String).str.to_date("%Y%m%d", strict=False)
    elif dtype == pl.String:
        iso = date.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        compact = date.str.strip_chars().str.to_date("%Y%m%d", strict=False)
        date_expr = pl.coalesce(iso, compact)
    else:
        raise InvalidInputError.single("transactions.date", f"unsupported type {dtype}")
    amount_expr = pl.col("amount").cast(pl.Float64, strict=False)
    out = df
    if dtype != pl.Date or df.schema["amount"] != pl.Float64:
        out = df.with_columns(date_expr.alias("date"), amount_expr.alias("amount"))
    # Fast path: Arrow keeps null counts, so a clean table costs one finiteness pass.
    nulls = out.select(REQUIRED_COLUMNS).null_count().row(0)
    if sum(nulls) == 0 and bool(out["amount"].is_finite().all()):
        return out

    problems: list[FieldViolation] = []
    checks = (
        ("customer_id", pl.col("customer_id").is_null(), "missing customer id"),
        ("date", pl.col("date").is_null(), "missing or unparseable date"),
        (
            "amount",
            pl.col("amount").is_null() | ~pl.col("amount").is_finite(),
            "missing, non-numeric or non-finite amount",
        ),
    )
    flags = out.select(*(expr.alias(name) for name, expr, _ in checks))
    for name, _, description in checks:
        rows = np.flatnonzero(flags[name].fill_null(True).to_numpy())
        if name in ("date", "amount") and rows.size:  # show what the file holds
            problems.extend(_value_violations(df, name, rows))
            continue
        problems.extend(_row_violations(f"transactions.{name}", description, rows))
    if problems:
        raise InvalidInputError(problems)
    return out


# ------------------------------------------------------------------------------ statistics


def parse_calibration_end(
    value: dt.date | dt.datetime | str, field: str = "calibration_end"
) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInputError.single(
            field, f"{value!r} is not a date; use {DATE_FORMATS}"
        ) from None


def rfm_statistics(
    transactions: pl.DataFrame,
    calibration_end: dt.date | dt.datetime | str,
    time_unit: TimeUnit = "week",
    refunds: RefundPolicy = "drop",
    dedupe: bool = False,
) -> tuple[pl.DataFrame, CleaningReport]:
    """Per-customer ``frequency``, ``recency``, ``T``, ``monetary`` and the cleaning report.

    The output is sorted by ``customer_id``; see the module docstring for the data policy
    (``dedupe``: identical rows are double exports, not purchases).
    """
    if time_unit not in UNIT_DAYS:
        raise InvalidInputError.single(
            "time_unit", f"must be one of {sorted(UNIT_DAYS)}, got {time_unit!r}"
        )
    if refunds not in ("drop", "net_same_day", "error"):
        raise InvalidInputError.single(
            "refunds", f"must be drop, net_same_day or error, got {refunds!r}"
        )
    end = parse_calibration_end(calibration_end)
    unit = UNIT_DAYS[time_unit]
    has_tid = TRANSACTION_ID in transactions.columns
    tx = normalize_transactions(transactions).select(
        [*REQUIRED_COLUMNS, TRANSACTION_ID] if has_tid else list(REQUIRED_COLUMNS)
    )
    input_rows = tx.height
    n_exported_twice = 0
    if has_tid:
        tx, n_exported_twice = drop_repeated_ids(tx)

    after = pl.col("date") > end
    n_after = int(tx.select(after.sum()).item())
    if refunds == "error":
        neg = tx.with_row_index("row").filter(~after & (pl.col("amount") < 0))
        if neg.height:
            _raise_rows(
                "transactions.amount",
                "negative amount (refund) in the calibration window",
                neg["row"],
            )
    window = tx.filter(~after) if n_after else tx
    # Logs usually arrive in date order; then a stable one-key sort gives (customer, date).
    if window["date"].is_sorted():
        s = window.sort("customer_id", maintain_order=True)
    else:
        s = window.sort(["customer_id", "date"])
    cid = s["customer_id"]
    new_customer = _changed(cid)
    days = s["date"].cast(pl.Int32).to_numpy()
    amount = s["amount"].to_numpy()
    # Large fresh arrays are the cost here (page faults), so everything stays at one row
    # per day or smaller, in bools and int32 where it can.
    new_day = new_customer.copy()
    new_day[1:] |= days[1:] != days[:-1]
    identical = _identical(new_day, amount)
    duplicate = identical if dedupe else np.zeros_like(identical)
    input_customers = int(new_customer.sum())
    if n_after:  # customers whose every purchase is after the calibration end
        late = tx.filter(after)["customer_id"].unique()
        input_customers += int((~late.is_in(cid.filter(pl.Series(new_customer)).implode())).sum())

    negative = amount < 0.0
    n_duplicate = int(duplicate.sum()) + n_exported_twice
    n_identical = 0 if dedupe else int(identical.sum())
    n_zero = int(np.count_nonzero((amount == 0.0) & ~duplicate))
    refund_mask = negative & ~duplicate
    n_refund = int(np.count_nonzero(refund_mask))
    refund_amount = float(-amount[refund_mask].sum()) + 0.0
    keep = ~duplicate
    if refunds == "drop":
        keep &= ~negative

    # Day level: sums over each (customer, date) run, dropped rows contributing nothing.
    day_row = np.flatnonzero(new_day)  # first row of each day
    kept_amount = np.where(keep, amount, 0.0)
    day_amount = np.add.reduceat(kept_amount, day_row)
    day_rows = np.add.reduceat(keep.view(np.uint8), day_row, dtype=np.int32)
    valid = day_rows > 0  # e.g. a day of refunds only, with refunds="drop", is no purchase
    n_nonpositive = 0
    if refunds == "net_same_day":  # a day netting to <= 0 with a refund in it is no purchase
        day_refund = np.add.reduceat((negative & keep).view(np.uint8), day_row, dtype=np.int32)
        reversed_day = valid & (day_refund > 0) & (day_amount <= 0.0)
        n_nonpositive = int(reversed_day.sum())
        valid &= ~reversed_day
    if not valid.all():
        day_row = day_row[valid]
        day_amount = day_amount[valid]
        day_rows = day_rows[valid]
    rows_used = int(day_rows.sum(dtype=np.int64))
    if day_row.size == 0:
        raise InvalidInputError.single(
            "transactions", f"no purchase on or before {end.isoformat()}"
        )

    # Customer level: runs of equal customer among the purchase days.
    cust_start = new_customer[day_row]
    if not cust_start[0] or day_row.size < new_day.sum():  # some days were dropped
        day_customer = np.cumsum(new_customer, dtype=np.int32)[day_row]
        cust_start = np.ones(day_row.size, dtype=bool)
        cust_start[1:] = day_customer[1:] != day_customer[:-1]
    cstarts = np.flatnonzero(cust_start)
    cends = cstarts + _run_lengths(cstarts, day_row.size) - 1
    first_day = days[day_row[cstarts]]
    last_day = days[day_row[cends]]
    frequency = cends - cstarts  # purchase days - 1
    # Spend: every kept day sums to >= 0; zero-amount days are purchase events without a
    # spend observation.
    has_spend = day_amount > 0.0
    first_spend = has_spend[cstarts]
    spend_frequency = np.add.reduceat(has_spend.view(np.uint8), cstarts, dtype=np.int64)
    spend_frequency -= first_spend
    repeat_spend = np.add.reduceat(day_amount, cstarts) - day_amount[cstarts]
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(
            spend_frequency > 0, repeat_spend / np.maximum(spend_frequency, 1), np.nan
        )
    end_day = (end - dt.date(1970, 1, 1)).days
    rfm = pl.DataFrame(
        {
            "customer_id": cid.gather(day_row[cstarts]),
            "frequency": frequency.astype(np.int64),
            "recency": (last_day - first_day).astype(np.float64) / unit,
            "T": (end_day - first_day).astype(np.float64) / unit,
            "monetary": monetary,
            "spend_frequency": spend_frequency.astype(np.int64),
        }
    ).with_columns(pl.col("monetary").fill_nan(None))
    report = CleaningReport(
        input_rows=input_rows,
        rows_after_calibration_end=n_after,
        duplicate_rows=n_duplicate,
        identical_rows=n_identical,
        zero_amount_rows=n_zero,
        refund_rows=n_refund,
        refund_amount=refund_amount,
        nonpositive_days=n_nonpositive,
        customers_without_calibration_purchase=input_customers - rfm.height,
        customers=rfm.height,
        customers_without_repeat=int((frequency == 0).sum()),
        customers_zero_repeat_spend=int(((frequency > 0) & (spend_frequency == 0)).sum()),
        rows_used=rows_used,
        purchase_days=int(day_row.size),
    )
    return rfm, report


def load_rfm(
    path: str | Path,
    calibration_end: dt.date | dt.datetime | str,
    time_unit: TimeUnit = "week",
    fmt: FileFormat = "auto",
    refunds: RefundPolicy = "drop",
    dedupe: bool = False,
) -> tuple[pl.DataFrame, CleaningReport]:
    """File to RFM in one call: :func:`read_transactions` then :func:`rfm_statistics`."""
    return rfm_statistics(
        read_transactions(path, fmt), calibration_end, time_unit, refunds, dedupe
    )


def validate_rfm(rfm: pl.DataFrame, *, need_monetary: bool = False) -> None:
    """Reject RFM rows no model can use (the transaction path never produces them)."""
    need = ["frequency", "recency", "T"] + (["monetary"] if need_monetary else [])
    missing = [c for c in need if c not in rfm.columns]
    if missing:
        raise InvalidInputError(
            FieldViolation(f"rfm.{c}", "required column is missing") for c in missing
        )
    x = rfm["frequency"].cast(pl.Float64).to_numpy()
    tx = rfm["recency"].cast(pl.Float64).to_numpy()
    t = rfm["T"].cast(pl.Float64).to_numpy()
    problems: list[FieldViolation] = []
    rules = (
        ("frequency", ~np.isfinite(x) | (x < 0) | (x != np.floor(x)), "must be an integer >= 0"),
        ("T", ~np.isfinite(t) | (t < 0), "must be finite and >= 0"),
        (
            "recency",
            ~np.isfinite(tx) | (tx < 0) | (tx > t * (1 + 1e-12)),
            "must satisfy 0 <= recency <= T",
        ),
        ("recency", (x == 0) & (tx != 0), "must be 0 when frequency is 0"),
    )
    for name, mask, description in rules:
        problems.extend(_row_violations(f"rfm.{name}", description, np.flatnonzero(mask)))
    if problems:
        raise InvalidInputError(problems)


# --------------------------------------------------------------------------------- helpers


def _identical(new_day: NDArray[np.bool_], amount: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Rows repeating an earlier row's (customer, date, amount); the first one is not marked.

    Only days with several rows can hold them, and they are few, so the exact comparison
    runs on that subset instead of sorting the whole log by amount.
    """
    alone = new_day.copy()  # a row that starts its day and is followed by a new day
    alone[:-1] &= new_day[1:]
    idx = np.flatnonzero(~alone)
    identical = np.zeros(new_day.size, dtype=bool)
    if idx.size == 0:
        return identical
    day = np.cumsum(new_day[idx], dtype=np.int64)  # days are contiguous runs within idx
    sub_amount = amount[idx]
    starts = np.flatnonzero(new_day[idx])
    longest = int(_run_lengths(starts, idx.size).max()) if starts.size else idx.size
    if longest <= _SHORT_DAY:
        # Compare each row with the up to longest - 1 rows before it: a loop over offsets,
        # not rows, and no hashing of a million (day, amount) pairs.
        repeat = np.zeros(idx.size, dtype=bool)
        for k in range(1, longest):
            repeat[k:] |= (day[k:] == day[:-k]) & (sub_amount[k:] == sub_amount[:-k])
        identical[idx] = repeat
        return identical
    sub = pl.DataFrame({"day": day, "amount": sub_amount})
    first = sub.select(pl.struct(pl.all()).is_first_distinct()).to_series().to_numpy()
    identical[idx] = ~first
    return identical


_SHORT_DAY = 16  # up to this many rows in a customer's day, _identical compares offsets


def drop_repeated_ids(tx: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop rows whose ``transaction_id`` an earlier row already has (double exports).

    A repeat that differs in customer, date or amount is an error naming the rows. Ids in
    increasing order (a line number, an order sequence) are unique without hashing.
    """
    tid = tx[TRANSACTION_ID]
    if tid.null_count():
        _raise_rows(
            "transactions.transaction_id", "missing transaction id",
            tx.with_row_index("row").filter(pl.col(TRANSACTION_ID).is_null())["row"],
        )
    if tid.dtype.is_integer():
        values = tid.to_numpy()
        if values.size < 2 or bool(np.all(values[1:] > values[:-1])):
            return tx, 0
    repeated = tid.is_duplicated()
    if not repeated.any():
        return tx, 0
    rows = tx.with_row_index("row").filter(repeated)
    conflicts = rows.filter(
        pl.struct(*REQUIRED_COLUMNS).n_unique().over(TRANSACTION_ID) > 1
    )
    if conflicts.height:
        _raise_rows(
            "transactions.transaction_id",
            "transaction id repeated with another customer, date or amount",
            conflicts["row"],
        )
    keep = tid.is_first_distinct()
    return tx.filter(keep), int((~keep).sum())


def _run_lengths(starts: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Lengths of the runs beginning at ``starts`` in an array of length ``n``."""
    out = np.empty(starts.size, dtype=np.int64)
    out[:-1] = starts[1:] - starts[:-1]
    out[-1:] = n - starts[-1:]
    return out


def _changed(series: pl.Series) -> NDArray[np.bool_]:
    """True where a sorted column starts a new run; works for any dtype (ints, strings)."""
    if series.dtype.is_integer():
        values = series.to_numpy()
        out = np.empty(values.size, dtype=bool)
        out[:1] = True
        np.not_equal(values[1:], values[:-1], out=out[1:])
        return out
    flags = (series != series.shift(1)).fill_null(True)
    return flags.to_numpy().astype(bool, copy=True)


def _row_violations(field: str, description: str, rows: NDArray[np.int64]) -> list[FieldViolation]:
    out = [FieldViolation(field, description, int(r)) for r in rows[:MAX_ROWS_NAMED]]
    if rows.size > MAX_ROWS_NAMED:
        out.append(FieldViolation(field, f"{description}: {rows.size - MAX_ROWS_NAMED} more rows"))
    return out


DATE_FORMATS = "YYYY-MM-DD (2024-01-31) or YYYYMMDD (20240131)"


def _value_violations(df: pl.DataFrame, name: str, rows: NDArray[np.int64]) -> list[FieldViolation]:
    """Rows of ``date`` or ``amount`` that could not be read, each with the value found."""
    field = f"transactions.{name}"
    values = df[name].gather(rows[:MAX_ROWS_NAMED]).to_list()
    out = []
    for row, value in zip(rows[:MAX_ROWS_NAMED], values, strict=True):
        if value is None or (isinstance(value, str) and not value.strip()):
            text = "is missing"
        elif name == "date":
            text = f"{value!r} is not a date; use {DATE_FORMATS}"
        else:
            text = f"{value!r} is not a finite number"
        out.append(FieldViolation(field, text, int(row)))
    if rows.size > MAX_ROWS_NAMED:
        out.append(FieldViolation(field, f"{rows.size - MAX_ROWS_NAMED} more rows like these"))
    return out


def _raise_rows(field: str, description: str, rows: pl.Series) -> None:
    raise InvalidInputError(_row_violations(field, description, rows.to_numpy().astype(np.int64)))
