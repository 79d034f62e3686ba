"""The driver hooks of the write path (``schemas.storage.driver``) against the driver's
own conversion, and a columnar insert read back from the server."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, localcontext
from types import SimpleNamespace

import pytest
from clickhouse_driver import Client
from clickhouse_driver.columns.decimalcolumn import (
    Decimal32Column,
    Decimal64Column,
    Decimal128Column,
    DecimalColumn,
)
from hypothesis import given
from hypothesis import strategies as st

from schemas.storage import driver
from schemas.storage.engine import Engine


def _column(cls: type[DecimalColumn], precision: int, scale: int) -> DecimalColumn:
    context = SimpleNamespace(client_settings={})
    return cls(precision, scale, context=context)


def _driver_conversion(column: DecimalColumn, items: list[object]) -> list[object]:
    """What clickhouse-driver itself does (its source, restated), under the precision its
    ``_write_data`` sets."""
    out = list(items)
    with localcontext() as ctx:
        ctx.prec = column.max_precision
        for i, item in enumerate(out):
            if column.scale >= 1:
                out[i] = int(Decimal(str(item)) * 10**column.scale)
            else:
                out[i] = int(Decimal(str(item)))
    return out


def _hooked(column: DecimalColumn, items: list[object]) -> list[object]:
    out = list(items)
    driver.install()
    with localcontext() as ctx:
        ctx.prec = column.max_precision
        driver.scaled(column, out)
    return out


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.builds(
    Decimal, st.from_regex(r"-?[0-9]{1,45}(\.[0-9]{1,30})?(E[+-]?[0-9]{1,2})?", fullmatch=True)
)


@pytest.mark.parametrize(
    ("cls", "precision", "scale"),
    [
        (Decimal128Column, 38, 9),
        (Decimal128Column, 38, 0),
        (Decimal64Column, 18, 4),
        (Decimal32Column, 9, 2),
        (Decimal128Column, 38, 30),
    ],
)
@given(values=st.lists(decimals | st.integers(-(10**20), 10**20), min_size=1, max_size=20))
def test_scaled_gives_the_driver_s_own_integers(
    cls: type[DecimalColumn], precision: int, scale: int, values: list[object]
) -> None:
    column = _column(cls, precision, scale)
    assert _hooked(column, values) == _driver_conversion(column, values)


def test_scaled_keeps_nulls_and_the_driver_s_conversion_of_floats() -> None:
    column = _column(Decimal128Column, 38, 9)
    driver.install()
    items: list[object] = [Decimal("1.5"), 0.1, None]
    with localcontext() as ctx:
        ctx.prec = 38
        driver.scaled(column, items, [False, False, True])
    assert items == [1_500_000_000, 100_000_000, column.null_value]


def _lists(columns: Sequence[object]) -> list[object]:
    return [c.values() if isinstance(c, driver.RowColumn) else c for c in columns]


def test_rows_become_columns_and_a_short_row_is_refused() -> None:
    assert _lists(driver.columns_of([(1, "a"), (2, "b")])) == [[1, 2], ["a", "b"]]
    with pytest.raises(ValueError, match="shorter"):
        driver.columns_of([(1, "a"), (2,)])


def test_an_insert_reads_back_exactly(engine: tuple[Engine, str]) -> None:
    """On the server: sent as columns with the hooked conversion; on chDB: as SQL."""
    db, database = engine
    table = f"{database}.driver_check"
    db.execute(f"CREATE TABLE {table} (k String, v Decimal(38, 9), n UInt64) ENGINE = Memory")
    rows = [
        ("a", Decimal("12345678901234567890.123456789"), 1),
        ("b", Decimal("-0.000000001"), 2),
        ("c", Decimal("7"), 3),
        ("d", Decimal("1.5E+3"), 4),
    ]
    db.insert(table, ("k", "v", "n"), rows)
    assert db.execute(f"SELECT k, v, n FROM {table} ORDER BY k") == rows


def test_a_text_column_takes_utf8_bytes_as_their_text(engine: tuple[Engine, str]) -> None:
    """The worker hands each event's line to ``usage_events`` as its exact bytes: both
    engines store what the text would have stored (quotes, backslashes, non-ASCII)."""
    db, database = engine
    table = f"{database}.bytes_check"
    db.execute(f"CREATE TABLE {table} (k UInt8, t String) ENGINE = Memory")
    text = '{"id":"é\\\\u00e9 \'quoted\' \\"x\\"","data":{"v":1.50}}\u2028\U0001f600'
    db.insert(table, ("k", "t"), [(1, text.encode()), (2, text)])
    assert db.execute(f"SELECT k, t FROM {table} ORDER BY k") == [(1, text), (2, text)]


class _Capture:
    """A socket that keeps what the driver's buffered writer sends."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data


