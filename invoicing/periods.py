"""Billing periods (pure): cadences, anchor days, timezones, and which periods a month holds.

A period is ``[start, end)`` between two local midnights of the subscription's timezone,
kept as aware UTC datetimes.  Cadences:

* ``daily``: every local day;
* ``weekly``: seven local days from the anchor weekday (default: the start date's);
* ``monthly``: from the anchor day of one month to the anchor day of the next; an
  anchor of 29, 30 or 31 is clamped to the month's last day *for that month only*
  (anchor 31: Jan 31 → Feb 28 → Mar 31 → Apr 30 …);
* ``quarterly``: three months from the anchor day, in the start month and every third
  month from it, clamped like ``monthly``;
* ``yearly`` (or ``annual``): from the anchor (month, day) of one year to the next;
  Feb 29 clamps to Feb 28 in common years.

A subscription's first period starts at its start date and its last ends at its end
date, so the first and last periods may be shorter than the cadence (no proration is
applied to fixed fees; see ``docs/invoicing.md``).

Which periods a billing month selects: a run for ``--period 2026-11`` bills every
subscription period whose *end* falls in ``(2026-11-01, 2026-12-01]`` local time — the
periods whose last day is in November.  So a monthly period anchored on the 1st is the
calendar month itself, one anchored on the 15th is 2026-10-15..2026-11-15, and a daily
cadence yields the 30 days of November.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from schemas.errors import InvalidInput

__all__ = [
    "WEEKDAYS",
    "Cadence",
    "Month",
    "Period",
    "Schedule",
    "clamp_day",
    "instant",
    "local_midnight",
    "month_period",
    "parse_month",
]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @classmethod
    def _missing_(cls, value: object) -> Cadence | None:
        return cls.YEARLY if value == "annual" else None


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def clamp_day(year: int, month: int, day: int) -> date:
    """``day`` of that month, or the month's last day when the month is shorter."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant (UTC) at which ``day`` begins in ``timezone``."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def instant(moment: date | datetime, timezone: str) -> datetime:
    """A local date as the instant it begins; an aware instant as itself (UTC)."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return local_midnight(moment, timezone)


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)``; both aware UTC.  ``first_day``/``end_day`` are the local dates."""

    start: datetime
    end: datetime
    timezone: str = "UTC"

    @property
    def first_day(self) -> date:
        return self.start.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def end_day(self) -> date:
        """The local date on which the period ends (exclusive)."""
        return self.end.astimezone(ZoneInfo(self.timezone)).date()

    @property
    def label(self) -> str:
        """``2026-11`` (a calendar month), ``2026-11-05`` (a day), ``2026`` (a calendar
        year), otherwise ``2026-10-15..2026-11-15`` (end exclusive)."""
        first, end = self.first_day, self.end_day
        if not (self._midnight(self.start) and self._midnight(self.end)):
            return f"{self._edge(self.start)}..{self._edge(self.end)}"
        if first.day == 1 and end.day == 1:
            if (end.year * 12 + end.month) - (first.year * 12 + first.month) == 1:
                return f"{first:%Y-%m}"
            if first.month == 1 and end.month == 1 and end.year == first.year + 1:
                return f"{first:%Y}"
        if end - first == timedelta(days=1):
            return first.isoformat()
        quarter_end = date(first.year + (first.month == 10), (first.month + 2) % 12 + 1, 1)
        if first.day == 1 and first.month % 3 == 1 and end == quarter_end:
            return f"{first.year}-Q{first.month // 3 + 1}"
        return f"{first.isoformat()}..{end.isoformat()}"

    def _midnight(self, moment: datetime) -> bool:
        return moment.astimezone(ZoneInfo(self.timezone)).time() == time(0)

    def _edge(self, moment: datetime) -> str:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return local.date().isoformat() if self._midnight(moment) else f"{local:%Y-%m-%dT%H:%M}"

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    def is_closed(self, now: datetime, grace: timedelta = timedelta(0)) -> bool:
        """A period may be closed once its end plus the grace has passed."""
        return now >= self.end + grace


@dataclass(frozen=True, slots=True)
class Month:
    """A billing month as named on the command line (``2026-11``)."""

    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def next_first(self) -> date:
        return date(self.year + (self.month == 12), self.month % 12 + 1, 1)


