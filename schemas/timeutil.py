"""Time as Meterline keeps it: timezone-aware UTC, to the millisecond.

Inside the pipeline an instant is an ``int`` of milliseconds since the Unix epoch; at the
edges it is an aware :class:`datetime` in UTC.  Naive datetimes are refused everywhere.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "EVENT_TIME_MAX_MS",
    "EVENT_TIME_MIN_MS",
    "EVENT_TIME_RANGE",
    "MINUTE_MS",
    "format_ms",
    "from_ms",
    "hour_ms",
    "now_ms",
    "parse_instant",
    "parse_wire_time",
    "storable_event_ms",
    "to_ms",
    "truncate_ms",
]

MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; sub-millisecond digits are truncated."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: give a timezone (UTC is expected)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_instant(text: str) -> int | None:
    """Epoch milliseconds of a time a person typed (a command option, a query parameter):
    ISO 8601 / RFC 3339 with a UTC offset (``Z`` or ``±HH:MM``; seconds and fraction
    optional, the fraction truncated to the millisecond), or ``None`` when ``text`` is not
    one or has no offset.  Callers name the field and the fix.  Events on the wire are
    read by :func:`parse_wire_time`, which takes only the forms an event may carry."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return to_ms(moment)


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


# -- the event times the pipeline can store -----------------------------------------------

EVENT_TIME_MIN_MS = 0
"""1970-01-01T00:00:00.000Z, the earliest event time accepted."""
EVENT_TIME_MAX_MS = 4_291_747_199_999
"""2105-12-31T23:59:59.999Z, the latest event time accepted.  The windows tables keep a
window's start in whole seconds as ClickHouse's ``DateTime`` (unsigned 32 bits: 1970 to
2106-02-07), so an event outside these bounds could never be written: accepted, it would
stop its partition at every write.  Every decoder refuses it (the reference:
``UsageEvent``; the lean and native decoders leave it to the reference)."""
EVENT_TIME_RANGE = "between 1970-01-01T00:00:00Z and 2105-12-31T23:59:59.999Z"


def storable_event_ms(ms: int) -> bool:
    """Whether an event time of ``ms`` can be stored (``EVENT_TIME_MIN_MS`` to ``_MAX_MS``)."""
    return EVENT_TIME_MIN_MS <= ms <= EVENT_TIME_MAX_MS


# -- the lean RFC 3339 reader (the worker's and the gateway's fast paths) ---------------

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_MIN_MS = to_ms(datetime.min.replace(tzinfo=UTC))  # what astimezone(UTC) can represent
_MAX_MS = to_ms(datetime.max.replace(tzinfo=UTC))
_HOUR = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):")
_TIME = re.compile(  # after an hour _HOUR accepts
    r".{14}([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:Z|([+-])([0-9]{2}):([0-9]{2}))", re.DOTALL
)


def parse_wire_time(text: str) -> tuple[int, str] | None:
    """``(time_ms, time as to_wire writes it)`` for the RFC 3339 forms decided here, or
    ``None``: the caller then leaves the event to ``UsageEvent`` validation (the
    reference), which accepts or refuses it.  Held to the reference through the lean
    decoders that use it (``tests/schemas/test_fastpath.py``, ``tests/api/test_fastingest.py``).

    Like the reference: the fraction is truncated (never rounded) to milliseconds, the
    offset applied, and a UTC time outside years 1..9999 is not accepted.
    """
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        # The canonical form (what to_wire and the SDK write): no regex, no datetime, and
        # the minute read once per distinct minute.
        minute_start = _MINUTES.get(text[:17])
        if minute_start is None:
            minute_start = _minute_ms(text[:17])
        if minute_start is not None:
            clock = text[17:19] + text[20:23]  # SSmmm
            if clock.isascii() and clock.isdigit():
                ms_of_minute = int(clock)
                if ms_of_minute < 60_000:
                    return minute_start + ms_of_minute, text
    hour_start = hour_ms(text[:14])
    if hour_start is None:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    mm, ss, fraction, sign, offset_hh, offset_mm = match.groups()
    minute, second = int(mm), int(ss)
    if minute > 59 or second > 59:
        return None
    ms = int(fraction[:3].ljust(3, "0")) if fraction else 0
    time_ms = hour_start + (minute * 60 + second) * 1000 + ms
    if sign is None:
        return time_ms, f"{text[:19]}.{ms:03d}Z"
    offset_h, offset_m = int(offset_hh), int(offset_mm)
    if offset_h > 23 or offset_m > 59:
        return None
    offset_ms = (offset_h * 60 + offset_m) * 60_000
    time_ms = time_ms - offset_ms if sign == "+" else time_ms + offset_ms
    if not _MIN_MS <= time_ms <= _MAX_MS:
        return None
    return time_ms, format_ms(time_ms)


_MINUTES: dict[str, int] = {}
"""Epoch milliseconds by ``YYYY-MM-DDTHH:MM:`` prefix, as :func:`_minute_ms` read them."""
_MINUTES_KEPT = 65_536  # 45 days of distinct minutes; emptied when full


def _minute_ms(prefix: str) -> int | None:
    """Epoch milliseconds of ``YYYY-MM-DDTHH:MM:`` (taken as UTC), ``None`` if no such
    minute; remembered in :data:`_MINUTES`."""
    hour_start = hour_ms(prefix[:14])
    minute = prefix[14:16]
    if hour_start is None or prefix[16] != ":" or not (minute.isascii() and minute.isdigit()):
        return None
    if int(minute) > 59:
        return None
    if len(_MINUTES) >= _MINUTES_KEPT:
        _MINUTES.clear()
    found = _MINUTES[prefix] = hour_start + int(minute) * 60_000
    return found


@functools.lru_cache(maxsize=4096)
def hour_ms(prefix: str) -> int | None:
    """Epoch milliseconds of ``YYYY-MM-DDTHH:`` (taken as UTC), ``None`` if no such hour."""
    match = _HOUR.fullmatch(prefix)
    if match is None:
        return None
    year, month, day, hour = (int(part) for part in match.groups())
    try:
        ordinal = date(year, month, day).toordinal()
    except ValueError:
        return None
    return None if hour > 23 else (ordinal - _EPOCH_DAY) * _DAY_MS + hour * 3_600_000
