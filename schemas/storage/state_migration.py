"""Add window states to a database while workers write to it (``window_states``:
``needed``).

A meter that needs a state the database does not keep (a first MAX meter, say) gets it
at the start that sees the meter, under the migration lock (``bootstrap``):

1. writes are paused: a view that always fails is put on every feed of the windows
   tables (``meter_window_feed_paused`` …), so every insert into a feed fails and the
   worker retries it (``streams.retry``).  An insert can still land in the tables whose
   views ran before the failing one; that is the partial write the worker already repairs
   table by table from each table's own progress (``windows_table``);
2. the views into the windows tables are dropped;
3. every meter with windows is recorded in ``window_state_gaps`` as lacking the state
   (its earlier windows were written without it; ``window_states.check_meters``);
4. the state's column is added to each windows table (rows already stored read it as
   empty);
5. the views are created again with the states each table now has;
6. writes resume (the failing views are dropped).

A feed's view cannot be replaced in place on ClickHouse 18.16, nor created before its
target exists on current ClickHouse, so the views are rebuilt inside the pause; the pause
lasts as long as 12 ``CREATE``/``DROP`` statements, three ``ALTER``\\s and one read of the
meters with windows.  A run killed half-way leaves writes paused (loudly: every insert
fails, nothing is lost); the next start or ``python -m streams migrate`` finds the failing
views and finishes the same steps from what the tables have (:func:`finish_interrupted`).
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.storage.engine import Engine
from schemas.storage.migrations import tables_of
from schemas.storage.rollups import WindowStore
from schemas.storage.sql import Statement
from schemas.storage.window_states import (
    ADDITIVE_STATES,
    GapsTable,
    StateSet,
    add_columns,
    states_in,
)

__all__ = [
    "PAUSED_SUFFIX",
    "finish_interrupted",
    "pause_ddl",
    "paused",
    "resume_ddl",
    "set_states",
]

PAUSED_SUFFIX = "_paused"
"""A feed ``<feed>`` is paused while a view ``<feed>_paused`` exists."""
_SINK = "window_states_pause_sink"


def pause_ddl(database: str, feeds: list[str]) -> list[Statement]:
    """A view on each feed that fails every insert (``throwIf``: its one-argument form, the
    only one ClickHouse 18.16 has), into a ``Null`` sink."""
    sink = f"{database}.{_SINK}"
    return [
        Statement(f"CREATE TABLE IF NOT EXISTS {sink} (paused UInt8) ENGINE = Null"),
        *(
            Statement(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {feed}{PAUSED_SUFFIX} TO {sink} AS"
                f" SELECT throwIf(length(namespace) >= 0) AS paused FROM {feed}"
            )
            for feed in feeds
        ),
    ]


def resume_ddl(database: str, feeds: list[str]) -> list[Statement]:
    return [
        *(Statement(f"DROP TABLE IF EXISTS {feed}{PAUSED_SUFFIX}") for feed in feeds),
        Statement(f"DROP TABLE IF EXISTS {database}.{_SINK}"),
    ]


def paused(engine: Engine, database: str) -> bool:
    """Whether a state change left the feeds of ``database`` paused."""
    store = WindowStore(database)
    tables = tables_of(engine, store.database)
    return any(f"{feed.split('.', 1)[1]}{PAUSED_SUFFIX}" in tables for feed in store.feeds())


def set_states(
    engine: Engine, database: str, added: StateSet, report: Callable[[str], None]
) -> StateSet:
    """Make every windows table of ``database`` keep ``added`` too (the steps of the
    module's text); the set they keep now.  Run under the migration lock."""
    store = WindowStore(database)
    names = [store.minute.name, *(r.name for r in store.rollups)]
    per_table = {t: states_in(engine, *t.split(".", 1)) or ADDITIVE_STATES for t in names}
    target = added
    for kept in per_table.values():
        target = target | kept
    was_paused = paused(engine, database)
    if not was_paused and all(kept == target for kept in per_table.values()):
        return target

    def run(statement: Statement) -> None:
        engine.execute(statement.to_sql())

    report(
        f"{database}: the windows tables will keep {target.label} window states; pausing "
        "writes (the worker retries meanwhile)"
    )
    for statement in pause_ddl(database, store.feeds()):
        run(statement)
    for view, _ in store.views():
        run(Statement(f"DROP TABLE IF EXISTS {view}"))
    common = target
    for kept in per_table.values():
        common = StateSet(common.optional & kept.optional)
    gaps = GapsTable(database)
    for column in sorted(target.optional - common.optional):
        for table in names:
            run(gaps.record(column, table))
    for table in names:
        for statement in add_columns(table, per_table[table], target):
            run(statement)
    for _, create in WindowStore(database, target).views():
        run(create)
    for statement in resume_ddl(database, store.feeds()):
        run(statement)
    report(f"{database}: writes resumed; the windows tables keep {target.label} window states")
    return target


def finish_interrupted(engine: Engine, database: str, report: Callable[[str], None]) -> None:
    """Finish a state addition killed half-way (writes still paused); nothing otherwise."""
    if paused(engine, database):
        report(f"{database}: an interrupted window-state change left writes paused; finishing it")
        set_states(engine, database, ADDITIVE_STATES, report)
