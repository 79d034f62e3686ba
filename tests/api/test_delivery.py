"""KafkaDelivery: how a request's events are packed into records (pure), how one
request's acknowledgements are counted, the failure path with a real client and no
broker (nothing is sent, 503 with Retry-After), and a delivery to the real local Kafka
read back record by record (no test double for Kafka here)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from api.app import create_app
from api.delivery import KafkaDelivery, _Countdown, records
from api.fastingest import EncodedEvent
from api.server import free_port
from ingest.admin import ensure_topics, meterline_topics
from ingest.packing import by_subject, pack
from schemas.errors import DeliveryFailed, ServiceUnavailable
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.wire import encode_event, is_batch, split_record, subject_partition
from tests.api.doubles import ADMIN, FakeEngine, SyncClient, demo_settings
from tests.conftest import isolated_settings

EVENT = UsageEvent.create(type="api.request", subject="acme")


def test_unreachable_kafka_fails_fast_with_service_unavailable() -> None:
    delivery = KafkaDelivery(f"127.0.0.1:{free_port()}", "nowhere", delivery_timeout_s=2)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailable):
            asyncio.run(delivery.deliver([(EVENT.subject, encode_event(EVENT))], timeout=2))
    finally:
        delivery.close()
    assert time.monotonic() - started < 10


def test_api_answers_503_with_retry_after_when_kafka_is_down() -> None:
    settings = demo_settings(kafka_port=free_port())
    engine = FakeEngine()
    app = create_app(
        settings.model_copy(update={"api_retry_after_s": 3}),
        engine_factory=lambda: engine,
        lag=lambda: {},
    )
    answer = SyncClient(app).post(
        "/api/v1/events",
        content=orjson.dumps(EVENT.to_wire()),
        headers={**ADMIN, "content-type": "application/cloudevents+json"},
    )
    app.state.services.delivery.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["title"] == "Kafka unavailable"


# -- records: a request's events packed per subject --------------------------------------


def encoded(subjects: str, size: int = 10) -> list[EncodedEvent]:
    """One event per letter, the letter its subject, numbered in body order."""
    return [(s, f"{s}{n}".encode().ljust(size, b".")) for n, s in enumerate(subjects)]


def test_a_small_batch_makes_one_record_per_subject_in_order() -> None:
    events = encoded("abacbba")
    assert records(events, 500, 256_000) == [
        ("a", None, [b"a0........", b"a2........", b"a6........"]),
        ("b", None, [b"b1........", b"b4........", b"b5........"]),
        ("c", None, [b"c3........"]),
    ]


@pytest.mark.parametrize(("max_events", "max_bytes"), [(2, 10_000), (100, 25), (1, 1), (3, 40)])
def test_limits_split_a_subject_into_records_that_keep_its_order(
    max_events: int, max_bytes: int
) -> None:
    events = encoded("aabababbbaac")
    out = records(events, max_events, max_bytes)
    for subject, partition, lines in out:
        assert subject is not None
        assert partition is None  # placed by its key
        assert len(lines) <= max_events
        assert len(lines) == 1 or sum(len(line) + 1 for line in lines) <= max_bytes
        assert all(line.startswith(subject.encode()) for line in lines)
    for subject in "abc":
        mine = [line for s, _, lines in out if s == subject for line in lines]
        assert mine == [v for s, v in events if s == subject]  # all there, in body order


def test_an_event_over_the_byte_limit_gets_a_record_of_its_own() -> None:
    events = [("a", b"x" * 10), ("a", b"y" * 100), ("a", b"z" * 10)]
    assert records(events, 500, 50) == [
        ("a", None, [b"x" * 10]),
        ("a", None, [b"y" * 100]),
        ("a", None, [b"z" * 10]),
    ]


@pytest.mark.parametrize(("max_events", "max_bytes"), [(500, 256_000), (2, 10_000), (3, 40)])
def test_with_partitions_the_subjects_of_one_partition_share_records(
    max_events: int, max_bytes: int
) -> None:
    events = encoded("abcdefghijabcdefghij")
    out = records(events, max_events, max_bytes, partitions=4)
    for key, partition, lines in out:
        subjects = {line[:1].decode() for line in lines}
        assert partition is not None
        assert {subject_partition(s, 4) for s in subjects} == {partition}
        assert key == (subjects.pop() if len(subjects) == 1 else None)
        assert len(lines) <= max_events
    if max_events == 500:  # nothing splits: one record per partition the subjects use
        assert len(out) == len({subject_partition(s, 4) for s in "abcdefghij"}) < 10
    for subject in "abcdefghij":  # all there, each subject in body order
        mine = [line for _, _, lines in out for line in lines if line[:1] == subject.encode()]
        assert mine == [v for s, v in events if s == subject]


@examples(max_examples=200, deadline=None)
@given(
    body=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 60)), max_size=60),
    max_events=st.integers(1, 8),
    max_bytes=st.integers(1, 2_000),  # an event is 130-200 bytes
    partitions=st.sampled_from([0, 1, 3, 4]),
)
def test_the_gateways_records_are_the_sdks_records_of_the_same_events(
    body: list[tuple[str, int]], max_events: int, max_bytes: int, partitions: int
) -> None:
    """One packing rule: the gateway's records of a body are the groups the SDK's
    :func:`ingest.packing.pack` makes of the same events, in the same order, each keyed
    by its subject only when it holds one, and placed on its subjects' partition."""
    events = [
        UsageEvent.create(type="t", subject=s, id=f"{n}", data={"pad": "x" * size})
        for n, (s, size) in enumerate(body)
    ]
    lane = (lambda e: subject_partition(e.subject, partitions)) if partitions else by_subject
    sdk = list(pack(events, max_events, max_bytes, lane=lane))
    gateway = records(
        [(e.subject, encode_event(e)) for e in events], max_events, max_bytes, partitions
    )
    assert [lines for _, _, lines in gateway] == [[value for _, value, _ in g] for g in sdk]
    for (key, partition, _), group in zip(gateway, sdk, strict=True):
        subjects = {event.subject for event, _, _ in group}
        assert key == (subjects.pop() if len(subjects) == 1 else None)
        assert partition == (
            subject_partition(group[0][0].subject, partitions) if partitions else None
        )


