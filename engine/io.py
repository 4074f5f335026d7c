"""Reading and writing tables by file extension: Parquet, CSV or Arrow IPC.

Ids read from CSV keep what the file says: a ``customer_id`` column is an integer column
(Int64) only when every value is a plain integer without leading zeros (``17``, ``-3``);
otherwise it is read as text exactly as written (``0001``, ``C17``, `` 17``). Parquet and
Arrow files carry their own types, which are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from engine.errors import InvalidInputError

ID_COLUMNS = ("customer_id",)
_PLAIN_INTEGER = r"^-?(0|[1-9][0-9]*)$"


def read_csv(path: str | Path, **kwargs: Any) -> pl.DataFrame:
    """``pl.read_csv`` with the id policy above: ids never lose leading zeros."""
    overrides = dict(kwargs.pop("schema_overrides", None) or {})
    overrides.update(dict.fromkeys(ID_COLUMNS, pl.String))
    table = pl.read_csv(path, schema_overrides=overrides, **kwargs)
    return table.with_columns(
        integer_ids(table[c]) for c in ID_COLUMNS if c in table.columns
    )


def integer_ids(ids: pl.Series) -> pl.Series:
    """Text ids as Int64 when every one is a plain integer that fits; else unchanged."""
    if ids.dtype != pl.String or ids.len() == ids.null_count():
        return ids
    values = ids.drop_nulls()
    if not bool(values.str.contains(_PLAIN_INTEGER).all()):
        return ids
    as_int = ids.cast(pl.Int64, strict=False)
    return as_int if as_int.null_count() == ids.null_count() else ids  # overflow: text


def csv_separator(path: str | Path) -> str:
    """The separator of a delimited file, from its header line: ``,`` unless the header
    holds more semicolons (spreadsheets in locales with a decimal comma) or tabs."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return ","
    header = next((line for line in head.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def read_delimited(path: str | Path, **kwargs: Any) -> pl.DataFrame:
    """:func:`read_csv` with the separator found by :func:`csv_separator`."""
    return read_csv(path, separator=csv_separator(path), **kwargs)


READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".parquet": pl.read_parquet,
    ".pq": pl.read_parquet,
    ".csv": read_delimited,
    ".tsv": read_delimited,
    ".arrow": pl.read_ipc,
    ".ipc": pl.read_ipc,
    ".feather": pl.read_ipc,
}


def read_table(path: str | Path, field: str = "file") -> pl.DataFrame:
    """Read one table; any failure becomes an input error naming ``field`` and the file."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InvalidInputError.single(
            field, f"{path}: unknown extension; use one of {', '.join(sorted(READERS))}"
        )
    if not path.is_file():
        raise InvalidInputError.single(field, f"{path}: no such file")
    try:
        return reader(path)
    except Exception as exc:  # polars raises many types for truncated or malformed files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if reader is read_delimited:
            sep = {",": "comma", ";": "semicolon", "\t": "tab"}[csv_separator(path)]
            message = f"read as {sep}-separated: {message}"
        raise InvalidInputError.single(field, f"{path}: cannot be read: {message}") from None


def write_table(table: pl.DataFrame, path: str | Path, field: str = "output") -> None:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            table.write_parquet(path)
        elif suffix == ".csv":
            table.write_csv(path)
        elif suffix in (".arrow", ".ipc", ".feather"):
            table.write_ipc(path)
        else:
            raise InvalidInputError.single(
                field, f"{path}: unknown extension; use .parquet, .csv or .arrow"
            )
    except OSError as exc:
        raise InvalidInputError.single(
            field, f"{path}: cannot be written: {exc.strerror}"
        ) from None
