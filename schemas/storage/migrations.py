"""Versioned schema migrations: ordered, idempotent, recorded, applied by one command.

``python -m streams migrate`` brings a database to the version this code needs, while
the worker keeps writing; the worker and the API refuse to start on an older version
(:func:`require_current`) and name that command.  Each applied version is a row of
``<database>.schema_migrations`` (an append-only MergeTree: no mutations, which
ClickHouse 18.16 cannot wait for).  A second runner is kept out by a lock table created
without ``IF NOT EXISTS``.

How a database gets to the current version:

* a new database is created at the current layout directly (the table modules' DDL) and
  every version is recorded — ``tests/schemas/test_migrations.py`` proves that this
  layout and the one the migrations build from version 1 are the same;
* a database of the last build before migrations (tables, no ``schema_migrations``) is
  checked against that layout and recorded as version 1 (``adopted``), then migrated;
* a database at version N gets every migration above N, in order.

Migrations live in ``schemas.storage.schema_versions``; each is idempotent, so a run
killed half-way is simply run again.  Why not a migration package: the maintained ones
run SQL files only (no way to coordinate a copy with a live writer), need newer ClickHouse
than 18.16 for their bookkeeping or locking (``mutations_sync``, ``Bool``, ``DateTime64``),
or cannot use clickhouse-driver and chDB; ``docs/stack.md`` has the survey.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.errors import InvalidInput, MeterlineError
from schemas.storage.engine import Engine
from schemas.storage.sql import Statement, ident, lit

__all__ = [
    "MigrationContext",
    "MigrationLocked",
    "MigrationsTable",
    "SchemaNotCurrent",
    "Settle",
    "Version",
    "database_ddl",
    "drop_database",
]

log = logging.getLogger(__name__)

Settle = Callable[[int], None]
"""``settle(M)``: wait until the whole minute ``M`` (epoch seconds) has passed and the
worker has stored every record appended before it; raise if it does not happen."""


class SchemaNotCurrent(MeterlineError):
    """The database is older (or newer) than this code; the message names the fix."""


class MigrationLocked(MeterlineError):
    """Another migration run holds the lock."""


@dataclass(frozen=True, slots=True)
class MigrationContext:
    engine: Engine
    database: str
    writer_active: Callable[[], bool]
    """Whether a metering worker is running (it may write while a migration runs)."""
    settle: Settle
    report: Callable[[str], None]

    def run(self, *statements: Statement) -> None:
        for statement in statements:
            self.engine.execute(statement.to_sql())


class Version(Protocol):
    """One step of the schema's history."""

    @property
    def number(self) -> int: ...

    @property
    def name(self) -> str: ...

    def apply(self, ctx: MigrationContext) -> None: ...


@dataclass(frozen=True, slots=True)
class MigrationsTable:
    database: str

    @property
    def name(self) -> str:
        return f"{self.database}.schema_migrations"

    @property
    def lock(self) -> str:
        return f"{self.database}.schema_migrations_lock"

    def ddl(self) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.name} (version UInt32, name String,"
            " how String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version"
        )

    def applied(self) -> Statement:
        """Rows ``(version,)`` recorded, ascending."""
        return Statement(f"SELECT DISTINCT version FROM {self.name} ORDER BY version")

    def record(self, version: int, name: str, how: str) -> Statement:
        return Statement(
            f"INSERT INTO {self.name} (version, name, how, applied_at)"
            f" SELECT {version}, {lit(name)}, {lit(how)}, now()"
        )

    def take_lock(self, holder: str) -> list[Statement]:
        return [
            Statement(f"CREATE TABLE {self.lock} (holder String, since DateTime) ENGINE = TinyLog"),
            Statement(f"INSERT INTO {self.lock} SELECT {lit(holder)}, now()"),
        ]

    def lock_holder(self) -> Statement:
        return Statement(f"SELECT holder, toUnixTimestamp(since) FROM {self.lock}")

    def release_lock(self) -> Statement:
        return Statement(f"DROP TABLE IF EXISTS {self.lock}")


def tables_of(engine: Engine, database: str) -> dict[str, str]:
    """Table name → engine, for every table of ``database``."""
    rows = engine.execute(
        f"SELECT name, engine FROM system.tables WHERE database = {lit(database)}"
    )
    return {str(name): str(kind) for name, kind in rows}


def sorting_key(engine: Engine, table: str) -> str:
    database, name = table.split(".", 1)
    rows = engine.execute(
        "SELECT sorting_key FROM system.tables"
        f" WHERE database = {lit(database)} AND name = {lit(name)}"
    )
    return str(rows[0][0]).replace(" ", "") if rows else ""


def index_granularity(engine: Engine, table: str) -> int:
    """A MergeTree table's rows per index mark (ClickHouse's default 8192 when its
    engine clause names none); 0 for no such table."""
    database, name = table.split(".", 1)
    rows = engine.execute(
        "SELECT engine_full FROM system.tables"
        f" WHERE database = {lit(database)} AND name = {lit(name)}"
    )
    if not rows:
        return 0
    found = re.search(r"index_granularity\s*=\s*(\d+)", str(rows[0][0]))
    return int(found.group(1)) if found else 8192


def holder_name() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def database_ddl(database: str) -> Statement:
    return Statement(f"CREATE DATABASE IF NOT EXISTS {ident(database)}")


def drop_database(database: str) -> Statement:
    """Every table of ``database`` and its data (``reset``, test clean-up)."""
    return Statement(f"DROP DATABASE IF EXISTS {ident(database)}")


def versions_text(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers) or "none"


def refuse_unknown(database: str, applied: Sequence[int], known: Sequence[int]) -> None:
    newer = sorted(set(applied) - set(known))
    if newer:
        raise SchemaNotCurrent(
            f"ClickHouse database {database} has schema versions {versions_text(newer)} that "
            f"this Meterline does not know (it knows up to {max(known)}): it was migrated by "
            "a newer Meterline; run that version, or a new database"
        )


def unknown_layout(database: str, why: str) -> InvalidInput:
    return InvalidInput.single(
        "schema",
        database,
        f"has tables but no schema_migrations, and they are not the layout of the last "
        f"build before migrations: {why}",
        "point METERLINE_CLICKHOUSE_DATABASE at a new database, or recreate this one",
    )
