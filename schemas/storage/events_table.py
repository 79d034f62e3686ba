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
from dataclasses import dataclass
from typing import NamedTuple

from schemas.storage.sql import Statement, lit

__all__ = ["COLUMNS", "EventsTable", "LineEvents", "RawEventRow", "RawRow"]

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


RawRow = tuple[str, str, str, str, str, int, bytes | str, int, int, int, int, str, bool]
"""A row of ``usage_events`` in :data:`COLUMNS` order — a plain tuple on the worker's hot
path (a tuple costs a tenth of a slotted dataclass to build).  The event (``data``) is
the line's exact UTF-8 bytes as the worker read them (both engines store bytes and text
alike; not decoding and re-encoding saves the worker ~0.25 µs an event), or its text."""


class RawEventRow(NamedTuple):
    """The same row with names, where readability beats the last microsecond."""

    namespace: str
    source: str
    id: str
    type: str
    subject: str
    time_ms: int
    data: bytes | str
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

    def months(self) -> Statement:
        """``(month YYYYMM, rows, bytes on disk)`` of every stored month (the table's
        partitions, by the events' time), oldest first, from the server's part list: no
        row is read.  Rows not yet collapsed by a merge count as many times as written."""
        return Statement(
            "SELECT toUInt32(partition), sum(rows), sum(bytes_on_disk) FROM system.parts"
            f" WHERE database = {lit(self.database)} AND table = 'usage_events' AND active"
            " GROUP BY partition ORDER BY partition"
        )

    def newest_ingested(self, month: int) -> Statement:
        """The latest ingestion time (ms) of any row of ``month`` (YYYYMM), every namespace;
        0 when the month holds none.  Reads that month's partition only."""
        return Statement(
            f"SELECT max(ingested_ms) FROM {self.name} WHERE toYYYYMM(event_time) = {_month(month)}"
        )

    def drop_month(self, month: int) -> Statement:
        """Delete every raw event of ``month`` (YYYYMM), every namespace, at once: the
        partition's parts are removed, nothing is rewritten.  The windows keep what the
        events added (``streams.retention`` says what needs raw events)."""
        return Statement(f"ALTER TABLE {self.name} DROP PARTITION {_month(month)}")

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


@dataclass(frozen=True, slots=True)
class LineEvents:
    """The stored events an invoice line bills: events of ``event_type`` from
    ``subjects``, event time in ``[start_ms, end_ms)``, ingested before ``before_ms`` —
    exactly what the line's windows aggregated (an event that cannot be metered is
    dead-lettered whole and never stored).

    Each event is hashed as ``sha256(source + NUL + id + NUL + data)`` (hex; ``data`` the
    stored event, its CloudEvents JSON text, byte for byte) and each subject's digest is
    the SHA-256 of its events' hashes sorted and joined with newlines;
    ``invoicing.evidence`` combines the subjects of a line — the recipe
    ``docs/invoicing.md`` gives customers.  ``subjects`` ``None``: every subject (one
    query for all the customers of a period)."""

    namespace: str
    event_type: str
    subjects: tuple[str, ...] | None
    start_ms: int
    end_ms: int
    before_ms: int

    def _where(self) -> str:
        where = (
            f"namespace = {lit(self.namespace)} AND type = {lit(self.event_type)}"
            f" AND time_ms >= {self.start_ms} AND time_ms < {self.end_ms}"
            f" AND ingested_ms < {self.before_ms}"
        )
        if self.subjects is not None:
            where += f" AND subject IN ({', '.join(lit(s) for s in self.subjects) or lit('')})"
        return where

    def _events(self, table: str) -> str:
        """One row per distinct event (a rewrite after a crash is the same event)."""
        return (
            "SELECT source, id, any(subject) AS event_subject, any(time_ms) AS event_ms,"
            " any(ingested_ms) AS event_ingested_ms, any(data) AS event_data,"
            " lower(hex(SHA256(concat(source, '\\0', id, '\\0', any(data))))) AS hash"
            f" FROM {table} WHERE {self._where()} GROUP BY source, id"
        )

    def evidence(self, table: str) -> Statement:
        """Rows ``(subject, events, digest)``, one per subject that has events."""
        return Statement(
            "SELECT event_subject, count(),"
            " lower(hex(SHA256(arrayStringConcat(arraySort(groupArray(hash)), '\\n'))))"
            f" FROM ({self._events(table)}) GROUP BY event_subject ORDER BY event_subject"
        )

    def page(self, table: str, after: tuple[str, str] | None, limit: int) -> Statement:
        """Rows ``(source, id, subject, time_ms, ingested_ms, data, hash)`` ordered by
        ``(source, id)``, the first ``limit`` after the ``(source, id)`` cursor."""
        cursor = ""
        if after is not None:
            source, event_id = (lit(part) for part in after)
            cursor = f" WHERE (source > {source}) OR (source = {source} AND id > {event_id})"
        return Statement(
            "SELECT source, id, event_subject, event_ms, event_ingested_ms, event_data, hash"
            f" FROM ({self._events(table)}){cursor} ORDER BY source, id LIMIT {int(limit)}"
        )


def _month(month: int) -> int:
    """``month`` checked as a YYYYMM partition value (it is inlined in the SQL)."""
    if not (isinstance(month, int) and 197001 <= month <= 999912 and 1 <= month % 100 <= 12):
        raise ValueError(f"{month!r} is not a month as YYYYMM")
    return month
