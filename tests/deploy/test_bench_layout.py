"""``bench/windows_layout.py``: every layout it measures is created, fed and read on both
engines, and each stores what it was given (the bench's figures are only worth as much
as the tables it times)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.storage.agg_feed import AGG_COLUMNS
from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import windows_layout  # noqa: E402


@pytest.fixture(params=["server", "chdb"])
def empty_database(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """A new, empty database on the ClickHouse 18.16 server or on chDB."""
    yield from fresh_database(request, "bench_layout_test_", tables=False)


def test_backfill_rows_are_one_event_each_and_never_share_a_window_row() -> None:
    rows = windows_layout.backfill_rows(2_000)
    assert [len(row) for row in rows[:3]] == [len(AGG_COLUMNS)] * 3
    assert {row[AGG_COLUMNS.index("events")] for row in rows} == {1}
    assert windows_layout.backfill_rows(2_000) == rows  # seeded: the same rows every run
    assert windows_layout.expected(rows)[0] == 2_000


@pytest.mark.parametrize("layout", windows_layout.LAYOUTS)
def test_each_layout_stores_every_event_and_the_exact_sum(
    empty_database: tuple[Any, str], layout: str
) -> None:
    engine, database = empty_database
    rows = windows_layout.backfill_rows(3_000)
    feed = windows_layout.create(engine, layout, database)
    for start in range(0, len(rows), 1_000):  # three inserts: three parts to merge
        engine.insert(feed, AGG_COLUMNS, rows[start : start + 1_000])
    events, total = engine.execute(windows_layout.totals(layout, database))[0]
    assert (int(events), Decimal(total)) == windows_layout.expected(rows)
    (stored,) = engine.execute(f"SELECT count() FROM {database}.meter_windows")[0]
    assert len({row[:7] for row in rows}) <= int(stored) <= len(rows)  # folded, or not yet


def test_an_unknown_layout_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["windows_layout.py", "--layouts", "current,wide"])
    with pytest.raises(SystemExit):
        windows_layout.main()
    assert "--layouts: unknown wide" in capsys.readouterr().err
