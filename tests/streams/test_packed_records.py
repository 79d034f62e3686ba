"""Records that carry several events (``schemas.wire``): positions, dedupe, dead letters,
chunking and the per-record dedupe store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.types import TP, Message

from schemas.metering.contributions import DeadLetterReason
from schemas.settings import Settings
from schemas.wire import BATCH_CONTENT_TYPE, CONTENT_TYPE_HEADER, encode_event, encode_record
from streams.app import QuietMonitor, RawRecords, _record, create_worker
from streams.dedupe import SeenRecord
from streams.seen_codec import encode_chunk
from streams.seen_table import TableSeenStore
from streams.sink import MeteringSink, PendingSeen, Record
from tests.streams.sink_kit import (
    METERS,
    T0,
    RecordingEngine,
    Store,
    event,
    named_feed,
    named_raw,
    sink,
)


def packed(offset: int, value: bytes, partition: int = 0) -> Record:
    return Record("events", partition, offset, T0 + 1000, b"acme", value, batch=True)


def test_each_event_of_a_record_has_its_own_position() -> None:
    value = encode_record([event("a", 1), event("b", 2), event("c", 3)])
    plan = sink(RecordingEngine()).plan([packed(9, value)], Store())
    assert [(r.id, r.source_offset, r.source_index) for r in named_raw(plan)] == [
        ("a", 9, 0),
        ("b", 9, 1),
        ("c", 9, 2),
    ]
    assert [(r.source_offset, r.source_index) for r in named_feed(plan)] == [(9, 0), (9, 1), (9, 2)]
    assert [seen.index for _, seen in plan.seen] == [0, 1, 2]
    # the raw row keeps the exact bytes the event was sent with
    assert named_raw(plan)[1].data == encode_event(event("b", 2))


def test_a_duplicate_inside_one_record_is_dropped() -> None:
    value = encode_record([event("a", 1), event("a", 1), event("b", 2)])
    plan = sink(RecordingEngine()).plan([packed(0, value)], Store())
    assert [r.id for r in named_raw(plan)] == ["a", "b"]
    assert plan.outcomes == {"new": 2, "duplicate": 1}


def test_one_bad_event_is_dead_lettered_alone_with_its_bytes_and_index() -> None:
    good, bad = encode_event(event("a", 1)), encode_event(event("b", "x"))
    value = b"\n".join([good, b"{not json", bad, encode_event(event("c", 4))])
    plan = sink(RecordingEngine()).plan([packed(5, value)], Store())
    assert [r.id for r in named_raw(plan)] == ["a", "c"]
    assert sum(r.value for r in named_feed(plan)) == Decimal(5)
    assert [(d.index, d.reason, d.value) for d in plan.dead] == [
        (1, DeadLetterReason.SCHEMA, b"{not json"),
        (2, DeadLetterReason.VALUE_NOT_NUMERIC, bad),
    ]


@pytest.mark.parametrize("batch", [False, True])
def test_a_record_without_a_value_is_dead_lettered_not_raised(batch: bool) -> None:
    # a tombstone on the events topic: Faust hands its value over as None
    headers = [(CONTENT_TYPE_HEADER, BATCH_CONTENT_TYPE)] if batch else []
    message = Message(
        "events", 0, 3, T0 / 1000 + 1, 0, headers=headers, key=b"acme", value=None, checksum=None
    )
    record = _record(SimpleNamespace(message=message, value=None))
    assert (record.value, record.batch) == (b"", batch)
    good = Record("events", 0, 4, T0 + 1000, b"acme", encode_event(event("a", 1)))
    plan = sink(RecordingEngine()).plan([record, good], Store())
    assert [(d.record.offset, d.reason) for d in plan.dead] == [(3, DeadLetterReason.SCHEMA)]
    assert [r.id for r in named_raw(plan)] == ["a"]


def test_data_keys_that_trim_to_one_are_dead_lettered_not_merged() -> None:
    # a line no producer of Meterline writes (they refuse it), sent to the topic directly
    line = encode_event(event("a", 1)).replace(b'"data":{', b'"data":{" n":7,')
    plan = sink(RecordingEngine()).plan([packed(2, line)], Store())
    assert named_feed(plan) == []
    ((reason, detail),) = [(d.reason, d.detail) for d in plan.dead]
    assert reason is DeadLetterReason.SCHEMA
    assert "same key once the whitespace around them is trimmed" in detail


def test_a_record_read_again_after_a_crash_is_a_replay_not_a_duplicate() -> None:
    store = Store()
    s = sink(RecordingEngine())
    value = encode_record([event("a", 1), event("b", 2)])
    first = s.plan([packed(3, value)], store)
    s.finish(first, store)
    again = s.plan([packed(3, value)], store)
    assert again.outcomes == {"replay": 2}
    assert len(again.feed_rows) == 2  # written again; the progress gate skips stored ones
    resent = s.plan([packed(4, value)], store)  # the producer sent the record again
    assert resent.outcomes == {"duplicate": 2}
    assert resent.raw_rows == []


def test_without_the_batch_header_a_value_is_one_event() -> None:
    value = encode_record([event("a", 1), event("b", 2)])
    plan = sink(RecordingEngine()).plan([Record("events", 0, 0, T0, b"acme", value)], Store())
    assert plan.raw_rows == []
    assert [d.reason for d in plan.dead] == [DeadLetterReason.SCHEMA]
    assert plan.dead[0].value == value


def test_chunks_never_split_a_record() -> None:
    records = [
        packed(0, encode_record([event(f"a{i}", 1) for i in range(3)])),
        Record("events", 0, 1, T0, b"acme", encode_event(event("b", 1))),
        packed(2, encode_record([event(f"c{i}", 1) for i in range(4)])),
        packed(3, encode_record([event(f"d{i}", 1) for i in range(9)])),
    ]
    chunks = [[r.offset for r in c] for c in MeteringSink.chunks(records, 4)]
    assert chunks == [[0, 1], [2], [3]]
    assert [r.offset for c in MeteringSink.chunks(records, 100) for r in c] == [0, 1, 2, 3]


class FakeTable:
    """The part of the Faust table the store uses: items, get, put_at and delete_at."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int]] = {}

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, v) for k, (v, _) in self.data.items()])

    def put_at(self, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = (value, partition)

    def delete_at(self, key: bytes, partition: int) -> None:
        assert self.data[key][1] == partition
        del self.data[key]


def test_table_store_writes_one_entry_per_partition_and_reads_it_back() -> None:
    table = FakeTable()
    store = TableSeenStore(table)  # type: ignore[arg-type]
    store.put_many(
        [
            ("k1", SeenRecord(2, 40, "h1", T0, 0)),
            ("k2", SeenRecord(2, 40, "h2", T0, 3)),
            ("k3", SeenRecord(1, 7, "h3", T0 + 5, 0)),
            ("k4", SeenRecord(2, 41, "h4", T0 + 9, 0)),
        ]
    )
    assert {k: p for k, (_, p) in table.data.items()} == {b"2:40-41": 2, b"1:7-7": 1}
    assert orjson.loads(table.data[b"2:40-41"][0]) == {
        "e": [["k1", 40, 0, "h1", T0], ["k2", 40, 3, "h2", T0], ["k4", 41, 0, "h4", T0 + 9]]
    }
    fresh = TableSeenStore(table)  # type: ignore[arg-type]  # as after a restart
    assert fresh.get("k2") == SeenRecord(2, 40, "h2", T0, 3)
    assert fresh.get("k3") == SeenRecord(1, 7, "h3", T0 + 5, 0)
    assert fresh.get("k4") == SeenRecord(2, 41, "h4", T0 + 9, 0)
    assert fresh.get("nope") is None


def test_a_native_plan_is_recorded_from_its_raw_rows_as_from_its_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``finish`` hands the store a native plan's entries as a view of its raw rows, which
    the worker's store encodes from directly (no ``SeenRecord`` read per event): the table
    holds what the entries as a list write, and every kept key reads back; a list of
    entries goes the entry by entry way (``encode_chunk``)."""
    value = encode_record([event("a", 1), event("b", 2), event("a", 1), event("c", 3)])
    records = [packed(3, value), packed(4, encode_record([event("d", 4)]), partition=1)]
    worker = sink(RecordingEngine())
    plan = worker.plan(records, Store())
    assert type(plan.raw_rows) is not list, "the native plan keeps its raw rows as columns"
    calls: list[int] = []

    def recording(kept: list[tuple[str, SeenRecord]], partition: int) -> Any:
        calls.append(partition)
        return encode_chunk(kept, partition)

    monkeypatch.setattr("streams.seen_table.encode_chunk", recording)
    by_rows, by_entries = FakeTable(), FakeTable()
    store = TableSeenStore(by_rows)  # type: ignore[arg-type]
    worker.finish(plan, store)
    assert calls == [], "the native plan's entries are encoded from its raw rows"
    TableSeenStore(by_entries).put_many(list(plan.seen))  # type: ignore[arg-type]
    assert calls == [0, 1], "a list of entries: one table entry per partition"
    assert by_rows.data == by_entries.data
    assert set(by_rows.data) == {b"0:3-3", b"1:4-4"}
    for key, seen in plan.seen:
        assert store.get(key) == seen


def test_table_store_reads_entries_written_one_per_event() -> None:
    table = FakeTable()
    table.put_at(b"ns\x1fs\x1fold", b"3:12:1700000000000:abc", 3)
    store = TableSeenStore(table)  # type: ignore[arg-type]
    assert store.get("ns\x1fs\x1fold") == SeenRecord(3, 12, "abc", 1_700_000_000_000, 0)


def test_table_store_purges_old_records_and_forgets_them() -> None:
    table = FakeTable()
    store = TableSeenStore(table)  # type: ignore[arg-type]
    store.put_many([("old", SeenRecord(0, 1, "h", 1_000)), ("mid", SeenRecord(0, 2, "h", 4_000))])
    store.put_many([("new", SeenRecord(0, 3, "h", 9_000)), ("x", SeenRecord(0, 4, "h", 2_000))])
    assert store.get("old") is not None
    assert store.purge(5_000) == 2  # an entry goes when its newest event is past the horizon
    assert store.get("old") is None
    assert store.get("mid") is None
    assert store.get("new") is not None
    assert store.get("x") is not None
    assert list(table.data) == [b"0:3-4"]


def test_a_chunk_planned_before_the_previous_one_finished_still_sees_its_keys() -> None:
    """The worker plans chunk 2 while chunk 1 is being written (not yet finished)."""
    store = Store()
    s = sink(RecordingEngine())
    pending = PendingSeen(store)
    first = s.plan([packed(0, encode_record([event("a", 1), event("b", 2)]))], pending)
    pending.add(first.seen)
    second = s.plan([packed(1, encode_record([event("b", 2), event("c", 3)]))], pending)
    assert [r.id for r in named_raw(second)] == ["c"]
    assert second.outcomes == {"duplicate": 1, "new": 1}
    assert store.data == {}  # nothing is recorded before finish
    s.finish(first, store)
    s.finish(second, store)
    assert sorted(k.rsplit("\x1f", 1)[1] for k in store.data) == ["a", "b", "c"]


def test_the_dedupe_index_is_rebuilt_after_faust_recovers_the_table(tmp_path: Path) -> None:
    """Recovery writes restored entries straight into the table: an index built before it
    finished (a batch in flight through a rebalance) must not hide them afterwards.
    Nothing connects: the worker is only built."""
    settings = Settings().model_copy(update={"worker_data_dir": str(tmp_path)})
    worker = create_worker(settings, METERS)
    store = worker.store
    assert store.get("k") is None  # the index is built now, from the empty table
    restored = {"e": [["k", 5, 0, "h", T0]]}
    store.table.data[b"0:5-5"] = orjson.dumps(restored)  # as the changelog restore does
    asyncio.run(store.table.call_recover_callbacks())
    assert store.get("k") == SeenRecord(0, 5, "h", T0, 0)


def test_the_group_waits_for_a_write_in_flight_before_moving_its_partitions(
    tmp_path: Path,
) -> None:
    """A member rejoins a rebalance only once its batch is written; were the group to
    give up on it sooner, the partitions' next owner could read their progress before
    that write lands and count it twice.  Nothing connects: the worker is only built."""
    from streams.sink import WRITE_DEADLINE_SECONDS

    for session in (6.0, 10.0, 90.0):
        settings = Settings().model_copy(
            update={
                "worker_data_dir": str(tmp_path / str(session)),
                "worker_session_timeout": session,
            }
        )
        conf = create_worker(settings, METERS).app.conf
        assert conf.broker_rebalance_timeout > WRITE_DEADLINE_SECONDS
        assert conf.broker_rebalance_timeout >= 3 * session
        assert conf.broker_session_timeout == session


def test_the_worker_reads_the_events_topic_as_the_raw_serializer_would(tmp_path: Path) -> None:
    """The events topic's schema skips Faust's codec registry; what it hands the agent is
    what the registry's ``raw`` serializer gives, keys and values, bytes or ``None``.
    Nothing connects: the worker is only built."""
    settings = Settings().model_copy(update={"worker_data_dir": str(tmp_path)})
    app = create_worker(settings, METERS).app
    (agent,) = app.agents.values()
    assert isinstance(agent.channel.schema, RawRecords)

    def decoded(schema: faust.Schema, key: bytes | None, value: bytes | None) -> Any:
        message = Message(settings.events_topic, 0, 7, 0.0, 0, [], key, value, None)
        return asyncio.run(schema.decode(app, message))

    registry = faust.Schema(key_serializer="raw", value_serializer="raw")
    for key, value in ((b"c1", b'{"id":"a"}'), (None, b"x"), (b"c2", None), (b"", b"")):
        ours, theirs = decoded(agent.channel.schema, key, value), decoded(registry, key, value)
        assert (ours.key, ours.value) == (theirs.key, theirs.value) == (key, value)


def test_the_worker_keeps_no_statistics_per_record_but_tracks_offsets(tmp_path: Path) -> None:
    """Faust's monitor keeps counters and timings for every record, which nothing reads;
    the worker's skips them and still tracks what Faust itself asks of it (the end
    offsets its consumer reports, the commits).  Nothing connects: the worker is only built."""
    settings = Settings().model_copy(update={"worker_data_dir": str(tmp_path)})
    monitor = create_worker(settings, METERS).app.monitor
    assert isinstance(monitor, QuietMonitor)
    tp = TP(settings.events_topic, 0)
    message = Message(settings.events_topic, 0, 7, 0.0, 0, [], b"c1", b"{}", None)
    monitor.on_message_in(tp, 7, message)
    monitor.on_stream_event_in(tp, 7, None, None)
    monitor.on_stream_event_out(tp, 7, None, None, {"time_in": 0.0})
    monitor.on_message_out(tp, 7, message)
    assert monitor.messages_received_total == 0
    assert message.time_in is None
    monitor.track_tp_end_offset(tp, 42)
    monitor.on_tp_commit({tp: 40})
    assert monitor.tp_end_offsets[tp] == 42
    assert monitor.tp_committed_offsets[tp] == 40