def parse_month(text: str) -> Month:
    match = _MONTH.match(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise InvalidInput.single(
            "billing period",
            "period",
            f"{text!r} is not a month",
            "write it as YYYY-MM, e.g. 2026-11",
        )
    return Month(int(match[1]), int(match[2]))


def month_period(text: str, timezone: str = "UTC") -> Period:
    """``"2026-11"`` → ``[2026-11-01T00:00, 2026-12-01T00:00)`` in ``timezone``."""
    month = parse_month(text)
    return Period(
        local_midnight(month.first, timezone), local_midnight(month.next_first, timezone), timezone
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """The period grid of one subscription.

    ``start`` and ``end`` are local dates (the subscription starts or ends at that
    midnight) or aware instants on a whole minute (a change in the middle of a day): the
    grid stays on local midnights and only the first and last periods are cut there."""

    cadence: Cadence
    timezone: str
    start: date | datetime
    end: date | datetime | None = None
    anchor_day: int = 1
    anchor_month: int = 1
    anchor_weekday: int = 0
    """Weekly only: 0 Monday … 6 Sunday."""

    @property
    def start_at(self) -> datetime:
        return instant(self.start, self.timezone)

    @property
    def end_at(self) -> datetime | None:
        return None if self.end is None else instant(self.end, self.timezone)

    def _boundary(self, year: int, month: int) -> date:
        return clamp_day(year, month, self.anchor_day)

    def _months_back(self, day: date, step: int) -> date:
        """The last boundary on or before ``day`` among months ``anchor_month + k·step``."""
        year, month = day.year, day.month
        while True:
            if (month - self.anchor_month) % step == 0:
                boundary = self._boundary(year, month)
                if boundary <= day:
                    return boundary
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)

    def _months_ahead(self, boundary: date, step: int) -> date:
        index = boundary.year * 12 + boundary.month - 1 + step
        return self._boundary(index // 12, index % 12 + 1)

    def _grid_start(self, day: date) -> date:
        """The last grid boundary on or before ``day`` (ignoring start/end)."""
        if self.cadence is Cadence.DAILY:
            return day
        if self.cadence is Cadence.WEEKLY:
            return day - timedelta(days=(day.weekday() - self.anchor_weekday) % 7)
        if self.cadence is Cadence.MONTHLY:
            return self._months_back(day, 1)
        if self.cadence is Cadence.QUARTERLY:
            return self._months_back(day, 3)
        return self._months_back(day, 12)

    def _grid_next(self, boundary: date) -> date:
        """The grid boundary after ``boundary`` (which must be on the grid)."""
        if self.cadence is Cadence.DAILY:
            return boundary + timedelta(days=1)
        if self.cadence is Cadence.WEEKLY:
            return boundary + timedelta(days=7)
        step = {Cadence.MONTHLY: 1, Cadence.QUARTERLY: 3}.get(self.cadence, 12)
        return self._months_ahead(boundary, step)

    def natural(self, period: Period) -> Period:
        """The full grid period holding ``period``'s first day: what a period cut short
        by the subscription's start or end, or a trial, is a part of (proration)."""
        first = self._grid_start(period.first_day)
        return Period(
            local_midnight(first, self.timezone),
            local_midnight(self._grid_next(first), self.timezone),
            self.timezone,
        )

    def period_containing(self, day: date) -> Period | None:
        """The subscription period holding (some of) local ``day``; ``None`` outside the
        subscription."""
        start_at, end_at = self.start_at, self.end_at
        if local_midnight(day + timedelta(days=1), self.timezone) <= start_at:
            return None
        if end_at is not None and local_midnight(day, self.timezone) >= end_at:
            return None
        grid = self._grid_start(day)
        first = max(local_midnight(grid, self.timezone), start_at)
        end = local_midnight(self._grid_next(grid), self.timezone)
        if end_at is not None:
            end = min(end, end_at)
        return Period(first, end, self.timezone)

    def periods(self, since: date) -> Iterator[Period]:
        """Every period from the one holding ``since`` (or the first) onwards, in order."""
        day = max(since, self.start_at.astimezone(ZoneInfo(self.timezone)).date())
        end_at = self.end_at
        while (period := self.period_containing(day)) is not None:
            yield period
            if end_at is not None and period.end >= end_at:
                return
            day = period.end_day

    def ending_in(self, month: Month) -> list[Period]:
        """The periods whose end falls in ``(month.first, month.next_first]``, each the
        instant its local midnight begins: a period ending during the 1st (a plan change
        at 13:45) is the new month's, not the month before."""
        first = local_midnight(month.first, self.timezone)
        last = local_midnight(month.next_first, self.timezone)
        out = []
        for period in self.periods(month.first - timedelta(days=1)):
            if period.end > last:
                break
            if period.end > first:
                out.append(period)
        return out
