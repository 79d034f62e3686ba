"""The aggregated feed: pre-aggregating a chunk's contributions loses nothing (pure, with
hypothesis), and on both ClickHouse engines the aggregated feed fills every windows table
exactly as the per-event feed does, for every aggregation kind."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.metering.definitions import Aggregation
from schemas.metering.windows import WindowState, fold
from schemas.storage.agg_feed import AGG_COLUMNS, Contribution, pre_aggregate
from schemas.storage.engine import Engine
from schemas.storage.migrations import drop_database
from schemas.storage.windows_table import FeedRow, MeterQuery, WindowSize, WindowsTable

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z

contribution = st.builds(
    lambda meter, subject, minute, value, uniq, ms, part, off: (
        "ns",
        meter,
        subject,
        "{}",
        T0 + 60 * minute,
        T0 + 60 * minute,
        value,
        uniq,
        (T0 + 60 * minute) * 1000 + ms,
        part,
        off,
        off % 3,
    ),
    st.sampled_from(["m", "u"]),
    st.sampled_from(["a", "b"]),
    st.integers(0, 3),
    st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from(["x", "y", "z"]),
    st.integers(0, 59_999),
    st.integers(0, 1),
    st.integers(0, 10_000),
)


def window(rows: list[Contribution]) -> dict[tuple[object, ...], WindowState]:
    """Per-event contributions folded per window (the reference)."""
    groups: dict[tuple[object, ...], list[tuple[Decimal, str, int, int, int]]] = {}
    for _ns, meter, subject, _group, ws, _im, value, uniq, ms, part, off, idx in rows:
        groups.setdefault((meter, subject, ws, part), []).append((value, uniq, ms, off, idx))
    return {
        key: fold((v, u, ms, off) for v, u, ms, off, _ in items) for key, items in groups.items()
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(contribution, max_size=60, unique_by=lambda r: (r[9], r[10])))
def test_pre_aggregated_rows_hold_the_same_states(rows: list[Contribution]) -> None:
    aggregated = pre_aggregate(rows, frozenset({"u"}))
    assert sum(cast(int, r[AGG_COLUMNS.index("events")]) for r in aggregated) == len(rows)
    want = window(rows)
    got: dict[tuple[object, ...], WindowState] = {}
    for row in aggregated:
        col = dict(zip(AGG_COLUMNS, row, strict=True))
        state = WindowState(
            total=col["value_sum"],  # type: ignore[arg-type]
            count=col["events"],  # type: ignore[arg-type]
            distinct=frozenset({col["uniq"]}),  # type: ignore[arg-type]
            maximum=col["value_max"],  # type: ignore[arg-type]
            minimum=col["value_min"],  # type: ignore[arg-type]
            latest=(col["latest_ms"], col["latest_offset"], 0, col["latest_value"]),  # type: ignore[arg-type]
        )
        key: tuple[object, ...] = (
            col["meter"],
            col["subject"],
            col["window_start_s"],
            col["source_partition"],
        )
        got[key] = got[key].merge(state) if key in got else state
    for key, reference in want.items():
        mine = got[key]
        assert (mine.total, mine.count, mine.maximum, mine.minimum) == (
            reference.total,
            reference.count,
            reference.maximum,
            reference.minimum,
        )
        assert mine.latest is not None
        assert reference.latest is not None
        assert mine.latest[3] == reference.latest[3]
        if key[0] == "u":  # distinct values survive only for UNIQUE_COUNT meters
            assert mine.distinct == reference.distinct


def sample(n: int, seed: int) -> list[FeedRow]:
    rng = random.Random(seed)
    out = []
    for offset in range(n):
        minute = T0 + 60 * rng.randrange(0, 3 * 24 * 60)
        meter = rng.choice(["m", "u"])  # as the worker meters: only "u" has distinct values
        out.append(
            FeedRow(
                "ns",
                meter,
                f"s{rng.randrange(3)}",
                '{"r":"' + rng.choice("ab") + '"}',
                minute,
                minute + 60 * rng.randrange(2),
                Decimal(rng.randrange(-500, 10**5)) / 100,
                f"v{rng.randrange(6)}" if meter == "u" else "",
                minute * 1000 + rng.randrange(60_000),
                offset % 2,
                offset,
                offset % 4,
            )
        )
    return out


@pytest.fixture
def second(engine: tuple[Engine, str]) -> Iterator[tuple[Engine, str, str]]:
    from schemas.storage.bootstrap import ensure_schema

    eng, database = engine
    other = database + "_agg"
    ensure_schema(eng, other)
    yield eng, database, other
    eng.execute(drop_database(other).to_sql())


@pytest.mark.integration
@pytest.mark.chdb
@pytest.mark.parametrize("kind", list(Aggregation))
def test_the_aggregated_feed_fills_the_tables_as_the_per_event_feed(
    second: tuple[Engine, str, str], kind: Aggregation
) -> None:
    eng, per_event, aggregated = second
    rows = sample(400, seed=9)
    eng.insert(*WindowsTable(per_event).insert_args(rows))
    table = WindowsTable(aggregated)
    eng.insert(*table.agg_insert_args(pre_aggregate((r.as_row() for r in rows), frozenset({"u"}))))
    for name in ("meter_windows", "meter_windows_hourly", "meter_windows_daily"):
        for meter in ("m", "u"):
            query = MeterQuery(
                "ns", meter, kind, T0, T0 + 4 * 86400, WindowSize.DAY, group_by=("r",)
            )
            assert eng.execute(query.on(f"{aggregated}.{name}").to_sql()) == eng.execute(
                query.on(f"{per_event}.{name}").to_sql()
            ), (name, meter)
    progress = (
        "SELECT source_partition, maxMerge(max_offset) FROM {}.meter_windows"
        " GROUP BY source_partition ORDER BY source_partition"
    )
    assert eng.execute(progress.format(aggregated)) == eng.execute(progress.format(per_event))
