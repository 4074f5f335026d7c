"""Reading and writing tables by file extension: Parquet, CSV or Arrow IPC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from engine.errors import InvalidInputError

READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".parquet": pl.read_parquet,
    ".pq": pl.read_parquet,
    ".csv": pl.read_csv,
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
