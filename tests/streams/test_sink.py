"""The sink's plan and write steps, with an in-memory dedupe store and a recording engine.

These are unit tests of the orchestration; the same sink runs against the real Kafka and
ClickHouse in tests/e2e."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from schemas.events import UsageEvent
from schemas.metering.contributions import DeadLetterReason
from schemas.storage.agg_feed import Contribution
from schemas.storage.cluster import Replica, shard_of
from schemas.storage.engine import ShardReplicas
from schemas.storage.windows_table import FeedRow
from schemas.wire import encode_event
from streams.batch import BatchMeter
from streams.dedupe import SeenRecord
from streams.liveness import WorkerState
from streams.retry import RetryLog
from streams.shard import ReplicasDisagree, Shard, replicas_differ
from streams.sink import (
    MeteringSink,
    Record,
    RecordsSkipped,
    SinkFailed,
    window_writes,
)
from tests.conftest import wait_until
from tests.streams.sink_kit import (
    LABELS,
    METERS,
    T0,
    RecordingEngine,
    Store,
    events_in,
    named_feed,
    named_raw,
    per_write,
    record,
    sink,
)


def test_plan_drops_duplicates_and_dead_letters_the_unmeterable() -> None:
    bad_json = Record("events", 0, 3, T0, None, b"{not json")
    records = [
        record(0, "a", 5),
        record(1, "a", 5),
        record(2, "b", "x"),
        bad_json,
        record(4, "c", 2),
    ]
    plan = sink(RecordingEngine()).plan(records, Store())
    assert [r.id for r in named_raw(plan)] == ["a", "c"]
    assert sum(r.value for r in named_feed(plan)) == Decimal(7)
    assert {d.reason for d in plan.dead} == {
        DeadLetterReason.VALUE_NOT_NUMERIC,
        DeadLetterReason.SCHEMA,
    }
    assert {d.record.offset for d in plan.dead} == {2, 3}
    assert plan.outcomes == {"dead_letter": 2, "new": 2, "duplicate": 1}


def test_every_dead_letter_reason_is_exported_at_zero_before_the_first() -> None:
    """So that ``increase()`` in the alerting rules counts a reason's first dead letter."""
    from prometheus_client import REGISTRY

    for reason in DeadLetterReason:
        labels = {"reason": reason.value}
        assert REGISTRY.get_sample_value("meterline_stream_dead_letters_total", labels) is not None


def test_conflicting_content_keeps_the_first_and_is_reported() -> None:
    store = Store()
    s = sink(RecordingEngine())
    first = s.plan([record(0, "a", 5)], store)
    s.finish(first, store)
    second = s.plan([record(7, "a", 6)], store)
    assert second.outcomes == {"conflict": 1}
    assert second.raw_rows == []
    assert "differs from the first copy at 0:0" in second.conflicts[0]


def test_late_events_are_counted_and_marked_not_dropped() -> None:
    grace = 60_000
    on_time = record(0, "a", 1, at=T0, ingested=T0 + 60_000 + grace)
    late = record(1, "b", 2, at=T0, ingested=T0 + 60_000 + grace + 1)
    plan = sink(RecordingEngine(), late_grace_ms=grace).plan([on_time, late], Store())
    assert [r.late for r in named_raw(plan)] == [False, True]
    assert len(plan.feed_rows) == 2
    assert plan.outcomes["late"] == 1


def test_write_skips_window_rows_already_stored_before_a_crash() -> None:
    engine = RecordingEngine(progress=[(0, 1)])
    s = sink(engine)
    plan = s.plan([record(0, "a", 1), record(1, "b", 1), record(2, "c", 1)], Store())
    s.write(plan)
    # raw rows are rewritten (they collapse); only offset 2's window row is new
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 1), ("usage_events", 3)]


def test_seen_is_recorded_only_in_finish_after_the_write() -> None:
    store = Store()
    s = sink(RecordingEngine())
    plan = s.plan([record(0, "a", 1)], store)
    s.write(plan)
    assert store.data == {}
    s.finish(plan, store)
    assert list(store.data) == ["ns\x1fs\x1fa"]


