"""The producer SDK against the real local broker."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewPartitions

from ingest import DEFAULT_PACK_MS, Delivery, UsageProducer
from ingest.admin import ensure_topics, meterline_topics
from schemas.errors import DeliveryFailed, ServiceUnavailable
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.wire import decode_event, is_batch, split_record, subject_partition
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def events(n: int) -> list[UsageEvent]:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        UsageEvent.create(type="t", subject=f"s{i % 3}", id=f"e{i}", time=at, data={"v": i})
        for i in range(n)
    ]


def test_deliveries_are_reported_and_keyed_by_subject(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    seen: list[Delivery] = []
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=0) as producer:
        for event in events(30):
            producer.send(event, seen.append)
    # flushed on close: every delivery is known, with its partition and offset
    assert producer.report.delivered == 30
    assert len(seen) == 30
    assert all(d.ok and d.partition is not None and d.offset is not None for d in seen)
    assert len({(d.partition, d.offset) for d in seen}) == 30  # no window: a record each
    subject_of = {e.id: e.subject for e in events(30)}
    by_subject: dict[str, set[int | None]] = {}
    for d in seen:  # callbacks arrive per partition, not in send order
        by_subject.setdefault(subject_of[d.id], set()).add(d.partition)
    assert all(len(parts) == 1 for parts in by_subject.values())  # one subject, one partition

    consumer = Consumer(
        {
            "bootstrap.servers": isolated.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([isolated.events_topic])
    got: list[tuple[bytes, UsageEvent]] = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append((msg.key(), decode_event(msg.value())))
    consumer.close()
    assert len(got) == 30
    assert all(key == event.subject.encode() for key, event in got)
    assert sorted(e.id for _, e in got) == sorted(e.id for e in events(30))


def test_send_many_packs_each_subjects_events_into_shared_records(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = events(30)
    seen: list[Delivery] = []
    with UsageProducer(
        isolated.kafka_bootstrap, isolated.events_topic, record_events=4, pack_subjects=False
    ) as p:
        assert p.send_many(sent, seen.append) == 30
    assert p.report.delivered == 30
    positions = {(d.partition, d.offset, d.index) for d in seen}
    assert len(positions) == 30  # every event has a position of its own
    records = {(d.partition, d.offset) for d in seen}
    assert len(records) < 30
    assert max(d.index for d in seen) == 3

    consumer = Consumer(
        {
            "bootstrap.servers": isolated.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([isolated.events_topic])
    got: dict[tuple[int | None, int | None, int], UsageEvent] = {}
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        lines = split_record(msg.value(), is_batch(msg.headers()))
        for index, line in enumerate(lines):
            event = decode_event(line)
            assert msg.key() == event.subject.encode()
            got[(msg.partition(), msg.offset(), index)] = event
    consumer.close()
    assert set(got) == positions
    by_position = {(d.partition, d.offset, d.index): d.id for d in seen}
    assert all(got[pos].id == event_id for pos, event_id in by_position.items())
    subject_ids = [e.id for e in sent if e.subject == sent[0].subject]
    in_kafka_order = [e.id for _, e in sorted(got.items()) if e.subject == sent[0].subject]
    assert in_kafka_order == subject_ids  # order kept per subject


def test_pack_ms_packs_events_sent_one_at_a_time(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = events(30)
    seen: list[Delivery] = []
    with UsageProducer(
        isolated.kafka_bootstrap, isolated.events_topic, pack_ms=1500, pack_subjects=False
    ) as p:
        for event in sent:
            p.send(event, seen.append)
        assert p.waiting == 30  # held inside the window, not produced yet
        # the packing thread produces them once the window closes, without a flush
        wait_until(lambda: p.waiting == 0, 15, "the packing thread to produce the events")
    assert p.report.delivered == 30
    assert {d.id for d in seen} == {e.id for e in sent}
    records = {(d.partition, d.offset) for d in seen}
    assert len(records) == 3  # one record per subject
    assert sorted(d.index for d in seen if (d.partition, d.offset) == min(records)) == list(
        range(10)
    )


def test_events_sent_one_at_a_time_share_records_by_default(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = events(300)
    seen: list[Delivery] = []
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic) as p:
        assert p.pack_ms == DEFAULT_PACK_MS > 0
        for event in sent:
            p.send(event, seen.append)
    assert p.report.delivered == 300
    assert not p.report.failed
    assert {d.id for d in seen} == {e.id for e in sent}
    records: dict[tuple[int | None, int | None], list[Delivery]] = {}
    for d in seen:
        records.setdefault((d.partition, d.offset), []).append(d)
    # three subjects sent within a few milliseconds: a handful of records, not 300 (a
    # pause of the box longer than the window splits a subject's events, no more)
    assert len(records) <= 30
    assert all(sorted(d.index for d in r) == list(range(len(r))) for r in records.values())
    position = {d.id: (d.partition, d.offset, d.index) for d in seen}
    for subject in ("s0", "s1", "s2"):  # each subject's events in the order sent
        ids = [e.id for e in sent if e.subject == subject]
        assert sorted(ids, key=position.__getitem__) == ids


def test_producer_settings_are_checked_by_name() -> None:
    for pack_ms, record_events, record_bytes in ((-1, 500, 256), (50, 0, 256), (50, 500, 0)):
        with pytest.raises(ValueError, match="pack_ms is a window in milliseconds"):
            UsageProducer(  # refused before any connection
                "127.0.0.1:1",
                "events",
                pack_ms=pack_ms,
                record_events=record_events,
                record_bytes=record_bytes,
            )


def test_send_and_wait_returns_every_outcome(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    producer = UsageProducer(isolated.kafka_bootstrap, isolated.events_topic)
    outcomes = producer.send_and_wait(events(5))
    assert sorted(o.id for o in outcomes) == [f"e{i}" for i in range(5)]
    assert all(o.ok for o in outcomes)
    producer.close()


def test_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"unreachable.*make up"):
        UsageProducer(f"127.0.0.1:{port}", "any", connect_timeout=2)
    assert time.monotonic() - started < 10


def test_missing_topic_names_the_fix(stack: Settings) -> None:
    with pytest.raises(ServiceUnavailable, match="python -m streams init"):
        UsageProducer(stack.kafka_bootstrap, f"absent-{uuid.uuid4().hex}", connect_timeout=5)


def test_a_held_record_the_client_refuses_is_reported_failed_and_packing_goes_on(
    isolated: Settings,
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    big = UsageEvent.create(type="t", subject="s0", id="big", time=at, data={"v": "x" * 2000})
    small = UsageEvent.create(type="t", subject="s1", id="small", time=at, data={"v": 1})
    seen: list[Delivery] = []
    p = UsageProducer(  # records over 1,000 bytes are refused by the client itself
        isolated.kafka_bootstrap,
        isolated.events_topic,
        pack_ms=20,
        extra_config={"message.max.bytes": 1000},
    )
    p.send(big, seen.append)
    wait_until(lambda: len(seen) == 1, 15, "the packing thread to report the refused record")
    (refused,) = seen
    assert refused.id == "big"
    assert not refused.ok
    assert refused.error is not None
    assert "not produced" in refused.error
    p.send(small, seen.append)  # the packing thread still produces what comes next
    wait_until(lambda: p.waiting == 0, 15, "the packing thread to produce the next record")
    p.flush()  # serves the delivery report of that record
    assert len(seen) == 2
    assert seen[1].id == "small"
    assert seen[1].ok
    with pytest.raises(DeliveryFailed, match="big"):
        p.close()


@pytest.mark.parametrize("many", [False, True])
def test_without_packing_a_refused_record_is_a_failed_delivery_not_an_exception(
    isolated: Settings, many: bool
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    big = UsageEvent.create(type="t", subject="s0", id="big", time=at, data={"v": "x" * 2000})
    small = UsageEvent.create(type="t", subject="s1", id="small", time=at, data={"v": 1})
    p = UsageProducer(  # records over 1,000 bytes are refused by the client itself
        isolated.kafka_bootstrap,
        isolated.events_topic,
        pack_ms=0,
        extra_config={"message.max.bytes": 1000},
    )
    try:
        if many:
            with pytest.raises(DeliveryFailed, match=r"1 of 2 events not accepted: [^ ]+/big"):
                p.send_and_wait([big, small], timeout=15)
        else:
            seen: list[Delivery] = []
            p.send(big, seen.append)
            p.send(small, seen.append)
            p.flush(15)
            assert [(d.id, d.ok) for d in seen] == [("big", False), ("small", True)]
            assert seen[0].error is not None
            assert "not produced" in seen[0].error
    finally:
        with pytest.raises(DeliveryFailed, match="big"):
            p.close()


def test_a_callback_that_raises_is_logged_and_changes_nothing_else(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    called: list[str] = []

    def broken(delivery: Delivery) -> None:
        called.append(delivery.id)
        raise RuntimeError("a bug in the caller's callback")

    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=20) as p:
        for event in events(6):  # records of two events each (three subjects)
            p.send(event, broken)
        p.flush()
        assert sorted(called) == sorted(e.id for e in events(6))
        assert p.report.delivered == 6  # every event of each record counted
        p.send(events(7)[6], broken)  # the packing thread still produces
    assert p.report.delivered == 7
    assert not p.report.failed
    logged = [r for r in caplog.records if "the delivery callback raised" in r.getMessage()]
    assert len(logged) == 7
    assert all(r.exc_info is not None for r in logged)


def test_with_the_window_on_callbacks_arrive_without_another_send(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    seen: list[Delivery] = []
    p = UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=20)
    try:
        for event in events(3):  # three subjects, three records
            p.send(event, seen.append)
        # no further send, flush or close: the packing thread serves the acknowledgements
        wait_until(lambda: len(seen) == 3, 30, "the delivery callbacks of three records")
        assert all(d.ok for d in seen)
        assert p.report.delivered == 3
    finally:
        p.close()


def test_the_report_stays_exact_while_a_caller_flushes_beside_the_packing_thread(
    isolated: Settings,
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    sent = [
        UsageEvent.create(type="t", subject=f"s{i % 40}", id=f"e{i}", time=at, data={"v": i})
        for i in range(4000)
    ]
    seen: list[Delivery] = []
    stop = threading.Event()
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=5) as p:

        def flushing() -> None:  # a second thread serving the client's reports
            while not stop.is_set():
                p.flush(30)

        flusher = threading.Thread(target=flushing)
        flusher.start()
        try:
            for start in range(0, len(sent), 50):
                p.send_many(sent[start : start + 50], seen.append)
        finally:
            stop.set()
            flusher.join(60)
    assert p.report.delivered == len(sent)
    assert not p.report.failed
    assert sorted(d.id for d in seen) == sorted(e.id for e in sent)  # each exactly once


@pytest.mark.parametrize("pack_ms", [0, 20])
def test_a_delivery_callback_may_send(isolated: Settings, pack_ms: int) -> None:
    """A callback that sends (say, a follow-up event per acknowledged one) neither
    deadlocks on the SDK's lock nor polls the client from inside its own poll (which
    aborts the process in the client's C code)."""
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    follow_ups: list[Delivery] = []
    p = UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=pack_ms)

    def follow_up(delivery: Delivery) -> None:
        if delivery.ok and int(delivery.id[1:]) % 50 == 0:
            event = UsageEvent.create(
                type="t", subject="s-follow", id=f"f{delivery.id}", time=at, data={}
            )
            p.send(event, follow_ups.append)

    def run() -> None:
        for i in range(3000):
            event = UsageEvent.create(
                type="t", subject=f"s{i % 30}", id=f"e{i}", time=at, data={"v": i}
            )
            p.send(event, follow_up)
        p.flush(60)

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    sender.join(90)
    assert not sender.is_alive(), "the sender is stuck (a callback's send deadlocked)"
    assert len(follow_ups) == 3000 // 50  # flush waited for the callbacks' sends too
    assert all(d.ok for d in follow_ups)
    assert p.close().delivered == 3000 + 3000 // 50


