"""Every DDL statement and query of the storage layer, on both ClickHouse engines.

The same SQL text runs on the Debian ClickHouse 18.16 server (clickhouse-driver) and on
chDB (current ClickHouse), and both must return the same rows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from schemas.metering.definitions import Aggregation
from schemas.storage.bootstrap import all_ddl
from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable, RawEventRow
from schemas.storage.invoices_table import InvoiceLineRow, InvoiceRow, InvoicesTable
from schemas.storage.migrations import drop_database, tables_of
from schemas.storage.sql import lit
from schemas.storage.windows_table import (
    FeedRow,
    MeterQuery,
    UsageQuery,
    WindowSize,
    WindowsTable,
    finish_value,
)

pytestmark = [pytest.mark.integration, pytest.mark.chdb]
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


def feed(
    partition: int, offset: int, minute: int, value: str, uniq: str = "", **kw: Any
) -> FeedRow:
    return FeedRow(
        namespace=kw.get("namespace", "ns"),
        meter=kw.get("meter", "m"),
        subject=kw.get("subject", "acme"),
        group_key=kw.get("group_key", '{"region":"eu"}'),
        window_start_s=T0 + 60 * minute,
        ingest_minute_s=kw.get("ingest_minute_s", T0 + 60 * minute),
        value=Decimal(value),
        uniq=uniq,
        event_ms=(T0 + 60 * minute) * 1000 + offset,
        source_partition=partition,
        source_offset=offset,
        source_index=kw.get("index", 0),
    )


def test_ddl_is_idempotent(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    for statement in all_ddl(database):  # a second time: IF NOT EXISTS everywhere
        eng.execute(statement.to_sql())
    tables = set(tables_of(eng, database))
    assert {"usage_events", "meter_window_feed", "meter_windows", "invoices"} <= tables


def test_drop_database_removes_every_table_and_can_be_repeated(
    engine: tuple[Engine, str],
) -> None:
    eng, database = engine
    for _ in range(2):  # IF EXISTS: a second drop is not an error
        eng.execute(drop_database(database).to_sql())
        assert tables_of(eng, database) == {}


def test_every_aggregation_merges_exactly(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    windows = WindowsTable(database)
    # two inserts (two parts) over three minutes; merged states must equal the whole
    eng.insert(*windows.insert_args([feed(0, 1, 0, "1.5", "u1"), feed(0, 2, 0, "2.25", "u2")]))
    eng.insert(
        *windows.insert_args([feed(0, 3, 1, "0.000000001", "u1"), feed(1, 9, 59, "10", "u3")])
    )
    expected = {
        Aggregation.SUM: Decimal("13.750000001"),
        Aggregation.COUNT: Decimal(4),
        Aggregation.UNIQUE_COUNT: Decimal(3),
        Aggregation.MAX: Decimal(10),
        Aggregation.MIN: Decimal("0.000000001"),
        Aggregation.AVG: Decimal("13.750000001") / 4,
        Aggregation.LATEST: Decimal(10),
    }
    for kind, value in expected.items():
        query = UsageQuery("ns", "m", kind, T0, T0 + 3600)
        rows = eng.execute(query.on(windows.name).to_sql())
        assert [(r[0], finish_value(kind, r[1:])) for r in rows] == [("acme", value)], kind


def test_latest_breaks_ties_by_index_within_a_record(engine: tuple[Engine, str]) -> None:
    """Events packed in one record share time and offset; the later index is the latest."""
    eng, database = engine
    windows = WindowsTable(database)
    batch = [feed(0, 4, 0, "5", index=1), feed(0, 4, 0, "7", index=2), feed(0, 4, 0, "6")]
    eng.insert(*windows.insert_args(batch))
    rows = eng.execute(
        (UsageQuery("ns", "m", Aggregation.LATEST, T0, T0 + 60)).on(windows.name).to_sql()
    )
    assert [(r[0], finish_value(Aggregation.LATEST, r[1:])) for r in rows] == [("acme", Decimal(7))]


def test_progress_is_per_partition(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    windows = WindowsTable(database)
    eng.insert(*windows.insert_args([feed(0, 5, 0, "1"), feed(2, 40, 0, "1"), feed(0, 7, 3, "1")]))
    assert eng.execute(windows.progress("ns").to_sql()) == [(0, 7), (2, 40)]
    assert eng.execute(windows.progress("other").to_sql()) == []


@pytest.mark.parametrize(
    ("size", "tz", "buckets"),
    [
        (WindowSize.MINUTE, "UTC", [T0, T0 + 60, T0 + 3600 * 5]),
        (WindowSize.HOUR, "UTC", [T0, T0 + 3600 * 5]),
        (WindowSize.HOUR, "Asia/Kolkata", [T0 - 1800, T0 + 3600 * 5 - 1800]),
        # 2026-11-01T05:00Z is 01:00 EDT on Nov 1 (DST ends at 06:00Z): two local days
        (WindowSize.DAY, "America/New_York", [T0 - 3600 * 20, T0 + 3600 * 4]),
        (WindowSize.MONTH, "UTC", [T0]),
    ],
)
def test_meter_query_windows_and_timezones(
    engine: tuple[Engine, str], size: WindowSize, tz: str, buckets: list[int]
) -> None:
    eng, database = engine
    windows = WindowsTable(database)
    eng.insert(
        *windows.insert_args(
            [
                feed(0, 1, 0, "1"),
                feed(0, 2, 1, "2", group_key='{"region":"us"}'),
                feed(0, 3, 300, "4"),
                feed(0, 4, 300, "100", subject="other"),
            ]
        )
    )
    query = MeterQuery(
        "ns", "m", Aggregation.SUM, T0 - 86400, T0 + 86400, size, tz, subjects=("acme",)
    )
    rows = eng.execute(query.on(windows.name).to_sql())
    assert [r[0] for r in rows] == buckets
    assert sum(finish_value(Aggregation.SUM, r[2:]) for r in rows) == 7
    grouped = MeterQuery(
        "ns",
        "m",
        Aggregation.SUM,
        T0,
        T0 + 86400,
        WindowSize.DAY,
        "UTC",
        group_by=("region",),
        filter_group_by=(("region", "eu"),),
    )
    rows = eng.execute(grouped.on(windows.name).to_sql())
    assert [(r[1], r[2], finish_value(Aggregation.SUM, r[3:])) for r in rows] == [
        ("acme", "eu", Decimal(5)),
        ("other", "eu", Decimal(100)),
    ]


def test_raw_events_collapse_rewrites(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = EventsTable(database)
    row = RawEventRow(
        "ns", "src", "id-1", "t", "acme", T0 * 1000 + 5, '{"a":1}', T0 * 1000 + 9, 0, 3, 0, "h"
    )
    eng.insert(*table.insert_args([row]))
    assert eng.execute(table.rows_written("ns").to_sql()) == [(1,)]
    eng.insert(*table.insert_args([row]))  # a batch written again after a crash
    assert eng.execute(table.count("ns").to_sql()) == [(1,)]
    assert eng.execute(table.late("ns").to_sql()) == [(0,)]
    late = row._replace(id="id-2", source_offset=4, late=True)
    eng.insert(*table.insert_args([late, late]))
    assert eng.execute(table.late("ns").to_sql()) == [(1,)]


def test_invoices_existing_and_period(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = InvoicesTable(database)
    invoice = InvoiceRow(
        "ns", "inv_1", "acme", "pro", "USD", T0, T0 + 2592000, Decimal("12.34"), 1, 1, "{}"
    )
    eng.insert(*table.insert_invoices([invoice, invoice]))
    eng.insert(
        *table.insert_lines(
            [
                InvoiceLineRow(
                    "ns", "inv_1", 1, "m", "per_unit", Decimal("3"), Decimal("12.34"), "12.3399"
                )
            ]
        )
    )
    assert eng.execute(table.existing("ns", ["inv_1", "inv_2"]).to_sql()) == [("inv_1",)]
    assert eng.execute(table.existing("ns", []).to_sql()) == []
    rows = eng.execute(table.for_period("ns", T0).to_sql())
    assert [(r[0], r[1], r[2], Decimal(str(r[3]))) for r in rows] == [
        ("inv_1", "acme", "USD", Decimal("12.34"))
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        (Decimal("1.50"), "toDecimal128('1.50', 9)"),
        (7, "7"),
        (None, "NULL"),
        (["a", 1], "['a', 1]"),
        ("é's".encode(), "'é\\'s'"),  # UTF-8 bytes are their text, not a list of numbers
    ],
)
def test_literals(value: object, text: str) -> None:
    assert lit(value) == text


def test_quoted_literal_round_trips_on_both_engines(engine: tuple[Engine, str]) -> None:
    eng, _ = engine
    nasty = "quote ' backslash \\ tab \t end"
    assert eng.execute(f"SELECT {lit(nasty)}") == [(nasty,)]


def test_usage_as_of_an_ingestion_cutoff(engine: tuple[Engine, str]) -> None:
    """Usage read with a cutoff ignores what arrived later; the rest is the adjustment."""
    eng, database = engine
    windows = WindowsTable(database)
    eng.insert(
        *windows.insert_args(
            [
                feed(0, 1, 0, "5"),  # on time
                feed(0, 2, 10, "7", ingest_minute_s=T0 + 86400 * 3),  # arrived 3 days late
            ]
        )
    )
    cutoff = T0 + 86400
    as_of = UsageQuery("ns", "m", Aggregation.SUM, T0, T0 + 3600, ingested_before_s=cutoff)
    late = UsageQuery("ns", "m", Aggregation.SUM, T0, T0 + 3600, ingested_from_s=cutoff)
    whole = UsageQuery("ns", "m", Aggregation.SUM, T0, T0 + 3600)

    def value(q: UsageQuery) -> list[Decimal]:
        return [finish_value(q.kind, r[1:]) for r in eng.execute(q.on(windows.name).to_sql())]

    assert value(as_of) == [Decimal(5)]
    assert value(late) == [Decimal(7)]
    assert value(whole) == [Decimal(12)]


def test_usage_narrowed_to_a_few_subjects_reads_only_theirs(engine: tuple[Engine, str]) -> None:
    """A quote reads one customer's subjects in the query, not every subject's rows."""
    eng, database = engine
    windows = WindowsTable(database)
    eng.insert(
        *windows.insert_args(
            [feed(0, n, 0, str(n), subject=subject) for n, subject in enumerate("abcde", 1)]
        )
    )
    narrowed = UsageQuery("ns", "m", Aggregation.SUM, T0, T0 + 60, subjects=("b", "d", "zz"))
    assert "subject IN ('b', 'd', 'zz')" in narrowed.on(windows.name).to_sql()
    rows = eng.execute(narrowed.on(windows.name).to_sql())
    assert [(r[0], finish_value(Aggregation.SUM, r[1:])) for r in rows] == [
        ("b", Decimal(2)),
        ("d", Decimal(4)),
    ]
    nobody = UsageQuery("ns", "m", Aggregation.SUM, T0, T0 + 60, subjects=())
    assert eng.execute(nobody.on(windows.name).to_sql()) == []