def test_write_retries_then_fails_loudly() -> None:
    engine = RecordingEngine(fail=2)
    s = sink(engine, retry_seconds=30)
    s.write(s.plan([record(0, "a", 1)], Store()))
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 1), ("usage_events", 1)]
    stubborn = RecordingEngine(fail=10**6)
    with pytest.raises(SinkFailed, match="ClickHouse write failed"):
        sink(stubborn, retry_seconds=0.5).write(sink(stubborn).plan([record(0, "a", 1)], Store()))


def test_a_failing_write_is_logged_loudly_once_per_cause_and_interval() -> None:
    retries = RetryLog(interval=10.0)
    lost, slow = ConnectionError("lost"), TimeoutError("slow")
    assert [
        retries.loud(lost, 0.0),
        retries.loud(lost, 0.5),  # the same kind, soon after: quiet
        retries.loud(lost, 9.9),
        retries.loud(lost, 10.0),  # the same kind, an interval on: loud again
        retries.loud(slow, 10.5),  # another kind: loud at once
        retries.loud(lost, 11.0),  # and back: loud
        retries.loud(lost, 11.5),
    ] == [True, False, False, True, True, True, False]
    assert retries.failures == 7


def test_a_write_that_recovers_says_so_without_a_warning_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class WindowsFailThrice(RecordingEngine):
        def __init__(self) -> None:
            super().__init__()
            self.errors: list[Exception] = [
                ConnectionError("lost"),
                ConnectionError("lost again"),
                TimeoutError("slow"),
            ]

        def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
            if not table.endswith("usage_events"):
                with self.lock:
                    error = self.errors.pop(0) if self.errors else None
                if error is not None:
                    raise error
            super().insert(table, columns, rows)

    engine = WindowsFailThrice()
    s = sink(engine, retry_seconds=30)
    with caplog.at_level(logging.DEBUG, logger="streams.retry"):
        s.write(s.plan([record(0, "a", 1)], Store()))
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 1), ("usage_events", 1)]
    failed = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert [(r.levelno, type(r.args[0]).__name__) for r in failed] == [  # type: ignore[index]
        (logging.WARNING, "ConnectionError"),
        (logging.DEBUG, "ConnectionError"),
        (logging.WARNING, "TimeoutError"),
    ]
    assert "attempt 2" in failed[1].getMessage()
    recovered = [r for r in caplog.records if "succeeded after" in r.getMessage()]
    assert [r.levelno for r in recovered] == [logging.INFO]
    assert "after 3 failed attempt(s)" in recovered[0].getMessage()


class RawWaitsForWindows(RecordingEngine):
    """The raw insert waits (``wait_until``, 10 s) for the windows insert to begin: on a
    sink that inserts them one after the other the wait fails.  ``raw_fails``: the raw
    insert then raises that many times."""

    def __init__(self, raw_fails: int = 0) -> None:
        super().__init__()
        self.raw_fails = raw_fails
        self.windows_started = threading.Event()
        self.threads: set[str] = set()

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.threads.add(threading.current_thread().name)
        if table.endswith("usage_events"):
            wait_until(self.windows_started.is_set, 10, "the windows insert to begin", every=0.005)
            with self.lock:
                if self.raw_fails:
                    self.raw_fails -= 1
                    raise ConnectionError("raw insert lost")
        else:
            self.windows_started.set()
        super().insert(table, columns, rows)


def test_raw_events_and_windows_are_inserted_at_the_same_time() -> None:
    engine = RawWaitsForWindows()
    s = sink(engine)
    s.write(s.plan([record(0, "a", 1), record(1, "b", 2)], Store()))
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 2), ("usage_events", 2)]
    assert len(engine.threads) == 2  # the caller's thread and the raw-insert thread


def test_a_raw_insert_that_keeps_failing_fails_the_write_after_the_windows() -> None:
    engine = RawWaitsForWindows(raw_fails=10**6)
    s = sink(engine, retry_seconds=0.5)
    with pytest.raises(SinkFailed, match="raw insert lost"):
        s.write(s.plan([record(0, "a", 1)], Store()))
    # the windows were stored (their progress covers them); the chunk is not finished,
    # so its records are read again and only the raw rows, which collapse, are rewritten
    assert engine.inserts == [("meter_window_agg_feed", 1)]


