from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TableFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TABLE_FORMAT_UNSPECIFIED: _ClassVar[TableFormat]
    TABLE_FORMAT_ARROW_IPC: _ClassVar[TableFormat]
    TABLE_FORMAT_COLUMNS: _ClassVar[TableFormat]
TABLE_FORMAT_UNSPECIFIED: TableFormat
TABLE_FORMAT_ARROW_IPC: TableFormat
TABLE_FORMAT_COLUMNS: TableFormat

class DoubleValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Int64Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class StringValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BoolValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "doubles", "int64s", "strings", "bools", "nulls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOUBLES_FIELD_NUMBER: _ClassVar[int]
    INT64S_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    BOOLS_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    doubles: DoubleValues
    int64s: Int64Values
    strings: StringValues
    bools: BoolValues
    nulls: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, name: _Optional[str] = ..., doubles: _Optional[_Union[DoubleValues, _Mapping]] = ..., int64s: _Optional[_Union[Int64Values, _Mapping]] = ..., strings: _Optional[_Union[StringValues, _Mapping]] = ..., bools: _Optional[_Union[BoolValues, _Mapping]] = ..., nulls: _Optional[_Iterable[bool]] = ...) -> None: ...

class Columns(_message.Message):
    __slots__ = ("columns",)
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class Table(_message.Message):
    __slots__ = ("arrow_ipc", "columns")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    columns: Columns
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., columns: _Optional[_Union[Columns, _Mapping]] = ...) -> None: ...

class Portfolio(_message.Message):
    __slots__ = ("customers", "prospects", "options", "transactions")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    PROSPECTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    customers: Table
    prospects: Table
    options: Table
    transactions: Table
    def __init__(self, customers: _Optional[_Union[Table, _Mapping]] = ..., prospects: _Optional[_Union[Table, _Mapping]] = ..., options: _Optional[_Union[Table, _Mapping]] = ..., transactions: _Optional[_Union[Table, _Mapping]] = ...) -> None: ...
