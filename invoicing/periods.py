"""Billing periods (pure).  Here a period is a UTC calendar month, ``[start, end)``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.errors import InvalidInput

__all__ = ["Period", "month_period"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return self.start.strftime("%Y-%m")

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    def is_closed(self, now: datetime, grace: timedelta = timedelta(0)) -> bool:
        """A period may be closed once its end plus the grace has passed."""
        return now >= self.end + grace


def month_period(text: str) -> Period:
    """``"2026-11"`` → ``[2026-11-01T00:00Z, 2026-12-01T00:00Z)``."""
    match = _MONTH.match(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise InvalidInput.single(
            "billing period",
            "period",
            f"{text!r} is not a month",
            "write it as YYYY-MM, e.g. 2026-11",
        )
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end)