# -- one request's acknowledgements --------------------------------------------------------


class Err:
    """What confluent-kafka hands a delivery callback for a failed record."""

    def str(self) -> str:
        return "Local: Message timed out"


def test_a_request_settles_at_its_last_acknowledgement() -> None:
    async def go() -> list[bool]:
        countdown = _Countdown(asyncio.get_running_loop(), 3)
        done = []
        for _ in range(3):
            await asyncio.sleep(0)
            done.append(countdown.future.done())
            countdown(None, Any)  # the message is not read
        await asyncio.sleep(0)
        done.append(countdown.future.done())
        await countdown.future
        return done

    assert asyncio.run(go()) == [False, False, False, True]


def test_a_failed_record_fails_the_request_at_once() -> None:
    async def go() -> None:
        countdown = _Countdown(asyncio.get_running_loop(), 3)
        countdown(Err(), Any)
        countdown(None, Any)  # later outcomes change nothing
        await countdown.future

    with pytest.raises(DeliveryFailed, match="Message timed out"):
        asyncio.run(go())


# -- the real local Kafka ------------------------------------------------------------------


def read_back(settings: Settings) -> list[tuple[str, list[bytes]]]:
    """``(key, the record's events)`` of every record on the events topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.worker_app_id + "-check",
            "enable.auto.commit": False,
        }
    )
    topic = settings.events_topic
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[str, list[bytes]]] = []
        deadline = time.monotonic() + 30
        while sum(ends.values()) > len(out):
            assert time.monotonic() < deadline, "the records did not come back"
            for msg in consumer.consume(100, timeout=1.0):
                error: KafkaError | None = msg.error()
                assert error is None, error
                value = msg.value() or b""
                out.append(
                    ((msg.key() or b"").decode(), split_record(value, is_batch(msg.headers())))
                )
        return out
    finally:
        consumer.close()


def deliver_to(settings: Settings, events: list[UsageEvent]) -> None:
    """``events`` through a gateway's delivery to the events topic of ``settings``."""
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    delivery = KafkaDelivery(settings.kafka_bootstrap, settings.events_topic)
    try:
        asyncio.run(delivery.deliver([(e.subject, encode_event(e)) for e in events], timeout=10))
    finally:
        delivery.close()


@pytest.mark.integration
def test_a_delivered_request_is_in_kafka_as_the_worker_reads_it(
    stack: Settings, tmp_path: Path
) -> None:
    settings = isolated_settings(stack, tmp_path)
    events = [
        UsageEvent.create(type="api.request", subject=subject, data={"n": n})
        for n, subject in enumerate(["acme", "globex", "acme", "initech", "acme"])
    ]
    deliver_to(settings, events)
    # the subjects of one partition share a record, keyed only if it holds one subject
    by_partition: dict[int, list[UsageEvent]] = {}
    for event in events:
        part = subject_partition(event.subject, settings.events_partitions)
        by_partition.setdefault(part, []).append(event)
    expected = []
    for mine in by_partition.values():
        subjects = {e.subject for e in mine}
        key = subjects.pop() if len(subjects) == 1 else ""
        expected.append((key, [encode_event(e) for e in mine]))
    assert sorted(read_back(settings)) == sorted(expected)


@pytest.mark.integration
def test_a_record_the_client_refuses_fails_the_request_as_not_delivered(
    stack: Settings, tmp_path: Path
) -> None:
    # a record over librdkafka's message.max.bytes is refused by produce() itself; the
    # request is answered as not delivered (503, retry), never as a server error
    huge = UsageEvent.create(type="api.request", subject="globex", data={"pad": "x" * 1_100_000})
    small = UsageEvent.create(type="api.request", subject="acme", data={"n": 1})
    with pytest.raises(DeliveryFailed, match="refused a record"):
        deliver_to(isolated_settings(stack, tmp_path), [small, huge])
