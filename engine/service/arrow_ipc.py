"""Arrow IPC from the network, read without trusting it.

An Arrow payload is checked before anything is decoded or decompressed, then read by
Arrow's own C++ reader with full validation, and only then handed to polars:

1. The messages are walked one by one (``pyarrow.ipc.MessageReader``; for the file format,
   the blocks its footer lists). The schema may hold only the column types the engine
   reads (numbers, booleans, strings, dictionary-encoded strings, dates, timestamps,
   nulls); a record or dictionary batch may declare at most ``max_rows`` rows, no column
   longer than its batch, and, when its body is compressed, at most ``max_bytes`` once
   decompressed (each compressed buffer states its decompressed length in its first 8
   bytes: that is what is summed, before any decompression).
2. ``pyarrow`` decodes the checked messages (each record batch as it was read; a stream
   with dictionaries by Arrow's own reader) and ``validate(full=True)`` checks every column
   (offsets, UTF-8, dictionary indices); a failure names the column.
3. Dictionary-encoded columns are expanded to plain strings in Arrow, after their expanded
   size is bounded by ``max_bytes``, and the sender's schema metadata is dropped; polars
   gets only plain, validated columns of the types step 1 allows (each of which polars
   reads as a number, boolean, string, date, datetime or null column: the engine's types).

Every failure is an ``InvalidInputError`` naming ``<table>.arrow_ipc`` or
``<table>.<column>``: the polars IPC reader, which aborts the process or panics on some
malformed streams, never sees the bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import FieldViolation, InvalidInputError, LimitExceededError

FILE_MAGIC = b"ARROW1"
_HEADER_DICTIONARY = 2
_HEADER_RECORD_BATCH = 3


class _Malformed(Exception):
    """The stream's metadata is not what the Arrow format allows."""


# --- a minimal flatbuffer reader (only what the message headers need) -----------------------


class _Table:
    """One flatbuffer table: ``buf`` and the table's position in it."""

    def __init__(self, buf: bytes, pos: int) -> None:
        if not 0 <= pos <= len(buf) - 4:
            raise _Malformed("table offset out of range")
        self.buf = buf
        self.pos = pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        if not 0 <= vtable <= len(buf) - 4:
            raise _Malformed("vtable offset out of range")
        self.vtable = vtable
        self.vsize = struct.unpack_from("<H", buf, vtable)[0]

    def _field(self, index: int) -> int:
        """Absolute position of field ``index`` (0 when absent)."""
        at = 4 + 2 * index
        if at + 2 > self.vsize or self.vtable + at + 2 > len(self.buf):
            return 0
        off: int = struct.unpack_from("<H", self.buf, self.vtable + at)[0]
        if off == 0:
            return 0
        return self.pos + off

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        p = self._field(index)
        if p == 0:
            return default
        if p + struct.calcsize(fmt) > len(self.buf):
            raise _Malformed("field out of range")
        value: int = struct.unpack_from("<" + fmt, self.buf, p)[0]
        return value

    def _target(self, index: int) -> int:
        p = self._field(index)
        if p == 0:
            return 0
        if p + 4 > len(self.buf):
            raise _Malformed("offset out of range")
        return p + int(struct.unpack_from("<I", self.buf, p)[0])

    def table(self, index: int) -> _Table | None:
        target = self._target(index)
        return None if target == 0 else _Table(self.buf, target)

    def structs(self, index: int, fmt: str) -> list[tuple[int, ...]]:
        """A vector of fixed-size structs (``fmt``: their fields, little-endian)."""
        target = self._target(index)
        if target == 0:
            return []
        if target + 4 > len(self.buf):
            raise _Malformed("vector out of range")
        count = struct.unpack_from("<I", self.buf, target)[0]
        size = struct.calcsize("<" + fmt)
        if target + 4 + count * size > len(self.buf):
            raise _Malformed("vector longer than the metadata")
        start = target + 4
        return list(struct.iter_unpack("<" + fmt, memoryview(self.buf)[start:start + count * size]))