def test_a_windows_failure_waits_for_the_raw_insert_before_it_is_raised() -> None:
    class WindowsFail(RecordingEngine):
        def __init__(self) -> None:
            super().__init__()
            self.raw_done = threading.Event()

        def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
            if table.endswith("usage_events"):
                time.sleep(0.3)  # still running when the windows give up
                super().insert(table, columns, rows)
                self.raw_done.set()
                return
            raise ConnectionError("windows lost")

    engine = WindowsFail()
    with pytest.raises(SinkFailed, match="windows lost"):
        sink(engine, retry_seconds=0.1).write(sink(engine).plan([record(0, "a", 1)], Store()))
    assert engine.raw_done.is_set()  # no insert left running behind the failed write


def test_a_forward_jump_in_offsets_is_refused_a_step_back_is_not() -> None:
    s = sink(RecordingEngine())
    s.check_contiguous([record(5, "a", 1), record(6, "b", 1)])
    s.check_contiguous([record(6, "b", 1), record(7, "c", 1)])  # re-delivery: fine
    with pytest.raises(RecordsSkipped, match="expected offset 9, got 10"):
        s.check_contiguous([record(8, "d", 1), record(10, "e", 1)])
    s.forget_partitions([0])  # after a rebalance the partition may resume anywhere
    s.check_contiguous([record(42, "f", 1)])


def test_the_first_record_after_an_assignment_is_checked_against_the_committed_offset() -> None:
    s = sink(RecordingEngine())
    batch = [record(7, "a", 1), record(8, "b", 1)]
    assert s.unanchored(batch) == {0}
    s.anchor({0: 6})  # the group resumes partition 0 at offset 6: offset 6 was skipped
    assert s.unanchored(batch) == set()
    with pytest.raises(RecordsSkipped, match="expected offset 6, got 7"):
        s.check_contiguous(batch)

    s.forget_partitions([0])  # reassigned
    s.anchor({0: 7})
    s.check_contiguous(batch)
    s.anchor({0: 3})  # an anchor read after records were metered does not move back
    with pytest.raises(RecordsSkipped, match="expected offset 9, got 10"):
        s.check_contiguous([record(10, "c", 1)])
    s.check_contiguous([record(5, "x", 1), record(9, "d", 1)])  # a re-delivery, then on


def test_invalid_unicode_is_dead_lettered_not_a_poison_pill() -> None:
    body = (
        b'{"specversion":"1.0","id":"u","source":"s","type":"llm","subject":"acme",'
        b'"time":"2026-11-01T00:00:00Z","data":{"n":1,"note":"\\ud800"}}'
    )
    plan = sink(RecordingEngine()).plan([Record("events", 0, 0, T0, b"acme", body)], Store())
    assert [d.reason for d in plan.dead] == [DeadLetterReason.SCHEMA]
    assert "not valid Unicode" in plan.dead[0].detail
    assert plan.raw_rows == []


def test_a_record_delivered_twice_in_one_batch_counts_once() -> None:
    engine = RecordingEngine()
    s = sink(engine)
    plan = s.plan([record(0, "a", 5), record(1, "b", 2), record(0, "a", 5)], Store())
    assert sum(r.value for r in named_feed(plan)) == Decimal(7)
    assert plan.outcomes == {"new": 2, "redelivered": 1}
    s.write(plan)
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 2), ("usage_events", 2)]


def test_progress_is_reloaded_after_a_partition_comes_back() -> None:
    engine = RecordingEngine(progress=[(0, 1)])
    s = sink(engine)
    s.write(s.plan([record(0, "a", 1), record(1, "b", 1), record(2, "c", 1)], Store()))
    engine.progress = [(0, 9)]  # meanwhile another worker stored offsets up to 9
    s.forget_partitions([0])  # assigned back to this worker
    engine.inserts.clear()
    s.write(s.plan([record(8, "h", 1), record(9, "i", 1), record(10, "j", 1)], Store()))
    assert per_write(engine.inserts) == [("meter_window_agg_feed", 1), ("usage_events", 3)]


def feed_row(offset: int) -> Contribution:
    return FeedRow("ns", "tokens", "acme", "{}", 0, 0, Decimal(1), "", 0, 0, offset).as_row()


