"""The rollups on both ClickHouse engines: every query the planner sends to a rollup gives
the minute table's answer, every aggregation kind included; each repair feed reaches only
its own table; the progress query reports every windows table."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from schemas.metering.definitions import Aggregation
from schemas.storage.engine import Engine
from schemas.storage.planner import plan_meter_query
from schemas.storage.rollups import WindowStore
from schemas.storage.windows_table import (
    FeedRow,
    MeterQuery,
    RangeQuery,
    WindowSize,
    WindowsTable,
    finish_value,
)

pytestmark = [pytest.mark.integration, pytest.mark.chdb]
T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
DAY = 86400


def rows(n: int, seed: int) -> list[FeedRow]:
    rng = random.Random(seed)
    out = []
    for offset in range(n):
        window = T0 + 60 * rng.randrange(0, 40 * 24 * 60)  # 40 days of minutes
        out.append(
            FeedRow(
                namespace="ns",
                meter="m",
                subject=f"s{rng.randrange(5)}",
                group_key='{"region":"' + rng.choice(["eu", "us"]) + '"}',
                window_start_s=window,
                ingest_minute_s=window + 60 * rng.randrange(0, 3),
                value=Decimal(rng.randrange(-500, 10**6)) / Decimal(1000),
                uniq=f"u{rng.randrange(30)}",
                event_ms=window * 1000 + offset,
                source_partition=offset % 3,
                source_offset=offset,
            )
        )
    return out


@pytest.mark.parametrize("kind", list(Aggregation))
@pytest.mark.parametrize(
    ("window", "tz", "grain"),
    [
        (WindowSize.DAY, "UTC", "daily"),
        (WindowSize.MONTH, "UTC", "daily"),
        (WindowSize.HOUR, "UTC", "hourly"),
        (WindowSize.DAY, "Europe/Berlin", "hourly"),
        (WindowSize.DAY, "Asia/Kolkata", "minute"),
        (None, "UTC", "daily"),
    ],
)
def test_a_rollup_answers_exactly_what_the_minute_table_does(
    engine: tuple[Engine, str], kind: Aggregation, window: WindowSize | None, tz: str, grain: str
) -> None:
    eng, database = engine
    eng.insert(*WindowsTable(database).insert_args(rows(600, seed=3)))
    shape = MeterQuery if window else RangeQuery
    query = shape(
        "ns", "m", kind, T0, T0 + 31 * DAY, window or WindowSize.MINUTE, tz, (), ("region",)
    )
    plan = plan_meter_query(query, windowed=window is not None)
    assert plan.grain == grain
    minute = eng.execute(query.on(f"{database}.meter_windows").to_sql())
    planned = eng.execute(query.on(plan.table(database)).to_sql())
    assert minute  # the range holds data
    assert planned == minute


def test_each_repair_feed_reaches_only_its_own_table(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    store = WindowStore(database)
    windows = store.minute
    sample = rows(10, seed=4)
    for label, (_, feed) in store.tables().items():
        eng.insert(*windows.insert_args(sample, feed=feed))
        counts = {
            other: int(eng.execute(f"SELECT countMerge(event_count) FROM {table}")[0][0])
            for other, (table, _) in store.tables().items()
        }
        assert counts[label] == len(sample), label
        eng.execute(f"TRUNCATE TABLE {store.tables()[label][0]}")
        assert set(counts.values()) == {0, len(sample)}
        assert sum(counts.values()) == len(sample)


def test_progress_covers_every_windows_table(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    store = WindowStore(database)
    sample = rows(30, seed=5)
    eng.insert(*store.minute.insert_args(sample))
    eng.insert(*store.minute.insert_args([sample[0]], feed=store.tables()["hourly"][1]))
    found = sorted(eng.execute(store.progress("ns").to_sql()))
    expected = sorted(
        (label, p, max(r.source_offset for r in sample if r.source_partition == p))
        for label in ("minute", "hourly", "daily")
        for p in (0, 1, 2)
    )
    assert found == expected


@pytest.mark.parametrize("kind", [Aggregation.SUM, Aggregation.MAX, Aggregation.UNIQUE_COUNT])
def test_totals_across_subjects_merge_the_states_exactly(
    engine: tuple[Engine, str], kind: Aggregation
) -> None:
    eng, database = engine
    sample = rows(500, seed=6)
    eng.insert(*WindowsTable(database).insert_args(sample))
    query = MeterQuery(
        "ns", "m", kind, T0, T0 + 45 * DAY, WindowSize.DAY, "UTC", across_subjects=True
    )
    plan = plan_meter_query(query)
    assert plan.grain == "daily"
    got = {
        int(r[0]): finish_value(kind, r[2:])
        for r in eng.execute(query.on(plan.table(database)).to_sql())
    }
    by_day: dict[int, list[FeedRow]] = {}
    for row in sample:
        by_day.setdefault(row.window_start_s - row.window_start_s % DAY, []).append(row)
    want = {
        day: {
            Aggregation.SUM: sum((r.value for r in day_rows), Decimal(0)),
            Aggregation.MAX: max(r.value for r in day_rows),
            Aggregation.UNIQUE_COUNT: Decimal(len({r.uniq for r in day_rows})),
        }[kind]
        for day, day_rows in by_day.items()
    }
    assert got == want


def test_top_subjects_are_ranked_by_value(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    sample = rows(500, seed=7)
    eng.insert(*WindowsTable(database).insert_args(sample))
    query = RangeQuery("ns", "m", Aggregation.SUM, T0, T0 + 45 * DAY, WindowSize.MINUTE, top=3)
    plan = plan_meter_query(query, windowed=False)
    got = [
        (str(r[1]), finish_value(Aggregation.SUM, r[2:]))
        for r in eng.execute(query.on(plan.table(database)).to_sql())
    ]
    totals: dict[str, Decimal] = {}
    for row in sample:
        totals[row.subject] = totals.get(row.subject, Decimal(0)) + row.value
    assert got == sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:3]


def test_totals_across_given_subjects_keep_the_subject_filter(engine: tuple[Engine, str]) -> None:
    """A customer's view: its subjects only, merged (the constant column must not shadow
    ``subject`` in the filter)."""
    eng, database = engine
    sample = rows(200, seed=8)
    eng.insert(*WindowsTable(database).insert_args(sample))
    query = RangeQuery(
        "ns",
        "m",
        Aggregation.COUNT,
        T0,
        T0 + 45 * DAY,
        WindowSize.MINUTE,
        "UTC",
        ("s1", "s2"),
        across_subjects=True,
    )
    (row,) = eng.execute(query.on(plan_meter_query(query, windowed=False).table(database)).to_sql())
    assert finish_value(Aggregation.COUNT, row[2:]) == sum(
        1 for r in sample if r.subject in ("s1", "s2")
    )
