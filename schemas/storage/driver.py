"""How rows reach clickhouse-driver on the worker's write path (pure, but for the driver
hooks it installs).

The driver's row inserts cost the worker per cell in Python (``docs/benchmarks.md``,
*Scaling the worker* and *Insert columns encoded natively*):

* a row-oriented insert is transposed by the driver one column at a time, and even a
  columnar one writes a text column one cell at a time (encode, length, copy), packs
  integer columns from a list per column, and converts every ``Decimal`` with
  ``int(Decimal(str(value)) * 10**scale)`` (a text round trip) before packing it as a
  128-bit integer in Python.

With the native module (``meterline_native.encode_column``), :func:`columns_of` hands
the driver one :class:`RowColumn` per column, a view of the rows that is never
transposed, and the installed column writer encodes ``String``, integer and
``Decimal(P, S)`` columns natively in one pass over the rows: exactly the bytes the
driver writes (property-tested in ``tests/schemas/test_driver.py``).  Once an insert
statement was written, the column types the server gave are kept, and its next inserts
encode every column in a single pass over the rows (``encode_columns``: each row read
once, and a decimal that fills several cells of a row — a window row of one event — read
once), the same bytes as one pass per column; a type the server changed is learnt
again.  A decimal is read from its text and written only when it is exact at the
column's scale; any other type, and any cell the native writer refuses (a value out of
range or that would need rounding, an int in a decimal column, a type it does not take),
goes to the driver's own writer with that column as a list: the same bytes or the same
error as before.

Rows that come as a ``meterline_native.RawRows`` (the native plan's raw rows, kept as
columns: ``schemas/native/src/raw_rows.rs``) are not rows at all to the native writer: it
encodes each column from its buffer with the interpreter lock let go, the same bytes.
Rows that come as a ``meterline_native.Groups`` (the native plan's folded rows:
``schemas/native/src/folded.rs``) are encoded from its structs, the same bytes as their
lists.

On that path, and wherever the native module is missing, :func:`scaled` replaces the
driver's decimal conversion: it skips the round trip (``str`` then ``Decimal`` gives back
an equal ``Decimal``) and multiplies by the power of ten as a ``Decimal`` (made once per
column), rounded to the same context precision, so the integer is identical
(property-tested against the driver's own conversion).  Values that are not ``Decimal``
(floats, ints) and columns of scale 0 keep the driver's conversion.  Without the native
module, :func:`columns_of` transposes in C (``zip``) and the insert is sent ``columnar``.

:func:`install` puts :func:`scaled` in place of the driver's conversion, and the column
writer and block slicer in front of the driver's, once per process; ``ServerEngine``
calls it.  If the driver no longer has what these replace, they are not installed, rows
are transposed into lists and the driver's own code runs (slower, same result).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

__all__ = ["RowColumn", "columns_of", "install", "scaled"]

try:
    from meterline_native import encode_column
except ImportError:  # not built, or built from older sources: the driver writes every column
    encode_column = None
try:
    from meterline_native import encode_columns
except ImportError:  # built from older sources: one native pass per column
    encode_columns = None
try:
    from meterline_native import RawRows
except ImportError:  # built from older sources: rows are tuples
    RawRows = None
try:
    from meterline_native import Groups
except ImportError:  # built from older sources: folded rows are lists
    Groups = None


def columns_of(
    rows: Sequence[Sequence[Any]], insert: str | None = None
) -> list[list[Any]] | list[RowColumn]:
    """Rows to the columns of a columnar insert: views of the rows the installed writer
    encodes natively (:class:`RowColumn`), or lists (the driver converts some columns in
    place) where it is not installed.  Rows of different lengths are refused.

    ``insert`` names the statement (its text): once one insert of it was written, the
    column types the server gave are known, and the next one is encoded in one pass over
    its rows, every column at once (:meth:`_Rows.encoded_column`)."""
    if _NATIVE_COLUMNS and rows and type(rows) in _NATIVE_ROWS:
        width = len(rows[0])  # the native plan's raw rows or folded rows: no row read
        return [RowColumn(_Rows(rows, insert, width), index) for index in range(width)]
    if _NATIVE_COLUMNS and rows:
        widths = set(map(len, rows))
        if len(widths) > 1:
            raise ValueError("a row is shorter than the others")
        width = widths.pop()
        table = _Rows(rows if isinstance(rows, list) else list(rows), insert, width)
        return [RowColumn(table, index) for index in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


_NATIVE_ROWS = frozenset(kind for kind in (RawRows, Groups) if kind is not None)
"""Row containers of the native plan, whose columns the native writer reads directly."""
_SPECS: dict[str, list[str]] = {}
"""Per insert statement, the column types the server gave its last insert (in order)."""
_SPECS_KEPT = 1024
"""Statements remembered (there are a few per database); past them the map starts over."""


class _Rows:
    """The rows of one insert; a column the driver must write is taken out of them as a
    list (only that column: a ``Decimal`` column among text and integers)."""

    __slots__ = ("encoded", "insert", "learned", "rows", "specs", "width")

    def __init__(self, rows: Sequence[Sequence[Any]], insert: str | None, width: int) -> None:
        self.rows = rows
        self.insert = insert
        self.width = width
        self.specs = _SPECS.get(insert) if insert is not None else None
        self.encoded: list[bytes | None] | None = None
        self.learned: dict[int, str] = {}

    def column(self, index: int) -> list[Any]:
        return list(map(itemgetter(index), self.rows))

    def encoded_column(self, index: int, spec: str) -> bytes | None:
        """Column ``index`` of type ``spec`` in the Native format, or ``None``: the driver
        writes it (a type the native writer does not take, or a cell it refuses).

        When the statement's types are known and ``spec`` is the one known for the
        column, the first column asked encodes every column in one pass over the rows
        (``meterline_native.encode_columns``: the same bytes as one pass per column) and
        the others take theirs; otherwise (the first insert of a statement, a type the
        server changed) this column alone, and the types are learnt for the next insert."""
        specs = self.specs
        if specs is not None and index < len(specs) and specs[index] == spec:
            if self.encoded is None:
                self.encoded = encode_columns(self.rows, specs)
            return self.encoded[index]
        if specs is not None and self.insert is not None:  # the server's types changed
            _SPECS.pop(self.insert, None)
            self.specs = None
        self._learn(index, spec)
        try:
            data: bytes | None = encode_column(self.rows, index, spec)
        except (TypeError, ValueError, OverflowError):
            return None  # the driver's writer decides: same bytes or its own error
        return data

    def _learn(self, index: int, spec: str) -> None:
        if self.insert is None or encode_columns is None:
            return
        self.learned[index] = spec
        if len(self.learned) == self.width:
            if len(_SPECS) >= _SPECS_KEPT:
                _SPECS.clear()
            _SPECS[self.insert] = [self.learned[i] for i in range(self.width)]


class RowColumn:
    """Column ``index`` of an insert's rows, in place of the list the driver takes."""

    __slots__ = ("index", "table")

    def __init__(self, table: _Rows, index: int) -> None:
        self.table, self.index = table, index

    def __len__(self) -> int:
        return len(self.table.rows)

    def values(self) -> list[Any]:
        """The column as a list, for the driver's own writer."""
        return self.table.column(self.index)


