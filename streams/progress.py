"""How far the metering worker has got: committed offsets against the log end.

A partition is caught up when the worker's committed offset equals the high watermark.
The worker commits only records whose effects are stored (see ``streams.sink``), so zero
lag means every record written so far is metered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription

from schemas.errors import ServiceUnavailable

__all__ = [
    "Lag",
    "OffsetReader",
    "consumer_lag",
    "describe_group",
    "resume_positions",
    "retrying",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Lag:
    committed: dict[int, int]
    end: dict[int, int]

    @property
    def per_partition(self) -> dict[int, int]:
        return {p: end - max(self.committed.get(p, 0), 0) for p, end in self.end.items()}

    @property
    def total(self) -> int:
        return sum(self.per_partition.values())

    @property
    def processed(self) -> int:
        return sum(max(offset, 0) for offset in self.committed.values())

    @property
    def produced(self) -> int:
        return sum(self.end.values())


def consumer_lag(bootstrap: str, group: str, topic: str, timeout: float = 30.0) -> Lag:
    """Committed offsets against the log end; retriable broker errors are retried.

    On a brand-new broker the group coordinator is still loading when the first group
    appears (``NOT_COORDINATOR``, ``COORDINATOR_LOAD_IN_PROGRESS``): that is a wait, not
    a failure.
    """
    return retrying(lambda: _consumer_lag(bootstrap, group, topic, timeout), bootstrap, timeout)


def resume_positions(
    bootstrap: str, group: str, topic: str, partitions: Iterable[int], timeout: float = 30.0
) -> dict[int, int]:
    """The offset at which ``group`` resumes each of ``partitions``: its committed offset,
    or the log start where it has none or the log no longer reaches back to it (the
    worker's consumer then resets to the earliest record).  The first record a worker
    meters after taking a partition over must be at this offset (or before it, a
    re-delivery); one after it means records were skipped."""
    wanted = sorted(set(partitions))
    return retrying(
        lambda: _resume_positions(bootstrap, group, topic, wanted, timeout), bootstrap, timeout
    )


def describe_group(bootstrap: str, group: str, timeout: float = 30.0) -> ConsumerGroupDescription:
    """The group's state and members with their assignments.  A coordinator that moved
    or is still loading (``NOT_COORDINATOR`` while partitions change leaders) is retried
    until ``timeout``, like :func:`consumer_lag`."""

    def describe() -> ConsumerGroupDescription:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.describe_consumer_groups([group], request_timeout=timeout)
        description: ConsumerGroupDescription = futures[group].result(timeout)
        return description

    return retrying(describe, bootstrap, timeout)


_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Group-coordinator answers that go away once the coordinator has settled; librdkafka
does not always mark them retriable on an admin or offsets result."""


def retrying(read: Callable[[], T], bootstrap: str, timeout: float) -> T:
    """``read()``, again every 0.5 s while Kafka answers with a retriable error or a group
    coordinator that is moving (until ``timeout``); anything else, or the deadline, raises
    :class:`ServiceUnavailable` naming ``bootstrap``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable() or error.code() in _COORDINATOR_MOVING
            )
            if not retriable or time.monotonic() > deadline:
                raise ServiceUnavailable(f"Kafka at {bootstrap} did not answer: {exc}") from exc
            time.sleep(0.5)


class OffsetReader:
    """The group's committed offsets and the log end of ``topic``, read through one Kafka
    consumer kept open between reads (the supervisor reads every few seconds)."""

    def __init__(self, bootstrap: str, group: str, topic: str, timeout: float = 30.0) -> None:
        self.bootstrap, self.group, self.topic, self.timeout = bootstrap, group, topic, timeout
        self._consumer: Consumer | None = None

    def read(self) -> Lag:
        """Raise :class:`ServiceUnavailable` if the topic does not exist, and
        ``KafkaException`` when Kafka does not answer (the consumer is then reopened on
        the next read)."""
        timeout = self.timeout
        try:
            consumer = self._open()
            metadata = consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                raise ServiceUnavailable(f"topic {self.topic!r} not found on {self.bootstrap}")
            tps = [TopicPartition(self.topic, p) for p in sorted(metadata.partitions)]
            committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
            end = {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[1]
                for tp in tps
            }
            return Lag(committed=committed, end=end)
        except KafkaException:
            self.close()
            raise

    def _open(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "socket.timeout.ms": int(self.timeout * 1000),
                }
            )
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _consumer_lag(bootstrap: str, group: str, topic: str, timeout: float) -> Lag:
    reader = OffsetReader(bootstrap, group, topic, timeout)
    try:
        return reader.read()
    finally:
        reader.close()


def _resume_positions(
    bootstrap: str, group: str, topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
        start = {tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout)[0] for tp in tps}
        return {p: max(committed.get(p, -1), start[p]) for p in partitions}
    finally:
        consumer.close()
