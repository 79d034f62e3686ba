"""Transactional producer round trip on the local broker (confluent-kafka / librdkafka).

Committed records are visible to a read_committed consumer, aborted ones are not, and a
read_uncommitted consumer proves the aborted records really were written to the log.
"""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.deploy.brokerkit import BOOTSTRAP, TopicReader, create_topics, unique_name

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


def send_transaction(producer: Producer, topic: str, values: list[str], commit: bool) -> None:
    """One transaction with the given values; commit or abort it."""
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, key=b"k", value=json.dumps({"v": value}).encode())
    if commit:
        producer.commit_transaction(TIMEOUT_S)
    else:
        assert producer.flush(TIMEOUT_S) == 0, "records not written before abort"
        producer.abort_transaction(TIMEOUT_S)


def test_read_committed_sees_only_committed_transactions(
    kafka_admin: AdminClient, topic_prefixes: list[str]
) -> None:
    topic = unique_name("txn")
    topic_prefixes.append(topic)
    create_topics(kafka_admin, {topic: 1})
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": f"{topic}-producer"})
    producer.init_transactions(TIMEOUT_S)
    send_transaction(producer, topic, ["c1", "c2", "c3"], commit=True)
    send_transaction(producer, topic, ["a1", "a2"], commit=False)
    send_transaction(producer, topic, ["c4"], commit=True)

    committed = TopicReader(topic, isolation="read_committed")
    uncommitted = TopicReader(topic, isolation="read_uncommitted")
    try:
        seen = [r["v"] for r in committed.values_until_eof(TIMEOUT_S)]
        everything = [r["v"] for r in uncommitted.values_until_eof(TIMEOUT_S)]
    finally:
        committed.close()
        uncommitted.close()
    assert seen == ["c1", "c2", "c3", "c4"]
    assert everything == ["c1", "c2", "c3", "a1", "a2", "c4"]