def _written(
    spec: str, items: Sequence[object], *, hooked: bool, rows: list[tuple[object, ...]]
) -> bytes:
    """The bytes one column's data takes on the wire, written by the driver's own
    ``write_column`` (``hooked=False``) or by the installed one from a :class:`RowColumn`."""
    from clickhouse_driver.bufferedwriter import BufferedSocketWriter
    from clickhouse_driver.columns.service import write_column

    driver.install()
    sock = _Capture()
    buf = BufferedSocketWriter(sock, 1 << 16)
    context = Client("127.0.0.1").connection.context  # the settings of a client, unconnected
    if hooked:
        column = driver.columns_of(rows)[1]
        driver._write_column(context, "c", spec, column, buf)
    else:
        write_column(context, "c", spec, list(items), buf)
    buf.flush()
    return bytes(sock.sent)


INTEGER_SPECS = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}


def _rows(items: Sequence[object]) -> list[tuple[object, ...]]:
    return [("x", item, i) for i, item in enumerate(items)]


def test_the_native_writer_is_installed() -> None:
    driver.install()
    assert getattr(driver, "encode_column", None) is not None  # CI builds the native module
    assert isinstance(driver.columns_of([(1, "a")])[0], driver.RowColumn)


@given(items=st.lists(st.text() | st.binary(), min_size=1, max_size=30))
def test_a_native_text_column_is_the_driver_s_bytes(items: list[object]) -> None:
    encodable = [i for i in items if not isinstance(i, str) or not _surrogates(i)] or [""]
    rows = _rows(encodable)
    assert _written("String", encodable, hooked=True, rows=rows) == _written(
        "String", encodable, hooked=False, rows=rows
    )


def _surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize("spec", sorted(INTEGER_SPECS))
@given(data=st.data())
def test_a_native_integer_column_is_the_driver_s_bytes(spec: str, data: st.DataObject) -> None:
    low, high = INTEGER_SPECS[spec]
    items = data.draw(st.lists(st.integers(low, high) | st.booleans(), min_size=1, max_size=30))
    rows = _rows(items)
    assert _written(spec, items, hooked=True, rows=rows) == _written(
        spec, items, hooked=False, rows=rows
    )


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("UInt32", 2**32),
        ("UInt8", -1),
        ("Int16", 2**15),
        ("Int64", 2**63),
        ("String", 5),
        ("UInt64", "7"),
        ("String", "\ud800"),
    ],
)
def test_a_cell_the_native_writer_refuses_gets_the_driver_s_own_error(
    spec: str, bad: object
) -> None:
    """Out of range or of the wrong type: the column goes to the driver's writer, which
    raises what it raised before."""
    from clickhouse_driver.errors import TypeMismatchError

    rows = _rows([1 if spec != "String" else "a", bad])
    with pytest.raises(
        (TypeMismatchError, AttributeError, TypeError, UnicodeEncodeError)
    ) as native:
        _written(spec, [], hooked=True, rows=rows)
    with pytest.raises((TypeMismatchError, AttributeError, TypeError, UnicodeEncodeError)) as own:
        _written(spec, [r[1] for r in rows], hooked=False, rows=rows)
    assert type(native.value) is type(own.value)
    assert str(native.value) == str(own.value)


def _assert_same_bytes_or_error(spec: str, values: list[object]) -> None:
    """The installed writer writes the driver's own bytes for ``values``, or raises the
    driver's own exception type."""
    rows = _rows(values)
    try:
        own = _written(spec, values, hooked=False, rows=rows)
    except Exception as exc:  # noqa: BLE001 - the driver's own refusal, compared below
        with pytest.raises(type(exc)):
            _written(spec, values, hooked=True, rows=rows)
        return
    assert _written(spec, values, hooked=True, rows=rows) == own


