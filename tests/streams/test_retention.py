"""Retention of raw events: which months go (pure), and the command on the real server."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import pytest

from schemas.errors import InvalidInput
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable, RawEventRow
from streams.retention import Month, first_kept_month, merge_months, plan_retention
from streams.retention_cli import run_retention

DAY = 86_400_000
NOW = 1_796_428_800_000  # 2026-12-05T00:00:00Z
HORIZON = 32 * DAY


@pytest.mark.parametrize(
    ("today", "keep", "first"),
    [
        (date(2026, 12, 5), 1, 202612),
        (date(2026, 12, 31), 3, 202610),
        (date(2026, 1, 1), 2, 202512),
        (date(2026, 12, 1), 13, 202512),
        (date(2026, 3, 15), 27, 202401),
    ],
)
def test_the_first_kept_month_counts_back_across_years(today: date, keep: int, first: int) -> None:
    assert first_kept_month(today, keep) == first


def test_keeping_no_month_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidInput, match="--keep-months: 0 keeps no month"):
        first_kept_month(date(2026, 12, 5), 0)


def test_old_months_go_unless_something_of_them_was_ingested_within_the_horizon() -> None:
    months = [Month(202607, 10, 100), Month(202608, 20, 200), Month(202610, 30, 300)]
    newest = {202607: NOW - HORIZON - 1, 202608: NOW - HORIZON + 1}
    asked: list[int] = []

    def newest_ingested(month: int) -> int:
        asked.append(month)
        return newest[month]

    verdicts = plan_retention(months, 202610, newest_ingested, NOW, HORIZON)
    assert [(v.month.month, v.drop) for v in verdicts] == [
        (202607, True),
        (202608, False),
        (202610, False),
    ]
    assert "ingested at 2026-11-03T00:00:00.001Z, within the dedupe horizon" in verdicts[1].why
    assert asked == [202607, 202608]  # a kept month's rows are not read


def row(event_id: str, time_ms: int, ingested_ms: int) -> RawEventRow:
    return RawEventRow(
        "ns", "src", event_id, "api", "acme", time_ms, "{}", ingested_ms, 0, 0, 0, "h"
    )


@pytest.mark.integration
def test_the_command_prints_its_plan_and_deletes_only_with_yes(
    isolated: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = ServerEngine.of(isolated)
    ensure_schema(engine, isolated.clickhouse_database)
    table = EventsTable(isolated.clickhouse_database)
    now = datetime.now(UTC)
    this_month = int(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000
    )
    long_ago = this_month - 400 * DAY  # over a year back: ingested beyond any horizon
    recent = int(now.timestamp() * 1000) - DAY
    engine.insert(
        *table.insert_args(
            [
                row("old", long_ago, long_ago),  # an old month, ingested long ago: goes
                row("late", long_ago - 40 * DAY, recent),  # an old month, a late event: stays
                row("now", int(now.timestamp() * 1000), recent),  # the current month: stays
            ]
        )
    )
    before = [int(m) for m, _, _ in engine.execute(table.months().to_sql())]
    assert len(before) == 3

    assert run_retention(isolated, argparse.Namespace(keep_months=2, yes=False)) == 0
    dry = capsys.readouterr().out
    assert "dry run: 1 month of raw events, 1 row\nwould be deleted; add --yes" in dry
    assert "within the dedupe horizon" in dry
    assert [int(m) for m, _, _ in engine.execute(table.months().to_sql())] == before

    assert run_retention(isolated, argparse.Namespace(keep_months=2, yes=True)) == 0
    done = capsys.readouterr().out
    gone = before[1]  # sorted: the month of "late" (older), then "old", then now
    assert f"deleted the raw events of {gone // 100}-{gone % 100:02d} (1 row)" in done
    assert [int(m) for m, _, _ in engine.execute(table.months().to_sql())] == [before[0], before[2]]
    assert engine.execute(table.count("ns").to_sql()) == [(2,)]
    engine.close()


def test_the_shards_months_merge_into_one_list_oldest_first() -> None:
    first = [Month(202509, 10, 1_000), Month(202510, 5, 500)]
    second = [Month(202508, 1, 100), Month(202510, 7, 700)]
    assert merge_months([first, second]) == [
        Month(202508, 1, 100),
        Month(202509, 10, 1_000),
        Month(202510, 12, 1_200),
    ]
    assert merge_months([[], []]) == []


def test_a_cluster_that_the_server_does_not_define_is_named_with_the_fix(
    isolated: Settings,
) -> None:
    settings = isolated.model_copy(update={"clickhouse_cluster": "nope"})
    with pytest.raises(InvalidInput, match="METERLINE_CLICKHOUSE_CLUSTER: ClickHouse has no"):
        run_retention(settings, argparse.Namespace(keep_months=13, yes=True))


def test_retention_is_a_meterline_command() -> None:
    from meterline.cli import parser

    args = parser().parse_args(["retention", "--keep-months", "13"])
    assert (args.keep_months, args.yes) == (13, False)
