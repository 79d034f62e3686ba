"""Time as Meterline keeps it: timezone-aware UTC, to the millisecond.

Inside the pipeline an instant is an ``int`` of milliseconds since the Unix epoch; at the
edges it is an aware :class:`datetime` in UTC.  Naive datetimes are refused everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["MINUTE_MS", "format_ms", "from_ms", "now_ms", "to_ms", "truncate_ms"]

MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; sub-millisecond digits are truncated."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: give a timezone (UTC is expected)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime for epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


def truncate_ms(moment: datetime) -> datetime:
    """The same instant in UTC with microseconds cut to whole milliseconds."""
    if moment.tzinfo is UTC and moment.microsecond % 1000 == 0:
        return moment  # already exact: the common case on the worker's hot path
    return from_ms(to_ms(moment))


def now_ms() -> int:
    return to_ms(datetime.now(UTC))


def format_ms(ms: int) -> str:
    """RFC 3339 with millisecond precision and a ``Z`` suffix."""
    # isoformat ends in "+00:00" for UTC; it also pads the year to four digits.
    return from_ms(ms).isoformat(timespec="milliseconds")[:-6] + "Z"
