"""What the sink's unit tests share: a meter set, an in-memory dedupe store, a recording
engine and records of generated events."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.events import UsageEvent
from schemas.metering.definitions import parse_meters
from schemas.storage.events_table import RawEventRow
from schemas.storage.windows_table import FeedRow
from schemas.wire import encode_event
from streams.dedupe import SeenRecord
from streams.sink import MeteringSink, Record

METERS = parse_meters(
    {
        "meters": [
            {"slug": "tokens", "event_type": "llm", "aggregation": "SUM", "value_property": "$.n"}
        ]
    }
)
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)


def named_raw(plan: Any) -> list[RawEventRow]:
    """A plan's raw rows (plain tuples on the hot path) with their column names."""
    return [RawEventRow(*row) for row in plan.raw_rows]


def named_feed(plan: Any) -> list[FeedRow]:
    """A plan's feed rows with their column names."""
    return [FeedRow(*row) for row in plan.feed_rows]


class Store:
    def __init__(self) -> None:
        self.data: dict[str, SeenRecord] = {}

    def get(self, key: str) -> SeenRecord | None:
        return self.data.get(key)

    def put_many(self, entries: Sequence[tuple[str, SeenRecord]]) -> None:
        self.data.update(entries)


LABELS = ("minute", "hourly", "daily")


def events_in(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    if "events" in columns:
        return sum(int(r[columns.index("events")]) for r in rows)
    return len(rows)


class RecordingEngine:
    """Records inserts; answers the progress query with ``progress`` for every windows
    table, or per table with ``by_table``.  The raw events and the windows of one write
    are inserted from two threads at once (``streams.sink``), so their order in
    ``inserts`` is not defined (:func:`per_write`)."""

    name = "recording"
    cluster: str | None = None

    def __init__(
        self,
        progress: list[tuple[int, int]] | None = None,
        fail: int = 0,
        by_table: dict[str, list[tuple[int, int]]] | None = None,
    ) -> None:
        self.progress = progress or []
        self.by_table = by_table
        self.fail = fail
        self.inserts: list[tuple[str, int]] = []
        self.progress_reads = 0
        self.lock = threading.Lock()

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        assert "maxMerge(max_offset)" in sql
        self.progress_reads += 1
        tables = self.by_table or dict.fromkeys(LABELS, self.progress)
        return [(label, p, o) for label, rows in tables.items() for p, o in rows]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Records (table, events): the events column of aggregated rows, else rows."""
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise ConnectionError("boom")
            self.inserts.append((table.split(".")[-1], events_in(columns, rows)))

    def close(self) -> None:
        pass


def per_write(inserts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Inserts sorted: the raw events and the windows of a write come in either order."""
    return sorted(inserts)


def event(event_id: str, n: Any, *, at: int = T0) -> UsageEvent:
    return UsageEvent.create(
        type="llm",
        subject="acme",
        source="s",
        id=event_id,
        data={"n": n},
        time=datetime.fromtimestamp(at / 1000, UTC),
    )


def record(
    offset: int, event_id: str, n: Any, *, at: int = T0, ingested: int | None = None
) -> Record:
    body = encode_event(event(event_id, n, at=at))
    return Record("events", 0, offset, ingested or at + 1000, b"acme", body)


def sink(engine: RecordingEngine, **kw: Any) -> MeteringSink:
    return MeteringSink(
        namespace="ns", meters=METERS, engine_factory=lambda: engine, database="db", **kw
    )
