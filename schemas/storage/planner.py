"""Which windows table answers a meter query (pure): the coarsest that answers it exactly.

Tables, finest first: ``meter_windows`` (one minute, ordered by subject), and the
``hourly`` and ``daily`` rollups (whole UTC hours and days, ordered by time).  Every table
keeps mergeable aggregate states, so a coarser table gives the same numbers *when every
bucket boundary of the query falls on one of its own boundaries*:

* the range ``[from, to)`` starts and ends on whole UTC hours (days);
* each bucket (HOUR, DAY, MONTH in the query's time zone) starts on a whole UTC hour
  (day): the zone's offset from UTC is a whole number of hours (is zero) throughout the
  range.  Asia/Kolkata (+05:30) and Asia/Kathmandu (+05:45) days start at 18:30 and
  18:15 UTC, so they are answered from the minute table; Europe/Berlin's days start at
  22:00 or 23:00 UTC across DST, so the hourly rollup answers them exactly.

A query without windows (one total per subject) has only the range's two boundaries.
A query for given subjects reads the minute table, which is ordered by subject: a few
subjects' minutes are fewer rows than every subject's hours.  Offsets are sampled at
every whole UTC hour of the range; zones change offset on whole hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from schemas.storage.windows_table import MeterQuery, UsageQuery, WindowSize

__all__ = ["Plan", "plan_meter_query", "plan_subjects", "plan_usage_query"]

HOUR, DAY = 3600, 86400
#: Up to this many given subjects, a usage read takes the subject-ordered minute table;
#: more (an alerts evaluator watching every customer) read the coarsest exact rollup.
FEW_SUBJECTS = 100


@dataclass(frozen=True, slots=True)
class Plan:
    grain: str
    """``minute``, ``hourly`` or ``daily``."""
    reason: str

    def table(self, database: str) -> str:
        if self.grain == "minute":
            return f"{database}.meter_windows"
        return f"{database}.meter_windows_{self.grain}"


def plan_meter_query(query: MeterQuery, windowed: bool = True) -> Plan:
    """The table for ``query``; ``windowed=False`` for one total per subject (only the
    range's boundaries matter then)."""
    if query.subjects:
        return Plan("minute", "given subjects: the minute table is ordered by subject")
    if windowed and query.window_size is WindowSize.MINUTE:
        return Plan("minute", "MINUTE windows")
    offsets = _offsets(query.timezone, query.start_s, query.end_s) if windowed else {0}
    daily_buckets = not windowed or query.window_size in (WindowSize.DAY, WindowSize.MONTH)
    if daily_buckets and _aligned(query, DAY) and offsets == {0}:
        return Plan("daily", "every boundary is a UTC midnight")
    if _aligned(query, HOUR) and all(offset % HOUR == 0 for offset in offsets):
        return Plan("hourly", "every boundary is a whole UTC hour")
    if not _aligned(query, HOUR):
        return Plan("minute", "the range does not start and end on whole UTC hours")
    return Plan(
        "minute",
        f"{query.timezone} is not a whole number of hours from UTC "
        f"({', '.join(_hhmm(o) for o in sorted(offsets))}): its buckets start mid-hour",
    )


def plan_usage_query(query: UsageQuery) -> Plan:
    """Usage per subject over a range: the minute table when it is read as of an
    ingestion cutoff (billing, adjustments: only it keeps the ingestion minute), or for
    a few given subjects (at most :data:`FEW_SUBJECTS`: one customer's, for a quote or
    an entitlement check), since it is ordered by subject while the rollups are ordered
    by time and would be read for every subject of the range.  Measured with 10,000
    subjects and a month of windows (``docs/benchmarks.md``, *Entitlement check*): one
    subject's month 8 ms from the minute table, 34 ms from the daily rollup."""
    if query.ingested_from_s is not None or query.ingested_before_s is not None:
        return Plan("minute", "an ingestion cutoff: only the minute table keeps it")
    if query.subjects is not None and len(query.subjects) <= FEW_SUBJECTS:
        return Plan("minute", "a few given subjects: the minute table is ordered by subject")
    totals = MeterQuery(query.namespace, query.meter, query.kind, query.start_s, query.end_s)
    return plan_meter_query(totals, windowed=False)


def plan_subjects() -> Plan:
    """Every subject with usage of a meter: each has rows in the daily rollup, which is
    the smallest table (a row per subject and day, not per minute)."""
    return Plan("daily", "every subject with usage has a day in the daily rollup")


def _aligned(query: MeterQuery, seconds: int) -> bool:
    return query.start_s % seconds == 0 and query.end_s % seconds == 0


def _offsets(timezone: str, start_s: int, end_s: int) -> set[int]:
    """Every UTC offset (seconds) the zone has at a whole UTC hour of ``[start, end)``."""
    zone = ZoneInfo(timezone)
    found: set[int] = set()
    hour = start_s - start_s % HOUR
    while hour < max(end_s, start_s + 1):
        delta = datetime.fromtimestamp(hour, UTC).astimezone(zone).utcoffset()
        found.add(int(delta.total_seconds()) if delta is not None else 0)
        hour += HOUR
    return found


def _hhmm(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    minutes = abs(offset) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