def _write_column(
    context: Any, name: str, spec: str, items: Any, buf: Any, types_check: bool = False
) -> None:
    """The driver's ``write_column``, but a :class:`RowColumn` of a type the native writer
    takes is written in one call."""
    if type(items) is RowColumn:
        if not types_check and encode_column is not None:
            data = items.table.encoded_column(items.index, spec)
            if data is not None:
                buf.write(data)
                return
        items = items.values()
    _DRIVER_WRITE_COLUMN(context, name, spec, items, buf, types_check=types_check)


def _column_chunks(columns: Sequence[Any], n: int) -> Any:
    """The driver's ``column_chunks``: an insert of :class:`RowColumn` s that fits one block
    goes as it is (no slice copied per column)."""
    if columns and type(columns[0]) is RowColumn:
        if len(columns[0]) <= n:
            if len(columns[0]):
                yield list(columns)
            return
        columns = [column.values() for column in columns]
    yield from _DRIVER_COLUMN_CHUNKS(columns, n)


def scaled(column: Any, items: list[Any], nulls_map: Sequence[bool] | None = None) -> None:
    """``DecimalColumn.before_write_items``: each value as the integer the column stores."""
    scale = column.scale
    if scale < 1:
        _DRIVER_CONVERSION(column, items, nulls_map)
        return
    power = Decimal(10**scale)
    if not nulls_map and set(map(type, items)) <= _DECIMAL_ONLY:  # the type test in C
        items[:] = [int(item * power) for item in items]  # the worker's columns
        return
    null_value = column.null_value
    for i, item in enumerate(items):
        if nulls_map and nulls_map[i]:
            items[i] = null_value
        elif type(item) is Decimal:
            items[i] = int(item * power)
        else:
            items[i] = int(Decimal(str(item)) * power)


def install() -> None:
    """Put :func:`scaled` in place of the driver's conversion and the native column writer
    in front of the driver's (once; cheap to repeat)."""
    global _DRIVER_CONVERSION, _DRIVER_WRITE_COLUMN, _DRIVER_COLUMN_CHUNKS, _NATIVE_COLUMNS
    from clickhouse_driver import client
    from clickhouse_driver.columns.decimalcolumn import DecimalColumn
    from clickhouse_driver.streams import native

    original = DecimalColumn.__dict__.get("before_write_items")
    if original is not None and original is not scaled:
        _DRIVER_CONVERSION = original
        DecimalColumn.before_write_items = scaled
    if _NATIVE_COLUMNS or encode_column is None:
        return
    with _INSTALLING:  # engines are made on several threads (the API's pool)
        write_column = getattr(native, "write_column", None)
        chunks = getattr(client, "column_chunks", None)
        if write_column is None or chunks is None or write_column is _write_column:
            return
        _DRIVER_WRITE_COLUMN, _DRIVER_COLUMN_CHUNKS = write_column, chunks
        native.write_column = _write_column
        client.column_chunks = _column_chunks
        _NATIVE_COLUMNS = True


_INSTALLING = threading.Lock()


_DECIMAL_ONLY = frozenset({Decimal})

_DRIVER_CONVERSION: Any = None
"""The driver's own conversion, kept by :func:`install` for what :func:`scaled` leaves to it."""
_DRIVER_WRITE_COLUMN: Any = None
_DRIVER_COLUMN_CHUNKS: Any = None
"""The driver's column writer and block slicer, kept by :func:`install`."""
_NATIVE_COLUMNS = False
"""Whether :func:`install` put the native column writer in place."""