DECIMAL_SPECS = [
    "Decimal(38, 9)",
    "Decimal(38, 0)",
    "Decimal(18, 4)",
    "Decimal(9, 2)",
    "Decimal(38, 30)",
]


@pytest.mark.parametrize("spec", DECIMAL_SPECS)
@given(values=st.lists(decimals | st.integers(-(10**20), 10**20), min_size=1, max_size=20))
def test_a_native_decimal_column_is_the_driver_s_bytes_or_the_driver_s_error(
    spec: str, values: list[object]
) -> None:
    """Decimals exact at the column's scale are encoded natively; the rest (rounding,
    ints, out of range) by the driver: either way its bytes, or its error."""
    _assert_same_bytes_or_error(spec, values)


@pytest.mark.parametrize(
    "value",
    ["0", "-0", "-0E-9", "1.5E+3", "0E+100000000", "123456789.123456789", "-1E-9",
     "99999999999999999999999999999.999999999", "1E+29", "1E-10", "NaN", "-Infinity"],
)  # fmt: skip
def test_decimal_edges_are_the_driver_s_bytes_or_its_error(value: str) -> None:
    _assert_same_bytes_or_error("Decimal(38, 9)", [Decimal(value)])


def test_a_type_the_native_writer_does_not_take_goes_to_the_driver() -> None:
    items: list[object] = [[1, 2], [3]]
    rows = _rows(items)
    spec = "Array(UInt8)"
    assert _written(spec, items, hooked=True, rows=rows) == _written(
        spec, items, hooked=False, rows=rows
    )


def test_rows_of_several_blocks_are_sliced_by_the_driver() -> None:
    driver.install()
    columns = driver.columns_of([(i, str(i)) for i in range(5)])
    blocks = list(driver._column_chunks(columns, 2))
    assert blocks == [[[0, 1], ["0", "1"]], [[2, 3], ["2", "3"]], [[4], ["4"]]]


def test_rows_of_one_block_go_as_they_are() -> None:
    driver.install()
    columns = driver.columns_of([(i, str(i)) for i in range(5)])
    (block,) = driver._column_chunks(columns, 5)
    assert [id(c) for c in block] == [id(c) for c in columns]
    assert list(driver._column_chunks(driver.columns_of([]), 5)) == []


def test_exact_decimals_are_encoded_natively_and_the_rest_declined() -> None:
    from meterline_native import encode_column

    values: list[object] = [Decimal("1.5"), Decimal("-2"), Decimal("0.000000001"), Decimal("-0")]
    rows = _rows(values)
    native = encode_column(rows, 1, "Decimal(38, 9)")
    assert native is not None
    assert native == _written("Decimal(38, 9)", values, hooked=False, rows=rows)
    assert len(native) == 16 * len(values)
    with pytest.raises(ValueError, match="not exact"):
        encode_column(_rows([Decimal("1E-10")]), 1, "Decimal(38, 9)")  # the driver truncates
    with pytest.raises(TypeError):
        encode_column(_rows([7]), 1, "Decimal(38, 9)")  # an int: the driver converts it
    assert encode_column(rows, 1, "Decimal(76, 9)") is None  # Int256: the driver's