def test_window_writes_send_each_table_only_what_it_lacks() -> None:
    rows = [feed_row(o) for o in range(5)]
    level = {label: {0: 1} for label in LABELS}
    main, repairs = window_writes(rows, level)
    assert [r[10] for r in main] == [2, 3, 4]
    assert repairs == {}
    behind = {"minute": {0: 3}, "hourly": {0: 1}, "daily": {}}
    main, repairs = window_writes(rows, behind)
    assert [r[10] for r in main] == [4]  # [10]: the source offset
    assert {k: [r[10] for r in v] for k, v in repairs.items()} == {
        "hourly": [2, 3],
        "daily": [0, 1, 2, 3],
    }


class PartialEngine(RecordingEngine):
    """The first main-feed insert lands in the minute table only, then fails: a failure
    between the views of one insert."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, dict[int, int]] = {label: {} for label in LABELS}
        self.broken = True

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        self.progress_reads += 1
        return [(label, p, o) for label, t in self.stored.items() for p, o in t.items()]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        name = table.split(".")[-1]
        self.inserts.append((name, events_in(columns, rows)))
        if name == "usage_events":
            return
        top = max(int(r[columns.index("max_offset")]) for r in rows)
        targets = {
            "meter_window_agg_feed": LABELS,
            **{f"meter_window_agg_feed_repair_{label}": (label,) for label in LABELS},
        }[name]
        if name == "meter_window_agg_feed" and self.broken:
            self.broken = False
            self.stored["minute"][0] = top
            raise ConnectionError("lost after the first view")
        for label in targets:
            self.stored[label][0] = max(self.stored[label].get(0, -1), top)


def test_a_failure_between_views_is_repaired_without_counting_twice() -> None:
    engine = PartialEngine()
    s = sink(engine)
    s.write(s.plan([record(0, "a", 1), record(1, "b", 2)], Store()))
    assert ("usage_events", 2) in engine.inserts  # alongside, from the raw-insert thread
    assert [insert for insert in engine.inserts if insert[0] != "usage_events"] == [
        ("meter_window_agg_feed", 2),  # landed in the minute table only, then failed
        ("meter_window_agg_feed_repair_hourly", 2),  # the retry: the rollups get them,
        ("meter_window_agg_feed_repair_daily", 2),  # the minute table nothing more
    ]
    assert engine.stored == {label: {0: 1} for label in LABELS}
    assert engine.progress_reads == 2  # progress was reloaded before the retry


ENVELOPE = (
    b'"specversion":"1.0","id":"p","source":"s","type":"llm","subject":"acme",'
    b'"time":"2026-11-01T00:00:00Z"'
)


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        # once each of these raised out of plan() and stopped the worker on every retry
        (b"{" + ENVELOPE + b',"data":{"n":1,"x":123456789012345678901234567890}}', "new"),
        (b"{" + ENVELOPE + b',"data":{"n":1e99999999999999999999}}', "dead_letter"),
        (
            b"{" + ENVELOPE + b',"data":' + b'{"a":' * 1200 + b"1" + b"}" * 1200 + b"}",
            "dead_letter",
        ),
        (("{" + ENVELOPE.decode() + ',"data":{"n":1}}').encode("utf-16"), "dead_letter"),
    ],
    ids=["integer beyond 64 bits", "exponent beyond any Decimal", "1200 levels deep", "UTF-16"],
)
def test_no_event_stops_the_plan(body: bytes, outcome: str) -> None:
    plan = sink(RecordingEngine()).plan([Record("events", 0, 0, T0, b"acme", body)], Store())
    assert plan.outcomes == {outcome: 1}


# -- a whole batch, the worker's way, without Faust (streams.batch) -----------------------


class SlowStartEngine(RecordingEngine):
    """Holds the first insert until released, so the next chunk is planned meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.first_started = threading.Event()

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not self.first_started.is_set():
            self.first_started.set()
            assert self.release.wait(10)
        super().insert(table, columns, rows)


def batch_meter(s: MeteringSink, store: Store, resumes: dict[int, int], log: list[str]) -> Any:
    async def resume(partitions: set[int]) -> dict[int, int]:
        log.append(f"resume {sorted(partitions)}")
        return {p: resumes[p] for p in partitions}

    async def dead_letters(plan: Any) -> None:
        log.append(f"dead {[d.record.offset for d in plan.dead]}")

    return BatchMeter(s, store, 2, resume, dead_letters, WorkerState())


