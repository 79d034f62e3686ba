"""Reads of the worker group's state: a coordinator that moved is a wait, not a failure.

A three-broker cluster moves group coordinators while partitions change leaders; a read
that lands then gets ``NOT_COORDINATOR`` and must be retried, while an error that will
not go away is reported as :class:`ServiceUnavailable` naming the broker.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from ingest.admin import ensure_topics, meterline_topics
from schemas.errors import ServiceUnavailable
from schemas.settings import Settings
from streams.progress import describe_group, retrying


def test_a_moved_coordinator_is_retried_until_it_answers() -> None:
    answers: list[object] = [
        KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)),
        KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)),
        "described",
    ]

    def read() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(read, "b:9092", timeout=10) == "described"
    assert answers == []


def test_an_error_that_stays_is_reported_with_the_broker() -> None:
    def read() -> object:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    with pytest.raises(ServiceUnavailable, match="b:9092"):
        retrying(read, "b:9092", timeout=10)


@pytest.mark.integration
def test_describe_group_names_the_members_holding_partitions(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    group = f"{isolated.worker_app_id}-describe"
    consumer = Consumer(
        {
            "bootstrap.servers": isolated.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([isolated.events_topic])
        assigned = False
        for _ in range(60):
            consumer.poll(0.5)
            if consumer.assignment():
                assigned = True
                break
        assert assigned
        description = describe_group(isolated.kafka_bootstrap, group, timeout=15)
        assert [bool(m.assignment.topic_partitions) for m in description.members] == [True]
    finally:
        consumer.close()
    assert describe_group(isolated.kafka_bootstrap, group, timeout=15).members == []
