"""Schema migrations on both ClickHouse engines: a database of the last build before
migrations (its frozen DDL, ``layouts/v1.sql``) is upgraded with its data intact; a new
database and a migrated one have the same layout; a stale schema is refused with the
command; an interrupted run is finished by the next one; a second runner is locked out.
The upgrade with a worker writing through it is in ``tests/e2e/test_migrate_live.py``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from schemas.errors import InvalidInput
from schemas.metering.definitions import Aggregation, load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import (
    CURRENT_VERSION,
    MigrationLocked,
    SchemaNotCurrent,
    applied_versions,
    ensure_schema,
    require_configured,
    require_current,
)
from schemas.storage.engine import Engine, ServerEngine
from schemas.storage.events_table import EventsTable, RawEventRow
from schemas.storage.invoices_table import InvoiceRow, InvoicesTable
from schemas.storage.migrations import (
    MigrationContext,
    MigrationsTable,
    drop_database,
    index_granularity,
    tables_of,
)
from schemas.storage.schema_versions import FineGrainedWindows, v1_ddl
from schemas.storage.window_states import FULL_STATES, WindowStates, needed_states, states_in
from schemas.storage.windows_table import (
    MINUTE_GRANULE_ROWS,
    FeedRow,
    MeterQuery,
    UsageQuery,
    WindowSize,
    WindowsTable,
)
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chdb]
T0 = 1_790_812_800  # 2026-10-01T00:00:00Z


@pytest.fixture(params=["server", "chdb"])
def blank(request: pytest.FixtureRequest, stack: Settings) -> Iterator[tuple[Engine, str]]:
    """An engine and the name of a database that does not exist yet."""
    database = "mlm_" + uuid.uuid4().hex[:10]
    if request.param == "server":
        eng: Engine = ServerEngine(stack.clickhouse_host, stack.clickhouse_tcp_port)
    else:
        eng = request.getfixturevalue("chdb_engine")
    yield eng, database
    eng.execute(drop_database(database).to_sql())
    if request.param == "server":
        eng.close()


def previous_build(eng: Engine, database: str) -> None:
    """The database as the last build before migrations left it, with data."""
    for statement in v1_ddl(database):
        eng.execute(statement.to_sql())
    windows = WindowsTable(database)
    feed = [
        FeedRow(
            "ns",
            "m",
            f"s{i % 4}",
            "{}",
            T0 + 600 * i,
            T0 + 600 * i + 60 * (i % 3),
            Decimal(i) / 4,
            f"u{i % 7}",
            (T0 + 600 * i) * 1000,
            i % 2,
            i,
        )
        for i in range(400)
    ]
    eng.insert(*windows.insert_args(feed))
    eng.insert(
        *EventsTable(database).insert_args(
            [
                RawEventRow(
                    "ns", "src", f"e{i}", "t", "s0", T0 * 1000 + i, "{}", T0 * 1000, 0, i, 0, "h"
                )
                for i in range(20)
            ]
        )
    )
    eng.insert(
        *InvoicesTable(database).insert_invoices(
            [
                InvoiceRow(
                    "ns",
                    "inv_1",
                    "acme",
                    "starter",
                    "USD",
                    T0,
                    T0 + 86400 * 31,
                    Decimal("12.34"),
                    2,
                    T0 * 1000,
                    '{"doc": 1}',
                )
            ]
        )
    )


def snapshot(eng: Engine, database: str) -> dict[str, object]:
    """What must survive an upgrade: usage as billing reads it, windows, raw events,
    invoices, progress."""
    windows = WindowsTable(database)
    out: dict[str, object] = {}
    for kind in Aggregation:
        usage = UsageQuery("ns", "m", kind, T0, T0 + 86400 * 40, None, T0 + 86400 * 10)
        out[f"usage {kind}"] = eng.execute(usage.on(windows.name).to_sql())
        hourly = MeterQuery("ns", "m", kind, T0, T0 + 86400 * 40, WindowSize.HOUR)
        out[f"hourly {kind}"] = eng.execute(hourly.on(windows.name).to_sql())
    out["progress"] = eng.execute(windows.progress("ns").to_sql())
    out["events"] = eng.execute(EventsTable(database).count("ns").to_sql())
    out["invoices"] = eng.execute(f"SELECT * FROM {database}.invoices ORDER BY invoice_id")
    return out


def test_a_previous_build_database_is_upgraded_with_its_data_intact(
    blank: tuple[Engine, str],
) -> None:
    eng, database = blank
    previous_build(eng, database)
    before = snapshot(eng, database)
    with pytest.raises(SchemaNotCurrent, match=r"python -m streams migrate"):
        require_current(eng, database)

    assert ensure_schema(eng, database) == list(range(2, CURRENT_VERSION + 1))
    assert applied_versions(eng, database) == list(range(1, CURRENT_VERSION + 1))
    assert snapshot(eng, database) == before
    require_current(eng, database)  # the worker and the API start now
    hows = eng.execute(
        f"SELECT version, how FROM {MigrationsTable(database).name} ORDER BY version"
    )
    assert hows == [(1, "adopted"), *((n, "applied") for n in range(2, CURRENT_VERSION + 1))]

    # the rollups hold the history: the daily totals equal the minute table's
    daily = MeterQuery("ns", "m", Aggregation.SUM, T0, T0 + 86400 * 40, WindowSize.DAY)
    assert eng.execute(daily.on(f"{database}.meter_windows_daily").to_sql()) == eng.execute(
        daily.on(f"{database}.meter_windows").to_sql()
    )
    assert ensure_schema(eng, database) == []  # idempotent


def normalised_layout(eng: Engine, database: str) -> dict[str, str]:
    rows = eng.execute(
        "SELECT name, engine, sorting_key, create_table_query FROM system.tables"
        f" WHERE database = '{database}' AND name != 'schema_migrations'"
    )
    return {
        str(name): re.sub(r"\s+", " ", f"{kind} | {key} | {sql}".replace(database, "DB"))
        for name, kind, key, sql in rows
    }


def test_a_new_database_has_the_layout_the_migrations_build(
    blank: tuple[Engine, str],
) -> None:
    eng, migrated = blank
    for statement in v1_ddl(migrated):
        eng.execute(statement.to_sql())
    ensure_schema(eng, migrated)
    created = "mlm_" + uuid.uuid4().hex[:10]
    try:
        assert ensure_schema(eng, created) == list(range(1, CURRENT_VERSION + 1))
        assert normalised_layout(eng, created) == normalised_layout(eng, migrated)
    finally:
        eng.execute(drop_database(created).to_sql())


def test_a_run_killed_while_writes_were_paused_is_finished_by_the_next(
    blank: tuple[Engine, str],
) -> None:
    eng, database = blank
    previous_build(eng, database)
    before = snapshot(eng, database)
    windows = WindowsTable(database)
    # as a run killed inside version 2 leaves it: a half-copied new table, the feed detached
    eng.execute(windows.table_ddl(f"{windows.name}_v2").to_sql())
    eng.execute(f"INSERT INTO {windows.name}_v2 SELECT * FROM {windows.name} LIMIT 10")
    eng.execute(f"DETACH TABLE {windows.feed}")
    assert ensure_schema(eng, database) == list(range(2, CURRENT_VERSION + 1))
    assert snapshot(eng, database) == before
    tables = set(tables_of(eng, database))
    assert "meter_window_feed" in tables
    assert not {"meter_windows_v2", "meter_windows_pre_v2"} & tables


def test_a_second_runner_is_locked_out(blank: tuple[Engine, str]) -> None:
    eng, database = blank
    ensure_schema(eng, database)
    table = MigrationsTable(database)
    for statement in table.take_lock("another host pid 42"):
        eng.execute(statement.to_sql())
    with pytest.raises(MigrationLocked, match=r"another host pid 42.*DROP TABLE"):
        ensure_schema(eng, database)
    eng.execute(table.release_lock().to_sql())
    assert ensure_schema(eng, database) == []


def test_a_build_older_than_the_first_version_is_refused_with_the_fix(
    blank: tuple[Engine, str],
) -> None:
    eng, database = blank
    for statement in v1_ddl(database):
        eng.execute(statement.to_sql())
    windows = WindowsTable(database)
    old_feed = next(
        s.to_sql() for s in v1_ddl(database) if windows.feed in s.to_sql().split("(")[0]
    )
    eng.execute(f"DROP TABLE {windows.view}")
    eng.execute(f"DROP TABLE {windows.feed}")
    eng.execute(old_feed.replace(", source_index UInt32", ""))  # as an older build made it
    with pytest.raises(InvalidInput, match=r"meter_window_feed has no column source_index"):
        ensure_schema(eng, database)


def test_a_newer_schema_is_refused(blank: tuple[Engine, str]) -> None:
    eng, database = blank
    ensure_schema(eng, database)
    eng.execute(MigrationsTable(database).record(99, "from the future", "applied").to_sql())
    with pytest.raises(SchemaNotCurrent, match=r"versions 99 .*newer Meterline"):
        require_current(eng, database)


def test_a_command_creates_its_database_as_the_configured_pipeline_would(
    blank: tuple[Engine, str], stack: Settings
) -> None:
    """``require_configured``: the database given (not the settings' one), created with
    the window states the settings' meter catalogue needs, and current after."""
    eng, database = blank
    elsewhere = "mlm_" + uuid.uuid4().hex[:10]
    settings = stack.model_copy(
        update={
            "clickhouse_database": elsewhere,
            "clickhouse_window_states": WindowStates.NEEDED,
            "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
        }
    )
    require_configured(eng, settings, database=database)
    needed = needed_states(load_meters(settings.meters_file).meters)
    assert needed != FULL_STATES  # the demo catalogue: SUM and COUNT meters only
    assert states_in(eng, database) == needed
    assert max(applied_versions(eng, database)) == CURRENT_VERSION
    assert tables_of(eng, elsewhere) == {}
    require_configured(eng, settings, database=database)  # current: accepted as it is
    assert states_in(eng, database) == needed


def coarse_minute_table(eng: Engine, database: str) -> dict[str, object]:
    """A current database whose minute table has ClickHouse's default 8,192-row granules,
    as every database before version 9 had it, with windows written through both feeds;
    its snapshot."""
    ensure_schema(eng, database)
    windows = WindowsTable(database)
    coarse = windows.table_ddl(f"{windows.name}_coarse").to_sql()
    eng.execute(coarse.replace(f"= {MINUTE_GRANULE_ROWS}", "= 8192"))
    eng.execute(f"RENAME TABLE {windows.name} TO {windows.name}_fine,"
                f" {windows.name}_coarse TO {windows.name}")  # fmt: skip
    eng.execute(f"DROP TABLE {windows.name}_fine")
    feed = [
        FeedRow("ns", "m", f"s{i % 4}", "{}", T0 + 600 * i, T0 + 600 * i + 60 * (i % 3),
                Decimal(i) / 4, f"u{i % 7}", (T0 + 600 * i) * 1000, i % 2, i)
        for i in range(400)
    ]  # fmt: skip
    eng.insert(*windows.insert_args(feed))
    assert index_granularity(eng, windows.name) == 8192
    return snapshot(eng, database)


def apply_version_9(eng: Engine, database: str) -> list[str]:
    said: list[str] = []
    ctx = MigrationContext(eng, database, lambda: False, lambda _: None, said.append)
    FineGrainedWindows().apply(ctx)
    return said


def test_version_9_rewrites_the_minute_table_in_fine_granules_with_its_data_intact(
    blank: tuple[Engine, str],
) -> None:
    eng, database = blank
    before = coarse_minute_table(eng, database)
    windows = WindowsTable(database)
    said = apply_version_9(eng, database)
    assert index_granularity(eng, windows.name) == MINUTE_GRANULE_ROWS
    assert snapshot(eng, database) == before
    paused = next(line for line in said if line.startswith("pausing writes"))
    for feed in (windows.feed, windows.agg_feed, windows.repair_feed, windows.agg_repair_feed):
        assert feed in paused
        assert feed.split(".", 1)[1] in tables_of(eng, database)
    assert not {"meter_windows_v9", "meter_windows_pre_v9"} & set(tables_of(eng, database))
    assert apply_version_9(eng, database) == []  # done: nothing to do


def test_a_version_9_run_killed_while_writes_were_paused_is_finished_by_the_next(
    blank: tuple[Engine, str],
) -> None:
    eng, database = blank
    before = coarse_minute_table(eng, database)
    windows = WindowsTable(database)
    eng.execute(windows.table_ddl(f"{windows.name}_v9").to_sql())
    eng.execute(f"INSERT INTO {windows.name}_v9 SELECT * FROM {windows.name} LIMIT 10")
    for feed in (windows.feed, windows.agg_feed):
        eng.execute(f"DETACH TABLE {feed}")
    said = apply_version_9(eng, database)
    assert any("left detached by an interrupted run" in line for line in said)
    assert index_granularity(eng, windows.name) == MINUTE_GRANULE_ROWS
    assert snapshot(eng, database) == before
    assert {"meter_window_feed", "meter_window_agg_feed"} <= set(tables_of(eng, database))
