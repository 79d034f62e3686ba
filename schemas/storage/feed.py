"""The per-event window feed: one row per contribution of one event, as workers before
the aggregated feed (``agg_feed``) wrote it, and as tests and backfills build windows.
A ``Null`` table; materialized views aggregate each block into the windows tables."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from schemas.storage.sql import Statement

__all__ = ["DEC", "FEED_COLUMNS", "WINDOW_KEY", "Contribution", "FeedRow", "feed_ddl"]

DEC = "Decimal(38, 9)"
WINDOW_KEY = ("namespace", "meter", "subject", "group_key", "window_start_s", "ingest_minute_s")
"""What a contribution is folded by in every windows table: its window and ingestion minute."""
FEED_COLUMNS = (
    *WINDOW_KEY,
    "value",
    "uniq",
    "event_ms",
    "source_partition",
    "source_offset",
    "source_index",
)


Contribution = tuple[str, str, str, str, int, int, Decimal, str, int, int, int, int]
"""(namespace, meter, subject, group_key, window_start_s, ingest_minute_s, value, uniq,
event_ms, source_partition, source_offset, source_index): one event's contribution, the
columns of the per-event feed."""


def feed_ddl(name: str) -> Statement:
    """A ``Null`` table with the feed's columns: the main feed and each repair feed."""
    return Statement(
        f"CREATE TABLE IF NOT EXISTS {name} ("
        " namespace String, meter String, subject String, group_key String,"
        f" window_start_s UInt32, ingest_minute_s UInt32, value {DEC}, uniq String,"
        " event_ms Int64,"
        " source_partition UInt32, source_offset UInt64, source_index UInt32"
        ") ENGINE = Null"
    )


@dataclass(slots=True)  # not frozen: built per event on the worker's hot path
class FeedRow:
    """One event's contribution to one meter's minute window."""

    namespace: str
    meter: str
    subject: str
    group_key: str
    window_start_s: int
    ingest_minute_s: int
    value: Decimal
    uniq: str
    event_ms: int
    source_partition: int
    source_offset: int
    source_index: int = 0

    def as_row(self) -> Contribution:
        return (
            self.namespace,
            self.meter,
            self.subject,
            self.group_key,
            self.window_start_s,
            self.ingest_minute_s,
            self.value,
            self.uniq,
            self.event_ms,
            self.source_partition,
            self.source_offset,
            self.source_index,
        )