def test_installing_from_several_threads_keeps_the_driver_s_writer_behind_the_native_one() -> None:
    import threading

    from clickhouse_driver.streams import native

    threads = [threading.Thread(target=driver.install) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert native.write_column is driver._write_column
    assert driver._DRIVER_WRITE_COLUMN is not driver._write_column  # no writer calling itself


def test_rows_that_are_lists_are_the_same_bytes_as_tuples() -> None:
    """The worker's folded groups are inserted as the lists they were built in."""
    from meterline_native import encode_column

    rows = _rows([Decimal("1.5"), Decimal("-2"), Decimal("7.000000001")])
    as_lists = [list(row) for row in rows]
    for index, spec in ((0, "String"), (1, "Decimal(38, 9)"), (2, "UInt32")):
        assert encode_column(as_lists, index, spec) == encode_column(rows, index, spec)
    assert encode_column(as_lists, 1, "Decimal(38, 9)") == _written(
        "Decimal(38, 9)", [row[1] for row in rows], hooked=False, rows=rows
    )
    with pytest.raises(IndexError):
        encode_column([["x"]], 1, "String")


ONE_PASS_SPECS = [
    "String",
    "Int64",
    "Decimal(38, 9)",
    "Decimal(9, 2)",
    "UInt8",
    "Array(UInt8)",
    "Decimal(38, 9)",
]
_cells = (
    st.text(max_size=5)
    | st.binary(max_size=5)
    | st.integers(-(2**70), 2**70)
    | decimals
    | st.just(Decimal("1E-10"))
    | st.none()
)


def _per_column(rows: list[list[object]], specs: list[str]) -> list[bytes | None]:
    from meterline_native import encode_column

    out: list[bytes | None] = []
    for index, spec in enumerate(specs):
        try:
            out.append(encode_column(rows, index, spec))
        except (TypeError, ValueError, OverflowError):
            out.append(None)
    return out


@given(
    rows=st.lists(st.lists(_cells, min_size=7, max_size=7), min_size=1, max_size=12),
    shared=st.lists(decimals, min_size=1, max_size=12),
)
def test_one_pass_is_each_column_s_bytes_or_its_refusal(
    rows: list[list[object]], shared: list[Decimal]
) -> None:
    """``encode_columns`` against one ``encode_column`` per column, on rows mixing every
    cell type (wrong types, values out of range or inexact at a scale) and rows whose
    decimal cells are one object written at two scales (a window row of one event)."""
    from meterline_native import encode_columns

    for row, value in zip(rows, shared, strict=False):
        row[2] = row[3] = row[6] = value
    assert encode_columns(rows, ONE_PASS_SPECS) == _per_column(rows, ONE_PASS_SPECS)
    as_tuples = [tuple(row) for row in rows]
    assert encode_columns(as_tuples, ONE_PASS_SPECS) == _per_column(rows, ONE_PASS_SPECS)


def test_a_decimal_too_wide_for_one_column_still_fills_the_other() -> None:
    from meterline_native import encode_columns

    value = Decimal("123456789.5")  # fits Decimal(38, 9), not Decimal(9, 2)'s 32 bits
    rows = [["x", 1, value, value, 1, [1], value]]
    encoded = encode_columns(rows, ONE_PASS_SPECS)
    assert encoded[3] is None
    assert encoded[5] is None
    assert encoded[2] == encoded[6] == _per_column(rows, ONE_PASS_SPECS)[2]


@pytest.mark.parametrize("engine", ["server"], indirect=True)  # chDB inserts as SQL
def test_a_statement_s_second_insert_is_encoded_in_one_pass(
    engine: tuple[Engine, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first insert of a statement learns the server's column types; the next ones
    encode every column in one pass (no per-column call); a type the server changed is
    noticed and learnt again; every insert reads back exactly."""
    db, database = engine
    from meterline_native import encode_column

    table = f"{database}.one_pass_check"
    db.execute(f"CREATE TABLE {table} (k String, v Decimal(38, 9), n UInt64) ENGINE = Memory")
    calls: list[int] = []

    def counted(rows: object, index: int, spec: str) -> object:
        calls.append(index)
        return encode_column(rows, index, spec)

    monkeypatch.setattr(driver, "encode_column", counted)
    statement = f"INSERT INTO {table} (k, v, n) VALUES"
    driver._SPECS.pop(statement, None)
    value = Decimal("2.5")
    db.insert(table, ("k", "v", "n"), [("a", value, 1)])
    assert calls == [0, 1, 2]
    assert driver._SPECS[statement] == ["String", "Decimal(38, 9)", "UInt64"]
    calls.clear()
    db.insert(table, ("k", "v", "n"), [("b", Decimal("-7.000000001"), 2), ("c", value, 3)])
    assert calls == []
    driver._SPECS[statement] = ["String", "Decimal(18, 4)", "UInt64"]  # not what the server says
    db.insert(table, ("k", "v", "n"), [("d", Decimal("1E+3"), 4)])
    assert calls == [1, 2]
    assert statement not in driver._SPECS  # learnt again by the next insert
    assert db.execute(f"SELECT k, v, n FROM {table} ORDER BY k") == [
        ("a", value, 1),
        ("b", Decimal("-7.000000001"), 2),
        ("c", value, 3),
        ("d", Decimal("1000"), 4),
    ]
