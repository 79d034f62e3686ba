"""Bring a database to the layout this code needs, or refuse one that is not there.

* :func:`migrate` — what ``python -m streams migrate`` runs: a new database is created at
  the current layout; an existing one gets every pending migration (see
  ``schemas.storage.migrations`` and ``schema_versions``), safely while the worker writes.
* :func:`ensure_schema` — :func:`migrate` for a database no worker writes to (``init``,
  the demo, the tests, a worker starting on a new database).
* :func:`require_current` — what the worker and the API run at start: create a new
  database, accept a current one, refuse an older one with the command that migrates it.
* :func:`require_configured` — :func:`require_current` for the configured pipeline: every
  command that reads or writes the database runs it with the same settings and meters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from schemas.metering.definitions import MeterDefinition, load_meters
from schemas.storage.cluster import ClusterLayout
from schemas.storage.credits_table import CreditsTable
from schemas.storage.deliveries_table import DeliveriesTable
from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.migrations import (
    MigrationContext,
    MigrationLocked,
    MigrationsTable,
    SchemaNotCurrent,
    Settle,
    database_ddl,
    holder_name,
    refuse_unknown,
    tables_of,
    unknown_layout,
    versions_text,
)
from schemas.storage.notifications_table import NotificationsTable
from schemas.storage.rate_cards_table import RateCardsTable
from schemas.storage.rollups import WindowStore
from schemas.storage.schema_versions import VERSIONS, check_baseline, reattach_feed
from schemas.storage.sql import Statement, lit
from schemas.storage.state_migration import finish_interrupted, paused, set_states
from schemas.storage.window_states import (
    FULL_STATES,
    GapsTable,
    StateSet,
    WindowStates,
    check_meters,
    gaps_of,
    needed_states,
    states_in,
)

if TYPE_CHECKING:
    from schemas.settings import Settings

__all__ = [
    "CURRENT_VERSION",
    "MIGRATE_COMMAND",
    "MigrationLocked",
    "SchemaNotCurrent",
    "all_ddl",
    "applied_versions",
    "columns",
    "ensure_schema",
    "migrate",
    "require_configured",
    "require_current",
]

log = logging.getLogger(__name__)
CURRENT_VERSION = VERSIONS[-1].number
MIGRATE_COMMAND = "python -m streams migrate"


def all_ddl(
    database: str, cluster: str | None = None, states: StateSet = FULL_STATES
) -> list[Statement]:
    """The current layout of a new database (the migrations table included), for one
    server, or rendered for the ClickHouse cluster ``cluster`` (``schemas.storage.cluster``);
    its windows tables keep ``states``."""
    single = _single_server_ddl(database, states)
    if not cluster:
        return single
    layout = ClusterLayout(cluster)
    return [*layout.database(database), *(c for s in single[1:] for c in layout.render(s))]


def _single_server_ddl(database: str, states: StateSet) -> list[Statement]:
    return [
        database_ddl(database),
        *EventsTable(database).ddl(),
        *WindowStore(database, states).ddl(),
        *InvoicesTable(database).ddl(),
        *RateCardsTable(database).ddl(),
        *CreditsTable(database).ddl(),
        *DeliveriesTable(database).ddl(),
        *NotificationsTable(database).ddl(),
        GapsTable(database).ddl(),
        MigrationsTable(database).ddl(),
    ]


def columns(database: str) -> Statement:
    """Rows ``(table, column, type)`` of every table in ``database``."""
    return Statement(
        "SELECT table, name, type FROM system.columns"
        f" WHERE database = {lit(database)} ORDER BY table, name"
    )


def applied_versions(engine: Engine, database: str) -> list[int]:
    tables = tables_of(engine, database)
    if "schema_migrations" not in tables:
        return []
    return [int(v) for (v,) in engine.execute(MigrationsTable(database).applied().to_sql())]


def ensure_schema(
    engine: Engine,
    database: str,
    states: WindowStates = WindowStates.FULL,
    meters: Iterable[MeterDefinition] | None = None,
) -> list[int]:
    """:func:`migrate` a database that no worker writes to."""
    return migrate(
        engine,
        database,
        writer_active=lambda: False,
        settle=_no_writer,
        states=states,
        meters=meters,
    )


def _no_writer(_minute: int) -> None:
    raise AssertionError("no worker writes: no cut to settle")


def migrate(
    engine: Engine,
    database: str,
    *,
    writer_active: Callable[[], bool],
    settle: Settle,
    report: Callable[[str], None] = log.info,
    states: WindowStates = WindowStates.FULL,
    meters: Iterable[MeterDefinition] | None = None,
) -> list[int]:
    """Bring ``database`` to :data:`CURRENT_VERSION`; the versions applied now.  A new
    database's windows tables keep the window states ``states`` chooses for ``meters``
    (``WindowStates.for_new``); an existing one keeps its own (a state change killed
    half-way is finished: ``state_migration.finish_interrupted``)."""
    table = MigrationsTable(database)
    cluster = getattr(engine, "cluster", None)
    for statement in all_ddl(database, cluster)[: 2 if cluster else 1]:
        engine.execute(statement.to_sql())
    _lock(engine, table)
    try:
        if not cluster:
            reattach_feed(engine, WindowStore(database).minute.feed, report)
        tables = {n: e for n, e in tables_of(engine, database).items() if "lock" not in n}
        if not tables:
            kept = states.for_new(meters, cluster=bool(cluster))
            for statement in all_ddl(database, cluster, kept)[2 if cluster else 1 :]:
                engine.execute(statement.to_sql())
            for version in VERSIONS:
                engine.execute(table.record(version.number, version.name, "created").to_sql())
            report(
                f"created {database} at schema version {CURRENT_VERSION}, "
                f"{kept.label} window states"
            )
            return [v.number for v in VERSIONS]
        if "schema_migrations" not in tables:
            _adopt(engine, database, tables, report)
        applied = applied_versions(engine, database)
        refuse_unknown(database, applied, [v.number for v in VERSIONS])
        if cluster and any(v.number not in applied for v in VERSIONS):
            raise SchemaNotCurrent(
                f"ClickHouse database {database} on cluster {cluster} is at schema version "
                f"{max(applied, default=0)}; this build creates cluster databases at version "
                f"{CURRENT_VERSION} but does not migrate them. Create a new database "
                "(METERLINE_CLICKHOUSE_DATABASE) and re-meter it from the raw events."
            )
        ctx = MigrationContext(engine, database, writer_active, settle, report)
        done = []
        for version in VERSIONS:
            if version.number in applied:
                continue
            report(f"migrating {database} to version {version.number}: {version.name}")
            version.apply(ctx)
            engine.execute(table.record(version.number, version.name, "applied").to_sql())
            done.append(version.number)
        if done:
            report(f"{database} is at schema version {CURRENT_VERSION}")
        if not cluster:
            finish_interrupted(engine, database, report)
        return done
    finally:
        engine.execute(table.release_lock().to_sql())


def _lock(engine: Engine, table: MigrationsTable) -> None:
    try:
        for statement in table.take_lock(holder_name()):
            engine.execute(statement.to_sql())
    except Exception as exc:
        if "already exists" not in str(exc).lower():
            raise
        rows = engine.execute(table.lock_holder().to_sql())
        holder = f"{rows[0][0]}" if rows else "an unknown runner"
        raise MigrationLocked(
            f"another migration of {table.database} is running ({holder}); wait for it, or "
            f"if it was killed, DROP TABLE {table.lock} and run `{MIGRATE_COMMAND}` again"
        ) from exc


def _adopt(
    engine: Engine, database: str, tables: dict[str, str], report: Callable[[str], None]
) -> None:
    """Record a database of the last build before migrations as version 1."""
    found: dict[str, dict[str, str]] = {}
    for name, column, kind in engine.execute(columns(database).to_sql()):
        found.setdefault(str(name), {})[str(column)] = str(kind)
    why = check_baseline(tables, found)
    if why is not None:
        raise unknown_layout(database, why)
    migrations = MigrationsTable(database)
    engine.execute(migrations.ddl().to_sql())
    engine.execute(migrations.record(1, VERSIONS[0].name, "adopted").to_sql())
    report(f"{database} has the layout of the last build before migrations: version 1")


def require_current(
    engine: Engine,
    database: str,
    *,
    states: WindowStates = WindowStates.NEEDED,
    meters: Iterable[MeterDefinition] | None = None,
    report: Callable[[str], None] = log.info,
) -> None:
    """Create a new database at the current layout (its window states chosen by
    ``states`` for ``meters``); refuse an older one, naming the fix.  With ``needed``,
    add the window states ``meters`` need and the database lacks
    (``state_migration.set_states``); refuse the meters its states cannot answer
    (``window_states.check_meters``).  ``meters`` ``None``: not checked."""
    listed = None if meters is None else list(meters)
    _require_version(engine, database, states, listed)
    kept = states_in(engine, database)
    if kept is None or listed is None:
        return
    if getattr(engine, "cluster", None):
        fix = (
            "meter it in a new database created with METERLINE_CLICKHOUSE_WINDOW_STATES=full "
            "or =needed (a cluster database keeps every state: cluster databases are not "
            "migrated), re-metered from the raw events (`meterline backfill`)"
        )
    else:
        fix = ""
        kept = _add_needed(engine, database, kept, needed_states(listed), states, report)
    gaps = gaps_of(engine.execute(GapsTable(database).read().to_sql()))
    check_meters(listed, kept, database, gaps, fix_missing=fix)


def require_configured(
    engine: Engine,
    settings: Settings,
    *,
    meters: Iterable[MeterDefinition] | None = None,
    database: str | None = None,
) -> None:
    """:func:`require_current` as every command runs it: the configured database (or
    ``database``) and window states, checked against ``meters`` — the catalogue's
    (``settings.meters_file``) unless given — so a database any command creates first
    keeps the states the worker would have given it."""
    require_current(
        engine,
        settings.clickhouse_database if database is None else database,
        states=settings.clickhouse_window_states,
        meters=load_meters(settings.meters_file).meters if meters is None else meters,
    )


STATE_LOCK_WAIT_S = 60.0
"""How long a start waits for another runner's migration (the same states, usually,
added by a worker and an API started together) before it gives up."""


def _add_needed(
    engine: Engine,
    database: str,
    kept: StateSet,
    needed: StateSet,
    states: WindowStates,
    report: Callable[[str], None],
) -> StateSet:
    """With ``needed``, add the states ``needed`` that ``kept`` lacks; finish a change left
    half-way in any case; the set kept now."""
    deadline = time.monotonic() + STATE_LOCK_WAIT_S
    while True:
        adding = states is WindowStates.NEEDED and bool((needed - kept).optional)
        if not adding and not paused(engine, database):
            return kept
        table = MigrationsTable(database)
        try:
            _lock(engine, table)
        except MigrationLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
            kept = states_in(engine, database) or kept
            continue
        try:
            return set_states(engine, database, needed - kept if adding else kept, report)
        finally:
            engine.execute(table.release_lock().to_sql())


def _require_version(
    engine: Engine,
    database: str,
    states: WindowStates,
    meters: list[MeterDefinition] | None,
) -> None:
    tables = tables_of(engine, database)
    if not tables:
        ensure_schema(engine, database, states, meters)
        return
    applied = applied_versions(engine, database)
    refuse_unknown(database, applied, [v.number for v in VERSIONS])
    missing = [v.number for v in VERSIONS if v.number not in applied]
    if missing:
        have = max(applied) if applied else "none (a build before migrations)"
        raise SchemaNotCurrent(
            f"ClickHouse database {database} is at schema version {have}; this Meterline "
            f"needs {CURRENT_VERSION} (missing: {versions_text(missing)}). Run "
            f"`{MIGRATE_COMMAND}`: it migrates while the worker keeps running, and keeps "
            "every event."
        )