def test_flush_from_inside_a_callback_is_refused_with_the_reason(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic) as p:

        def flushing(_: Delivery) -> None:
            p.flush()

        p.send(events(1)[0], flushing)
        p.flush()
    logged = [r for r in caplog.records if "the delivery callback raised" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "flush from inside a delivery callback" in str(logged[0].exc_info[1])
    assert p.report.delivered == 1


def test_a_held_event_a_callback_sends_into_a_full_queue_is_reported_failed(
    isolated: Settings,
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    seen: list[Delivery] = []
    p = UsageProducer(  # one record in the client's queue at most; every event a full group
        isolated.kafka_bootstrap,
        isolated.events_topic,
        pack_ms=20,
        record_events=1,
        extra_config={"queue.buffering.max.messages": 1},
    )
    follow = UsageEvent.create(type="t", subject="s1", id="follow", time=at, data={})

    def follow_up(delivery: Delivery) -> None:
        seen.append(delivery)
        p.send(follow, seen.append)  # the acknowledged record still holds the queue's slot

    p.send(events(1)[0], follow_up)
    wait_until(lambda: len(seen) == 2, 30, "the first outcome and the follow-up's")
    first, refused = seen
    assert first.ok
    assert refused.id == "follow"
    assert refused.error is not None
    assert "local queue is full" in refused.error
    with pytest.raises(DeliveryFailed, match="follow"):
        p.close()


def read_back(settings: Settings, expected: int) -> list[UsageEvent]:
    """Every event of the topic (up to ``expected``, 30 s at most), records split."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.events_topic])
    got: list[UsageEvent] = []
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.extend(map(decode_event, split_record(msg.value(), is_batch(msg.headers()))))
    consumer.close()
    return got


def test_a_producer_dropped_unclosed_still_delivers_what_it_held_and_its_thread_ends(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = events(30)
    producer = UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=60_000)
    producer.send_many(sent)
    assert producer.waiting == 30  # held for the window, not produced yet
    packing = producer._packing
    assert packing is not None
    assert packing.is_alive()
    with caplog.at_level("WARNING", logger="ingest.producer"):
        del producer  # never closed: dropped with its events held
        gc.collect()
    packing.join(5)
    assert not packing.is_alive()  # the packing thread does not keep it (or itself) alive
    assert "was not closed" in caplog.text
    assert "call close()" in caplog.text
    assert sorted(e.id for e in read_back(isolated, 30)) == sorted(e.id for e in sent)


def test_a_callback_that_drops_the_last_reference_still_delivers_what_it_sent(
    isolated: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer is collected after the callback returns, never inside it (the thread
    serving callbacks holds it for its turn), so its flush is not refused as a flush from
    a callback: what the callback sent is delivered, and nothing is raised unseen."""
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    first, second = events(2)
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    owner = [UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=20)]
    collected = weakref.ref(owner[0])
    in_callback = [False]
    collected_in_callback: list[bool] = []  # one entry, when the producer is collected
    weakref.finalize(owner[0], lambda: collected_in_callback.append(in_callback[0]))

    def on_first(delivery: Delivery) -> None:
        in_callback[0] = True
        assert delivery.ok, delivery.error
        producer = owner.pop()  # the owner's only reference leaves with this callback
        producer.send(second)  # held for the window when the producer is dropped
        del producer
        in_callback[0] = False

    with caplog.at_level("WARNING", logger="ingest.producer"):
        owner[0].send(first, on_first)
        wait_until(lambda: gc.collect() >= 0 and collected() is None, 30, "the producer collected")
    assert unraisable == []  # no error raised from __del__, where nobody would see it
    assert collected_in_callback == [False]  # after the callback returned, not inside it
    assert "was not closed" in caplog.text
    assert sorted(e.id for e in read_back(isolated, 2)) == sorted([first.id, second.id])


def test_a_producer_never_closed_delivers_what_it_held_at_interpreter_exit(
    isolated: Settings,
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    script = textwrap.dedent(
        f"""
        from tests.ingest.test_producer import events
        from ingest import UsageProducer

        producer = UsageProducer({isolated.kafka_bootstrap!r}, {isolated.events_topic!r},
                                 pack_ms=60_000)
        producer.send_many(events(30))
        assert producer.waiting == 30
        # the script ends here, the producer still open and holding every event
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "was not closed" in done.stderr
    assert "at interpreter exit" in done.stderr
    assert sorted(e.id for e in read_back(isolated, 30)) == sorted(e.id for e in events(30))


def many_subjects(n: int, subjects: int) -> list[UsageEvent]:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        UsageEvent.create(type="t", subject=f"c{i % subjects}", id=f"e{i}", time=at, data={})
        for i in range(n)
    ]


def test_subject_partition_is_where_the_client_puts_a_record_keyed_by_the_subject(
    isolated: Settings,
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = many_subjects(200, 200)  # one event per subject: every record keyed, one subject
    seen: list[Delivery] = []
    with UsageProducer(
        isolated.kafka_bootstrap, isolated.events_topic, pack_ms=0, pack_subjects=False
    ) as p:  # placed by the client's own partitioner
        p.send_many(sent, seen.append)
    partitions = isolated.events_partitions
    subject_of = {e.id: e.subject for e in sent}
    placed = {subject_of[d.id]: d.partition for d in seen}
    assert len(set(placed.values())) == partitions  # 200 subjects reach every partition
    assert placed == {s: subject_partition(s, partitions) for s in placed}


@pytest.mark.parametrize("pack_ms", [0, 1500])
def test_records_pack_the_subjects_of_one_partition(isolated: Settings, pack_ms: int) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    sent = many_subjects(300, 100)  # three events per subject: rare senders
    seen: list[Delivery] = []
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=pack_ms) as p:
        if pack_ms:
            for event in sent:
                p.send(event, seen.append)
        else:
            p.send_many(sent, seen.append)
    assert p.report.delivered == 300
    partitions = isolated.events_partitions
    subject_of = {e.id: e.subject for e in sent}
    assert all(d.partition == subject_partition(subject_of[d.id], partitions) for d in seen)
    records = {(d.partition, d.offset) for d in seen}
    assert len(records) == partitions  # one record per partition, not one per subject

    stored = read_back_records(isolated, len(records))
    for key, lines in stored.values():
        subjects = {event.subject for event in lines}
        assert key == (subjects.pop().encode() if len(subjects) == 1 else None)
    in_topic = [e.id for _, (_, lines) in sorted(stored.items()) for e in lines]
    assert sorted(in_topic) == sorted(e.id for e in sent)
    for subject in ("c0", "c1", "c99"):  # each subject's events in the order sent
        ids = [e.id for e in sent if e.subject == subject]
        assert [i for i in in_topic if subject_of[i] == subject] == ids


def test_a_topic_given_more_partitions_is_packed_for_the_new_count(
    isolated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    monkeypatch.setattr("ingest.partitions.REFRESH_S", 0.0)  # re-read at every turn
    sent = many_subjects(400, 100)
    seen: list[Delivery] = []
    with UsageProducer(isolated.kafka_bootstrap, isolated.events_topic, pack_ms=200) as p:
        p.send_many(sent[:200], seen.append)
        admin = AdminClient({"bootstrap.servers": isolated.kafka_bootstrap})
        grown = isolated.events_partitions * 2
        admin.create_partitions([NewPartitions(isolated.events_topic, grown)])[
            isolated.events_topic
        ].result(30)
        wait_until(lambda: p._partitions.count == grown, 30, "the new partition count")
        p.send_many(sent[200:], seen.append)
    subject_of = {e.id: e.subject for e in sent}
    at = {d.id: d for d in seen}
    before, after = sent[:200], sent[200:]
    assert all(
        at[e.id].partition == subject_partition(e.subject, isolated.events_partitions)
        for e in before
    )
    assert all(at[e.id].partition == subject_partition(e.subject, grown) for e in after)
    assert {subject_of[i] for i in at} == {e.subject for e in sent}


def read_back_records(
    settings: Settings, expected: int
) -> dict[tuple[int, int], tuple[bytes | None, list[UsageEvent]]]:
    """The topic's records by position: each one's key and events (30 s at most)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.events_topic])
    got: dict[tuple[int, int], tuple[bytes | None, list[UsageEvent]]] = {}
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            lines = split_record(msg.value(), is_batch(msg.headers()))
            got[(msg.partition(), msg.offset())] = (msg.key(), [decode_event(b) for b in lines])
    consumer.close()
    return got
