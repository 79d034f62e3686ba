"""The meter query (pure): query parameters in, a validated request; rows in, the
OpenMeter-shaped answer (JSON or CSV) out.

Parameters, as OpenMeter v1 names them: ``from``, ``to`` (RFC 3339 with an offset),
``windowSize`` (MINUTE, HOUR, DAY, MONTH; absent: one row per subject and group over the
whole range), ``windowTimeZone`` (IANA name, default UTC), ``subject`` and ``groupBy``
(repeatable) and ``filterGroupBy[<name>]=<value>`` (OpenAPI deepObject).  Two Meterline
extensions: ``aggregate=total`` gives one row per window for all subjects together (the
states merged across subjects, so every aggregation stays exact; ``subject`` is null),
and ``top=N`` (without ``windowSize``) the N subjects with the highest value.

Usage is kept in one-minute windows, so ``from``/``to`` act at minute resolution: a
minute is included when it starts in ``[from, to)``.  Window ends are computed here with
:mod:`zoneinfo`, since a DAY or MONTH in a timezone is not a fixed length (DST).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.errors import InvalidInput, Problem
from schemas.metering.definitions import MeterDefinition
from schemas.storage.windows_table import MeterQuery, RangeQuery, WindowSize, finish_value
from schemas.timeutil import format_ms, parse_instant

__all__ = [
    "MeterQueryRequest",
    "QueryRow",
    "decimal_text",
    "parse_meter_query",
    "rows_to_csv",
    "shape_rows",
    "window_end",
]

MAX_S = 2**32 - 1
_FILTER = re.compile(r"^filterGroupBy\[([^\]]*)\]$")
_TZ = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
_KNOWN = {"from", "to", "windowSize", "windowTimeZone", "subject", "groupBy", "aggregate", "top"}
MAX_TOP = 1000


@dataclass(frozen=True, slots=True)
class MeterQueryRequest:
    """A validated meter query: bounds in epoch seconds, ``window_size`` None for totals."""

    start_s: int
    end_s: int
    window_size: WindowSize | None
    timezone: str
    subjects: tuple[str, ...]
    group_by: tuple[str, ...]
    filter_group_by: tuple[tuple[str, str], ...]
    across_subjects: bool = False
    top: int | None = None

    def to_query(self, namespace: str, meter: MeterDefinition) -> MeterQuery:
        if self.window_size is None:
            return RangeQuery(
                namespace,
                meter.slug,
                meter.aggregation,
                self.start_s,
                self.end_s,
                WindowSize.MINUTE,
                self.timezone,
                self.subjects,
                self.group_by,
                self.filter_group_by,
                self.across_subjects,
                self.top,
            )
        return MeterQuery(
            namespace,
            meter.slug,
            meter.aggregation,
            self.start_s,
            self.end_s,
            self.window_size,
            self.timezone,
            self.subjects,
            self.group_by,
            self.filter_group_by,
            self.across_subjects,
            self.top,
        )


def _parse_time(name: str, text: str, problems: list[Problem]) -> int | None:
    candidate = text.strip().replace(" ", "+")  # a '+' offset left unescaped in a URL
    ms = parse_instant(candidate)
    if ms is None:
        problems.append(
            Problem(
                name,
                f"{text!r} is not an RFC 3339 time with an offset",
                "e.g. 2026-11-01T00:00:00Z",
            )
        )
        return None
    seconds = ms // 1000
    if not 0 <= seconds <= MAX_S:
        problems.append(Problem(name, "out of range", "use a time between 1970 and 2106"))
        return None
    return seconds


def parse_meter_query(
    params: Sequence[tuple[str, str]], meter: MeterDefinition, now_s: int
) -> MeterQueryRequest:
    """Validate query parameters (as ordered pairs); :class:`InvalidInput` lists every
    problem.  ``to`` defaults to the end of the current minute, ``from`` to the epoch."""
    problems: list[Problem] = []
    single: dict[str, str] = {}
    subjects: list[str] = []
    group_by: list[str] = []
    filters: dict[str, str] = {}
    for key, value in params:
        match = _FILTER.match(key)
        if key == "subject":
            subjects.append(value)
        elif key == "groupBy":
            group_by.append(value)
        elif match:
            filters[match[1]] = value
        elif key in _KNOWN:
            if key in single:
                problems.append(Problem(key, "given more than once", "give it once"))
            single[key] = value
    start_s = _parse_time("from", single["from"], problems) if "from" in single else 0
    end_s = _parse_time("to", single["to"], problems) if "to" in single else (now_s // 60 + 1) * 60
    if start_s is not None and end_s is not None and start_s >= end_s:
        problems.append(Problem("to", "must be after from", "swap or widen the range"))
    size: WindowSize | None = None
    if "windowSize" in single:
        try:
            size = WindowSize(single["windowSize"])
        except ValueError:
            problems.append(
                Problem(
                    "windowSize",
                    f"unknown window size {single['windowSize']!r}",
                    "use MINUTE, HOUR, DAY or MONTH",
                )
            )
    timezone = single.get("windowTimeZone", "UTC")
    if not _valid_zone(timezone):
        problems.append(
            Problem(
                "windowTimeZone",
                f"unknown time zone {timezone!r}",
                "use an IANA name such as UTC or Europe/Berlin",
            )
        )
    known = sorted(meter.group_by)
    for index, name in enumerate(group_by):
        if name not in meter.group_by:
            problems.append(
                Problem(
                    f"groupBy[{index}]",
                    f"meter {meter.slug!r} has no group-by {name!r}",
                    f"use one of {known}",
                )
            )
    for name in filters:
        if name not in meter.group_by:
            problems.append(
                Problem(
                    f"filterGroupBy[{name}]",
                    f"meter {meter.slug!r} has no group-by {name!r}",
                    f"use one of {known}",
                )
            )
    aggregate = single.get("aggregate", "subject")
    if aggregate not in ("subject", "total"):
        problems.append(
            Problem("aggregate", f"unknown value {aggregate!r}", "use subject (default) or total")
        )
    top = _parse_top(single.get("top"), size, aggregate, problems)
    if problems or start_s is None or end_s is None:
        raise InvalidInput("meter query", problems)
    return MeterQueryRequest(
        start_s=start_s,
        end_s=end_s,
        window_size=size,
        timezone=timezone,
        subjects=tuple(dict.fromkeys(subjects)),
        group_by=tuple(dict.fromkeys(group_by)),
        filter_group_by=tuple(sorted(filters.items())),
        across_subjects=aggregate == "total",
        top=top,
    )


def _parse_top(
    text: str | None, size: WindowSize | None, aggregate: str, problems: list[Problem]
) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_TOP:
        problems.append(Problem("top", f"{text!r} is not 1 to {MAX_TOP}", "e.g. top=20"))
        return None
    if size is not None or aggregate == "total":
        problems.append(
            Problem("top", "ranks subjects over the whole range", "drop windowSize/aggregate")
        )
    return int(text)


def _valid_zone(name: str) -> bool:
    if not _TZ.match(name) or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def window_end(start_s: int, size: WindowSize, timezone: str) -> int:
    """The end of the window that starts at ``start_s``, in epoch seconds.

    DAY and MONTH end at the next local midnight / first of the month in ``timezone``,
    so a DST day is 23 or 25 hours long."""
    if size is WindowSize.MINUTE:
        return start_s + 60
    if size is WindowSize.HOUR:
        return start_s + 3600
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(start_s, zone)
    if size is WindowSize.DAY:
        day = local.date() + timedelta(days=1)
        nxt = datetime(day.year, day.month, day.day, tzinfo=zone)
    else:
        year, month = local.year + (local.month == 12), local.month % 12 + 1
        nxt = datetime(year, month, 1, tzinfo=zone)
    return int(nxt.timestamp())


@dataclass(frozen=True, slots=True)
class QueryRow:
    value: Decimal
    window_start_s: int
    window_end_s: int
    subject: str | None
    group_by: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "windowStart": format_ms(self.window_start_s * 1000),
            "windowEnd": format_ms(self.window_end_s * 1000),
            "subject": self.subject,
            "groupBy": dict(self.group_by),
        }


def shape_rows(
    request: MeterQueryRequest, meter: MeterDefinition, rows: Sequence[Sequence[Any]]
) -> list[QueryRow]:
    """Rows ``(bucket_s, subject, *group values, *value columns)`` → answer rows."""
    width = len(request.group_by)
    out = []
    for row in rows:
        start = int(row[0])
        if request.window_size is None:
            start, end = request.start_s, request.end_s
        else:
            end = window_end(start, request.window_size, request.timezone)
        groups = {name: str(row[2 + i]) for i, name in enumerate(request.group_by)}
        value = finish_value(meter.aggregation, row[2 + width :])
        subject = None if request.across_subjects else str(row[1])
        out.append(QueryRow(value, start, end, subject, groups))
    return out


def query_document(request: MeterQueryRequest, rows: Sequence[QueryRow]) -> dict[str, Any]:
    return {
        "from": format_ms(request.start_s * 1000),
        "to": format_ms(request.end_s * 1000),
        "windowSize": request.window_size.value if request.window_size else None,
        "data": [row.to_json() for row in rows],
    }


def decimal_text(value: Decimal) -> str:
    """Exact positional text, without exponent or trailing zeros: ``12.500`` → ``12.5``."""
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def rows_to_csv(request: MeterQueryRequest, rows: Sequence[QueryRow]) -> str:
    """CSV with a header: windowStart, windowEnd, subject, one column per groupBy, value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["windowStart", "windowEnd", "subject", *request.group_by, "value"])
    for row in rows:
        writer.writerow(
            [
                format_ms(row.window_start_s * 1000),
                format_ms(row.window_end_s * 1000),
                row.subject,
                *(row.group_by.get(name, "") for name in request.group_by),
                decimal_text(row.value),
            ]
        )
    return buffer.getvalue()