def _root(buf: bytes) -> _Table:
    if len(buf) < 8:
        raise _Malformed("message metadata too short")
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


# --- checks ------------------------------------------------------------------------------


# the column types the engine reads, by Arrow type id (one set lookup a column)
_PLAIN = frozenset(t.id for t in (
    pa.null(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
    pa.uint16(), pa.uint32(), pa.uint64(), pa.float32(), pa.float64(), pa.decimal128(1),
    pa.string(), pa.large_string(), pa.string_view(), pa.date32(), pa.timestamp("s")))
_DICTIONARY = pa.dictionary(pa.int8(), pa.string()).id


def _allowed(dtype: pa.DataType) -> bool:
    if dtype.id == _DICTIONARY:
        return pa.types.is_integer(dtype.index_type) and (
            pa.types.is_string(dtype.value_type) or pa.types.is_large_string(dtype.value_type))
    return dtype.id in _PLAIN


def _check_schema(schema: pa.Schema, field: str) -> bool:
    """Refuse column types the engine does not read and repeated names; returns whether
    the schema is plain: no dictionary-encoded column and no metadata of the sender's
    (nothing to rewrite before polars reads the columns)."""
    problems = []
    names: set[str] = set()
    plain = schema.metadata is None
    for f in schema:
        dtype = f.type
        if not _allowed(dtype):
            problems.append(FieldViolation(
                f"{field}.{f.name}", f"unsupported column type {dtype}; send numbers, "
                "booleans, strings (plain or dictionary-encoded), dates or timestamps"))
        elif f.name in names:
            problems.append(FieldViolation(f"{field}.{f.name}", "column name appears twice"))
        names.add(f.name)
        if dtype.id == _DICTIONARY or f.metadata is not None or not f.nullable:
            plain = False
    if problems:
        raise InvalidInputError(problems)
    return plain


def _check_batch(message: pa.ipc.Message, max_rows: int, max_bytes: int) -> int:
    """Rows and decompressed bytes a record or dictionary batch declares, both bounded
    before its body is touched; returns its rows (0 for a dictionary batch)."""
    root = _root(message.metadata.to_pybytes())
    header_type = root.scalar(1, "B")
    header = root.table(2)
    if header is None:
        raise _Malformed("batch without a header")
    if header_type == _HEADER_DICTIONARY:
        batch = header.table(1)
        if batch is None:
            raise _Malformed("dictionary batch without data")
    elif header_type == _HEADER_RECORD_BATCH:
        batch = header
    else:
        raise _Malformed(f"unexpected message type {header_type}")
    length = batch.scalar(0, "q")
    if length < 0:
        raise _Malformed(f"negative row count {length}")
    if length > max_rows:
        raise LimitExceededError("max_rows", length, max_rows)
    for node_length, null_count in batch.structs(1, "qq"):
        if not 0 <= node_length <= length or not 0 <= null_count <= node_length:
            raise _Malformed(f"a column of {node_length} rows ({null_count} null) in a "
                             f"batch of {length}")
    buffers = batch.structs(2, "qq")
    body = message.body
    body_size = 0 if body is None else body.size
    for offset, size in buffers:
        if offset < 0 or size < 0 or offset + size > body_size:
            raise _Malformed("buffer outside the message body")
    if batch.table(3) is not None and body is not None:  # compressed: 8-byte length prefixes
        view = body.to_pybytes() if len(buffers) < 64 else None
        declared = 0
        for offset, size in buffers:
            if size == 0:
                continue
            if size < 8:
                raise _Malformed("compressed buffer shorter than its length prefix")
            prefix = (view[offset:offset + 8] if view is not None
                      else body.slice(offset, 8).to_pybytes())
            n = struct.unpack("<q", prefix)[0]
            declared += size - 8 if n == -1 else n
            if n < -1:
                raise _Malformed("negative decompressed length")
        if declared > max_bytes:
            raise LimitExceededError("max_decoded_bytes", declared, max_bytes)
    return length if header_type == _HEADER_RECORD_BATCH else 0


def _messages(data: bytes, field: str) -> tuple[pa.Schema, bool, list[pa.ipc.Message]]:
    """The checked schema, whether it is plain (``_check_schema``) and the batch messages
    of a stream, or of a file (its footer's schema and the blocks the footer lists)."""
    buf = pa.py_buffer(data)
    if data[:6] != FILE_MAGIC:
        reader = pa.ipc.MessageReader.open_stream(buf)
        out = []
        while True:
            try:
                out.append(reader.read_next_message())
            except StopIteration:
                break
        if not out or out[0].type != "schema":
            raise _Malformed("the first message is not a schema")
        schema, plain = _stream_schema(out[0], field)
        return schema, plain, out[1:]
    if len(data) < 18 or data[-6:] != FILE_MAGIC:
        raise _Malformed("Arrow file without its footer")
    footer_size = struct.unpack_from("<i", data, len(data) - 10)[0]
    start = len(data) - 10 - footer_size
    if footer_size <= 0 or start < 8:
        raise _Malformed("footer size out of range")
    footer = _root(data[start:len(data) - 10])
    schema = pa.ipc.open_file(buf).schema  # reads the footer only
    out = []
    for index in (2, 3):  # dictionaries, then record batches
        for offset, meta, _pad, body in footer.structs(index, "qiiq"):
            end = offset + meta + body
            if offset < 8 or meta <= 0 or body < 0 or end > start:
                raise _Malformed("footer block outside the file")
            out.append(pa.ipc.read_message(buf.slice(offset, meta + body)))
    return schema, _check_schema(schema, field), out


# Checked schemas of streams by the bytes of their schema message: a client sends the same
# few schemas again and again. Bounded: at most _SCHEMAS_KEPT of at most _SCHEMA_BYTES_KEPT
# bytes each (all forgotten when full); a schema that fails its checks is never kept.
_SCHEMAS: dict[bytes, tuple[pa.Schema, bool]] = {}
_SCHEMAS_KEPT = 64
_SCHEMA_BYTES_KEPT = 64 << 10


def _stream_schema(message: pa.ipc.Message, field: str) -> tuple[pa.Schema, bool]:
    key = message.metadata.to_pybytes()
    known = _SCHEMAS.get(key)
    if known is None:
        schema = pa.ipc.read_schema(message)
        known = schema, _check_schema(schema, field)
        if len(key) <= _SCHEMA_BYTES_KEPT:
            if len(_SCHEMAS) >= _SCHEMAS_KEPT:
                _SCHEMAS.clear()
            _SCHEMAS[key] = known
    return known


def read_arrow(data: bytes, field: str, max_rows: int, max_bytes: int) -> pl.DataFrame:
    """The Arrow IPC stream or file ``data`` as a DataFrame of plain columns (see module
    docstring); problems name ``field`` (``customers``...) and the column."""
    with _unreadable(field):
        schema, plain, messages, _ = _counted(data, field, max_rows, max_bytes)
        table = _read(data, schema, messages)
    return _to_polars(table, field, max_bytes, plain)


def arrow_rows(data: bytes, field: str, max_rows: int, max_bytes: int) -> int:
    """The rows of the Arrow IPC stream or file ``data`` from its messages' metadata alone:
    the checks ``read_arrow`` makes before it decodes anything (the schema's column types,
    each batch's declared rows and buffers, the decompressed sizes a compressed body
    declares), with the same errors, and no batch decoded or decompressed. A payload that
    passes may still fail ``read_arrow`` (a malformed column is found only by decoding)."""
    with _unreadable(field):
        rows = _counted(data, field, max_rows, max_bytes)[3]
    return rows


def _counted(data: bytes, field: str, max_rows: int, max_bytes: int
             ) -> tuple[pa.Schema, bool, list[pa.ipc.Message], int]:
    """The schema, whether it is plain, the checked messages and their rows."""
    schema, plain, messages = _messages(data, field)
    rows = 0
    for message in messages:
        if message.type == "schema":
            raise _Malformed("a second schema")
        rows += _check_batch(message, max_rows, max_bytes)
        if rows > max_rows:
            raise LimitExceededError("max_rows", rows, max_rows)
    return schema, plain, messages, rows


@contextmanager
def _unreadable(field: str) -> Iterator[None]:
    """Any failure to read the payload as INVALID_ARGUMENT naming ``field``'s bytes."""
    try:
        yield
    except (InvalidInputError, LimitExceededError):
        raise
    except (_Malformed, pa.ArrowException, ValueError, OSError, EOFError, struct.error,
            IndexError, OverflowError, StopIteration) as exc:
        raise InvalidInputError.single(
            f"{field}.arrow_ipc", f"not a readable Arrow IPC stream or file: {_first_line(exc)}"
        ) from None


def _read(data: bytes, schema: pa.Schema, messages: list[pa.ipc.Message]) -> pa.Table:
    """The checked messages decoded (decompressed) into a table. Without dictionaries each
    record batch message is decoded as it was read; a dictionary (in the schema or as a
    message) needs Arrow's own reader of the whole stream or file (``read_record_batch``
    takes no dictionary messages)."""
    if not any(t.id == _DICTIONARY for t in schema.types) \
            and all(message.type == "record batch" for message in messages):
        return pa.Table.from_batches(
            [pa.ipc.read_record_batch(message, schema) for message in messages], schema)
    del messages
    if data[:6] == FILE_MAGIC:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    else:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    if not table.schema.equals(schema):
        raise _Malformed("batches do not match the schema")
    return table


def _to_polars(table: pa.Table, field: str, max_bytes: int, plain: bool) -> pl.DataFrame:
    """The validated columns as a DataFrame; unless the schema is ``plain``, dictionaries
    expanded and the sender's metadata dropped first."""
    try:
        table.validate(full=True)  # every column at once; a failure is named below
    except pa.ArrowException:
        for name, column in zip(table.column_names, table.columns, strict=True):
            try:
                column.validate(full=True)
            except pa.ArrowException as exc:
                raise InvalidInputError.single(
                    f"{field}.{name}", f"malformed Arrow column: {_first_line(exc)}") from None
        raise InvalidInputError.single(
            f"{field}.arrow_ipc", "malformed Arrow table: its columns differ in length"
        ) from None
    if not plain and table.num_columns:
        # polars gets no metadata of the sender's (e.g. polars' own flags for its types)
        table = pa.table({
            f.name: _expand(column, f"{field}.{f.name}", max_bytes)
            if f.type.id == _DICTIONARY else column
            for f, column in zip(table.schema, table.columns, strict=True)})
    try:
        frame = pl.from_arrow(table, rechunk=False)
    except BaseException as exc:  # a polars panic is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise InvalidInputError.single(
            f"{field}.arrow_ipc", f"columns polars cannot read: {_first_line(exc)}") from None
    assert isinstance(frame, pl.DataFrame)
    return frame


def _expand(column: pa.ChunkedArray, path: str, max_bytes: int) -> pa.ChunkedArray:
    """A dictionary-encoded string column as plain strings, once their size is bounded."""
    size = 0
    for chunk in column.chunks:
        if len(chunk) == 0 or len(chunk.dictionary) == 0:
            continue
        lengths = pc.binary_length(chunk.dictionary)
        used = pc.take(lengths, chunk.indices)
        size += int(pc.sum(used).as_py() or 0)
    if size > max_bytes:
        raise LimitExceededError("max_decoded_bytes", size, max_bytes)
    try:
        return pc.cast(column, pa.large_string())
    except pa.ArrowException as exc:
        raise InvalidInputError.single(path, f"malformed dictionary: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["arrow_rows", "read_arrow"]
