"""Where a worker resumes a partition it takes over, read from the real Kafka: the group's
committed offset, or the log start where there is none or the log no longer reaches it."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ingest.admin import TopicSpec, ensure_topics
from schemas.settings import Settings
from streams.progress import resume_positions

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition, n in counts.items():
        for i in range(n):
            producer.produce(topic, value=b"%d" % i, partition=partition)
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def delete_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(topic, partition, offset)])
    for future in futures.values():
        future.result(30)


def test_committed_offsets_or_the_log_start(isolated: Settings) -> None:
    bootstrap, topic, group = isolated.kafka_bootstrap, isolated.events_topic, "resume-test"
    ensure_topics(bootstrap, [TopicSpec(topic, 3)])
    produce(bootstrap, topic, {0: 5, 1: 4, 2: 3})
    commit(bootstrap, group, topic, {0: 3, 2: 1})

    # partition 1 has no committed offset: the consumer starts at the earliest record
    assert resume_positions(bootstrap, group, topic, [0, 1, 2]) == {0: 3, 1: 0, 2: 1}
    assert resume_positions(bootstrap, group, topic, {2}) == {2: 1}

    # retention removed records the group never read: it resumes at the new log start
    delete_before(bootstrap, topic, 1, 2)
    delete_before(bootstrap, topic, 2, 2)
    assert resume_positions(bootstrap, group, topic, [0, 1, 2]) == {0: 3, 1: 2, 2: 2}
