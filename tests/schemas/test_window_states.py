"""The windows tables' state sets: the ``additive`` set answers SUM, COUNT and AVG exactly
as the ``full`` one does, on both ClickHouse engines, through both feeds and every
table; a database's set is read back from its columns; meters it cannot answer are
refused at start, each named with the fix."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from schemas.errors import InvalidInput
from schemas.metering.definitions import Aggregation, MeterDefinition
from schemas.storage.agg_feed import pre_aggregate
from schemas.storage.bootstrap import ensure_schema, require_current
from schemas.storage.engine import Engine
from schemas.storage.feed import FeedRow
from schemas.storage.migrations import drop_database
from schemas.storage.planner import plan_meter_query
from schemas.storage.rollups import WindowStore
from schemas.storage.window_states import (
    WindowStates,
    check_meters,
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
    yield engine, full_db, additive_db
    engine.execute(drop_database(additive_db).to_sql())
    next(full, None)


def test_the_additive_set_keeps_the_sum_the_count_and_the_write_progress_only() -> None:
    full = state_columns(WindowStates.FULL)
    additive = state_columns(WindowStates.ADDITIVE)
    assert [name for name in STATE_NAMES if f" {name} " in full] == list(STATE_NAMES)
    assert [name for name in STATE_NAMES if f" {name} " in additive] == [
        "value_sum",
        "event_count",
        "max_offset",
    ]
    assert WindowStates.ADDITIVE.aggregations == frozenset(ADDITIVE_KINDS)
    assert WindowStates.FULL.aggregations == frozenset(Aggregation)
    assert states_of(STATE_NAMES) is WindowStates.FULL
    assert states_of(["value_sum", "event_count", "max_offset"]) is WindowStates.ADDITIVE
    assert states_of([]) is None


def test_meters_the_additive_set_cannot_answer_are_each_named_with_the_fix() -> None:
    meters = [meter(f"m_{kind.value.lower()}", kind) for kind in Aggregation]
    check_meters(meters, WindowStates.FULL, "db")  # every aggregation: nothing refused
    check_meters(
        [m for m in meters if m.aggregation in ADDITIVE_KINDS], WindowStates.ADDITIVE, "db"
    )
    with pytest.raises(InvalidInput) as refused:
        check_meters(meters, WindowStates.ADDITIVE, "db")
    problems = refused.value.problems
    assert [p.path for p in problems] == [
        f"m_{kind.value.lower()}.aggregation" for kind in Aggregation if kind in RICHER_KINDS
    ]
    for problem in problems:
        assert "ClickHouse database db" in problem.message
        assert "additive" in problem.message
        assert "METERLINE_CLICKHOUSE_WINDOW_STATES=full" in problem.fix


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
    assert states_in(engine, full_db) is WindowStates.FULL
    assert states_in(engine, additive_db) is WindowStates.ADDITIVE
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
    require_current(engine, additive_db, meters=additive)
    require_current(engine, full_db, meters=[*additive, *richer])
    with pytest.raises(InvalidInput) as refused:
        require_current(engine, additive_db, meters=[*additive, *richer])
    assert [p.path for p in refused.value.problems] == ["peak.aggregation", "users.aggregation"]
    # the set is the database's own: asking for the other one changes nothing
    require_current(engine, full_db, states=WindowStates.ADDITIVE, meters=richer)
    assert states_in(engine, full_db) is WindowStates.FULL


def test_a_new_database_is_created_with_the_set_asked_for(
    both: tuple[Engine, str, str],
) -> None:
    engine, full_db, _ = both
    database = full_db + "_new"
    try:
        assert states_in(engine, database) is None
        require_current(engine, database, states=WindowStates.ADDITIVE)
        assert states_in(engine, database) is WindowStates.ADDITIVE
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
