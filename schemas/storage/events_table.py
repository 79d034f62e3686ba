"""``usage_events``: every accepted, deduplicated event, kept raw for audit and re-metering.

Rows are written by the stream worker after deduplication.  The table is a
ReplacingMergeTree keyed by the event's identity, so a batch that is written again after a
worker crash (same rows, same Kafka positions) collapses to one copy; reads that need
exactness use ``FINAL``.  ``ingested_ms`` is the broker's append time of the record
(LogAppendTime), which makes it a stable, replay-proof ingestion-time cutoff; ``late`` marks
an event that arrived after its window's end plus the grace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from schemas.storage.sql import Statement, lit

__all__ = ["COLUMNS", "EventsTable", "RawEventRow", "RawRow"]

COLUMNS = (
    "namespace",
    "source",
    "id",
    "type",
    "subject",
    "time_ms",
    "data",
    "ingested_ms",
    "source_partition",
    "source_offset",
    "source_index",
    "content_hash",
    "late",
)


RawRow = tuple[str, str, str, str, str, int, str, int, int, int, int, str, bool]
"""A row of ``usage_events`` in :data:`COLUMNS` order — a plain tuple on the worker's hot
path (a tuple costs a tenth of a slotted dataclass to build)."""


class RawEventRow(NamedTuple):
    """The same row with names, where readability beats the last microsecond."""

    namespace: str
    source: str
    id: str
    type: str
    subject: str
    time_ms: int
    data: str
    ingested_ms: int
    source_partition: int
    source_offset: int
    source_index: int
    content_hash: str
    late: bool = False


class EventsTable:
    def __init__(self, database: str) -> None:
        self.database = database
        self.name = f"{database}.usage_events"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, source String, id String, type String, subject String,"
                " time_ms Int64, data String, ingested_ms Int64,"
                " source_partition UInt32, source_offset UInt64, source_index UInt32,"
                " content_hash String, late UInt8,"
                " event_time DateTime MATERIALIZED toDateTime(intDiv(time_ms, 1000))"
                ") ENGINE = ReplacingMergeTree()"
                " PARTITION BY toYYYYMM(event_time)"
                " ORDER BY (namespace, type, subject, time_ms, source, id)"
            )
        ]

    def insert_args(self, rows: Sequence[RawRow]) -> tuple[str, tuple[str, ...], Sequence[RawRow]]:
        return self.name, COLUMNS, rows

    def count(self, namespace: str) -> Statement:
        """Distinct stored events of a namespace (exact, after collapsing rewrites)."""
        return Statement(
            f"SELECT count() FROM {self.name} FINAL WHERE namespace = {lit(namespace)}"
        )

    def late(self, namespace: str) -> Statement:
        """Distinct stored events marked late (ingested more than the grace after their
        minute ended; billed as adjustments when their period was already invoiced)."""
        return Statement(
            f"SELECT sum(late) FROM {self.name} FINAL WHERE namespace = {lit(namespace)}"
        )

    def rows_written(self, namespace: str) -> Statement:
        """Rows written so far, rewrites not collapsed: a cheap progress figure (use
        :meth:`count` for the exact number of events)."""
        return Statement(f"SELECT count() FROM {self.name} WHERE namespace = {lit(namespace)}")

    def scan(
        self,
        namespace: str,
        types: Sequence[str],
        start_ms: int,
        end_ms: int,
        below_offsets: dict[int, int] | None = None,
    ) -> Statement:
        """Rows ``(source_partition, source_offset, source_index, ingested_ms, data)`` of
        stored events of
        ``types`` with event time in ``[start_ms, end_ms)``, optionally only those below a
        Kafka offset per partition (what a stopped worker has already passed)."""
        where = [
            f"namespace = {lit(namespace)}",
            f"type IN ({', '.join(lit(t) for t in types) or lit('')})",
            f"time_ms >= {start_ms}",
            f"time_ms < {end_ms}",
        ]
        if below_offsets is not None:
            bounds = " OR ".join(
                f"(source_partition = {p} AND source_offset < {o})"
                for p, o in sorted(below_offsets.items())
            )
            where.append(f"({bounds or '0'})")
        return Statement(
            "SELECT source_partition, source_offset, source_index, ingested_ms, data"
            f" FROM {self.name} FINAL WHERE {' AND '.join(where)}"
            " ORDER BY source_partition, source_offset, source_index"
        )