def test_a_batch_is_written_and_finished_chunk_by_chunk_in_order() -> None:
    engine, store = SlowStartEngine(), Store()
    log: list[str] = []
    s = sink(engine)
    meter = batch_meter(s, store, {0: 0}, log)
    bad = Record("events", 0, 2, T0, None, b"{not json")
    records = [record(0, "a", 1), record(1, "b", 2), bad, record(3, "a", 1), record(4, "c", 4)]

    async def run() -> None:
        task = asyncio.ensure_future(meter(records))
        await asyncio.to_thread(engine.first_started.wait, 10)
        await asyncio.sleep(0.05)
        # the first chunk is being written: nothing is finished, nothing dead-lettered
        assert store.data == {}
        assert log == ["resume [0]"]
        engine.release.set()
        await task

    asyncio.run(run())
    assert log == ["resume [0]", "dead []", "dead [2]", "dead []"]
    # "a" at offset 3 was planned while the chunk holding its first copy was in flight
    assert sorted(store.data) == ["ns\x1fs\x1fa", "ns\x1fs\x1fb", "ns\x1fs\x1fc"]
    assert store.data["ns\x1fs\x1fa"].offset == 0
    assert meter.state.records == 5
    assert meter.state.writing_since is None
    written = [n for table, n in engine.inserts if table == "meter_window_agg_feed"]
    assert sum(written) == 3  # a, b and c: the duplicate of a is not counted


def step_seconds() -> dict[str, float]:
    """The worker's ``meterline_stream_step_seconds_total`` per step, as exported."""
    return {
        step: REGISTRY.get_sample_value("meterline_stream_step_seconds_total", {"step": step})
        or 0.0
        for step in ("plan", "write_wait", "finish")
    }


def test_the_loop_s_time_is_counted_per_step() -> None:
    """A write held 0.2 s while the loop has nothing else to do is 0.2 s of write_wait;
    planning and finishing count too."""
    engine, store = SlowStartEngine(), Store()
    s = sink(engine)
    meter = batch_meter(s, store, {0: 0}, [])
    records = [record(0, "a", 1), record(1, "b", 2), record(2, "c", 3)]
    before = step_seconds()

    async def run() -> None:
        task = asyncio.ensure_future(meter(records))
        # the loop planned the next chunk and waits for the first write before this runs
        await asyncio.to_thread(engine.first_started.wait, 10)
        await asyncio.sleep(0.2)
        engine.release.set()
        await task

    asyncio.run(run())
    after = step_seconds()
    assert after["write_wait"] - before["write_wait"] >= 0.19
    assert after["plan"] > before["plan"]
    assert after["finish"] > before["finish"]


class WriteWatchingStore(Store):
    """Waits (``wait_until``, 10 s), while the second chunk is planned, for the first
    chunk's write to insert, and at each chunk's finish but the last for the next chunk's
    write to insert (a write is ``inserts_per_write`` inserts): on a loop that does not
    overlap them the wait fails.  Records the inserts it saw each time."""

    def __init__(self, engine: RecordingEngine, inserts_per_write: int, chunks: int) -> None:
        super().__init__()
        self.engine = engine
        self.inserts_per_write = inserts_per_write
        self.chunks = chunks
        self.inserts_while_planning: int | None = None
        self.inserts_at_finish: list[int] = []

    def get(self, key: str) -> SeenRecord | None:
        if key.endswith("\x1fe2") and self.inserts_while_planning is None:
            inserted = wait_until(
                lambda: self.engine.inserts,
                10,
                "the first chunk's write to insert while the second chunk is planned",
                every=0.005,
            )
            self.inserts_while_planning = len(inserted)
        return super().get(key)

    def put_many(self, entries: Sequence[tuple[str, SeenRecord]]) -> None:
        finished = len(self.inserts_at_finish) + 1  # this chunk's number
        if finished < self.chunks:
            own = finished * self.inserts_per_write  # its write and those before it
            wait_until(
                lambda: len(self.engine.inserts) > own,
                10,
                f"chunk {finished + 1}'s write to insert while chunk {finished} is finished",
                every=0.005,
            )
        self.inserts_at_finish.append(len(self.engine.inserts))
        super().put_many(entries)


