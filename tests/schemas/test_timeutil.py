"""Times a person types (options, query parameters) are read one way: with an offset,
to the millisecond, or refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import timeutil
from schemas.timeutil import parse_instant, parse_wire_time, to_ms

OCT = to_ms(datetime(2026, 10, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-10-01T00:00Z", OCT),
        ("2026-10-01T00:00:00Z", OCT),
        ("2026-10-01T00:00:00.123456Z", OCT + 123),  # truncated, never rounded
        ("2026-10-01T02:00:00+02:00", OCT),
        ("2026-09-30T22:30:00-01:30", OCT),
        (" 2026-10-01T00:00:00Z ", OCT),
        ("2026-10-01 00:00:00+00:00", OCT),
    ],
)
def test_times_with_an_offset(text: str, ms: int) -> None:
    assert parse_instant(text) == ms


@pytest.mark.parametrize(
    "text", ["2026-10-01T00:00:00", "2026-10-01", "yesterday", "", "2026-13-01T00:00Z"]
)
def test_times_without_an_offset_or_not_times_are_refused(text: str) -> None:
    assert parse_instant(text) is None


def test_the_wire_reader_remembers_a_bounded_number_of_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Canonical times are read through a cache of minutes; past its size it is emptied,
    and every time is still read exactly (compared with the standard library)."""
    monkeypatch.setattr(timeutil, "_MINUTES", {})
    monkeypatch.setattr(timeutil, "_MINUTES_KEPT", 4)
    for minute in range(10):
        for second in (0, 59):
            text = f"2026-12-31T23:{minute:02d}:{second:02d}.{minute * 7:03d}Z"
            expected = to_ms(datetime.fromisoformat(text))
            assert parse_wire_time(text) == (expected, text)
            assert parse_wire_time(text) == (expected, text)  # now from the cache
            assert len(timeutil._MINUTES) <= 4
    assert parse_wire_time("2026-12-31T23:60:00.000Z") is None
    assert "2026-12-31T23:60:" not in timeutil._MINUTES
