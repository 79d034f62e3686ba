"""The driver hooks of the write path (``schemas.storage.driver``) against the driver's
own conversion, and a columnar insert read back from the server."""

from __future__ import annotations

from decimal import Decimal, localcontext
from types import SimpleNamespace

import pytest
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


def test_rows_become_columns_and_a_short_row_is_refused() -> None:
    assert driver.columns_of([(1, "a"), (2, "b")]) == [[1, 2], ["a", "b"]]
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
