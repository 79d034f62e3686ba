"""Create the database and every table, idempotently, and refuse a schema that is older
than the code.

There are no migrations yet: ``CREATE TABLE IF NOT EXISTS`` leaves a table created by an
older build as it was, and the worker's inserts would then fail on every retry.  So
:func:`ensure_schema` checks the columns the code writes and raises
:class:`SchemaOutdated`, naming the table, the column and the fix, before anything runs.
"""

from __future__ import annotations

from schemas.errors import MeterlineError
from schemas.storage.engine import Engine
from schemas.storage.events_table import COLUMNS as EVENT_COLUMNS
from schemas.storage.events_table import EventsTable
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.sql import Statement, ident, lit
from schemas.storage.windows_table import FEED_COLUMNS, LATEST_TYPE_MARK, WindowsTable

__all__ = ["SchemaOutdated", "all_ddl", "columns", "ensure_schema"]


class SchemaOutdated(MeterlineError):
    """A table was created by an older Meterline and lacks what this one writes."""


def all_ddl(database: str) -> list[Statement]:
    return [
        Statement(f"CREATE DATABASE IF NOT EXISTS {ident(database)}"),
        *EventsTable(database).ddl(),
        *WindowsTable(database).ddl(),
        *InvoicesTable(database).ddl(),
    ]


def columns(database: str) -> Statement:
    """Rows ``(table, column, type)`` of every table in ``database``."""
    return Statement(
        "SELECT table, name, type FROM system.columns"
        f" WHERE database = {lit(database)} ORDER BY table, name"
    )


def ensure_schema(engine: Engine, database: str) -> None:
    database_ddl, *tables_ddl = all_ddl(database)
    engine.execute(database_ddl.to_sql())
    _check(engine, database, created=False)  # before the DDL, which an old table breaks
    for statement in tables_ddl:
        engine.execute(statement.to_sql())
    _check(engine, database, created=True)


def _check(engine: Engine, database: str, *, created: bool) -> None:
    """Raise :class:`SchemaOutdated` for a table lacking what the code writes; before the
    DDL (``created=False``) only the tables that already exist are checked."""
    found: dict[str, dict[str, str]] = {}
    for table, name, kind in engine.execute(columns(database).to_sql()):
        found.setdefault(str(table), {})[str(name)] = str(kind)
    wanted = {"usage_events": EVENT_COLUMNS, "meter_window_feed": FEED_COLUMNS}
    for table, names in wanted.items():
        if table not in found and not created:
            continue
        for name in names:
            if name not in found.get(table, {}):
                raise _outdated(database, table, f"has no column {name}")
    if "meter_windows" in found or created:
        latest = found.get("meter_windows", {}).get("value_latest", "")
        if LATEST_TYPE_MARK not in latest.replace(" ", ""):
            raise _outdated(database, "meter_windows", f"keeps value_latest as {latest}")


def _outdated(database: str, table: str, what: str) -> SchemaOutdated:
    return SchemaOutdated(
        f"ClickHouse table {database}.{table} {what}: it was created by an older Meterline "
        "and there are no schema migrations yet. Recreate it: `make reset` deletes the "
        "local pipeline's topics, consumer group and database (re-send or backfill the "
        "events afterwards), or point METERLINE_CLICKHOUSE_DATABASE at a new database."
    )
