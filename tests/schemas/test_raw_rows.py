"""A chunk's raw rows as columns (``meterline_native.RawRows``, the native plan's
``BatchPlan.raw_rows``): read as the tuples the Python planner builds, encoded as the
driver's own bytes, split per shard in order, and inserted exactly on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from meterline_native import RawRows, encode_column, encode_columns

from schemas.storage import driver
from schemas.storage.engine import Engine
from schemas.storage.events_table import COLUMNS, RawRow

RAW_SPECS = [
    "String", "String", "String", "String", "String", "Int64", "String", "Int64",
    "UInt32", "UInt64", "UInt32", "String", "UInt8",
]  # fmt: skip
"""``usage_events``' column types (``schemas/storage/layouts``) in ``COLUMNS`` order."""

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_row = st.tuples(
    _text,
    _text,
    _text,
    _text,
    st.sampled_from(["acme", "globex", "initech", "é\u2028"]),
    st.integers(-(2**63), 2**63 - 1),
    st.binary(max_size=20) | _text,
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**32 - 1),
    _text,
    st.booleans(),
)


def _as_stored(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row as ``RawRows`` reads it back: ``data`` as bytes (text is held encoded)."""
    data = row[6].encode() if isinstance(row[6], str) else row[6]
    return (*row[:6], data, *row[7:])


@given(rows=st.lists(_row, max_size=15))
def test_raw_rows_read_back_as_the_planner_s_tuples(rows: list[RawRow]) -> None:
    raw = RawRows(rows)
    expected = [_as_stored(row) for row in rows]
    assert len(raw) == len(rows)
    assert list(raw) == expected
    assert raw.rows() == expected
    assert raw == expected
    assert raw == RawRows(expected)
    assert [[type(cell) for cell in row] for row in raw] == [
        [type(cell) for cell in row] for row in expected
    ]
    if rows:
        assert raw[-1] == expected[-1]
        assert raw[0] == expected[0]
    with pytest.raises(IndexError):
        raw[len(rows)]
    if rows:
        assert raw != expected[:-1]


@given(rows=st.lists(_row, min_size=1, max_size=15))
def test_raw_rows_encode_every_column_as_the_tuples_do(rows: list[RawRow]) -> None:
    """The columns of ``RawRows`` are the bytes ``encode_columns`` writes for the same rows
    as tuples — which ``test_driver`` holds to clickhouse-driver's own writer."""
    raw = RawRows(rows)
    as_tuples = [_as_stored(row) for row in rows]
    assert encode_columns(raw, RAW_SPECS) == encode_columns(as_tuples, RAW_SPECS)
    for index, spec in enumerate(RAW_SPECS):
        assert encode_column(raw, index, spec) == encode_column(as_tuples, index, spec)


def test_a_type_that_is_not_the_column_s_goes_to_the_driver() -> None:
    """A spec of another kind, or a value that does not fit it, gives ``None`` in one pass
    and an error alone (the driver then writes the column, or refuses it), as for tuples."""
    row = ("ns", "s", "i", "t", "acme", -5, b"{}", 300, 7, 8, 9, "ab", True)
    raw = RawRows([row])
    specs = ["Int64", "String", "String", "String", "String", "UInt64", "String", "UInt8",
             "UInt32", "UInt64", "UInt32", "Decimal(38, 9)", "UInt8", "String"]  # fmt: skip
    encoded = encode_columns(raw, specs)
    assert [n for n, data in enumerate(encoded) if data is None] == [0, 5, 7, 11, 13]
    assert encoded[8] == (7).to_bytes(4, "little")
    assert encoded[12] == b"\x01"
    with pytest.raises(ValueError, match="does not fit"):
        encode_column(raw, 5, "UInt64")
    assert encode_column(raw, 0, "Array(String)") is None
    with pytest.raises(IndexError):
        encode_column(raw, 13, "String")


def test_a_row_that_is_not_a_raw_row_is_refused_with_its_cell_named() -> None:
    raw = RawRows()
    with pytest.raises(ValueError, match="13 cells"):
        raw.append(("ns", "s"))
    good = ["ns", "s", "i", "t", "acme", 1, b"{}", 2, 3, 4, 5, "ab", False]
    with pytest.raises(TypeError, match="cell 4 is a str"):
        raw.append([*good[:4], 7, *good[5:]])
    with pytest.raises(TypeError, match="data cell"):
        raw.append([*good[:6], 1.5, *good[7:]])
    assert len(raw) == 0
    raw.append(good)
    assert raw == [tuple(good)]


@given(rows=st.lists(_row, max_size=20), parts=st.integers(1, 3))
def test_a_split_keeps_each_shard_s_rows_in_order(rows: list[RawRow], parts: int) -> None:
    asked: list[str] = []

    def shard(subject: str) -> int:
        asked.append(subject)
        return len(subject) % parts

    split = RawRows(rows).split(shard, parts)
    assert len(split) == parts
    for number, part in enumerate(split):
        assert list(part) == [_as_stored(r) for r in rows if len(r[4]) % parts == number]
    assert sorted(asked) == sorted({row[4] for row in rows})  # once per subject


def test_a_split_into_a_shard_that_does_not_exist_is_refused() -> None:
    raw = RawRows([("ns", "s", "i", "t", "acme", 1, b"{}", 2, 3, 4, 5, "ab", False)])
    with pytest.raises(IndexError, match="shard 2 of a split into 2"):
        raw.split(lambda subject: 2, 2)


def test_raw_rows_are_inserted_exactly(engine: tuple[Engine, str]) -> None:
    """Through ``Engine.insert``: on the server as natively encoded columns, on chDB as
    SQL values read from the same rows."""
    db, database = engine
    table = f"{database}.raw_rows_check"
    columns = ", ".join(f"{name} {spec}" for name, spec in zip(COLUMNS, RAW_SPECS, strict=True))
    db.execute(f"CREATE TABLE {table} ({columns}) ENGINE = Memory")
    rows = [
        ("default", "src", f"id-{n}", "job", "acme", 1764940000000 + n,
         f'{{"id":"id-{n}","v":"é\\u00e9 \'q\'"}}'.encode(), 1764940000500, 3, 2**40 + n, n,
         "0f" * 16, n % 2 == 0)
        for n in range(5)
    ]  # fmt: skip
    driver.install()
    db.insert(table, COLUMNS, RawRows(rows))
    stored = db.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id")
    assert stored == [(*r[:6], r[6].decode(), *r[7:12], int(r[12])) for r in rows]