def test_chunks_are_planned_and_finished_while_their_neighbour_is_written() -> None:
    engine = RecordingEngine()
    store = WriteWatchingStore(engine, inserts_per_write=2, chunks=3)
    log: list[str] = []
    meter = batch_meter(sink(engine), store, {0: 0}, log)
    records = [record(n, f"e{n}", 1) for n in range(6)]  # three chunks of two
    asyncio.run(meter(records))
    writes = [engine.inserts[n : n + 2] for n in (0, 2, 4)]  # one write at a time
    assert [sorted(table for table, _ in write) for write in writes] == [
        ["meter_window_agg_feed", "usage_events"]
    ] * 3
    # the second chunk is planned while the first one is written; the first two chunks
    # are finished while their successor is written (the last one has none)
    assert store.inserts_while_planning is not None
    assert store.inserts_while_planning >= 1
    first, second, last = store.inserts_at_finish
    assert first > 2
    assert second > 4
    assert last == 6
    assert len(store.data) == 6
    assert log == ["resume [0]", "dead []", "dead []", "dead []"]


def test_a_takeover_that_skips_the_committed_record_writes_nothing() -> None:
    engine, store = RecordingEngine(), Store()
    log: list[str] = []
    meter = batch_meter(sink(engine), store, {0: 6}, log)
    with pytest.raises(RecordsSkipped, match="expected offset 6, got 7"):
        asyncio.run(meter([record(7, "a", 1), record(8, "b", 1)]))
    assert engine.inserts == []
    assert store.data == {}
    assert log == ["resume [0]"]


def test_on_a_cluster_each_shard_gets_its_subjects_and_keeps_its_own_progress() -> None:
    # shard 1 already holds offsets 0-1 of partition 0 (a write before a crash); shard 0
    # holds nothing, and its first write fails once
    shards = [RecordingEngine(fail=1), RecordingEngine(progress=[(0, 1)])]
    s = MeteringSink(
        namespace="ns",
        meters=METERS,
        engine_factory=lambda: shards[0],
        database="db_shard",
        shards=[lambda: shards[0], lambda: shards[1]],
        retry_seconds=30,
    )
    who = {n: next(f"c{i}" for i in range(100) if shard_of(f"c{i}", 2) == n) for n in (0, 1)}
    order = [1, 1, 0, 1, 0]  # the shard of each offset's subject
    records = [
        Record(
            "events",
            0,
            offset,
            1_793_000_000_000,
            b"k",
            encode_event(
                UsageEvent.create(
                    type="llm",
                    subject=who[n],
                    source="s",
                    id=f"e{offset}",
                    data={"n": 1},
                    time=datetime(2026, 11, 1, tzinfo=UTC),
                )
            ),
        )
        for offset, n in enumerate(order)
    ]
    s.write(s.plan(records, Store()))
    assert per_write(shards[0].inserts) == [("meter_window_agg_feed", 2), ("usage_events", 2)]
    # offsets 0 and 1 are shard 1's stored progress: only offset 3 is new there
    assert per_write(shards[1].inserts) == [("meter_window_agg_feed", 1), ("usage_events", 3)]


def test_a_shard_whose_replica_cannot_be_read_is_not_written() -> None:
    """On a replicated shard the progress is read from every replica; one that does not
    answer leaves it unknown, which the sink treats as replicas not agreeing (polled
    again soon), never as "nothing stored"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])  # nothing listens here once the socket closes
    shard = Shard(ShardReplicas([Replica(0, "127.0.0.1", closed)], "c"), "db")
    with pytest.raises(ReplicasDisagree, match=f"replica 127.0.0.1:{closed} .* cannot be read"):
        shard.load_progress({0}, "default")
    assert all(0 not in table for table in shard.progress.values())  # nothing assumed


def test_replicas_differ_names_the_first_replica_and_the_first_that_differs() -> None:
    """The one comparison of replicas' answers (the sink's progress, the backfill's reads)."""

    def differ(*answers: tuple[str, list[tuple[int, int]]]) -> str | None:
        return replicas_differ(answers, shard="shard 2", what="progress", then="retried")

    assert differ(("a:1", [(0, 5)])) is None
    assert differ(("a:1", [(0, 5)]), ("b:2", [(0, 5)])) is None
    problem = differ(("a:1", [(0, 5)]), ("b:2", [(0, 5)]), ("c:3", [(0, 6)]), ("d:4", []))
    assert problem is not None
    assert problem.startswith(
        "the replicas of shard 2 hold different progress (a:1: [(0, 5)]; c:3: [(0, 6)]): "
        "a write is still reaching every replica; retried (if they never do"
    )
