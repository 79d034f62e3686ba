"""The windows tables' state sets: the ``additive`` set answers SUM, COUNT and AVG exactly
as the ``full`` one does, on both ClickHouse engines, through both feeds and every
table; a database's set is read back from its columns; with ``needed`` a state is added
when a meter first needs it (writes paused meanwhile, an interrupted change finished at
the next start), and answers as the full set does from then on; meters a database cannot
answer, or whose history lacks the state, are refused at start, each named with the fix."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from schemas.errors import InvalidInput
from schemas.metering.definitions import Aggregation, MeterDefinition
from schemas.storage import bootstrap
from schemas.storage.agg_feed import pre_aggregate
from schemas.storage.bootstrap import ensure_schema, require_current
from schemas.storage.engine import Engine
from schemas.storage.feed import DEC, FeedRow
from schemas.storage.migrations import MigrationLocked, MigrationsTable, drop_database
from schemas.storage.planner import plan_meter_query
from schemas.storage.rollups import WindowStore
from schemas.storage.state_migration import pause_ddl, paused
from schemas.storage.window_states import (
    ADDITIVE_STATES,
    FULL_STATES,
    StateSet,
    WindowStates,
    add_columns,
    check_meters,
    needed_states,
    state_columns,
    states_in,
    states_of,
)
from schemas.storage.windows_table import (
    MeterQuery,
    RangeQuery,
    UsageQuery,
    WindowSize,
    finish_value,
)
from tests.conftest import fresh_database
from tests.schemas.test_rollups import rows

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
DAY = 86_400
ADDITIVE_KINDS = (Aggregation.SUM, Aggregation.COUNT, Aggregation.AVG)
RICHER_KINDS = (
    Aggregation.UNIQUE_COUNT,
    Aggregation.MAX,
    Aggregation.MIN,
    Aggregation.LATEST,
)
STATE_NAMES = (
    "value_sum",
    "event_count",
    "value_uniq",
    "value_max",
    "value_min",
    "value_latest",
    "max_offset",
)


def meter(slug: str, kind: Aggregation) -> MeterDefinition:
    return MeterDefinition(
        slug=slug,
        event_type="request",
        aggregation=kind,
        value_property=None if kind is Aggregation.COUNT else "$.n",
    )


@pytest.fixture(params=["server", "chdb"])
def both(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str, str]]:
    """One engine; a database of each state set, with every table."""
    full = fresh_database(request, "mlfull_")
    engine, full_db = next(full)
    additive_db = "mladd_" + full_db.removeprefix("mlfull_")
    ensure_schema(engine, additive_db, WindowStates.ADDITIVE)
    assert states_in(engine, full_db) == FULL_STATES  # created without meters: every state
    yield engine, full_db, additive_db
    engine.execute(drop_database(additive_db).to_sql())
    next(full, None)


def test_the_additive_set_keeps_the_sum_the_count_and_the_write_progress_only() -> None:
    full = state_columns(FULL_STATES)
    additive = state_columns(ADDITIVE_STATES)
    assert [name for name in STATE_NAMES if f" {name} " in full] == list(STATE_NAMES)
    assert [name for name in STATE_NAMES if f" {name} " in additive] == [
        "value_sum",
        "event_count",
        "max_offset",
    ]
    assert ADDITIVE_STATES.aggregations == frozenset(ADDITIVE_KINDS)
    assert FULL_STATES.aggregations == frozenset(Aggregation)
    assert states_of(STATE_NAMES) == FULL_STATES
    assert states_of(["value_sum", "event_count", "max_offset"]) == ADDITIVE_STATES
    assert states_of(["value_sum", "event_count", "value_min", "max_offset"]) == StateSet(
        frozenset({"value_min"})
    )
    assert states_of([]) is None
    assert (FULL_STATES.label, ADDITIVE_STATES.label) == ("full", "additive")
    assert StateSet(frozenset({"value_min", "value_uniq"})).label == (
        "additive + value_uniq + value_min"
    )


def test_needed_keeps_the_states_of_the_meters_and_every_one_when_it_cannot_know() -> None:
    sums = [meter("calls", Aggregation.COUNT), meter("avg", Aggregation.AVG)]
    peaks = [*sums, meter("peak", Aggregation.MAX), meter("low", Aggregation.MIN)]
    assert needed_states(sums) == ADDITIVE_STATES
    assert needed_states(peaks) == StateSet(frozenset({"value_max", "value_min"}))
    assert needed_states(meter(k.value.lower(), k) for k in Aggregation) == FULL_STATES
    assert WindowStates.NEEDED.for_new(peaks, cluster=False) == needed_states(peaks)
    assert WindowStates.NEEDED.for_new(None, cluster=False) == FULL_STATES  # meters unknown
    assert WindowStates.NEEDED.for_new(sums, cluster=True) == FULL_STATES  # never migrated
    assert WindowStates.FULL.for_new(sums, cluster=False) == FULL_STATES
    assert WindowStates.ADDITIVE.for_new(peaks, cluster=False) == ADDITIVE_STATES


def test_added_state_columns_keep_the_full_column_order() -> None:
    added = add_columns("db.t", ADDITIVE_STATES, StateSet(frozenset({"value_max", "value_uniq"})))
    assert [s.to_sql() for s in added] == [
        "ALTER TABLE db.t ADD COLUMN value_uniq AggregateFunction(uniqExact, String)"
        " AFTER event_count",
        f"ALTER TABLE db.t ADD COLUMN value_max AggregateFunction(max, {DEC}) AFTER value_uniq",
    ]
    kept = StateSet(frozenset({"value_uniq", "value_latest"}))
    (latest_min,) = add_columns("db.t", kept, StateSet(frozenset({"value_min"})))
    assert latest_min.to_sql().endswith(" AFTER value_uniq")
    assert add_columns("db.t", FULL_STATES, FULL_STATES) == []


def test_meters_the_additive_set_cannot_answer_are_each_named_with_the_fix() -> None:
    meters = [meter(f"m_{kind.value.lower()}", kind) for kind in Aggregation]
    check_meters(meters, FULL_STATES, "db")  # every aggregation: nothing refused
    check_meters([m for m in meters if m.aggregation in ADDITIVE_KINDS], ADDITIVE_STATES, "db")
    with pytest.raises(InvalidInput) as refused:
        check_meters(meters, ADDITIVE_STATES, "db")
    problems = refused.value.problems
    assert [p.path for p in problems] == [
        f"m_{kind.value.lower()}.aggregation" for kind in Aggregation if kind in RICHER_KINDS
    ]
    for problem in problems:
        assert "ClickHouse database db" in problem.message
        assert "additive" in problem.message
        assert "METERLINE_CLICKHOUSE_WINDOW_STATES=needed" in problem.fix
    # a meter whose earlier windows lack the state it needs now
    peak = meter("peak", Aggregation.MAX)
    check_meters([peak], FULL_STATES, "db", {"peak": frozenset({"value_min"})})
    with pytest.raises(InvalidInput) as gap:
        check_meters([peak], FULL_STATES, "db", {"peak": frozenset({"value_max"})})
    (problem,) = gap.value.problems
    assert problem.path == "peak.aggregation"
    assert "windows stored before ClickHouse database db kept the value_max state" in (
        problem.message
    )
    assert "new slug" in problem.fix


def _fill(engine: Engine, database: str, sample: list[FeedRow]) -> None:
    """Half the rows through the per-event feed, half aggregated (the worker's feed)."""
    store = WindowStore(database)
    half = len(sample) // 2
    engine.insert(*store.minute.insert_args(sample[:half]))
    aggregated = pre_aggregate((r.as_row() for r in sample[half:]), frozenset())
    engine.insert(*store.minute.agg_insert_args(aggregated))


@pytest.mark.parametrize("kind", ADDITIVE_KINDS)
def test_the_additive_set_answers_as_the_full_one_on_every_table(
    both: tuple[Engine, str, str], kind: Aggregation
) -> None:
    engine, full_db, additive_db = both
    assert states_in(engine, full_db) == FULL_STATES
    assert states_in(engine, additive_db) == ADDITIVE_STATES
    sample = rows(800, seed=21)
    for database in (full_db, additive_db):
        _fill(engine, database, sample)
    queries = [
        MeterQuery("ns", "m", kind, T0, T0 + 31 * DAY, WindowSize.DAY, "UTC", (), ("region",)),
        MeterQuery("ns", "m", kind, T0, T0 + 31 * DAY, WindowSize.HOUR, "UTC"),
        MeterQuery("ns", "m", kind, T0, T0 + 31 * DAY, WindowSize.MINUTE, "UTC"),
        RangeQuery("ns", "m", kind, T0, T0 + 45 * DAY, WindowSize.MINUTE, across_subjects=True),
    ]
    grains = set()
    for query in queries:
        windowed = not isinstance(query, RangeQuery)
        plan = plan_meter_query(query, windowed=windowed)
        grains.add(plan.grain)
        full = engine.execute(query.on(plan.table(full_db)).to_sql())
        additive = engine.execute(query.on(plan.table(additive_db)).to_sql())
        assert full  # the range holds data
        assert additive == full, (query, plan.grain)
    assert grains == {"minute", "hourly", "daily"}
    usage = UsageQuery("ns", "m", kind, T0, T0 + 45 * DAY)
    got = {
        str(r[0]): finish_value(kind, r[1:])
        for r in engine.execute(usage.on(f"{additive_db}.meter_windows").to_sql())
    }
    by_subject: dict[str, list[Decimal]] = {}
    for row in sample:
        by_subject.setdefault(row.subject, []).append(row.value)
    want = {
        subject: {
            Aggregation.SUM: sum(values, Decimal(0)),
            Aggregation.COUNT: Decimal(len(values)),
            Aggregation.AVG: sum(values, Decimal(0)) / Decimal(len(values)),
        }[kind]
        for subject, values in by_subject.items()
    }
    assert got == want
    progress = [
        sorted(engine.execute(WindowStore(db).progress("ns").to_sql()))
        for db in (full_db, additive_db)
    ]
    assert progress[0] == progress[1]
    assert len(progress[1]) == 9  # three tables, three partitions


def test_the_start_check_refuses_richer_meters_on_an_additive_database(
    both: tuple[Engine, str, str],
) -> None:
    engine, full_db, additive_db = both
    richer = [meter("peak", Aggregation.MAX), meter("users", Aggregation.UNIQUE_COUNT)]
    additive = [meter("calls", Aggregation.COUNT), meter("tokens", Aggregation.SUM)]
    fixed = WindowStates.ADDITIVE
    require_current(engine, additive_db, states=fixed, meters=additive)
    require_current(engine, full_db, states=fixed, meters=[*additive, *richer])
    with pytest.raises(InvalidInput) as refused:
        require_current(engine, additive_db, states=fixed, meters=[*additive, *richer])
    assert [p.path for p in refused.value.problems] == ["peak.aggregation", "users.aggregation"]
    assert states_in(engine, additive_db) == ADDITIVE_STATES  # only =needed adds states
    # the set is the database's own: asking for the other one changes nothing
    require_current(engine, full_db, states=WindowStates.ADDITIVE, meters=richer)
    assert states_in(engine, full_db) == FULL_STATES


def test_a_new_database_is_created_with_the_set_asked_for(
    both: tuple[Engine, str, str],
) -> None:
    engine, full_db, _ = both
    database = full_db + "_new"
    try:
        assert states_in(engine, database) is None
        require_current(engine, database, states=WindowStates.ADDITIVE)
        assert states_in(engine, database) == ADDITIVE_STATES
        for table in ("meter_windows", "meter_windows_hourly", "meter_windows_daily"):
            names = {
                str(name)
                for (name,) in engine.execute(
                    f"SELECT name FROM system.columns WHERE database = '{database}'"
                    f" AND table = '{table}'"
                )
            }
            assert {"value_sum", "event_count", "max_offset"} <= names, table
            assert not names & {"value_uniq", "value_max", "value_min", "value_latest"}, table
    finally:
        engine.execute(drop_database(database).to_sql())


def _columns(engine: Engine, database: str, table: str) -> list[str]:
    """The table's state columns, in table order."""
    names = [
        str(name)
        for (name,) in engine.execute(
            f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'"
        )
    ]
    return [n for n in names if n in STATE_NAMES]


WINDOWS_TABLES = ("meter_windows", "meter_windows_hourly", "meter_windows_daily")


def _assert_max_added(engine: Engine, database: str) -> None:
    """Every windows table keeps the max state, in the full column order; writes flow."""
    for table in WINDOWS_TABLES:
        assert _columns(engine, database, table) == [
            "value_sum",
            "event_count",
            "value_max",
            "max_offset",
        ], table
    assert not paused(engine, database)


def _answers(engine: Engine, database: str, slug: str, kind: Aggregation) -> list[object]:
    """The meter's values through every table (the planner's grains)."""
    out: list[object] = []
    for window in (WindowSize.DAY, WindowSize.HOUR, WindowSize.MINUTE):
        query = MeterQuery("ns", slug, kind, T0, T0 + 31 * DAY, window, "UTC", (), ("region",))
        plan = plan_meter_query(query, windowed=True)
        out.append((plan.grain, engine.execute(query.on(plan.table(database)).to_sql())))
    return out


def test_needed_adds_a_state_when_a_meter_first_needs_it_and_it_answers_exactly(
    both: tuple[Engine, str, str],
) -> None:
    engine, full_db, additive_db = both
    calls = meter("m", Aggregation.SUM)
    peak = meter("peak", Aggregation.MAX)
    database = additive_db + "_needed"
    try:
        ensure_schema(engine, database, WindowStates.NEEDED, [calls])
        assert states_in(engine, database) == ADDITIVE_STATES  # what its meters need
        history = rows(600, seed=5)
        for db in (full_db, database):
            _fill(engine, db, history)
        require_current(engine, database, states=WindowStates.NEEDED, meters=[calls, peak])
        assert states_in(engine, database) == StateSet(frozenset({"value_max"}))
        _assert_max_added(engine, database)
        fresh = [
            replace(r, meter="peak", source_offset=10_000 + i)
            for i, r in enumerate(rows(600, seed=6))
        ]
        for db in (full_db, database):
            _fill(engine, db, fresh)
        assert _answers(engine, database, "peak", Aggregation.MAX) == _answers(
            engine, full_db, "peak", Aggregation.MAX
        )
        assert _answers(engine, database, "m", Aggregation.SUM) == _answers(
            engine, full_db, "m", Aggregation.SUM
        )
        # "m" had windows before value_max was kept: redefined as MAX it is refused
        with pytest.raises(InvalidInput) as refused:
            require_current(engine, database, meters=[meter("m", Aggregation.MAX)])
        (problem,) = refused.value.problems
        assert problem.path == "m.aggregation"
        assert "windows stored before" in problem.message
        # the same start again: nothing to add, nothing refused
        require_current(engine, database, meters=[calls, peak])
    finally:
        engine.execute(drop_database(database).to_sql())


def test_writes_fail_while_paused_and_an_interrupted_change_is_finished_at_the_next_start(
    both: tuple[Engine, str, str],
) -> None:
    engine, full_db, additive_db = both
    store = WindowStore(additive_db)
    sample = rows(300, seed=8)
    # a change killed after pausing, dropping the views and altering one table
    for statement in pause_ddl(additive_db, store.feeds()):
        engine.execute(statement.to_sql())
    for view, _ in store.views():
        engine.execute(f"DROP TABLE IF EXISTS {view}")
    max_only = StateSet(frozenset({"value_max"}))
    for statement in add_columns(store.minute.name, ADDITIVE_STATES, max_only):
        engine.execute(statement.to_sql())
    assert paused(engine, additive_db)
    aggregated = pre_aggregate((r.as_row() for r in sample[:3]), frozenset())
    for feed in store.feeds():
        insert = (
            store.minute.agg_insert_args(aggregated, feed)
            if "_agg_" in feed
            else store.minute.insert_args(sample[:3], feed)
        )
        with pytest.raises(Exception, match="throwIf"):
            engine.insert(*insert)
    stored = engine.execute(f"SELECT count() FROM {store.minute.name}")
    assert stored == [(0,)]  # no view was left to write
    reports: list[str] = []
    require_current(
        engine, additive_db, meters=[meter("m", Aggregation.SUM)], report=reports.append
    )
    assert any("writes resumed" in r for r in reports)
    _assert_max_added(engine, additive_db)
    _fill(engine, additive_db, sample)
    _fill(engine, full_db, sample)
    for kind in (Aggregation.SUM, Aggregation.MAX):
        assert _answers(engine, additive_db, "m", kind) == _answers(engine, full_db, "m", kind)


def test_a_start_waits_for_another_runners_lock_and_gives_up_naming_it(
    both: tuple[Engine, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _, additive_db = both
    table = MigrationsTable(additive_db)
    for statement in table.take_lock("another runner"):
        engine.execute(statement.to_sql())
    peak = [meter("peak", Aggregation.MAX)]
    monkeypatch.setattr(bootstrap, "STATE_LOCK_WAIT_S", 0.0)
    monkeypatch.setattr("schemas.storage.bootstrap.time.sleep", lambda _s: None)
    with pytest.raises(MigrationLocked, match="another runner"):
        require_current(engine, additive_db, meters=peak)
    assert states_in(engine, additive_db) == ADDITIVE_STATES

    def released(_s: float) -> None:  # the other runner finishes while this start waits
        engine.execute(table.release_lock().to_sql())

    monkeypatch.setattr(bootstrap, "STATE_LOCK_WAIT_S", 60.0)
    monkeypatch.setattr("schemas.storage.bootstrap.time.sleep", released)
    require_current(engine, additive_db, meters=peak)
    assert states_in(engine, additive_db) == StateSet(frozenset({"value_max"}))
