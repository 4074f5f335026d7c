"""Transaction logs to RFM: the CDNOW sample, a naive reference, and the dirty-data policy."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clv.transactions import (
    load_rfm,
    read_cdnow,
    read_transactions,
    rfm_statistics,
    validate_rfm,
)
from engine.errors import InvalidInputError

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
END = dt.date(1997, 9, 30)


def tx(rows: Sequence[tuple[object, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "amount": [float(r[2]) for r in rows],
        }
    )


def one(rfm: pl.DataFrame, cid: object) -> dict[str, Any]:
    return rfm.filter(pl.col("customer_id") == cid).row(0, named=True)


def naive_rfm(
    rows: list[tuple[int, dt.date, float]], end: dt.date, unit: float
) -> dict[int, tuple[int, float, float, float | None]]:
    """The definitions written out per customer with dicts (drop policy)."""
    days: dict[int, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for cid, day, amount in rows:
        if day <= end and amount >= 0:
            days[cid][day] += amount
    out = {}
    for cid, by_day in days.items():
        ordered = sorted(by_day)
        repeat = [by_day[d] for d in ordered[1:] if by_day[d] > 0]
        out[cid] = (
            len(ordered) - 1,
            (ordered[-1] - ordered[0]).days / unit,
            (end - ordered[0]).days / unit,
            sum(repeat) / len(repeat) if repeat else None,
        )
    return out


# ------------------------------------------------------------------------------ CDNOW


def test_cdnow_reader() -> None:
    df = read_cdnow(CDNOW)
    assert df.height == 6919
    assert df.row(0, named=True) == {
        "customer_id": "0001",  # ids as written in the file, leading zeros kept
        "date": dt.date(1997, 1, 1),
        "amount": 29.33,
        "master_id": "00004",
        "quantity": 2,
        "transaction_id": 0,
    }
    assert df["customer_id"].n_unique() == 2357
    assert read_transactions(CDNOW).equals(df)  # format sniffed from the first line


def test_cdnow_rfm_matches_published_summary() -> None:
    rfm, report = load_rfm(CDNOW, "1997-09-30", "week")
    assert rfm.height == 2357
    assert int((rfm["frequency"] > 0).sum()) == 946
    # Customer 1 of Fader & Hardie's summary file: x = 2, t_x = 30.43, T = 38.86.
    c1 = one(rfm, "0001")
    assert (c1["frequency"], round(c1["recency"], 2), round(c1["T"], 2)) == (2, 30.43, 38.86)
    assert c1["monetary"] == pytest.approx((29.73 + 14.96) / 2)
    # Customer 1516, the paper's worked example: x = 26, t_x = 30.86, T = 31.00.
    c = one(rfm, "1516")
    assert (c["frequency"], round(c["recency"], 2), round(c["T"], 2)) == (26, 30.86, 31.0)
    assert report.rows_after_calibration_end == 1959
    assert report.zero_amount_rows == 8  # free first purchases: events, not spend
    assert report.duplicate_rows == 0  # identical CDNOW lines are separate orders
    assert report.identical_rows == 9
    assert report.customers_without_repeat == 2357 - 946


def test_cdnow_in_days() -> None:
    weeks, _ = load_rfm(CDNOW, END, "week")
    days, _ = load_rfm(CDNOW, END, "day")
    assert np.allclose(days["T"].to_numpy(), 7 * weeks["T"].to_numpy())
    assert np.allclose(days["recency"].to_numpy(), 7 * weeks["recency"].to_numpy())
    assert days["frequency"].equals(weeks["frequency"])


def test_identical_lines_are_purchases_without_transaction_id() -> None:
    df = read_cdnow(CDNOW).drop("transaction_id")
    rfm, report = rfm_statistics(df, END, "week")
    assert report.identical_rows == 9 and report.duplicate_rows == 0  # calibration pairs
    with_ids, _ = rfm_statistics(read_cdnow(CDNOW), END, "week")
    assert rfm.equals(with_ids)  # the line-number ids change nothing: every line is an order
    deduped, report = rfm_statistics(df, END, "week", dedupe=True)
    assert report.duplicate_rows == 9 and report.identical_rows == 0
    assert deduped["frequency"].equals(with_ids["frequency"])  # same-day: frequency unchanged
    assert not deduped["monetary"].equals(with_ids["monetary"])


# -------------------------------------------------------------------- definitions


def test_same_day_purchases_are_one_transaction() -> None:
    rfm, report = rfm_statistics(
        tx(
            [
                (1, "2020-01-01", 10),
                (1, "2020-01-01", 5),
                (1, "2020-01-08", 7),
                (1, "2020-01-08", 3),
                (1, "2020-01-15", 20),
            ]
        ),
        "2020-01-29",
        "week",
    )
    c = one(rfm, 1)
    assert c == {
        "customer_id": 1,
        "frequency": 2,
        "recency": 2.0,
        "T": 4.0,
        "monetary": 15.0,
        "spend_frequency": 2,
    }
    assert report.purchase_days == 3 and report.rows_used == 5


def test_one_purchase_customers_are_kept() -> None:
    rfm, report = rfm_statistics(
        tx([(1, "2020-01-01", 10), (2, "2020-01-05", 3)]), "2020-01-10", "day"
    )
    assert rfm["frequency"].to_list() == [0, 0]
    assert rfm["recency"].to_list() == [0.0, 0.0]
    assert rfm["T"].to_list() == [9.0, 5.0]
    assert rfm["monetary"].null_count() == 2
    assert report.customers_without_repeat == 2


def test_purchase_on_the_calibration_end_counts() -> None:
    rfm, report = rfm_statistics(
        tx([(1, "2020-01-01", 1), (1, "2020-01-10", 1), (1, "2020-01-11", 1)]), "2020-01-10", "day"
    )
    assert one(rfm, 1)["frequency"] == 1 and one(rfm, 1)["recency"] == one(rfm, 1)["T"] == 9.0
    assert report.rows_after_calibration_end == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),
            st.integers(0, 40),
            st.sampled_from([0.0, 1.5, 2.0, 10.0, 99.99]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from(["day", "week"]),
)
def test_matches_naive_definition(raw: list[tuple[int, int, float]], unit: str) -> None:
    start = dt.date(2021, 3, 1)
    end = start + dt.timedelta(days=30)
    rows = [(c, start + dt.timedelta(days=d), a) for c, d, a in raw]
    unique_rows = list(dict.fromkeys(rows))  # identical rows are purchases all the same
    df = pl.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
        }
    )
    expected = naive_rfm(rows, end, 7.0 if unit == "week" else 1.0)
    if not expected:
        with pytest.raises(InvalidInputError):
            rfm_statistics(df, end, unit)  # type: ignore[arg-type]
        return
    rfm, report = rfm_statistics(df, end, unit)  # type: ignore[arg-type]
    got = {r["customer_id"]: r for r in rfm.iter_rows(named=True)}
    assert set(got) == set(expected)
    for cid, (x, rec, t_age, m) in expected.items():
        assert got[cid]["frequency"] == x
        assert got[cid]["recency"] == pytest.approx(rec)
        assert got[cid]["T"] == pytest.approx(t_age)
        if m is None:
            assert got[cid]["monetary"] is None
        else:
            assert got[cid]["monetary"] == pytest.approx(m)
    assert report.duplicate_rows == 0
    assert report.identical_rows == len([r for r in rows if r[1] <= end]) - len(
        [r for r in unique_rows if r[1] <= end]
    )
    assert report.rows_after_calibration_end == sum(r[1] > end for r in rows)


# ----------------------------------------------------------------------- dirty data


def test_identical_rows_counted_and_deduped_on_request() -> None:
    rows = [
        (1, "2020-01-01", 10),
        (1, "2020-01-01", 10),
        (1, "2020-01-05", 4),
        (1, "2020-01-05", 4),
    ]
    rfm, report = rfm_statistics(tx(rows), "2020-01-10", "day")
    assert (report.identical_rows, report.duplicate_rows, report.rows_used) == (2, 0, 4)
    assert one(rfm, 1)["monetary"] == 8.0 and one(rfm, 1)["frequency"] == 1
    rfm, report = rfm_statistics(tx(rows), "2020-01-10", "day", dedupe=True)
    assert (report.identical_rows, report.duplicate_rows, report.rows_used) == (0, 2, 2)
    assert one(rfm, 1)["monetary"] == 4.0


def test_repeated_transaction_ids_are_double_exports() -> None:
    rows = [
        (1, "2020-01-01", 10),
        (1, "2020-01-01", 10),
        (1, "2020-01-05", 4),
        (1, "2020-01-05", 4),
        (2, "2020-01-06", 7),
    ]
    with_ids = tx(rows).with_columns(pl.Series("transaction_id", ["a", "a", "b", "c", "a"]))
    with pytest.raises(InvalidInputError) as err:  # id "a" on another customer: a conflict
        rfm_statistics(with_ids, "2020-01-10", "day")
    assert [(v.field, v.row) for v in err.value.violations] == [
        ("transactions.transaction_id", 0),
        ("transactions.transaction_id", 1),
        ("transactions.transaction_id", 4),
    ]
    with_ids = tx(rows).with_columns(pl.Series("transaction_id", ["a", "a", "b", "c", "d"]))
    rfm, report = rfm_statistics(with_ids, "2020-01-10", "day")
    assert (report.duplicate_rows, report.identical_rows, report.rows_used) == (1, 1, 4)
    assert one(rfm, 1)["monetary"] == 8.0  # b and c are two orders of $4
    ordered = tx(rows).with_columns(pl.Series("transaction_id", [1, 2, 3, 4, 5]))
    _, report = rfm_statistics(ordered, "2020-01-10", "day")
    assert (report.duplicate_rows, report.identical_rows) == (0, 2)


def test_zero_amounts_are_events_without_spend() -> None:
    rows = [
        (1, "2020-01-01", 0),
        (1, "2020-01-03", 0),
        (1, "2020-01-05", 6),
        (2, "2020-01-01", 5),
        (2, "2020-01-02", 0),
    ]
    rfm, report = rfm_statistics(tx(rows), "2020-01-10", "day")
    c1, c2 = one(rfm, 1), one(rfm, 2)
    assert (c1["frequency"], c1["spend_frequency"], c1["monetary"]) == (2, 1, 6.0)
    # Customer 2's only repeat purchase was free: repeat spend averages zero.
    assert (c2["frequency"], c2["spend_frequency"], c2["monetary"]) == (1, 0, None)
    assert report.zero_amount_rows == 3
    assert report.customers_zero_repeat_spend == 1


def test_refunds_dropped_by_default() -> None:
    rows = [
        (1, "2020-01-01", 10),
        (1, "2020-01-03", 8),
        (1, "2020-01-03", -8),
        (1, "2020-01-06", -10),
        (2, "2020-01-02", -5),
    ]
    rfm, report = rfm_statistics(tx(rows), "2020-01-10", "day")
    assert report.refund_rows == 3 and report.refund_amount == 23.0
    assert rfm["customer_id"].to_list() == [1]  # customer 2 only ever refunded
    assert report.customers_without_calibration_purchase == 1
    assert one(rfm, 1)["frequency"] == 1 and one(rfm, 1)["monetary"] == 8.0


def test_refunds_netted_within_the_day() -> None:
    rows = [
        (1, "2020-01-01", 10),
        (1, "2020-01-03", 8),
        (1, "2020-01-03", -8),
        (1, "2020-01-05", 12),
        (1, "2020-01-05", -2),
        (1, "2020-01-06", -10),
    ]
    rfm, report = rfm_statistics(tx(rows), "2020-01-10", "day", refunds="net_same_day")
    # Jan 3 nets to zero and Jan 6 is a refund alone: neither is a purchase.
    assert report.nonpositive_days == 2
    c = one(rfm, 1)
    assert (c["frequency"], c["recency"], c["monetary"]) == (1, 4.0, 10.0)


def test_refunds_rejected_naming_rows() -> None:
    rows = [(1, "2020-01-01", 10), (1, "2020-01-03", -8), (2, "2020-03-01", -1)]
    with pytest.raises(InvalidInputError) as err:
        rfm_statistics(tx(rows), "2020-01-10", "day", refunds="error")
    assert [(v.field, v.row) for v in err.value.violations] == [("transactions.amount", 1)]


def test_dates_after_calibration_end() -> None:
    rows = [(1, "2020-01-01", 1), (1, "2020-02-01", 1), (2, "2020-02-02", 1)]
    rfm, report = rfm_statistics(tx(rows), "2020-01-31", "day")
    assert rfm["customer_id"].to_list() == [1] and one(rfm, 1)["frequency"] == 0
    assert report.rows_after_calibration_end == 2
    assert report.customers_without_calibration_purchase == 1


def test_nothing_in_the_window_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="no purchase on or before 2019-12-31"):
        rfm_statistics(tx([(1, "2020-01-01", 1)]), "2019-12-31", "day")


def test_missing_values_name_the_rows() -> None:
    df = pl.DataFrame(
        {
            "customer_id": [1, None, 3, 4],
            "date": ["2020-01-01", "2020-01-02", "not a date", "2020-01-04"],
            "amount": [1.0, 2.0, 3.0, float("nan")],
        }
    )
    with pytest.raises(InvalidInputError) as err:
        rfm_statistics(df, "2020-02-01")
    got = {(v.field, v.row) for v in err.value.violations}
    assert got == {
        ("transactions.customer_id", 1),
        ("transactions.date", 2),
        ("transactions.amount", 3),
    }


def test_missing_columns_and_bad_parameters() -> None:
    with pytest.raises(InvalidInputError) as err:
        rfm_statistics(pl.DataFrame({"customer_id": [1], "when": ["2020-01-01"]}), "2020-02-01")
    assert {v.field for v in err.value.violations} == {"transactions.date", "transactions.amount"}
    good = tx([(1, "2020-01-01", 1)])
    with pytest.raises(InvalidInputError, match="calibration_end"):
        rfm_statistics(good, "31/01/2020")
    with pytest.raises(InvalidInputError, match="time_unit"):
        rfm_statistics(good, "2020-02-01", "month")  # type: ignore[arg-type]


def test_csv_parquet_and_date_types(tmp_path: Path) -> None:
    df = tx([("a", "2020-01-01", 1.5), ("a", "2020-01-08", 2.5), ("b", "2020-01-02", 4)])
    df.write_csv(tmp_path / "t.csv")
    df.with_columns(pl.col("date").str.to_date()).write_parquet(tmp_path / "t.parquet")
    compact = df.with_columns(pl.col("date").str.replace_all("-", "").cast(pl.Int64))
    expected, _ = rfm_statistics(df, "2020-01-15", "week")
    for source in (
        read_transactions(tmp_path / "t.csv"),
        read_transactions(tmp_path / "t.parquet"),
        compact,
        df.with_columns(pl.col("date").str.to_datetime()),
    ):
        got, _ = rfm_statistics(source, "2020-01-15", "week")
        assert got.equals(expected)
    assert one(expected, "a")["frequency"] == 1 and one(expected, "b")["T"] == pytest.approx(13 / 7)


def test_cdnow_reader_rejects_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(" 00004 0001 19970101  2   29.33\n 00004 0001 1997-01-18 2 29.73\n")
    with pytest.raises(InvalidInputError) as err:
        read_cdnow(path)
    assert err.value.violations[0].row == 1
    with pytest.raises(InvalidInputError, match="file not found"):
        read_transactions(tmp_path / "missing.csv")


def test_validate_rfm_rejects_impossible_rows() -> None:
    rfm = pl.DataFrame(
        {"frequency": [1, -1, 0, 2], "recency": [2.0, 0.0, 1.0, 5.0], "T": [3.0, 1.0, 2.0, 4.0]}
    )
    with pytest.raises(InvalidInputError) as err:
        validate_rfm(rfm)
    assert {(v.field, v.row) for v in err.value.violations} == {
        ("rfm.frequency", 1),
        ("rfm.recency", 2),
        ("rfm.recency", 3),
    }
